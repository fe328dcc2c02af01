//! The jail lifecycle, runtime-neutral: what `iocage start` and `iocage
//! stop` did, step by step (iocage-model.md, "Lifecycle"), over the
//! [`Runtime`] interface.
//!
//! [`plan`] turns a jail's properties into a [`Plan`] (no side effects;
//! owner thread). [`start`], [`stop`], [`cap`] and [`exec`] carry it out
//! on a blocking thread and return the progress lines the API shows.
//! Hooks: `exec_prestart`, `exec_poststart`, `exec_prestop` and
//! `exec_poststop` run on the host (an executable file of that name without
//! the `exec_` prefix in the jail's directory wins over the property);
//! `exec_start` and `exec_stop` run inside the jail as `exec_jail_user`.
//! A start that fails part-way removes the jail again (its mounts and
//! limits with it) and says which step failed.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::runtime::{
    self, Bounds, ExecOutput, ExecSpec, IpMode, JailSettings, JailSpec, Limit, Mount, RunningJail, Runtime,
    RuntimeError,
};

use super::error::ActionError;
use super::jails::Jail;
use super::names;
use super::network;
use super::props::{self, Format};

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
    fn slot(&self) -> Result<Slot, ActionError> {
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

struct Slot(Arc<AtomicUsize>);

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

    fn failed(&self, verb: &'static str, step: &str, why: impl std::fmt::Display) -> ActionError {
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

/// Reads the plan of `jail` from its properties and its fstab. Nothing is
/// changed.
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
    match std::fs::read_to_string(dir.join("fstab")) {
        Ok(text) => mounts.extend(fstab(&text).map_err(|e| bad("reading its fstab", e))?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(bad("reading its fstab", e.to_string())),
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

/// A result that is not an error: the jail already was where asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// The progress lines, in order.
    Lines(Vec<String>),
    /// `INFO`: already up / already down.
    Already(String),
}

/// The jail's running kernel jail, if any.
pub fn find_running(rt: &dyn Runtime, uuid: &str) -> Result<Option<RunningJail>, ActionError> {
    let name = runtime::kernel_name(uuid);
    Ok(rt.running()?.into_iter().find(|j| j.name == name))
}

/// Starts the jail (see the module docs for the steps).
pub fn start(rt: &dyn Runtime, plan: &Plan) -> Result<Progress, ActionError> {
    if find_running(rt, &plan.uuid)?.is_some() {
        return Ok(Progress::Already(format!(" {} is already up", plan.label())));
    }
    if plan.template {
        return Err(plan.failed("start", "checking it", "it is a template; templates are not started"));
    }
    let host = names::host_id();
    if !matches!(plan.hostid.as_str(), "none" | "-" | "") && plan.hostid != host {
        return Err(plan.failed(
            "start",
            "checking it",
            format!("its hostid {} is not this host's ({host})", plan.hostid),
        ));
    }
    check_home(plan).map_err(|e| plan.failed("start", "checking its directory", e))?;
    let mut spec = plan.spec.clone();
    spec.mounts =
        confine_mounts(&spec.root, &spec.mounts).map_err(|e| plan.failed("start", "checking its mounts", e))?;
    rt.check(&spec)?;
    write_resolver(&spec.root, &plan.resolver).map_err(|e| plan.failed("start", "writing its resolv.conf", e))?;
    host_hook(plan, "prestart", &plan.hooks.prestart).map_err(|e| plan.failed("start", "exec_prestart", e))?;
    let jail = rt.start(&spec).map_err(|e| plan.failed("start", "creating the jail", e.message))?;
    let mode = if spec.vnet() { "VNET" } else { "shared IP" };
    let mut lines = vec![format!("* Starting {}", plan.label()), format!("+ Started ({mode} mode) OK")];
    let undo = |step: &str, why: String| {
        let _ = rt.stop(&jail, &spec);
        plan.failed("start", step, format!("{why}; the jail was removed again"))
    };
    let started = jail_command(rt, &jail, &plan.jail_user, &plan.hooks.start, plan.policy.bounds(plan.exec_timeout))
        .map_err(|e| undo("exec_start", e))?;
    if !started.success() {
        return Err(undo("exec_start", describe(&plan.hooks.start, &started)));
    }
    lines.push("+ Starting services OK".into());
    host_hook(plan, "poststart", &plan.hooks.poststart).map_err(|e| undo("exec_poststart", e))?;
    Ok(Progress::Lines(lines))
}

/// Stops the jail: pre-stop, exec_stop (bounded by stop_timeout), the jail
/// removed with its mounts and limits, post-stop. A failing pre-stop hook
/// leaves the jail running; a failing exec_stop does not stop the removal.
pub fn stop(rt: &dyn Runtime, plan: &Plan) -> Result<Progress, ActionError> {
    let Some(jail) = find_running(rt, &plan.uuid)? else {
        return Ok(Progress::Already(format!(" {} is already down", plan.label())));
    };
    let mut lines = vec![format!("* Stopping {}", plan.label())];
    host_hook(plan, "prestop", &plan.hooks.prestop).map_err(|e| plan.failed("stop", "exec_prestop", e))?;
    lines.push("+ Running pre-stop OK".into());
    match jail_command(rt, &jail, &plan.jail_user, &plan.hooks.stop, plan.policy.bounds(plan.stop_timeout)) {
        Ok(o) if o.success() => lines.push("+ Stopping services OK".into()),
        Ok(o) => lines.push(format!("+ Stopping services FAILED: {}", describe(&plan.hooks.stop, &o))),
        Err(e) => lines.push(format!("+ Stopping services FAILED: {e}")),
    }
    rt.stop(&jail, &plan.spec).map_err(|e| plan.failed("stop", "removing the jail", e.message))?;
    lines.push("+ Removing jail process OK".into());
    match host_hook(plan, "poststop", &plan.hooks.poststop) {
        Ok(()) => lines.push("+ Running post-stop OK".into()),
        Err(e) => lines.push(format!("+ Running post-stop FAILED: {e}")),
    }
    Ok(Progress::Lines(lines))
}

/// Re-applies the jail's limits (none when `rlimits=off`) and CPU set.
pub fn cap(rt: &dyn Runtime, plan: &Plan) -> Result<(), ActionError> {
    let jail = find_running(rt, &plan.uuid)?.ok_or_else(|| ActionError::NotRunning(plan.label()))?;
    rt.check(&JailSpec { mounts: Vec::new(), ..plan.spec.clone() })?;
    rt.set_limits(&jail, &plan.spec.limits, plan.spec.cpuset.as_deref())?;
    Ok(())
}

/// Runs a client's command in the running jail as `user`, bounded by
/// `timeout` (none: the configured one) and the output limit; at most
/// `max_running` at once.
pub fn exec(
    rt: &dyn Runtime,
    plan: &Plan,
    user: &str,
    command: &str,
    timeout: Option<Duration>,
) -> Result<ExecOutput, ActionError> {
    let _slot = plan.policy.slot()?;
    let jail = find_running(rt, &plan.uuid)?.ok_or_else(|| ActionError::NotRunning(plan.label()))?;
    let b = plan.policy.bounds(timeout);
    let spec = ExecSpec {
        user: user.to_string(),
        command: command.to_string(),
        timeout: b.timeout,
        output_limit: b.output_limit,
    };
    Ok(rt.exec(&jail, &spec)?)
}

fn jail_command(
    rt: &dyn Runtime,
    jail: &RunningJail,
    user: &str,
    command: &str,
    b: Bounds,
) -> Result<ExecOutput, String> {
    if is_noop(command) {
        return Ok(ExecOutput { code: Some(0), ..Default::default() });
    }
    let spec = ExecSpec {
        user: user.to_string(),
        command: command.to_string(),
        timeout: b.timeout,
        output_limit: b.output_limit,
    };
    rt.exec(jail, &spec).map_err(|e: RuntimeError| e.message)
}

/// `true` needs no process.
fn is_noop(command: &str) -> bool {
    matches!(command.trim(), "" | "true" | "/usr/bin/true" | "/bin/true" | "none")
}

fn describe(command: &str, o: &ExecOutput) -> String {
    match o.last_line() {
        Some(line) => format!("{command:?} {}: {line}", o.ending()),
        None => format!("{command:?} {}", o.ending()),
    }
}

/// Runs a host-side hook: the jail directory's executable `<name>` file,
/// else the property's command through `/bin/sh -c`, bounded by
/// exec_timeout, with the jail's identity in its environment.
fn host_hook(plan: &Plan, name: &str, command: &str) -> Result<(), String> {
    let file = plan.dir.join(name);
    let root = plan.spec.root.display().to_string();
    let env = [("IOCAGE_UUID", plan.uuid.as_str()), ("IOCAGE_TAG", plan.tag.as_str()), ("IOCAGE_PATH", root.as_str())];
    let bounds = plan.policy.bounds(plan.exec_timeout);
    let out = if is_executable(&file) {
        runtime::exec::run_host(&file, &[], &env, bounds)?
    } else if is_noop(command) {
        return Ok(());
    } else {
        runtime::exec::run_host(Path::new("/bin/sh"), &["-c", command], &env, bounds)?
    };
    if out.success() { Ok(()) } else { Err(describe(command, &out)) }
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The jail's directory must be `<jails>/<uuid>`: a dataset mounted
/// anywhere else (`mountpoint=/etc`) would put the jail's files over the
/// host's, and its root's writes with them.
fn check_home(plan: &Plan) -> Result<(), String> {
    let Some(jails) = &plan.jails_dir else {
        return Err("the mountpoint of the pool's iocage/jails is unknown".into());
    };
    let want = jails.join(&plan.uuid);
    if plan.dir != want || !jails.is_absolute() || jails.components().any(|c| c.as_os_str() == "..") {
        return Err(format!(
            "its dataset is mounted at {}, not at {}; set its mountpoint back (zfs inherit mountpoint)",
            plan.dir.display(),
            want.display()
        ));
    }
    Ok(())
}

/// Resolves every mount target (following links) and refuses one that
/// leads outside the jail's root: a jail's files must not be able to
/// point a host mount elsewhere. A target that does not exist yet (made
/// by an earlier mount, like `dev/fd`) is checked through its parent.
fn confine_mounts(root: &Path, mounts: &[Mount]) -> Result<Vec<Mount>, String> {
    let root = root.canonicalize().map_err(|e| format!("{}: {e}", root.display()))?;
    mounts
        .iter()
        .map(|m| {
            let t = m.target();
            let real = match t.canonicalize() {
                Ok(r) => r,
                Err(_) => {
                    let parent = t.parent().unwrap_or(t);
                    let name = t.file_name().ok_or_else(|| format!("{}: no such directory", t.display()))?;
                    parent.canonicalize().map_err(|e| format!("{}: {e}", t.display()))?.join(name)
                }
            };
            if !real.starts_with(&root) {
                return Err(format!("{} leads to {}, outside the jail's root", t.display(), real.display()));
            }
            let mut m = m.clone();
            match &mut m {
                Mount::Devfs { target, .. }
                | Mount::Fdescfs { target }
                | Mount::Procfs { target }
                | Mount::Fstab { target, .. } => *target = real,
            }
            Ok(m)
        })
        .collect()
}

/// Writes the jail's `/etc/resolv.conf` from `resolver`: `none` copies the
/// host's (as iocage did), anything else is the file's text with `;`
/// between lines. Never writes through a link.
fn write_resolver(root: &Path, resolver: &str) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let text = match resolver {
        "-" | "" => return Ok(()),
        "none" => match std::fs::read_to_string("/etc/resolv.conf") {
            Ok(t) => t,
            Err(_) => return Ok(()),
        },
        r => r.split(';').map(str::trim).collect::<Vec<_>>().join("\n") + "\n",
    };
    let etc = root.join("etc");
    let real = match etc.canonicalize() {
        Ok(r) => r,
        Err(_) => return Ok(()), // no /etc: nothing to resolve with
    };
    let root = root.canonicalize().map_err(|e| e.to_string())?;
    if !real.starts_with(&root) {
        return Err(format!("{} leads outside the jail's root", etc.display()));
    }
    let path = real.join("resolv.conf");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    f.write_all(text.as_bytes()).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iocage::jails::test_jail;
    use std::net::IpAddr;

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
    fn a_jail_lives_only_in_its_place_under_the_jails_dataset() {
        let mut p = plan(&test_jail("u1", &[("mountpoint", "/iocage/jails/u1")])).unwrap();
        assert!(check_home(&p).unwrap_err().contains("unknown"), "no place known: refused");
        p.jails_dir = Some("/iocage/jails".into());
        check_home(&p).unwrap();
        for elsewhere in ["/", "/etc", "/root", "/iocage/jails/u2", "/iocage/jails/u1/root", "/iocage/jails/../u1"] {
            let mut p = plan(&test_jail("u1", &[("mountpoint", elsewhere)])).unwrap();
            p.jails_dir = Some("/iocage/jails".into());
            assert!(check_home(&p).unwrap_err().contains("not at /iocage/jails/u1"), "{elsewhere}");
        }
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

    #[test]
    fn mounts_cannot_be_pointed_outside_the_root() {
        let base = std::env::temp_dir().join(format!("iocaged-confine-{}", std::process::id()));
        let root = base.join("root");
        std::fs::create_dir_all(root.join("dev")).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("proc")).unwrap();
        let ok = confine_mounts(&root, &[Mount::Fdescfs { target: root.join("dev/fd") }]).unwrap();
        assert_eq!(ok[0].target(), &root.canonicalize().unwrap().join("dev/fd"));
        let err = confine_mounts(&root, &[Mount::Procfs { target: root.join("proc") }]).unwrap_err();
        assert!(err.contains("outside the jail's root"), "{err}");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::os::unix::fs::symlink("/nonexistent-target", root.join("etc/resolv.conf")).unwrap();
        assert!(write_resolver(&root, "nameserver 10.0.0.1").is_err(), "never writes through a link");
        std::fs::remove_file(root.join("etc/resolv.conf")).unwrap();
        write_resolver(&root, "nameserver 10.0.0.1;search example").unwrap();
        assert_eq!(
            std::fs::read_to_string(root.join("etc/resolv.conf")).unwrap(),
            "nameserver 10.0.0.1\nsearch example\n"
        );
        std::fs::remove_dir_all(&base).unwrap();
    }
}
