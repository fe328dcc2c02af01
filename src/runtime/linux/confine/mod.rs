//! What a Linux jail's processes may do: the capabilities they keep, the
//! system calls they may make (a seccomp filter), and the mapping from
//! the jail's FreeBSD-style settings ([`crate::runtime::JailSettings`]) to those, with
//! what cannot be honoured refused.
//!
//! The capabilities are in `caps`, the seccomp filter in `seccomp`; this
//! module maps the settings to them and applies both.
//!
//! # Rules for everything that runs as root near a jail
//!
//! The helpers (`jail-init`, `jail-exec`) are root with every capability
//! and sit, for a moment, inside namespaces whose files the jail's root
//! controls. They follow these rules:
//!
//! 1. Decide before entering. The capability set is computed from the
//!    kernel (`PR_CAPBSET_READ` until `EINVAL`, never a file such as
//!    `/proc/sys/kernel/cap_last_cap`, which inside the jail may be the
//!    jail's own), and the seccomp filter is compiled, before `setns(2)`
//!    or `pivot_root(2)`.
//! 2. Drop everything on the way in: the bounding set is cut to the
//!    jail's capabilities, the inheritable and ambient sets are cleared,
//!    the effective and permitted sets cut, `PR_SET_NO_NEW_PRIVS` set and
//!    the seccomp filter installed before the jail's first program runs.
//! 3. Read nothing from the jail that can block or grow: jail files are
//!    opened with `O_NOFOLLOW|O_NONBLOCK`, must be regular files
//!    (`fstat(2)`), and are read up to a cap
//!    ([`crate::runtime::passwd::read_jail_file`]).
//! 4. Arm the timeout before the first step that can block.
//! 5. Check that the process is single-threaded before entering, from the
//!    host's `/proc`, and fail closed.
//! 6. A forked child leaves with `_exit(2)`, never through the parent's
//!    exit handlers and buffers.

use seccompiler::BpfProgram;
use serde::{Deserialize, Serialize};

use crate::runtime::{IpMode, JailSpec, Network};

mod caps;
mod seccomp;

pub use caps::cap;
use caps::{BASE_CAPABILITIES, drop_capabilities, last_cap, no_new_privs, to_drop};
pub(super) use seccomp::target_arch;
use seccomp::{filters, install};

/// How a jail is confined, decided from its settings by [`confinement`]
/// when it starts, recorded with it, and applied by every helper that
/// runs a program in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confinement {
    /// The capabilities the jail's processes keep, sorted.
    pub capabilities: Vec<u32>,
    /// Deny SysV IPC (`allow_sysvipc=0`).
    pub deny_sysvipc: bool,
    /// Deny mlock(2) and friends (`allow_mlock=0`).
    pub deny_mlock: bool,
    /// Only local, IPv4, IPv6 and routing (netlink) sockets
    /// (`allow_socket_af=0`).
    pub restrict_socket_af: bool,
    /// A network namespace of its own: `vnet=on`, or a shared-IP jail
    /// that is not `inherit` (`linux::net` puts its interfaces there).
    pub own_network: bool,
}

impl Confinement {
    /// What the jail's init keeps: nothing.
    pub fn for_init(&self) -> Confinement {
        Confinement { capabilities: Vec::new(), ..self.clone() }
    }
}

/// The permission names (jail(8)'s, less `allow.`) and what Linux does
/// with each when granted (`Ok(Some(cap))`: that capability; `Ok(None)`:
/// a seccomp relaxation) or why it cannot (`Err`).
fn grant(name: &str) -> Result<Option<u32>, &'static str> {
    match name {
        "raw_sockets" => Ok(Some(cap::NET_RAW)),
        "chflags" => Ok(Some(cap::LINUX_IMMUTABLE)),
        "mlock" => Ok(Some(cap::IPC_LOCK)),
        "sysvipc" | "socket_af" => Ok(None),
        // iocage's default; see [`confinement`].
        "set_hostname" => Ok(None),
        "quotas" => Err("quotactl(2) needs CAP_SYS_ADMIN, which would let the jail's root out"),
        n if n == "mount" || n.starts_with("mount.") => {
            Err("mounting needs CAP_SYS_ADMIN, which would let the jail's root out; use the jail's fstab")
        }
        _ => Err("the Linux runtime has no such permission"),
    }
}

/// The property name of a permission (`mount.zfs` -> `allow_mount_zfs`).
fn prop_of(allow: &str) -> String {
    format!("allow_{}", allow.replace('.', "_"))
}

/// The jail's confinement, or every setting the Linux runtime cannot
/// honour, each with the reason (the runtime's `check` refuses the start).
///
/// - `allow_*`: a refused permission is enforced (the capability is not
///   kept, the seccomp filter denies the calls); a granted one is mapped
///   (`raw_sockets`: CAP_NET_RAW, `chflags`: CAP_LINUX_IMMUTABLE, `mlock`:
///   CAP_IPC_LOCK, `sysvipc`, `socket_af`: the calls allowed) or refused
///   (`mount*`, `quotas`: they need CAP_SYS_ADMIN). The exception is
///   `allow_set_hostname=1`, iocage's default, which every jail stores:
///   the jail has a hostname of its own (a UTS namespace, set from
///   `host_hostname`) but its root cannot change it (that needs
///   CAP_SYS_ADMIN); refusing it would refuse every jail, so it is
///   accepted and documented as not granted.
/// - `securelevel`: every level is accepted: the jail's root holds none
///   of the capabilities a securelevel takes away (raw disks, immutable
///   flags, modules, the clock, firewall).
/// - `enforce_statfs`: the jail sees only its own mounts, below its root
///   (2, iocage's default); 0 and 1 show more, so the jail is stricter
///   than asked.
/// - `children_max` above 0: refused (a jail cannot create namespaces).
/// - `devfs_ruleset`: the jail's `/dev` is a fixed set of harmless nodes,
///   a subset of ruleset 4 (`devfsrules_jail`); any other ruleset is
///   refused.
/// - `ip4`/`ip6` without VNET: `inherit` for both shares the host's
///   network; otherwise the jail gets a network namespace of its own,
///   with loopback and its shared-IP addresses on ipvlan links of their
///   host interfaces (`linux::net`), so it can use no other host address,
///   as on FreeBSD; an address without its interface, or a mix of
///   `inherit` and the others, is refused.
/// - `exec_fib` other than 0: refused.
pub fn confinement(spec: &JailSpec) -> Result<Confinement, Vec<String>> {
    let s = &spec.jail;
    let mut refused = Vec::new();
    let mut caps: Vec<u32> = BASE_CAPABILITIES.to_vec();
    let granted = |name: &str| s.allow.iter().any(|(n, g)| n == name && *g);
    for (name, on) in &s.allow {
        if !*on {
            continue;
        }
        match grant(name) {
            Ok(Some(c)) => caps.push(c),
            Ok(None) => {}
            Err(why) => refused.push(format!("{}=1: {why}", prop_of(name))),
        }
    }
    caps.sort_unstable();
    caps.dedup();
    if let Some(n) = s.children_max.filter(|n| *n > 0) {
        refused.push(format!("children_max={n}: a Linux jail cannot create jails (namespaces)"));
    }
    if let Some(n) = s.enforce_statfs.filter(|n| !(0..=2).contains(n)) {
        refused.push(format!("enforce_statfs={n}: expected 0, 1 or 2"));
    }
    if s.devfs_ruleset != 4 {
        refused.push(format!(
            "devfs_ruleset={}: a Linux jail's /dev has only null, zero, full, random, urandom and tty (ruleset 4)",
            s.devfs_ruleset
        ));
    }
    if s.exec_fib != 0 {
        refused.push(format!("exec_fib={}: the Linux runtime has no routing tables per jail", s.exec_fib));
    }
    let own_network = spec.vnet() || {
        let modes = [(&s.ip4, "ip4"), (&s.ip6, "ip6")];
        let inherit = modes.iter().filter(|(m, _)| **m == IpMode::Inherit).count();
        for (m, name) in modes {
            if let IpMode::Invalid(v) = m {
                refused.push(format!("{name}={v:?}: expected new, inherit or disable"));
            }
        }
        if let Network::Shared { addresses } = &spec.network {
            let bare: Vec<String> =
                addresses.iter().filter(|a| a.interface.is_none()).map(|a| a.addr.to_string()).collect();
            if !bare.is_empty() {
                refused.push(format!(
                    "ip4_addr/ip6_addr {}: a Linux jail's address must name its host interface \
                     (iface|address, or DEFAULT|address)",
                    bare.join(",")
                ));
            }
        }
        if inherit == 1 {
            refused.push("ip4 and ip6: a Linux jail shares the host's network for both or for neither".into());
        }
        if inherit == 2 && (!s.ip4_saddrsel || !s.ip6_saddrsel) {
            refused.push("ip4_saddrsel/ip6_saddrsel=0: the host's network selects source addresses itself".into());
        }
        inherit == 0
    };
    if !refused.is_empty() {
        return Err(refused);
    }
    Ok(Confinement {
        capabilities: caps,
        deny_sysvipc: !granted("sysvipc"),
        deny_mlock: !granted("mlock"),
        restrict_socket_af: !granted("socket_af"),
        own_network,
    })
}

/// Everything [`apply`] needs, decided and compiled before entering.
pub struct Prepared {
    keep: Vec<u32>,
    drop: Vec<u32>,
    filters: Vec<BpfProgram>,
}

/// Decides and compiles (rule 1): call before entering the jail.
pub fn prepare(c: &Confinement) -> Result<Prepared, String> {
    let last = last_cap()?;
    Ok(Prepared { keep: c.capabilities.clone(), drop: to_drop(&c.capabilities, last), filters: filters(c)? })
}

/// Applies what [`prepare`] decided, in the process that will exec the
/// jail's program: capabilities, no new privileges, seccomp.
/// `before_filter` runs between the capability drop and the filter
/// (setuid and friends, which the filter would allow anyway).
pub fn apply(p: &Prepared, before_filter: impl FnOnce() -> Result<(), String>) -> Result<(), String> {
    drop_capabilities(&p.keep, &p.drop)?;
    before_filter()?;
    no_new_privs()?;
    install(&p.filters)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn spec() -> JailSpec {
        let allow = [
            "chflags",
            "mount",
            "mount.devfs",
            "mount.nullfs",
            "mount.procfs",
            "mount.tmpfs",
            "mount.zfs",
            "quotas",
            "raw_sockets",
            "socket_af",
            "sysvipc",
        ]
        .into_iter()
        .map(|n| (n.to_string(), false))
        .chain([("set_hostname".to_string(), true)])
        .collect();
        JailSpec::for_tests(allow, Vec::new())
    }

    fn set(s: &mut JailSpec, name: &str, on: bool) {
        s.jail.allow.iter_mut().find(|(n, _)| n == name).unwrap().1 = on;
    }

    #[test]
    fn iocage_defaults_map_to_the_strictest_confinement() {
        let c = confinement(&spec()).unwrap();
        assert_eq!(c.capabilities, BASE_CAPABILITIES.to_vec());
        assert!(!c.capabilities.contains(&cap::SYS_ADMIN) && !c.capabilities.contains(&cap::NET_RAW));
        assert!(!c.capabilities.contains(&cap::MKNOD));
        assert!(c.deny_sysvipc && c.deny_mlock && c.restrict_socket_af);
        // ip4=new, ip6=new and no address: no host address at all.
        assert!(c.own_network);
        assert!(c.for_init().capabilities.is_empty());
    }

    #[test]
    fn permissions_are_mapped_or_refused_by_name() {
        let mut s = spec();
        set(&mut s, "raw_sockets", true);
        set(&mut s, "sysvipc", true);
        let c = confinement(&s).unwrap();
        assert!(c.capabilities.contains(&cap::NET_RAW));
        assert!(!c.deny_sysvipc);
        for p in ["mount", "mount.nullfs", "quotas"] {
            let mut s = spec();
            set(&mut s, p, true);
            let err = confinement(&s).unwrap_err().join("; ");
            assert!(err.contains(&prop_of(p)) && err.contains("CAP_SYS_ADMIN"), "{err}");
        }
        let mut s = spec();
        s.jail.allow.push(("vmm".into(), true));
        assert!(confinement(&s).unwrap_err()[0].contains("allow_vmm=1: the Linux runtime has no such"));
        s.jail.allow.last_mut().unwrap().1 = false;
        assert!(confinement(&s).is_ok(), "an unknown permission refused is enforced");
    }

    #[test]
    fn parameters_linux_cannot_honour_are_refused() {
        let refused = |f: &dyn Fn(&mut JailSpec)| {
            let mut s = spec();
            f(&mut s);
            confinement(&s).unwrap_err().join("; ")
        };
        assert!(refused(&|s| s.jail.children_max = Some(3)).contains("children_max=3"));
        assert!(refused(&|s| s.jail.devfs_ruleset = 0).contains("devfs_ruleset=0"));
        assert!(refused(&|s| s.jail.exec_fib = 1).contains("exec_fib=1"));
        // for_tests gives its addresses no interface: Linux needs one.
        let bare = JailSpec::for_tests(Vec::new(), vec!["10.0.0.2".parse().unwrap()]);
        assert!(confinement(&bare).unwrap_err().join("; ").contains("10.0.0.2: a Linux jail's address must name"));
        assert!(refused(&|s| s.jail.ip4 = IpMode::Inherit).contains("both or for neither"));
        assert!(refused(&|s| s.jail.ip6 = IpMode::parse("bogus")).contains("ip6=\"bogus\""));
        for level in [-1, 0, 1, 2, 3] {
            let mut s = spec();
            s.jail.securelevel = Some(level);
            s.jail.enforce_statfs = Some(level.clamp(0, 2));
            assert!(confinement(&s).is_ok(), "securelevel {level}");
        }
        let mut s = spec();
        s.jail.ip4 = IpMode::Inherit;
        s.jail.ip6 = IpMode::Inherit;
        assert!(!confinement(&s).unwrap().own_network, "inherit: the host's network");
        s.network = Network::Vnet(crate::runtime::net::Vnet {
            interfaces: Vec::new(),
            router4: None,
            router6: None,
            bridge_uplink: None,
        });
        assert!(confinement(&s).unwrap().own_network);
    }
}
