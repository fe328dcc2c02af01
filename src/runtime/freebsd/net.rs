//! A FreeBSD shared-IP jail's addresses as aliases on the host's
//! interfaces, as jail(8) puts them there (see `ifreq` for the source it
//! follows): added before the jail is created, removed after it is gone,
//! and removed again on any failure in between.
//!
//! `DEFAULT|` is the interface of the default route, asked of the routing
//! socket as `route -n get default` asks (IPv4's, else IPv6's).
//!
//! VNET interfaces are `vnet`'s.

use std::net::IpAddr;

use super::ifreq;
use super::record::AddedAlias;
use super::sys;
use crate::runtime::net::{Alias, Interface};

/// Serializes alias additions on this host.
static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The host's addresses, with their interfaces.
fn host_addresses() -> Result<Vec<(String, IpAddr)>, String> {
    let list = nix::ifaddrs::getifaddrs().map_err(|e| format!("listing the host's addresses: {e}"))?;
    Ok(list
        .filter_map(|i| {
            let a = i.address?;
            let ip = a
                .as_sockaddr_in()
                .map(|s| IpAddr::V4(s.ip()))
                .or_else(|| a.as_sockaddr_in6().map(|s| IpAddr::V6(s.ip())))?;
            Some((i.interface_name, ip))
        })
        .collect())
}

/// Adds the jail's aliases; on a failure removes those added and says
/// which failed. An address the host already has is refused (removing it
/// at stop would take it from the host). `record` is called before each
/// addition with all added so far and that one, so that a daemon killed
/// part-way leaves a record the jail's next start undoes.
pub fn add_aliases(addresses: &[Alias], record: &mut dyn FnMut(&[AddedAlias])) -> Result<Vec<AddedAlias>, String> {
    let default = if addresses.iter().any(|a| a.interface == Some(Interface::Default)) {
        Some(default_interface()?)
    } else {
        None
    };
    let wanted: Vec<(&str, &Alias)> = addresses
        .iter()
        .filter_map(|a| match &a.interface {
            Some(Interface::Named(n)) => Some((n.as_str(), a)),
            Some(Interface::Default) => default.as_deref().map(|d| (d, a)),
            None => None,
        })
        .collect();
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    // One start's check and additions at a time: two jails given the same
    // address would otherwise both pass the check, and the second
    // SIOCAIFADDR would only update the first one's alias.
    let _turn = TURN.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let present = host_addresses()?;
    for (_, a) in &wanted {
        if let Some((on, _)) = present.iter().find(|(_, ip)| *ip == a.addr) {
            return Err(format!("{} is already in use on the host ({on})", a.addr));
        }
    }
    let mut added = Vec::new();
    for (ifname, a) in wanted {
        // Recorded before it is added (the check above, on this turn, says
        // the host does not have it), so that no crash leaves it unrecorded.
        let mut with = added.clone();
        with.push(AddedAlias { interface: ifname.to_string(), addr: a.addr });
        record(&with);
        if let Err(e) = ioctl(ifname, a.addr, Some(a.prefix_len())) {
            record(&added);
            let left = remove_aliases(&added);
            let mut msg = format!("adding {} to {ifname}: {e}", a.addr);
            if !left.is_empty() {
                msg.push_str(&format!("; undoing it: {}", left.join("; ")));
            }
            return Err(msg);
        }
        added = with;
    }
    Ok(added)
}

/// Adds (`prefix` given) or removes `addr` on `ifname`.
fn ioctl(ifname: &str, addr: IpAddr, prefix: Option<u8>) -> Result<(), Failure> {
    let (family, request, mut arg) = match (addr, prefix) {
        (IpAddr::V4(a), Some(p)) => (libc::AF_INET, ifreq::SIOCAIFADDR, ifreq::in_aliasreq(ifname, a, p)?.to_vec()),
        (IpAddr::V4(a), None) => (libc::AF_INET, ifreq::SIOCDIFADDR, ifreq::ifreq_addr(ifname, a)?.to_vec()),
        (IpAddr::V6(a), Some(p)) => {
            (libc::AF_INET6, ifreq::SIOCAIFADDR_IN6, ifreq::in6_aliasreq(ifname, a, p)?.to_vec())
        }
        (IpAddr::V6(a), None) => (libc::AF_INET6, ifreq::SIOCDIFADDR_IN6, ifreq::in6_ifreq_addr(ifname, a)?.to_vec()),
    };
    sys::if_address_ioctl(family, request, &mut arg).map_err(Failure::Kernel)
}

/// Why an ioctl was not made or failed.
#[derive(Debug)]
enum Failure {
    Request(String),
    Kernel(nix::errno::Errno),
}

impl From<String> for Failure {
    fn from(s: String) -> Self {
        Failure::Request(s)
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Request(s) => f.write_str(s),
            Failure::Kernel(e) => write!(f, "{e}"),
        }
    }
}

/// Removes aliases start added; an alias already gone is not an error.
/// Returns what could not be removed.
pub fn remove_aliases(added: &[AddedAlias]) -> Vec<String> {
    let mut errors = Vec::new();
    for a in added.iter().rev() {
        match ioctl(&a.interface, a.addr, None) {
            // Not there any more, or its interface is gone.
            Ok(()) | Err(Failure::Kernel(nix::errno::Errno::EADDRNOTAVAIL | nix::errno::Errno::ENXIO)) => {}
            Err(e) => errors.push(format!("removing {} from {}: {e}", a.addr, a.interface)),
        }
    }
    errors
}

static ROUTE_SEQ: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(1);

/// How long the routing socket may take to answer.
const ROUTE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);
/// Messages read from the routing socket before giving up on the answer
/// (it carries every routing message of the host).
const ROUTE_MESSAGES: usize = 256;

/// The name of the interface the host's default route uses.
pub fn default_interface() -> Result<String, String> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, setsockopt, socket, sockopt};
    let mut last = String::from("DEFAULT: the host has no default route");
    for v6 in [false, true] {
        let sock = socket(AddressFamily::Route, SockType::Raw, SockFlag::SOCK_CLOEXEC, None)
            .map_err(|e| format!("DEFAULT: a routing socket: {e}"))?;
        let tv = nix::sys::time::TimeVal::new(ROUTE_TIMEOUT.as_secs() as i64, 0);
        setsockopt(&sock, sockopt::ReceiveTimeout, &tv).map_err(|e| format!("DEFAULT: {e}"))?;
        // Every routing socket sees every answer: ours is told apart by pid
        // and a sequence number no other thread of the daemon uses.
        let seq = ROUTE_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let pid = std::process::id() as i32;
        match nix::unistd::write(&sock, &ifreq::route::get_default(v6, seq)) {
            Ok(_) => {}
            // The kernel refuses the question itself when there is no route.
            Err(nix::errno::Errno::ESRCH) => continue,
            Err(e) => return Err(format!("DEFAULT: asking for the default route: {e}")),
        }
        let mut buf = [0u8; 2048];
        let deadline = std::time::Instant::now() + ROUTE_TIMEOUT;
        for _ in 0..ROUTE_MESSAGES {
            if std::time::Instant::now() > deadline {
                break;
            }
            let n = match nix::unistd::read(&sock, &mut buf) {
                Ok(n) => n,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => break,
            };
            match ifreq::route::reply(&buf[..n], pid, seq) {
                None => continue,
                Some(Ok(index)) => {
                    let names = nix::net::if_::if_nameindex().map_err(|e| format!("DEFAULT: {e}"))?;
                    if let Some(i) = names.iter().find(|i| i.index() == u32::from(index)) {
                        return Ok(i.name().to_string_lossy().into_owned());
                    }
                    last = format!("DEFAULT: the default route's interface (index {index}) is gone");
                    break;
                }
                Some(Err(e)) => {
                    last = format!("DEFAULT: no default route ({})", nix::errno::Errno::from_raw(e));
                    break;
                }
            }
        }
    }
    Err(last)
}
