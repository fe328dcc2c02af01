//! Routes through a [`Netlink`] socket: the default routes of the main
//! table, and adding one.

use std::io;
use std::net::IpAddr;

use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteType};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use super::address::family;
use super::netlink::Netlink;

/// A default route: its interface's index and its gateway.
pub(super) type DefaultRoute = (u32, Option<IpAddr>);

impl Netlink {
    /// The default routes of the main table, IPv4's then IPv6's: (link
    /// index, gateway).
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
