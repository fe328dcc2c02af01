//! iocaged: a daemon that serves the sysadm "iocage" API by reading iocage's
//! ZFS properties through libzfs and driving jails directly.
//!
//! The request path, top to bottom: [`api`] (transport, envelope, auth,
//! dispatch) -> [`iocage`] (typed requests, the actions, the property model)
//! -> [`zfs`] (libzfs on its owner thread) and [`runtime`] (the kernel's
//! jails).

pub mod api;
pub mod auth;
pub mod config;
pub mod iocage;
pub mod runtime;
pub mod zfs;
