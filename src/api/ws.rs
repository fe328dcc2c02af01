//! WebSocket: one JSON request per text message; each request runs as its
//! own task, so a slow action never holds up the others on the socket, and
//! replies go out as they finish (clients match them by `id`).
//!
//! Bounds: at most `max_requests_per_socket` requests in flight; a permit
//! is taken *before* the next message is read, so a client that pipelines
//! more is simply not read (TCP pushes back on it). Messages and frames are
//! at most [`MAX_MESSAGE`]. A request whose task fails (a bug that panics)
//! is still answered, with an error under its id.
//!
//! A socket idle for [`IDLE_TIMEOUT`] is closed, and so is one whose client
//! takes no reply for [`WRITE_TIMEOUT`] (it never reads). On shutdown the socket
//! stops reading, lets in-flight requests finish (up to [`DRAIN_TIMEOUT`]),
//! and closes.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::{BoxFuture, Shared};
use futures_util::{FutureExt, SinkExt, StreamExt};
use serde_json::Value;
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tokio::task::JoinSet;
use warp::filters::ws::{Message, WebSocket, Ws};
use warp::{Filter, Rejection};

use super::auth::{Credentials, Peer, WsSocket, WsTurn};
use super::console::{self, Frame};
use super::envelope::{self, ProtocolError, Reply};
use super::events::{self, Topic};
use super::server::Slot;
use super::{Api, Transport};

pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// A socket that has not authenticated this long after connecting is closed.
pub const AUTH_TIMEOUT: Duration = Duration::from_secs(30);
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// A client that takes no reply this long is disconnected.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(60);
/// Requests read and held back while every slot is taken (the socket is
/// then not read until one is free).
const HELD: usize = 4;
/// The largest message, and frame, read.
pub const MAX_MESSAGE: usize = 1 << 20;

/// Upgrades any path to a WebSocket session.
pub fn routes(
    api: Arc<Api>,
    max_in_flight: usize,
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
    upgrade.and(warp::ws()).and(warp::ext::get::<Peer>()).and(warp::ext::optional::<Slot>()).map(
        move |ws: Ws, peer: Peer, slot: Option<Slot>| {
            let (api, shutdown) = (api.clone(), shutdown.clone());
            ws.max_message_size(MAX_MESSAGE).max_frame_size(MAX_MESSAGE).on_upgrade(move |socket| async move {
                // The connection's place is held for as long as the session.
                let _slot = slot;
                session(api, peer, socket, max_in_flight, shutdown).await
            })
        },
    )
}

async fn session(
    api: Arc<Api>,
    peer: Peer,
    socket: WebSocket,
    max_in_flight: usize,
    mut shutdown: watch::Receiver<bool>,
) {
    let (mut sink, mut stream) = socket.split();
    // Room for every reply in flight plus a few protocol errors and pushed
    // events: a task rarely waits to hand its reply over (and never longer
    // than the writer's WRITE_TIMEOUT).
    let (tx, mut rx) = mpsc::channel::<Message>(max_in_flight + 4);
    // The writer gives up on a client that takes no reply for
    // WRITE_TIMEOUT (it never reads); the session then ends too.
    let (gone_tx, mut gone) = watch::channel(false);
    let writer = tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            match tokio::time::timeout(WRITE_TIMEOUT, sink.send(m)).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => break,
                Err(_) => {
                    tracing::info!(peer = %peer.addr, "closing a WebSocket whose client read no reply for {WRITE_TIMEOUT:?}");
                    break;
                }
            }
        }
        // Whoever still pushes learns now, not after the close below.
        rx.close();
        let _ = gone_tx.send(true);
        let _ = tokio::time::timeout(WRITE_TIMEOUT, sink.close()).await;
    });
    // Events the socket subscribes to go through the same writer.
    let (pushes, pushed) = mpsc::channel(8);
    // Set when the loop below ends: streamed commands stop then.
    let (closing, closed) = watch::channel(false);
    let socket = Arc::new(WsSocket::new(pushes, tx.downgrade(), closed));
    let slots = Arc::new(Semaphore::new(max_in_flight.max(1)));
    let mut inflight = JoinSet::new();
    // The login as the requests read so far leave it (see `WsTurn`).
    let latest = Arc::new(std::sync::Mutex::new(None::<String>));
    let forwarder =
        tokio::spawn(forward(api.clone(), socket.clone(), latest.clone(), pushed, tx.clone(), gone.clone()));
    let mut settled: Shared<BoxFuture<'static, Option<String>>> = futures_util::future::ready(None).boxed().shared();
    let logged_in =
        |latest: &std::sync::Mutex<Option<String>>| latest.lock().unwrap_or_else(|p| p.into_inner()).is_some();
    let mut auth_deadline = tokio::time::Instant::now() + AUTH_TIMEOUT;
    // A message read while every slot was taken, to be handled next.
    let mut held: std::collections::VecDeque<Message> = std::collections::VecDeque::new();
    let mut was_logged_in = false;
    loop {
        // A socket logged out again (auth_clear, a failed login) has
        // AUTH_TIMEOUT from then to log in again.
        match (logged_in(&latest), was_logged_in) {
            (true, false) => was_logged_in = true,
            (false, true) => {
                was_logged_in = false;
                auth_deadline = tokio::time::Instant::now() + AUTH_TIMEOUT;
            }
            _ => {}
        }
        // A slot first, then the next message: with every slot taken the
        // socket is not read until a request finishes, but for up to HELD
        // messages held back, so that a client that goes away is seen (its
        // streamed commands stop then, not at their timeouts), and console
        // frames go on (they need no slot).
        // Not logged in by the deadline: closed, whatever it sends (a held
        // message does not wait in the select below that looks).
        if !logged_in(&latest) && tokio::time::Instant::now() >= auth_deadline {
            tracing::info!(peer = %peer.addr, "closing a WebSocket that did not authenticate within {AUTH_TIMEOUT:?}");
            break;
        }
        let slot = tokio::select! {
            biased;
            s = slots.clone().acquire_owned() => match s {
                Ok(s) => s,
                Err(_) => break,
            },
            _ = shutdown.changed() => break,
            _ = gone.changed() => break,
            // Looked at again at the top.
            _ = tokio::time::sleep_until(auth_deadline), if !logged_in(&latest) => continue,
            m = stream.next(), if held.len() < HELD => {
                match m {
                    // Pings are answered by the library; holding one would
                    // stop this read.
                    Some(Ok(m)) if m.is_ping() || m.is_pong() => {}
                    // A console's input goes to it even now.
                    Some(Ok(m)) if m.is_text() => match console_frame(&api, peer, &socket, &latest, &m).await {
                        Frame::Request => held.push_back(m),
                        Frame::Taken => {}
                        Frame::Refused(e) => {
                            let _ = tx.send(Message::text(e.to_string())).await;
                        }
                    },
                    Some(Ok(m)) if !m.is_close() => held.push_back(m),
                    Some(Err(e)) => {
                        tracing::info!(peer = %peer.addr, "closing a WebSocket: {e}");
                        break;
                    }
                    _ => break,
                }
                continue;
            }
        };
        let next = match held.pop_front() {
            Some(m) => Ok(Some(Ok(m))),
            None => tokio::select! {
                n = tokio::time::timeout(IDLE_TIMEOUT, stream.next()) => n,
                _ = tokio::time::sleep_until(auth_deadline), if !logged_in(&latest) => {
                    // The guard was read when this select began; a login that
                    // completed since then counts.
                    if logged_in(&latest) {
                        continue;
                    }
                    tracing::info!(peer = %peer.addr, "closing a WebSocket that did not authenticate within {AUTH_TIMEOUT:?}");
                    break;
                }
                _ = shutdown.changed() => break,
                _ = gone.changed() => break,
            },
        };
        let msg = match next {
            Err(_) => {
                // Idle: no message for IDLE_TIMEOUT and no request running
                // (a long streamed command's client sends nothing).
                while inflight.try_join_next().is_some() {}
                if !inflight.is_empty() {
                    continue;
                }
                tracing::debug!(peer = %peer.addr, "closing idle WebSocket");
                break;
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                tracing::info!(peer = %peer.addr, "closing a WebSocket: {e}");
                break;
            }
            Ok(Some(Ok(m))) => m,
        };
        if msg.is_close() {
            break;
        }
        let text = if msg.is_text() {
            match console_frame(&api, peer, &socket, &latest, &msg).await {
                Frame::Request => {}
                Frame::Taken => continue,
                Frame::Refused(e) => {
                    let _ = tx.send(Message::text(e.to_string())).await;
                    continue;
                }
            }
            msg.to_str().unwrap_or_default().to_string()
        } else if msg.is_binary() {
            let err = ProtocolError::bad_request("send requests as text messages");
            let _ = tx.send(Message::text(envelope::ws_error(&Value::Null, &err).to_string())).await;
            continue;
        } else {
            continue; // ping/pong
        };
        let (api, tx, latest, socket) = (api.clone(), tx.clone(), latest.clone(), socket.clone());
        let before = settled.clone();
        let (next, after) = oneshot::channel();
        // A request that died before handing its token on leaves the
        // socket logged out.
        settled = async move { after.await.unwrap_or(None) }.boxed().shared();
        // A console is registered now: frames sent right after the request
        // wait for it rather than being refused.
        let (console, inlet) = console::Consoles::reserve(&socket, &text).unzip();
        inflight.spawn(async move {
            let _slot = slot;
            let turn = WsTurn::new(socket, before.await, next, latest).with_console(inlet);
            let reply = answer(&api, peer, &turn, &text).await;
            // A console's id is free again before its reply goes out.
            drop(console);
            let _ = tx.send(Message::text(reply)).await;
            // Only now may the next request see what this one left: a
            // login's reply goes out before the replies it lets through.
            drop(turn);
        });
        while inflight.try_join_next().is_some() {}
    }
    let _ = closing.send(true);
    socket.consoles.clear();
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, async { while inflight.join_next().await.is_some() {} }).await;
    // What did not finish in time goes (its action, if one started, runs
    // on as its own task): its hold on the writer must not keep the
    // connection's place for ever.
    inflight.abort_all();
    while inflight.join_next().await.is_some() {}
    forwarder.abort();
    let _ = forwarder.await;
    drop(tx);
    let _ = writer.await;
}

/// [`console::route`] for a text message, with the socket's login now.
async fn console_frame(
    api: &Api,
    peer: Peer,
    socket: &WsSocket,
    latest: &std::sync::Mutex<Option<String>>,
    m: &Message,
) -> Frame {
    let login = || api.console_user(peer, latest.lock().unwrap_or_else(|p| p.into_inner()).clone());
    match m.to_str() {
        Ok(text) => console::route(&socket.consoles, login, text, console::INPUT_WAIT).await,
        Err(()) => Frame::Request,
    }
}

/// Pushes the socket's subscribed events to its writer: jail events as
/// they come (a subscriber that fell more than `events::BACKLOG` behind is
/// told how many it missed), `system-state` on subscribing and every
/// `events::SYSTEM_STATE_EVERY`. Ends with the session (it is aborted) or
/// when the writer is gone.
async fn forward(
    api: Arc<Api>,
    socket: Arc<WsSocket>,
    latest: Arc<std::sync::Mutex<Option<String>>>,
    mut pushed: mpsc::Receiver<Topic>,
    tx: mpsc::Sender<Message>,
    mut gone: watch::Receiver<bool>,
) {
    use tokio::sync::broadcast::error::RecvError;
    let mut jails = api.events().jail_events();
    let mut every = tokio::time::interval(events::SYSTEM_STATE_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    every.tick().await; // the first tick is now; subscribing pushes that one
    // Only while subscribed, and logged in: a token that expired or was
    // revoked elsewhere ends the subscriptions.
    let wanted = |topic: Topic| {
        if !socket.subscriptions.has(topic) {
            return false;
        }
        let token = latest.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if token.is_some_and(|t| api.session_alive(&t)) {
            return true;
        }
        socket.subscriptions.clear();
        false
    };
    loop {
        let (topic, args) = tokio::select! {
            e = jails.recv() => match e {
                Ok(e) if wanted(Topic::Iocage) => (Topic::Iocage, serde_json::to_value(e).unwrap_or_default()),
                Ok(_) => continue,
                Err(RecvError::Lagged(n)) if wanted(Topic::Iocage) => {
                    (Topic::Iocage, serde_json::json!({"event": "missed", "count": n}))
                }
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return,
            },
            t = pushed.recv() => match t {
                Some(Topic::SystemState) if wanted(Topic::SystemState) => (Topic::SystemState, api.system_state().await),
                // Jail events have no "latest" to repeat; the others, no events.
                Some(_) => continue,
                None => return,
            },
            _ = every.tick() => {
                if !wanted(Topic::SystemState) {
                    continue;
                }
                (Topic::SystemState, api.system_state().await)
            }
            _ = gone.changed() => return,
        };
        if tx.send(Message::text(events::message(topic, args).to_string())).await.is_err() {
            return;
        }
    }
}

/// The reply to one message. A request that panics is answered with an
/// error under its id (the client would otherwise wait for ever).
async fn answer(api: &Api, peer: Peer, turn: &WsTurn, text: &str) -> String {
    let call = match envelope::parse_ws(text) {
        Ok(call) => call,
        Err((id, e)) => return envelope::ws_error(&id, &e).to_string(),
    };
    let handled = catching(api.handle(Transport::WebSocket, peer, &Credentials::None, Some(turn), &call)).await;
    if handled.is_err() {
        tracing::error!(peer = %peer.addr, call = %format_args!("{}/{}", call.namespace, call.name), "a request panicked");
    }
    reply_to(&call, handled)
}

/// Runs `f`, turning a panic into `Err` (the task goes on to reply).
async fn catching<T>(f: impl std::future::Future<Output = T>) -> Result<T, ()> {
    std::panic::AssertUnwindSafe(f).catch_unwind().await.map_err(|_| ())
}

fn reply_to(call: &envelope::Call, handled: Result<Result<Reply, ProtocolError>, ()>) -> String {
    match handled {
        Ok(Ok(out)) => envelope::ws_reply(call, &out),
        Ok(Err(e)) => envelope::ws_error(&call.id, &e).to_string(),
        Err(()) => envelope::ws_error(
            &call.id,
            &ProtocolError::new(
                envelope::Status::Internal,
                "the request failed inside the server (a bug; see its log)",
            ),
        )
        .to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_request_that_panics_is_answered_under_its_id() {
        let call = envelope::parse_ws(r#"{"id":"q7","namespace":"sysadm","name":"iocage","args":{}}"#).unwrap();
        let handled = catching(async {
            if call.id.is_string() {
                panic!("a bug");
            }
            Ok(Reply::Value(Value::Null))
        })
        .await;
        let reply: Value = serde_json::from_str(&reply_to(&call, handled)).unwrap();
        assert_eq!(reply["id"], "q7", "{reply}");
        assert_eq!(reply["args"]["code"], "500", "{reply}");
        assert!(reply["args"]["detail"].as_str().unwrap().contains("inside the server"), "{reply}");
    }
}
