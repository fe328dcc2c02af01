//! Minimal clients for the tests: REST over a plain TCP connection (so the
//! test sees exactly the bytes the server sends) and WebSocket through
//! tokio-tungstenite.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
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

/// Sends `method path` with `body` and returns the reply.
pub fn http(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let mut req =
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
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
    socket: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
}

impl Ws {
    pub fn connect(addr: SocketAddr) -> Ws {
        let rt = runtime();
        let (socket, _) = rt
            .block_on(tokio_tungstenite::connect_async(format!("ws://{addr}/")))
            .unwrap_or_else(|e| panic!("WebSocket connect to {addr}: {e}"));
        Ws { rt, socket }
    }

    pub fn send(&mut self, v: &Value) {
        self.send_text(&v.to_string());
    }

    pub fn send_text(&mut self, text: &str) {
        self.rt.block_on(self.socket.send(Message::text(text))).unwrap();
    }

    /// The next text message as JSON; `None` when the server closed.
    pub fn recv(&mut self) -> Option<Value> {
        loop {
            let socket = &mut self.socket;
            let next =
                self.rt.block_on(async { tokio::time::timeout(Duration::from_secs(120), socket.next()).await }).ok()?;
            match next {
                Some(Ok(Message::Text(t))) => return Some(serde_json::from_str(&t).expect("reply is JSON")),
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
