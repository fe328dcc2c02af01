//! What the helper, a single-threaded process, may do that a threaded
//! one may not: fork and leave with `_exit`; and how it waits without a
//! thread: blocked signals taken with sigwait(2), woken by an interval
//! timer, reaping every descendant that ended.

use std::time::Duration;

use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid};

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
pub(super) fn tick(every: Option<Duration>) -> Result<(), String> {
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

/// SIGCHLD, SIGALRM and SIGTERM, blocked (see [`super::wait_bounded`]).
pub(super) fn block_wait_signals() -> Result<SigSet, String> {
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
