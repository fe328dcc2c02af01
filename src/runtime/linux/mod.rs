//! Linux runtime: a jail is a set of new PID, mount, UTS and IPC namespaces
//! (and a network namespace unless it shares the host's network, see
//! [`confine::confinement`]) around an init process, rooted at the jail's
//! dataset, in a cgroup of its own ([`cgroup`]), its processes confined by
//! capabilities and a seccomp filter ([`confine`], which also states the
//! rules every helper that runs as root near a jail follows).
//!
//! The kernel has no registry of "jails", so the runtime keeps one: a
//! directory per running jail under the state directory holding its
//! init's pid and start time. A jail is running while that process lives;
//! that is also how running jails are found again after the daemon
//! restarts. The jail's mounts live in its own mount namespace and vanish
//! with it; stop kills the init (the kernel then kills everything else in
//! the PID namespace) and empties and removes the cgroup.

use std::fs;
use std::io::ErrorKind;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sched::CloneFlags;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::exec;
use super::{ExecOutput, ExecSpec, JailSpec, Limit, Mount, RunningJail, Runtime, RuntimeError};

pub mod cgroup;
pub mod confine;
mod helpers;
pub mod init;
pub mod net;

pub const DEFAULT_STATE_DIR: &str = "/run/iocaged/jails";
pub const DEFAULT_CGROUP_DIR: &str = "/sys/fs/cgroup/iocaged";

pub struct Linux {
    state_dir: PathBuf,
    cgroups: cgroup::Cgroups,
    helpers: helpers::Helpers,
}

impl Linux {
    pub fn new(state_dir: impl Into<PathBuf>, cgroup_dir: impl Into<PathBuf>) -> Self {
        Linux {
            state_dir: state_dir.into(),
            cgroups: cgroup::Cgroups::new(cgroup_dir),
            helpers: helpers::Helpers::default(),
        }
    }

    /// Claims the jail's name: its state directory, made atomically, so
    /// that two starts of one jail cannot both go ahead (the service's
    /// turns already prevent that; this holds without them). A directory
    /// left by a jail that died is taken over.
    fn claim(&self, name: &str) -> Result<(), String> {
        let dir = self.state_dir.join(name);
        fs::create_dir_all(&self.state_dir).map_err(|e| format!("{}: {e}", self.state_dir.display()))?;
        match fs::create_dir(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                let record = fs::read_to_string(dir.join("pid")).unwrap_or_default();
                match live_pid(&record) {
                    Some(pid) => Err(format!("it is already running (init pid {pid})")),
                    // A start still setting it up has not written the pid yet;
                    // one that died doing so (the daemon was killed) left it
                    // empty for good.
                    None if record.is_empty() && !stale(&dir) => Err("another start of it is under way".into()),
                    None => {
                        // A start killed part-way: its init (if it got
                        // that far, recorded in STARTING) and its cgroup
                        // go, then what it made on the host's network.
                        let starting = fs::read_to_string(dir.join(STARTING)).unwrap_or_default();
                        if let Some(pid) = live_pid(&starting) {
                            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                        }
                        self.cgroups.remove(name).map_err(|e| format!("an earlier start's cgroup: {e}"))?;
                        let left = undo_recorded_network(&dir, true);
                        if !left.is_empty() {
                            return Err(format!("an earlier start left these: {}", left.join("; ")));
                        }
                        fs::remove_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
                        fs::create_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))
                    }
                }
            }
            Err(e) => Err(format!("{}: {e}", dir.display())),
        }
    }

    /// Sends SIGTERM to the jail's processes other than its init and waits
    /// up to `timeout` for them to go.
    fn terminate(&self, name: &str, init: i32, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let others = || -> Vec<i32> { self.cgroups.all_procs(name).into_iter().filter(|p| *p != init).collect() };
        for p in others() {
            let _ = kill(Pid::from_raw(p), Signal::SIGTERM);
        }
        while !others().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn record(&self, name: &str, pid: i32) -> std::io::Result<()> {
        let start = start_time(pid).unwrap_or_default();
        fs::write(self.state_dir.join(name).join("pid"), format!("{pid} {start}\n"))
    }
}

/// Field 22 of /proc/PID/stat (start time in clock ticks since boot):
/// with the pid, it names one process even after pids wrap around.
/// `None` when the process is gone or a zombie.
fn start_time(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    if fields.first() == Some(&"Z") {
        return None;
    }
    fields.get(19)?.parse().ok()
}

/// A claim older than any start takes.
fn stale(dir: &std::path::Path) -> bool {
    fs::metadata(dir)
        .and_then(|m| m.modified())
        .is_ok_and(|t| t.elapsed().is_ok_and(|age| age > Duration::from_secs(120)))
}

/// The pid recorded for a jail, if that very process is still alive.
fn live_pid(record: &str) -> Option<i32> {
    let mut it = record.split_whitespace();
    let pid: i32 = it.next()?.parse().ok()?;
    let start: u64 = it.next()?.parse().ok()?;
    (pid > 0 && start_time(pid) == Some(start)).then_some(pid)
}

impl Runtime for Linux {
    fn running(&self) -> Result<Vec<RunningJail>, RuntimeError> {
        let entries = match fs::read_dir(&self.state_dir) {
            Ok(e) => e,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(RuntimeError::new("list", "running jails", format!("{}: {e}", self.state_dir.display())));
            }
        };
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let record = fs::read_to_string(entry.path().join("pid")).unwrap_or_default();
            if let Some(pid) = live_pid(&record) {
                out.push(RunningJail { name, jid: i64::from(pid) });
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn check(&self, spec: &JailSpec) -> Result<(), RuntimeError> {
        confine::confinement(spec).map_err(|refused| {
            RuntimeError::new("start", &spec.name, format!("cannot honour on Linux: {}", refused.join("; ")))
        })?;
        confine::target_arch().map_err(|e| RuntimeError::new("start", &spec.name, e))?;
        cgroup::translate(&spec.limits, spec.cpuset.as_deref()).map_err(|unsupported| {
            RuntimeError::new("start", &spec.name, format!("cannot enforce on Linux: {}", unsupported.join(", ")))
        })?;
        for m in &spec.mounts {
            if let Mount::Fstab { fstype, target, .. } = m {
                if !init::SUPPORTED_FSTYPES.contains(&fstype.as_str()) {
                    return Err(RuntimeError::new(
                        "start",
                        &spec.name,
                        format!("fstab: cannot mount {fstype} on {} on Linux", target.display()),
                    ));
                }
            }
        }
        Ok(())
    }

    fn start(&self, spec: &JailSpec) -> Result<RunningJail, RuntimeError> {
        let fail = |m: String| RuntimeError::new("start", &spec.name, m);
        let confine =
            confine::confinement(spec).map_err(|r| fail(format!("cannot honour on Linux: {}", r.join("; "))))?;
        self.claim(&spec.name).map_err(fail)?;
        // No stop of an earlier run is under way any more.
        self.helpers.stopped(&spec.name, Duration::ZERO);
        let unclaim = |e: RuntimeError| {
            let _ = fs::remove_dir_all(self.state_dir.join(&spec.name));
            e
        };
        let cgroup = self.cgroups.create(&spec.name).map_err(|e| unclaim(fail(format!("creating its cgroup: {e}"))))?;
        let undo_cgroup = |e: RuntimeError| {
            let _ = self.cgroups.remove(&spec.name);
            unclaim(e)
        };
        self.cgroups
            .apply(&spec.name, &spec.limits, spec.cpuset.as_deref())
            .map_err(|e| undo_cgroup(fail(format!("applying limits: {e}"))))?;
        let record = serde_json::to_vec(&confine).map_err(|e| undo_cgroup(fail(format!("encoding: {e}"))))?;
        fs::write(self.state_dir.join(&spec.name).join(CONFINEMENT), record)
            .map_err(|e| undo_cgroup(fail(format!("recording its confinement: {e}"))))?;
        let pid = spawn_init(spec, &confine, &cgroup).map_err(|e| undo_cgroup(fail(e)))?;
        // Until the pid is recorded, a daemon killed here leaves the init
        // to the next start's claim (which kills it).
        let _ = fs::write(
            self.state_dir.join(&spec.name).join(STARTING),
            format!("{pid} {}\n", start_time(pid).unwrap_or_default()),
        );
        // The network is made on the host's turn, held until the start has
        // succeeded or been undone; what is made is recorded as it is made.
        let turn = confine.own_network.then(net::turn);
        let network_file = self.state_dir.join(&spec.name).join(NETWORK);
        let undo_init = |e: RuntimeError, made: &net::Made| {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            let left = net::undo(made, true);
            let e = if left.is_empty() {
                e
            } else {
                RuntimeError::new(e.op, &e.jail, format!("{}; undoing it: {}", e.message, left.join("; ")))
            };
            undo_cgroup(e)
        };
        let mut made = net::Made::default();
        let mut unrecorded = None;
        let mut record = |m: &net::Made| {
            let r = serde_json::to_vec(m)
                .map_err(|e| e.to_string())
                .and_then(|b| fs::write(&network_file, b).map_err(|e| format!("{}: {e}", network_file.display())));
            if let Err(e) = r {
                unrecorded.get_or_insert(e);
            }
        };
        record(&made);
        if confine.own_network {
            net::setup(&spec.network, pid, &mut made, &mut record)
                .map_err(|e| undo_init(fail(format!("setting up its network: {e}")), &made))?;
        }
        if let Some(e) = unrecorded {
            return Err(undo_init(fail(format!("recording its network: {e}")), &made));
        }
        if let Err(e) = self.record(&spec.name, pid) {
            return Err(undo_init(fail(format!("recording it in {}: {e}", self.state_dir.display())), &made));
        }
        drop(turn);
        let _ = fs::remove_file(self.state_dir.join(&spec.name).join(STARTING));
        Ok(RunningJail { name: spec.name.clone(), jid: i64::from(pid) })
    }

    fn stop(&self, jail: &RunningJail, spec: &JailSpec) -> Result<(), RuntimeError> {
        let fail = |m: String| RuntimeError::new("stop", &jail.name, m);
        let pid = i32::try_from(jail.jid).map_err(|_| fail(format!("bad init pid {}", jail.jid)))?;
        let started = start_time(pid);
        // The commands the daemon runs in the jail end at once, their
        // helpers telling why (see `helpers`); waited for below.
        self.helpers.stopping(&jail.name);
        // stop_timeout: SIGTERM to every process but the init, and time to
        // leave, as jail(8) gives a FreeBSD jail's.
        if let Some(t) = spec.jail.stop_timeout {
            self.terminate(&jail.name, pid, t);
        }
        // SIGKILL to a PID namespace's init makes the kernel kill every
        // other process of the namespace.
        let killed = kill_init(pid, started);
        // The helpers hold the jail's namespaces while they live; and a
        // jail whose init would not die is not stopping any more.
        let helpers_ended = self.helpers.stopped(&jail.name, HELPERS_BOUND);
        killed.map_err(fail)?;
        // What its start made on the host (veth host ends): gone with the
        // namespace, but asynchronously; removed here so that stop returns
        // with none of it left.
        let leftovers = undo_recorded_network(&self.state_dir.join(&jail.name), false);
        self.cgroups.remove(&jail.name).map_err(|e| fail(format!("removing its cgroup: {e}")))?;
        match fs::remove_dir_all(self.state_dir.join(&jail.name)) {
            Err(e) if e.kind() != ErrorKind::NotFound => return Err(fail(format!("removing its state: {e}"))),
            _ => {}
        }
        if !leftovers.is_empty() {
            return Err(fail(format!("its network: {}", leftovers.join("; "))));
        }
        if !helpers_ended {
            // The jail is gone all the same; what such a helper holds goes
            // when it ends.
            tracing::warn!(
                jail = %jail.name,
                "helpers running commands in it did not end within {} s of being told to stop",
                HELPERS_BOUND.as_secs()
            );
        }
        Ok(())
    }

    fn set_limits(&self, jail: &RunningJail, limits: &[Limit], cpuset: Option<&str>) -> Result<(), RuntimeError> {
        self.cgroups.apply(&jail.name, limits, cpuset).map_err(|e| RuntimeError::new("limit", &jail.name, e))
    }

    fn usage(&self, jail: &RunningJail) -> Result<super::Usage, RuntimeError> {
        self.cgroups.usage(&jail.name).map_err(|e| RuntimeError::new("account", &jail.name, e))
    }

    fn exec(&self, jail: &RunningJail, spec: &ExecSpec) -> Result<ExecOutput, RuntimeError> {
        let fail = |m: String| RuntimeError::new("run a command in", &jail.name, m);
        let path = self.state_dir.join(&jail.name).join(CONFINEMENT);
        let record = fs::read(&path).map_err(|e| fail(format!("its confinement ({}): {e}", path.display())))?;
        let confine: confine::Confinement =
            serde_json::from_slice(&record).map_err(|e| fail(format!("its confinement ({}): {e}", path.display())))?;
        let req = exec::HelperRequest {
            cgroup: Some(self.cgroups.jail(&jail.name)),
            confine: Some(confine),
            ..exec::HelperRequest::new(jail, spec)
        };
        exec::run_helper(req, &spec.io, |pid| self.helpers.register(&jail.name, pid))
    }
}

/// Kills a jail's init (`pid`, which started at `started`) and waits up to
/// 10 s for it to be gone.
fn kill_init(pid: i32, started: Option<u64>) -> Result<(), String> {
    match kill(Pid::from_raw(pid), Signal::SIGKILL) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
        Err(e) => return Err(format!("killing its init {pid}: {e}")),
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while started.is_some() && start_time(pid) == started {
        if Instant::now() > deadline {
            return Err(format!("its init {pid} did not die"));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(())
}

/// How long a stop waits for the jail's helpers, told to stop, to end.
const HELPERS_BOUND: Duration = Duration::from_secs(10);

/// How long the init helper may take to set a jail up before it is killed.
const INIT_BOUND: Duration = Duration::from_secs(120);

/// The file in a running jail's state directory that records how it is
/// confined (host side, root's: the jail cannot reach it).
const CONFINEMENT: &str = "confinement.json";

/// The file in a starting jail's state directory with its init's pid and
/// start time, until the jail is recorded as running.
const STARTING: &str = "init.starting";

/// The file in a running jail's state directory that lists what its start
/// made on the host's network ([`net::Made`]), for stop.
const NETWORK: &str = "network.json";

/// Undoes, under the network's turn, what a start recorded in `dir` it made
/// on the host's network (nothing when there is no readable record), its
/// emptied bridges too when `bridges` (see `net::undo`); what could not be
/// undone.
fn undo_recorded_network(dir: &Path, bridges: bool) -> Vec<String> {
    let made: net::Made =
        fs::read(dir.join(NETWORK)).ok().and_then(|r| serde_json::from_slice(&r).ok()).unwrap_or_default();
    if made == net::Made::default() {
        return Vec::new();
    }
    let _turn = net::turn();
    net::undo(&made, bridges)
}

/// Starts `iocaged jail-init` with the spec on its stdin and reads its one
/// line: `ok <pid>` or `error <what failed>`.
fn spawn_init(spec: &JailSpec, confine: &confine::Confinement, cgroup: &std::path::Path) -> Result<i32, String> {
    let request = serde_json::to_vec(&init::InitRequest {
        spec: spec.clone(),
        confine: confine.clone(),
        cgroup: cgroup.to_path_buf(),
    })
    .map_err(|e| format!("encoding the spec: {e}"))?;
    let rest = exec::line_helper("jail-init", &request, INIT_BOUND, "init helper")?;
    rest.parse().map_err(|_| format!("the init helper said \"ok {rest}\""))
}

/// Enters a running jail's namespaces (helper side).
pub(crate) fn enter(jail: &RunningJail) -> Result<(), String> {
    let pid = jail.jid;
    // Open every namespace first: once in the jail's mount namespace,
    // /proc is the jail's.
    let mut fds = Vec::new();
    for (ns, flag) in [
        ("ipc", CloneFlags::CLONE_NEWIPC),
        ("uts", CloneFlags::CLONE_NEWUTS),
        ("net", CloneFlags::CLONE_NEWNET),
        ("pid", CloneFlags::CLONE_NEWPID),
        ("mnt", CloneFlags::CLONE_NEWNS),
    ] {
        let path = format!("/proc/{pid}/ns/{ns}");
        fds.push((fs::File::open(&path).map_err(|e| format!("{path}: {e}"))?, flag, ns));
    }
    for (fd, flag, ns) in &fds {
        nix::sched::setns(fd.as_fd(), *flag).map_err(|e| format!("setns {ns}: {e}"))?;
    }
    nix::unistd::chdir("/").map_err(|e| format!("chdir /: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_jails_are_those_whose_init_still_lives() {
        let dir = std::env::temp_dir().join(format!("iocaged-linux-rt-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let me = std::process::id() as i32;
        let mine = start_time(me).unwrap();
        for (name, record) in [
            ("ioc-live", format!("{me} {mine}")),
            ("ioc-reused", format!("{me} {}", mine + 1)),
            ("ioc-dead", format!("{} 1", i32::MAX)),
            ("ioc-garbage", "x".into()),
        ] {
            fs::create_dir_all(dir.join(name)).unwrap();
            fs::write(dir.join(name).join("pid"), record).unwrap();
        }
        fs::create_dir_all(dir.join("ioc-nopid")).unwrap();
        let rt = Linux::new(&dir, "/nonexistent");
        assert_eq!(rt.running().unwrap(), vec![RunningJail { name: "ioc-live".into(), jid: i64::from(me) }]);
        assert_eq!(Linux::new(dir.join("absent"), "/nonexistent").running().unwrap(), vec![]);
        fs::remove_dir_all(&dir).unwrap();
    }
}
