//! The jail(2) parameter list of a jail: a pure function of its
//! [`JailSpec`] and of which parameters the running kernel knows, so that
//! it is built (and tested) the same on every platform.
//!
//! How the kernel reads the list (sys/kern/kern_jail.c, `kern_jail_set`):
//! - a boolean parameter is looked up by *name* only (`vfs_flagopt`); its
//!   value is never read. `allow.sysvipc` with any value grants SysV IPC;
//!   the way to refuse it is the name `allow.nosysvipc`. libjail
//!   (lib/libjail/jail.c, `jailparam_set`) sends booleans without a value
//!   and renames a false one to its "no" form; so does this list.
//! - `allow.mount.<fs>` exists only once filesystem `<fs>` is registered
//!   (`prison_add_vfs` from `vfs_register`); a name the kernel does not know
//!   fails the whole call with "unknown parameter". Which names exist is
//!   the `known` predicate (on FreeBSD: does the sysctl
//!   `security.jail.param.<name>` exist); a refused permission whose name
//!   is unknown is left out, as there is nothing to refuse.
//! - `ip4`/`ip6` and `vnet` are "jailsys" integers (`JAIL_SYS_DISABLE`,
//!   `JAIL_SYS_NEW`, `JAIL_SYS_INHERIT`, sys/sys/jail.h); a new jail given
//!   no `ip4` at all is restricted to an empty address list, i.e. it cannot
//!   use IPv4. Any `ip4`/`ip6` parameter on a VNET jail is refused ("vnet
//!   jails cannot have IP address restrictions"), so a VNET jail gets none,
//!   as iocage did.
//! - `devfs_ruleset` is the ruleset the kernel applies to every devfs
//!   mounted inside the jail.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::runtime::{IpMode, JailSpec};

/// `JAIL_SYS_DISABLE`, `JAIL_SYS_NEW`, `JAIL_SYS_INHERIT` (sys/sys/jail.h).
pub const JAIL_SYS_DISABLE: i32 = 0;
pub const JAIL_SYS_NEW: i32 = 1;
pub const JAIL_SYS_INHERIT: i32 = 2;

/// A parameter's value as jail_set(2) takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// A boolean: the name alone, with an empty value (`persist`,
    /// `allow.nosysvipc`).
    Flag,
    /// A C `int`.
    Int(i32),
    /// A NUL-terminated string.
    Str(String),
    /// `struct in_addr[]`, network order.
    Ip4(Vec<Ipv4Addr>),
    /// `struct in6_addr[]`.
    Ip6(Vec<Ipv6Addr>),
}

/// One jail parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    pub name: String,
    pub value: Value,
}

impl Param {
    fn new(name: impl Into<String>, value: Value) -> Param {
        Param { name: name.into(), value }
    }
}

/// Why a jail's parameters cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamError {
    #[error("{prop}={value:?}: expected new, inherit or disable")]
    IpMode { prop: &'static str, value: String },
    #[error("{param} is granted, but this kernel has no such parameter{hint}")]
    Unknown { param: String, hint: String },
    #[error("its root {0:?} is not a UTF-8 path")]
    Path(std::path::PathBuf),
}

/// The name that refuses a boolean parameter: `no` before its last
/// component (`allow.sysvipc` -> `allow.nosysvipc`, `allow.mount.nullfs`
/// -> `allow.mount.nonullfs`), as libjail's `noname` makes it.
pub fn no_name(name: &str) -> String {
    match name.rsplit_once('.') {
        Some((head, last)) => format!("{head}.no{last}"),
        None => format!("no{name}"),
    }
}

/// The whole parameter list for jail_set(2) with `JAIL_CREATE`, in order:
/// identity, `persist`, permissions, limits, devfs ruleset, network.
/// `known(name)` tells whether the kernel has parameter `name`.
pub fn build(spec: &JailSpec, known: impl Fn(&str) -> bool) -> Result<Vec<Param>, ParamError> {
    let s = &spec.jail;
    let path = spec.root.to_str().ok_or_else(|| ParamError::Path(spec.root.clone()))?;
    let mut out = vec![
        Param::new("name", Value::Str(spec.name.clone())),
        Param::new("path", Value::Str(path.to_string())),
        Param::new("host.hostname", Value::Str(spec.hostname.clone())),
        Param::new("host.hostuuid", Value::Str(spec.hostuuid.clone())),
        // Created without a process in it, the jail must persist until it
        // is removed.
        Param::new("persist", Value::Flag),
    ];
    for (allow, granted) in &s.allow {
        let name = format!("allow.{allow}");
        if !known(&name) {
            if *granted {
                let hint = match allow.strip_prefix("mount.") {
                    Some(fs) => format!(" (is the {fs} filesystem available to jails?)"),
                    None => String::new(),
                };
                return Err(ParamError::Unknown { param: name, hint });
            }
            continue;
        }
        out.push(Param::new(if *granted { name } else { no_name(&name) }, Value::Flag));
    }
    for (name, v) in
        [("securelevel", s.securelevel), ("enforce_statfs", s.enforce_statfs), ("children.max", s.children_max)]
    {
        if let Some(v) = v {
            out.push(Param::new(name, Value::Int(v)));
        }
    }
    out.push(Param::new("devfs_ruleset", Value::Int(i32::from(s.devfs_ruleset))));
    if spec.vnet() {
        out.push(Param::new("vnet", Value::Int(JAIL_SYS_NEW)));
        return Ok(out);
    }
    let (mut v4, mut v6): (Vec<Ipv4Addr>, Vec<Ipv6Addr>) = (Vec::new(), Vec::new());
    for a in &spec.network.shared_addresses() {
        match a {
            IpAddr::V4(a) => v4.push(*a),
            IpAddr::V6(a) => v6.push(*a),
        }
    }
    let family = |out: &mut Vec<Param>, fam: &str, prop: &'static str, mode: &IpMode, saddrsel: bool, addrs: Value| {
        let sys = match mode {
            IpMode::New => JAIL_SYS_NEW,
            IpMode::Inherit => JAIL_SYS_INHERIT,
            IpMode::Disable => JAIL_SYS_DISABLE,
            IpMode::Invalid(v) => return Err(ParamError::IpMode { prop, value: v.clone() }),
        };
        out.push(Param::new(fam, Value::Int(sys)));
        // Addresses make the mode `new` in the kernel, as in jail(8); with
        // `disable` the jail gets none.
        let empty = matches!(&addrs, Value::Ip4(a) if a.is_empty()) || matches!(&addrs, Value::Ip6(a) if a.is_empty());
        if *mode != IpMode::Disable && !empty {
            out.push(Param::new(format!("{fam}.addr"), addrs));
        }
        let sel = format!("{fam}.saddrsel");
        out.push(Param::new(if saddrsel { sel } else { no_name(&sel) }, Value::Flag));
        Ok(())
    };
    family(&mut out, "ip4", "ip4", &s.ip4, s.ip4_saddrsel, Value::Ip4(v4))?;
    family(&mut out, "ip6", "ip6", &s.ip6, s.ip6_saddrsel, Value::Ip6(v6))?;
    Ok(out)
}

/// The `allow.mount.<fs>` permissions granted whose parameter the kernel
/// does not know yet: the filesystems to load first (libjail's
/// `kldload_param` loads the module named after the filesystem).
pub fn filesystems_to_load(spec: &JailSpec, known: impl Fn(&str) -> bool) -> Vec<String> {
    spec.jail
        .allow
        .iter()
        .filter(|(name, granted)| *granted && !known(&format!("allow.{name}")))
        .filter_map(|(name, _)| name.strip_prefix("mount.").map(str::to_string))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> JailSpec {
        JailSpec::for_tests(
            vec![
                ("set_hostname".into(), true),
                ("sysvipc".into(), false),
                ("raw_sockets".into(), false),
                ("mount".into(), true),
                ("mount.nullfs".into(), false),
                ("mount.zfs".into(), true),
            ],
            vec!["10.0.0.2".parse().unwrap(), "fe80::2".parse().unwrap()],
        )
    }

    fn names(p: &[Param]) -> Vec<&str> {
        p.iter().map(|p| p.name.as_str()).collect()
    }

    fn get<'a>(p: &'a [Param], name: &str) -> Option<&'a Value> {
        p.iter().find(|p| p.name == name).map(|p| &p.value)
    }

    #[test]
    fn refused_permissions_are_sent_by_their_no_names_without_values() {
        let p = build(&spec(), |_| true).unwrap();
        let allow: Vec<&Param> = p.iter().filter(|p| p.name.starts_with("allow.")).collect();
        assert_eq!(
            allow.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
            [
                "allow.set_hostname",
                "allow.nosysvipc",
                "allow.noraw_sockets",
                "allow.mount",
                "allow.mount.nonullfs",
                "allow.mount.zfs"
            ]
        );
        // The kernel reads a boolean's name only: no value at all, as
        // libjail sends it.
        assert!(allow.iter().all(|p| p.value == Value::Flag));
        for refused in ["allow.sysvipc", "allow.raw_sockets", "allow.mount.nullfs"] {
            assert!(get(&p, refused).is_none(), "{refused} would grant it whatever its value");
        }
        assert_eq!(no_name("persist"), "nopersist");
    }

    #[test]
    fn identity_limits_and_the_devfs_ruleset_are_set() {
        let p = build(&spec(), |_| true).unwrap();
        assert_eq!(names(&p)[..5], ["name", "path", "host.hostname", "host.hostuuid", "persist"]);
        assert_eq!(get(&p, "path"), Some(&Value::Str("/iocage/jails/u1/root".into())));
        assert_eq!(get(&p, "persist"), Some(&Value::Flag));
        assert_eq!(get(&p, "securelevel"), Some(&Value::Int(2)));
        assert_eq!(get(&p, "children.max"), Some(&Value::Int(0)));
        assert_eq!(get(&p, "devfs_ruleset"), Some(&Value::Int(4)));
        let mut s = spec();
        s.jail.devfs_ruleset = 11;
        s.jail.securelevel = None;
        let p = build(&s, |_| true).unwrap();
        assert_eq!(get(&p, "devfs_ruleset"), Some(&Value::Int(11)));
        assert!(get(&p, "securelevel").is_none(), "unset means the kernel's default");
    }

    #[test]
    fn ip_modes_map_to_jailsys_values() {
        let p = build(&spec(), |_| true).unwrap();
        assert_eq!(get(&p, "ip4"), Some(&Value::Int(JAIL_SYS_NEW)));
        assert_eq!(get(&p, "ip4.addr"), Some(&Value::Ip4(vec!["10.0.0.2".parse().unwrap()])));
        assert_eq!(get(&p, "ip6"), Some(&Value::Int(JAIL_SYS_NEW)));
        assert_eq!(get(&p, "ip6.addr"), Some(&Value::Ip6(vec!["fe80::2".parse().unwrap()])));
        assert_eq!(get(&p, "ip4.saddrsel"), Some(&Value::Flag));
        assert!(get(&p, "vnet").is_none());

        let mut s = spec();
        s.network = crate::runtime::Network::Shared { addresses: Vec::new() };
        s.jail.ip4 = IpMode::Inherit;
        s.jail.ip6 = IpMode::Disable;
        s.jail.ip4_saddrsel = false;
        let p = build(&s, |_| true).unwrap();
        // inherit: the host's addresses; without the parameter a new jail
        // could not use IPv4 at all.
        assert_eq!(get(&p, "ip4"), Some(&Value::Int(JAIL_SYS_INHERIT)));
        assert!(get(&p, "ip4.addr").is_none());
        assert_eq!(get(&p, "ip4.nosaddrsel"), Some(&Value::Flag));
        assert!(get(&p, "ip4.saddrsel").is_none());
        assert_eq!(get(&p, "ip6"), Some(&Value::Int(JAIL_SYS_DISABLE)));
        assert_eq!(get(&p, "ip6.saddrsel"), Some(&Value::Flag));

        let mut s = spec();
        s.jail.ip4 = IpMode::Disable;
        let p = build(&s, |_| true).unwrap();
        assert!(get(&p, "ip4.addr").is_none(), "disable gives the jail no IPv4 address");
        assert_eq!(IpMode::parse("none"), IpMode::Disable);

        let mut s = spec();
        s.jail.ip6 = IpMode::parse("bogus");
        assert_eq!(build(&s, |_| true).unwrap_err(), ParamError::IpMode { prop: "ip6", value: "bogus".into() });
    }

    #[test]
    fn a_vnet_jail_gets_no_ip_restrictions() {
        let mut s = spec();
        s.network = crate::runtime::Network::Vnet(crate::runtime::net::Vnet {
            interfaces: Vec::new(),
            router4: None,
            router6: None,
            bridge_uplink: None,
        });
        let p = build(&s, |_| true).unwrap();
        assert_eq!(get(&p, "vnet"), Some(&Value::Int(JAIL_SYS_NEW)));
        assert!(p.iter().all(|p| !p.name.starts_with("ip")), "{:?}", names(&p));
    }

    #[test]
    fn unregistered_filesystems_are_loaded_or_left_out() {
        let no_nullfs_zfs = |n: &str| !matches!(n, "allow.mount.nullfs" | "allow.mount.zfs");
        // zfs is granted and unknown: load it first; nullfs is refused.
        assert_eq!(filesystems_to_load(&spec(), no_nullfs_zfs), ["zfs"]);
        let err = build(&spec(), no_nullfs_zfs).unwrap_err();
        assert!(err.to_string().contains("allow.mount.zfs is granted"), "{err}");
        // Once zfs is there: the refused, unknown nullfs is left out rather
        // than failing the call with "unknown parameter".
        let p = build(&spec(), |n: &str| n != "allow.mount.nullfs").unwrap();
        assert!(get(&p, "allow.mount.nonullfs").is_none());
        assert!(get(&p, "allow.mount.nullfs").is_none());
        assert_eq!(get(&p, "allow.mount.zfs"), Some(&Value::Flag));
        assert_eq!(get(&p, "allow.nosysvipc"), Some(&Value::Flag));
    }
}
