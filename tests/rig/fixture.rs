//! Builds iocage layouts on the test pool with the `zfs` command, the way
//! iocage 1.7.x left them: `POOL/iocage` (mountpoint /iocage), `.defaults`,
//! and one dataset per jail with `org.freebsd.iocage:*` user properties.

use super::host::{MULTICALL, remove_running_jails};
use super::{cmd, pool, zfs};

pub const PREFIX: &str = "org.freebsd.iocage:";

pub struct Fixture {
    pub pool: String,
}

impl Fixture {
    /// An empty iocage layout on the test pool, marked active (user property).
    pub fn fresh() -> Fixture {
        let f = Fixture::inactive();
        zfs(&["set", "org.freebsd.ioc:active=yes", &f.pool]);
        f
    }

    /// An empty iocage layout on a pool that carries no activation marker.
    pub fn inactive() -> Fixture {
        let pool = pool();
        remove_running_jails();
        let root = format!("{pool}/iocage");
        if std::process::Command::new("zfs").args(["list", &root]).output().is_ok_and(|o| o.status.success()) {
            // -R: a failed test may have left clones of it elsewhere.
            zfs(&["destroy", "-R", &root]);
        }
        zfs(&["inherit", "org.freebsd.ioc:active", &pool]);
        cmd("zpool", &["set", "comment=", &pool]);
        zfs(&["create", "-o", "mountpoint=/iocage", &root]);
        zfs(&["create", &format!("{root}/.defaults")]);
        zfs(&["create", &format!("{root}/jails")]);
        Fixture { pool }
    }

    pub fn defaults_dataset(&self) -> String {
        format!("{}/iocage/.defaults", self.pool)
    }

    /// Sets iocage properties (API names) on `.defaults`; `-` values are skipped.
    pub fn set_defaults(&self, props: &[(String, String)]) {
        let mut args = vec!["set".to_string()];
        args.extend(props.iter().filter(|(_, v)| v != "-").map(|(k, v)| format!("{PREFIX}{k}={v}")));
        args.push(self.defaults_dataset());
        if args.len() > 2 {
            zfs(&args.iter().map(String::as_str).collect::<Vec<_>>());
        }
    }

    /// Creates a jail dataset (and its `root`) with iocage properties.
    pub fn jail(&self, uuid: &str, props: &[(&str, &str)]) -> String {
        let name = format!("{}/iocage/jails/{uuid}", self.pool);
        let mut args = vec!["create".to_string()];
        for (k, v) in props.iter().filter(|(_, v)| *v != "-") {
            args.push("-o".into());
            args.push(format!("{PREFIX}{k}={v}"));
        }
        args.push(name.clone());
        zfs(&args.iter().map(String::as_str).collect::<Vec<_>>());
        zfs(&["create", &format!("{name}/root")]);
        name
    }

    /// A fetched release: `POOL/iocage/releases/<rel>/root` with a small
    /// tree (`/etc/rc`, `/bin/marker`) and `extra_mib` MiB of random data.
    pub fn release(&self, rel: &str, extra_mib: usize) -> String {
        let root = format!("{}/iocage/releases/{rel}/root", self.pool);
        zfs(&["create", "-p", &root]);
        let dir = format!("/iocage/releases/{rel}/root");
        std::fs::create_dir_all(format!("{dir}/etc")).unwrap();
        std::fs::create_dir_all(format!("{dir}/bin")).unwrap();
        std::fs::write(format!("{dir}/etc/rc"), "#!/bin/sh\nexec sleep 100000\n").unwrap();
        std::fs::write(format!("{dir}/bin/marker"), rel).unwrap();
        if extra_mib > 0 {
            cmd(
                "dd",
                &[
                    "if=/dev/urandom",
                    &format!("of={dir}/data.bin"),
                    "bs=1M",
                    &format!("count={extra_mib}"),
                    "status=none",
                ],
            );
        }
        root
    }

    /// A release made from the host's static multi-call binary
    /// ([`MULTICALL`]: busybox on Linux, /rescue on FreeBSD): enough
    /// of a system for jails to start (`/etc/rc` leaves a `sleep` running and
    /// writes the hostname it sees to `/tmp/rc.ran`; `/etc/rc.shutdown`
    /// writes `/tmp/rc.shutdown`), with users root and alice (uid 1001).
    pub fn static_release(&self, rel: &str) -> String {
        let root = format!("{}/iocage/releases/{rel}/root", self.pool);
        zfs(&["create", "-p", &root]);
        let dir = format!("/iocage/releases/{rel}/root");
        for d in ["bin", "etc", "dev", "proc", "tmp", "root", "home/alice", "mnt", "var/run"] {
            std::fs::create_dir_all(format!("{dir}/{d}")).unwrap();
        }
        let (binary, programs) = MULTICALL;
        std::fs::copy(binary, format!("{dir}/bin/multicall")).unwrap_or_else(|e| panic!("{binary}: {e}"));
        for program in programs {
            std::os::unix::fs::symlink("multicall", format!("{dir}/bin/{program}")).unwrap();
        }
        let files = [
            ("etc/rc", "#!/bin/sh\nhostname > /tmp/rc.ran\nsleep 100000 &\n"),
            ("etc/rc.shutdown", "#!/bin/sh\necho down > /tmp/rc.shutdown\n"),
            ("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nalice:x:1001:1001:Alice:/home/alice:/bin/sh\n"),
            ("etc/group", "wheel:x:0:root\nalice:x:1001:\nstaff:x:20:alice\n"),
        ];
        for (f, text) in files {
            std::fs::write(format!("{dir}/{f}"), text).unwrap();
        }
        root
    }

    /// Base pieces for basejails: `POOL/iocage/base/<rel>/root/<piece>`.
    pub fn base(&self, rel: &str, pieces: &[&str]) {
        for p in pieces {
            let ds = format!("{}/iocage/base/{rel}/root/{p}", self.pool);
            zfs(&["create", "-p", &ds]);
            std::fs::write(format!("/iocage/base/{rel}/root/{p}/piece"), p).unwrap();
        }
    }

    /// Every locally set or received property on the pool, and its comment:
    /// what a read action must leave exactly as it was.
    pub fn state(&self) -> String {
        let props = zfs(&["get", "-H", "-r", "-s", "local,received", "-o", "name,property,value", "all", &self.pool]);
        let comment = cmd("zpool", &["get", "-H", "-o", "value", "comment", &self.pool]);
        format!("{props}\ncomment={comment}")
    }
}
