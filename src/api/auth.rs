//! Credentials as the transports carry them, and the per-connection
//! session of a WebSocket.
//!
//! REST: `Authorization: Basic base64(user:password)` (checked with PAM on
//! every request, as the original did) or `Authorization: Bearer <token or
//! API key>`. WebSocket: `rpc/auth` or `rpc/auth_token` once; the token is
//! kept with the connection and checked (and renewed) on every request.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot, watch};
use warp::filters::ws::Message;

use super::events::{Subscriptions, Topic};
use crate::auth::client_keys::Challenge;

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

/// What a WebSocket connection keeps between its requests besides the
/// login: its event subscriptions, the `rpc/auth_ssl` test string it was
/// given, where to ask for an event to be pushed at once, and its writer
/// for messages a request pushes before its reply (streamed output).
pub struct WsSocket {
    pub subscriptions: Subscriptions,
    pub challenge: Challenge,
    /// Where its consoles' input frames go.
    pub consoles: super::console::Consoles,
    pushes: mpsc::Sender<Topic>,
    /// Weak: the session's end, not a request still pushing, closes it.
    writer: mpsc::WeakSender<Message>,
    /// True once the session stops reading (its client went, or shutdown).
    closed: watch::Receiver<bool>,
}

impl WsSocket {
    pub fn new(pushes: mpsc::Sender<Topic>, writer: mpsc::WeakSender<Message>, closed: watch::Receiver<bool>) -> Self {
        WsSocket {
            subscriptions: Subscriptions::default(),
            challenge: Challenge::default(),
            consoles: Default::default(),
            pushes,
            writer,
            closed,
        }
    }

    /// Sends `message` to the client, waiting for the writer (which gives
    /// up on a client that reads nothing for `ws::WRITE_TIMEOUT`); false
    /// when the socket is gone.
    pub async fn push(&self, message: &serde_json::Value) -> bool {
        match self.writer.upgrade() {
            Some(w) => w.send(Message::text(message.to_string())).await.is_ok(),
            None => false,
        }
    }

    /// Resolves once the session stops reading.
    pub async fn closed(&self) {
        let mut closed = self.closed.clone();
        let _ = closed.wait_for(|c| *c).await;
    }

    /// Asks for the latest `topic` event to be pushed now (dropped when
    /// pushes are already waiting: they will carry the latest anyway).
    pub fn push_now(&self, topic: Topic) {
        let _ = self.pushes.try_send(topic);
    }
}

/// One WebSocket request's view of its socket's login.
///
/// A socket's requests run concurrently, but they see the login in the
/// order the client sent them: each request is handed the token the
/// requests before it left ([`WsTurn::token`]) and passes on what it
/// leaves to the next one. A plain request passes the token on as soon as
/// it has been identified (it does not hold up the next one while its
/// action runs); `rpc/auth` and friends set a new one ([`WsTurn::set`]) and
/// pass it on only once their reply is queued (when the turn is dropped),
/// so a request sent right behind a login, without waiting, is answered
/// after it and as logged in (sysadm's own tools sent them so).
pub struct WsTurn {
    /// The socket this request came on.
    pub socket: Arc<WsSocket>,
    before: Option<String>,
    after: Mutex<Option<Option<String>>>,
    next: Mutex<Option<oneshot::Sender<Option<String>>>>,
    /// The socket's latest settled token (the auth deadline reads it).
    latest: Arc<Mutex<Option<String>>>,
    /// A console's input, when this request opens one (see `console`).
    console: Mutex<Option<crate::runtime::console::Inlet>>,
}

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl WsTurn {
    /// A turn that sees `before` and hands its token to `next`.
    pub fn new(
        socket: Arc<WsSocket>,
        before: Option<String>,
        next: oneshot::Sender<Option<String>>,
        latest: Arc<Mutex<Option<String>>>,
    ) -> Self {
        WsTurn {
            socket,
            before,
            after: Mutex::new(None),
            next: Mutex::new(Some(next)),
            latest,
            console: Mutex::new(None),
        }
    }

    /// This request opens a console whose input is `inlet`.
    pub fn with_console(self, inlet: Option<crate::runtime::console::Inlet>) -> Self {
        *locked(&self.console) = inlet;
        self
    }

    /// The input of the console this request opens (once).
    pub fn take_console(&self) -> Option<crate::runtime::console::Inlet> {
        locked(&self.console).take()
    }

    /// The token the requests before this one left.
    pub fn token(&self) -> Option<String> {
        self.before.clone()
    }

    /// What this request leaves to the next ones (handed over on drop).
    pub fn set(&self, token: Option<String>) {
        *locked(&self.after) = Some(token);
    }

    /// Hands the token over now: the next request may go on.
    pub fn pass(&self) {
        let Some(next) = locked(&self.next).take() else { return };
        let token = locked(&self.after).clone().unwrap_or_else(|| self.before.clone());
        if token.is_none() {
            // Logged out: no more events either.
            self.socket.subscriptions.clear();
        }
        locked(&self.latest).clone_from(&token);
        let _ = next.send(token);
    }
}

impl Drop for WsTurn {
    fn drop(&mut self) {
        self.pass();
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

#[cfg(test)]
mod turn_tests {
    use super::*;

    #[test]
    fn a_turn_passes_its_token_on_once() {
        let latest = Arc::new(Mutex::new(None));
        let socket =
            Arc::new(WsSocket::new(mpsc::channel(1).0, mpsc::channel(1).0.downgrade(), watch::channel(false).1));
        let (tx, mut rx) = oneshot::channel();
        let turn = WsTurn::new(socket.clone(), Some("old".into()), tx, latest.clone());
        turn.set(None);
        assert!(rx.try_recv().is_err(), "nothing passed before pass() or drop");
        drop(turn);
        assert_eq!(rx.try_recv().unwrap(), None, "the cleared token is what the next request sees");
        assert_eq!(*latest.lock().unwrap(), None);
        let (tx, mut rx) = oneshot::channel();
        let turn = WsTurn::new(socket, Some("t".into()), tx, latest.clone());
        turn.pass();
        turn.set(Some("ignored".into()));
        drop(turn);
        assert_eq!(rx.try_recv().unwrap().as_deref(), Some("t"), "a plain request passes on what it saw");
    }
}
