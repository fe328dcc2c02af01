//! The helper processes: short-lived copies of the daemon's binary that do
//! what a multi-threaded daemon cannot (see the [module docs](super)).
//!
//! `iocaged jail-exec NAME JID USER TIMEOUT CGROUP COMMAND` enters the jail,
//! forks (on Linux the child is then inside the jail's PID namespace),
//! becomes USER as the jail's own `/etc/passwd` defines it and runs
//! `/bin/sh -c COMMAND` with output captured; the parent waits (killing the
//! command's process group after TIMEOUT seconds, 0 for none) and prints
//! one JSON [`HelperReply`]. Nothing else is ever printed on its stdout.

use std::ffi::CString;
use std::io::Read;
use std::os::fd::AsFd;
use std::process::ExitCode;

use nix::fcntl::OFlag;
use nix::sys::signal::{SigSet, Signal, killpg};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Gid, Pid, Uid};

use super::exec::{Capture, DEFAULT_PATH, ExecOutput, HelperReply};
use super::{RunningJail, passwd};

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

/// fork(2) for the helpers.
///
/// Sound because the helpers call it while they are single-threaded (no
/// thread has been started: the helpers start none before forking, and the
/// standard library starts none by itself), so the child's copy of memory
/// holds no lock another thread owned.
pub(crate) fn fork_single_threaded() -> Result<ForkResult, String> {
    #[cfg(target_os = "linux")]
    if std::fs::read_dir("/proc/self/task").map(|d| d.count()).unwrap_or(1) != 1 {
        return Err("refusing to fork a multi-threaded process".into());
    }
    // SAFETY: see above; the only caller-visible effect is a second process.
    unsafe { nix::unistd::fork() }.map_err(|e| format!("fork: {e}"))
}

fn exec_in_jail(args: &[String]) -> Result<ExecOutput, String> {
    let [name, jid, user, timeout, cgroup, command] = args else {
        return Err("usage: iocaged jail-exec NAME JID USER TIMEOUT CGROUP COMMAND".into());
    };
    let jail = RunningJail { name: name.clone(), jid: jid.parse().map_err(|_| format!("bad jid {jid:?}"))? };
    let timeout = timeout.parse::<u64>().map_err(|_| format!("bad timeout {timeout:?}"))?;
    let (out, err) = (Capture::new("stdout")?, Capture::new("stderr")?);
    let devnull = std::fs::File::open("/dev/null").map_err(|e| format!("/dev/null: {e}"))?;
    // The child reports why it could not exec through this pipe; a
    // successful exec closes it empty (O_CLOEXEC).
    let (status_r, status_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))?;
    if cgroup != "-" {
        std::fs::write(format!("{cgroup}/cgroup.procs"), "0").map_err(|e| format!("joining {cgroup}: {e}"))?;
    }
    super::enter(&jail).map_err(|e| format!("entering the jail: {e}"))?;
    let signals = block_wait_signals()?;
    match fork_single_threaded()? {
        ForkResult::Child => {
            drop(status_r);
            let _ = signals.thread_unblock();
            let why = become_and_exec(user, command, &devnull, &out, &err);
            let _ = nix::unistd::write(&status_w, why.as_bytes());
            std::process::exit(127);
        }
        ForkResult::Parent { child } => {
            drop(status_w);
            // Also set here: the timer may fire before the child runs.
            let _ = nix::unistd::setpgid(child, child);
            let mut why = String::new();
            let _ = std::fs::File::from(status_r).read_to_string(&mut why);
            if !why.is_empty() {
                let _ = waitpid(child, None);
                return Err(why);
            }
            let status = wait_with_timeout(child, timeout, &signals)?;
            Ok(ExecOutput { stdout: out.read(), stderr: err.read(), ..status })
        }
    }
}

/// In the child: the user's identity, a clean environment, the command.
/// Returns only on failure, with the reason.
fn become_and_exec(user: &str, command: &str, devnull: &std::fs::File, out: &Capture, err: &Capture) -> String {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let Some(acct) = passwd::lookup(user, &read("/etc/passwd"), &read("/etc/group")) else {
        return format!("no user {user:?} in the jail's /etc/passwd");
    };
    let setup = || -> nix::Result<()> {
        nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0))?;
        nix::unistd::dup2_stdin(devnull.as_fd())?;
        nix::unistd::dup2_stdout(out.file().as_fd())?;
        nix::unistd::dup2_stderr(err.file().as_fd())?;
        #[cfg(target_os = "linux")]
        super::linux::drop_capabilities().map_err(|_| nix::errno::Errno::last())?;
        let groups: Vec<Gid> = acct.groups.iter().map(|&g| Gid::from_raw(g)).collect();
        nix::unistd::setgroups(&groups)?;
        nix::unistd::setgid(Gid::from_raw(acct.gid))?;
        nix::unistd::setuid(Uid::from_raw(acct.uid))
    };
    if let Err(e) = setup() {
        return format!("cannot become {user}: {e}");
    }
    if nix::unistd::chdir(acct.home.as_str()).is_err() {
        let _ = nix::unistd::chdir("/");
    }
    let cstr = |s: String| CString::new(s).unwrap_or_default();
    let env = [
        format!("HOME={}", acct.home),
        format!("USER={}", acct.name),
        format!("LOGNAME={}", acct.name),
        format!("SHELL={}", acct.shell),
        format!("PATH={DEFAULT_PATH}"),
    ]
    .map(cstr);
    let argv = ["sh".to_string(), "-c".to_string(), command.to_string()].map(cstr);
    match nix::unistd::execve(c"/bin/sh", &argv, &env) {
        Err(e) => format!("cannot run the jail's /bin/sh: {e}"),
    }
}

/// Waits for `child`, killing its process group after `timeout` seconds.
///
/// No thread can do the timing: after setns(2) into a PID namespace a
/// process may not create threads (clone(2), EINVAL). So SIGCHLD and
/// SIGALRM are blocked (before the fork) and taken with sigwait(2), and
/// alarm(2) is the timer.
fn wait_with_timeout(child: Pid, timeout: u64, signals: &SigSet) -> Result<ExecOutput, String> {
    let mut o = ExecOutput::default();
    if timeout > 0 {
        nix::unistd::alarm::set(u32::try_from(timeout).unwrap_or(u32::MAX));
    }
    let status = loop {
        match waitpid(child, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            other => break other.map_err(|e| format!("waitpid: {e}"))?,
        }
        if signals.wait() == Ok(Signal::SIGALRM) {
            o.timed_out = true;
            let _ = killpg(child, Signal::SIGKILL);
        }
    };
    nix::unistd::alarm::cancel();
    match status {
        WaitStatus::Exited(_, code) => o.code = Some(code),
        WaitStatus::Signaled(_, sig, _) => o.signal = Some(sig as i32),
        _ => {}
    }
    Ok(o)
}

/// SIGCHLD and SIGALRM, blocked (see [`wait_with_timeout`]).
fn block_wait_signals() -> Result<SigSet, String> {
    let mut set = SigSet::empty();
    set.add(Signal::SIGCHLD);
    set.add(Signal::SIGALRM);
    set.thread_block().map_err(|e| format!("sigprocmask: {e}"))?;
    Ok(set)
}
