//! A FreeBSD shared-IP jail's addresses as aliases on the host's
//! interfaces, as jail(8) puts them there (see `ifreq` for the source it
//! follows): added before the jail is created, removed after it is gone,
//! and removed again on any failure in between.
//!
//! Not yet: VNET interfaces (epairs, bridges, addresses and routes inside
//! the jail) and `DEFAULT|` (the default route's interface); `check`
//! refuses a jail that needs them, naming what.

use std::net::IpAddr;

use super::ifreq;
use super::record::AddedAlias;
use super::sys;
use crate::runtime::net::{Alias, Interface, Network};

/// Serializes alias additions on this host.
static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// What the FreeBSD runtime cannot do for this network yet.
pub fn unsupported(network: &Network) -> Option<String> {
    match network {
        Network::Shared { addresses } => addresses.iter().find(|a| a.interface == Some(Interface::Default)).map(|a| {
            format!("DEFAULT|{}: name the interface; this runtime does not look the default route up yet", a.addr)
        }),
        Network::Vnet(v) => {
            let configured = v.interfaces.iter().any(|i| !i.addresses.is_empty());
            (configured || v.router4.is_some() || v.router6.is_some()).then(|| {
                "VNET interfaces with addresses or default routes: this runtime does not make epairs and bridges yet \
                 (the jail would have only lo0)"
                    .to_string()
            })
        }
    }
}

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
/// at stop would take it from the host).
pub fn add_aliases(addresses: &[Alias]) -> Result<Vec<AddedAlias>, String> {
    let wanted: Vec<(&str, &Alias)> = addresses
        .iter()
        .filter_map(|a| match &a.interface {
            Some(Interface::Named(n)) => Some((n.as_str(), a)),
            _ => None,
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
        if let Err(e) = ioctl(ifname, a.addr, Some(a.prefix_len())) {
            let left = remove_aliases(&added);
            let mut msg = format!("adding {} to {ifname}: {e}", a.addr);
            if !left.is_empty() {
                msg.push_str(&format!("; undoing it: {}", left.join("; ")));
            }
            return Err(msg);
        }
        added.push(AddedAlias { interface: ifname.to_string(), addr: a.addr });
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
