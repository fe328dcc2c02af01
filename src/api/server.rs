//! The HTTP server: our own accept loop over hyper (so that each request
//! carries its peer address, and TLS wraps the stream when configured),
//! serving the WebSocket and REST routes on every listener, with graceful
//! shutdown.
//!
//! Admission at the door ([`Limits`]): at most `max_connections` open
//! connections (WebSocket sessions included: they keep their connection's
//! [`Slot`]) and `max_connections_per_address` from one TCP peer (a trusted
//! proxy is bounded by the first alone); a plaintext connection over either
//! gets a `503` and is closed, a TLS one is closed. A client has `header_timeout` to
//! send a request's headers, and an idle keep-alive connection is closed
//! after as long (slowloris). Behind a trusted reverse proxy the client is
//! the address its `X-Forwarded-For` names ([`client_of`]).

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio_rustls::TlsAcceptor;
use tower_service::Service;
use warp::Filter;

use super::auth::Peer;
use super::{Api, rest, ws};
use crate::config::{Limits, canonical, host_key};

/// How long shutdown waits for open connections to finish.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Serves `api` on every listener until `shutdown` resolves, then stops
/// accepting, lets in-flight requests finish and returns.
pub async fn serve(
    listeners: Vec<TcpListener>,
    tls: Option<TlsAcceptor>,
    api: Arc<Api>,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let (stop_tx, stop_rx) = watch::channel(false);
    let limits = Arc::new(limits);
    let door = Arc::new(Door::new(limits.clone()));
    let open = {
        let door = door.clone();
        move || door.open()
    };
    let routes = ws::routes(api.clone(), limits.max_requests_per_socket, stop_rx.clone())
        .map(warp::Reply::into_response)
        .or(rest::metrics_route(api.clone(), open))
        .unify()
        .or(rest::routes(api, limits.request_timeout))
        .unify();
    let routes = routes.recover(rest::recover).unify();
    let mut accepts = tokio::task::JoinSet::new();
    for listener in listeners {
        accepts.spawn(accept_loop(listener, tls.clone(), routes.clone(), door.clone(), stop_rx.clone()));
    }
    shutdown.await;
    tracing::info!("shutting down: no new connections; finishing requests in flight");
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async { while accepts.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!("connections still open after {SHUTDOWN_GRACE:?}; closing them");
    }
}

/// The connections open, in all and per address: a permit of each is
/// held for as long as its connection is open.
pub struct Door {
    limits: Arc<Limits>,
    total: Arc<Semaphore>,
    /// Refusals being written ([`MAX_REFUSING`]).
    refusing: Arc<Semaphore>,
    /// Connections refused so far (for a log that cannot be flooded).
    refused: std::sync::atomic::AtomicU64,
    per_address: Mutex<HashMap<IpAddr, usize>>,
}

/// An open connection's place, as the requests on it carry it: a
/// WebSocket session keeps it (the upgraded socket outlives hyper's
/// connection task), so sessions count against the limits too.
#[derive(Clone)]
pub struct Slot(#[allow(dead_code)] Arc<Admitted>);

/// One open connection's place; given back when dropped.
pub struct Admitted {
    _total: OwnedSemaphorePermit,
    door: Arc<Door>,
    counted: Option<IpAddr>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        if let Some(k) = self.counted {
            let mut m = self.door.per_address.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(n) = m.get_mut(&k) {
                *n -= 1;
                if *n == 0 {
                    m.remove(&k);
                }
            }
        }
    }
}

impl Door {
    pub fn new(limits: Arc<Limits>) -> Self {
        Door {
            total: Arc::new(Semaphore::new(limits.max_connections)),
            refusing: Arc::new(Semaphore::new(MAX_REFUSING)),
            refused: std::sync::atomic::AtomicU64::new(0),
            limits,
            per_address: Mutex::default(),
        }
    }

    /// Connections open now (for metrics).
    pub fn open(&self) -> usize {
        self.limits.max_connections.saturating_sub(self.total.available_permits())
    }

    /// A place for a connection from `ip`, or why there is none.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Admitted, String> {
        let total = self.total.clone().try_acquire_owned().map_err(|_| {
            format!(
                "{} connections are open (max_connections); try again in a few seconds",
                self.limits.max_connections
            )
        })?;
        if self.limits.is_trusted_proxy(ip) {
            return Ok(Admitted { _total: total, door: self.clone(), counted: None });
        }
        let k = host_key(ip);
        let mut m = self.per_address.lock().unwrap_or_else(|p| p.into_inner());
        let n = m.entry(k).or_insert(0);
        if *n >= self.limits.max_connections_per_address {
            return Err(format!(
                "{n} connections are open from {} (max_connections_per_address); close some first",
                canonical(ip)
            ));
        }
        *n += 1;
        Ok(Admitted { _total: total, door: self.clone(), counted: Some(k) })
    }
}

/// The reply to a connection refused at the door (plaintext only: a TLS
/// client cannot read it before its handshake, and is just closed).
fn refusal(detail: &str) -> Vec<u8> {
    let body = super::envelope::rest_body(super::ProtocolError::new(super::Status::ServiceUnavailable, detail).body())
        .to_string();
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Refusals being written at once; past this a refused connection is just
/// closed.
const MAX_REFUSING: usize = 64;

/// How long a refused connection is given to take its 503.
const REFUSAL_LINGER: Duration = Duration::from_secs(1);

/// Answers a refused plaintext connection with its 503, then closes it
/// gently: the client's request (unread) is drained first, or closing
/// would reset the connection and the client might never see the reply.
/// At most [`MAX_REFUSING`] at once, each for at most [`REFUSAL_LINGER`].
fn refuse(mut stream: tokio::net::TcpStream, why: &str, refusing: &Arc<Semaphore>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let reply = refusal(why);
    let Ok(permit) = refusing.clone().try_acquire_owned() else {
        // A new socket's send buffer is empty: the short reply fits.
        let _ = stream.try_write(&reply);
        return;
    };
    tokio::spawn(async move {
        let _permit = permit;
        let _ = tokio::time::timeout(REFUSAL_LINGER, async {
            stream.write_all(&reply).await?;
            stream.shutdown().await?;
            let mut sink = [0u8; 4096];
            while stream.read(&mut sink).await? > 0 {}
            Ok::<(), std::io::Error>(())
        })
        .await;
    });
}

/// Accepts connections until told to stop, then waits for its connections
/// to finish (each is asked to close once its current request is done).
pub async fn accept_loop<F>(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    routes: F,
    door: Arc<Door>,
    mut stop: watch::Receiver<bool>,
) where
    F: Filter<Extract = (warp::reply::Response,), Error = std::convert::Infallible> + Clone + Send + Sync + 'static,
{
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let (stream, remote) = tokio::select! {
            a = listener.accept() => match a {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: back off, go on.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        while conns.try_join_next().is_some() {}
        let admitted = match door.admit(remote.ip()) {
            Ok(a) => a,
            Err(why) => {
                // Logged for the first refusal and then every 1000th, so
                // that refused clients cannot fill the log.
                let n = door.refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                if n == 1 || n % 1000 == 0 {
                    tracing::warn!(peer = %remote.ip(), "connection refused ({n} so far): {why}");
                }
                if tls.is_none() {
                    refuse(stream, &why, &door.refusing);
                }
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let admitted = Slot(Arc::new(admitted));
        let svc = service(routes.clone(), remote, door.limits.clone(), admitted.clone());
        let (stop, tls, header_timeout) = (stop.clone(), tls.clone(), door.limits.header_timeout);
        conns.spawn(async move {
            let _admitted = admitted;
            match tls {
                None => serve_connection(stream, svc, remote, header_timeout, stop).await,
                Some(acceptor) => match tokio::time::timeout(TLS_HANDSHAKE, acceptor.accept(stream)).await {
                    Ok(Ok(tls_stream)) => serve_connection(tls_stream, svc, remote, header_timeout, stop).await,
                    Ok(Err(e)) => tracing::info!(peer = %remote, "TLS handshake failed: {e}"),
                    Err(_) => tracing::info!(peer = %remote, "TLS handshake timed out"),
                },
            }
        });
    }
    drop(listener);
    while conns.join_next().await.is_some() {}
}

/// How long a client has to complete the TLS handshake.
const TLS_HANDSHAKE: Duration = Duration::from_secs(10);

async fn serve_connection<IO, S>(
    io: IO,
    svc: S,
    remote: SocketAddr,
    header_timeout: Duration,
    mut stop: watch::Receiver<bool>,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<
            hyper::Request<hyper::body::Incoming>,
            Response = warp::reply::Response,
            Error = std::convert::Infallible,
        > + Send
        + 'static,
    S::Future: Send + 'static,
{
    // hyper's own HTTP/1 server, not hyper-util's auto builder: that one
    // first waits, with no timeout, for bytes to tell HTTP/1 from HTTP/2,
    // so a connection that sends nothing was held for ever. hyper arms the
    // header timeout whenever it waits for a request's head: the first
    // one, and each next one on an idle keep-alive connection.
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(header_timeout);
    let conn = builder.serve_connection(TokioIo::new(io), svc).with_upgrades();
    let mut conn = std::pin::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = stop.changed() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(peer = %remote, "connection ended with an error: {e}");
    }
}

/// The per-connection hyper service: warp's routes, with the client
/// attached to every request for the gate and the log.
fn service<F>(
    routes: F,
    remote: SocketAddr,
    limits: Arc<Limits>,
    slot: Slot,
) -> impl hyper::service::Service<
    hyper::Request<hyper::body::Incoming>,
    Response = warp::reply::Response,
    Error = std::convert::Infallible,
    Future = impl Future<Output = Result<warp::reply::Response, std::convert::Infallible>> + Send,
> + Clone
where
    F: Filter<Extract = (warp::reply::Response,), Error = std::convert::Infallible> + Clone + Send + Sync + 'static,
{
    let svc = warp::service(routes);
    hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
        let peer = client_of(remote.ip(), req.headers(), &limits);
        req.extensions_mut().insert(peer);
        req.extensions_mut().insert(slot.clone());
        let mut svc = svc.clone();
        async move { svc.call(req).await }
    })
}

/// Who a request is from. From a trusted proxy, the client its
/// `X-Forwarded-For` names: read from the right (each proxy appends the
/// address it got the request from), the first address that is not itself
/// a trusted proxy; whatever a client wrote to the left of that is never
/// believed. From anyone else the header is ignored.
pub fn client_of(remote: IpAddr, headers: &hyper::HeaderMap, limits: &Limits) -> Peer {
    if !limits.is_trusted_proxy(remote) {
        return Peer { addr: remote, proxy: None };
    }
    let mut client = remote;
    // Bytes, not `to_str`: a proxy appends the address it saw to whatever
    // the client sent, and a client's non-ASCII byte must not hide it.
    let hops =
        headers.get_all("x-forwarded-for").iter().map(|v| String::from_utf8_lossy(v.as_bytes())).collect::<Vec<_>>();
    'hops: for value in hops.iter().rev() {
        for hop in value.rsplit(',').map(str::trim) {
            let Some(ip) = hop.parse::<IpAddr>().ok().or_else(|| hop.parse::<SocketAddr>().ok().map(|a| a.ip())) else {
                break 'hops;
            };
            client = ip;
            if !limits.is_trusted_proxy(ip) {
                break 'hops;
            }
        }
    }
    // A forwarded loopback address is the proxy's own host: it counts
    // against the proxy, never as an exempt local client.
    if client != remote && canonical(client).is_loopback() {
        client = remote;
    }
    Peer { addr: client, proxy: Some(remote) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(proxies: &[&str]) -> Limits {
        Limits { trusted_proxies: proxies.iter().map(|p| p.parse().unwrap()).collect(), ..Limits::default() }
    }

    fn xff(values: &[&str]) -> hyper::HeaderMap {
        let mut h = hyper::HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let l = limits(&["127.0.0.1", "10.0.0.0/8"]);
        // Not a proxy: the header is the client's word, ignored.
        assert_eq!(client_of(ip("192.0.2.7"), &xff(&["1.2.3.4"]), &l), Peer { addr: ip("192.0.2.7"), proxy: None });
        // A proxy: the rightmost address that is not a proxy.
        let p = client_of(ip("127.0.0.1"), &xff(&["6.6.6.6, 192.0.2.9, 10.1.1.1"]), &l);
        assert_eq!(p, Peer { addr: ip("192.0.2.9"), proxy: Some(ip("127.0.0.1")) });
        // Over several headers, the last is the nearest.
        let p = client_of(ip("127.0.0.1"), &xff(&["6.6.6.6", "192.0.2.9"]), &l);
        assert_eq!(p.addr, ip("192.0.2.9"));
        // A client that writes a trusted address itself gains nothing.
        let p = client_of(ip("127.0.0.1"), &xff(&["127.0.0.1, 203.0.113.5"]), &l);
        assert_eq!(p.addr, ip("203.0.113.5"));
        // No header, or only proxies: the proxy itself (never exempt).
        assert_eq!(client_of(ip("127.0.0.1"), &xff(&[]), &l).addr, ip("127.0.0.1"));
        assert_eq!(client_of(ip("127.0.0.1"), &xff(&["10.0.0.2"]), &l).addr, ip("10.0.0.2"));
        // A forwarded loopback address counts as the proxy itself.
        let l2 = limits(&["10.0.0.0/8"]);
        assert_eq!(client_of(ip("10.0.0.5"), &xff(&["127.0.0.1"]), &l2).addr, ip("10.0.0.5"));
        // A client's non-ASCII bytes do not hide the hop the proxy added.
        let mut h = hyper::HeaderMap::new();
        h.append("x-forwarded-for", hyper::header::HeaderValue::from_bytes(b"\xff\xfe, 192.0.2.44").unwrap());
        assert_eq!(client_of(ip("127.0.0.1"), &h, &l).addr, ip("192.0.2.44"));
        // Garbage stops the walk at the last good hop; ports are dropped.
        assert_eq!(client_of(ip("127.0.0.1"), &xff(&["1.1.1.1, junk, 10.0.0.3"]), &l).addr, ip("10.0.0.3"));
        assert_eq!(client_of(ip("127.0.0.1"), &xff(&["[2001:db8::1]:443"]), &l).addr, ip("2001:db8::1"));
    }

    #[test]
    fn the_door_bounds_connections_in_all_and_per_address() {
        let l = Limits { max_connections: 3, max_connections_per_address: 2, ..limits(&["10.9.9.9"]) };
        let door = Arc::new(Door::new(Arc::new(l)));
        let a1 = door.admit(ip("192.0.2.1")).unwrap();
        let _a2 = door.admit(ip("::ffff:192.0.2.1")).unwrap();
        let e = door.admit(ip("192.0.2.1")).err().unwrap();
        assert!(e.contains("max_connections_per_address") && e.contains("192.0.2.1"), "{e}");
        let _b = door.admit(ip("192.0.2.2")).unwrap();
        let e = door.admit(ip("192.0.2.3")).err().unwrap();
        assert!(e.contains("3 connections are open (max_connections)"), "{e}");
        drop(a1);
        let _c = door.admit(ip("192.0.2.1")).unwrap();
        assert_eq!(door.per_address.lock().unwrap().len(), 2, "an address's count goes with its last connection");
        let refused = String::from_utf8(refusal("x")).unwrap();
        assert!(refused.starts_with("HTTP/1.1 503 "), "{refused}");
        assert!(refused.contains(r#""detail":"x""#) && refused.contains("retry-after: 1"), "{refused}");
    }
}
