//! iocaged: a daemon that serves the sysadm "iocage" API by reading iocage's
//! ZFS properties through libzfs and driving jails directly.
//!
//! Layout (each module opens with what it is for):
//! - [`zfs`]: safe libzfs, one owner thread.

pub mod zfs;
