//! The API edge: transports (REST and WebSocket over one HTTP server),
//! the envelope, the authorisation gate, and dispatch to the services.
//!
//! A request's path: [`server`] accepts a connection and tags it with the
//! peer -> [`rest`] or [`ws`] turn bytes into a [`Call`] -> [`Api::handle`]
//! checks the gate, dispatches by `namespace/name`, logs one line -> the
//! transport writes the reply.

pub mod auth;
pub mod envelope;
pub mod rest;
pub mod server;
pub mod ws;

use std::time::Instant;

use serde_json::{Value, json};

use crate::iocage::{Iocage, request};
use auth::{Access, Gate, Peer};
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
    gate: Gate,
    hostname: String,
}

impl Api {
    pub fn new(iocage: Iocage, gate: Gate) -> Self {
        let hostname = nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default();
        Api { iocage, gate, hostname }
    }

    /// Handles one call and logs one line for it. `Ok` is the reply's
    /// `args`; in-band action errors are inside it.
    pub async fn handle(&self, transport: Transport, peer: Peer, call: &Call) -> Result<Value, ProtocolError> {
        let started = Instant::now();
        let result = self.dispatch(peer, call).await;
        let outcome = match &result {
            Ok(v) if v.as_object().and_then(|o| o.values().next()).is_some_and(|b| b.get("error").is_some()) => {
                "error".to_string()
            }
            Ok(_) => "ok".to_string(),
            Err(e) => e.status.code().to_string(),
        };
        let arg = |k: &str| call.args.get(k).and_then(Value::as_str).unwrap_or("-").to_string();
        tracing::info!(
            transport = ?transport,
            peer = %peer.addr,
            call = %format_args!("{}/{}", call.namespace, call.name),
            action = %arg("action"),
            jail = %arg("jail"),
            outcome = %outcome,
            ms = format_args!("{:.3}", started.elapsed().as_secs_f64() * 1000.0),
            "request"
        );
        result
    }

    async fn dispatch(&self, peer: Peer, call: &Call) -> Result<Value, ProtocolError> {
        if (call.namespace.as_str(), call.name.as_str()) == ("rpc", "identify") {
            return Ok(json!({"type": "server", "hostname": self.hostname}));
        }
        // Credentials first: an unauthenticated caller learns nothing else.
        self.gate.check(&peer, Access::Read)?;
        match (call.namespace.as_str(), call.name.as_str()) {
            ("sysadm", "iocage") => {
                let action = request::action_of(&call.args).map_err(ProtocolError::bad_request)?;
                if action.is_write() {
                    self.gate.check(&peer, Access::Write)?;
                }
                let body = match request::parse(action, &call.args) {
                    Ok(req) => self.iocage.run(req).await,
                    Err(e) => Err(e),
                };
                let body = body.unwrap_or_else(|e| json!({ "error": e.to_string() }));
                Ok(json!({ action.name(): body }))
            }
            (ns, name) => Err(ProtocolError::new(Status::NotFound, format!("no such call {ns}/{name}"))),
        }
    }
}
