//! A VNET jail's network: per interface a veth pair, its host end in a
//! bridge (created when missing, with the uplink as its member), its jail
//! end in the jail's namespace with its addresses; then the jail's default
//! routes.

use std::net::IpAddr;
use std::os::fd::RawFd;

use crate::runtime::net::Vnet;

use super::link::Link;
use super::netlink::Netlink;
use super::{Made, failed, host_view, resolve};

/// Whether `u` joins a new bridge: not when it is already some bridge's or
/// bond's member (it stays where it is); refused when it is a bridge or
/// loopback, or carries the host's addresses (on Linux a bridge member's
/// own addresses stop working: the host would be cut off).
fn check_uplink(host: &mut Netlink, u: &Link, bridge: &str) -> Result<bool, String> {
    // Already a bridge's or bond's member (another jail's host end, a
    // bonded NIC): left where it is, as iocage's failing `addm` leaves it.
    if u.master.is_some() {
        return Ok(false);
    }
    if matches!(u.kind.as_deref(), Some("bridge")) || u.loopback {
        return Err(format!(
            "vnet_default_interface: {} is a bridge or loopback; it cannot join the new bridge {bridge}",
            u.name
        ));
    }
    let addrs = host.addresses().map_err(|e| failed("listing", "the host's addresses", e))?;
    if addrs.iter().any(|(i, ip)| *i == u.index && !ip.is_loopback() && !is_link_local(ip)) {
        return Err(format!(
            "vnet_default_interface: {} carries the host's addresses, which would stop working as a member of \
             the new bridge {bridge}; create {bridge} with {} in it yourself (addresses on the bridge), or set \
             vnet_default_interface=none",
            u.name, u.name
        ));
    }
    Ok(true)
}

pub(super) fn vnet(
    host: &mut Netlink,
    jail: &mut Netlink,
    v: &Vnet,
    pid: i32,
    ns: RawFd,
    made: &mut Made,
    record: &mut dyn FnMut(&Made),
) -> Result<(), String> {
    // The uplink joins the first bridge this start creates (a device can be
    // in one bridge only; iocage's later `addm` of it fails and is ignored).
    let mut uplinked = false;
    for i in &v.interfaces {
        let bridge = match host.link(&i.bridge).map_err(|e| failed("looking up", &i.bridge, e))? {
            Some(b) if b.kind.as_deref() == Some("bridge") => b,
            Some(_) => return Err(format!("{}: {} exists and is not a bridge", i.nic, i.bridge)),
            None => {
                let mut uplink = match &v.bridge_uplink {
                    Some(u) if !uplinked => {
                        let (links, routes) = host_view(host)?;
                        Some(resolve(&links, &routes, u)?)
                    }
                    _ => None,
                };
                if let Some(u) = &uplink {
                    if !check_uplink(host, u, &i.bridge)? {
                        uplink = None;
                    }
                }
                host.create_bridge(&i.bridge).map_err(|e| failed("creating the bridge", &i.bridge, e))?;
                made.bridges.push(i.bridge.clone());
                record(made);
                let b = host
                    .link(&i.bridge)
                    .map_err(|e| failed("looking up", &i.bridge, e))?
                    .ok_or_else(|| format!("the bridge {} vanished", i.bridge))?;
                if let Some(u) = uplink {
                    host.set_master(u.index, b.index)
                        .map_err(|e| failed(&format!("adding {} to", u.name), &i.bridge, e))?;
                    uplinked = true;
                }
                host.set_up(b.index, None).map_err(|e| failed("bringing up", &i.bridge, e))?;
                b
            }
        };
        let host_name = i.host_name(i64::from(pid));
        made.host_links.push((host_name.clone(), None));
        record(made);
        host.create_veth(&host_name, i.host_mac.0, &i.nic, i.jail_mac.0, ns)
            .map_err(|e| failed("creating the veth pair", &host_name, e))?;
        let h = host
            .link(&host_name)
            .map_err(|e| failed("looking up", &host_name, e))?
            .ok_or_else(|| format!("{host_name} vanished"))?;
        if let Some(last) = made.host_links.last_mut() {
            last.1 = Some(h.index);
        }
        record(made);
        host.set_up(h.index, Some(bridge.index))
            .map_err(|e| failed(&format!("adding {host_name} to"), &i.bridge, e))?;
        let inside = jail
            .link(&i.nic)
            .map_err(|e| failed("listing", "the jail's interfaces", e))?
            .ok_or_else(|| format!("{} did not appear in the jail", i.nic))?;
        for (addr, len) in &i.addresses {
            jail.add_address(inside.index, *addr, *len).map_err(|e| failed(&format!("adding {addr} to"), &i.nic, e))?;
        }
        jail.set_up(inside.index, None).map_err(|e| failed("bringing up", &i.nic, e))?;
    }
    // A link-local IPv6 router is reached through the jail's first
    // interface (the kernel needs the interface for it).
    let first = match v.interfaces.first() {
        Some(i) => jail.link(&i.nic).map_err(|e| failed("listing", "the jail's interfaces", e))?.map(|l| l.index),
        None => None,
    };
    for gw in [v.router4.map(IpAddr::V4), v.router6.map(IpAddr::V6)].into_iter().flatten() {
        let oif = if is_link_local(&gw) { first } else { None };
        jail.add_default_route(gw, oif).map_err(|e| failed("adding the default route via", &gw.to_string(), e))?;
    }
    Ok(())
}

fn is_link_local(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v) => v.is_link_local(),
        IpAddr::V6(v) => (v.segments()[0] & 0xffc0) == 0xfe80,
    }
}
