//! The API edge: transports (REST and WebSocket over one HTTP server, TLS
//! when configured), the envelope, credentials, and dispatch.
//!
//! A request's path: [`server`] accepts a connection (and its TLS) and tags
//! it with the peer -> `rest` or `ws` turn bytes into a [`Call`] and
//! [`auth::Credentials`] -> [`Api::handle`] refuses locked-out addresses,
//! authenticates (`crate::auth`), checks the role, dispatches by
//! `namespace/name`, logs one line -> the transport writes the reply.
//!
//! [`Api`]'s calls are spread by job: logging in (`login`), client keys
//! (`settings`), output pushed as it comes (`streamed`), console frames
//! (`console`); dispatch and the role check are here.

pub mod auth;
pub(crate) mod console;
pub mod envelope;
pub mod events;
pub(crate) mod metrics;
pub(crate) mod rest;
pub mod server;
pub mod tls;
pub(crate) mod ws;

mod login;
mod settings;
mod streamed;

use std::sync::Arc;
use std::time::Instant;

use futures_util::future::BoxFuture;
use serde_json::{Value, json};

use crate::auth::{Auth, AuthError, Identity, Role};
use crate::iocage::{ActionError, Body, Iocage, Request, ServiceMetrics, request};
use auth::{Credentials, Peer, WsTurn};
pub use envelope::{Call, ProtocolError, Reply, Status};
use login::refused;

/// Which transport a call arrived on (for the log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Rest,
    WebSocket,
}

/// Every imported pool's name, health and capacity (percent used).
pub type PoolStates = Vec<(String, String, u64)>;

/// What the API asks of the iocage layer: run an action, and the pools'
/// state for `system-state`. [`Iocage`] in the daemon; host tests put a
/// fake here to test the API layer (auth, roles, envelopes, transports)
/// without ZFS (`tests/api_host.rs`).
pub trait Actions: Send + Sync + 'static {
    /// Runs a request; `Ok` is the body that goes under the action's name.
    fn run(&self, req: Request) -> BoxFuture<'_, Result<Body, ActionError>>;
    /// Every imported pool's name, health and capacity (percent used).
    fn pool_states(&self) -> BoxFuture<'_, Result<PoolStates, ActionError>>;
    /// What the service reports to `GET /metrics` (see `metrics`).
    fn metrics(&self) -> BoxFuture<'_, ServiceMetrics>;
}

impl Actions for Iocage {
    fn run(&self, req: Request) -> BoxFuture<'_, Result<Body, ActionError>> {
        Box::pin(Iocage::run(self, req))
    }

    fn pool_states(&self) -> BoxFuture<'_, Result<PoolStates, ActionError>> {
        Box::pin(Iocage::pool_states(self))
    }

    fn metrics(&self) -> BoxFuture<'_, ServiceMetrics> {
        Box::pin(Iocage::metrics(self))
    }
}

/// Scrapes answered at once; more are refused with 503 (each reads every
/// running jail's accounts).
const MAX_SCRAPES: usize = 2;

/// One call answered, as its log line and the metrics count it.
struct Answered<'a> {
    transport: Transport,
    peer: Peer,
    user: &'a str,
    /// `namespace/name` as the client sent it (the log), and the bounded
    /// labels it is counted under (metrics).
    call: &'a str,
    counted_as: (&'static str, &'static str),
    /// The `action` and `jail` arguments as sent (the log).
    action: &'a str,
    jail: &'a str,
    outcome: &'a str,
    error: &'a str,
    started: Instant,
}

/// Everything a request handler needs; shared by all connections.
pub struct Api {
    iocage: Arc<dyn Actions>,
    auth: Arc<Auth>,
    hostname: String,
    events: Arc<events::Hub>,
    /// Calls answered, for `GET /metrics`.
    requests: metrics::Requests,
    scrapes: tokio::sync::Semaphore,
}

fn str_arg<'a>(call: &'a Call, key: &str) -> Option<&'a str> {
    call.args.get(key).and_then(Value::as_str)
}

impl Api {
    /// The API over `iocage`, pushing the events `events` gets (the same hub
    /// the service reports long actions' progress to: `Iocage::with_events`).
    pub fn new(iocage: impl Actions, auth: Arc<Auth>, events: Arc<events::Hub>) -> Self {
        let hostname = nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default();
        Api {
            iocage: Arc::new(iocage),
            auth,
            hostname,
            events,
            requests: metrics::Requests::default(),
            scrapes: tokio::sync::Semaphore::new(MAX_SCRAPES),
        }
    }

    /// Where jail events go to reach the subscribed sockets.
    pub fn events(&self) -> Arc<events::Hub> {
        self.events.clone()
    }

    /// Who may type into a socket's consoles now: its login (`token`),
    /// checked and renewed as a request's would be, with the write role.
    pub fn console_user(&self, peer: Peer, token: Option<String>) -> Result<String, ProtocolError> {
        // A session that lapsed is not a failed login: checked first
        // without counting against the address.
        let Some(token) = token.filter(|t| self.auth.still_valid(t)) else {
            return Err(ProtocolError::new(Status::Unauthorized, "the socket's login has ended (log in again)"));
        };
        let (who, _) = self.auth.bearer(peer.addr, &token).map_err(refused)?;
        if who.role != Role::ReadWrite {
            return Err(ProtocolError::new(Status::Forbidden, format!("{} may only read", who.user)));
        }
        Ok(who.user)
    }

    /// Whether a socket's token still stands (for pushing it events).
    pub fn session_alive(&self, token: &str) -> bool {
        self.auth.still_valid(token)
    }

    /// The `system-state` event's args, as of now.
    pub async fn system_state(&self) -> Value {
        let pools = self.iocage.pool_states().await.unwrap_or_else(|e| {
            tracing::debug!("system-state without pools: {e}");
            Vec::new()
        });
        let hostname = nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default();
        events::system_state(&hostname, &pools)
    }

    /// Counts `a` for `GET /metrics` and logs its one line.
    fn answered(&self, a: Answered<'_>) {
        let took = a.started.elapsed();
        self.requests.record(a.counted_as.0, a.counted_as.1, a.outcome, took);
        tracing::info!(
            transport = ?a.transport,
            peer = %a.peer.addr,
            via = %a.peer.proxy.map_or_else(|| "-".to_string(), |p| p.to_string()),
            user = %a.user,
            call = %a.call,
            action = %a.action,
            jail = %a.jail,
            outcome = %a.outcome,
            error = ?a.error,
            ms = format_args!("{:.3}", took.as_secs_f64() * 1000.0),
            "request"
        );
    }

    /// Handles one call and logs one line for it. `Ok` is the reply's
    /// `args`; in-band action errors are inside it.
    pub async fn handle(
        &self,
        transport: Transport,
        peer: Peer,
        creds: &Credentials,
        session: Option<&WsTurn>,
        call: &Call,
    ) -> Result<Reply, ProtocolError> {
        let started = Instant::now();
        let (result, user) = self.dispatch(peer, creds, session, call).await;
        // An action's in-band error goes into the line too (bounded): the
        // operator reading the log sees why, not only that, it failed.
        let in_band = result.as_ref().ok().and_then(Reply::action_error);
        let (outcome, error) = match (&result, in_band) {
            (Ok(_), Some(e)) => ("error".to_string(), e.chars().take(300).collect::<String>()),
            (Ok(_), None) => ("ok".to_string(), "-".to_string()),
            (Err(e), _) => (e.status.code().to_string(), "-".to_string()),
        };
        let action = match (call.namespace.as_str(), call.name.as_str()) {
            ("sysadm", "iocage") => request::action_of(&call.args).ok(),
            _ => None,
        };
        let call_name = format!("{}/{}", call.namespace, call.name);
        self.answered(Answered {
            transport,
            peer,
            user: user.as_deref().unwrap_or("-"),
            call: &call_name,
            counted_as: (metrics::call_label(&call.namespace, &call.name), metrics::action_label(action)),
            action: str_arg(call, "action").unwrap_or("-"),
            jail: str_arg(call, "jail").unwrap_or("-"),
            outcome: &outcome,
            error: &error,
            started,
        });
        result
    }

    /// `GET /metrics`: the exposition (see `metrics`), for any caller
    /// with a read key or better; `connections` is the server's count of
    /// open connections. Counted and logged like a call.
    pub async fn metrics(&self, peer: Peer, creds: &Credentials, connections: usize) -> Result<String, ProtocolError> {
        let started = Instant::now();
        let result = self.scrape(peer, creds, connections).await;
        let outcome = match &result {
            Ok(_) => "ok".to_string(),
            Err(e) => e.status.code().to_string(),
        };
        self.answered(Answered {
            transport: Transport::Rest,
            peer,
            user: result.as_ref().map_or("-", |(_, user)| user.as_str()),
            call: "metrics",
            counted_as: ("metrics", "-"),
            action: "-",
            jail: "-",
            outcome: &outcome,
            error: "-",
            started,
        });
        result.map(|(text, _)| text)
    }

    async fn scrape(
        &self,
        peer: Peer,
        creds: &Credentials,
        connections: usize,
    ) -> Result<(String, String), ProtocolError> {
        if self.auth.is_locked_out(peer.addr) {
            return Err(refused(AuthError::LockedOut));
        }
        let who = self.identify(peer, creds, None).await?;
        let _scrape = self.scrapes.try_acquire().map_err(|_| {
            ProtocolError::new(Status::ServiceUnavailable, format!("{MAX_SCRAPES} scrapes are running; try again"))
        })?;
        let service = self.iocage.metrics().await;
        let gauges = metrics::Gauges {
            connections,
            logins_in_flight: self.auth.logins_in_flight(),
            locked_out: self.auth.addresses_locked_out(),
        };
        Ok((metrics::render(&self.requests, gauges, &service), who.user))
    }

    async fn dispatch(
        &self,
        peer: Peer,
        creds: &Credentials,
        session: Option<&WsTurn>,
        call: &Call,
    ) -> (Result<Reply, ProtocolError>, Option<String>) {
        let (ns, name) = (call.namespace.as_str(), call.name.as_str());
        if (ns, name) == ("rpc", "identify") {
            return (Ok(json!({"type": "server", "hostname": self.hostname}).into()), None);
        }
        if self.auth.is_locked_out(peer.addr) {
            return (Err(refused(AuthError::LockedOut)), None);
        }
        match (ns, name, session) {
            ("rpc", "auth", _) => {
                let (Some(user), Some(password)) = (str_arg(call, "username"), str_arg(call, "password")) else {
                    return (Err(ProtocolError::bad_request("rpc/auth needs \"username\" and \"password\"")), None);
                };
                // Any login attempt ends the socket's login first (as the
                // original did); a good one starts the new one.
                let result = self.auth.login(peer.addr, user, password).await;
                let token = result.as_ref().ok().map(|(_, token, _)| token.clone());
                if let Some(s) = session {
                    s.set(token);
                }
                match result {
                    Ok((who, token, secs)) => (Ok(json!([token, secs]).into()), Some(who.user)),
                    Err(e) => (Err(refused(e)), Some(user.to_string())),
                }
            }
            ("rpc", "auth_token", _) => {
                let Some(token) = str_arg(call, "token") else {
                    return (Err(ProtocolError::bad_request("rpc/auth_token needs \"token\"")), None);
                };
                let result = self.auth.bearer(peer.addr, token);
                if let Some(s) = session {
                    s.set(result.is_ok().then(|| token.to_string()));
                }
                match result {
                    Ok((who, secs)) => (Ok(json!([token, secs.unwrap_or(0)]).into()), Some(who.user)),
                    Err(e) => (Err(refused(e)), None),
                }
            }
            ("rpc", "auth_ssl", Some(turn)) => {
                let (result, user) = self.auth_ssl(peer, turn, call).await;
                (result.map(Reply::Value), user)
            }
            ("rpc", "auth_ssl", None) => (
                Err(ProtocolError::bad_request("rpc/auth_ssl is a WebSocket login; over REST use Basic or Bearer")),
                None,
            ),
            ("rpc", "auth_clear", Some(turn)) => {
                // Needs no valid login: it ends whatever the socket has.
                if let Some(token) = turn.token() {
                    self.auth.logout(&token);
                }
                turn.set(None);
                (Ok(json!({}).into()), None)
            }
            _ => {
                let who = self.identify(peer, creds, session).await;
                // The next request on the socket need not wait for this
                // one's action: it was identified with the login it saw.
                if let Some(s) = session {
                    s.pass();
                }
                let who = match who {
                    Ok(who) => who,
                    Err(e) => return (Err(e), None),
                };
                let result = self.authorised(&who, session, call).await;
                (result, Some(who.user))
            }
        }
    }

    /// Calls that need an identity.
    async fn authorised(&self, who: &Identity, session: Option<&WsTurn>, call: &Call) -> Result<Reply, ProtocolError> {
        match (call.namespace.as_str(), call.name.as_str()) {
            ("sysadm", "iocage") => self.action(who, session, call).await,
            _ => self.api_call(who, session, call).await.map(Reply::Value),
        }
    }

    /// The calls the API answers itself.
    async fn api_call(&self, who: &Identity, session: Option<&WsTurn>, call: &Call) -> Result<Value, ProtocolError> {
        match (call.namespace.as_str(), call.name.as_str()) {
            ("rpc", "auth_clear") => {
                // Over REST: the credentials presented are the session.
                Ok(json!({}))
            }
            // What this server offers, as `"<namespace>/<name>": access`
            // (sysadm's client shows a page when its keys are here).
            ("rpc", "query") => Ok(json!({ "sysadm/iocage": who.role.as_str(), "rpc/settings": "read/write" })),
            ("rpc", "settings") => self.settings(who, call),
            ("events", "subscribe" | "unsubscribe") => {
                let Some(turn) = session else {
                    return Err(ProtocolError::bad_request("events are pushed over a WebSocket; subscribe there"));
                };
                let topics = events::topics(&call.words, &call.args).map_err(ProtocolError::bad_request)?;
                if call.name == "subscribe" {
                    turn.socket.subscriptions.add(&topics);
                    for t in &topics {
                        turn.socket.push_now(*t);
                    }
                } else {
                    turn.socket.subscriptions.remove(&topics);
                }
                let names: Vec<&str> = topics.iter().map(|t| t.name()).collect();
                let named = if names.len() == 1 { json!(names[0]) } else { json!(names) };
                Ok(json!({ call.name.as_str(): named }))
            }
            // Frames of open consoles never come here (see `console`).
            ("sysadm", "console") => Err(ProtocolError::new(
                Status::NotFound,
                format!(
                    "no console is open under id {} on this socket (the iocage action \"console\" opens one)",
                    call.id
                ),
            )),
            (ns, name) => Err(ProtocolError::new(Status::NotFound, format!("no such call {ns}/{name}"))),
        }
    }

    /// `sysadm/iocage`: the role checked, then the action run.
    async fn action(&self, who: &Identity, session: Option<&WsTurn>, call: &Call) -> Result<Reply, ProtocolError> {
        let action = request::action_of(&call.args).map_err(ProtocolError::bad_request)?;
        if action.is_write() && who.role != Role::ReadWrite {
            return Err(ProtocolError::new(
                Status::Forbidden,
                format!("{} may only read; {} changes things", who.user, action.name()),
            ));
        }
        let body = match (request::parse(action, &call.args), session) {
            (Ok(req), Some(turn)) if req.streams() => self.streamed(who, turn, call, req).await,
            // Streamed over REST: refused by the action, naming why.
            (Ok(req), _) => self.iocage.run(req).await,
            (Err(e), _) => Err(e),
        };
        // Refused for load, not for what it asked: a 503 the
        // client can retry, not an in-band failure of the action.
        if let Err(e) = &body {
            if e.is_overload() {
                return Err(ProtocolError::new(Status::ServiceUnavailable, e.to_string()));
            }
        }
        let body = body.unwrap_or_else(|e| Body::Made(json!({ "error": e.to_string() })));
        Ok(Reply::Action(action.name(), body))
    }
}
