//! The helper processes: short-lived copies of the daemon's binary that do
//! what a multi-threaded daemon cannot (see the [module docs](super)).
//!
//! `iocaged jail-exec REQUEST` (REQUEST: a JSON [`HelperRequest`]) enters
//! the jail, forks (on Linux the child is then inside the jail's PID
//! namespace and in a cgroup of its own below the jail's), becomes the user
//! as the jail's own `/etc/passwd` defines it, drops to the jail's
//! confinement and runs `/bin/sh -c COMMAND` with output captured; the
//! parent waits, and kills the command with everything it started when
//! the timeout passes or the output reaches its limit, and prints one JSON
//! [`HelperReply`]. Nothing else is ever printed on its stdout. Asked to
//! stream, it sends the output as it comes, before the reply (see
//! [`super::stream`]). SIGTERM kills the command with everything it
//! started (the daemon sends it when the output's reader went away).
//!
//! It follows the rules of `runtime::linux::confine`: the confinement is
//! decided and compiled, the clock started and the thread count checked
//! (on the host's `/proc`) before entering; nothing of the jail is read
//! except `/etc/passwd` and `/etc/group`, through
//! [`passwd::read_jail_file`]; the child leaves with `_exit`.

use std::ffi::CString;
use std::io::Read;
use std::os::fd::AsFd;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::sys::signal::{SigSet, Signal, killpg};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Gid, Pid, Uid};

use super::exec::{Capture, DEFAULT_PATH, ExecOutput, HelperReply, HelperRequest, TICK};
use super::pty::{self, Pty};
use super::stream::Pump;
use super::{RunningJail, passwd};

/// How long a killed command's group may take to empty before it is
/// left (it goes with the jail).
#[cfg(target_os = "linux")]
const REMOVE_WAIT: Duration = Duration::from_secs(2);

/// `TERM` in a console: what browser terminals and most others emulate.
const CONSOLE_TERM: &str = "xterm";

/// `iocaged jail-exec ...`: always exits 0 after printing its reply; a
/// failure is reported inside it.
pub fn exec_main(args: &[String]) -> ExitCode {
    let reply = match exec_in_jail(args) {
        Ok(out) => HelperReply::Done(out),
        Err(e) => HelperReply::Failed(e),
    };
    match serde_json::to_string(&reply) {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(_) => ExitCode::FAILURE,
    }
}

/// Proof that the process was found single-threaded, which
/// [`fork_single_threaded`] requires.
///
/// On Linux the count comes from `/proc/self/task`, read before the
/// process enters a jail (the jail's `/proc` could be a fake) and failing
/// closed: no count, no fork. The helpers start no thread themselves and
/// the standard library starts none by itself, so the process stays
/// single-threaded from the check to the fork. On FreeBSD the helpers
/// rely on that alone (there is no procfs by default).
pub(crate) struct SingleThreaded(());

impl SingleThreaded {
    pub(crate) fn check() -> Result<SingleThreaded, String> {
        #[cfg(target_os = "linux")]
        {
            let n = std::fs::read_dir("/proc/self/task")
                .map_err(|e| format!("cannot count this process's threads in /proc/self/task: {e}"))?
                .count();
            if n != 1 {
                return Err(format!("refusing to fork a process with {n} threads"));
            }
        }
        Ok(SingleThreaded(()))
    }
}

/// fork(2) for the helpers.
///
/// Sound because the process is single-threaded (`_proof`), so the
/// child's copy of memory holds no lock another thread owned.
pub(crate) fn fork_single_threaded(_proof: &SingleThreaded) -> Result<ForkResult, String> {
    // SAFETY: see above; the only caller-visible effect is a second process.
    unsafe { nix::unistd::fork() }.map_err(|e| format!("fork: {e}"))
}

/// How a forked child ends: `_exit(2)`, without the parent's exit
/// handlers or the buffers it copied.
pub(crate) fn child_exit(code: i32) -> ! {
    // SAFETY: _exit never returns and touches no memory of this process.
    unsafe { libc::_exit(code) }
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
    super::enter(&jail).map_err(|e| format!("entering the jail: {e}"))?;
    // Linux: a terminal of the jail's own devpts, once inside.
    #[cfg(target_os = "linux")]
    let mut pty = req.console.map(|_| Pty::open()).transpose()?;
    if let (Some(p), Some(size)) = (&pty, req.console) {
        pty::set_size(&p.master, size)?;
    }
    match fork_single_threaded(&single)? {
        ForkResult::Child => {
            drop(status_r);
            let _ = signals.thread_unblock();
            let io = match &pty {
                Some(p) => Io::Terminal(&p.slave),
                None => Io::Captured { devnull: &devnull, out: &out, err: &err },
            };
            let why = become_and_exec(&req, &setup, io);
            let _ = nix::unistd::write(&status_w, why.as_bytes());
            child_exit(127)
        }
        ForkResult::Parent { child } => {
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

/// What the helper decides and opens on the host, before entering.
struct Setup {
    #[cfg(target_os = "linux")]
    confine: super::linux::confine::Prepared,
    #[cfg(target_os = "linux")]
    group: Option<super::linux::cgroup::CommandGroup>,
}

impl Setup {
    #[cfg(target_os = "linux")]
    fn before_entering(req: &HelperRequest) -> Result<Setup, String> {
        use super::linux::{cgroup, confine};
        let c = req.confine.as_ref().ok_or("no confinement was given for the jail")?;
        let confine = confine::prepare(c)?;
        let group = match &req.cgroup {
            Some(dir) => {
                // The helper itself counts against the jail's limits.
                std::fs::write(dir.join("cgroup.procs"), "0").map_err(|e| format!("joining {}: {e}", dir.display()))?;
                Some(cgroup::CommandGroup::create(dir)?)
            }
            None => None,
        };
        Ok(Setup { confine, group })
    }

    /// FreeBSD: the helper becomes the reaper of what the command starts,
    /// so that all of it can be killed, in whatever process group.
    #[cfg(not(target_os = "linux"))]
    fn before_entering(_req: &HelperRequest) -> Result<Setup, String> {
        #[cfg(target_os = "freebsd")]
        super::freebsd::reap_acquire()?;
        Ok(Setup {})
    }

    /// In the child, first: into the command's own group.
    fn join(&self) -> Result<(), String> {
        #[cfg(target_os = "linux")]
        if let Some(g) = &self.group {
            g.join()?;
        }
        Ok(())
    }

    /// Kills the command and everything it started: its cgroup (Linux),
    /// every descendant of the helper (FreeBSD, the reaper), and while it
    /// is not `reaped` the child and its process group (once reaped, its
    /// pid may be another process's).
    fn kill(&self, child: Pid, reaped: bool) {
        #[cfg(target_os = "linux")]
        if let Some(g) = &self.group {
            g.kill();
        }
        #[cfg(target_os = "freebsd")]
        super::freebsd::reap_kill();
        if !reaped {
            let _ = killpg(child, Signal::SIGKILL);
            let _ = nix::sys::signal::kill(child, Signal::SIGKILL);
        }
    }

    /// After the command: its group goes when nothing is left in it (what
    /// an `/etc/rc` started stays there, and goes with the jail).
    fn after(&self, killed: bool) {
        #[cfg(target_os = "linux")]
        if let Some(g) = &self.group {
            g.remove(if killed { REMOVE_WAIT } else { Duration::ZERO });
        }
        #[cfg(not(target_os = "linux"))]
        let _ = killed;
    }

    /// Drops to the jail's confinement; `become_user` runs after the
    /// capabilities are cut and before the seccomp filter is installed.
    fn confine(&self, become_user: impl FnOnce() -> Result<(), String>) -> Result<(), String> {
        #[cfg(target_os = "linux")]
        return super::linux::confine::apply(&self.confine, become_user);
        #[cfg(not(target_os = "linux"))]
        become_user()
    }
}

/// Where the child's stdin, stdout and stderr go.
enum Io<'a> {
    /// A command's: nothing in, the output into the memory files.
    Captured { devnull: &'a std::fs::File, out: &'a Capture, err: &'a Capture },
    /// A console's: all three the terminal, which becomes the controlling
    /// terminal of a session of the shell's own.
    Terminal(&'a std::os::fd::OwnedFd),
}

/// In the child: the user's identity, the jail's confinement, a clean
/// environment, the command (or, for a console, the user's login shell).
/// Returns only on failure, with the reason.
fn become_and_exec(req: &HelperRequest, setup: &Setup, io: Io<'_>) -> String {
    if let Err(e) = setup.join() {
        return e;
    }
    let user = req.user.as_str();
    let read = |p: &str, must: bool| match passwd::read_jail_file(std::path::Path::new(p), passwd::JAIL_FILE_LIMIT) {
        Ok(b) => Ok(String::from_utf8_lossy(&b).into_owned()),
        Err(_) if !must && !std::path::Path::new(p).exists() => Ok(String::new()),
        Err(e) => Err(format!("cannot read the jail's {p}: {e}")),
    };
    let (pw, gr) = match (read("/etc/passwd", true), read("/etc/group", false)) {
        (Ok(p), Ok(g)) => (p, g),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    let Some(acct) = passwd::lookup(user, &pw, &gr) else {
        return format!("no user {user:?} in the jail's /etc/passwd");
    };
    let set_up = || -> Result<(), String> {
        let e = |e: nix::Error| e.to_string();
        match io {
            Io::Captured { devnull, out, err } => {
                nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0)).map_err(e)?;
                nix::unistd::dup2_stdin(devnull.as_fd()).map_err(e)?;
                nix::unistd::dup2_stdout(out.file().as_fd()).map_err(e)?;
                nix::unistd::dup2_stderr(err.file().as_fd()).map_err(e)?;
            }
            Io::Terminal(t) => {
                nix::unistd::setsid().map_err(e)?;
                pty::make_controlling(t)?;
                // Its terminal is the user's, as login(1) leaves it (on
                // FreeBSD, in the host's devfs: the jail's keeps its own).
                nix::unistd::fchown(t, Some(Uid::from_raw(acct.uid)), None).map_err(e)?;
                nix::unistd::dup2_stdin(t.as_fd()).map_err(e)?;
                nix::unistd::dup2_stdout(t.as_fd()).map_err(e)?;
                nix::unistd::dup2_stderr(t.as_fd()).map_err(e)?;
            }
        }
        Ok(())
    };
    if let Err(e) = set_up() {
        return format!("cannot set the command up: {e}");
    }
    // The daemon ignores SIGPIPE (as Rust programs do); the command must
    // not inherit that (`yes | head` would never end).
    // SAFETY: setting a signal's disposition to its default installs no
    // handler; nothing else runs in this single-threaded child.
    if let Err(e) = unsafe { nix::sys::signal::signal(Signal::SIGPIPE, nix::sys::signal::SigHandler::SigDfl) } {
        return format!("cannot set the command up: SIGPIPE: {e}");
    }
    let console = matches!(io, Io::Terminal(_));
    let become_user = || -> Result<(), String> {
        let groups: Vec<Gid> = acct.groups.iter().map(|&g| Gid::from_raw(g)).collect();
        nix::unistd::setgroups(&groups).map_err(|e| format!("setgroups: {e}"))?;
        nix::unistd::setgid(Gid::from_raw(acct.gid)).map_err(|e| format!("setgid: {e}"))?;
        nix::unistd::setuid(Uid::from_raw(acct.uid)).map_err(|e| format!("setuid: {e}"))
    };
    if let Err(e) = setup.confine(become_user) {
        return format!("cannot become {user}: {e}");
    }
    if nix::unistd::chdir(acct.home.as_str()).is_err() {
        let _ = nix::unistd::chdir("/");
    }
    let cstr = |s: String| CString::new(s).unwrap_or_default();
    let mut env: Vec<CString> = [
        format!("HOME={}", acct.home),
        format!("USER={}", acct.name),
        format!("LOGNAME={}", acct.name),
        format!("SHELL={}", acct.shell),
        format!("PATH={DEFAULT_PATH}"),
    ]
    .map(cstr)
    .into();
    if !console {
        let argv = ["sh".to_string(), "-c".to_string(), req.command.clone()].map(cstr);
        return match nix::unistd::execve(c"/bin/sh", &argv, &env) {
            Err(e) => format!("cannot run the jail's /bin/sh: {e}"),
        };
    }
    // The user's shell as a login shell: its name with a leading dash.
    env.push(cstr(format!("TERM={}", CONSOLE_TERM)));
    let shell = if acct.shell.is_empty() { "/bin/sh" } else { acct.shell.as_str() };
    let name = shell.rsplit('/').next().unwrap_or("sh");
    match nix::unistd::execve(&cstr(shell.to_string()), &[cstr(format!("-{name}"))], &env) {
        Err(e) => format!("cannot run {user}'s shell {shell}: {e}"),
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
            cancelled = Some("the helper was told to stop (its client went away, or the daemon stops)".to_string());
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

/// `child`'s status once it ended, reaping on the way every other
/// descendant that ended: on FreeBSD the helper is their reaper, and what
/// the command left behind comes back to it when orphaned.
pub(crate) fn reap(child: Pid) -> Result<Option<WaitStatus>, nix::errno::Errno> {
    use nix::errno::Errno;
    let mut found = None;
    loop {
        match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => return Ok(found),
            Ok(s) if s.pid() == Some(child) => found = Some(s),
            Ok(_) | Err(Errno::EINTR) => {}
            Err(Errno::ECHILD) if found.is_some() => return Ok(found),
            Err(e) => return Err(e),
        }
    }
}

/// Starts (every `every`) or stops (`None`) the SIGALRM interval timer.
fn tick(every: Option<Duration>) -> Result<(), String> {
    let t = every.unwrap_or_default();
    let tv = libc::timeval {
        tv_sec: t.as_secs() as libc::time_t,
        tv_usec: libc::suseconds_t::from(t.subsec_micros() as i32),
    };
    let it = libc::itimerval { it_interval: tv, it_value: tv };
    // SAFETY: setitimer reads one itimerval, alive for the call; the old
    // value is not asked for.
    let rc = unsafe { libc::setitimer(libc::ITIMER_REAL, &it, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(format!("setitimer: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

/// SIGCHLD, SIGALRM and SIGTERM, blocked (see [`wait_bounded`]).
fn block_wait_signals() -> Result<SigSet, String> {
    let mut set = SigSet::empty();
    set.add(Signal::SIGCHLD);
    set.add(Signal::SIGALRM);
    set.add(Signal::SIGTERM);
    set.thread_block().map_err(|e| format!("sigprocmask: {e}"))?;
    Ok(set)
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn a_multi_threaded_process_is_refused() {
        // The test harness runs this on a thread of its own: at least two.
        let _other = std::thread::spawn(|| std::thread::sleep(Duration::from_millis(200)));
        let err = SingleThreaded::check().err().unwrap_or_default();
        assert!(err.contains("threads"), "{err}");
    }
}
