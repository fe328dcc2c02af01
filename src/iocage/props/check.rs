//! Checking a value a client gives for a property: the property exists
//! and clients may set it, the value has the property's format, and what
//! the format alone does not settle; the host hooks; why a value was
//! refused.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::{Format, IpFamily, Prop, lookup};

use Format::*;

/// Longest user-property value ZFS stores (ZAP_MAXVALUELEN less the NUL).
pub const MAX_VALUE_LEN: usize = 8191;

/// Why a value was refused; the message names the property and the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PropError {
    #[error("unknown property '{0}'")]
    Unknown(String),
    #[error("property '{0}' is read-only")]
    ReadOnly(String),
    #[error("invalid value {value:?} for property '{name}': expected {expected}")]
    Invalid { name: String, value: String, expected: String },
    /// The network properties, each well-formed, do not make a network
    /// (`iocage::network`): the message names the property and value.
    #[error("network properties: {0}")]
    Network(String),
}

/// The properties whose value runs as root on the host: API clients may
/// set them only with `allow_host_hooks = true` in the configuration.
/// (`mountpoint`, the only other property that names a host path, is
/// checked against the jail's place by createjail, clonejail and startjail.)
pub const HOST_HOOKS: [&str; 4] = ["exec_prestart", "exec_poststart", "exec_prestop", "exec_poststop"];

/// Checks `value` for the property `name`: the property must exist, be
/// settable by clients, and the value must have the property's format.
pub fn validate_client_value(name: &str, value: &str) -> Result<&'static Prop, PropError> {
    let p = lookup(name).ok_or_else(|| PropError::Unknown(name.to_string()))?;
    if !p.kind.client_settable() {
        return Err(PropError::ReadOnly(name.to_string()));
    }
    check_format(p.format, value).map_err(|expected| PropError::Invalid {
        name: name.to_string(),
        value: value.to_string(),
        expected: expected.to_string(),
    })?;
    check_meaning(p, value).map_err(|expected| PropError::Invalid {
        name: name.to_string(),
        value: value.to_string(),
        expected,
    })?;
    Ok(p)
}

/// What a value's format alone does not settle: a limit's amount must be
/// one the runtimes can compute with (the same parser they use, with the
/// resource's range), and a tag must read as neither "unset" (`-`, how
/// listings print it) nor an option (a leading `-` to the iocage command
/// that may share the pool).
fn check_meaning(p: &Prop, value: &str) -> Result<(), String> {
    if p.format == Limit {
        crate::runtime::limits::Limit::parse(p.name, value)?;
    }
    if p.name == "tag" && value.starts_with('-') {
        return Err("a tag that does not start with '-' ('-' is how listings show \"unset\", \
                    and a leading '-' reads as an option)"
            .into());
    }
    Ok(())
}

/// `Err(description of what was expected)` when `value` does not fit.
pub fn check_format(format: Format, value: &str) -> Result<(), &'static str> {
    let ok = match format {
        Bool01 => matches!(value, "0" | "1"),
        OnOff => matches!(value, "on" | "off"),
        YesNo => matches!(value, "yes" | "no"),
        Int(lo, hi) => value.parse::<i64>().is_ok_and(|n| (lo..=hi).contains(&n)),
        Limit => value == "off" || is_limit(value),
        Cpuset => value == "off" || is_cpu_list(value),
        IpAddrs(f) => value == "none" || value.split(',').all(|e| is_ip_entry(e, f)),
        Router(f) => value == "none" || is_ip(value, f),
        Interfaces => {
            value == "none"
                || value.split(',').all(|e| e.split_once(':').is_some_and(|(n, b)| is_ifname(n) && is_ifname(b)))
        }
        // iocage writes the pair with a space (`ioc_start.py`); a comma too.
        Mac => {
            value == "none" || {
                let macs: Vec<&str> = value.split([',', ' ']).filter(|m| !m.is_empty()).collect();
                macs.len() == 2 && macs.iter().all(|m| is_mac(m))
            }
        }
        Name => is_safe_name(value),
        DatasetName => value == "none" || (value.split('/').all(is_safe_name) && value.len() < 256),
        SizeOrNone => value == "none" || is_size(value),
        Compression => is_compression(value),
        Dedup => matches!(value, "on" | "off" | "verify" | "sha256" | "sha256,verify" | "sha512" | "skein" | "edonr"),
        Mountpoint => matches!(value, "none" | "legacy") || (value.starts_with('/') && is_text(value)),
        Uuid => is_uuid(value),
        Text => is_text(value),
    };
    if ok && value.len() <= MAX_VALUE_LEN { Ok(()) } else { Err(expected(format)) }
}

fn expected(format: Format) -> &'static str {
    match format {
        Bool01 => "0 or 1",
        OnOff => "on or off",
        YesNo => "yes or no",
        Int(..) => "a whole number in range",
        Limit => "off or <amount>:<action> (action deny, log, devctl or sig<name>)",
        Cpuset => "off or a CPU list such as 0-3 or 1,2",
        IpAddrs(IpFamily::V4) => "none or iface|a.b.c.d[/mask][,...]",
        IpAddrs(IpFamily::V6) => "none or iface|ipv6-address[/prefix][,...]",
        Router(IpFamily::V4) => "none or an IPv4 address",
        Router(IpFamily::V6) => "none or an IPv6 address",
        Interfaces => "none or nic:bridge[,nic:bridge]",
        Mac => "none or two MAC addresses (the host's end, the jail's) separated by a space or a comma",
        Name => "a name of letters, digits and . _ - : (no /, @, #, .., spaces or control characters; at most 200)",
        DatasetName => "none or a dataset name",
        SizeOrNone => "none or a size such as 10G",
        Compression => "a ZFS compression algorithm (on, off, lz4, zstd, gzip-1..9, ...)",
        Dedup => "a ZFS dedup setting (on, off, verify, sha256, ...)",
        Mountpoint => "an absolute path, none or legacy",
        Uuid => "a UUID",
        Text => "text without control characters, at most 8191 bytes",
    }
}

/// Names that become part of a dataset name or a path: a conservative set
/// of characters, never `.`/`..`, never longer than 200 bytes (a jail's
/// dataset name must still fit in ZFS's 255).
pub fn is_safe_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 200
        && s != "."
        && s != ".."
        && !s.contains("..")
        && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':'))
}

fn is_text(s: &str) -> bool {
    !s.chars().any(char::is_control)
}

fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12])
        && groups.iter().all(|g| g.chars().all(|c| c.is_ascii_hexdigit()))
}

fn is_amount(s: &str) -> bool {
    let digits = s.trim_end_matches(|c: char| "kKmMgGtTpP%".contains(c));
    !digits.is_empty() && s.len() - digits.len() <= 1 && digits.chars().all(|c| c.is_ascii_digit())
}

fn is_limit(s: &str) -> bool {
    let Some((amount, action)) = s.split_once(':') else { return false };
    let action_ok = matches!(action, "deny" | "log" | "devctl")
        || action.strip_prefix("sig").is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric()));
    is_amount(amount) && action_ok
}

fn is_size(s: &str) -> bool {
    let num = s.trim_end_matches(|c: char| "kKmMgGtTpPeE".contains(c));
    let num = num.strip_suffix('.').unwrap_or(num);
    !num.is_empty() && s.len() - num.len() <= 1 && num.parse::<f64>().is_ok_and(|n| n >= 0.0)
}

fn is_cpu_list(s: &str) -> bool {
    let cpu = |c: &str| !c.is_empty() && c.len() <= 4 && c.chars().all(|d| d.is_ascii_digit());
    s.split(',').all(|part| match part.split_once('-') {
        Some((a, b)) => cpu(a) && cpu(b) && a.parse::<u32>().ok() <= b.parse::<u32>().ok(),
        None => cpu(part),
    })
}

fn is_ip(s: &str, f: IpFamily) -> bool {
    match f {
        IpFamily::V4 => s.parse::<Ipv4Addr>().is_ok(),
        IpFamily::V6 => s.parse::<Ipv6Addr>().is_ok(),
    }
}

fn is_ip_entry(e: &str, f: IpFamily) -> bool {
    let (iface, addr) = match e.split_once('|') {
        Some((i, a)) => (Some(i), a),
        None => (None, e),
    };
    let (addr, mask) = match addr.split_once('/') {
        Some((a, m)) => (a, Some(m)),
        None => (addr, None),
    };
    let max = if f == IpFamily::V4 { 32 } else { 128 };
    iface.is_none_or(is_ifname) && is_ip(addr, f) && mask.is_none_or(|m| m.parse::<u32>().is_ok_and(|m| m <= max))
}

fn is_ifname(s: &str) -> bool {
    !s.is_empty() && s.len() <= 15 && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

fn is_mac(s: &str) -> bool {
    let parts: Vec<&str> = s.split(':').collect();
    parts.len() == 6 && parts.iter().all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()))
        || (s.len() == 12 && s.chars().all(|c| c.is_ascii_hexdigit()))
}

fn is_compression(s: &str) -> bool {
    if matches!(s, "on" | "off" | "lz4" | "lzjb" | "zle" | "gzip" | "zstd" | "zstd-fast") {
        return true;
    }
    let level = |rest: &str, lo: u32, hi: u32| rest.parse::<u32>().is_ok_and(|n| (lo..=hi).contains(&n));
    s.strip_prefix("gzip-").is_some_and(|r| level(r, 1, 9))
        || s.strip_prefix("zstd-fast-").is_some_and(|r| level(r, 1, 1000))
        || s.strip_prefix("zstd-").is_some_and(|r| level(r, 1, 19))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_values_are_checked() {
        let good = [
            ("vnet", "on"),
            ("allow_mount", "1"),
            ("memoryuse", "8G:log"),
            ("pcpu", "50:deny"),
            ("maxproc", "100:sigterm"),
            ("cpuset", "0-3,5"),
            ("ip4_addr", "em0|192.168.0.10/24,lo0|127.0.1.1"),
            ("ip6_addr", "em0|fe80::1/64"),
            ("defaultrouter", "10.0.0.1"),
            ("interfaces", "vnet0:bridge0,vnet1:bridge1"),
            ("tag", "web-01"),
            ("quota", "10G"),
            ("compression", "zstd-3"),
            ("notes", "anything at all = fine"),
            ("securelevel", "-1"),
        ];
        for (k, v) in good {
            assert_eq!(validate_client_value(k, v).map(|p| p.name), Ok(k), "{k}={v}");
        }
        let bad = [
            ("vnet", "yes"),
            ("allow_mount", "on"),
            ("memoryuse", "8G"),
            ("memoryuse", "8G:explode"),
            ("cpuset", "3-1"),
            ("ip4_addr", "em0|300.1.1.1"),
            ("ip4_addr", "em0|10.0.0.1/33"),
            ("interfaces", "vnet0"),
            ("tag", "../etc"),
            ("tag", "a/b"),
            ("tag", "a b"),
            ("tag", "x@y"),
            ("quota", "lots"),
            ("compression", "gzip-10"),
            ("notes", "line\nbreak"),
            ("securelevel", "4"),
            ("exec_timeout", "-1"),
            ("tag", "-"),
            ("tag", "-rf"),
            ("pcpu", "99999999999999999:deny"),
            ("memoryuse", "8192P:deny"),
        ];
        for (k, v) in bad {
            let err = validate_client_value(k, v).unwrap_err();
            assert!(matches!(err, PropError::Invalid { .. }), "{k}={v}: {err}");
            assert!(err.to_string().contains(k), "{err}");
        }
        assert_eq!(validate_client_value("used", "1G"), Err(PropError::ReadOnly("used".into())));
        assert_eq!(validate_client_value("host_hostuuid", "x"), Err(PropError::ReadOnly("host_hostuuid".into())));
        assert_eq!(validate_client_value("nope", "x"), Err(PropError::Unknown("nope".into())));
        assert!(validate_client_value("notes", &"x".repeat(MAX_VALUE_LEN + 1)).is_err());
    }

    /// Every limit value a client can set is one the runtimes compute
    /// with, without overflow: what validation accepts, `Limit::parse`
    /// accepts with the amount as written, and the Linux runtime's cgroup
    /// values are exactly the amount (pcpu: × 1000 µs).
    mod limits_in_range {
        use super::super::*;
        use crate::iocage::props::CATALOGUE;
        use crate::runtime::limits::Limit as RtLimit;
        use proptest::prelude::*;

        fn limit_props() -> Vec<&'static str> {
            CATALOGUE.iter().filter(|p| p.format == Limit).map(|p| p.name).collect()
        }

        proptest! {
            #[test]
            fn accepted_limits_never_overflow(
                which in 0usize..64,
                digits in "[0-9]{1,22}",
                suffix in prop::sample::select(vec!["", "K", "M", "G", "T", "P", "%"]),
                action in prop::sample::select(vec!["deny", "log", "devctl", "sigterm"]),
            ) {
                let names = limit_props();
                let name = names[which % names.len()];
                let value = format!("{digits}{suffix}:{action}");
                if validate_client_value(name, &value).is_ok() {
                    let l = RtLimit::parse(name, &value).expect("validation and the runtime agree").expect("not off");
                    prop_assert!(l.value() <= crate::runtime::limits::max_amount(name));
                    let rule_head = format!("jail:j:{name}:{action}=");
                    prop_assert!(l.rctl_rule("j").starts_with(&rule_head));
                    #[cfg(target_os = "linux")]
                    if let Ok(files) = crate::runtime::linux::cgroup::translate(std::slice::from_ref(&l), None) {
                        for (file, v) in files {
                            let n: u64 = v.split(' ').next().unwrap_or("").parse().expect("a number");
                            let want = if file == "cpu.max" { l.value().max(1) * 1000 } else { l.value() };
                            prop_assert_eq!(n, want, "{}={}", file, v);
                        }
                    }
                }
            }
        }
    }
}
