//! WebSocket: one JSON request per text message; each request runs as its
//! own task, so a slow action never holds up the others on the socket, and
//! replies go out as they finish (clients match them by `id`).
//!
//! A socket idle for [`IDLE_TIMEOUT`] is closed. On shutdown the socket
//! stops reading, lets in-flight requests finish (up to [`DRAIN_TIMEOUT`]),
//! and closes.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use warp::filters::ws::{Message, WebSocket, Ws};
use warp::{Filter, Rejection};

use super::auth::{Credentials, Peer, WsSession};
use super::envelope::{self, ProtocolError};
use super::{Api, Transport};

pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// A socket that has not authenticated this long after connecting is closed.
pub const AUTH_TIMEOUT: Duration = Duration::from_secs(30);
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_MESSAGE: usize = 1 << 20;

/// Upgrades any path to a WebSocket session.
pub fn routes(
    api: Arc<Api>,
    shutdown: watch::Receiver<bool>,
) -> impl Filter<Extract = (impl warp::Reply,), Error = Rejection> + Clone {
    // Only upgrade requests are ours; anything else falls through to REST
    // as "not found" rather than as a missing-header error.
    let upgrade = warp::header::optional::<String>("upgrade")
        .and_then(|u: Option<String>| async move {
            match u {
                Some(u) if u.eq_ignore_ascii_case("websocket") => Ok(()),
                _ => Err(warp::reject::not_found()),
            }
        })
        .untuple_one();
    upgrade.and(warp::ws()).and(warp::ext::get::<Peer>()).map(move |ws: Ws, peer: Peer| {
        let (api, shutdown) = (api.clone(), shutdown.clone());
        ws.max_message_size(MAX_MESSAGE).on_upgrade(move |socket| session(api, peer, socket, shutdown))
    })
}

async fn session(api: Arc<Api>, peer: Peer, socket: WebSocket, mut shutdown: watch::Receiver<bool>) {
    let (mut sink, mut stream) = socket.split();
    let (tx, mut rx) = mpsc::channel::<Message>(64);
    let writer = tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            if sink.send(m).await.is_err() {
                return;
            }
        }
        let _ = sink.close().await;
    });
    let mut inflight = JoinSet::new();
    let session = Arc::new(WsSession::default());
    let auth_deadline = tokio::time::Instant::now() + AUTH_TIMEOUT;
    loop {
        let next = tokio::select! {
            n = tokio::time::timeout(IDLE_TIMEOUT, stream.next()) => n,
            _ = tokio::time::sleep_until(auth_deadline), if session.token().is_none() => {
                // The guard was read when this select began; a login that
                // completed since then counts.
                if session.token().is_some() {
                    continue;
                }
                tracing::info!(peer = %peer.addr, "closing a WebSocket that did not authenticate within {AUTH_TIMEOUT:?}");
                break;
            }
            _ = shutdown.changed() => break,
        };
        let msg = match next {
            Err(_) => {
                tracing::debug!(peer = %peer.addr, "closing idle WebSocket");
                break;
            }
            Ok(None) | Ok(Some(Err(_))) => break,
            Ok(Some(Ok(m))) => m,
        };
        if msg.is_close() {
            break;
        }
        let text = if msg.is_text() {
            msg.to_str().unwrap_or_default().to_string()
        } else if msg.is_binary() {
            let err = ProtocolError::bad_request("send requests as text messages");
            let _ = tx.send(Message::text(envelope::ws_error(&serde_json::Value::Null, &err).to_string())).await;
            continue;
        } else {
            continue; // ping/pong
        };
        let (api, tx, session) = (api.clone(), tx.clone(), session.clone());
        inflight.spawn(async move {
            let reply = match envelope::parse_ws(&text) {
                Ok(call) => {
                    match api.handle(Transport::WebSocket, peer, &Credentials::None, Some(&session), &call).await {
                        Ok(out) => envelope::ws_reply(&call, out),
                        Err(e) => envelope::ws_error(&call.id, &e),
                    }
                }
                Err((id, e)) => envelope::ws_error(&id, &e),
            };
            let _ = tx.send(Message::text(reply.to_string())).await;
        });
        while inflight.try_join_next().is_some() {}
    }
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, async { while inflight.join_next().await.is_some() {} }).await;
    drop(tx);
    let _ = writer.await;
}
