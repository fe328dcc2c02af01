//! The HTTP server: our own accept loop over hyper (so that each request
//! carries its peer address, and TLS wraps the stream when configured),
//! serving the WebSocket and REST routes on every listener, with graceful
//! shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tower_service::Service;
use warp::Filter;

use super::auth::Peer;
use super::{Api, rest, ws};

/// How long shutdown waits for open connections to finish.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Serves `api` on every listener until `shutdown` resolves, then stops
/// accepting, lets in-flight requests finish and returns.
pub async fn serve(
    listeners: Vec<TcpListener>,
    tls: Option<TlsAcceptor>,
    api: Arc<Api>,
    shutdown: impl Future<Output = ()>,
) {
    let (stop_tx, stop_rx) = watch::channel(false);
    let routes = ws::routes(api.clone(), stop_rx.clone()).map(warp::Reply::into_response).or(rest::routes(api)).unify();
    let routes = routes.recover(rest::recover).unify();
    let mut accepts = tokio::task::JoinSet::new();
    for listener in listeners {
        accepts.spawn(accept_loop(listener, tls.clone(), routes.clone(), stop_rx.clone()));
    }
    shutdown.await;
    tracing::info!("shutting down: no new connections; finishing requests in flight");
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async { while accepts.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!("connections still open after {SHUTDOWN_GRACE:?}; closing them");
    }
}

/// Accepts connections until told to stop, then waits for its connections
/// to finish (each is asked to close once its current request is done).
async fn accept_loop<F>(listener: TcpListener, tls: Option<TlsAcceptor>, routes: F, mut stop: watch::Receiver<bool>)
where
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
        let _ = stream.set_nodelay(true);
        let svc = service(routes.clone(), remote);
        let (stop, tls) = (stop.clone(), tls.clone());
        conns.spawn(async move {
            match tls {
                None => serve_connection(stream, svc, remote, stop).await,
                Some(acceptor) => match tokio::time::timeout(TLS_HANDSHAKE, acceptor.accept(stream)).await {
                    Ok(Ok(tls_stream)) => serve_connection(tls_stream, svc, remote, stop).await,
                    Ok(Err(e)) => tracing::info!(peer = %remote, "TLS handshake failed: {e}"),
                    Err(_) => tracing::info!(peer = %remote, "TLS handshake timed out"),
                },
            }
        });
        while conns.try_join_next().is_some() {}
    }
    drop(listener);
    while conns.join_next().await.is_some() {}
}

/// How long a client has to complete the TLS handshake.
const TLS_HANDSHAKE: Duration = Duration::from_secs(10);

async fn serve_connection<IO, S>(io: IO, svc: S, remote: SocketAddr, mut stop: watch::Receiver<bool>)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<
            hyper::Request<hyper::body::Incoming>,
            Response = warp::reply::Response,
            Error = std::convert::Infallible,
        > + Send
        + 'static,
    S::Future: Send + 'static,
{
    let builder = auto::Builder::new(TokioExecutor::new()).http1_only();
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), svc);
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

/// The per-connection hyper service: warp's routes, with the peer attached
/// to every request for the gate and the log.
fn service<F>(
    routes: F,
    remote: SocketAddr,
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
    let peer = Peer { addr: remote.ip() };
    hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(peer);
        let mut svc = svc.clone();
        async move { svc.call(req).await }
    })
}
