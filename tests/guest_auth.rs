//! Authentication, roles, lockout and TLS against a running iocaged (in the
//! guest), with real PAM users (tests/rig/users.rs), real API keys made by
//! the `iocaged key` command, and real TLS handshakes.

mod rig;

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

use iocaged::iocage::Action;
use rig::client::{self, Ws};
use rig::conformance::lock;
use rig::daemon::Daemon;
use rig::fixture::Fixture;
use rig::users::{self, NOBODY, OPERATOR, PASSWORD, WHEEL};

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}

fn put(addr: SocketAddr, auth: Option<&str>, body: &Value) -> client::Reply {
    let mut h = vec![("Content-Type", "application/json")];
    if let Some(a) = auth {
        h.push(("Authorization", a));
    }
    client::http_anonymous(addr, "PUT", "/sysadm/iocage", &h, body.to_string().as_bytes())
}

fn rpc(ws: &mut Ws, name: &str, args: Value) -> Value {
    ws.call(&json!({"id": name, "namespace": "rpc", "name": name, "args": args}))
}

/// A non-loopback address of the host's own (on an interface made for it).
fn outside_addr() -> std::net::IpAddr {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(rig::host::add_outside_addr);
    "10.9.9.1".parse().unwrap()
}

/// The test's turn, the test users, a fresh pool and a daemon (dropped in
/// reverse: the daemon first, the turn last).
fn with_users() -> (std::sync::MutexGuard<'static, ()>, Fixture, Daemon) {
    let turn = lock();
    users::setup();
    let f = Fixture::fresh();
    (turn, f, Daemon::start(&[]))
}

#[test]
fn every_call_but_identify_needs_credentials() {
    let (_g, _f, d) = with_users();
    for action in Action::ALL {
        let r = put(d.rest, None, &json!({"action": action.name(), "jail": "x", "pool": "x", "props": "tag=x"}));
        assert_eq!(r.status, 401, "{}: {}", action.name(), r.raw);
        assert_eq!(r.body["args"]["code"], "401");
    }
    for (ns, name) in [("rpc", "query"), ("rpc", "auth_clear"), ("sysadm", "nosuch")] {
        let r = client::http_anonymous(d.rest, "PUT", &format!("/{ns}/{name}"), &[], b"{}");
        assert_eq!(r.status, 401, "{ns}/{name}: {}", r.raw);
    }
    let mut ws = Ws::connect_anonymous(d.ws);
    let r = ws.call(&json!({"id": "1", "namespace": "sysadm", "name": "iocage", "args": {"action": "listjails"}}));
    assert_eq!((r["name"].as_str(), r["args"]["code"].as_str()), (Some("error"), Some("401")), "{r}");
    let r = rpc(&mut ws, "identify", json!({}));
    assert_eq!(r["args"]["type"], "server", "identify needs no credentials: {r}");
    assert!(d.stop());
}

#[test]
fn roles_decide_what_a_user_may_do() {
    let (_g, _f, d) = with_users();
    let (w, o, n) = (basic(WHEEL, PASSWORD), basic(OPERATOR, PASSWORD), basic(NOBODY, PASSWORD));
    // wheel: reads and writes.
    assert_eq!(put(d.rest, Some(&w), &json!({"action": "listjails"})).status, 200);
    let r = put(d.rest, Some(&w), &json!({"action": "cleantemplates"}));
    assert_eq!(
        (r.status, r.body["args"]["cleantemplates"]["success"].as_str()),
        (200, Some("All templates have been cleaned.")),
        "{}",
        r.raw
    );
    // operator: the four reads; 403 for every write action, before it runs.
    for action in Action::ALL {
        let r = put(d.rest, Some(&o), &json!({"action": action.name()}));
        let want = if action.is_write() { 403 } else { 200 };
        assert_eq!(r.status, want, "operator {}: {}", action.name(), r.raw);
    }
    // neither: refused.
    let r = put(d.rest, Some(&n), &json!({"action": "listjails"}));
    assert_eq!(r.status, 403, "{}", r.raw);
    assert!(r.body["args"]["detail"].as_str().unwrap().contains(NOBODY), "{}", r.raw);
    // rpc/query reports the role.
    for (user, role) in [(WHEEL, "read/write"), (OPERATOR, "read")] {
        let mut ws = Ws::connect_anonymous(d.ws);
        let r = rpc(&mut ws, "auth", json!({"username": user, "password": PASSWORD}));
        assert_eq!(r["args"][1], 900, "real seconds left: {r}");
        assert!(r["args"][0].as_str().unwrap().len() >= 32, "{r}");
        assert_eq!(rpc(&mut ws, "query", json!({}))["args"]["sysadm/iocage"], role);
    }
    assert!(d.stop());
}

#[test]
fn wrong_passwords_and_malformed_headers_are_refused() {
    let (_g, _f, d) = with_users();
    for auth in [
        basic(WHEEL, "wrong"),
        basic("no-such-user", PASSWORD),
        "Bearer".to_string(),
        "Bearer not-a-token".to_string(),
        "Basic !!!".to_string(),
        "Digest abc".to_string(),
        String::new(),
    ] {
        let r = put(d.rest, Some(&auth), &json!({"action": "listjails"}));
        assert_eq!(r.status, 401, "{auth:?}: {}", r.raw);
    }
    let mut ws = Ws::connect_anonymous(d.ws);
    let r = rpc(&mut ws, "auth", json!({"username": WHEEL, "password": "wrong"}));
    assert_eq!(r["args"]["code"], "401", "{r}");
    assert!(d.stop());
}

#[test]
fn websocket_sessions_tokens_and_auth_clear() {
    let (_g, _f, d) = with_users();
    let list = json!({"id": "l", "namespace": "sysadm", "name": "iocage", "args": {"action": "listjails"}});
    let mut ws = Ws::connect_anonymous(d.ws);
    let r = rpc(&mut ws, "auth", json!({"username": WHEEL, "password": PASSWORD}));
    let token = r["args"][0].as_str().unwrap().to_string();
    assert_eq!(ws.call(&list)["name"], "response");
    // The token works on another socket and as a REST Bearer.
    let mut other = Ws::connect_anonymous(d.ws);
    assert_eq!(rpc(&mut other, "auth_token", json!({"token": token}))["args"][1], 900);
    assert_eq!(put(d.rest, Some(&format!("Bearer {token}")), &json!({"action": "df"})).status, 200);
    // auth_clear ends the session everywhere.
    assert_eq!(rpc(&mut ws, "auth_clear", json!({}))["name"], "response");
    assert_eq!(ws.call(&list)["args"]["code"], "401");
    assert_eq!(other.call(&list)["args"]["code"], "401", "the token is gone");
    assert_eq!(put(d.rest, Some(&format!("Bearer {token}")), &json!({"action": "df"})).status, 401);
    assert!(d.stop());
}

#[test]
fn api_keys_from_the_command_are_accepted_until_revoked() {
    let (_g, _f, d) = with_users();
    let bin = env!("CARGO_BIN_EXE_iocaged");
    let out = Command::new(bin).args(["key", "add", "ci", "--role", "read", "--file", &d.keys_file]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let key = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let bearer = format!("Bearer {key}");
    assert_eq!(put(d.rest, Some(&bearer), &json!({"action": "listjails"})).status, 200);
    assert_eq!(put(d.rest, Some(&bearer), &json!({"action": "cleanall"})).status, 403, "a read key cannot write");
    let text = std::fs::read_to_string(&d.keys_file).unwrap();
    assert!(!text.contains(key.rsplit('.').next().unwrap()), "the file holds no secret");
    let out = Command::new(bin).args(["key", "revoke", "ci", "--file", &d.keys_file]).output().unwrap();
    assert!(out.status.success());
    assert_eq!(put(d.rest, Some(&bearer), &json!({"action": "listjails"})).status, 401, "revoked");
    assert!(d.stop());
}

#[test]
fn lockout_after_the_fifth_failure_and_not_before() {
    let _g = lock();
    users::setup();
    let _f = Fixture::fresh();
    let ip = outside_addr();
    let outside: SocketAddr = (ip, 13011).into();
    let d = Daemon::start(&["--rest", &outside.to_string(), "--allow-plaintext"]);
    let (good, bad) = (basic(WHEEL, PASSWORD), basic(WHEEL, "nope"));
    assert_eq!(put(outside, Some(&good), &json!({"action": "listjails"})).status, 200);
    for i in 1..=5 {
        let r = put(outside, Some(&bad), &json!({"action": "listjails"}));
        assert_eq!(r.status, 401, "failure {i} is answered as a failure: {}", r.raw);
    }
    let r = put(outside, Some(&good), &json!({"action": "listjails"}));
    assert_eq!(r.status, 403, "blocked after the fifth failure, even with the right password: {}", r.raw);
    assert!(r.body["args"]["detail"].as_str().unwrap().contains("blocked"), "{}", r.raw);
    // Loopback is never blocked.
    for _ in 0..8 {
        assert_eq!(put(d.rest, Some(&bad), &json!({"action": "listjails"})).status, 401);
    }
    assert_eq!(put(d.rest, Some(&good), &json!({"action": "listjails"})).status, 200);
    assert!(d.stop());
}

#[test]
fn tls_with_a_real_handshake_and_no_plaintext_outside_loopback() {
    let _g = lock();
    users::setup();
    let _f = Fixture::fresh();
    let ip = outside_addr();
    let (cert, key) = ("/tmp/iocaged-test-cert.pem", "/tmp/iocaged-test-key.pem");
    let out = Command::new(env!("CARGO_BIN_EXE_iocaged"))
        .args(["tls", "self-signed", "--cert", cert, "--key", key, "--name", "10.9.9.1", "--name", "localhost"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Plaintext on a non-loopback address is refused, with the reason.
    let out = Command::new(env!("CARGO_BIN_EXE_iocaged"))
        .args(["serve", "--rest", "10.9.9.1:13021", "--websocket", "127.0.0.1:13022"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("plaintext"), "{}", String::from_utf8_lossy(&out.stderr));
    // With a certificate, both ports speak TLS.
    let outside: SocketAddr = (ip, 13031).into();
    let d = Daemon::start(&["--rest", &outside.to_string(), "--tls-certificate", cert, "--tls-key", key]);
    let auth = basic(WHEEL, PASSWORD);
    let r = client::https(
        outside,
        "10.9.9.1",
        cert,
        "/sysadm/iocage",
        &[("Authorization", &auth)],
        br#"{"action":"listjails"}"#,
    )
    .expect("TLS request");
    assert_eq!(r.status, 200, "{}", r.raw);
    // A plaintext request to the TLS port gets no HTTP answer.
    let plain = client::http_anonymous(outside, "PUT", "/sysadm/iocage", &[("Authorization", &auth)], b"{}");
    assert_eq!(plain.status, 0, "{}", plain.raw);
    // A client that does not trust the certificate fails the handshake.
    let other = "/tmp/iocaged-other-cert.pem";
    Command::new(env!("CARGO_BIN_EXE_iocaged"))
        .args(["tls", "self-signed", "--cert", other, "--key", "/tmp/iocaged-other-key.pem"])
        .output()
        .unwrap();
    assert!(client::https(outside, "10.9.9.1", other, "/sysadm/iocage", &[], b"{}").is_err());
    assert!(d.stop());
}

#[test]
fn an_unauthenticated_websocket_is_closed_after_30_seconds() {
    let (_g, _f, d) = with_users();
    let mut anon = Ws::connect_anonymous(d.ws);
    let mut authed = Ws::connect(d.ws);
    let started = Instant::now();
    assert_eq!(anon.recv(), None, "the server closes it");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_secs(29) && waited < Duration::from_secs(60), "closed after {waited:?}");
    let r = authed.call(&json!({"id": "x", "namespace": "sysadm", "name": "iocage", "args": {"action": "listjails"}}));
    assert_eq!(r["name"], "response", "an authenticated socket stays open: {r}");
    assert!(d.stop());
}
