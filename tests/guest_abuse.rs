//! The server under load and abuse, against the real binary in the guest:
//! what a greedy, slow or hostile client can make the daemon hold, and
//! whether everyone else is still served meanwhile.
//!
//! Each test states the limit it checks (the daemon's defaults unless it
//! says otherwise; see `dist/iocaged.toml`). The soak test runs for
//! `IOCAGED_ABUSE_SECS` seconds (30 in the test command; `tests/bench.sh`
//! runs it longer). Numbers a person should see (peak RSS, a bystander's
//! latency) are printed as `abuse: ...` lines; BENCHMARKS.md quotes them.

mod rig;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use rig::client::{self, Ws};
use rig::conformance::lock;
use rig::daemon::Daemon;
use rig::fixture::Fixture;
use rig::users::{self, PASSWORD, WHEEL};

/// The daemon's log, kept out of the serial console (a line per request
/// there costs more than the request).
fn logged(name: &str, extra: &[&str]) -> (Daemon, String) {
    let log = format!("/tmp/iocaged-abuse-{name}.log");
    (Daemon::start_logging(extra, Some(&log)), log)
}

/// Lets this process (and the daemons it starts) hold many sockets.
fn raise_fd_limit() {
    let mut l = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit with a valid rlimit struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut l), 0);
        l.rlim_cur = l.rlim_max.min(65_536);
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &l), 0);
    }
    assert!(l.rlim_cur >= 4096, "the guest allows only {} open files", l.rlim_cur);
}

/// The p50 and p99 of `n` listjails over one authenticated WebSocket.
fn bystander(addr: SocketAddr, n: usize) -> (Duration, Duration) {
    let mut ws = Ws::connect(addr);
    let mut times: Vec<Duration> = (0..n)
        .map(|i| {
            let t = Instant::now();
            let r =
                ws.call(&json!({"id": i, "namespace": "sysadm", "name": "iocage", "args": {"action": "listjails"}}));
            assert_eq!(r["name"], "response", "the bystander was refused: {r}");
            t.elapsed()
        })
        .collect();
    times.sort();
    (times[n / 2], times[(n * 99 / 100).min(n - 1)])
}

fn rss_mib(d: &Daemon) -> (f64, f64) {
    let (now, peak) = rig::host::rss_kib(d.pid().unwrap());
    (now as f64 / 1024.0, peak.unwrap_or(now) as f64 / 1024.0)
}

/// A pool with 20 jails, so that a listjails reply is a few kilobytes.
fn pool_with_jails() -> Fixture {
    let f = Fixture::fresh();
    for i in 0..20 {
        f.jail(&format!("00000000-0000-4000-8000-{i:012}"), &[("tag", &format!("j{i}")), ("release", "13.2-RELEASE")]);
    }
    f
}

/// A client that pipelines 10,000 requests on one WebSocket and never
/// reads a reply. max_requests_per_socket (16): the daemon stops reading
/// that socket, so its memory stays put, and a bystander is served as
/// fast as before.
#[test]
fn ten_thousand_pipelined_requests_from_a_client_that_never_reads() {
    let _turn = lock();
    let _f = pool_with_jails();
    let (d, log) = logged("pipelined", &[]);
    let (p50_before, p99_before) = bystander(d.ws, 50);
    let (rss_before, _) = rss_mib(&d);

    let sent = Arc::new(AtomicUsize::new(0));
    let (addr, key, counter) = (d.ws, d.key.clone(), sent.clone());
    let greedy = std::thread::spawn(move || {
        let rt = client::runtime();
        rt.block_on(async {
            let (mut s, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/")).await.unwrap();
            let auth = json!({"id": "a", "namespace": "rpc", "name": "auth_token", "args": {"token": key}});
            s.send(Message::text(auth.to_string())).await.unwrap();
            let _ = s.next().await;
            let pushing = async {
                for i in 0..10_000 {
                    let m = json!({"id": i, "namespace": "sysadm", "name": "iocage", "args": {"action": "listjails"}});
                    if s.send(Message::text(m.to_string())).await.is_err() {
                        break;
                    }
                    counter.fetch_add(1, Ordering::SeqCst);
                }
            };
            // The sends stop when TCP pushes back; the socket is held
            // open (never read) until the test is done measuring.
            let _ = tokio::time::timeout(Duration::from_secs(40), pushing).await;
            tokio::time::sleep(Duration::from_secs(5)).await;
        });
    });
    std::thread::sleep(Duration::from_secs(20));
    let (p50_during, p99_during) = bystander(d.ws, 50);
    let (rss_during, peak) = rss_mib(&d);
    let handled = std::fs::read_to_string(&log).unwrap().matches("action=listjails").count();
    greedy.join().unwrap();
    println!(
        "abuse: pipelined 10,000 on one socket, never read: {} sent before TCP pushed back, {handled} handled; \
         daemon RSS {rss_before:.1} -> {rss_during:.1} MiB (peak {peak:.1}); bystander listjails p50/p99 \
         {:.1}/{:.1} ms before, {:.1}/{:.1} ms during",
        sent.load(Ordering::SeqCst),
        p50_before.as_secs_f64() * 1e3,
        p99_before.as_secs_f64() * 1e3,
        p50_during.as_secs_f64() * 1e3,
        p99_during.as_secs_f64() * 1e3,
    );
    assert!(handled < 5_000, "the daemon read and ran {handled} requests of a client that reads nothing");
    assert!(rss_during - rss_before < 64.0, "daemon RSS grew from {rss_before:.1} to {rss_during:.1} MiB");
    assert!(p99_during < Duration::from_secs(5), "the bystander waited {p99_during:?}");
    assert!(d.stop());
}

/// The same 10,000 pipelined requests from a client that does read: all
/// are answered, each under its own id.
#[test]
fn ten_thousand_pipelined_requests_are_all_answered() {
    let _turn = lock();
    let _f = Fixture::fresh();
    let (d, _log) = logged("pipelined-read", &[]);
    let rt = client::runtime();
    let (addr, key) = (d.ws, d.key.clone());
    let started = Instant::now();
    let ids = rt.block_on(async move {
        let (s, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/")).await.unwrap();
        let (mut tx, mut rx) = s.split();
        let auth = json!({"id": "a", "namespace": "rpc", "name": "auth_token", "args": {"token": key}});
        tx.send(Message::text(auth.to_string())).await.unwrap();
        let writer = tokio::spawn(async move {
            for i in 0..10_000 {
                let m = json!({"id": i, "namespace": "sysadm", "name": "iocage", "args": {"action": "df"}});
                tx.send(Message::text(m.to_string())).await.unwrap();
            }
            tx
        });
        let mut ids = std::collections::BTreeSet::new();
        while ids.len() < 10_000 {
            let m = tokio::time::timeout(Duration::from_secs(60), rx.next()).await.expect("a reply within 60 s");
            let v: Value = serde_json::from_str(m.unwrap().unwrap().to_text().unwrap()).unwrap();
            assert_eq!(v["name"], "response", "{v}");
            if let Some(i) = v["id"].as_u64() {
                ids.insert(i);
            }
        }
        drop(writer.await.unwrap());
        ids
    });
    println!("abuse: 10,000 pipelined df on one socket, all read: {:.1} s", started.elapsed().as_secs_f64());
    assert_eq!(ids.len(), 10_000);
    assert!(d.stop());
}

/// A TCP connection from `from` (any 127.0.0.0/8 address is this host's).
fn connect_from(from: IpAddr, to: SocketAddr) -> std::io::Result<std::net::TcpStream> {
    let rt = client::runtime();
    rt.block_on(async {
        let s = tokio::net::TcpSocket::new_v4()?;
        s.bind((from, 0).into())?;
        let s = tokio::time::timeout(Duration::from_secs(10), s.connect(to))
            .await
            .map_err(|_| std::io::Error::other("connect timed out"))??;
        s.into_std().and_then(|s| {
            s.set_nonblocking(false)?;
            Ok(s)
        })
    })
}

/// What the server says first on an idle connection: `Some(reply)` when it
/// refused it (a 503 and a close), `None` when it holds it open.
fn refusal_of(s: &mut TcpStream) -> Option<String> {
    s.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 2048];
    let r = match s.read(&mut buf) {
        Ok(n) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
        Err(_) => None,
    };
    s.set_nonblocking(false).unwrap();
    r
}

/// 2,000 connections at once from 40 addresses: max_connections (1024)
/// are held, the rest get a 503 that names the limit; once the idle ones
/// pass header_timeout (60 s here) they are closed and a newcomer is
/// served. Then 260 from one address: 256 are held.
#[test]
fn two_thousand_connections_at_once() {
    let _turn = lock();
    raise_fd_limit();
    let _f = Fixture::fresh();
    // Long enough a header_timeout that no held connection is closed
    // while the 2,000 are being opened on the guest's slow CPU.
    let config = "/tmp/iocaged-abuse-connections.toml";
    std::fs::write(config, "header_timeout = 60\n").unwrap();
    let (d, _log) = logged("connections", &["--config", config]);
    let mut held = Vec::new();
    let mut refused = Vec::new();
    for i in 0..2000u32 {
        let from = IpAddr::from([127, 0, 1, (i % 40) as u8 + 1]);
        match connect_from(from, d.rest) {
            Ok(s) => held.push(s),
            Err(e) => refused.push(format!("connect: {e}")),
        }
    }
    // The refusals are written as soon as a connection is accepted.
    std::thread::sleep(Duration::from_secs(3));
    for s in &mut held {
        if let Some(r) = refusal_of(s) {
            refused.push(r);
        }
    }
    let open = 2000 - refused.len();
    println!("abuse: 2,000 connections at once: {open} held, {} refused", refused.len());
    assert_eq!(open, 1024, "max_connections; refusals: {:?}", refused.first());
    assert!(
        refused.iter().all(|r| r.starts_with("HTTP/1.1 503") && r.contains("max_connections")),
        "{:?}",
        refused.iter().find(|r| !r.contains("max_connections"))
    );
    // Full: a newcomer is refused with the same clear answer.
    let r = client::http_anonymous(d.rest, "PUT", "/rpc/identify", &[], b"{}");
    assert_eq!(r.status, 503, "{}", r.raw);
    assert!(r.raw.to_ascii_lowercase().contains("retry-after: 1"), "{}", r.raw);
    // The idle ones go after header_timeout; then the newcomer is served.
    let t = Instant::now();
    let r = loop {
        let r = client::rest(d.rest, &json!({"action": "listjails"}));
        if r.status != 503 || t.elapsed() > Duration::from_secs(120) {
            break r;
        }
        std::thread::sleep(Duration::from_secs(2));
    };
    println!(
        "abuse: the idle connections were closed {:.0} s after the newcomer was first refused",
        t.elapsed().as_secs_f64()
    );
    assert_eq!(r.status, 200, "{}", r.raw);
    drop(held);
    // One address alone: max_connections_per_address (256).
    let from = IpAddr::from([127, 0, 3, 1]);
    let mut mine: Vec<TcpStream> = (0..260).map(|_| connect_from(from, d.rest).unwrap()).collect();
    std::thread::sleep(Duration::from_secs(3));
    let refused: Vec<String> = mine.iter_mut().filter_map(refusal_of).collect();
    println!("abuse: 260 connections from one address: {} refused", refused.len());
    assert_eq!(refused.len(), 4, "{refused:?}");
    assert!(
        refused.iter().all(|r| r.contains("max_connections_per_address") && r.contains("127.0.3.1")),
        "{refused:?}"
    );
    drop(mine);
    assert!(d.stop());
}

/// One header byte every half second (slowloris) on both ports; a body
/// sent as slowly; a keep-alive connection left idle. header_timeout (10 s)
/// and request_timeout (30 s) close each.
#[test]
fn slowloris_on_both_ports() {
    let _turn = lock();
    let _f = Fixture::fresh();
    let (d, _log) = logged("slowloris", &[]);
    let mut threads = Vec::new();
    for port in [d.ws, d.rest] {
        // Headers, one byte at a time.
        threads.push(std::thread::spawn(move || {
            let mut s = TcpStream::connect(port).unwrap();
            let t = Instant::now();
            let head = b"PUT /sysadm/iocage HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
            for b in head.iter().cycle() {
                if s.write_all(&[*b]).is_err() || t.elapsed() > Duration::from_secs(60) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(500));
            }
            ("headers", port, t.elapsed())
        }));
        // A body, one byte at a time.
        threads.push(std::thread::spawn(move || {
            let mut s = TcpStream::connect(port).unwrap();
            let t = Instant::now();
            s.write_all(b"PUT /sysadm/iocage HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{").unwrap();
            s.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
            let mut reply = Vec::new();
            while t.elapsed() < Duration::from_secs(90) {
                let _ = s.write_all(b" ");
                let mut buf = [0u8; 4096];
                match s.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => reply.extend_from_slice(&buf[..n]),
                    Err(_) => {}
                }
            }
            let reply = String::from_utf8_lossy(&reply).into_owned();
            assert!(reply.contains("request_timeout"), "a slow body's reply: {reply}");
            ("body", port, t.elapsed())
        }));
        // A keep-alive connection left idle after one request.
        threads.push(std::thread::spawn(move || {
            let mut s = TcpStream::connect(port).unwrap();
            s.write_all(b"GET /rpc/identify HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            let t = Instant::now();
            s.set_read_timeout(Some(Duration::from_secs(90))).unwrap();
            let mut buf = [0u8; 4096];
            let first = s.read(&mut buf).unwrap();
            assert!(String::from_utf8_lossy(&buf[..first]).starts_with("HTTP/1.1 200"), "identify answered");
            while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
            ("idle keep-alive", port, t.elapsed())
        }));
    }
    for t in threads {
        let (what, port, took) = t.join().unwrap();
        println!("abuse: slowloris ({what}) on {port} closed after {:.1} s", took.as_secs_f64());
        let bound = if what == "body" { 40 } else { 20 };
        assert!(took < Duration::from_secs(bound), "{what} on {port} held for {took:?}");
    }
    assert!(d.stop());
}

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}

/// 100 wrong passwords at once from a non-loopback address: exactly 5
/// reach PAM (the daemon logs each refusal it got from PAM), the others
/// are refused as blocked; then the right password is refused too.
#[test]
fn a_hundred_wrong_logins_at_once_reach_pam_five_times() {
    let _turn = lock();
    users::setup();
    rig::host::add_outside_addr();
    let _f = Fixture::fresh();
    let outside: SocketAddr = ("10.9.9.1".parse::<IpAddr>().unwrap(), 13111).into();
    // 100 connections from one address fit max_connections_per_address (256).
    let (d, log) = logged("logins", &["--rest", &outside.to_string(), "--allow-plaintext"]);
    let bad = basic(WHEEL, "wrong");
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let calls: Vec<_> = (0..100)
            .map(|_| {
                s.spawn(|| {
                    let h = [("Authorization", bad.as_str()), ("Content-Type", "application/json")];
                    client::http_anonymous(outside, "PUT", "/sysadm/iocage", &h, br#"{"action":"listjails"}"#).status
                })
            })
            .collect();
        calls.into_iter().map(|c| c.join().unwrap()).collect()
    });
    let reached_pam = std::fs::read_to_string(&log).unwrap().matches("login refused").count();
    let count = |code| statuses.iter().filter(|s| **s == code).count();
    println!(
        "abuse: 100 wrong logins at once: {reached_pam} reached PAM, {} got 401, {} got 403",
        count(401),
        count(403)
    );
    assert_eq!(reached_pam, 5, "exactly 5 checks reach PAM");
    assert_eq!((count(401), count(403)), (5, 95), "{statuses:?}");
    let good = basic(WHEEL, PASSWORD);
    let h = [("Authorization", good.as_str()), ("Content-Type", "application/json")];
    let r = client::http_anonymous(outside, "PUT", "/sysadm/iocage", &h, br#"{"action":"listjails"}"#);
    assert_eq!(r.status, 403, "blocked, even with the right password: {}", r.raw);
    assert!(d.stop());
}

/// Behind a trusted reverse proxy on loopback: the client its
/// X-Forwarded-For names is locked out, not the proxy's other clients;
/// and the proxy itself is not exempt as loopback.
#[test]
fn the_lockout_holds_behind_a_trusted_proxy() {
    let _turn = lock();
    users::setup();
    let _f = Fixture::fresh();
    let d = Daemon::with_config("trusted_proxies = [\"127.0.0.1\"]\n");
    let login = |xff: Option<&str>, password: &str| {
        let a = basic(WHEEL, password);
        let mut h = vec![("Authorization", a.as_str()), ("Content-Type", "application/json")];
        if let Some(x) = xff {
            h.push(("X-Forwarded-For", x));
        }
        client::http_anonymous(d.rest, "PUT", "/sysadm/iocage", &h, br#"{"action":"listjails"}"#).status
    };
    for _ in 0..5 {
        assert_eq!(login(Some("6.6.6.6, 203.0.113.9"), "wrong"), 401);
    }
    assert_eq!(login(Some("203.0.113.9"), PASSWORD), 403, "the client behind the proxy is blocked");
    assert_eq!(login(Some("203.0.113.10"), PASSWORD), 200, "another client of the proxy is not");
    for _ in 0..5 {
        login(None, "wrong");
    }
    assert_eq!(login(None, PASSWORD), 403, "the proxy's own requests count: loopback is not exempt");
    assert!(d.stop());
}

/// A 16 MiB WebSocket frame and a 20 MiB REST body are refused without
/// being held; a body with no Content-Length, or chunked, is served.
#[test]
fn oversize_frames_and_bodies_and_bodies_without_a_length() {
    let _turn = lock();
    let _f = Fixture::fresh();
    let (d, _log) = logged("oversize", &[]);
    let (rss_before, _) = rss_mib(&d);
    // 16 MiB in one frame: the socket is closed, nothing answered.
    let mut ws = Ws::connect(d.ws);
    let big = "x".repeat(16 << 20);
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| ws.send_text(&big)));
    assert_eq!(ws.recv_text(), None, "a 16 MiB frame closes the socket");
    // 20 MiB body with its length: refused from the header alone, before
    // a byte of it is sent.
    let auth = format!("Bearer {}", d.key);
    let mut s = TcpStream::connect(d.rest).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let head = format!(
        "PUT /sysadm/iocage HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\nContent-Length: {}\r\n\r\n",
        20 << 20
    );
    s.write_all(head.as_bytes()).unwrap();
    let mut reply = String::new();
    let _ = s.read_to_string(&mut reply);
    // The same 20 MiB chunked (no length to judge by): cut at 1 MiB.
    let mut s = TcpStream::connect(d.rest).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let head = format!(
        "PUT /sysadm/iocage HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    s.write_all(head.as_bytes()).unwrap();
    let chunk = format!("100000\r\n{}\r\n", " ".repeat(1 << 20));
    let mut chunked_reply = String::new();
    for _ in 0..20 {
        if s.write_all(chunk.as_bytes()).is_err() {
            break;
        }
        s.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 4096];
        if let Ok(n) = s.read(&mut buf) {
            chunked_reply.push_str(&String::from_utf8_lossy(&buf[..n]));
            break;
        }
        s.set_nonblocking(false).unwrap();
    }
    s.set_nonblocking(false).unwrap();
    let mut rest = String::new();
    let _ = s.read_to_string(&mut rest);
    chunked_reply.push_str(&rest);
    assert!(chunked_reply.starts_with("HTTP/1.1 400") && chunked_reply.contains("larger than"), "{chunked_reply}");
    assert!(reply.starts_with("HTTP/1.1 400") && reply.contains("larger than 1048576 bytes"), "{reply}");
    let (rss_after, _) = rss_mib(&d);
    println!("abuse: 16 MiB frame and 20 MiB body: daemon RSS {rss_before:.1} -> {rss_after:.1} MiB");
    assert!(rss_after - rss_before < 16.0, "RSS grew from {rss_before:.1} to {rss_after:.1} MiB");
    // No Content-Length at all (a GET, as curl sends it), and chunked.
    for req in [
        format!("GET /rpc/query HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\nConnection: close\r\n\r\n"),
        format!(
            "PUT /sysadm/iocage HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\nConnection: close\r\n\
             Transfer-Encoding: chunked\r\n\r\n{}0\r\n\r\n",
            ["{\"action\"", ":\"listjails", "\"}"].map(|c| format!("{:x}\r\n{c}\r\n", c.len())).concat()
        ),
    ] {
        let mut s = TcpStream::connect(d.rest).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.write_all(req.as_bytes()).unwrap();
        let mut reply = String::new();
        s.read_to_string(&mut reply).unwrap();
        assert!(reply.starts_with("HTTP/1.1 200"), "{req:?}\n{reply}");
        assert!(!reply.contains("Rejection"), "{reply}");
    }
    assert!(d.stop());
}

/// 100 clients creating, starting, stopping and destroying 20 jails at
/// once for IOCAGED_ABUSE_SECS: no 5xx but 503, and afterwards the pool,
/// the kernel and the API agree (no orphan dataset, no jail up whose
/// dataset is gone, `zfs list` and listjails naming the same jails).
#[test]
fn concurrent_lifecycle_soak_leaves_the_pool_consistent() {
    const RELEASE: &str = "13.2-RELEASE";
    let _turn = lock();
    let f = Fixture::fresh();
    f.static_release(RELEASE);
    let (d, _log) = logged("soak", &[]);
    let secs: u64 = std::env::var("IOCAGED_ABUSE_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(30);
    let deadline = Instant::now() + Duration::from_secs(secs);
    let ops = AtomicUsize::new(0);
    let refused = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for w in 0..100u64 {
            let (d, ops, refused) = (&d, &ops, &refused);
            s.spawn(move || {
                let mut x = w.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
                while Instant::now() < deadline {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let tag = format!("soak{}", x % 20);
                    let args = match (x >> 8) % 4 {
                        0 => json!({"action": "createjail", "props": format!("release={RELEASE} tag={tag}"), "switches": "-c"}),
                        1 => json!({"action": "startjail", "jail": tag}),
                        2 => json!({"action": "stopjail", "jail": tag}),
                        _ => json!({"action": "destroyjail", "jail": tag}),
                    };
                    let r = client::rest(d.rest, &args);
                    match r.status {
                        200 => {}
                        503 => {
                            refused.fetch_add(1, Ordering::SeqCst);
                        }
                        other => panic!("{args}: {other} {}", r.raw),
                    }
                    ops.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
    });
    println!(
        "abuse: lifecycle soak, 100 clients on 20 jails for {secs} s: {} operations, {} refused as busy",
        ops.load(Ordering::SeqCst),
        refused.load(Ordering::SeqCst)
    );
    // What the API says...
    let listed = client::rest(d.rest, &json!({"action": "listjails"}));
    assert_eq!(listed.status, 200, "{}", listed.raw);
    let listed = listed.body["args"]["listjails"].as_object().unwrap().clone();
    // ...what ZFS has...
    let pool = rig::pool();
    let datasets: std::collections::BTreeSet<String> =
        rig::zfs(&["list", "-H", "-o", "name", "-d", "1", &format!("{pool}/iocage/jails")])
            .lines()
            .filter_map(|l| l.rsplit_once('/').map(|(_, u)| u.to_string()))
            .filter(|u| *u != "jails")
            .collect();
    let api: std::collections::BTreeSet<String> = listed.keys().cloned().collect();
    assert_eq!(datasets, api, "zfs list and listjails name the same jails");
    for (uuid, j) in &listed {
        assert!(rig::get(&format!("{pool}/iocage/jails/{uuid}/root"), "name").contains(uuid), "{uuid} has its root");
        let running =
            std::path::Path::new(&format!("/run/iocaged/jails/{}", iocaged::runtime::kernel_name(uuid))).exists();
        assert_eq!(j["state"] == "up", running, "{uuid}: listed {} but running={running}", j["state"]);
    }
    // ...and the kernel: no jail running whose dataset is gone.
    if let Ok(entries) = std::fs::read_dir("/run/iocaged/jails") {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            assert!(
                api.iter().any(|u| iocaged::runtime::kernel_name(u) == name),
                "{name} runs but no jail of the pool is it"
            );
        }
    }
    for uuid in &api {
        let _ = client::rest(d.rest, &json!({"action": "stopjail", "jail": uuid}));
    }
    assert!(d.stop());
}

/// WebSocket sessions hold their connection's place: with
/// max_connections = 8, eight open sessions leave no room for a ninth
/// connection, and closing them gives the places back. (Before, an
/// upgraded socket gave its place back at once: sessions were unbounded.)
#[test]
fn websocket_sessions_count_against_the_connection_limit() {
    let _turn = lock();
    let _f = Fixture::fresh();
    let config = "/tmp/iocaged-abuse-wslimit.toml";
    std::fs::write(config, "max_connections = 8\n").unwrap();
    let (d, _log) = logged("wslimit", &["--config", config]);
    let sessions: Vec<Ws> = (0..8).map(|_| Ws::connect(d.ws)).collect();
    std::thread::sleep(Duration::from_secs(1));
    let r = client::http_anonymous(d.rest, "PUT", "/rpc/identify", &[], b"{}");
    assert_eq!(r.status, 503, "eight sessions fill max_connections = 8: {}", r.raw);
    assert!(r.raw.contains("max_connections"), "{}", r.raw);
    drop(sessions);
    let t = Instant::now();
    loop {
        let r = client::http_anonymous(d.rest, "PUT", "/rpc/identify", &[], b"{}");
        if r.status == 200 {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(30), "the sessions' places never came back: {}", r.raw);
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(d.stop());
}

/// A client that hangs up while PAM delays its wrong password is still
/// counted: after ten such attempts exactly five reached PAM and the right
/// password is refused. (Before, hanging up cancelled the check's
/// bookkeeping: unlimited guesses, never blocked.)
#[test]
fn logins_abandoned_mid_check_still_count() {
    let _turn = lock();
    users::setup();
    rig::host::add_outside_addr();
    let _f = Fixture::fresh();
    let outside: SocketAddr = ("10.9.9.1".parse::<IpAddr>().unwrap(), 13121).into();
    let (d, log) = logged("abandoned", &["--rest", &outside.to_string(), "--allow-plaintext"]);
    let bad = basic(WHEEL, "wrong");
    let body = br#"{"action":"listjails"}"#;
    for _ in 0..10 {
        let mut s = TcpStream::connect(outside).unwrap();
        let head = format!(
            "PUT /sysadm/iocage HTTP/1.1\r\nHost: x\r\nAuthorization: {bad}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes()).unwrap();
        s.write_all(body).unwrap();
        // PAM holds a wrong password about 2 s; hang up long before.
        std::thread::sleep(Duration::from_millis(300));
        drop(s);
    }
    let refused = || std::fs::read_to_string(&log).unwrap().matches("login refused").count();
    let t = Instant::now();
    while refused() < 5 && t.elapsed() < Duration::from_secs(90) {
        std::thread::sleep(Duration::from_millis(500));
    }
    std::thread::sleep(Duration::from_secs(3));
    let good = basic(WHEEL, PASSWORD);
    let h = [("Authorization", good.as_str()), ("Content-Type", "application/json")];
    let r = client::http_anonymous(outside, "PUT", "/sysadm/iocage", &h, body);
    println!("abuse: 10 logins abandoned mid-check: {} reached PAM, then the right password: {}", refused(), r.status);
    assert_eq!(refused(), 5, "exactly 5 checks reached PAM");
    assert_eq!(r.status, 403, "blocked: {}", r.raw);
    assert!(d.stop());
}
