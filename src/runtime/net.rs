//! A jail's network, runtime-neutral: what the iocage layer decided from
//! the properties (`iocage::network` builds and validates it), carried out
//! by each runtime (`linux::net` through netlink; the FreeBSD runtime with
//! interface ioctls). Nothing here touches the kernel.
//!
//! Two modes, as in jail(8) and iocage:
//! - **Shared IP**: the jail uses the host's network stack, restricted to
//!   its own addresses. Each address names the host interface it is an
//!   alias on (`em0|10.0.0.2/24`; `DEFAULT|` is the interface of the
//!   host's default route); the runtime puts it there before the jail
//!   exists and takes it away when the jail goes.
//! - **VNET**: the jail has a network stack of its own. Each of its
//!   interfaces (`vnet0:bridge0`) is one end of a pair whose other end is
//!   a member of a bridge on the host; the jail's end carries its
//!   addresses, and the jail gets default routes.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

/// The jail's network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Network {
    /// The host's stack, restricted to these addresses (none: the modes of
    /// `JailSettings::ip4`/`ip6` alone decide).
    Shared { addresses: Vec<Alias> },
    /// A stack of its own.
    Vnet(Vnet),
}

impl Network {
    pub fn is_vnet(&self) -> bool {
        matches!(self, Network::Vnet(_))
    }

    /// The shared-IP addresses (none for a VNET jail).
    pub fn shared_addresses(&self) -> Vec<IpAddr> {
        match self {
            Network::Shared { addresses } => addresses.iter().map(|a| a.addr).collect(),
            Network::Vnet(_) => Vec::new(),
        }
    }
}

/// A host interface: by name, or the one the host's default route uses
/// (iocage's `DEFAULT`), resolved by the runtime when the jail starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Interface {
    Named(String),
    Default,
}

impl fmt::Display for Interface {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Interface::Named(n) => f.write_str(n),
            Interface::Default => f.write_str("DEFAULT"),
        }
    }
}

/// A shared-IP address: on `interface` as an alias with `prefix` bits of
/// network, or (no interface) only allowed to the jail, as jail(8) does
/// with an address given without one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alias {
    pub interface: Option<Interface>,
    pub addr: IpAddr,
    /// The network's prefix length; `None`: a host address (/32, /128),
    /// as ifconfig's alias without a mask.
    pub prefix: Option<u8>,
}

impl Alias {
    /// The prefix length to configure: as given, else the whole address.
    pub fn prefix_len(&self) -> u8 {
        self.prefix.unwrap_or(full_prefix(&self.addr))
    }
}

/// 32 for IPv4, 128 for IPv6.
pub fn full_prefix(addr: &IpAddr) -> u8 {
    if addr.is_ipv4() { 32 } else { 128 }
}

/// A VNET jail's network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vnet {
    /// Its interfaces, in the order of the `interfaces` property.
    pub interfaces: Vec<VnetInterface>,
    /// Default routes set inside the jail.
    pub router4: Option<Ipv4Addr>,
    pub router6: Option<Ipv6Addr>,
    /// A host interface added to a bridge the runtime has to create
    /// (iocage's `vnet_default_interface`); none: the bridge starts empty.
    pub bridge_uplink: Option<Interface>,
}

/// One VNET interface of a jail (`vnet0:bridge0`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VnetInterface {
    /// iocage's name for it: `vnet0`, `vnet1`, ...
    pub nic: String,
    /// The host bridge its host end joins.
    pub bridge: String,
    /// MAC addresses of the host end and the jail's end.
    pub host_mac: Mac,
    pub jail_mac: Mac,
    /// Addresses of the jail's end, with their prefix lengths.
    pub addresses: Vec<(IpAddr, u8)>,
}

impl VnetInterface {
    /// The host end's name: iocage's `<nic>.<jid>` (on Linux the jail's
    /// init pid stands for the jid). At most 15 bytes, the limit of both
    /// kernels, for any nic of the plan and any jid below 10^8.
    pub fn host_name(&self, jid: i64) -> String {
        format!("{}.{jid}", self.nic)
    }
}

/// A MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// Parses `02ff60aabbcc` or `02:ff:60:aa:bb:cc`.
    pub fn parse(s: &str) -> Option<Mac> {
        let hex: String = if s.len() == 17 {
            let parts: Vec<&str> = s.split(':').collect();
            if parts.len() != 6 || parts.iter().any(|p| p.len() != 2) {
                return None;
            }
            parts.concat()
        } else {
            s.to_string()
        };
        if hex.len() != 12 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        let mut out = [0u8; 6];
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(Mac(out))
    }

    /// The address after this one (the 48 bits as a number, wrapping).
    pub fn next(self) -> Mac {
        let mut n = [0u8; 8];
        n[2..].copy_from_slice(&self.0);
        let v = u64::from_be_bytes(n).wrapping_add(1) & 0xffff_ffff_ffff;
        let mut out = [0u8; 6];
        out.copy_from_slice(&v.to_be_bytes()[2..]);
        Mac(out)
    }

    /// A multicast address (the low bit of the first byte) cannot be an
    /// interface's.
    pub fn is_unicast(self) -> bool {
        self.0[0] & 1 == 0 && self.0 != [0; 6]
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(f, "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", m[0], m[1], m[2], m[3], m[4], m[5])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_parse_in_both_spellings_and_count_up() {
        let m = Mac::parse("02ff60aabbff").unwrap();
        assert_eq!(Mac::parse("02:ff:60:aa:bb:ff"), Some(m));
        assert_eq!(m.next().to_string(), "02:ff:60:aa:bc:00");
        assert_eq!(Mac::parse("ffffffffffff").unwrap().next(), Mac([0; 6]));
        for bad in ["", "02ff60aabb", "02ff60aabbccdd", "02:ff:60:aa:bb", "0g0000000000", "02-ff-60-aa-bb-cc"] {
            assert_eq!(Mac::parse(bad), None, "{bad}");
        }
        assert!(m.is_unicast());
        assert!(!Mac::parse("01005e000001").unwrap().is_unicast());
    }

    #[test]
    fn host_ends_are_named_as_iocage_names_them() {
        let i = VnetInterface {
            nic: "vnet0".into(),
            bridge: "bridge0".into(),
            host_mac: Mac([2, 0, 0, 0, 0, 0]),
            jail_mac: Mac([2, 0, 0, 0, 0, 1]),
            addresses: vec![],
        };
        assert_eq!(i.host_name(42), "vnet0.42");
        assert!(i.host_name(99_999_999).len() <= 15);
    }
}
