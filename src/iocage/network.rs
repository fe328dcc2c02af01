//! A jail's network properties read into a [`Network`] plan, validated as
//! a whole before anything is made (start and create refuse a plan that
//! does not hold together, naming the property and the value).
//!
//! The properties, as iocage reads them:
//! - `vnet` (`on`: VNET, else shared IP);
//! - `ip4_addr`, `ip6_addr`: `none`, or comma-separated `iface|addr[/len]`
//!   (`DEFAULT|addr` for the default route's interface; shared IP also
//!   takes a bare `addr`, allowed to the jail without an alias, as
//!   jail(8) does; in VNET mode the interface is `vnetN` and defaults to
//!   `vnet0`, and a prefix length is required for IPv6 and defaults to
//!   /24 for IPv4, as iocage's `ifconfig ... alias` does for a bare class C);
//! - `interfaces`: `vnetN:bridge` pairs (VNET);
//! - `vnetN_mac`: `none` (derived from the jail's UUID as iocage derives
//!   it, so it is stable across starts), or the host end's and the jail's
//!   end's MACs separated by a space or a comma;
//! - `defaultrouter`, `defaultrouter6`: `none` or an address (VNET);
//! - `vnet_default_interface` (when the jail has it; py-iocage's): `none`,
//!   `auto` (the default route's interface) or a name: added to a bridge
//!   that has to be created;
//! - `mac_prefix` (when the jail has it): the first bytes of derived MACs,
//!   iocage's `02ff60` by default.

use std::net::IpAddr;

use md5::{Digest, Md5};

use crate::runtime::IpMode;
use crate::runtime::net::{Alias, Interface, Mac, Network, Vnet, VnetInterface, full_prefix};

/// iocage's default `mac_prefix`: locally administered, unicast.
pub const DEFAULT_MAC_PREFIX: &str = "02ff60";
/// Addresses a jail may have in all (a bound on the plan's size).
pub const MAX_ADDRESSES: usize = 64;

/// Reads and checks the jail's network. `ip4`/`ip6` are the modes already
/// parsed. The error names the property, the value and what is wrong.
/// `value` gives a property's value in force (its default when unset).
pub fn plan(uuid: &str, value: &dyn Fn(&str) -> String, ip4: &IpMode, ip6: &IpMode) -> Result<Network, String> {
    let vnet = value("vnet") == "on";
    let v4 = entries("ip4_addr", &value("ip4_addr"), false)?;
    let v6 = entries("ip6_addr", &value("ip6_addr"), true)?;
    if v4.len() + v6.len() > MAX_ADDRESSES {
        return Err(format!("ip4_addr/ip6_addr: at most {MAX_ADDRESSES} addresses"));
    }
    if !vnet {
        for (mode, list, prop, fam) in [(ip4, &v4, "ip4_addr", "ip4"), (ip6, &v6, "ip6_addr", "ip6")] {
            if !list.is_empty() && *mode != IpMode::New {
                let m = match mode {
                    IpMode::Inherit => "inherit",
                    IpMode::Disable => "disable",
                    IpMode::Invalid(v) => v.as_str(),
                    IpMode::New => "new",
                };
                return Err(format!(
                    "{prop}: the jail's addresses need {fam}=new, but {fam} is {m} \
                     (set {prop}=none, or {fam}=new)"
                ));
            }
        }
        let mut addresses = Vec::new();
        for e in v4.into_iter().chain(v6) {
            if let Some(Interface::Named(n)) = &e.interface {
                if is_vnet_nic(n) {
                    return Err(format!("{}: {n} is a VNET interface, but vnet is off", e.prop));
                }
            }
            if addresses.iter().any(|a: &Alias| a.addr == e.addr) {
                return Err(format!("{}: {} is given twice", e.prop, e.addr));
            }
            addresses.push(Alias { interface: e.interface, addr: e.addr, prefix: e.prefix });
        }
        return Ok(Network::Shared { addresses });
    }

    let prefix = mac_prefix(&value("mac_prefix"))?;
    let mut interfaces: Vec<VnetInterface> = Vec::new();
    let spec = value("interfaces");
    if spec != "none" {
        for pair in spec.split(',') {
            let Some((nic, bridge)) = pair.split_once(':') else {
                return Err(format!("interfaces={spec:?}: {pair:?} is not nic:bridge"));
            };
            if !is_vnet_nic(nic) {
                return Err(format!("interfaces={spec:?}: {nic:?} is not one of vnet0 to vnet3"));
            }
            if !is_ifname(bridge) || is_vnet_nic(bridge) {
                return Err(format!("interfaces={spec:?}: {bridge:?} is not a bridge's name"));
            }
            if interfaces.iter().any(|i| i.nic == nic) {
                return Err(format!("interfaces={spec:?}: {nic} is given twice"));
            }
            let mac_prop = format!("{nic}_mac");
            let (host_mac, jail_mac) = match value(&mac_prop).as_str() {
                "none" | "-" | "" => derive_macs(&prefix, uuid, nic),
                v => mac_pair(&mac_prop, v)?,
            };
            interfaces.push(VnetInterface {
                nic: nic.to_string(),
                bridge: bridge.to_string(),
                host_mac,
                jail_mac,
                addresses: Vec::new(),
            });
        }
    }
    for e in v4.into_iter().chain(v6) {
        let nic = match &e.interface {
            None => "vnet0".to_string(),
            Some(Interface::Named(n)) => n.clone(),
            Some(Interface::Default) => {
                return Err(format!("{}: DEFAULT names a host interface; a VNET jail's are vnet0 to vnet3", e.prop));
            }
        };
        let len = match (e.prefix, e.addr) {
            (Some(l), _) => l,
            (None, IpAddr::V4(_)) => 24,
            (None, IpAddr::V6(_)) => {
                return Err(format!("{}: {} needs a prefix length (such as /64)", e.prop, e.addr));
            }
        };
        if interfaces.iter().any(|i| i.addresses.iter().any(|(a, _)| *a == e.addr)) {
            return Err(format!("{}: {} is given twice", e.prop, e.addr));
        }
        let Some(i) = interfaces.iter_mut().find(|i| i.nic == nic) else {
            return Err(format!("{}: {nic} is not one of the jail's interfaces ({spec})", e.prop));
        };
        i.addresses.push((e.addr, len));
    }
    let router4 = match value("defaultrouter").as_str() {
        "none" | "-" | "" => None,
        v => Some(v.parse().map_err(|_| format!("defaultrouter={v:?}: expected none or an IPv4 address"))?),
    };
    let router6 = match value("defaultrouter6").as_str() {
        "none" | "-" | "" => None,
        v => Some(v.parse().map_err(|_| format!("defaultrouter6={v:?}: expected none or an IPv6 address"))?),
    };
    if (router4.is_some() || router6.is_some()) && interfaces.is_empty() {
        return Err("defaultrouter: a VNET jail without interfaces has nowhere to route".into());
    }
    let bridge_uplink = match value("vnet_default_interface").as_str() {
        "none" | "-" | "" => None,
        "auto" => Some(Interface::Default),
        v if is_ifname(v) && !is_vnet_nic(v) => Some(Interface::Named(v.to_string())),
        v => return Err(format!("vnet_default_interface={v:?}: expected none, auto or an interface name")),
    };
    Ok(Network::Vnet(Vnet { interfaces, router4, router6, bridge_uplink }))
}

/// One `iface|addr/len` entry of `ip4_addr` or `ip6_addr`.
struct Entry {
    prop: &'static str,
    interface: Option<Interface>,
    addr: IpAddr,
    prefix: Option<u8>,
}

fn entries(prop: &'static str, value: &str, v6: bool) -> Result<Vec<Entry>, String> {
    if matches!(value, "none" | "-" | "") {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for e in value.split(',') {
        let bad = |why: &str| format!("{prop}: {e:?} {why}");
        let (iface, rest) = match e.split_once('|') {
            Some((i, r)) => (Some(i), r),
            None => (None, e),
        };
        let interface = match iface {
            None => None,
            Some("DEFAULT") => Some(Interface::Default),
            Some(i) if is_ifname(i) => Some(Interface::Named(i.to_string())),
            Some(_) => return Err(bad("does not start with an interface name (iface|address)")),
        };
        let (addr, len) = match rest.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (rest, None),
        };
        let addr: IpAddr = match addr.parse() {
            Ok(a @ IpAddr::V4(_)) if !v6 => a,
            Ok(a @ IpAddr::V6(_)) if v6 => a,
            _ if addr.eq_ignore_ascii_case("dhcp") || addr == "accept_rtadv" => {
                return Err(bad("asks for DHCP or router advertisements, which iocaged does not support"));
            }
            _ => return Err(bad(if v6 { "is not an IPv6 address" } else { "is not an IPv4 address" })),
        };
        if addr.is_unspecified() || addr.is_multicast() || matches!(addr, IpAddr::V4(a) if a.is_broadcast()) {
            return Err(bad("is not an address an interface can have"));
        }
        let prefix = match len {
            None => None,
            Some(l) => match l.parse::<u8>() {
                Ok(n) if n >= 1 && n <= full_prefix(&addr) && l.chars().all(|c| c.is_ascii_digit()) => Some(n),
                _ => return Err(bad(&format!("has a prefix length outside 1..={}", full_prefix(&addr)))),
            },
        };
        // An IPv4 network's own address and its broadcast address are
        // nobody's (a /31 and a /32 have neither).
        if let (IpAddr::V4(a), Some(len @ 1..=30)) = (addr, prefix) {
            let host_bits = u32::from(a) & (u32::MAX >> len);
            if host_bits == 0 || host_bits == u32::MAX >> len {
                return Err(bad("is its network's own or broadcast address, not a host's"));
            }
        }
        out.push(Entry { prop, interface, addr, prefix });
    }
    Ok(out)
}

fn is_vnet_nic(s: &str) -> bool {
    matches!(s, "vnet0" | "vnet1" | "vnet2" | "vnet3")
}

/// An interface name both kernels take: 1 to 15 bytes of letters, digits,
/// `.`, `_`, `-`, not starting with `-`.
pub fn is_ifname(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && s.len() <= 15
        && !s.starts_with('-')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

fn mac_prefix(v: &str) -> Result<String, String> {
    let v = match v {
        "-" | "" | "none" => DEFAULT_MAC_PREFIX,
        v => v,
    };
    let ok = v.len() % 2 == 0 && v.len() <= 10 && v.chars().all(|c| c.is_ascii_hexdigit());
    // Its first byte must make a unicast address.
    let first = u8::from_str_radix(v.get(..2).unwrap_or("00"), 16).unwrap_or(1);
    if !ok || first & 1 == 1 {
        return Err(format!("mac_prefix={v:?}: expected up to 5 bytes in hex with a unicast first byte (e.g. 02ff60)"));
    }
    Ok(v.to_ascii_lowercase())
}

/// iocage's MACs for a nic when `vnetN_mac` is none (`ioc_start.py`,
/// `__generate_mac_bytes`): the prefix, then the first hex digits of the
/// MD5 of the UUID followed by the nic's name; the jail's end is the host
/// end plus one.
pub fn derive_macs(prefix: &str, uuid: &str, nic: &str) -> (Mac, Mac) {
    let mut h = Md5::new();
    h.update(uuid.as_bytes());
    h.update(nic.as_bytes());
    let hex: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    let text = format!("{prefix}{}", &hex[..12 - prefix.len()]);
    // The prefix is checked to be hex of at most 10 digits, so this parses.
    let host = Mac::parse(&text).unwrap_or(Mac([2, 0xff, 0x60, 0, 0, 0]));
    (host, host.next())
}

fn mac_pair(prop: &str, v: &str) -> Result<(Mac, Mac), String> {
    let parts: Vec<&str> = v.split([' ', ',']).filter(|s| !s.is_empty()).collect();
    let macs: Vec<Mac> = parts.iter().filter_map(|m| Mac::parse(m)).collect();
    match macs[..] {
        [a, b] if parts.len() == 2 && a.is_unicast() && b.is_unicast() && a != b => Ok((a, b)),
        _ => {
            Err(format!("{prop}={v:?}: expected none, or two different unicast MACs (the host's end, then the jail's)"))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn net(pairs: &[(&str, &str)]) -> Result<Network, String> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let get = move |n: &str| map.get(n).cloned().unwrap_or_else(|| "none".to_string());
        let mode = |n: &str| IpMode::parse(&get(n).replace("none", "new"));
        let (ip4, ip6) = (mode("ip4"), mode("ip6"));
        plan("7b1c3f2a-0000-4000-8000-000000000001", &get, &ip4, &ip6)
    }

    #[test]
    fn shared_ip_keeps_interfaces_and_prefixes() {
        let n =
            net(&[("ip4_addr", "em0|10.0.0.2/24,DEFAULT|10.0.0.3,10.0.0.4"), ("ip6_addr", "em0|fd00::2/64")]).unwrap();
        let Network::Shared { addresses } = n else { panic!("shared") };
        assert_eq!(addresses.len(), 4);
        assert_eq!(addresses[0].interface, Some(Interface::Named("em0".into())));
        assert_eq!(addresses[0].prefix_len(), 24);
        assert_eq!(addresses[1].interface, Some(Interface::Default));
        assert_eq!(addresses[1].prefix_len(), 32, "an alias without a mask is a host address");
        assert_eq!(addresses[2].interface, None);
        assert_eq!(addresses[3].prefix_len(), 64);
    }

    #[test]
    fn vnet_interfaces_get_addresses_routes_and_stable_macs() {
        let n = net(&[
            ("vnet", "on"),
            ("interfaces", "vnet0:bridge0,vnet1:br1"),
            ("ip4_addr", "vnet0|10.1.0.2/24,vnet1|10.2.0.2"),
            ("ip6_addr", "vnet1|fd00::2/64"),
            ("defaultrouter", "10.1.0.1"),
            ("vnet1_mac", "02aabbccdd01 02aabbccdd02"),
        ])
        .unwrap();
        let Network::Vnet(v) = n else { panic!("vnet") };
        assert_eq!(v.router4, Some("10.1.0.1".parse().unwrap()));
        assert_eq!(v.router6, None);
        assert_eq!(v.bridge_uplink, None);
        assert_eq!(v.interfaces[0].addresses, vec![("10.1.0.2".parse().unwrap(), 24)]);
        assert_eq!(v.interfaces[1].addresses.len(), 2);
        assert_eq!(v.interfaces[1].addresses[0].1, 24, "a bare IPv4 address in VNET mode is a /24");
        assert_eq!(v.interfaces[1].host_mac.to_string(), "02:aa:bb:cc:dd:01");
        let (a, b) = (v.interfaces[0].host_mac, v.interfaces[0].jail_mac);
        assert_eq!(a.to_string()[..8], *"02:ff:60", "iocage's prefix");
        assert_eq!(a.next(), b);
        // The same jail gets the same MACs at every start; another jail others.
        assert_eq!(derive_macs("02ff60", "7b1c3f2a-0000-4000-8000-000000000001", "vnet0"), (a, b));
        assert_ne!(derive_macs("02ff60", "7b1c3f2a-0000-4000-8000-000000000002", "vnet0").0, a);
    }

    #[test]
    fn derived_macs_follow_iocage() {
        // What iocage's __generate_mac_address_pair gives for uuid "u1",
        // nic "vnet0" (computed with Python's hashlib, as iocage does).
        let (host, jail) = derive_macs("02ff60", "u1", "vnet0");
        assert_eq!((host.to_string(), jail.to_string()), ("02:ff:60:24:50:8d".into(), "02:ff:60:24:50:8e".into()));
    }

    #[test]
    fn twenty_malformed_network_values_are_refused_with_their_names() {
        let cases: [(&[(&str, &str)], &str); 20] = [
            (&[("ip4_addr", "em0|300.1.1.1/24")], "ip4_addr"),
            (&[("ip4_addr", "em0|10.0.0.1/33")], "prefix length"),
            (&[("ip4_addr", "em0|10.0.0.1/0")], "prefix length"),
            (&[("ip4_addr", "em0|fd00::1")], "not an IPv4"),
            (&[("ip6_addr", "em0|10.0.0.1")], "not an IPv6"),
            (&[("ip4_addr", "em 0|10.0.0.1")], "interface name"),
            (&[("ip4_addr", "averyveryverylongname|10.0.0.1")], "interface name"),
            (&[("ip4_addr", "em0|DHCP")], "DHCP"),
            (&[("ip4_addr", "em0|0.0.0.0")], "not an address"),
            (&[("ip4_addr", "em0|224.0.0.1")], "not an address"),
            (&[("ip4_addr", "em0|10.0.0.1,em0|10.0.0.1")], "twice"),
            (&[("ip4", "inherit"), ("ip4_addr", "em0|10.0.0.1")], "ip4=new"),
            (&[("ip4_addr", "vnet0|10.0.0.1")], "vnet is off"),
            (&[("vnet", "on"), ("interfaces", "vnet0")], "nic:bridge"),
            (&[("vnet", "on"), ("interfaces", "eth0:bridge0")], "vnet0 to vnet3"),
            (&[("vnet", "on"), ("interfaces", "vnet0:bridge0,vnet0:bridge1")], "twice"),
            (&[("vnet", "on"), ("interfaces", "vnet0:bridge0"), ("ip4_addr", "vnet1|10.0.0.2/24")], "vnet1"),
            (&[("vnet", "on"), ("interfaces", "vnet0:bridge0"), ("ip6_addr", "vnet0|fd00::2")], "prefix"),
            (&[("vnet", "on"), ("interfaces", "vnet0:bridge0"), ("vnet0_mac", "02aabbccdd01")], "vnet0_mac"),
            (&[("vnet", "on"), ("interfaces", "vnet0:bridge0"), ("defaultrouter", "fd00::1")], "defaultrouter"),
        ];
        for (props, says) in cases {
            let e = net(props).expect_err(&format!("{props:?} must be refused"));
            assert!(e.contains(says), "{props:?}: {e}");
        }
        // And a few more that must not be taken for valid either.
        for props in [
            &[("vnet", "on"), ("interfaces", "vnet0:bridge0"), ("vnet0_mac", "01aabbccdd01 02aabbccdd02")][..],
            &[("vnet", "on"), ("interfaces", "vnet0:bridge0"), ("mac_prefix", "03")],
            &[("vnet", "on"), ("interfaces", "vnet0:-x")],
            &[("vnet", "on"), ("vnet_default_interface", "a b")],
            &[("vnet", "on"), ("ip4_addr", "DEFAULT|10.0.0.2/24"), ("interfaces", "vnet0:bridge0")],
            &[("ip4_addr", "em0|10.0.0.2/+24")],
            &[("ip4_addr", "..|10.0.0.2/24")],
            &[("ip4_addr", "em0|10.0.0.0/24")],
            &[("ip4_addr", "em0|10.0.0.255/24")],
            &[
                ("vnet", "on"),
                ("interfaces", "vnet0:bridge0,vnet1:bridge1"),
                ("ip4_addr", "vnet0|10.0.0.2/24,vnet1|10.0.0.2/24"),
            ],
        ] {
            assert!(net(props).is_err(), "{props:?}");
        }
    }
}
