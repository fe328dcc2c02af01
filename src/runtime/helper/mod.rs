//! The helper processes: short-lived single-threaded processes that do
//! what a multi-threaded daemon cannot (see the [module docs](super)).
//! They run as `iocaged-jail`, the helpers' own small binary, when it is
//! installed next to the daemon's, else as the daemon's binary
//! ([`program`]).
//!
//! `iocaged jail-exec REQUEST` (REQUEST: a JSON `HelperRequest`) enters
//! the jail, forks (on Linux the child is then inside the jail's PID
//! namespace and in a cgroup of its own below the jail's), becomes the user
//! as the jail's own `/etc/passwd` defines it, drops to the jail's
//! confinement and runs `/bin/sh -c COMMAND` with output captured; the
//! parent waits, and kills the command with everything it started when
//! the timeout passes or the output reaches its limit, and prints one JSON
//! `HelperReply`. Nothing else is ever printed on its stdout. Asked to
//! stream, it sends the output as it comes, before the reply (see
//! [`super::stream`]). SIGTERM kills the command with everything it
//! started (the daemon sends it when the output's reader went away).
//!
//! It follows the rules of `runtime::linux::confine`: the confinement is
//! decided and compiled, the clock started and the thread count checked
//! (on the host's `/proc`) before entering; nothing of the jail is read
//! except `/etc/passwd` and `/etc/group`, through
//! `super::passwd::read_jail_file`; the child leaves with `_exit`.
//!
//! Its parts: [`program`], which binary the helpers run as;
//! `process`, what a single-threaded process may do (fork,
//! `_exit`, reaping, the signals it waits for); `setup`, what is
//! decided and opened on the host before entering; `child`, the forked
//! child's way to the command.

mod child;
mod process;
mod program;
mod setup;

use std::io::Read;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::WaitStatus;
use nix::unistd::Pid;

use super::RunningJail;
use super::capture::{Capture, TICK};
use super::exec::{ExecOutput, HelperReply, HelperRequest};
use super::pty::{self, Pty};
use super::stream::Pump;
use child::{Io, become_and_exec};
#[cfg(target_os = "linux")]
pub(crate) use process::fork_into;
pub(crate) use process::{Forked, SingleThreaded, child_exit, reap};
use process::{block_wait_signals, tick};
pub use program::{HELPER_BINARY, name as program_name, program};
use setup::Setup;

/// The verb that prints the build's id ([`BUILD_ID`]).
pub const BUILD_ID_VERB: &str = "build-id";

/// This build's id: the version and a hash of the sources (`build.rs`).
/// The daemon puts it after each helper verb; a helper of another build
/// refuses the request.
pub const BUILD_ID: &str = env!("IOCAGED_BUILD_ID");

/// The helpers' entry, for both binaries (`iocaged`, `iocaged-jail`):
/// `args` as the process got them; `None` when `args[1]` names no helper.
/// `VERB BUILD_ID REST...`: a helper of this build; `build-id` prints it.
pub fn helper_main(args: &[String]) -> Option<ExitCode> {
    let verb = args.get(1)?.as_str();
    if verb == BUILD_ID_VERB {
        println!("{BUILD_ID}");
        return Some(ExitCode::SUCCESS);
    }
    if !matches!(verb, "jail-exec" | "jail-init" | "jail-net") {
        return None;
    }
    if let Err(why) = process::close_inherited() {
        return Some(if verb == "jail-exec" { reply(HelperReply::Failed(why)) } else { refuse_line(&why) });
    }
    let rest = match args.get(2) {
        Some(id) if id == BUILD_ID => &args[3..],
        other => {
            // An older daemon sends its request here: never echo that.
            let theirs = other
                .map(String::as_str)
                .filter(|id| id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric() || ".-+".contains(c)))
                .unwrap_or("one without a build id");
            let why = format!(
                "the helper is build {BUILD_ID}, the daemon {theirs}: install both binaries of one build and restart iocaged"
            );
            return Some(if verb == "jail-exec" { reply(HelperReply::Failed(why)) } else { refuse_line(&why) });
        }
    };
    match verb {
        "jail-exec" => Some(exec_main(rest)),
        #[cfg(target_os = "linux")]
        "jail-init" => Some(crate::runtime::linux::init::init_main()),
        #[cfg(target_os = "freebsd")]
        "jail-net" => Some(crate::runtime::freebsd::vnet::net_main()),
        _ => None,
    }
}

/// A line helper's refusal (`error WHY`, see `exec::line_helper`).
fn refuse_line(why: &str) -> ExitCode {
    println!("error {why}");
    ExitCode::FAILURE
}

/// `iocaged jail-exec ...`: always exits 0 after printing its reply; a
/// failure is reported inside it.
fn exec_main(args: &[String]) -> ExitCode {
    reply(match exec_in_jail(args) {
        Ok(out) => HelperReply::Done(out),
        Err(e) => HelperReply::Failed(e),
    })
}

/// Prints jail-exec's reply, its one line on stdout.
fn reply(reply: HelperReply) -> ExitCode {
    match serde_json::to_string(&reply) {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(_) => ExitCode::FAILURE,
    }
}

fn exec_in_jail(args: &[String]) -> Result<ExecOutput, String> {
    let [arg] = args else {
        return Err("usage: iocaged jail-exec REQUEST".into());
    };
    let req: HelperRequest = serde_json::from_str(arg).map_err(|e| format!("bad request: {e}"))?;
    let single = SingleThreaded::check()?;
    // The clock runs from here, before anything that can wait.
    let signals = block_wait_signals()?;
    let deadline = match req.timeout {
        0 => None,
        t => Some(Instant::now().checked_add(Duration::from_secs(t)).ok_or("the timeout is too long")?),
    };
    // A console answers typing: its loop turns twice as often.
    tick(Some(if req.console.is_some() { TICK / 2 } else { TICK }))?;
    let (out, err) = (Capture::new("stdout", req.output_limit)?, Capture::new("stderr", req.output_limit)?);
    let devnull = std::fs::File::open("/dev/null").map_err(|e| format!("/dev/null: {e}"))?;
    // The child reports why it could not exec through this pipe; a
    // successful exec closes it empty (O_CLOEXEC).
    let (status_r, status_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))?;
    let jail = RunningJail { name: req.name.clone(), jid: req.jid };
    let setup = Setup::before_entering(&req)?;
    // FreeBSD: the host's terminal, before attaching (see `super::pty`).
    #[cfg(not(target_os = "linux"))]
    let mut pty = req.console.map(|_| Pty::open()).transpose()?;
    let mut pump = if req.stream && req.console.is_none() { Some(Pump::start()?) } else { None };
    // Until it execs, the child holds descriptors of the host's (its
    // command group's directory, opened here on the host): born not
    // dumpable, its /proc/PID/fd is not the jail's root's to open (the
    // exec makes it dumpable again, and closes them).
    #[cfg(target_os = "linux")]
    nix::sys::prctl::set_dumpable(false).map_err(|e| format!("PR_SET_DUMPABLE: {e}"))?;
    super::enter(&jail).map_err(|e| format!("entering the jail: {e}"))?;
    // Linux: a terminal of the jail's own devpts, once inside.
    #[cfg(target_os = "linux")]
    let mut pty = req.console.map(|_| Pty::open()).transpose()?;
    if let (Some(p), Some(size)) = (&pty, req.console) {
        pty::set_size(&p.master, size)?;
    }
    match setup.fork(&single)? {
        Forked::Child(in_group) => {
            drop(status_r);
            let _ = signals.thread_unblock();
            let io = match &pty {
                Some(p) => Io::Terminal(&p.slave),
                None => Io::Captured { devnull: &devnull, out: &out, err: &err },
            };
            let why = match in_group {
                Ok(()) => become_and_exec(&req, &setup, io),
                Err(why) => why,
            };
            let _ = nix::unistd::write(&status_w, why.as_bytes());
            child_exit(127)
        }
        Forked::Parent { child } => {
            drop(status_w);
            // Also set here: the timer may fire before the child runs (a
            // console's shell makes a session of its own instead).
            if pty.is_none() {
                let _ = nix::unistd::setpgid(child, child);
            }
            let console = pty.is_some();
            let status = match pty.take() {
                Some(Pty { master, slave }) => {
                    // Only the shell's side keeps the terminal open: it
                    // closes when the shell and what it started are gone.
                    drop(slave);
                    pty::relay(child, &master, &signals, &|reaped| setup.kill(child, reaped))
                }
                None => wait_bounded(child, deadline, &signals, [&out, &err], &setup, pump.as_mut()),
            };
            let _ = tick(None);
            // The child is gone (reaped, or it exec'd): no writer is left.
            let mut why = String::new();
            let _ = std::fs::File::from(status_r).read_to_string(&mut why);
            // What was killed is waited for; what a command left running
            // on purpose (an /etc/rc's daemons) is not.
            setup.after(console || status.as_ref().is_ok_and(|o| o.timed_out) || status.is_err());
            let status = status?;
            if !why.is_empty() {
                return Err(why);
            }
            match pump.as_mut() {
                // Whatever came after the last tick; the reply has no output.
                Some(p) => p.finish(&out, &err).map(|()| status),
                None => Ok(ExecOutput { stdout: out.read(), stderr: err.read(), ..status }),
            }
        }
    }
}

/// Waits for `child`; kills it with everything it started when the
/// deadline passes, its output is full, or SIGTERM comes. With a `pump`,
/// sends its output as it comes; a pump that cannot send (the daemon is
/// gone) kills it too.
///
/// No thread can do the timing: after setns(2) into a PID namespace a
/// process may not create threads (clone(2), EINVAL). So SIGCHLD and
/// SIGALRM are blocked (before the fork) and taken with sigwait(2), and an
/// interval timer ([`tick`]) wakes the loop every [`TICK`].
fn wait_bounded(
    child: Pid,
    deadline: Option<Instant>,
    signals: &SigSet,
    [out, err]: [&Capture; 2],
    setup: &Setup,
    mut pump: Option<&mut Pump>,
) -> Result<ExecOutput, String> {
    let mut o = ExecOutput::default();
    let mut cancelled = None;
    let status = loop {
        match reap(child) {
            Ok(None) => {}
            Ok(Some(s)) => break s,
            Err(e) => return Err(format!("waitpid: {e}")),
        }
        if !o.timed_out && !o.truncated && cancelled.is_none() {
            o.timed_out = deadline.is_some_and(|d| Instant::now() >= d);
            o.truncated = !o.timed_out && (out.over() || err.over());
            if let Some(Err(e)) = pump.as_mut().map(|p| p.pump(out, err)) {
                cancelled = Some(e);
            }
            if o.timed_out || o.truncated || cancelled.is_some() {
                setup.kill(child, false);
            }
        }
        if signals.wait() == Ok(Signal::SIGTERM) && cancelled.is_none() {
            cancelled = Some(
                "the helper was told to stop (its client went away, the jail is being stopped, or the daemon stops)"
                    .to_string(),
            );
            setup.kill(child, false);
        }
    };
    if let Some(why) = cancelled {
        return Err(format!("the command was stopped: {why}"));
    }
    // Past the limit as it ended, before a tick saw it: cut all the same.
    o.truncated |= !o.timed_out && (out.over() || err.over());
    match status {
        WaitStatus::Exited(_, code) => o.code = Some(code),
        WaitStatus::Signaled(_, sig, _) => o.signal = Some(sig as i32),
        _ => {}
    }
    Ok(o)
}
