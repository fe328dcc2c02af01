//! iocaged: a daemon that serves the sysadm "iocage" API by reading iocage's
//! ZFS properties through libzfs and driving jails directly.
//!
//! The request path, top to bottom: [`api`] (transport, envelope, auth,
//! dispatch) -> [`iocage`] (typed requests, the actions, the property model)
//! -> [`zfs`] (libzfs on its owner thread) and [`runtime`] (the kernel's
//! jails).

#![deny(clippy::undocumented_unsafe_blocks)]

pub mod api;
pub mod auth;
pub mod config;
pub mod host;
pub mod iocage;
pub mod memory;
pub mod runtime;
pub mod zfs;

/// This very binary, to start helper processes with (`iocaged jail-exec`,
/// `jail-init`, `zfs-send`). On Linux `/proc/self/exe` still works when the
/// file was replaced by an upgrade.
pub(crate) fn self_exe() -> std::path::PathBuf {
    if cfg!(target_os = "linux") {
        std::path::PathBuf::from("/proc/self/exe")
    } else {
        std::env::current_exe().unwrap_or_else(|_| std::path::PathBuf::from("/usr/local/sbin/iocaged"))
    }
}
