//! A shared-IP jail's network: per host interface its addresses name, an
//! ipvlan link in the jail's namespace carrying exactly those addresses;
//! addresses on a loopback interface on the jail's own `lo`; the host's
//! default routes whose gateway the jail can reach.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::os::fd::RawFd;

use crate::runtime::net::{Alias, Interface};

use super::link::Link;
use super::netlink::Netlink;
use super::{failed, host_view, resolve};

/// `lo`, `lo0`, `lo1`, ...: iocage's loopback aliases (`lo0|127.0.1.1`)
/// name FreeBSD's loopback; on Linux they go on the jail's own `lo`.
fn is_loopback_name(name: &str) -> bool {
    name.strip_prefix("lo").is_some_and(|n| n.chars().all(|c| c.is_ascii_digit()))
}

pub(super) fn shared(
    host: &mut Netlink,
    jail: &mut Netlink,
    lo: u32,
    addresses: &[Alias],
    pid: i32,
    ns: RawFd,
) -> Result<(), String> {
    let in_use = host.addresses().map_err(|e| failed("listing", "the host's addresses", e))?;
    let (links, routes) = host_view(host)?;
    // Host interface -> the jail's addresses on it (resolved first, so a
    // bad name fails before anything is made); None: the jail's own lo.
    let mut by_parent: BTreeMap<String, (Option<Link>, Vec<&Alias>)> = BTreeMap::new();
    for a in addresses {
        let Some(i) = &a.interface else {
            return Err(format!("{}: no interface given (iface|address)", a.addr));
        };
        let parent = match i {
            Interface::Named(n) if is_loopback_name(n) => None,
            _ => {
                let parent = resolve(&links, &routes, i)?;
                if let Some((idx, _)) = in_use.iter().find(|(_, ip)| *ip == a.addr) {
                    let on = links.iter().find(|l| l.index == *idx).map(|l| l.name.as_str()).unwrap_or_default();
                    return Err(format!("{} is already in use on the host ({on})", a.addr));
                }
                (!parent.loopback).then_some(parent)
            }
        };
        let key = parent.as_ref().map_or_else(String::new, |p| p.name.clone());
        by_parent.entry(key).or_insert_with(|| (parent, Vec::new())).1.push(a);
    }
    for (name, (parent, addrs)) in by_parent {
        let Some(parent) = parent else {
            for a in &addrs {
                jail.add_address(lo, a.addr, a.prefix_len())
                    .map_err(|e| failed(&format!("adding {} to", a.addr), "the jail's lo", e))?;
            }
            continue;
        };
        // Made under a name the host does not have (the kernel checks a
        // new link's name in the namespace of the request), then given
        // the host interface's name inside the jail.
        let temp = format!("ioc{}.{}", pid, parent.index % 1000);
        host.create_ipvlan(parent.index, &temp, ns).map_err(|e| failed("creating an ipvlan link on", &name, e))?;
        let index = jail
            .link(&temp)
            .map_err(|e| failed("listing", "the jail's interfaces", e))?
            .ok_or_else(|| format!("the ipvlan link on {name} did not appear in the jail"))?
            .index;
        jail.rename(index, &name).map_err(|e| failed(&format!("naming {temp}"), &name, e))?;
        for a in &addrs {
            jail.add_address(index, a.addr, a.prefix_len())
                .map_err(|e| failed(&format!("adding {} to", a.addr), &name, e))?;
        }
        jail.set_up(index, None).map_err(|e| failed("bringing up", &name, e))?;
        // The host's default route through this interface, when the jail
        // can reach its gateway from its own networks there.
        for (oif, gw) in &routes {
            let Some(gw) = gw else { continue };
            let reachable = addrs.iter().any(|a| same_network(&a.addr, gw, a.prefix_len()));
            if *oif == parent.index && reachable {
                match jail.add_default_route(*gw, Some(index)) {
                    Ok(()) => {}
                    Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
                    Err(e) => return Err(failed(&format!("adding the default route via {gw} on"), &name, e)),
                }
            }
        }
    }
    Ok(())
}

/// Whether `a` and `b` share the first `prefix` bits.
fn same_network(a: &IpAddr, b: &IpAddr, prefix: u8) -> bool {
    let bits = |x: &IpAddr| -> (u128, u8) {
        match x {
            IpAddr::V4(v) => (u128::from(u32::from(*v)), 32),
            IpAddr::V6(v) => (u128::from(*v), 128),
        }
    };
    let ((x, wx), (y, wy)) = (bits(a), bits(b));
    if wx != wy || prefix > wx {
        return false;
    }
    let shift = u32::from(wx - prefix);
    x.checked_shr(shift).unwrap_or(0) == y.checked_shr(shift).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_compare_by_their_prefix() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(same_network(&ip("10.0.0.2"), &ip("10.0.0.1"), 24));
        assert!(!same_network(&ip("10.0.1.2"), &ip("10.0.0.1"), 24));
        assert!(same_network(&ip("10.0.1.2"), &ip("10.0.0.1"), 16));
        assert!(same_network(&ip("10.0.1.2"), &ip("192.0.0.1"), 0));
        assert!(!same_network(&ip("10.0.0.2"), &ip("10.0.0.1"), 32));
        assert!(same_network(&ip("fd00::2"), &ip("fd00::1"), 64));
        assert!(!same_network(&ip("fd00::2"), &ip("10.0.0.1"), 8), "families never match");
    }
}
