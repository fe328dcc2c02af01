//! Helpers for tests that run inside the real-ZFS guest (tests/vm/run.sh).
//!
//! Every guest test starts with [`pool`], which fails the test unless the
//! OpenZFS kernel module is loaded and the rig named a pool: no guest test
//! can pass on a machine without real ZFS. The `zfs` command is used here as
//! an independent oracle to set up and to check what iocaged did.

#![allow(dead_code)]

pub mod client;
pub mod conformance;
pub mod daemon;
pub mod fixture;
pub mod host;
pub mod mirror;
pub mod seed;
pub mod users;

use std::process::Command;

/// The version of the loaded ZFS kernel module (panics when there is none).
pub fn kernel_zfs_version() -> String {
    let version = if cfg!(target_os = "freebsd") {
        cmd("sysctl", &["-n", "vfs.zfs.version.module"])
    } else {
        std::fs::read_to_string("/sys/module/zfs/version")
            .expect("the OpenZFS kernel module is not loaded: guest tests run only in tests/vm/run.sh")
    };
    version.trim().to_string()
}

/// The test pool, after asserting that the real kernel module is loaded.
pub fn pool() -> String {
    assert!(!kernel_zfs_version().is_empty(), "no ZFS kernel module version");
    std::env::var("IOCAGED_TEST_POOL").expect("IOCAGED_TEST_POOL is not set: run through tests/vm/run.sh")
}

/// One REST request to the daemon, which must be answered 200; returns
/// the action's part of the reply (`args.<action>`).
pub fn call(d: &daemon::Daemon, args: serde_json::Value) -> serde_json::Value {
    let r = client::rest(d.rest, &args);
    assert_eq!(r.status, 200, "{}", r.raw);
    let action = args["action"].as_str().unwrap().to_string();
    r.body["args"][action].clone()
}

/// Runs the `zfs` (or `zpool`) command and returns its stdout; panics with
/// its stderr when it fails.
pub fn cmd(prog: &str, args: &[&str]) -> String {
    let out = Command::new(prog).args(args).output().unwrap_or_else(|e| panic!("cannot run {prog}: {e}"));
    assert!(out.status.success(), "{prog} {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn zfs(args: &[&str]) -> String {
    cmd("zfs", args)
}

/// `zfs get -H -p -o value PROP NAME`, trimmed.
pub fn get(name: &str, prop: &str) -> String {
    zfs(&["get", "-H", "-p", "-o", "value", prop, name]).trim().to_string()
}

/// Every dataset and snapshot under `root`, sorted (to compare before/after).
pub fn tree(root: &str) -> Vec<String> {
    let mut v: Vec<String> =
        zfs(&["list", "-H", "-o", "name", "-t", "all", "-r", root]).lines().map(str::to_string).collect();
    v.sort();
    v
}

/// A dataset of its own for one test, destroyed (recursively) at the end.
pub struct Scratch {
    pub name: String,
}

impl Scratch {
    pub fn new(test: &str) -> Scratch {
        let name = format!("{}/{}", pool(), test);
        zfs(&["create", &name]);
        Scratch { name }
    }

    /// `self.name/rel`
    pub fn path(&self, rel: &str) -> String {
        format!("{}/{}", self.name, rel)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = Command::new("zfs").args(["destroy", "-R", &self.name]).status();
    }
}
