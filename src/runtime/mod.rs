//! The jail runtime: the kernel side of a jail (FreeBSD jail(2) and rctl;
//! on Linux, namespaces and cgroup v2). The iocage layer decides *what* to
//! run from the properties ([`JailSpec`], built by `iocage::lifecycle`); a
//! runtime knows *how*.
//!
//! Two things cannot be done from inside a multi-threaded daemon: entering
//! a jail (setns(2) of a mount namespace refuses a process whose threads
//! share their filesystem context; jail_attach(2) would jail the whole
//! daemon) and, on Linux, becoming the first process of new namespaces. So
//! the daemon starts a short-lived copy of its own binary for those
//! ([`helper`]): `iocaged jail-exec` runs a command in a jail and reports
//! its output as JSON; `iocaged jail-init` (Linux) sets a jail up and
//! stays as its init.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub(crate) mod capture;
pub mod console;
pub(crate) mod exec;
pub mod helper;
pub(crate) mod limits;
pub(crate) mod net;
pub(crate) mod passwd;
pub(crate) mod pty;
pub mod stream;

/// The FreeBSD runtime; its pure parts (the jail(2) parameter list, the
/// record of what a start mounted) build and are tested everywhere.
pub mod freebsd;
#[cfg(target_os = "linux")]
pub(crate) mod linux;

pub use capture::DEFAULT_OUTPUT_LIMIT;
pub use exec::{Bounds, ExecOutput};
pub use limits::Limit;
pub use net::Network;

/// A running jail as the kernel knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningJail {
    /// Kernel name, `ioc-<uuid>` for iocage's jails.
    pub name: String,
    /// FreeBSD: the jid. Linux: the host pid of the jail's init process.
    pub jid: i64,
}

/// A runtime operation that failed, with the jail it was about.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot {op} {jail}: {message}")]
pub struct RuntimeError {
    pub op: &'static str,
    pub jail: String,
    pub message: String,
}

impl RuntimeError {
    pub fn new(op: &'static str, jail: &str, message: impl Into<String>) -> Self {
        RuntimeError { op, jail: jail.to_string(), message: message.into() }
    }
}

/// Everything a runtime needs to create a jail: what iocage's properties
/// say, already validated and translated (no property names below here).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JailSpec {
    /// Kernel name, `ioc-<uuid>`.
    pub name: String,
    /// The jail's root directory (`<jail mountpoint>/root`).
    pub root: PathBuf,
    pub hostname: String,
    pub hostuuid: String,
    /// Shared IP with its addresses, or VNET with its interfaces.
    pub network: Network,
    /// The jail(8) side of the properties (permissions, limits on
    /// children, network modes, devfs ruleset, FIB). The FreeBSD runtime
    /// turns it into jail(2) parameters; the Linux runtime maps each field
    /// to its confinement or refuses the jail (`linux::confine`).
    pub jail: JailSettings,
    /// What to mount, in order (the runtime unmounts in reverse).
    pub mounts: Vec<Mount>,
    /// Resource limits (empty when `rlimits=off`).
    pub limits: Vec<Limit>,
    /// CPU list (`0-3,5`) the jail is bound to, when `cpuset` is not `off`.
    pub cpuset: Option<String>,
}

/// The jail(8) side of a jail's properties, typed; the FreeBSD runtime
/// turns it into jail(2) parameters (`runtime::freebsd::params`), the
/// Linux runtime into capabilities, a seccomp filter and namespaces, or
/// refuses what it cannot honour (`runtime::linux::confine`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JailSettings {
    /// The `allow.*` permissions by their jail(8) names less `allow.`
    /// (`set_hostname`, `mount.nullfs`), each granted or not, in order.
    pub allow: Vec<(String, bool)>,
    pub securelevel: Option<i32>,
    pub enforce_statfs: Option<i32>,
    pub children_max: Option<i32>,
    /// The devfs ruleset the kernel applies to devfs mounted in the jail.
    pub devfs_ruleset: u16,
    /// `ip4` and `ip6` (when the jail has no VNET of its own).
    pub ip4: IpMode,
    pub ip6: IpMode,
    /// `ip4.saddrsel`, `ip6.saddrsel`: source address selection.
    pub ip4_saddrsel: bool,
    pub ip6_saddrsel: bool,
    /// The routing table (FIB) commands in the jail run with.
    pub exec_fib: u32,
    /// How long stop waits for the jail's processes after SIGTERM before
    /// removing the jail (none: no SIGTERM phase).
    pub stop_timeout: Option<Duration>,
}

#[cfg(test)]
impl JailSpec {
    /// A jail `ioc-u1` (hostname `web`) with iocage's usual settings, these
    /// permissions and shared-IP addresses, for the runtimes' unit tests.
    pub(crate) fn for_tests(allow: Vec<(String, bool)>, addresses: Vec<std::net::IpAddr>) -> JailSpec {
        JailSpec {
            name: "ioc-u1".into(),
            root: PathBuf::from("/iocage/jails/u1/root"),
            hostname: "web".into(),
            hostuuid: "u1".into(),
            network: Network::Shared {
                addresses: addresses
                    .into_iter()
                    .map(|addr| net::Alias { interface: None, addr, prefix: None })
                    .collect(),
            },
            jail: JailSettings {
                allow,
                securelevel: Some(2),
                enforce_statfs: Some(2),
                children_max: Some(0),
                devfs_ruleset: 4,
                ip4: IpMode::New,
                ip6: IpMode::New,
                ip4_saddrsel: true,
                ip6_saddrsel: true,
                exec_fib: 0,
                stop_timeout: None,
            },
            mounts: Vec::new(),
            limits: Vec::new(),
            cpuset: None,
        }
    }
}

/// jail(8)'s `ip4`/`ip6`: `new` (only the jail's addresses), `inherit`
/// (the host's), `disable` (none; iocage also says `none`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum IpMode {
    New,
    Inherit,
    Disable,
    /// A value that is none of these, refused when a FreeBSD jail is made.
    Invalid(String),
}

impl IpMode {
    pub fn parse(v: &str) -> IpMode {
        match v {
            "new" => IpMode::New,
            "inherit" => IpMode::Inherit,
            "disable" | "none" => IpMode::Disable,
            other => IpMode::Invalid(other.to_string()),
        }
    }
}

/// A filesystem to mount for a jail; targets are absolute host paths
/// inside the jail's root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Mount {
    /// FreeBSD devfs with a ruleset; on Linux a tmpfs with the harmless
    /// device nodes (null, zero, full, random, urandom, tty).
    Devfs {
        target: PathBuf,
        ruleset: u32,
    },
    /// FreeBSD fdescfs; on Linux the `/dev/fd` family of links to `/proc`.
    Fdescfs {
        target: PathBuf,
    },
    Procfs {
        target: PathBuf,
    },
    /// A line of the jail's fstab.
    Fstab {
        source: String,
        target: PathBuf,
        fstype: String,
        options: Vec<String>,
    },
}

impl Mount {
    pub fn target(&self) -> &PathBuf {
        match self {
            Mount::Devfs { target, .. }
            | Mount::Fdescfs { target }
            | Mount::Procfs { target }
            | Mount::Fstab { target, .. } => target,
        }
    }
}

/// A command to run inside a running jail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecSpec {
    /// The user (looked up in the jail's own `/etc/passwd`).
    pub user: String,
    /// Run by the jail's `/bin/sh -c`.
    pub command: String,
    /// Killed, with everything it started, after this.
    pub timeout: Option<Duration>,
    /// Bytes of each of stdout and stderr kept; the command is stopped
    /// when it has written that much.
    pub output_limit: u64,
    /// Where its output goes, and where a console's input comes from.
    pub io: ExecIo,
}

/// Where a command's output goes (and, for a console, its input comes
/// from).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecIo {
    /// Captured whole, for the reply.
    Captured,
    /// To the outlet as it comes (execjail's `"output":"stream"`); the
    /// reply then carries none.
    Streamed(stream::Outlet),
    /// Instead of the command: the user's login shell on a terminal (the
    /// `console` action), what it shows to the outlet, its input from the
    /// console.
    Console(stream::Outlet, console::Console),
}

/// What the service needs from the kernel's jails. Every method blocks;
/// the service calls them from blocking threads.
pub trait Runtime: Send + Sync + 'static {
    /// Every running jail (iocage's or not).
    fn running(&self) -> Result<Vec<RunningJail>, RuntimeError>;

    /// Checks, without changing anything, that this runtime can create the
    /// jail as specified (limits it cannot enforce, mounts it cannot do).
    fn check(&self, spec: &JailSpec) -> Result<(), RuntimeError>;

    /// Creates the jail: mounts, the jail itself, its limits. A failure
    /// part-way undoes what was done and names the step.
    fn start(&self, spec: &JailSpec) -> Result<RunningJail, RuntimeError>;

    /// Removes the jail: every process in it, its mounts, its limits.
    fn stop(&self, jail: &RunningJail, spec: &JailSpec) -> Result<(), RuntimeError>;

    /// Replaces the jail's limits and CPU set with these.
    fn set_limits(&self, jail: &RunningJail, limits: &[Limit], cpuset: Option<&str>) -> Result<(), RuntimeError>;

    /// Runs a command inside the jail and returns its output.
    fn exec(&self, jail: &RunningJail, spec: &ExecSpec) -> Result<ExecOutput, RuntimeError> {
        exec::run(jail, spec)
    }

    /// What the jail uses now, as the kernel accounts it (for metrics).
    fn usage(&self, jail: &RunningJail) -> Result<Usage, RuntimeError> {
        Err(RuntimeError::new("account", &jail.name, "this runtime keeps no accounts of its jails"))
    }
}

/// What a running jail uses, as the kernel accounts it: Linux's cgroup
/// files, FreeBSD's RACCT (`rctl_get_racct`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Usage {
    /// CPU time used by everything in the jail since it started.
    pub cpu_seconds: f64,
    /// Memory charged to the jail, in bytes (Linux: `memory.current`, page
    /// cache and kernel memory included; FreeBSD: RACCT's `memoryuse`,
    /// resident).
    pub memory_bytes: u64,
    /// Processes in the jail (Linux: `pids.current`, which counts tasks,
    /// threads included).
    pub processes: u64,
    /// The memory limit in force, if any.
    pub memory_limit_bytes: Option<u64>,
    /// The process limit in force, if any.
    pub processes_limit: Option<u64>,
}

impl JailSpec {
    /// Whether the jail has a network stack of its own.
    pub fn vnet(&self) -> bool {
        self.network.is_vnet()
    }
}

/// The kernel name iocage gives a jail.
pub fn kernel_name(uuid: &str) -> String {
    format!("ioc-{uuid}")
}

/// The runtime of the platform this binary was built for.
pub fn native() -> Arc<dyn Runtime> {
    #[cfg(target_os = "freebsd")]
    return Arc::new(freebsd::FreeBsd::new());
    #[cfg(target_os = "linux")]
    return Arc::new(linux::Linux::new(linux::DEFAULT_STATE_DIR, linux::DEFAULT_CGROUP_DIR));
}

/// Enters a running jail from a helper process (see [`helper`]); the
/// process is single-threaded when this is called.
pub(crate) fn enter(jail: &RunningJail) -> Result<(), String> {
    #[cfg(target_os = "freebsd")]
    return freebsd::enter(jail);
    #[cfg(target_os = "linux")]
    return linux::enter(jail);
}
