//! What the helper decides and opens on the host before it enters the
//! jail (Linux: the compiled confinement and the command's cgroup;
//! FreeBSD: the helper made the reaper of what the command starts), and
//! how it kills the command and cleans up after it.

#[cfg(target_os = "linux")]
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::{ForkResult, Pid};

use super::process::{Forked, SingleThreaded, fork_single_threaded};
use crate::runtime::exec::HelperRequest;

/// How long a killed command's group may take to empty before it is
/// left (it goes with the jail).
#[cfg(target_os = "linux")]
const REMOVE_WAIT: Duration = Duration::from_secs(2);

/// What the helper decides and opens on the host, before entering.
pub(super) struct Setup {
    #[cfg(target_os = "linux")]
    confine: crate::runtime::linux::confine::Prepared,
    #[cfg(target_os = "linux")]
    group: Option<crate::runtime::linux::cgroup::CommandGroup>,
}

impl Setup {
    #[cfg(target_os = "linux")]
    pub(super) fn before_entering(req: &HelperRequest) -> Result<Setup, String> {
        use crate::runtime::linux::{cgroup, confine};
        let c = req.confine.as_ref().ok_or("no confinement was given for the jail")?;
        let confine = confine::prepare(c)?;
        // The helper stays in the daemon's group: only the command is the
        // jail's (made in a group of its own below the jail's, see `fork`).
        let group = req.cgroup.as_deref().map(cgroup::CommandGroup::create).transpose()?;
        Ok(Setup { confine, group })
    }

    /// FreeBSD: the helper becomes the reaper of what the command starts,
    /// so that all of it can be killed, in whatever process group.
    #[cfg(not(target_os = "linux"))]
    pub(super) fn before_entering(_req: &HelperRequest) -> Result<Setup, String> {
        #[cfg(target_os = "freebsd")]
        crate::runtime::freebsd::reap_acquire()?;
        Ok(Setup {})
    }

    /// Forks the command's process: on Linux made in the command's own
    /// group (see `process::fork_into`).
    pub(super) fn fork(&self, single: &SingleThreaded) -> Result<Forked, String> {
        #[cfg(target_os = "linux")]
        if let Some(g) = &self.group {
            return super::process::fork_into(single, g.birthplace());
        }
        Ok(match fork_single_threaded(single)? {
            ForkResult::Parent { child } => Forked::Parent { child },
            ForkResult::Child => Forked::Child(Ok(())),
        })
    }

    /// Kills the command and everything it started: its cgroup (Linux),
    /// every descendant of the helper (FreeBSD, the reaper), and while it
    /// is not `reaped` the child and its process group (once reaped, its
    /// pid may be another process's).
    pub(super) fn kill(&self, child: Pid, reaped: bool) {
        #[cfg(target_os = "linux")]
        if let Some(g) = &self.group {
            g.kill();
        }
        #[cfg(target_os = "freebsd")]
        crate::runtime::freebsd::reap_kill();
        if !reaped {
            let _ = killpg(child, Signal::SIGKILL);
            let _ = nix::sys::signal::kill(child, Signal::SIGKILL);
        }
    }

    /// After the command: its group goes when nothing is left in it (what
    /// an `/etc/rc` started stays there, and goes with the jail).
    pub(super) fn after(&self, killed: bool) {
        #[cfg(target_os = "linux")]
        if let Some(g) = &self.group {
            g.remove(if killed { REMOVE_WAIT } else { Duration::ZERO });
        }
        #[cfg(not(target_os = "linux"))]
        let _ = killed;
    }

    /// Drops to the jail's confinement; `become_user` runs after the
    /// capabilities are cut and before the seccomp filter is installed.
    pub(super) fn confine(&self, become_user: impl FnOnce() -> Result<(), String>) -> Result<(), String> {
        #[cfg(target_os = "linux")]
        return crate::runtime::linux::confine::apply(&self.confine, become_user);
        #[cfg(not(target_os = "linux"))]
        become_user()
    }
}
