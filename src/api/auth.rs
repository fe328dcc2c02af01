//! Credentials as the transports carry them, and the per-connection
//! session of a WebSocket.
//!
//! REST: `Authorization: Basic base64(user:password)` (checked with PAM on
//! every request, as the original did) or `Authorization: Bearer <token or
//! API key>`. WebSocket: `rpc/auth` or `rpc/auth_token` once; the token is
//! kept with the connection and checked (and renewed) on every request.

use std::net::IpAddr;
use std::sync::Mutex;

use base64::Engine;

/// Who is asking, as far as the transport knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// The client: the TCP peer, or behind a trusted proxy the address its
    /// `X-Forwarded-For` names (the lockout and the log use this).
    pub addr: IpAddr,
    /// The trusted proxy the request came through, if any.
    pub proxy: Option<IpAddr>,
}

/// What a request presents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    None,
    Basic {
        user: String,
        password: String,
    },
    Bearer(String),
    /// A header that is there but unusable; the reason goes in the 401.
    Malformed(&'static str),
}

/// Parses an `Authorization` header.
pub fn parse_authorization(header: Option<&str>) -> Credentials {
    let Some(h) = header else { return Credentials::None };
    let h = h.trim();
    let (scheme, rest) = h.split_once(' ').unwrap_or((h, ""));
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return if rest.is_empty() {
            Credentials::Malformed("empty Bearer token")
        } else {
            Credentials::Bearer(rest.into())
        };
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(rest) else {
            return Credentials::Malformed("Basic credentials are not base64");
        };
        let Ok(text) = String::from_utf8(raw) else { return Credentials::Malformed("Basic credentials are not UTF-8") };
        return match text.split_once(':') {
            Some((u, p)) if !u.is_empty() => Credentials::Basic { user: u.into(), password: p.into() },
            _ => Credentials::Malformed("Basic credentials must be user:password"),
        };
    }
    Credentials::Malformed("use Basic or Bearer authorization")
}

/// A WebSocket connection's session: the token from rpc/auth(_token).
#[derive(Debug, Default)]
pub struct WsSession {
    token: Mutex<Option<String>>,
}

impl WsSession {
    pub fn token(&self) -> Option<String> {
        self.token.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
    pub fn set(&self, token: Option<String>) {
        *self.token.lock().unwrap_or_else(|p| p.into_inner()) = token;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorization_headers() {
        assert_eq!(parse_authorization(None), Credentials::None);
        assert_eq!(parse_authorization(Some("Bearer abc")), Credentials::Bearer("abc".into()));
        assert_eq!(
            parse_authorization(Some("Basic cm9vdDpzM2NyZXQ6eA==")),
            Credentials::Basic { user: "root".into(), password: "s3cret:x".into() }
        );
        for bad in ["", "Bearer", "Bearer   ", "Basic !!!", "Basic Om5vdXNlcg==", "Digest x", "Basic bm9jb2xvbg=="] {
            assert!(matches!(parse_authorization(Some(bad)), Credentials::Malformed(_)), "{bad:?}");
        }
    }
}
