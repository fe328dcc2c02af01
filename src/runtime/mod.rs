//! The jail runtime: the kernel side of a jail (FreeBSD jail(2) and rctl;
//! on Linux, namespaces and cgroup v2). The iocage layer decides *what* to
//! run from the properties; a runtime knows *how*.
//!
//! Today the interface has what the read actions need (which jails are
//! running, with their jid); the lifecycle (start, stop, exec, limits) is
//! added on top of it by the lifecycle work.

use std::sync::Arc;

#[cfg(target_os = "freebsd")]
mod freebsd;
#[cfg(target_os = "linux")]
mod linux;

/// A running jail as the kernel knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningJail {
    /// Kernel name, `ioc-<uuid>` for iocage's jails.
    pub name: String,
    /// FreeBSD: the jid. Linux: the pid of the jail's init process.
    pub jid: i64,
}

/// A runtime operation that failed, with the jail it was about.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot {op} {jail}: {message}")]
pub struct RuntimeError {
    pub op: &'static str,
    pub jail: String,
    pub message: String,
}

/// What the service needs from the kernel's jails.
pub trait Runtime: Send + Sync + 'static {
    /// Every running jail (iocage's or not).
    fn running(&self) -> Result<Vec<RunningJail>, RuntimeError>;
}

/// The kernel name iocage gives a jail.
pub fn kernel_name(uuid: &str) -> String {
    format!("ioc-{uuid}")
}

/// The runtime of the platform this binary was built for.
pub fn native() -> Arc<dyn Runtime> {
    #[cfg(target_os = "freebsd")]
    return Arc::new(freebsd::FreeBsd::new());
    #[cfg(target_os = "linux")]
    return Arc::new(linux::Linux::new(linux::DEFAULT_STATE_DIR));
}
