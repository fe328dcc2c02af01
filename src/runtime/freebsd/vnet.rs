//! A FreeBSD VNET jail's interfaces, as iocage makes them
//! (iocage_lib/ioc_start.py `start_network_vnet_iface`), without
//! ifconfig: per `vnetN:bridge` an epair (`SIOCIFCREATE2` on `epair`), its
//! `a` end renamed `vnetN.<jid>` with the host MAC, added to the bridge
//! (created when missing, the uplink added to a bridge this start creates)
//! and up; its `b` end given the jail's MAC and moved into the jail
//! (`SIOCSIFVNET`). Inside, `iocaged jail-net` (a helper that has
//! jail_attach'd: a socket belongs to the vnet of the jail its process is
//! in) names it as iocage does (`epairNb` for `vnetN`), adds its
//! addresses, brings it and lo0 up and adds the default routes through
//! the routing socket. Both ends take the bridge's MTU. Stop destroys the
//! host ends (which destroys the pairs) before the jail is removed, as
//! iocage does; bridges stay, as iocage leaves them.
//!
//! Compiled and linked by the FreeBSD stage; not yet run on FreeBSD.

use std::io::Read;
use std::net::IpAddr;
use std::process::ExitCode;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ifreq::{self, vnet as req};
use super::sys;
use crate::runtime::RunningJail;
use crate::runtime::exec;
use crate::runtime::net::{Interface, Vnet};

/// How long the jail-side helper may take.
const HELPER_BOUND: Duration = Duration::from_secs(30);

pub use super::record::Links as Made;

/// What the helper does inside the jail.
#[derive(Debug, Serialize, Deserialize)]
pub struct InsideRequest {
    pub jid: i64,
    pub name: String,
    /// (the epair's `b` end as it arrives, the name it gets, addresses)
    pub interfaces: Vec<(String, String, Vec<(IpAddr, u8)>)>,
    pub routers: Vec<IpAddr>,
}

fn exists(name: &str) -> bool {
    nix::net::if_::if_nameindex().is_ok_and(|l| l.iter().any(|i| i.name().to_bytes() == name.as_bytes()))
}

fn up(name: &str) -> Result<(), String> {
    let mut r = req::named(name)?;
    sys::ifreq_ioctl(req::SIOCGIFFLAGS, &mut r).map_err(|e| format!("reading {name}'s flags: {e}"))?;
    let mut w = req::with_flags(name, ifreq::vnet::flags_of(&r) | req::IFF_UP)?;
    sys::ifreq_ioctl(req::SIOCSIFFLAGS, &mut w).map_err(|e| format!("bringing {name} up: {e}"))
}

fn destroy(name: &str) -> Result<(), String> {
    let mut r = req::named(name)?;
    match sys::ifreq_ioctl(req::SIOCIFDESTROY, &mut r) {
        Ok(()) | Err(nix::errno::Errno::ENXIO) => Ok(()),
        Err(e) => Err(format!("destroying {name}: {e}")),
    }
}

/// The name iocage gives a VNET interface inside a FreeBSD jail:
/// `vnet0` -> `epair0b` (`ioc_start.py`: `nic.replace('vnet', 'epair') +
/// 'b'`), which jails' own `rc.conf` lines (`ifconfig_epair0b=...`) name.
pub fn jail_side_name(nic: &str) -> String {
    format!("{}b", nic.replacen("vnet", "epair", 1))
}

fn mtu(name: &str) -> Result<i32, String> {
    let mut r = req::named(name)?;
    sys::ifreq_ioctl(req::SIOCGIFMTU, &mut r).map_err(|e| format!("reading {name}'s MTU: {e}"))?;
    Ok(req::int_of(&r))
}

fn set_mtu(name: &str, mtu: i32) -> Result<(), String> {
    let mut r = req::with_int(name, mtu)?;
    sys::ifreq_ioctl(req::SIOCSIFMTU, &mut r).map_err(|e| format!("setting {name}'s MTU to {mtu}: {e}"))
}

/// Makes the jail's interfaces (its jail `jid` exists, with `vnet`);
/// `made` collects what is made on the host, `record` is called after
/// each addition. On a failure the caller removes the jail and calls
/// [`undo`].
pub fn setup(
    v: &Vnet,
    jail: &RunningJail,
    default_interface: impl Fn() -> Result<String, String>,
    made: &mut Made,
    record: &mut dyn FnMut(&Made),
) -> Result<(), String> {
    let jid = i32::try_from(jail.jid).map_err(|_| format!("bad jid {}", jail.jid))?;
    // ifconfig loads the drivers before cloning (`ifmaybeload`); without
    // them the kernel has no cloner and answers EINVAL.
    for module in ["if_bridge", "if_epair"] {
        sys::load_module(module)?;
    }
    let mut inside = Vec::new();
    for i in &v.interfaces {
        if !exists(&i.bridge) {
            // The bridge cloner makes the unit the name asks for
            // ("bridge5"); another name is refused by the kernel. One a
            // concurrent start made in between (EEXIST) is simply there.
            let mut r = req::named(&i.bridge)?;
            match sys::ifreq_ioctl(req::SIOCIFCREATE2, &mut r) {
                Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
                Err(e) => return Err(format!("{}: creating the bridge {}: {e}", i.nic, i.bridge)),
            }
        }
        // As iocage: the uplink is offered to the bridge at every start,
        // and its refusal (already a member, or of another bridge) is not
        // an error; the bridge is brought up.
        if let Some(u) = &v.bridge_uplink {
            let name = match u {
                Interface::Named(n) => Some(n.clone()),
                Interface::Default => default_interface().ok(),
            };
            if let Some(name) = name.filter(|n| *n != i.bridge) {
                let _ = sys::bridge_add(&i.bridge, &name);
            }
        }
        up(&i.bridge)?;
        let mut r = req::named("epair")?;
        sys::ifreq_ioctl(req::SIOCIFCREATE2, &mut r).map_err(|e| format!("{}: creating an epair: {e}", i.nic))?;
        let a = req::name_of(&r);
        let Some(stem) = a.strip_suffix('a') else {
            destroy(&a)?;
            return Err(format!("{}: the kernel made {a:?}, not an epair's a end", i.nic));
        };
        let b = format!("{stem}b");
        let host = i.host_name(jail.jid);
        if let Err(e) = sys::if_rename(&a, &host) {
            let _ = destroy(&a);
            return Err(format!("{}: {e}", i.nic));
        }
        made.host_links.push(host.clone());
        record(made);
        // Both ends take the bridge's MTU (a bridge refuses a member whose
        // MTU differs from its own), as iocage's `find_bridge_mtu` does.
        let bridge_mtu = mtu(&i.bridge)?;
        for end in [&host, &b] {
            if mtu(end)? != bridge_mtu {
                set_mtu(end, bridge_mtu)?;
            }
        }
        let mac = |name: &str, m: [u8; 6]| -> Result<(), String> {
            let mut r = req::with_lladdr(name, m)?;
            sys::ifreq_ioctl(req::SIOCSIFLLADDR, &mut r).map_err(|e| format!("setting {name}'s MAC: {e}"))
        };
        mac(&host, i.host_mac.0)?;
        mac(&b, i.jail_mac.0)?;
        sys::bridge_add(&i.bridge, &host).map_err(|e| format!("{}: {e}", i.nic))?;
        up(&host)?;
        let mut r = req::with_jid(&b, jid)?;
        sys::ifreq_ioctl(req::SIOCSIFVNET, &mut r).map_err(|e| format!("{}: moving {b} into the jail: {e}", i.nic))?;
        inside.push((b, jail_side_name(&i.nic), i.addresses.clone()));
    }
    let routers = [v.router4.map(IpAddr::V4), v.router6.map(IpAddr::V6)].into_iter().flatten().collect();
    run_inside(&InsideRequest { jid: jail.jid, name: jail.name.clone(), interfaces: inside, routers })
}

/// Destroys the host ends a start made (which destroys their pairs,
/// wherever the other end is). Bridges are never destroyed: another jail
/// may be using one (iocage leaves them too). Returns what could not be
/// removed.
pub fn undo(made: &Made) -> Vec<String> {
    made.host_links.iter().filter_map(|n| destroy(n).err()).collect()
}

/// Starts `iocaged jail-net` with the request on its stdin and reads its
/// one line: `ok` or `error <what failed>`.
fn run_inside(r: &InsideRequest) -> Result<(), String> {
    let request = serde_json::to_vec(r).map_err(|e| format!("encoding: {e}"))?;
    exec::line_helper("jail-net", &request, HELPER_BOUND, "network helper").map(drop)
}

/// `iocaged jail-net`: inside the jail, its interfaces' names, addresses,
/// lo0 and default routes.
pub(crate) fn net_main() -> ExitCode {
    match inside() {
        Ok(()) => println!("ok"),
        Err(e) => println!("error {e}"),
    }
    ExitCode::SUCCESS
}

fn inside() -> Result<(), String> {
    let mut input = Vec::new();
    std::io::stdin().read_to_end(&mut input).map_err(|e| format!("reading the request: {e}"))?;
    let r: InsideRequest = serde_json::from_slice(&input).map_err(|e| format!("reading the request: {e}"))?;
    crate::runtime::enter(&RunningJail { name: r.name.clone(), jid: r.jid })
        .map_err(|e| format!("entering the jail: {e}"))?;
    up("lo0")?;
    // The ends arrive under the kernel's unit names (epair7b, epair0b, ...)
    // which may be each other's final names: all get a temporary name
    // first, then their own.
    for (k, (arrived, _, _)) in r.interfaces.iter().enumerate() {
        sys::if_rename(arrived, &format!("iocnet{k}"))?;
    }
    for (k, (_, name, _)) in r.interfaces.iter().enumerate() {
        sys::if_rename(&format!("iocnet{k}"), name)?;
    }
    for (_, name, addresses) in &r.interfaces {
        for (addr, len) in addresses {
            let (family, request, mut arg) = match addr {
                IpAddr::V4(a) => (libc::AF_INET, ifreq::SIOCAIFADDR, ifreq::in_aliasreq(name, *a, *len)?.to_vec()),
                IpAddr::V6(a) => {
                    (libc::AF_INET6, ifreq::SIOCAIFADDR_IN6, ifreq::in6_aliasreq(name, *a, *len)?.to_vec())
                }
            };
            sys::if_address_ioctl(family, request, &mut arg).map_err(|e| format!("adding {addr} to {name}: {e}"))?;
        }
        up(name)?;
    }
    // A link-local IPv6 router is reached through the first interface.
    let scope = match r.interfaces.first() {
        Some((_, name, _)) => nix::net::if_::if_nametoindex(name.as_str()).map_err(|e| format!("{name}: {e}"))?,
        None => 0,
    };
    for (seq, gw) in r.routers.iter().enumerate() {
        let link_local = matches!(gw, IpAddr::V6(g) if (g.segments()[0] & 0xffc0) == 0xfe80);
        add_default_route(*gw, if link_local { scope } else { 0 }, seq as i32 + 1)?;
    }
    Ok(())
}

/// `route add default GW` through the routing socket of the jail's vnet.
fn add_default_route(gw: IpAddr, scope: u32, seq: i32) -> Result<(), String> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, socket};
    let sock = socket(AddressFamily::Route, SockType::Raw, SockFlag::SOCK_CLOEXEC, None)
        .map_err(|e| format!("a routing socket: {e}"))?;
    nix::unistd::write(&sock, &ifreq::route::add_default(gw, scope, seq))
        .map(drop)
        .map_err(|e| format!("adding the default route via {gw}: {e}"))
}
