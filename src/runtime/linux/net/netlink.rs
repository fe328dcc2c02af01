//! The rtnetlink socket a jail's network is made through, in the daemon's
//! network namespace or (opened by a thread that enters it) in a jail's:
//! a request encoded and sent, its replies read and decoded until the
//! kernel's acknowledgement or the end of a dump.

use std::io;
use std::os::fd::AsFd;
use std::time::Duration;

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};
use nix::sched::CloneFlags;

/// How long one netlink request may take before it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest reply datagram read.
const RECV_BUFFER: usize = 64 * 1024;
/// `struct nlmsghdr`.
const NLMSG_HEADER_LEN: usize = 16;
/// How often a dump the kernel marks interrupted is asked for again.
const DUMP_TRIES: u32 = 3;

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
    pub(super) fn request(&mut self, msg: RouteNetlinkMessage, flags: u16) -> io::Result<()> {
        let seq = self.send(msg, NLM_F_ACK | flags)?;
        self.replies(seq, false).map(drop)
    }

    pub(super) fn dump(&mut self, msg: RouteNetlinkMessage) -> io::Result<Vec<RouteNetlinkMessage>> {
        let mut tries = 0;
        loop {
            let seq = self.send(msg.clone(), NLM_F_DUMP)?;
            match self.replies(seq, true) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted && tries < DUMP_TRIES => tries += 1,
                r => return r,
            }
        }
    }
}
