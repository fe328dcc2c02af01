//! The API edge: transports (REST and WebSocket over one HTTP server, TLS
//! when configured), the envelope, credentials, and dispatch.
//!
//! A request's path: [`server`] accepts a connection (and its TLS) and tags
//! it with the peer -> [`rest`] or [`ws`] turn bytes into a [`Call`] and
//! [`auth::Credentials`] -> [`Api::handle`] refuses locked-out addresses,
//! authenticates (`crate::auth`), checks the role, dispatches by
//! `namespace/name`, logs one line -> the transport writes the reply.

pub mod auth;
pub mod envelope;
pub mod rest;
pub mod server;
pub mod tls;
pub mod ws;

use std::sync::Arc;
use std::time::Instant;

use serde_json::{Value, json};

use crate::auth::{Auth, AuthError, Identity, Role};
use crate::iocage::{Iocage, request};
use auth::{Credentials, Peer, WsSession};
pub use envelope::{Call, ProtocolError, Status};

/// Which transport a call arrived on (for the log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Rest,
    WebSocket,
}

/// Everything a request handler needs; shared by all connections.
pub struct Api {
    iocage: Iocage,
    auth: Arc<Auth>,
    hostname: String,
}

fn refused(e: AuthError) -> ProtocolError {
    match e {
        AuthError::LockedOut => ProtocolError::new(Status::Forbidden, e.to_string()),
        AuthError::NoRole(_) => ProtocolError::new(Status::Forbidden, e.to_string()),
        AuthError::Invalid => ProtocolError::new(Status::Unauthorized, e.to_string()),
        AuthError::Busy(_) => ProtocolError::new(Status::ServiceUnavailable, e.to_string()),
    }
}

fn str_arg<'a>(call: &'a Call, key: &str) -> Option<&'a str> {
    call.args.get(key).and_then(Value::as_str)
}

impl Api {
    pub fn new(iocage: Iocage, auth: Arc<Auth>) -> Self {
        let hostname = nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default();
        Api { iocage, auth, hostname }
    }

    /// Handles one call and logs one line for it. `Ok` is the reply's
    /// `args`; in-band action errors are inside it.
    pub async fn handle(
        &self,
        transport: Transport,
        peer: Peer,
        creds: &Credentials,
        session: Option<&WsSession>,
        call: &Call,
    ) -> Result<Value, ProtocolError> {
        let started = Instant::now();
        let (result, user) = self.dispatch(peer, creds, session, call).await;
        let outcome = match &result {
            Ok(v) if v.as_object().and_then(|o| o.values().next()).is_some_and(|b| b.get("error").is_some()) => {
                "error".to_string()
            }
            Ok(_) => "ok".to_string(),
            Err(e) => e.status.code().to_string(),
        };
        tracing::info!(
            transport = ?transport,
            peer = %peer.addr,
            via = %peer.proxy.map_or_else(|| "-".to_string(), |p| p.to_string()),
            user = %user.as_deref().unwrap_or("-"),
            call = %format_args!("{}/{}", call.namespace, call.name),
            action = %str_arg(call, "action").unwrap_or("-"),
            jail = %str_arg(call, "jail").unwrap_or("-"),
            outcome = %outcome,
            ms = format_args!("{:.3}", started.elapsed().as_secs_f64() * 1000.0),
            "request"
        );
        result
    }

    /// Who the caller is, from what the request (or its socket) presents.
    async fn identify(
        &self,
        peer: Peer,
        creds: &Credentials,
        session: Option<&WsSession>,
    ) -> Result<Identity, ProtocolError> {
        let creds = match (creds, session.and_then(WsSession::token)) {
            (Credentials::None, Some(token)) => Credentials::Bearer(token),
            (c, _) => c.clone(),
        };
        match creds {
            Credentials::None => Err(ProtocolError::new(
                Status::Unauthorized,
                "authenticate first (rpc/auth, or an Authorization header)",
            )),
            Credentials::Malformed(why) => Err(ProtocolError::new(Status::Unauthorized, why)),
            Credentials::Basic { user, password } => {
                self.auth.password(peer.addr, &user, &password).await.map_err(refused)
            }
            Credentials::Bearer(token) => self.auth.bearer(peer.addr, &token).map(|(who, _)| who).map_err(refused),
        }
    }

    async fn dispatch(
        &self,
        peer: Peer,
        creds: &Credentials,
        session: Option<&WsSession>,
        call: &Call,
    ) -> (Result<Value, ProtocolError>, Option<String>) {
        let (ns, name) = (call.namespace.as_str(), call.name.as_str());
        if (ns, name) == ("rpc", "identify") {
            return (Ok(json!({"type": "server", "hostname": self.hostname})), None);
        }
        if self.auth.is_locked_out(peer.addr) {
            return (Err(refused(AuthError::LockedOut)), None);
        }
        match (ns, name) {
            ("rpc", "auth") => {
                let (Some(user), Some(password)) = (str_arg(call, "username"), str_arg(call, "password")) else {
                    return (Err(ProtocolError::bad_request("rpc/auth needs \"username\" and \"password\"")), None);
                };
                match self.auth.login(peer.addr, user, password).await {
                    Ok((who, token, secs)) => {
                        if let Some(s) = session {
                            s.set(Some(token.clone()));
                        }
                        (Ok(json!([token, secs])), Some(who.user))
                    }
                    Err(e) => (Err(refused(e)), Some(user.to_string())),
                }
            }
            ("rpc", "auth_token") => {
                let Some(token) = str_arg(call, "token") else {
                    return (Err(ProtocolError::bad_request("rpc/auth_token needs \"token\"")), None);
                };
                match self.auth.bearer(peer.addr, token) {
                    Ok((who, secs)) => {
                        if let Some(s) = session {
                            s.set(Some(token.to_string()));
                        }
                        (Ok(json!([token, secs.unwrap_or(0)])), Some(who.user))
                    }
                    Err(e) => (Err(refused(e)), None),
                }
            }
            _ => {
                let who = match self.identify(peer, creds, session).await {
                    Ok(who) => who,
                    Err(e) => return (Err(e), None),
                };
                let result = self.authorised(&who, session, call).await;
                (result, Some(who.user))
            }
        }
    }

    /// Calls that need an identity.
    async fn authorised(
        &self,
        who: &Identity,
        session: Option<&WsSession>,
        call: &Call,
    ) -> Result<Value, ProtocolError> {
        match (call.namespace.as_str(), call.name.as_str()) {
            ("rpc", "auth_clear") => {
                if let Some(token) = session.and_then(WsSession::token) {
                    self.auth.logout(&token);
                }
                if let Some(s) = session {
                    s.set(None);
                }
                Ok(json!({}))
            }
            ("rpc", "query") => Ok(json!({ "sysadm/iocage": who.role.as_str() })),
            ("sysadm", "iocage") => {
                let action = request::action_of(&call.args).map_err(ProtocolError::bad_request)?;
                if action.is_write() && who.role != Role::ReadWrite {
                    return Err(ProtocolError::new(
                        Status::Forbidden,
                        format!("{} may only read; {} changes things", who.user, action.name()),
                    ));
                }
                let body = match request::parse(action, &call.args) {
                    Ok(req) => self.iocage.run(req).await,
                    Err(e) => Err(e),
                };
                // Refused for load, not for what it asked: a 503 the
                // client can retry, not an in-band failure of the action.
                if let Err(e) = &body {
                    if e.is_overload() {
                        return Err(ProtocolError::new(Status::ServiceUnavailable, e.to_string()));
                    }
                }
                let body = body.unwrap_or_else(|e| json!({ "error": e.to_string() }));
                Ok(json!({ action.name(): body }))
            }
            (ns, name) => Err(ProtocolError::new(Status::NotFound, format!("no such call {ns}/{name}"))),
        }
    }
}
