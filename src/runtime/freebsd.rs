//! FreeBSD runtime: jails are jail(2) jails (the `jail` crate), limits are
//! rctl(8) rules (the `rctl` crate), mounts are nmount(2)s made on the
//! host under the jail's root before the jail is created, and unmounted in
//! reverse after it is removed.
//!
//! Compiled by the FreeBSD check on every change; it has not run on
//! FreeBSD yet (see the lifecycle issue's note for what to verify).

use std::path::Path;

use jail::RunningJail as KernelJail;
use jail::StoppedJail;
use jail::param::Value;
use nix::mount::{MntFlags, Nmount, unmount};

use super::{JailSpec, Limit, Mount, RunningJail, Runtime, RuntimeError};

pub struct FreeBsd;

impl FreeBsd {
    pub fn new() -> Self {
        FreeBsd
    }
}

impl Runtime for FreeBsd {
    fn running(&self) -> Result<Vec<RunningJail>, RuntimeError> {
        // A jail that vanishes between jail_nextjid and reading its name is
        // simply no longer running: skip it.
        Ok(KernelJail::all()
            .filter_map(|j| j.name().ok().map(|name| RunningJail { name, jid: i64::from(j.jid) }))
            .collect())
    }

    fn check(&self, spec: &JailSpec) -> Result<(), RuntimeError> {
        if !spec.limits.is_empty() && !rctl::State::check().is_enabled() {
            return Err(RuntimeError::new(
                "start",
                &spec.name,
                "rlimits=on needs RACCT/RCTL: set kern.racct.enable=1 in /boot/loader.conf and reboot",
            ));
        }
        for l in &spec.limits {
            l.rctl_rule(&spec.name)
                .parse::<rctl::Rule>()
                .map_err(|e| RuntimeError::new("start", &spec.name, format!("{l}: {e}")))?;
        }
        Ok(())
    }

    fn start(&self, spec: &JailSpec) -> Result<RunningJail, RuntimeError> {
        let fail = |m: String| RuntimeError::new("start", &spec.name, m);
        let mut mounted: Vec<&Path> = Vec::new();
        let undo_mounts = |mounted: &[&Path]| {
            for t in mounted.iter().rev() {
                let _ = unmount(*t, MntFlags::empty());
            }
        };
        for m in &spec.mounts {
            if let Err(e) = mount_one(m) {
                undo_mounts(&mounted);
                return Err(fail(format!("mounting {}: {e}", m.target().display())));
            }
            mounted.push(m.target());
        }
        let mut jail = StoppedJail::new(&spec.root)
            .name(spec.name.clone())
            .hostname(spec.hostname.clone())
            .param("host.hostuuid", Value::String(spec.hostuuid.clone()));
        for (k, v) in &spec.params {
            jail = jail.param(k.clone(), Value::Int(*v as libc::c_int));
        }
        if spec.vnet {
            // JAIL_SYS_NEW: a network stack of its own.
            jail = jail.param("vnet", Value::Int(1));
        }
        for ip in &spec.addresses {
            jail = jail.ip(*ip);
        }
        let running = match jail.start() {
            Ok(j) => j,
            Err(e) => {
                undo_mounts(&mounted);
                return Err(fail(format!("creating the jail: {e}")));
            }
        };
        let handle = RunningJail { name: spec.name.clone(), jid: i64::from(running.jid) };
        if let Err(e) = self.set_limits(&handle, &spec.limits, spec.cpuset.as_deref()) {
            let _ = running.kill();
            undo_mounts(&mounted);
            return Err(fail(e.message));
        }
        Ok(handle)
    }

    fn stop(&self, jail: &RunningJail, spec: &JailSpec) -> Result<(), RuntimeError> {
        let fail = |m: String| RuntimeError::new("stop", &jail.name, m);
        let jid = i32::try_from(jail.jid).map_err(|_| fail(format!("bad jid {}", jail.jid)))?;
        // jail_remove(2) kills every process in the jail; the crate then
        // removes the jail's rctl rules.
        if let Some(j) = KernelJail::from_jid(jid) {
            j.kill().map_err(|e| fail(format!("removing the jail: {e}")))?;
        }
        let mut errors = Vec::new();
        for m in spec.mounts.iter().rev() {
            match unmount(m.target(), MntFlags::empty()) {
                Ok(()) | Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOENT) => {}
                Err(e) => errors.push(format!("unmounting {}: {e}", m.target().display())),
            }
        }
        if errors.is_empty() { Ok(()) } else { Err(fail(errors.join("; "))) }
    }

    fn set_limits(&self, jail: &RunningJail, limits: &[Limit], cpuset: Option<&str>) -> Result<(), RuntimeError> {
        let fail = |m: String| RuntimeError::new("limit", &jail.name, m);
        let subject = rctl::Subject::jail_name(jail.name.clone());
        if rctl::State::check().is_enabled() {
            rctl::Filter::new().subject(&subject).remove_rules().map_err(|e| fail(format!("removing rules: {e}")))?;
        } else if !limits.is_empty() {
            return Err(fail(
                "rlimits=on needs RACCT/RCTL: set kern.racct.enable=1 in /boot/loader.conf and reboot".into(),
            ));
        }
        for l in limits {
            let rule: rctl::Rule = l.rctl_rule(&jail.name).parse().map_err(|e| fail(format!("{l}: {e}")))?;
            rule.apply().map_err(|e| fail(format!("{l}: {e}")))?;
        }
        if let Some(cpus) = cpuset {
            set_affinity(jail.jid, cpus).map_err(|e| fail(format!("cpuset {cpus}: {e}")))?;
        }
        Ok(())
    }
}

/// One nmount(2), as mount(8) would pass it.
fn mount_one(m: &Mount) -> Result<(), String> {
    let mut n = Nmount::new();
    let mut flags = MntFlags::empty();
    let ruleset;
    match m {
        Mount::Devfs { target, ruleset: r } => {
            ruleset = r.to_string();
            n.str_opt_owned("fstype", "devfs")
                .str_opt_owned("fspath", target)
                .str_opt_owned("ruleset", ruleset.as_str());
        }
        Mount::Fdescfs { target } => {
            n.str_opt_owned("fstype", "fdescfs").str_opt_owned("fspath", target);
        }
        Mount::Procfs { target } => {
            n.str_opt_owned("fstype", "procfs").str_opt_owned("fspath", target);
        }
        Mount::Fstab { source, target, fstype, options } => {
            n.str_opt_owned("fstype", fstype.as_str()).str_opt_owned("fspath", target);
            // mount_nullfs(8) names the directory shown "target"; the rest
            // take "from".
            n.str_opt_owned(if fstype == "nullfs" { "target" } else { "from" }, source.as_str());
            for o in options {
                match o.split_once('=') {
                    _ if o == "rw" => {}
                    _ if o == "ro" => flags |= MntFlags::MNT_RDONLY,
                    Some((k, v)) => {
                        n.str_opt_owned(k, v);
                    }
                    None => {
                        n.null_opt_owned(o.as_str());
                    }
                }
            }
        }
    }
    n.nmount(flags).map_err(|e| e.to_string())
}

/// Binds the jail to a CPU list (`0-3,5`) with cpuset_setaffinity(2).
fn set_affinity(jid: i64, cpus: &str) -> Result<(), String> {
    // SAFETY: cpuset_t is a plain array of integers; all zeroes is the
    // empty set.
    let mut set: libc::cpuset_t = unsafe { std::mem::zeroed() };
    for part in cpus.split(',') {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let (a, b): (usize, usize) = (a.parse().map_err(|_| "bad list")?, b.parse().map_err(|_| "bad list")?);
        for cpu in a..=b {
            if cpu >= libc::CPU_SETSIZE as usize {
                return Err(format!("CPU {cpu} is beyond this system's limit"));
            }
            // SAFETY: `cpu` is below CPU_SETSIZE, the number of bits in `set`.
            unsafe { libc::CPU_SET(cpu, &mut set) };
        }
    }
    // SAFETY: `set` is a valid cpuset_t of the size passed.
    let rc = unsafe {
        libc::cpuset_setaffinity(
            libc::CPU_LEVEL_WHICH,
            libc::CPU_WHICH_JAIL,
            jid as libc::id_t,
            std::mem::size_of::<libc::cpuset_t>(),
            &set,
        )
    };
    if rc == 0 { Ok(()) } else { Err(std::io::Error::last_os_error().to_string()) }
}

/// Attaches the calling (helper) process to the jail.
pub(crate) fn enter(jail: &RunningJail) -> Result<(), String> {
    let jid = i32::try_from(jail.jid).map_err(|_| format!("bad jid {}", jail.jid))?;
    KernelJail::from_jid_unchecked(jid).attach().map_err(|e| e.to_string())?;
    nix::unistd::chdir("/").map_err(|e| format!("chdir /: {e}"))
}
