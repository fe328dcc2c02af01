//! The argument structures of FreeBSD's interface-address ioctls, laid out
//! byte by byte (amd64, little-endian), so that they are built and tested
//! on every platform; `sys` hands them to ioctl(2) on FreeBSD.
//!
//! What jail(8) does with `ip4.addr = "em0|10.0.0.2/24"` (usr.sbin/jail/
//! command.c, `IP__IP4_IFADDR`/`IP__IP6_IFADDR`) is run `ifconfig em0 inet
//! 10.0.0.2 netmask 255.255.255.0 alias` before creating the jail and
//! `ifconfig em0 inet 10.0.0.2 -alias` after removing it; ifconfig turns
//! those into these ioctls (sbin/ifconfig/af_inet.c `in_getaddr`,
//! af_inet6.c): `SIOCAIFADDR` with a `struct in_aliasreq`,
//! `SIOCDIFADDR` with a `struct ifreq` whose `ifr_addr` is the address,
//! and for IPv6 `SIOCAIFADDR_IN6` with a `struct in6_aliasreq` (infinite
//! lifetimes) and `SIOCDIFADDR_IN6` with a `struct in6_ifreq`. Without a
//! mask jail(8) adds a host address (/32, /128).
//!
//! Sizes, offsets and request numbers: FreeBSD 13.5's headers
//! (`netinet/in_var.h`, `netinet6/in6_var.h`, `sys/sockio.h`), checked by
//! compiling `sizeof`/`offsetof` for x86_64-unknown-freebsd13.5 against
//! the sysroot in `../shared/freebsd`; the same in 14.x.

use std::net::{Ipv4Addr, Ipv6Addr};

/// `_IOW('i', 43, struct in_aliasreq)`.
pub const SIOCAIFADDR: u64 = 0x8044_692b;
/// `_IOW('i', 25, struct ifreq)`.
pub const SIOCDIFADDR: u64 = 0x8020_6919;
/// `_IOW('i', 27, struct in6_aliasreq)`.
pub const SIOCAIFADDR_IN6: u64 = 0x8088_691b;
/// `_IOW('i', 25, struct in6_ifreq)`.
pub const SIOCDIFADDR_IN6: u64 = 0x8120_6919;

pub const IN_ALIASREQ_LEN: usize = 68;
pub const IN6_ALIASREQ_LEN: usize = 136;
pub const IFREQ_LEN: usize = 32;
pub const IN6_IFREQ_LEN: usize = 288;

const IFNAMSIZ: usize = 16;
const AF_INET: u8 = 2;
/// FreeBSD's (Linux's is 10).
const AF_INET6: u8 = 28;
const SOCKADDR_IN_LEN: usize = 16;
const SOCKADDR_IN6_LEN: usize = 28;
/// `ND6_INFINITE_LIFETIME`.
const INFINITE: u32 = 0xffff_ffff;

/// An interface name as the kernel takes it: at most 15 bytes and a NUL.
fn put_name(buf: &mut [u8], name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() >= IFNAMSIZ || name.bytes().any(|b| b == 0) {
        return Err(format!("{name:?} is not an interface name"));
    }
    buf[..name.len()].copy_from_slice(name.as_bytes());
    Ok(())
}

/// `struct sockaddr_in` (16 bytes): len, family, port, address, zero.
fn sockaddr_in(buf: &mut [u8], a: Ipv4Addr) {
    buf[0] = SOCKADDR_IN_LEN as u8;
    buf[1] = AF_INET;
    buf[4..8].copy_from_slice(&a.octets());
}

/// `struct sockaddr_in6` (28 bytes): len, family, port, flowinfo,
/// address, scope id.
fn sockaddr_in6(buf: &mut [u8], a: Ipv6Addr) {
    buf[0] = SOCKADDR_IN6_LEN as u8;
    buf[1] = AF_INET6;
    buf[8..24].copy_from_slice(&a.octets());
}

fn mask4(len: u8) -> Ipv4Addr {
    Ipv4Addr::from(u32::MAX.checked_shl(32 - u32::from(len.min(32))).unwrap_or(0))
}

fn mask6(len: u8) -> Ipv6Addr {
    Ipv6Addr::from(u128::MAX.checked_shl(128 - u32::from(len.min(128))).unwrap_or(0))
}

/// `struct in_aliasreq` for `SIOCAIFADDR`: name (16), addr (16),
/// broadaddr (16, none), mask (16), vhid (4, 0).
pub fn in_aliasreq(ifname: &str, addr: Ipv4Addr, prefix: u8) -> Result<[u8; IN_ALIASREQ_LEN], String> {
    let mut b = [0u8; IN_ALIASREQ_LEN];
    put_name(&mut b[..IFNAMSIZ], ifname)?;
    sockaddr_in(&mut b[16..32], addr);
    sockaddr_in(&mut b[48..64], mask4(prefix));
    Ok(b)
}

/// `struct ifreq` for `SIOCDIFADDR`: name (16), `ifr_addr` (16).
pub fn ifreq_addr(ifname: &str, addr: Ipv4Addr) -> Result<[u8; IFREQ_LEN], String> {
    let mut b = [0u8; IFREQ_LEN];
    put_name(&mut b[..IFNAMSIZ], ifname)?;
    sockaddr_in(&mut b[16..32], addr);
    Ok(b)
}

/// `struct in6_aliasreq` for `SIOCAIFADDR_IN6`: name (16), addr (28),
/// dstaddr (28, none), prefixmask (28), flags (4, at 100), lifetime (at
/// 104: expire, preferred (time_t, 0), vltime, pltime (infinite)), vhid
/// (4, at 128), padding to 136.
pub fn in6_aliasreq(ifname: &str, addr: Ipv6Addr, prefix: u8) -> Result<[u8; IN6_ALIASREQ_LEN], String> {
    let mut b = [0u8; IN6_ALIASREQ_LEN];
    put_name(&mut b[..IFNAMSIZ], ifname)?;
    sockaddr_in6(&mut b[16..44], addr);
    sockaddr_in6(&mut b[72..100], mask6(prefix));
    b[120..124].copy_from_slice(&INFINITE.to_le_bytes());
    b[124..128].copy_from_slice(&INFINITE.to_le_bytes());
    Ok(b)
}

/// `struct in6_ifreq` for `SIOCDIFADDR_IN6`: name (16), `ifr_addr` (a
/// sockaddr_in6 at the start of the 272-byte union).
pub fn in6_ifreq_addr(ifname: &str, addr: Ipv6Addr) -> Result<[u8; IN6_IFREQ_LEN], String> {
    let mut b = [0u8; IN6_IFREQ_LEN];
    put_name(&mut b[..IFNAMSIZ], ifname)?;
    sockaddr_in6(&mut b[16..44], addr);
    Ok(b)
}

/// The size an `_IOW` request number says its argument has (bits 16-28),
/// to check each buffer against its request.
pub const fn ioc_len(request: u64) -> usize {
    ((request >> 16) & 0x1fff) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_numbers_carry_their_structures_sizes() {
        assert_eq!(ioc_len(SIOCAIFADDR), IN_ALIASREQ_LEN);
        assert_eq!(ioc_len(SIOCDIFADDR), IFREQ_LEN);
        assert_eq!(ioc_len(SIOCAIFADDR_IN6), IN6_ALIASREQ_LEN);
        assert_eq!(ioc_len(SIOCDIFADDR_IN6), IN6_IFREQ_LEN);
    }

    #[test]
    fn an_ipv4_alias_request_is_laid_out_as_in_aliasreq() {
        let b = in_aliasreq("em0", "10.0.0.2".parse().unwrap(), 24).unwrap();
        assert_eq!(&b[..4], b"em0\0");
        assert_eq!(&b[16..24], &[16, 2, 0, 0, 10, 0, 0, 2]);
        assert!(b[32..48].iter().all(|x| *x == 0), "no broadcast address");
        assert_eq!(&b[48..56], &[16, 2, 0, 0, 255, 255, 255, 0]);
        assert!(b[64..].iter().all(|x| *x == 0), "vhid 0");
        let host = in_aliasreq("em0", "10.0.0.2".parse().unwrap(), 32).unwrap();
        assert_eq!(&host[52..56], &[255; 4]);
        assert!(in_aliasreq("a-name-too-long0", "10.0.0.2".parse().unwrap(), 24).is_err());
        assert_eq!(&ifreq_addr("lo0", "127.0.1.1".parse().unwrap()).unwrap()[16..24], &[16, 2, 0, 0, 127, 0, 1, 1]);
    }

    #[test]
    fn a_default_route_question_and_its_answer() {
        let q = route::get_default(false, 7);
        assert_eq!(q.len(), 152 + 32);
        assert_eq!(
            (&q[0..4], &q[12..16], &q[20..24]),
            (&[184u8, 0, 5, 4][..], &[5u8, 0, 0, 0][..], &[7u8, 0, 0, 0][..])
        );
        assert_eq!((&q[152..154], &q[168..170]), (&[16u8, 2][..], &[16u8, 2][..]), "dst and netmask: 0.0.0.0");
        let q6 = route::get_default(true, 1);
        assert_eq!(q6.len(), 152 + 64, "sockaddr_in6 takes 32 bytes (SA_SIZE)");
        assert_eq!((&q6[152..154], &q6[184..186]), (&[28u8, 28][..], &[28u8, 28][..]), "netmask at 184");
        // The kernel's answer: our pid and seq, rtm_index 3.
        let mut a = q.clone();
        a[4] = 3;
        a[16..20].copy_from_slice(&42i32.to_le_bytes());
        assert_eq!(route::reply(&a, 42, 7), Some(Ok(3)));
        assert_eq!(route::reply(&a, 43, 7), None, "another process's");
        assert_eq!(route::reply(&a, 42, 8), None, "another question");
        a[24..28].copy_from_slice(&3i32.to_le_bytes());
        assert_eq!(route::reply(&a, 42, 7), Some(Err(3)), "ESRCH: no default route");
        assert_eq!(route::reply(&a[..100], 42, 7), None);
    }

    #[test]
    fn vnet_requests_are_laid_out_as_ifreq_ifdrv_and_ifbreq() {
        use super::vnet::*;
        assert_eq!(ioc_len(SIOCIFCREATE2), IFREQ_LEN);
        assert_eq!(ioc_len(SIOCSIFVNET), IFREQ_LEN);
        assert_eq!(ioc_len(SIOCSDRVSPEC), IFDRV_LEN);
        let b = with_flags("vnet0.5", 0x1_8043).unwrap();
        assert_eq!((&b[..8], &b[16..20]), (&b"vnet0.5\0"[..], &[0x43u8, 0x80, 1, 0][..]));
        assert_eq!(flags_of(&b), 0x1_8043);
        assert_eq!(name_of(&b), "vnet0.5");
        assert_eq!(
            &with_lladdr("epair0b", [2, 0xff, 0x60, 1, 2, 3]).unwrap()[16..24],
            &[6, 18, 2, 0xff, 0x60, 1, 2, 3]
        );
        assert_eq!(&with_jid("epair0b", 7).unwrap()[16..20], &[7, 0, 0, 0]);
        assert_eq!(int_of(&with_int("bridge0", 9000).unwrap()), 9000);
        assert_eq!((ioc_len(SIOCGIFMTU), ioc_len(SIOCSIFMTU)), (IFREQ_LEN, IFREQ_LEN));
        let d = ifdrv("bridge0", BRDGADD, IFBREQ_LEN, 0x1122_3344_5566_7788).unwrap();
        assert_eq!(
            (&d[..8], &d[16..24], &d[24..32]),
            (&b"bridge0\0"[..], &[0u8; 8][..], &[80u8, 0, 0, 0, 0, 0, 0, 0][..])
        );
        assert_eq!(&d[32..40], &[0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11]);
        assert_eq!(&ifbreq("vnet0.5").unwrap()[..8], b"vnet0.5\0");
        let r6 = route::add_default("fe80::1".parse().unwrap(), 3, 2);
        assert_eq!(r6.len(), 152 + 96);
        assert_eq!((r6[184], r6[185], r6[192], r6[208]), (28, 28, 0xfe, 3), "gateway at 184, scope id at 208");
        assert_eq!(&r6[216..218], &[28, 28], "netmask at 216");
        let r = route::add_default("10.0.0.1".parse().unwrap(), 0, 2);
        assert_eq!((r.len(), r[3], r[12]), (152 + 48, 1, 7));
        assert_eq!(&r[168..176], &[16, 2, 0, 0, 10, 0, 0, 1], "the gateway, second");
        assert_eq!(&r[184..186], &[16, 2], "the netmask, 0.0.0.0, third");
    }

    #[test]
    fn an_ipv6_alias_request_is_laid_out_as_in6_aliasreq() {
        let b = in6_aliasreq("em0", "fd00::2".parse().unwrap(), 64).unwrap();
        assert_eq!(&b[16..18], &[28, 28]);
        assert_eq!(&b[24..26], &[0xfd, 0]);
        assert_eq!(b[39], 2);
        assert!(b[44..72].iter().all(|x| *x == 0), "no destination");
        assert_eq!(&b[72..74], &[28, 28]);
        assert_eq!(&b[80..88], &[0xff; 8], "64 bits of mask");
        assert!(b[88..100].iter().all(|x| *x == 0));
        assert!(b[100..120].iter().all(|x| *x == 0), "flags, expire and preferred 0");
        assert_eq!(&b[120..128], &[0xff; 8], "valid and preferred lifetimes infinite");
        assert!(b[128..].iter().all(|x| *x == 0));
        let r = in6_ifreq_addr("em0", "fd00::2".parse().unwrap()).unwrap();
        assert_eq!((&r[16..18], r[39]), (&[28u8, 28][..], 2));
    }
}

/// The routing socket's `RTM_GET` for a default route (what `route -n get
/// default` asks; sbin/route/route.c `rtmsg`): a `struct rt_msghdr` (152
/// bytes on amd64: msglen u16 at 0, version u8 at 2 (`RTM_VERSION` 5), type
/// u8 at 3, index u16 at 4, flags i32 at 8, addrs i32 at 12, pid at 16,
/// seq at 20, errno at 24), then the destination and netmask sockaddrs,
/// both the family's any-address. The reply's `rtm_index` is the route's
/// interface.
pub mod route {
    pub const RT_MSGHDR_LEN: usize = 152;
    const RTM_VERSION: u8 = 5;
    pub const RTM_GET: u8 = 4;
    const RTA_DST: i32 = 1;
    const RTA_NETMASK: i32 = 4;
    const RTF_UP: i32 = 1;
    const RTF_GATEWAY: i32 = 2;
    const RTF_STATIC: i32 = 0x800;

    /// The space a sockaddr takes in a routing message: its length rounded
    /// up to a `long` (sys/net/route.h `SA_SIZE`): 16 for IPv4, 32 for IPv6.
    fn sa_space(v6: bool) -> usize {
        let len = if v6 { super::SOCKADDR_IN6_LEN } else { super::SOCKADDR_IN_LEN };
        (len + 7) & !7
    }

    /// The request for the default route of IPv4 (`v6` false) or IPv6.
    pub fn get_default(v6: bool, seq: i32) -> Vec<u8> {
        let (sa, sa_len) = (sa_space(v6), if v6 { super::SOCKADDR_IN6_LEN } else { super::SOCKADDR_IN_LEN });
        let len = RT_MSGHDR_LEN + 2 * sa;
        let mut b = vec![0u8; len];
        b[0..2].copy_from_slice(&(len as u16).to_le_bytes());
        b[2] = RTM_VERSION;
        b[3] = RTM_GET;
        b[8..12].copy_from_slice(&(RTF_UP | RTF_GATEWAY | RTF_STATIC).to_le_bytes());
        b[12..16].copy_from_slice(&(RTA_DST | RTA_NETMASK).to_le_bytes());
        b[20..24].copy_from_slice(&seq.to_le_bytes());
        for at in [RT_MSGHDR_LEN, RT_MSGHDR_LEN + sa] {
            b[at] = sa_len as u8;
            b[at + 1] = if v6 { super::AF_INET6 } else { super::AF_INET };
        }
        b
    }

    const RTM_ADD: u8 = 1;
    const RTA_GATEWAY: i32 = 2;

    /// `route add default GATEWAY` (sbin/route/route.c): dst and netmask
    /// the family's any-address, the gateway, flags up, gateway, static. A
    /// link-local IPv6 gateway needs its interface's index as scope.
    pub fn add_default(gateway: std::net::IpAddr, scope: u32, seq: i32) -> Vec<u8> {
        let v6 = gateway.is_ipv6();
        let (sa, sa_len) = (sa_space(v6), if v6 { super::SOCKADDR_IN6_LEN } else { super::SOCKADDR_IN_LEN });
        let len = RT_MSGHDR_LEN + 3 * sa;
        let mut b = vec![0u8; len];
        b[0..2].copy_from_slice(&(len as u16).to_le_bytes());
        b[2] = RTM_VERSION;
        b[3] = RTM_ADD;
        b[8..12].copy_from_slice(&(RTF_UP | RTF_GATEWAY | RTF_STATIC).to_le_bytes());
        b[12..16].copy_from_slice(&(RTA_DST | RTA_GATEWAY | RTA_NETMASK).to_le_bytes());
        b[20..24].copy_from_slice(&seq.to_le_bytes());
        // In the order of their RTA_ bits: dst, gateway, netmask.
        let (dst, gw, mask) = (RT_MSGHDR_LEN, RT_MSGHDR_LEN + sa, RT_MSGHDR_LEN + 2 * sa);
        for at in [dst, gw, mask] {
            b[at] = sa_len as u8;
            b[at + 1] = if v6 { super::AF_INET6 } else { super::AF_INET };
        }
        match gateway {
            std::net::IpAddr::V4(g) => b[gw + 4..gw + 8].copy_from_slice(&g.octets()),
            std::net::IpAddr::V6(g) => {
                b[gw + 8..gw + 24].copy_from_slice(&g.octets());
                b[gw + 24..gw + 28].copy_from_slice(&scope.to_le_bytes());
            }
        }
        b
    }

    /// What a message read from the routing socket says about our request
    /// (`seq`, from process `pid`): `None` when it is another message (the
    /// socket sees every routing message of the host), else the interface
    /// index or the errno the kernel answered.
    pub fn reply(b: &[u8], pid: i32, seq: i32) -> Option<Result<u16, i32>> {
        if b.len() < RT_MSGHDR_LEN || b[2] != RTM_VERSION || b[3] != RTM_GET {
            return None;
        }
        let int = |at: usize| i32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        if int(16) != pid || int(20) != seq {
            return None;
        }
        Some(match int(24) {
            0 => Ok(u16::from_le_bytes([b[4], b[5]])),
            e => Err(e),
        })
    }
}

/// VNET: the `struct ifreq` requests that make and move interfaces, as
/// ifconfig(8) makes them (sbin/ifconfig/ifconfig.c `clone_create`,
/// `setifname`, `setifflags`, `setifvnet`, af_link.c `link_getaddr` for
/// `ether`; ifbridge.c `setbridge_add`). 13.5's numbers.
pub mod vnet {
    use super::{IFNAMSIZ, IFREQ_LEN, put_name};

    /// `_IOWR('i', 124, struct ifreq)`: create a cloned interface; the
    /// kernel writes the name it made into `ifr_name` ("epair" -> "epair3a").
    pub const SIOCIFCREATE2: u64 = 0xc020_697c;
    /// `_IOW('i', 121, struct ifreq)`.
    pub const SIOCIFDESTROY: u64 = 0x8020_6979;
    /// `_IOW('i', 40, struct ifreq)`: `ifr_data` points at the new name.
    pub const SIOCSIFNAME: u64 = 0x8020_6928;
    /// `_IOW('i', 60, struct ifreq)`: `ifr_addr` = {len 6, AF_LINK, MAC}.
    pub const SIOCSIFLLADDR: u64 = 0x8020_693c;
    /// `_IOWR('i', 17, struct ifreq)`.
    pub const SIOCGIFFLAGS: u64 = 0xc020_6911;
    /// `_IOW('i', 16, struct ifreq)`: `ifr_flags` (low 16 bits) at 16,
    /// `ifr_flagshigh` at 18.
    pub const SIOCSIFFLAGS: u64 = 0x8020_6910;
    /// `_IOWR('i', 90, struct ifreq)`: move to the vnet of jail `ifr_jid`
    /// (an int at 16).
    pub const SIOCSIFVNET: u64 = 0xc020_695a;
    /// `_IOW('i', 123, struct ifdrv)`: a driver request (the bridge's
    /// `BRDGADD`, 0), 40 bytes: name, cmd (u64 at 16), len (at 24), data
    /// pointer (at 32).
    pub const SIOCSDRVSPEC: u64 = 0x8028_697b;
    pub const BRDGADD: u64 = 0;
    pub const IFDRV_LEN: usize = 40;
    /// `struct ifbreq` (net/if_bridgevar.h): the member's name first.
    pub const IFBREQ_LEN: usize = 80;
    /// `_IOWR('i', 51, struct ifreq)` / `_IOW('i', 52, struct ifreq)`:
    /// `ifr_mtu`, an int at 16.
    pub const SIOCGIFMTU: u64 = 0xc020_6933;
    pub const SIOCSIFMTU: u64 = 0x8020_6934;
    pub const IFF_UP: i32 = 1;
    const AF_LINK: u8 = 18;
    const ETHER_ADDR_LEN: u8 = 6;

    /// A `struct ifreq` with only the name.
    pub fn named(name: &str) -> Result<[u8; IFREQ_LEN], String> {
        let mut b = [0u8; IFREQ_LEN];
        put_name(&mut b[..IFNAMSIZ], name)?;
        Ok(b)
    }

    /// The name in a `struct ifreq` the kernel filled.
    pub fn name_of(b: &[u8; IFREQ_LEN]) -> String {
        let end = b[..IFNAMSIZ].iter().position(|c| *c == 0).unwrap_or(IFNAMSIZ);
        String::from_utf8_lossy(&b[..end]).into_owned()
    }

    /// The flags of a `SIOCGIFFLAGS` answer.
    pub fn flags_of(b: &[u8; IFREQ_LEN]) -> i32 {
        let low = i32::from(u16::from_le_bytes([b[16], b[17]]));
        let high = i32::from(u16::from_le_bytes([b[18], b[19]]));
        low | (high << 16)
    }

    pub fn with_flags(name: &str, flags: i32) -> Result<[u8; IFREQ_LEN], String> {
        let mut b = named(name)?;
        b[16..18].copy_from_slice(&((flags & 0xffff) as u16).to_le_bytes());
        b[18..20].copy_from_slice(&(((flags >> 16) & 0xffff) as u16).to_le_bytes());
        Ok(b)
    }

    pub fn with_lladdr(name: &str, mac: [u8; 6]) -> Result<[u8; IFREQ_LEN], String> {
        let mut b = named(name)?;
        b[16] = ETHER_ADDR_LEN;
        b[17] = AF_LINK;
        b[18..24].copy_from_slice(&mac);
        Ok(b)
    }

    /// `ifr_mtu`, `ifr_jid` and the like: an int at 16.
    pub fn int_of(b: &[u8; IFREQ_LEN]) -> i32 {
        i32::from_le_bytes([b[16], b[17], b[18], b[19]])
    }

    pub fn with_int(name: &str, v: i32) -> Result<[u8; IFREQ_LEN], String> {
        let mut b = named(name)?;
        b[16..20].copy_from_slice(&v.to_le_bytes());
        Ok(b)
    }

    pub fn with_jid(name: &str, jid: i32) -> Result<[u8; IFREQ_LEN], String> {
        with_int(name, jid)
    }

    /// A `struct ifbreq` naming the member.
    pub fn ifbreq(member: &str) -> Result<[u8; IFBREQ_LEN], String> {
        let mut b = [0u8; IFBREQ_LEN];
        put_name(&mut b[..IFNAMSIZ], member)?;
        Ok(b)
    }

    /// A `struct ifdrv` for `bridge`, command `cmd`, with `len` bytes at
    /// `data` (the caller keeps them alive for the call).
    pub fn ifdrv(bridge: &str, cmd: u64, len: usize, data: u64) -> Result<[u8; IFDRV_LEN], String> {
        let mut b = [0u8; IFDRV_LEN];
        put_name(&mut b[..IFNAMSIZ], bridge)?;
        b[16..24].copy_from_slice(&cmd.to_le_bytes());
        b[24..32].copy_from_slice(&(len as u64).to_le_bytes());
        b[32..40].copy_from_slice(&data.to_le_bytes());
        Ok(b)
    }
}
