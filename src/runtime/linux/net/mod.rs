//! A Linux jail's network, made through rtnetlink (the `netlink-packet-*`
//! crates for the messages, `netlink-sys` for the socket); no `ip`
//! process.
//!
//! - **VNET**: per interface a veth pair. The host end, `vnetN.<pid>`,
//!   joins the named bridge (created when missing, with the uplink as its
//!   member, as iocage does); the jail's end is created directly in the
//!   jail's network namespace, named `vnetN`, with its MAC; inside, its
//!   addresses, `lo` up, default routes.
//! - **Shared IP** (a jail that does not inherit the host's network): the
//!   jail's namespace gets, per host interface its addresses name, an
//!   ipvlan link (L2 mode) on that interface carrying exactly those
//!   addresses, named as the host interface is, plus `lo`. Addresses on a
//!   loopback interface (`lo0|127.0.1.1`, iocage's habit) go on the jail's
//!   own `lo`. The host's default route through an interface is given to
//!   the jail when its gateway is in one of the jail's networks there. The
//!   jail can send from its addresses only: the others exist on no
//!   interface it has.
//!
//! Everything made inside the namespace dies with it. What is made on the
//! host (veth host ends, bridges) is listed in a [`Made`], recorded with
//! the running jail; stop removes the host ends (bridges stay, as iocage
//! leaves them), a failed start removes all of it.
//!
//! The jail's side is reached through a netlink socket opened by a thread
//! that has entered the namespace (network namespaces are per thread; the
//! socket stays in the namespace it was made in), so the daemon never
//! runs anything in the jail to configure it.
//!
//! The pieces: `netlink`, the socket and its requests' framing; `link`,
//! `address` and `route`, the requests on each kind of thing; `vnet` and
//! `shared`, the two kinds of jail network made with them. This module
//! holds what they share, and what the runtime calls: [`setup`], [`undo`]
//! and the host's [`turn`].

use std::os::fd::AsRawFd;
use std::sync::{Mutex, MutexGuard, PoisonError};

use serde::{Deserialize, Serialize};

use crate::runtime::net::{Interface, Network};

mod address;
mod link;
mod netlink;
mod route;
mod shared;
mod vnet;

use link::Link;
use netlink::Netlink;
use route::DefaultRoute;

/// What a start made on the host, to be undone.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Made {
    /// Host ends of veth pairs, with their interface index once made (a
    /// name alone could be another jail's by now: host ends are named by
    /// the init's pid).
    pub host_links: Vec<(String, Option<u32>)>,
    /// Bridges this start created.
    pub bridges: Vec<String>,
}

/// A step that failed: what, on which interface, and the kernel's answer.
fn failed(step: &str, what: &str, e: impl std::fmt::Display) -> String {
    format!("{step} {what}: {e}")
}

/// One network change at a time on this host: the checks a start makes
/// (an address not in use, a bridge missing or not) hold until what it
/// makes is made, and a failed start's undo cannot remove a bridge another
/// start is joining.
static HOST_NETWORK: Mutex<()> = Mutex::new(());

/// The turn on the host's network (see [`HOST_NETWORK`]); held by a start
/// from before [`setup`] until it has succeeded or been undone.
pub fn turn() -> MutexGuard<'static, ()> {
    HOST_NETWORK.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The jail's namespace, as FreeBSD's defaults have it: no router
/// advertisements, no address autoconfiguration (an address appears only
/// when the jail's properties give it).
const NO_AUTOCONF: [(&str, &str); 4] = [
    ("/proc/sys/net/ipv6/conf/all/accept_ra", "0"),
    ("/proc/sys/net/ipv6/conf/default/accept_ra", "0"),
    ("/proc/sys/net/ipv6/conf/all/autoconf", "0"),
    ("/proc/sys/net/ipv6/conf/default/autoconf", "0"),
];

/// A shared-IP jail without IPv6 addresses has no IPv6 at all (FreeBSD:
/// `ip6.addr` empty).
const NO_IPV6: [(&str, &str); 2] =
    [("/proc/sys/net/ipv6/conf/all/disable_ipv6", "1"), ("/proc/sys/net/ipv6/conf/default/disable_ipv6", "1")];

/// Makes the jail's network. `pid` is its init (its namespace exists);
/// what is made on the host is added to `made`, and `record` is called
/// with it after each addition (so that a daemon killed part-way leaves
/// a record the next start of the jail undoes). The caller holds
/// [`turn`]. Only for a jail with a network of its own: the caller does
/// not call it for one that shares the host's.
pub fn setup(network: &Network, pid: i32, made: &mut Made, record: &mut dyn FnMut(&Made)) -> Result<(), String> {
    let path = format!("/proc/{pid}/ns/net");
    let ns = std::fs::File::open(&path).map_err(|e| format!("{path}: {e}"))?;
    let mut sysctls = NO_AUTOCONF.to_vec();
    if let Network::Shared { addresses } = network {
        if !addresses.iter().any(|a| a.addr.is_ipv6()) {
            sysctls.extend(NO_IPV6);
        }
    }
    let mut host = Netlink::open().map_err(|e| format!("opening a netlink socket: {e}"))?;
    let mut jail = Netlink::open_in(&ns, &sysctls)?;
    let lo = jail
        .link("lo")
        .map_err(|e| failed("listing", "the jail's interfaces", e))?
        .ok_or("the jail's namespace has no lo")?;
    jail.set_up(lo.index, None).map_err(|e| failed("bringing up", "the jail's lo", e))?;
    let ns = ns.as_raw_fd();
    match network {
        Network::Shared { addresses } => shared::shared(&mut host, &mut jail, lo.index, addresses, pid, ns),
        Network::Vnet(v) => vnet::vnet(&mut host, &mut jail, v, pid, ns, made, record),
    }
}

/// The host interface `i` names (`DEFAULT`: the default route's), among
/// the host's `links` and default `routes`.
fn resolve(links: &[Link], routes: &[DefaultRoute], i: &Interface) -> Result<Link, String> {
    match i {
        Interface::Named(n) => {
            links.iter().find(|l| &l.name == n).cloned().ok_or_else(|| format!("the host has no interface {n}"))
        }
        Interface::Default => {
            let index = routes.first().map(|r| r.0).ok_or("DEFAULT: the host has no default route")?;
            links.iter().find(|l| l.index == index).cloned().ok_or_else(|| "DEFAULT: its interface is gone".into())
        }
    }
}

/// The host's links and default routes, read once for a start.
fn host_view(host: &mut Netlink) -> Result<(Vec<Link>, Vec<DefaultRoute>), String> {
    let links = host.links().map_err(|e| failed("listing", "the host's interfaces", e))?;
    let routes = host.default_routes().map_err(|e| failed("reading", "the host's default routes", e))?;
    Ok((links, routes))
}

/// Removes what a start made on the host: the veth host ends (gone
/// already when the namespace is; removing them here makes it so at once)
/// and, when `bridges`, the bridges it created that have no member left
/// (another jail may have joined one since). Only a link of the kind the
/// start made is removed under its name. Returns what could not be
/// removed. The caller holds [`turn`].
pub fn undo(made: &Made, bridges: bool) -> Vec<String> {
    let mut host = match Netlink::open() {
        Ok(h) => h,
        Err(e) => return vec![format!("opening a netlink socket: {e}")],
    };
    let mut errors = Vec::new();
    let mut remove = |host: &mut Netlink, name: &str, index: Option<u32>, kind: &str, only_if_empty: bool| {
        let links = match host.links() {
            Ok(l) => l,
            Err(e) => return errors.push(failed("listing", "the host's interfaces", e)),
        };
        let Some(l) = links.iter().find(|l| l.name == name && index.is_none_or(|i| i == l.index)) else { return };
        if l.kind.as_deref() != Some(kind) || (only_if_empty && links.iter().any(|m| m.master == Some(l.index))) {
            return;
        }
        match host.delete_link(l.index) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => {}
            Err(e) => errors.push(failed("removing", name, e)),
        }
    };
    for (name, index) in &made.host_links {
        remove(&mut host, name, *index, "veth", false);
    }
    if bridges {
        for name in &made.bridges {
            remove(&mut host, name, None, "bridge", true);
        }
    }
    errors
}
