//! The gate every request passes before any action runs.
//!
//! `rpc/identify` needs no credentials; everything else must be allowed by
//! [`Gate::check`] for the access it needs (read or write). Until password
//! and token authentication exist, the gate trusts exactly one kind of
//! caller: a peer on the loopback interface (root on this host, in effect).
//! Any other peer gets 401, and the server refuses to listen anywhere but
//! loopback (see `config`), so no remote caller can reach an action.

use std::net::IpAddr;

use super::envelope::{ProtocolError, Status};

/// What a request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

/// Who is asking, as far as the transport knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    pub addr: IpAddr,
}

impl Peer {
    pub fn is_loopback(&self) -> bool {
        match self.addr {
            IpAddr::V4(a) => a.is_loopback(),
            IpAddr::V6(a) => a.is_loopback() || a.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
        }
    }
}

/// The authorisation gate.
#[derive(Debug, Clone, Default)]
pub struct Gate {}

impl Gate {
    pub fn new() -> Self {
        Gate {}
    }

    /// Allows or refuses `access` for `peer`.
    pub fn check(&self, peer: &Peer, access: Access) -> Result<(), ProtocolError> {
        let _ = access;
        if peer.is_loopback() {
            Ok(())
        } else {
            Err(ProtocolError::new(
                Status::Unauthorized,
                "this iocaged accepts requests from loopback only (no credentials are configured)",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_peers_pass() {
        let g = Gate::new();
        for a in ["127.0.0.1", "127.5.0.1", "::1", "::ffff:127.0.0.1"] {
            assert_eq!(g.check(&Peer { addr: a.parse().unwrap() }, Access::Write), Ok(()), "{a}");
        }
        for a in ["10.0.0.1", "192.168.1.1", "::ffff:10.0.0.1", "fe80::1"] {
            let err = g.check(&Peer { addr: a.parse().unwrap() }, Access::Read).unwrap_err();
            assert_eq!(err.status, Status::Unauthorized, "{a}");
        }
    }
}
