//! Minimal clients for the tests: REST over a plain TCP connection (so the
//! test sees exactly the bytes the server sends) and WebSocket through
//! tokio-tungstenite.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Mutex;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

/// An HTTP reply: status and body parsed as JSON (`Null` if it is not).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub raw: String,
}

static KEYS: Mutex<Vec<(SocketAddr, String)>> = Mutex::new(Vec::new());

/// The API key the rig's daemon on `addr` accepts (see `Daemon::start`).
pub fn register_key(addr: SocketAddr, key: &str) {
    let mut k = KEYS.lock().unwrap_or_else(|p| p.into_inner());
    k.retain(|(a, _)| *a != addr);
    k.push((addr, key.to_string()));
}

fn key_for(addr: SocketAddr) -> Option<String> {
    KEYS.lock().unwrap_or_else(|p| p.into_inner()).iter().find(|(a, _)| *a == addr).map(|(_, k)| k.clone())
}

/// Sends `method path` with `body`, authenticated with the rig daemon's
/// API key unless `headers` has an Authorization of its own.
pub fn http(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    let auth = key_for(addr).map(|k| format!("Bearer {k}"));
    let mut h: Vec<(&str, &str)> = headers.to_vec();
    if let Some(a) = &auth {
        if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("authorization")) {
            h.push(("Authorization", a));
        }
    }
    http_anonymous(addr, method, path, &h, body)
}

/// Sends `method path` with exactly the headers given.
pub fn http_anonymous(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    let s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    exchange(s, addr, method, path, headers, body)
}

/// One HTTP/1.1 request and its reply over any stream.
pub fn exchange<S: Read + Write>(
    mut s: S,
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    let mut req =
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    // A server that refuses the connection may reset it at any point: what
    // was read by then is the answer (none: status 0).
    let mut raw = Vec::new();
    if s.write_all(req.as_bytes()).and_then(|()| s.write_all(body)).is_ok() {
        let mut buf = [0u8; 8192];
        while let Ok(n @ 1..) = s.read(&mut buf) {
            raw.extend_from_slice(&buf[..n]);
        }
    }
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let chunked = head.to_ascii_lowercase().contains("transfer-encoding: chunked");
    let text = if chunked { dechunk(rest) } else { rest.to_string() };
    Reply { status, body: serde_json::from_str(&text).unwrap_or(Value::Null), raw }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
    out
}

/// `PUT /sysadm/iocage` with a JSON body.
pub fn rest(addr: SocketAddr, body: &Value) -> Reply {
    http(addr, "PUT", "/sysadm/iocage", &[("Content-Type", "application/json")], body.to_string().as_bytes())
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// A WebSocket connection.
pub struct Ws {
    rt: tokio::runtime::Runtime,
    socket: tokio_tungstenite::WebSocketStream<Box<dyn Io>>,
}

/// A byte stream a WebSocket runs over: TCP, or TLS over TCP.
pub trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

impl Ws {
    /// Connects and authenticates with the rig daemon's API key.
    pub fn connect(addr: SocketAddr) -> Ws {
        let mut ws = Ws::connect_anonymous(addr);
        if let Some(key) = key_for(addr) {
            let r = ws.call(&serde_json::json!({"id": "rig-auth", "namespace": "rpc", "name": "auth_token", "args": {"token": key}}));
            assert_eq!(r["name"], "response", "the rig's key was refused: {r}");
        }
        ws
    }

    /// Connects without authenticating.
    pub fn connect_anonymous(addr: SocketAddr) -> Ws {
        let rt = runtime();
        let socket = rt
            .block_on(async {
                let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
                let io: Box<dyn Io> = Box::new(tcp);
                tokio_tungstenite::client_async(format!("ws://{addr}/"), io).await.map_err(|e| e.to_string())
            })
            .unwrap_or_else(|e| panic!("WebSocket connect to {addr}: {e}"))
            .0;
        Ws { rt, socket }
    }

    /// Connects with TLS (`wss://`), trusting exactly the PEM certificate
    /// at `ca` for `server_name`, without authenticating.
    pub fn connect_tls(addr: SocketAddr, server_name: &str, ca: &str) -> Ws {
        use tokio_rustls::rustls::{self, pki_types::CertificateDer, pki_types::ServerName, pki_types::pem::PemObject};
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca).unwrap() {
            roots.add(cert.unwrap()).unwrap();
        }
        let config =
            rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
        let name = ServerName::try_from(server_name.to_string()).unwrap();
        let rt = runtime();
        let socket = rt
            .block_on(async {
                let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
                let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
                    .connect(name, tcp)
                    .await
                    .map_err(|e| format!("TLS handshake: {e}"))?;
                let io: Box<dyn Io> = Box::new(tls);
                tokio_tungstenite::client_async(format!("wss://{server_name}:{}/", addr.port()), io)
                    .await
                    .map_err(|e| e.to_string())
            })
            .unwrap_or_else(|e| panic!("WebSocket connect to {addr}: {e}"))
            .0;
        Ws { rt, socket }
    }

    /// The next text message within `wait`, as JSON; `None` if none came.
    pub fn recv_within(&mut self, wait: Duration) -> Option<Value> {
        let socket = &mut self.socket;
        loop {
            let next = self.rt.block_on(async { tokio::time::timeout(wait, socket.next()).await }).ok()?;
            match next {
                Some(Ok(Message::Text(t))) => return Some(serde_json::from_str(&t).expect("JSON")),
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
                Some(Ok(_)) => continue,
            }
        }
    }

    /// Sends a ping frame (what client libraries send to keep a socket alive).
    pub fn ping(&mut self) {
        self.rt.block_on(self.socket.send(Message::Ping(Vec::new().into()))).unwrap();
    }

    /// Sends a close frame with code 1000 (what sysadm's client does on leaving).
    pub fn close(mut self) {
        use tokio_tungstenite::tungstenite::protocol::{CloseFrame, frame::coding::CloseCode};
        let frame = CloseFrame { code: CloseCode::Normal, reason: "".into() };
        let _ = self.rt.block_on(self.socket.close(Some(frame)));
    }

    pub fn send(&mut self, v: &Value) {
        self.send_text(&v.to_string());
    }

    pub fn send_text(&mut self, text: &str) {
        self.rt.block_on(self.socket.send(Message::text(text))).unwrap();
    }

    /// The next text message as JSON; `None` when the server closed.
    pub fn recv(&mut self) -> Option<Value> {
        self.recv_text().map(|t| serde_json::from_str(&t).expect("reply is JSON"))
    }

    /// The next text message as it came; `None` when the server closed.
    pub fn recv_text(&mut self) -> Option<String> {
        loop {
            let socket = &mut self.socket;
            let next =
                self.rt.block_on(async { tokio::time::timeout(Duration::from_secs(120), socket.next()).await }).ok()?;
            match next {
                Some(Ok(Message::Text(t))) => return Some(t.to_string()),
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
                Some(Ok(_)) => continue,
            }
        }
    }

    /// Sends one request and returns the next reply.
    pub fn call(&mut self, v: &Value) -> Value {
        self.send(v);
        self.recv().expect("a reply")
    }
}

/// One HTTPS request, trusting exactly the PEM certificate at `ca`.
pub fn https(
    addr: SocketAddr,
    server_name: &str,
    ca: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Reply, String> {
    use tokio_rustls::rustls::{self, pki_types::CertificateDer, pki_types::ServerName, pki_types::pem::PemObject};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).map_err(|e| e.to_string())? {
        roots.add(cert.map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    }
    let config =
        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
    let name = ServerName::try_from(server_name.to_string()).map_err(|e| e.to_string())?;
    let conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name).map_err(|e| e.to_string())?;
    let tcp = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    // Complete the handshake first so that a refusal is reported as such.
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock).map_err(|e| format!("handshake: {e}"))?;
    }
    Ok(exchange(tls, addr, "PUT", path, headers, body))
}
