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

use std::collections::BTreeMap;
use std::io;
use std::net::IpAddr;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_EXCL, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage,
    NetlinkPayload,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoData, InfoIpVlan, InfoKind, InfoVeth, IpVlanMode, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteType};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};
use nix::sched::CloneFlags;
use serde::{Deserialize, Serialize};

use crate::runtime::net::{Alias, Interface, Network, Vnet};

/// How long one netlink request may take before it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest reply datagram read.
const RECV_BUFFER: usize = 64 * 1024;
/// `struct nlmsghdr`.
const NLMSG_HEADER_LEN: usize = 16;
/// How often a dump the kernel marks interrupted is asked for again.
const DUMP_TRIES: u32 = 3;

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

/// A link as the kernel lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    /// `IFLA_INFO_KIND` (`bridge`, `veth`, ...); none for plain devices.
    pub kind: Option<String>,
    /// The bridge (or other master) it is a member of.
    pub master: Option<u32>,
    pub loopback: bool,
}

/// A synchronous rtnetlink socket in one network namespace.
pub struct Netlink {
    sock: Socket,
    seq: u32,
}

impl Netlink {
    /// A socket in the calling thread's network namespace.
    pub fn open() -> io::Result<Netlink> {
        let mut sock = Socket::new(NETLINK_ROUTE)?;
        sock.bind_auto()?;
        sock.connect(&SocketAddr::new(0, 0))?;
        let tv = nix::sys::time::TimeVal::new(REQUEST_TIMEOUT.as_secs() as i64, 0);
        nix::sys::socket::setsockopt(&sock, nix::sys::socket::sockopt::ReceiveTimeout, &tv).map_err(io::Error::from)?;
        Ok(Netlink { sock, seq: 0 })
    }

    /// A socket in the network namespace `ns` (an open `/proc/PID/ns/net`):
    /// a thread of its own enters the namespace, writes `sysctls` there
    /// (`/proc/sys/net` is the namespace of the thread that opens it),
    /// opens the socket and ends.
    pub fn open_in(ns: &std::fs::File, sysctls: &[(&'static str, &'static str)]) -> Result<Netlink, String> {
        let ns = ns.try_clone().map_err(|e| format!("the jail's network namespace: {e}"))?;
        let sysctls = sysctls.to_vec();
        std::thread::spawn(move || -> Result<Netlink, String> {
            nix::sched::setns(ns.as_fd(), CloneFlags::CLONE_NEWNET)
                .map_err(|e| format!("entering the jail's network namespace: {e}"))?;
            for (path, value) in sysctls {
                match std::fs::write(path, value) {
                    // A kernel without IPv6 has nothing to turn off.
                    Err(e) if e.kind() != io::ErrorKind::NotFound => {
                        return Err(format!("{path} in the jail's namespace: {e}"));
                    }
                    _ => {}
                }
            }
            Netlink::open().map_err(|e| format!("a netlink socket in the jail's namespace: {e}"))
        })
        .join()
        .map_err(|_| "the thread opening the jail's netlink socket panicked".to_string())?
    }

    fn send(&mut self, msg: RouteNetlinkMessage, flags: u16) -> io::Result<u32> {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = self.seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(msg));
        packet.finalize();
        let mut buf = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut buf);
        self.sock.send(&buf, 0)?;
        Ok(self.seq)
    }

    /// The replies to request `seq` until its ACK (or the end of a dump).
    /// A dump the kernel marks inconsistent (`NLM_F_DUMP_INTR`: the table
    /// changed under it) fails with `Interrupted`; [`Netlink::dump`] asks
    /// again. A reply this crate cannot decode fails the request.
    fn replies(&mut self, seq: u32, dump: bool) -> io::Result<Vec<RouteNetlinkMessage>> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; RECV_BUFFER];
        let mut interrupted = false;
        loop {
            let n = match self.sock.recv(&mut &mut buf[..], 0) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, "the kernel did not answer"));
                }
                Err(e) => return Err(e),
            };
            let mut offset = 0;
            while offset + NLMSG_HEADER_LEN <= n {
                let raw = &buf[offset..n];
                let len = u32::from_ne_bytes([raw[0], raw[1], raw[2], raw[3]]) as usize;
                if len < NLMSG_HEADER_LEN || len > raw.len() {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, "a truncated netlink message"));
                }
                offset += (len + 3) & !3;
                if u32::from_ne_bytes([raw[8], raw[9], raw[10], raw[11]]) != seq {
                    continue;
                }
                // Part of our answer: one we cannot read is an error, not
                // a shorter answer (a link or address missed by a check).
                let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&raw[..len])
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("a netlink reply: {e}")))?;
                interrupted |= msg.header.flags & NLM_F_DUMP_INTR != 0;
                match msg.payload {
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            None => Ok(out),
                            Some(code) => Err(io::Error::from_raw_os_error(-code.get())),
                        };
                    }
                    NetlinkPayload::Done(d) if dump => {
                        return if d.code != 0 {
                            Err(io::Error::from_raw_os_error(-d.code))
                        } else if interrupted {
                            Err(io::Error::new(io::ErrorKind::Interrupted, "the dump was interrupted"))
                        } else {
                            Ok(out)
                        };
                    }
                    NetlinkPayload::InnerMessage(m) => out.push(m),
                    _ => {}
                }
            }
        }
    }

    /// Sends a request and waits for its ACK.
    fn request(&mut self, msg: RouteNetlinkMessage, flags: u16) -> io::Result<()> {
        let seq = self.send(msg, NLM_F_ACK | flags)?;
        self.replies(seq, false).map(drop)
    }

    fn dump(&mut self, msg: RouteNetlinkMessage) -> io::Result<Vec<RouteNetlinkMessage>> {
        let mut tries = 0;
        loop {
            let seq = self.send(msg.clone(), NLM_F_DUMP)?;
            match self.replies(seq, true) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted && tries < DUMP_TRIES => tries += 1,
                r => return r,
            }
        }
    }

    /// Every link of the namespace.
    pub fn links(&mut self) -> io::Result<Vec<Link>> {
        let replies = self.dump(RouteNetlinkMessage::GetLink(LinkMessage::default()))?;
        Ok(replies
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(link_of(&l)),
                _ => None,
            })
            .collect())
    }

    pub fn link(&mut self, name: &str) -> io::Result<Option<Link>> {
        Ok(self.links()?.into_iter().find(|l| l.name == name))
    }

    /// Every address of the namespace, with the index of its link.
    pub fn addresses(&mut self) -> io::Result<Vec<(u32, IpAddr)>> {
        let replies = self.dump(RouteNetlinkMessage::GetAddress(AddressMessage::default()))?;
        let mut out = Vec::new();
        for m in replies {
            if let RouteNetlinkMessage::NewAddress(a) = m {
                let local = a.attributes.iter().find_map(|x| match x {
                    AddressAttribute::Local(ip) => Some(*ip),
                    _ => None,
                });
                let addr = a.attributes.iter().find_map(|x| match x {
                    AddressAttribute::Address(ip) => Some(*ip),
                    _ => None,
                });
                if let Some(ip) = local.or(addr) {
                    out.push((a.header.index, ip));
                }
            }
        }
        Ok(out)
    }

    /// The default routes of the main table: (family is v6, link index,
    /// gateway).
    pub fn default_routes(&mut self) -> io::Result<Vec<DefaultRoute>> {
        let mut out = Vec::new();
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            let mut req = RouteMessage::default();
            req.header.address_family = family;
            for m in self.dump(RouteNetlinkMessage::GetRoute(req))? {
                let RouteNetlinkMessage::NewRoute(r) = m else { continue };
                if r.header.destination_prefix_length != 0 || r.header.table != RouteHeader::RT_TABLE_MAIN {
                    continue;
                }
                let oif = r.attributes.iter().find_map(|a| match a {
                    RouteAttribute::Oif(i) => Some(*i),
                    _ => None,
                });
                let gw = r.attributes.iter().find_map(|a| match a {
                    RouteAttribute::Gateway(RouteAddress::Inet(g)) => Some(IpAddr::V4(*g)),
                    RouteAttribute::Gateway(RouteAddress::Inet6(g)) => Some(IpAddr::V6(*g)),
                    _ => None,
                });
                if let Some(oif) = oif {
                    out.push((oif, gw));
                }
            }
        }
        Ok(out)
    }

    pub fn create_bridge(&mut self, name: &str) -> io::Result<()> {
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.to_string()));
        m.attributes.push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Bridge)]));
        self.request(RouteNetlinkMessage::NewLink(m), NLM_F_CREATE | NLM_F_EXCL)
    }

    /// A veth pair: `host` here, `peer` in the namespace `ns` (an open
    /// namespace file: not a pid, which could be another process's by now).
    pub fn create_veth(
        &mut self,
        host: &str,
        host_mac: [u8; 6],
        peer: &str,
        peer_mac: [u8; 6],
        ns: RawFd,
    ) -> io::Result<()> {
        let mut p = LinkMessage::default();
        p.attributes.push(LinkAttribute::IfName(peer.to_string()));
        p.attributes.push(LinkAttribute::Address(peer_mac.to_vec()));
        p.attributes.push(LinkAttribute::NetNsFd(ns));
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(host.to_string()));
        m.attributes.push(LinkAttribute::Address(host_mac.to_vec()));
        m.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(p))),
        ]));
        self.request(RouteNetlinkMessage::NewLink(m), NLM_F_CREATE | NLM_F_EXCL)
    }

    /// An ipvlan link (L2) on `parent`, created in the namespace `ns`
    /// under `name`.
    pub fn create_ipvlan(&mut self, parent: u32, name: &str, ns: RawFd) -> io::Result<()> {
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.to_string()));
        m.attributes.push(LinkAttribute::Link(parent));
        m.attributes.push(LinkAttribute::NetNsFd(ns));
        m.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::IpVlan),
            LinkInfo::Data(InfoData::IpVlan(vec![InfoIpVlan::Mode(IpVlanMode::L2)])),
        ]));
        self.request(RouteNetlinkMessage::NewLink(m), NLM_F_CREATE | NLM_F_EXCL)
    }

    /// Sets a link up, and its master when given.
    pub fn set_up(&mut self, index: u32, master: Option<u32>) -> io::Result<()> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.header.flags = LinkFlags::Up;
        m.header.change_mask = LinkFlags::Up;
        if let Some(b) = master {
            m.attributes.push(LinkAttribute::Controller(b));
        }
        self.request(RouteNetlinkMessage::SetLink(m), 0)
    }

    pub fn set_master(&mut self, index: u32, master: u32) -> io::Result<()> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.attributes.push(LinkAttribute::Controller(master));
        self.request(RouteNetlinkMessage::SetLink(m), 0)
    }

    /// Renames a link (it must be down).
    pub fn rename(&mut self, index: u32, name: &str) -> io::Result<()> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.attributes.push(LinkAttribute::IfName(name.to_string()));
        self.request(RouteNetlinkMessage::SetLink(m), 0)
    }

    pub fn delete_link(&mut self, index: u32) -> io::Result<()> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        self.request(RouteNetlinkMessage::DelLink(m), 0)
    }

    pub fn add_address(&mut self, index: u32, addr: IpAddr, prefix: u8) -> io::Result<()> {
        let mut m = AddressMessage::default();
        m.header.family = family(&addr);
        m.header.prefix_len = prefix;
        m.header.index = index;
        m.attributes.push(AddressAttribute::Local(addr));
        m.attributes.push(AddressAttribute::Address(addr));
        self.request(RouteNetlinkMessage::NewAddress(m), NLM_F_CREATE | NLM_F_EXCL)
    }

    /// A default route through `gateway` in the main table, out of `oif`
    /// when given.
    pub fn add_default_route(&mut self, gateway: IpAddr, oif: Option<u32>) -> io::Result<()> {
        let mut m = RouteMessage::default();
        m.header.address_family = family(&gateway);
        m.header.table = RouteHeader::RT_TABLE_MAIN;
        m.header.protocol = RouteProtocol::Static;
        m.header.kind = RouteType::Unicast;
        m.attributes.push(RouteAttribute::Gateway(match gateway {
            IpAddr::V4(g) => RouteAddress::Inet(g),
            IpAddr::V6(g) => RouteAddress::Inet6(g),
        }));
        if let Some(oif) = oif {
            m.attributes.push(RouteAttribute::Oif(oif));
        }
        self.request(RouteNetlinkMessage::NewRoute(m), NLM_F_CREATE | NLM_F_EXCL)
    }
}

fn family(addr: &IpAddr) -> AddressFamily {
    if addr.is_ipv4() { AddressFamily::Inet } else { AddressFamily::Inet6 }
}

fn link_of(l: &LinkMessage) -> Link {
    let mut link = Link {
        index: l.header.index,
        name: String::new(),
        kind: None,
        master: None,
        loopback: l.header.flags.contains(LinkFlags::Loopback),
    };
    for a in &l.attributes {
        match a {
            LinkAttribute::IfName(n) => link.name = n.clone(),
            LinkAttribute::Controller(m) => link.master = Some(*m),
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    if let LinkInfo::Kind(k) = i {
                        link.kind = Some(k.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    link
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
/// [`turn`]. Nothing is done for a jail that shares the host's network.
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
        Network::Shared { addresses } => shared(&mut host, &mut jail, lo.index, addresses, pid, ns),
        Network::Vnet(v) => vnet(&mut host, &mut jail, v, pid, ns, made, record),
    }
}

/// `lo`, `lo0`, `lo1`, ...: iocage's loopback aliases (`lo0|127.0.1.1`)
/// name FreeBSD's loopback; on Linux they go on the jail's own `lo`.
fn is_loopback_name(name: &str) -> bool {
    name.strip_prefix("lo").is_some_and(|n| n.chars().all(|c| c.is_ascii_digit()))
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

/// A default route: its interface's index and its gateway.
type DefaultRoute = (u32, Option<IpAddr>);

/// The host's links and default routes, read once for a start.
fn host_view(host: &mut Netlink) -> Result<(Vec<Link>, Vec<DefaultRoute>), String> {
    let links = host.links().map_err(|e| failed("listing", "the host's interfaces", e))?;
    let routes = host.default_routes().map_err(|e| failed("reading", "the host's default routes", e))?;
    Ok((links, routes))
}

fn shared(
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

fn vnet(
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

    /// The messages a VNET start sends, encoded and decoded again: the
    /// peer's namespace and name travel inside the veth's link info.
    #[test]
    fn a_veth_request_carries_its_peer() {
        let mut p = LinkMessage::default();
        p.attributes.push(LinkAttribute::IfName("vnet0".into()));
        p.attributes.push(LinkAttribute::NetNsPid(42));
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName("vnet0.42".into()));
        m.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(p.clone()))),
        ]));
        let mut packet =
            NetlinkMessage::new(NetlinkHeader::default(), NetlinkPayload::from(RouteNetlinkMessage::NewLink(m)));
        packet.finalize();
        let mut buf = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut buf);
        let back = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&buf).unwrap();
        let NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(l)) = back.payload else { panic!("a NewLink") };
        assert_eq!(link_of(&l).name, "vnet0.42");
        assert_eq!(link_of(&l).kind.as_deref(), Some("veth"));
    }
}
