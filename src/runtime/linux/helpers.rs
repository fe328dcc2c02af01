//! The `jail-exec` helpers running for each jail (commands, consoles, the
//! rc), held by pidfd, so that a stop can tell them to stop first.
//!
//! A helper stays outside the jail's cgroup (it makes its command in a
//! group of its own below the jail's, see `cgroup::Birthplace`), so
//! signalling the jail's groups does not reach it. Told to stop (SIGTERM),
//! a helper kills its command with everything it started at once and
//! answers that it was stopped: a stop does not wait its `stop_timeout` on
//! a console's shell or a command that ignores SIGTERM, and the client
//! learns why its command ended. (On FreeBSD the helper is in the jail,
//! and jail(8)'s stop signals it with the rest.)
//!
//! A pidfd names one process for good: a helper that ended, and whose pid
//! another process has taken since, is never signalled.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The helpers running, by jail name.
#[derive(Default)]
pub(super) struct Helpers {
    jails: Mutex<HashMap<String, Jail>>,
    next: AtomicU64,
}

/// One jail's running helpers, and whether it is being stopped.
#[derive(Default)]
struct Jail {
    running: Vec<(u64, OwnedFd)>,
    stopping: bool,
}

/// A helper's place in [`Helpers`], given up when dropped (once the
/// daemon has reaped it).
pub(super) struct Registered<'a> {
    helpers: &'a Helpers,
    jail: String,
    id: u64,
}

impl Helpers {
    /// Holds the helper `pid`, a child of this process not reaped yet (so
    /// the pid is still its); one registered while its jail is being
    /// stopped is told to stop at once. `Ok(None)` when the kernel has no
    /// pidfds (before 5.3): a stop then gives the command `stop_timeout`
    /// like the jail's own processes, and does not wait for the helper.
    pub(super) fn register(&self, jail: &str, pid: u32) -> Result<Option<Registered<'_>>, String> {
        let fd = match pidfd_open(pid) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => return Ok(None),
            Err(e) => return Err(format!("watching the helper (pidfd_open): {e}")),
        };
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let mut jails = self.lock();
        let entry = jails.entry(jail.to_string()).or_default();
        if entry.stopping {
            let _ = pidfd_send_signal(&fd, libc::SIGTERM);
        }
        entry.running.push((id, fd));
        Ok(Some(Registered { helpers: self, jail: jail.to_string(), id }))
    }

    /// Marks `jail` as being stopped and sends SIGTERM to every helper
    /// running for it (and to any registered from now on, until
    /// [`Helpers::stopped`]); how many were told.
    pub(super) fn stopping(&self, jail: &str) -> usize {
        let mut jails = self.lock();
        let entry = jails.entry(jail.to_string()).or_default();
        entry.stopping = true;
        entry.running.iter().filter(|(_, fd)| pidfd_send_signal(fd, libc::SIGTERM).is_ok()).count()
    }

    /// Waits up to `bound` for the jail's helpers to end (a helper holds
    /// the jail's mount and network namespaces while it lives; its pidfd
    /// becomes readable when it has ended, reaped or not), then ends the
    /// jail's stop; whether none was left.
    pub(super) fn stopped(&self, jail: &str, bound: Duration) -> bool {
        let deadline = Instant::now() + bound;
        loop {
            let alive = self.lock().get(jail).map_or(0, |j| j.running.iter().filter(|(_, fd)| !ended(fd)).count());
            if alive == 0 || Instant::now() >= deadline {
                let mut jails = self.lock();
                if let Some(j) = jails.get_mut(jail) {
                    j.stopping = false;
                    if j.running.is_empty() {
                        jails.remove(jail);
                    }
                }
                return alive == 0;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Jail>> {
        self.jails.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        let mut jails = self.helpers.lock();
        if let Some(j) = jails.get_mut(&self.jail) {
            j.running.retain(|(id, _)| *id != self.id);
            if j.running.is_empty() && !j.stopping {
                jails.remove(&self.jail);
            }
        }
    }
}

/// Whether the process `fd` names has ended (its pidfd polls readable).
fn ended(fd: &OwnedFd) -> bool {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use std::os::fd::AsFd;
    let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
    poll(&mut fds, PollTimeout::ZERO).is_ok_and(|n| n > 0)
}

/// pidfd_open(2): a descriptor naming process `pid` (close-on-exec).
fn pidfd_open(pid: u32) -> std::io::Result<OwnedFd> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| std::io::Error::from_raw_os_error(libc::ESRCH))?;
    // SAFETY: pidfd_open takes a pid and flags and touches no memory of
    // this process.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let fd = i32::try_from(fd).map_err(|_| std::io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: a descriptor pidfd_open just returned is open and no other
    // owner has it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// pidfd_send_signal(2): `signal` to the process `fd` names (ESRCH when it
/// has ended).
fn pidfd_send_signal(fd: &OwnedFd, signal: libc::c_int) -> std::io::Result<()> {
    // SAFETY: with no siginfo (NULL) the call reads no memory of this
    // process; `fd` is open for the call.
    let rc = unsafe {
        libc::syscall(libc::SYS_pidfd_send_signal, fd.as_raw_fd(), signal, std::ptr::null::<libc::siginfo_t>(), 0)
    };
    if rc < 0 { Err(std::io::Error::last_os_error()) } else { Ok(()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stop_signals_the_jail_s_helpers_running_or_to_come_and_waits_for_them() {
        use std::os::unix::process::ExitStatusExt;
        let helpers = Helpers::default();
        let spawn = || std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let (mut a, mut b, mut other) = (spawn(), spawn(), spawn());
        let ra = helpers.register("j", a.id()).unwrap().expect("pidfds (Linux 5.3)");
        let rb = helpers.register("j", b.id()).unwrap().unwrap();
        let ro = helpers.register("other", other.id()).unwrap().unwrap();
        // One ended and was reaped: its place is given up with it.
        let _ = b.kill();
        let _ = b.wait();
        drop(rb);
        assert_eq!(helpers.stopping("j"), 1);
        assert_eq!(a.wait().unwrap().signal(), Some(libc::SIGTERM));
        // Registered while the jail is being stopped: told at once.
        let mut late = spawn();
        let rl = helpers.register("j", late.id()).unwrap().unwrap();
        assert_eq!(late.wait().unwrap().signal(), Some(libc::SIGTERM));
        // One that does not end when told: the stop waits for it within
        // its bound, and says it was left.
        let mut deaf = std::process::Command::new("sh").args(["-c", "trap '' TERM; sleep 30"]).spawn().unwrap();
        // (Its trap set before it is told.)
        std::thread::sleep(Duration::from_millis(300));
        let rd = helpers.register("j", deaf.id()).unwrap().unwrap();
        let since = Instant::now();
        assert!(!helpers.stopped("j", Duration::from_millis(300)), "a helper was left, yet the stop said none");
        assert!(since.elapsed() >= Duration::from_millis(300), "the stop did not wait");
        let _ = deaf.kill();
        let _ = deaf.wait();
        // Ended, though not given up yet (the daemon still reads what it
        // said): nothing is left to wait for.
        assert!(helpers.stopping("j") <= 3);
        assert!(helpers.stopped("j", Duration::from_secs(5)));
        drop((ra, rl, rd));
        assert!(helpers.lock().get("j").is_none(), "the stopped jail is forgotten");
        // After the stop, a helper of the jail is not told anything.
        let mut after = spawn();
        let rafter = helpers.register("j", after.id()).unwrap().unwrap();
        std::thread::sleep(Duration::from_millis(200));
        assert!(after.try_wait().unwrap().is_none(), "a helper registered after the stop was signalled");
        assert!(other.try_wait().unwrap().is_none(), "another jail's helper was signalled");
        for c in [&mut after, &mut other] {
            let _ = c.kill();
            let _ = c.wait();
        }
        // Ended but not given up yet: the pidfd still names it, and the
        // signal finds no process (ESRCH), not the pid's next owner.
        assert_eq!(helpers.stopping("other"), 0);
        assert!(helpers.stopped("other", Duration::ZERO));
        drop((ro, rafter));
    }
}
