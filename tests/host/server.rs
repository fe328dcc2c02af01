//! The real server (`api::server::serve`, `Api`, `Auth`) on a loopback
//! port in front of any `api::Actions`, with a read key and a read/write
//! key. Stops when dropped.

use std::net::SocketAddr;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde_json::{Value, json};

use super::super::client::{self, Ws, http_anonymous};
use iocaged::api::{Actions, Api, PoolStates, events::Hub, server};
use iocaged::auth::{Auth, Role, keys};
use iocaged::config::Limits;
use iocaged::iocage::{ActionError, Body, Request, ServiceMetrics};

pub struct Server<A> {
    pub addr: SocketAddr,
    /// What the API runs actions with, for the test to look at.
    pub actions: Arc<A>,
    pub read_key: String,
    pub write_key: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    dir: std::path::PathBuf,
}

/// Lets the API hold the test's actions while the test looks at them.
struct Shared<A>(Arc<A>);

impl<A: Actions> Actions for Shared<A> {
    fn run(&self, req: Request) -> BoxFuture<'_, Result<Body, ActionError>> {
        self.0.run(req)
    }
    fn pool_states(&self) -> BoxFuture<'_, Result<PoolStates, ActionError>> {
        self.0.pool_states()
    }
    fn metrics(&self) -> BoxFuture<'_, ServiceMetrics> {
        self.0.metrics()
    }
}

impl<A: Actions> Server<A> {
    /// Serves `actions` with `limits`; `name` keeps its key file apart.
    pub fn start(name: &str, limits: Limits, actions: Arc<A>) -> Server<A> {
        let dir = std::env::temp_dir().join(format!("iocaged-host-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("keys");
        let read_key = keys::add(&path, "reader", Role::Read).unwrap();
        let write_key = keys::add(&path, "writer", Role::ReadWrite).unwrap();
        let store = keys::KeyStore::open(&path).unwrap();
        let auth = Auth::with_limits("iocaged-host-test", Some(store), None, 2, limits.trusted_proxies.clone());
        let api = Arc::new(Api::new(Shared(actions.clone()), auth, Arc::new(Hub::default())));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                server::serve(vec![listener], None, api, limits, async {
                    let _ = stopped.await;
                })
                .await;
            });
        });
        Server { addr, actions, read_key, write_key, stop: Some(stop), thread: Some(thread), dir }
    }

    /// `PUT /sysadm/iocage` with `body`, as `key` (none: anonymous), with
    /// extra headers.
    pub fn rest(&self, key: Option<&str>, headers: &[(&str, &str)], body: &Value) -> client::Reply {
        let bearer = key.map(|k| format!("Bearer {k}"));
        let mut h = vec![("Content-Type", "application/json")];
        if let Some(b) = &bearer {
            h.push(("Authorization", b));
        }
        h.extend_from_slice(headers);
        http_anonymous(self.addr, "PUT", "/sysadm/iocage", &h, body.to_string().as_bytes())
    }

    /// A WebSocket logged in with `key`.
    pub fn ws(&self, key: &str) -> Ws {
        let mut ws = Ws::connect_anonymous(self.addr);
        let r = ws.call(&json!({"id": "login", "namespace": "rpc", "name": "auth_token", "args": {"token": key}}));
        assert_eq!(r["name"], "response", "{r}");
        ws
    }
}

impl<A> Drop for Server<A> {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
