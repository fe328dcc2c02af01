//! The FreeBSD runtime: jails are jail(2) jails made from the parameter
//! list of [`params`](super::params), limits are rctl(8) rules (the `rctl`
//! crate), mounts are nmount(2)s made on the host under the jail's root
//! before the jail is created. What start mounted is recorded
//! ([`record`](super::record)); stop does what jail(8) does
//! (usr.sbin/jail/jail.c, `stopcommands`: exec.stop, then SIGTERM and
//! stop.timeout, then jail_remove), waits until the jail is gone, and
//! unmounts the recorded filesystems by fsid.
//!
//! Compiled (and linked) by the FreeBSD check on every change; it has not
//! run on FreeBSD yet.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use jail::RunningJail as KernelJail;
use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::mount::{mount_confined, unmount_all};
use super::net;
use super::params;
use super::record::{self, AddedAlias, DEFAULT_STATE_DIR, Links, Mounted, Record};
use super::sys::{self, JailState};
use super::vnet;
use crate::runtime::{JailSpec, Limit, Network, RunningJail, Runtime, RuntimeError};

/// How long stop waits, after jail_remove, for the jail's processes to be
/// gone and the jail freed.
const GONE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a jail without processes may stay dying before its mounts are
/// unmounted anyway.
const DYING_GRACE: Duration = Duration::from_secs(2);
/// How often a wait looks again.
pub(super) const POLL: Duration = Duration::from_millis(25);

pub struct FreeBsd {
    state_dir: PathBuf,
}

impl FreeBsd {
    pub fn new() -> Self {
        FreeBsd { state_dir: PathBuf::from(DEFAULT_STATE_DIR) }
    }

    /// Removes jail `jid` (named `name`) the way jail(8) stops one, then
    /// unmounts `mounts`. Returns what went wrong, if anything; every step
    /// is tried.
    fn teardown(&self, name: &str, jid: i32, rec: &Record, term: Option<Duration>) -> Vec<String> {
        let mut errors = Vec::new();
        if let Some(t) = term {
            if let Err(e) = terminate(jid, t) {
                errors.push(e);
            }
        }
        // The jail's interfaces go before the jail (iocage's order): a
        // vnet being freed hands its interfaces back to the host under
        // their names inside the jail.
        errors.extend(vnet::undo(&rec.links));
        if let Err(e) = sys::jail_remove(jid) {
            errors.push(format!("removing the jail: {e}"));
        }
        if rctl::State::check().is_enabled() {
            if let Err(e) = rctl::Filter::new().subject(&rctl::Subject::jail_name(name.to_string())).remove_rules() {
                errors.push(format!("removing its rctl rules: {e}"));
            }
        }
        if let Err(e) = wait_gone(jid, name) {
            errors.push(e);
        }
        errors.extend(unmount_all(&rec.mounts));
        errors.extend(net::remove_aliases(&rec.aliases));
        errors
    }

    /// Unmounts what an earlier run of the jail left mounted (its stop did
    /// not finish), so that a start does not mount on top of it.
    fn clear_leftovers(&self, name: &str) -> Result<(), String> {
        let Some(old) = record::read(&self.state_dir, name)? else { return Ok(()) };
        let jid = i32::try_from(old.jid).map_err(|_| format!("bad jid {} in its record", old.jid))?;
        // jid 0: a start that never made its jail.
        if jid != 0 && sys::jail_state(jid, name)? != JailState::Gone {
            return Err(format!("its earlier run (jid {jid}) is still being removed"));
        }
        let mut errors = unmount_all(&old.mounts);
        errors.extend(net::remove_aliases(&old.aliases));
        errors.extend(vnet::undo(&old.links));
        if !errors.is_empty() {
            return Err(format!("its earlier run left these: {}", errors.join("; ")));
        }
        record::remove(&self.state_dir, name)
    }
}

impl Default for FreeBsd {
    fn default() -> Self {
        FreeBsd::new()
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
        let fail = |m: String| RuntimeError::new("start", &spec.name, m);
        if !spec.limits.is_empty() && !rctl::State::check().is_enabled() {
            return Err(fail(
                "rlimits=on needs RACCT/RCTL: set kern.racct.enable=1 in /boot/loader.conf and reboot".into(),
            ));
        }
        for l in &spec.limits {
            l.rctl_rule(&spec.name).parse::<rctl::Rule>().map_err(|e| fail(format!("{l}: {e}")))?;
        }
        // Whether the kernel knows every parameter is settled at start
        // (after loading filesystems); here only the values.
        params::build(spec, |_| true).map_err(|e| fail(e.to_string()))?;
        Ok(())
    }

    fn start(&self, spec: &JailSpec) -> Result<RunningJail, RuntimeError> {
        let fail = |m: String| RuntimeError::new("start", &spec.name, m);
        self.clear_leftovers(&spec.name).map_err(fail)?;
        for fs in params::filesystems_to_load(spec, sys::param_exists) {
            sys::load_filesystem(&fs).map_err(|e| fail(format!("allow.mount.{fs}: {e}")))?;
        }
        let list = params::build(spec, sys::param_exists).map_err(|e| fail(e.to_string()))?;
        let root = spec.root.canonicalize().map_err(|e| fail(format!("{}: {e}", spec.root.display())))?;
        // jail(8)'s order: the addresses, then the mounts, then the jail.
        // Recorded as they are added (jid 0: no jail yet), so that a start
        // killed part-way is undone by the next (`clear_leftovers`).
        let mut unrecorded = None;
        let mut early = |added: &[AddedAlias]| {
            let rec = Record {
                jid: 0,
                exec_fib: spec.jail.exec_fib,
                mounts: Vec::new(),
                aliases: added.to_vec(),
                links: Links::default(),
            };
            if let Err(e) = record::write(&self.state_dir, &spec.name, &rec) {
                unrecorded.get_or_insert(e);
            }
        };
        let aliases = match &spec.network {
            Network::Shared { addresses } => net::add_aliases(addresses, &mut early).map_err(fail)?,
            Network::Vnet(_) => Vec::new(),
        };
        if let Some(e) = unrecorded {
            let left = net::remove_aliases(&aliases);
            if left.is_empty() {
                let _ = record::remove(&self.state_dir, &spec.name);
            }
            return Err(fail(with_leftovers(format!("recording its addresses: {e}"), &left)));
        }
        let forget = |left: &[String]| {
            if left.is_empty() {
                let _ = record::remove(&self.state_dir, &spec.name);
            }
        };
        let mut mounted: Vec<Mounted> = Vec::new();
        for m in &spec.mounts {
            match mount_confined(&root, m) {
                Ok(r) => mounted.push(r),
                Err(e) => {
                    let mut left = unmount_all(&mounted);
                    left.extend(net::remove_aliases(&aliases));
                    forget(&left);
                    return Err(fail(with_leftovers(format!("mounting {}: {e}", m.target().display()), &left)));
                }
            }
        }
        let jid = match sys::jail_create(&list) {
            Ok(jid) => jid,
            Err(e) => {
                let mut left = unmount_all(&mounted);
                left.extend(net::remove_aliases(&aliases));
                forget(&left);
                return Err(fail(with_leftovers(format!("creating the jail: {e}"), &left)));
            }
        };
        let handle = RunningJail { name: spec.name.clone(), jid: i64::from(jid) };
        let mut rec =
            Record { jid: handle.jid, exec_fib: spec.jail.exec_fib, mounts: mounted, aliases, links: Links::default() };
        if let Network::Vnet(v) = &spec.network {
            // Recorded as they are made (with the jid: stop and the next
            // start's clear_leftovers find them).
            let mut unrecorded = None;
            let mut links = Links::default();
            let made = {
                let base = rec.clone();
                let mut write = |l: &Links| {
                    let r = Record { links: l.clone(), ..base.clone() };
                    if let Err(e) = record::write(&self.state_dir, &spec.name, &r) {
                        unrecorded.get_or_insert(e);
                    }
                };
                vnet::setup(v, &handle, net::default_interface, &mut links, &mut write)
            };
            rec.links = links;
            if let Err(e) = made.and_then(|()| unrecorded.map_or(Ok(()), |e| Err(format!("recording it: {e}")))) {
                let left = self.teardown(&spec.name, jid, &rec, None);
                if left.is_empty() {
                    let _ = record::remove(&self.state_dir, &spec.name);
                }
                return Err(fail(with_leftovers(format!("setting up its network: {e}"), &left)));
            }
        }
        let done = record::write(&self.state_dir, &spec.name, &rec)
            .map_err(|e| format!("recording it: {e}"))
            .and_then(|()| self.set_limits(&handle, &spec.limits, spec.cpuset.as_deref()).map_err(|e| e.message));
        if let Err(e) = done {
            let left = self.teardown(&spec.name, jid, &rec, None);
            if left.is_empty() {
                let _ = record::remove(&self.state_dir, &spec.name);
            }
            return Err(fail(with_leftovers(e, &left)));
        }
        Ok(handle)
    }

    fn stop(&self, jail: &RunningJail, spec: &JailSpec) -> Result<(), RuntimeError> {
        let fail = |m: String| RuntimeError::new("stop", &jail.name, m);
        let jid = i32::try_from(jail.jid).map_err(|_| fail(format!("bad jid {}", jail.jid)))?;
        let rec = match record::read(&self.state_dir, &jail.name).map_err(fail)? {
            Some(r) if r.jid == jail.jid => r,
            // Started without a record (by an earlier version), or by a
            // start killed before it recorded the jail (its early record,
            // jid 0, has the aliases it added): what the mount table shows
            // on exactly the spec's mount points.
            early => {
                let aliases = early.filter(|r| r.jid == 0).map(|r| r.aliases).unwrap_or_default();
                let real = spec.root.canonicalize().unwrap_or_else(|_| spec.root.clone());
                let targets: Vec<PathBuf> = spec
                    .mounts
                    .iter()
                    .map(|m| m.target().strip_prefix(&spec.root).map_or_else(|_| m.target().clone(), |r| real.join(r)))
                    .collect();
                let mounts = record::mounted_on(&targets, &sys::mount_table().map_err(fail)?);
                // A VNET jail's host ends have the names its start gave them.
                let host_links = match &spec.network {
                    Network::Vnet(v) => v.interfaces.iter().map(|i| i.host_name(jail.jid)).collect(),
                    Network::Shared { .. } => Vec::new(),
                };
                let links = Links { host_links };
                Record { jid: jail.jid, exec_fib: spec.jail.exec_fib, mounts, aliases, links }
            }
        };
        let errors = self.teardown(&jail.name, jid, &rec, spec.jail.stop_timeout);
        if !errors.is_empty() {
            return Err(fail(errors.join("; ")));
        }
        record::remove(&self.state_dir, &jail.name).map_err(fail)
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

    /// RACCT's accounts of the jail (`rctl_get_racct`, `jail:<name>:`):
    /// `cputime` (whole seconds), `memoryuse`, `maxproc`; and the `deny`
    /// limits on the last two among RCTL's rules for it
    /// (`rctl_get_limits`, amounts in full: [`crate::runtime::limits::denied`]).
    fn usage(&self, jail: &RunningJail) -> Result<crate::runtime::Usage, RuntimeError> {
        let fail = |m: String| RuntimeError::new("account", &jail.name, m);
        if !rctl::State::check().is_enabled() {
            return Err(fail("RACCT is off: set kern.racct.enable=1 in /boot/loader.conf and reboot".into()));
        }
        let subject = rctl::Subject::jail_name(jail.name.clone());
        let used = subject.usage().map_err(|e| fail(e.to_string()))?;
        let of = |r: rctl::Resource| used.get(&r).copied().unwrap_or(0) as u64;
        // `String::from(&rule)` writes the amount in full (`to_string`
        // rounds it: `128m`).
        let rules: Vec<String> = (&subject.limits().map_err(|e| fail(format!("its limits: {e}")))?)
            .into_iter()
            .map(|r| String::from(&r))
            .collect();
        Ok(crate::runtime::Usage {
            cpu_seconds: of(rctl::Resource::CpuTime) as f64,
            memory_bytes: of(rctl::Resource::MemoryUse),
            processes: of(rctl::Resource::MaxProcesses),
            memory_limit_bytes: crate::runtime::limits::denied(&rules, &jail.name, "memoryuse"),
            processes_limit: crate::runtime::limits::denied(&rules, &jail.name, "maxproc"),
        })
    }
}

fn with_leftovers(e: String, left: &[String]) -> String {
    if left.is_empty() { e } else { format!("{e}; undoing it: {}", left.join("; ")) }
}

/// jail(8)'s stop.timeout phase (usr.sbin/jail/command.c, `term_procs`):
/// SIGTERM to every process in the jail, then up to `timeout` for them to
/// exit. Those still running are then killed by jail_remove.
fn terminate(jid: i32, timeout: Duration) -> Result<(), String> {
    for pid in sys::processes_in(jid)? {
        match kill(Pid::from_raw(pid), Signal::SIGTERM) {
            Ok(()) | Err(Errno::ESRCH) => {}
            Err(e) => return Err(format!("SIGTERM to {pid}: {e}")),
        }
    }
    let deadline = Instant::now() + timeout;
    while !sys::processes_in(jid)?.is_empty() && Instant::now() < deadline {
        std::thread::sleep(POLL);
    }
    Ok(())
}

/// After jail_remove, which only starts the removal: waits (bounded by
/// [`GONE_TIMEOUT`]) until no process of the jail is left and the kernel
/// has freed it. A jail that stays dying without processes (held by
/// sockets in TIME_WAIT) no longer uses its mounts; it is given
/// [`DYING_GRACE`], not more.
fn wait_gone(jid: i32, name: &str) -> Result<(), String> {
    let start = Instant::now();
    let mut quiet: Option<Instant> = None;
    loop {
        let left = sys::processes_in(jid)?;
        if left.is_empty() {
            if sys::jail_state(jid, name)? == JailState::Gone {
                return Ok(());
            }
            if quiet.get_or_insert_with(Instant::now).elapsed() >= DYING_GRACE {
                return Ok(());
            }
        }
        if start.elapsed() >= GONE_TIMEOUT {
            return if left.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "{} of its processes still had not exited {} s after removal",
                    left.len(),
                    GONE_TIMEOUT.as_secs()
                ))
            };
        }
        std::thread::sleep(POLL);
    }
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

/// Attaches the calling (helper) process to the jail, first taking the
/// jail's FIB (`exec_fib` as recorded at its start) as jail(8) does for
/// exec.fib: setfib(2), then jail_attach(2) (usr.sbin/jail/command.c,
/// `run_command`).
pub(crate) fn enter(jail: &RunningJail) -> Result<(), String> {
    let jid = i32::try_from(jail.jid).map_err(|_| format!("bad jid {}", jail.jid))?;
    if let Some(r) = record::read(Path::new(DEFAULT_STATE_DIR), &jail.name)? {
        if r.jid == jail.jid {
            sys::set_fib(r.exec_fib)?;
        }
    }
    KernelJail::from_jid_unchecked(jid).attach().map_err(|e| e.to_string())?;
    nix::unistd::chdir("/").map_err(|e| format!("chdir /: {e}"))
}
