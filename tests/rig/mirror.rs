//! A release mirror for the tests: a plain HTTP/1.1 server of fixed
//! documents on loopback, laid out as FreeBSD's mirrors are
//! (`<mirror>/<arch>/<release>/MANIFEST` and the sets), with
//! `Range: bytes=N-`, and knobs to cut a download off or delay an answer.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};

/// The architecture directory the mirror serves releases under.
pub const ARCH: &str = "amd64";

/// What the mirror does with one path.
#[derive(Clone, Default)]
pub struct Served {
    pub body: Vec<u8>,
    /// Send only this many bytes of the body (once), then close.
    pub cut_at: Option<usize>,
    /// Wait this long before answering.
    pub delay: Duration,
}

/// (path, Range header) of every request the mirror answered.
type Seen = Arc<Mutex<Vec<(String, Option<String>)>>>;

/// A plain HTTP/1.1 server of fixed documents with `Range: bytes=N-`.
pub struct Mirror {
    pub addr: SocketAddr,
    pub files: Arc<Mutex<HashMap<String, Served>>>,
    seen: Seen,
}

impl Mirror {
    pub fn start() -> Mirror {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let files: Arc<Mutex<HashMap<String, Served>>> = Arc::default();
        let seen: Seen = Arc::default();
        let (f, s) = (files.clone(), seen.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (f, s) = (f.clone(), s.clone());
                std::thread::spawn(move || serve(conn, &f, &s));
            }
        });
        Mirror { addr, files, seen }
    }

    pub fn url(&self) -> String {
        format!("http://{}/releases", self.addr)
    }

    pub fn put(&self, path: &str, served: Served) {
        self.files.lock().unwrap().insert(path.to_string(), served);
    }

    /// A release: its MANIFEST (each set's SHA-256 and entries as given)
    /// and its sets.
    pub fn release(&self, rel: &str, sets: &[(&str, &[u8], u64)]) {
        let mut manifest = String::new();
        for (file, body, entries) in sets {
            let name = file.trim_end_matches(".txz");
            manifest.push_str(&format!("{file}\t{}\t{entries}\t{name}\t\"{name}\"\ton\n", sha256(body)));
            self.put(&format!("/releases/{ARCH}/{rel}/{file}"), Served { body: body.to_vec(), ..Served::default() });
        }
        self.put(&format!("/releases/{ARCH}/{rel}/MANIFEST"), Served { body: manifest.into(), ..Served::default() });
    }

    pub fn ranges_asked(&self, path: &str) -> Vec<Option<String>> {
        self.seen.lock().unwrap().iter().filter(|(p, _)| p == path).map(|(_, r)| r.clone()).collect()
    }
}

fn serve(mut conn: TcpStream, files: &Mutex<HashMap<String, Served>>, seen: &Mutex<Vec<(String, Option<String>)>>) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 16384 {
        if conn.read(&mut byte).unwrap_or(0) == 0 {
            return;
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_string();
    let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
    let range = head.lines().find_map(|l| l.to_ascii_lowercase().strip_prefix("range:").map(|r| r.trim().to_string()));
    seen.lock().unwrap().push((path.clone(), range.clone()));
    let served = {
        let mut files = files.lock().unwrap();
        let found = files.get(&path).cloned();
        if let Some(s) = files.get_mut(&path) {
            s.cut_at = None;
        }
        found
    };
    let Some(served) = served else {
        let _ = conn.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        return;
    };
    std::thread::sleep(served.delay);
    let total = served.body.len();
    let from = range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse::<usize>().ok());
    let (status, body) = match from {
        Some(n) if n < total => {
            (format!("206 Partial Content\r\nContent-Range: bytes {n}-{}/{total}", total - 1), &served.body[n..])
        }
        Some(_) => (format!("416 Range Not Satisfiable\r\nContent-Range: bytes */{total}"), &served.body[..0]),
        None => ("200 OK".to_string(), &served.body[..]),
    };
    let head = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
    let _ = conn.write_all(head.as_bytes());
    let body = match served.cut_at {
        Some(cut) => &body[..cut.min(body.len())],
        None => body,
    };
    let _ = conn.write_all(body);
}

pub fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

pub fn xz(tar: &[u8]) -> Vec<u8> {
    let mut options = lzma_rust2::XzOptions::with_preset(1);
    options.set_check_sum_type(lzma_rust2::CheckType::Crc64);
    let mut w = lzma_rust2::XzWriter::new(Vec::new(), options).unwrap();
    w.write_all(tar).unwrap();
    w.finish().unwrap()
}

/// A tar stream of the directory `dir` (links kept as links).
pub fn tar_of(dir: &str) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    b.append_dir_all(".", dir).unwrap();
    b.into_inner().unwrap()
}
