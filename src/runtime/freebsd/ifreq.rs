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
