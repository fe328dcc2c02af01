//! A jail's lifecycle [`Plan`], read from its properties (no side effects;
//! runs on the owner thread); the mounts of its fstab ([`fstab_mounts`], a
//! host file read by the steps, on their blocking thread); and the
//! [`Policy`] the configuration sets on commands and hooks.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::iocage::error::ActionError;
use crate::iocage::jails::Jail;
use crate::iocage::network;
use crate::iocage::props::{self, Format};
use crate::runtime::{self, Bounds, IpMode, JailSettings, JailSpec, Limit, Mount};

/// Everything start and stop need, read from the jail's properties.
#[derive(Debug, Clone)]
pub struct Plan {
    pub uuid: String,
    pub dataset: String,
    pub tag: String,
    /// The jail's directory (its dataset's mountpoint).
    pub dir: PathBuf,
    pub spec: JailSpec,
    pub template: bool,
    pub hostid: String,
    pub hooks: Hooks,
    pub jail_user: String,
    pub exec_timeout: Option<Duration>,
    pub stop_timeout: Option<Duration>,
    pub resolver: String,
    /// The mountpoint of the pool's `iocage/jails`, under which the jail's
    /// directory must be (`<jails>/<uuid>`); start refuses a jail whose
    /// directory is anywhere else, or when this is unknown.
    pub jails_dir: Option<PathBuf>,
    /// Bounds of the commands and hooks start and stop run.
    pub policy: Policy,
}

/// What running a client's command in a running jail needs of the jail:
/// which one it is, and the configured bounds. No property of the jail
/// takes part (the runtime's record of the running jail has what entering
/// it needs), so it comes from a listing proven with ZFS, with none of the
/// start's plan (see `service::Iocage::target`).
#[derive(Debug, Clone)]
pub struct Target {
    pub uuid: String,
    /// `UUID (tag)`, as errors name the jail.
    pub label: String,
    pub policy: Policy,
}

impl Target {
    pub fn new(jail: &Jail, policy: Policy) -> Target {
        Target { uuid: jail.uuid.clone(), label: format!("{} ({})", jail.uuid, jail.tag()), policy }
    }
}

/// What the configuration says about commands run for clients and hooks.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Host hooks (`exec_prestart`, `exec_poststart`, `exec_prestop`,
    /// `exec_poststop`) may be set by API clients: write clients become
    /// host root.
    pub allow_host_hooks: bool,
    /// execjail's timeout when the request names none; also the bound of
    /// `exec_start`, `exec_stop` and hooks whose property says 0 (none).
    pub exec_timeout: Duration,
    /// Bytes of each of stdout and stderr a command may write before it
    /// is stopped.
    pub output_limit: u64,
    /// execjails running at once, at most.
    pub max_running: usize,
    running: Arc<AtomicUsize>,
}

impl Policy {
    pub fn new(allow_host_hooks: bool, exec_timeout: Duration, output_limit: u64, max_running: usize) -> Policy {
        Policy { allow_host_hooks, exec_timeout, output_limit, max_running, running: Arc::default() }
    }

    /// The bounds of a command whose own timeout is `timeout` (none: the
    /// configured one; nothing runs unbounded).
    pub fn bounds(&self, timeout: Option<Duration>) -> Bounds {
        Bounds { timeout: Some(timeout.unwrap_or(self.exec_timeout)), output_limit: self.output_limit }
    }

    /// A place among the running execjails, given back when dropped.
    pub(super) fn slot(&self) -> Result<Slot, ActionError> {
        let taken = self.running.fetch_add(1, Ordering::SeqCst);
        let slot = Slot(self.running.clone());
        if taken >= self.max_running {
            return Err(ActionError::TooManyCommands(self.max_running));
        }
        Ok(slot)
    }
}

impl Default for Policy {
    fn default() -> Policy {
        Policy::new(false, Duration::from_secs(600), runtime::DEFAULT_OUTPUT_LIMIT, 64)
    }
}

/// A place among the running execjails (see [`Policy::slot`]).
pub(super) struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[derive(Debug, Clone, Default)]
pub struct Hooks {
    pub prestart: String,
    pub start: String,
    pub poststart: String,
    pub prestop: String,
    pub stop: String,
    pub poststop: String,
}

impl Plan {
    /// `<uuid> (<tag>)`, as iocage names a jail in its messages.
    pub fn label(&self) -> String {
        format!("{} ({})", self.uuid, self.tag)
    }

    pub(super) fn failed(&self, verb: &'static str, step: &str, why: impl std::fmt::Display) -> ActionError {
        ActionError::Lifecycle { verb, jail: self.label(), step: step.to_string(), message: why.to_string() }
    }
}

/// A property's value: what the jail stores, else the built-in default.
fn value(jail: &Jail, name: &str) -> String {
    match jail.get(name) {
        v if v == "-" => props::lookup(name).map(|p| p.default.to_string()).unwrap_or(v),
        v => v,
    }
}

fn seconds(v: &str) -> Option<Duration> {
    v.parse::<u64>().ok().filter(|s| *s > 0).map(Duration::from_secs)
}

/// The jail(8) permission of an `allow_*` property, less `allow.`:
/// `allow_mount_devfs` -> `mount.devfs`, `allow_set_hostname` ->
/// `set_hostname`.
fn allow_param(prop: &str) -> Option<String> {
    let rest = prop.strip_prefix("allow_")?;
    Some(match rest.strip_prefix("mount_") {
        Some(fs) => format!("mount.{fs}"),
        None => rest.to_string(),
    })
}

/// The most of a jail's fstab that is read (iocage's are a few lines).
const MAX_FSTAB: u64 = 1024 * 1024;

/// The mounts of the jail's fstab (`<dir>/fstab`; none when there is
/// none), which go after the ones its properties ask for. A host file: read
/// by start and stop on their blocking thread, never on the owner thread (a
/// slow `/iocage` must not stall every ZFS call). Opened without following a
/// link, waiting on a FIFO or taking a terminal, and at most [`MAX_FSTAB`]
/// of it.
pub fn fstab_mounts(plan: &Plan) -> Result<Vec<Mount>, ActionError> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let path = plan.dir.join("fstab");
    let failed = |why: String| plan.failed("use", "reading its fstab", format!("{}: {why}", path.display()));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(&path);
    let file = match file {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(failed(e.to_string())),
    };
    if !file.metadata().map_err(|e| failed(e.to_string()))?.is_file() {
        return Err(failed("not a regular file".into()));
    }
    let mut text = String::new();
    file.take(MAX_FSTAB + 1).read_to_string(&mut text).map_err(|e| failed(e.to_string()))?;
    if text.len() as u64 > MAX_FSTAB {
        return Err(failed(format!("longer than {MAX_FSTAB} bytes")));
    }
    fstab(&text).map_err(failed)
}

/// The jail's fstab lines (`source target fstype options [dump pass]`).
fn fstab(text: &str) -> Result<Vec<Mount>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 4 {
            return Err(format!("line {}: expected source, mount point, type and options", n + 1));
        }
        out.push(Mount::Fstab {
            source: f[0].to_string(),
            target: PathBuf::from(f[1]),
            fstype: f[2].to_string(),
            options: f[3].split(',').map(str::to_string).collect(),
        });
    }
    Ok(out)
}

/// Reads the plan of `jail` from its properties. Nothing is changed, and
/// no file is read: the jail's fstab is added by [`fstab_mounts`], off the
/// owner thread.
pub fn plan(jail: &Jail) -> Result<Plan, ActionError> {
    let v = |name: &str| value(jail, name);
    let label = format!("{} ({})", jail.uuid, jail.tag());
    let bad = |step: &str, message: String| ActionError::Lifecycle {
        verb: "use",
        jail: label.clone(),
        step: step.to_string(),
        message,
    };
    let dir = match v("mountpoint") {
        m if m.starts_with('/') => PathBuf::from(m),
        m => return Err(bad("finding its directory", format!("its dataset's mountpoint is {m:?}"))),
    };
    let root = dir.join("root");
    if v("jail_zfs") == "on" {
        return Err(bad("reading its properties", "jail_zfs=on is not supported by this version".into()));
    }
    let mut mounts = Vec::new();
    if v("mount_devfs") == "1" {
        let ruleset = v("devfs_ruleset").parse().unwrap_or(4);
        mounts.push(Mount::Devfs { target: root.join("dev"), ruleset });
    }
    if v("mount_fdescfs") == "1" {
        mounts.push(Mount::Fdescfs { target: root.join("dev/fd") });
    }
    if v("mount_procfs") == "1" {
        mounts.push(Mount::Procfs { target: root.join("proc") });
    }
    let mut limits = Vec::new();
    if v("rlimits") == "on" {
        for p in props::CATALOGUE.iter().filter(|p| p.format == Format::Limit) {
            if let Some(l) = Limit::parse(p.name, &v(p.name)).map_err(|e| bad("reading its limits", e))? {
                limits.push(l);
            }
        }
    }
    // Granted only by "1"; every other value refuses (allow.noX).
    let allow = props::CATALOGUE.iter().filter_map(|p| allow_param(p.name).map(|a| (a, v(p.name) == "1"))).collect();
    let int = |prop: &str| v(prop).parse::<i32>().ok();
    let devfs_ruleset: u16 = v("devfs_ruleset").parse().unwrap_or(4);
    let settings = JailSettings {
        allow,
        securelevel: int("securelevel"),
        enforce_statfs: int("enforce_statfs"),
        children_max: int("children_max"),
        devfs_ruleset,
        ip4: IpMode::parse(&v("ip4")),
        ip6: IpMode::parse(&v("ip6")),
        ip4_saddrsel: v("ip4_saddrsel") != "0",
        ip6_saddrsel: v("ip6_saddrsel") != "0",
        exec_fib: v("exec_fib").parse().unwrap_or(0),
        stop_timeout: seconds(&v("stop_timeout")),
    };
    let hostname = match v("host_hostname") {
        h if h == "none" || h.is_empty() => jail.uuid.clone(),
        h => h,
    };
    let hostuuid = match v("host_hostuuid") {
        h if h == "none" => jail.uuid.clone(),
        h => h,
    };
    let network = network::plan(&jail.uuid, &v, &settings.ip4, &settings.ip6)
        .map_err(|e| bad("reading its network properties", e))?;
    let spec = JailSpec {
        name: runtime::kernel_name(&jail.uuid),
        root,
        hostname,
        hostuuid,
        network,
        jail: settings,
        mounts,
        limits,
        cpuset: Some(v("cpuset")).filter(|c| c != "off"),
    };
    Ok(Plan {
        uuid: jail.uuid.clone(),
        dataset: jail.dataset.clone(),
        tag: jail.tag().to_string(),
        dir,
        spec,
        template: v("istemplate") == "yes",
        hostid: v("hostid"),
        hooks: Hooks {
            prestart: v("exec_prestart"),
            start: v("exec_start"),
            poststart: v("exec_poststart"),
            prestop: v("exec_prestop"),
            stop: v("exec_stop"),
            poststop: v("exec_poststop"),
        },
        jail_user: v("exec_jail_user"),
        exec_timeout: seconds(&v("exec_timeout")),
        stop_timeout: seconds(&v("stop_timeout")),
        resolver: v("resolver"),
        jails_dir: None,
        policy: Policy::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iocage::jails::test_jail;
    use std::net::IpAddr;
    use std::path::Path;

    #[test]
    fn plans_follow_the_properties() {
        let j = test_jail(
            "u1",
            &[
                ("tag", "web"),
                ("mountpoint", "/iocage/jails/u1"),
                ("host_hostname", "web.example"),
                ("ip4_addr", "em0|10.0.0.2/24,lo0|127.0.1.1"),
                ("mount_procfs", "1"),
                ("rlimits", "on"),
                ("memoryuse", "64M:deny"),
                ("allow_mount_zfs", "1"),
                ("exec_timeout", "0"),
                ("istemplate", "no"),
            ],
        );
        let p = plan(&j).unwrap();
        assert_eq!(p.spec.name, "ioc-u1");
        assert_eq!(p.spec.root, PathBuf::from("/iocage/jails/u1/root"));
        assert_eq!(p.spec.hostname, "web.example");
        assert_eq!(
            p.spec.network.shared_addresses(),
            vec!["10.0.0.2".parse::<IpAddr>().unwrap(), "127.0.1.1".parse().unwrap()]
        );
        assert_eq!(
            p.spec.mounts,
            vec![
                Mount::Devfs { target: "/iocage/jails/u1/root/dev".into(), ruleset: 4 },
                Mount::Fdescfs { target: "/iocage/jails/u1/root/dev/fd".into() },
                Mount::Procfs { target: "/iocage/jails/u1/root/proc".into() },
            ]
        );
        assert_eq!(p.spec.limits, vec![Limit::parse("memoryuse", "64M:deny").unwrap().unwrap()]);
        let allow = &p.spec.jail.allow;
        assert!(allow.contains(&("mount.zfs".into(), true)));
        assert!(allow.contains(&("set_hostname".into(), true)), "defaults fill what is unset");
        assert!(allow.contains(&("sysvipc".into(), false)), "refused permissions are kept, as refused");
        assert!(allow.contains(&("mount".into(), false)));
        assert_eq!(allow.len(), 12, "every allow_* property: {allow:?}");
        assert_eq!(p.spec.jail.securelevel, Some(2));
        assert_eq!(p.spec.jail.children_max, Some(0));
        assert_eq!(p.spec.jail.devfs_ruleset, 4);
        assert_eq!((p.spec.jail.ip4.clone(), p.spec.jail.ip6.clone()), (IpMode::New, IpMode::New));
        assert!(p.spec.jail.ip4_saddrsel && p.spec.jail.ip6_saddrsel);
        assert_eq!(p.spec.jail.exec_fib, 0);
        assert_eq!(p.spec.jail.stop_timeout, Some(Duration::from_secs(30)));
        let j = test_jail(
            "u3",
            &[
                ("mountpoint", "/iocage/jails/u3"),
                ("ip4", "inherit"),
                ("ip6", "disable"),
                ("ip4_saddrsel", "0"),
                ("devfs_ruleset", "11"),
                ("exec_fib", "2"),
                ("stop_timeout", "0"),
            ],
        );
        let s = plan(&j).unwrap().spec;
        assert_eq!((s.jail.ip4, s.jail.ip6), (IpMode::Inherit, IpMode::Disable));
        assert!(!s.jail.ip4_saddrsel && s.jail.ip6_saddrsel);
        assert_eq!((s.jail.devfs_ruleset, s.jail.exec_fib, s.jail.stop_timeout), (11, 2, None));
        assert_eq!(s.mounts[0], Mount::Devfs { target: "/iocage/jails/u3/root/dev".into(), ruleset: 11 });
        assert_eq!(p.exec_timeout, None, "0 means no timeout");
        assert_eq!(p.hooks.start, "/bin/sh /etc/rc");
        assert_eq!(p.label(), "u1 (web)");
        let no_mp = test_jail("u2", &[("mountpoint", "none")]);
        assert!(plan(&no_mp).unwrap_err().to_string().contains("mountpoint"));
    }

    #[test]
    fn nothing_runs_unbounded_and_execjails_are_counted() {
        let p = Policy::new(false, Duration::from_secs(7), 100, 2);
        assert_eq!(p.bounds(None), Bounds { timeout: Some(Duration::from_secs(7)), output_limit: 100 });
        assert_eq!(p.bounds(Some(Duration::from_secs(3))).timeout, Some(Duration::from_secs(3)));
        let (a, b) = (p.slot().unwrap(), p.slot().unwrap());
        assert_eq!(p.slot().err(), Some(ActionError::TooManyCommands(2)));
        drop(a);
        let _c = p.slot().unwrap();
        drop(b);
        assert_eq!(p.running.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn the_fstab_is_read_bounded_without_following_or_waiting() {
        let dir = std::env::temp_dir().join(format!("iocaged-fstab-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = plan(&test_jail("u1", &[("mountpoint", dir.to_str().unwrap())])).unwrap();
        assert_eq!(fstab_mounts(&p).unwrap(), Vec::new(), "no fstab: no mounts");
        let line = "/data /mnt/data nullfs ro 0 0\n";
        let fstab_path = dir.join("fstab");
        std::fs::write(&fstab_path, line).unwrap();
        let m = fstab_mounts(&p).unwrap();
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].target(), Path::new("/mnt/data"));
        // Each refusal says which file.
        std::fs::write(&fstab_path, vec![b'#'; MAX_FSTAB as usize + 1]).unwrap();
        let e = fstab_mounts(&p).unwrap_err().to_string();
        assert!(e.contains("longer than") && e.contains("fstab"), "{e}");
        std::fs::remove_file(&fstab_path).unwrap();
        // A link to a good fstab is refused all the same.
        let elsewhere = dir.join("elsewhere");
        std::fs::write(&elsewhere, line).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &fstab_path).unwrap();
        let e = fstab_mounts(&p).unwrap_err().to_string();
        assert!(e.contains("fstab"), "a link is not followed: {e}");
        std::fs::remove_file(&fstab_path).unwrap();
        assert!(std::process::Command::new("mkfifo").arg(&fstab_path).status().unwrap().success());
        let e = fstab_mounts(&p).unwrap_err().to_string();
        assert!(e.contains("not a regular file"), "a FIFO is refused, not waited on: {e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn fstab_lines_parse_or_are_refused() {
        let m = fstab("# c\n\n/data /iocage/jails/u/root/mnt nullfs ro 0 0\n").unwrap();
        assert_eq!(
            m,
            vec![Mount::Fstab {
                source: "/data".into(),
                target: "/iocage/jails/u/root/mnt".into(),
                fstype: "nullfs".into(),
                options: vec!["ro".into()]
            }]
        );
        assert!(fstab("/data /mnt nullfs\n").unwrap_err().contains("line 1"));
    }
}
