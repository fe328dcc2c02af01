//! The host tests' kit: the real server on a loopback port in front of
//! any iocage layer (`server`), and the in-memory ZFS and jail runtime
//! the real iocage layer runs against on the host (`fake_zfs`,
//! `fake_runtime`). Test code only: the daemon's binary holds none of it.

// Each test binary uses its own part of the kit.
#![allow(dead_code)]

pub mod fake_runtime;
pub mod fake_zfs;
pub mod server;
