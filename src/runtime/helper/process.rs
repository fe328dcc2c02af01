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

/// What a fork returned, in each process (see [`fork_into`]).
pub(crate) enum Forked {
    Parent {
        child: Pid,
    },
    /// In the child: in the group, or why it could not join it.
    Child(Result<(), String>),
}

/// fork(2) for the helpers, the child made in `group`: clone3(2) with
/// `CLONE_INTO_CGROUP` (Linux 5.7), so that no process is moved between
/// groups (see [`Birthplace`] for what a move costs). On a kernel without
/// it, a plain fork whose child joins the group first thing; the caller
/// sends a child that could not join away before it does anything else.
///
/// A group at its process limit (`pids.max`, the jail's `maxproc`) takes
/// no child: the error says so. (A move is not checked against that limit,
/// so on a kernel before 5.7 the child gets past it.)
///
/// [`Birthplace`]: crate::runtime::linux::cgroup::Birthplace
#[cfg(target_os = "linux")]
pub(crate) fn fork_into(
    proof: &SingleThreaded,
    group: &crate::runtime::linux::cgroup::Birthplace,
) -> Result<Forked, String> {
    use nix::errno::Errno;
    match clone_into_cgroup(proof, group.dir()) {
        Ok(0) => {
            group.pin();
            Ok(Forked::Child(Ok(())))
        }
        Ok(pid) => Ok(Forked::Parent { child: Pid::from_raw(pid) }),
        // Before 5.3 no clone3; before 5.7 no CLONE_INTO_CGROUP (an
        // unknown flag, or arguments longer than the kernel's). A seccomp
        // profile that refuses clone3 answers ENOSYS (Docker's) or EPERM
        // (which the kernel itself never gives root here).
        Err(Errno::ENOSYS | Errno::EINVAL | Errno::E2BIG | Errno::EPERM) => match fork_single_threaded(proof)? {
            ForkResult::Child => Ok(Forked::Child(group.join())),
            ForkResult::Parent { child } => Ok(Forked::Parent { child }),
        },
        Err(Errno::EAGAIN) => Err(format!(
            "cannot start a process in {}: {} (the jail's process limit, maxproc, may be reached)",
            group.path().display(),
            Errno::EAGAIN.desc()
        )),
        Err(e) => Err(format!("cannot start a process in {}: {}", group.path().display(), e.desc())),
    }
}

/// `struct clone_args` of `<linux/sched.h>` as of Linux 5.7
/// (`CLONE_ARGS_SIZE_VER2`, 88 bytes).
#[cfg(target_os = "linux")]
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// `CLONE_INTO_CGROUP` of `<linux/sched.h>` (the libc crate's is an int).
#[cfg(target_os = "linux")]
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// clone3(2) as fork(2), the child made in the cgroup `dir`: the child's
/// pid in the parent, 0 in the child.
#[cfg(target_os = "linux")]
fn clone_into_cgroup(_proof: &SingleThreaded, dir: std::os::fd::BorrowedFd<'_>) -> Result<i32, nix::errno::Errno> {
    use std::os::fd::AsRawFd;
    let fd = u64::try_from(dir.as_raw_fd()).map_err(|_| nix::errno::Errno::EBADF)?;
    let args =
        CloneArgs { flags: CLONE_INTO_CGROUP, exit_signal: libc::SIGCHLD as u64, cgroup: fd, ..Default::default() };
    // SAFETY: without CLONE_VM, CLONE_THREAD or a stack of its own, clone3
    // is fork(2): the child goes on from this call on its own copy of this
    // stack and memory. Sound for the reason fork_single_threaded is: the
    // process is single-threaded (`_proof`), so no lock held by another
    // thread is copied. What glibc's fork would also do in the child is
    // not needed: atfork handlers (`iocaged-jail` registers none; run as
    // the daemon's binary, its libraries' handlers are for a child that
    // goes on using them) and its cached thread id (read only by pthread
    // functions): the children are a command on its way to exec and a
    // jail's init, which only reaps, and neither starts a thread. The
    // kernel reads `args`, whose size is passed, during the call only.
    let rc = unsafe { libc::syscall(libc::SYS_clone3, &args as *const CloneArgs, std::mem::size_of::<CloneArgs>()) };
    nix::errno::Errno::result(rc).map(|pid| pid as i32)
}

/// Closes every descriptor above stderr the helper was started with. A
/// helper needs only its stdin, stdout and stderr, and nothing the daemon
/// left open by mistake (a descriptor without close-on-exec, say of a PAM
/// module's) may reach a jail through it: the jail's init never execs, so
/// close-on-exec would not keep it out.
pub(crate) fn close_inherited() -> Result<(), String> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: close_range reads no memory; at the helper's start no
        // object of this process owns a descriptor above 2 (the standard
        // library opens none before main).
        if unsafe { libc::close_range(3, libc::c_uint::MAX, 0) } == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if !matches!(e.raw_os_error(), Some(libc::ENOSYS | libc::EPERM)) {
            return Err(format!("closing inherited descriptors: {e}"));
        }
        // Before Linux 5.9 (or under a seccomp profile that refuses
        // close_range): one by one, as the host's /proc lists them (the
        // listing's own descriptor among them, closed twice: EBADF).
        let open: Vec<i32> = std::fs::read_dir("/proc/self/fd")
            .map_err(|e| format!("closing inherited descriptors: /proc/self/fd: {e}"))?
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .filter(|fd| *fd > 2)
            .collect();
        for fd in open {
            // SAFETY: as above; close touches no memory.
            unsafe { libc::close(fd) };
        }
    }
    #[cfg(target_os = "freebsd")]
    // SAFETY: as above; closefrom touches no memory.
    unsafe {
        libc::closefrom(3)
    };
    Ok(())
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
