//! sysadm's real client against a running iocaged (in the guest): the
//! message sequences sysadm-ui-qt sends (`src-qt5/Core/sysadm-client.cpp`
//! and its pages), replayed as it sends them over `wss://` with the
//! daemon's self-signed certificate: identify with `""`, a password login
//! with requests pipelined behind it, three subscriptions under one id,
//! `simple-query`, a page's pipelined requests and its 3 s refresh with the
//! same ids, the 90 s keep-alive, key registration, a second connection
//! logging in with `rpc/auth_ssl` and that key, `auth_clear` and a close
//! frame; REST as sysadm's test script sent it. Then the `iocage` event
//! stream: two subscribers see every change, through the API and behind
//! its back, in order, none missed, none duplicated.

mod rig;

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine;
use rsa::pkcs8::{DecodePrivateKey, EncodePublicKey, LineEnding};
use rsa::{Pkcs1v15Sign, RsaPrivateKey};
use serde_json::{Value, json};

use rig::client::{self, Ws};
use rig::conformance::lock;
use rig::daemon::Daemon;
use rig::fixture::Fixture;
use rig::users::{self, PASSWORD, WHEEL};
use rig::{call, zfs};

const CERT: &str = "/tmp/iocaged-client-cert.pem";
const KEY: &str = "/tmp/iocaged-client-key.pem";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The client's key pair: its private key, and its public key as
/// `register_ssl_cert` sends it (base64 of the PEM text).
fn client_key() -> (RsaPrivateKey, String) {
    let private = RsaPrivateKey::from_pkcs8_pem(include_str!("fixtures/client-key.pem")).unwrap();
    let pem = private.to_public_key().to_public_key_pem(LineEnding::LF).unwrap();
    (private, b64(pem.as_bytes()))
}

/// What the client's `SSL_Encode_String` sends: RSA_private_encrypt with
/// PKCS#1 padding over the raw test string, in base64.
fn encode(private: &RsaPrivateKey, test: &str) -> String {
    b64(&private.sign(Pkcs1v15Sign::new_unprefixed(), test.as_bytes()).unwrap())
}

fn msg(id: &str, ns: &str, name: &str, args: Value) -> Value {
    json!({"id": id, "namespace": ns, "name": name, "args": args})
}

/// A TLS daemon (self-signed certificate for 127.0.0.1) with no client
/// keys registered (the default key file, removed first).
fn tls_daemon() -> (Daemon, SocketAddr) {
    let out = Command::new(env!("CARGO_BIN_EXE_iocaged"))
        .args(["tls", "self-signed", "--cert", CERT, "--key", KEY, "--name", "127.0.0.1", "--name", "localhost"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let _ = std::fs::remove_file(iocaged::config::DEFAULT_CLIENT_KEYS);
    let d = Daemon::start(&["--tls-certificate", CERT, "--tls-key", KEY]);
    let ws = d.ws;
    (d, ws)
}

#[test]
fn the_sysadm_client_sequence_over_wss() {
    let _g = lock();
    users::setup();
    let _f = Fixture::fresh();
    let (d, addr) = tls_daemon();
    let mut ws = Ws::connect_tls(addr, "127.0.0.1", CERT);

    // Connect: identify with "" args; the client goes on only for "server".
    let r = ws.call(&msg("sysadm_client_identify", "rpc", "identify", json!("")));
    assert_eq!((r["name"].as_str(), r["args"]["type"].as_str()), (Some("response"), Some("server")), "{r}");

    // The login, then at once (as the client and sysadm's test tools do,
    // without waiting) the three subscriptions under one id and the
    // control panel's simple-query.
    ws.send(&msg("sysadm-client-auth-auto", "rpc", "auth", json!({"username": WHEEL, "password": PASSWORD})));
    for event in ["system-state", "dispatcher", "life-preserver"] {
        ws.send(&msg("sysadm-client-event-auto", "events", "subscribe", json!(event)));
    }
    ws.send(&msg("cp_client_auto_query_id", "rpc", "query", json!("simple-query")));
    let first = ws.recv_within(Duration::from_secs(30)).expect("a reply");
    assert_eq!(first["id"], "sysadm-client-auth-auto", "the login is answered first: {first}");
    assert!(first["args"].as_array().is_some_and(|a| a.len() == 2), "the client wants [token, secs]: {first}");
    let mut subscribed = Vec::new();
    let mut query = None;
    let mut state = None;
    while subscribed.len() < 3 || query.is_none() || state.is_none() {
        let m = ws.recv_within(Duration::from_secs(30)).unwrap_or_else(|| panic!("missing replies: {subscribed:?}"));
        assert_ne!(m["name"], "error", "{m}");
        match (m["id"].as_str(), m["name"].as_str()) {
            (Some("sysadm-client-event-auto"), _) => subscribed.push(m["args"]["subscribe"].clone()),
            (Some("cp_client_auto_query_id"), _) => query = Some(m),
            (Some(""), Some("system-state")) => state = Some(m),
            _ => panic!("unexpected {m}"),
        }
    }
    // Requests on one socket run side by side (as in sysadm's server, which
    // evaluates each message on its own thread), so the three replies, all
    // under one id, may come in any order.
    subscribed.sort_by_key(|s| s.to_string());
    assert_eq!(subscribed, [json!("dispatcher"), json!("life-preserver"), json!("system-state")]);
    let query = query.unwrap();
    assert_eq!(query["args"]["sysadm/iocage"], "read/write", "the client shows the page for this key: {query}");
    let state = state.unwrap();
    assert_eq!(state["namespace"], "events");
    let priority = state["args"]["priority"].as_str().unwrap_or_default();
    assert!(priority.starts_with("0 - "), "the tray reads the number before '-': {state}");
    assert!(state["args"]["hostname"].as_str().is_some_and(|h| !h.is_empty()), "{state}");
    assert!(state["args"]["zpools"][rig::pool()]["health"] == "ONLINE", "{state}");

    // A page's requests, pipelined, and its 3 s refresh re-sending the
    // same ids while the first ones may still be in flight.
    let page = [
        msg("client_page_iocage_list", "sysadm", "iocage", json!({"action": "listjails"})),
        msg("client_page_iocage_df", "sysadm", "iocage", json!({"action": "df"})),
    ];
    for m in page.iter().chain(page.iter()) {
        ws.send(m);
    }
    let mut seen = std::collections::BTreeMap::<String, usize>::new();
    for _ in 0..4 {
        let r = ws.recv_within(Duration::from_secs(60)).expect("a page reply");
        assert_eq!(r["name"], "response", "{r}");
        *seen.entry(r["id"].as_str().unwrap().to_string()).or_default() += 1;
    }
    assert_eq!(seen.values().collect::<Vec<_>>(), [&2, &2], "each id answered twice: {seen:?}");

    // The 90 s keep-alive: identify and query with "".
    assert_eq!(ws.call(&msg("sysadm_client_identify", "rpc", "identify", json!("")))["args"]["type"], "server");
    assert_eq!(ws.call(&msg("sysadm_client_ping", "rpc", "query", json!("")))["name"], "response");

    // After its first login the client registers its key.
    let (private, pub_key) = client_key();
    let reg =
        json!({"action": "register_ssl_cert", "pub_key": pub_key, "nickname": "laptop", "email": "me@example.org"});
    let r = ws.call(&msg("sysadm-auto-cert-register", "rpc", "settings", reg));
    assert_eq!((r["name"].as_str(), &r["args"]), (Some("response"), &json!({})), "{r}");
    let r = ws.call(&msg("client_ssl_page_list", "rpc", "settings", json!({"action": "list_ssl_certs"})));
    let listed = r["args"][WHEEL][&pub_key].as_str().unwrap_or_else(|| panic!("key not listed: {r}"));
    assert!(listed.starts_with("Nickname: laptop\nEmail: me@example.org\nDate Registered: "), "{listed}");

    // A saved host reconnects with auth_ssl and the key alone.
    let mut saved = Ws::connect_tls(addr, "127.0.0.1", CERT);
    assert_eq!(saved.call(&msg("sysadm_client_identify", "rpc", "identify", json!("")))["args"]["type"], "server");
    let r = saved.call(&msg("sysadm-client-auth-auto", "rpc", "auth_ssl", json!("")));
    let test = r["args"]["test_string"].as_str().unwrap_or_else(|| panic!("no test string: {r}")).to_string();
    assert_eq!(test.len(), 40);
    let r = saved.call(&msg(
        "sysadm-client-auth-auto",
        "rpc",
        "auth_ssl",
        json!({"encrypted_string": encode(&private, &test)}),
    ));
    assert!(r["args"].as_array().is_some_and(|a| a.len() == 2), "key login: {r}");
    let r = saved.call(&msg("client_page_iocage_list", "sysadm", "iocage", json!({"action": "listjails"})));
    assert_eq!(r["name"], "response", "logged in with the key: {r}");
    // The same answer again (replayed) is refused: a test string is good once.
    let r = saved.call(&msg(
        "sysadm-client-auth-auto",
        "rpc",
        "auth_ssl",
        json!({"encrypted_string": encode(&private, &test)}),
    ));
    assert_eq!(r["args"]["code"], "401", "{r}");

    // Another key, not registered, gets nothing; nor does a test string
    // answered on another socket than the one it was given to.
    let stranger_key = RsaPrivateKey::from_pkcs8_pem(include_str!("fixtures/client-key-2.pem")).unwrap();
    let mut stranger = Ws::connect_tls(addr, "127.0.0.1", CERT);
    let r = stranger.call(&msg("sysadm-client-auth-auto", "rpc", "auth_ssl", json!("")));
    let test = r["args"]["test_string"].as_str().unwrap().to_string();
    let answer = json!({"encrypted_string": encode(&stranger_key, &test)});
    let r = stranger.call(&msg("sysadm-client-auth-auto", "rpc", "auth_ssl", answer));
    assert_eq!((r["name"].as_str(), r["args"]["code"].as_str()), (Some("error"), Some("401")), "{r}");
    let mut given = Ws::connect_tls(addr, "127.0.0.1", CERT);
    let test = given.call(&msg("a", "rpc", "auth_ssl", json!("")))["args"]["test_string"].as_str().unwrap().to_string();
    let mut other = Ws::connect_tls(addr, "127.0.0.1", CERT);
    let r = other.call(&msg("a", "rpc", "auth_ssl", json!({"encrypted_string": encode(&private, &test)})));
    assert_eq!(r["args"]["code"], "401", "a test string is good on its own socket only: {r}");

    // Revoked, the key no longer logs in.
    let r = ws.call(&msg(
        "client_ssl_page_revoke",
        "rpc",
        "settings",
        json!({"action": "revoke_ssl_cert", "user": WHEEL, "pub_key": pub_key}),
    ));
    assert_eq!(r["name"], "response", "{r}");
    let mut again = Ws::connect_tls(addr, "127.0.0.1", CERT);
    let test = again.call(&msg("a", "rpc", "auth_ssl", json!("")))["args"]["test_string"].as_str().unwrap().to_string();
    let r = again.call(&msg("a", "rpc", "auth_ssl", json!({"encrypted_string": encode(&private, &test)})));
    assert_eq!(r["args"]["code"], "401", "a revoked key: {r}");

    // Leaving: auth_clear with "" then a close frame 1000.
    ws.send(&msg("sysadm-client-auth-auto", "rpc", "auth_clear", json!("")));
    let r = ws.call(&msg("after", "sysadm", "iocage", json!({"action": "listjails"})));
    let r = if r["id"] == "sysadm-client-auth-auto" { ws.recv().unwrap() } else { r };
    assert_eq!((r["id"].as_str(), r["args"]["code"].as_str()), (Some("after"), Some("401")), "logged out: {r}");
    ws.close();

    // REST as sysadm's test script sent it (resty: PUT, Basic, JSON
    // Accept and Content-Type, over https).
    let basic = format!("Basic {}", b64(format!("{WHEEL}:{PASSWORD}").as_bytes()));
    let headers =
        [("Authorization", basic.as_str()), ("Accept", "application/json"), ("Content-Type", "application/json")];
    let r =
        client::https(d.rest, "127.0.0.1", CERT, "/sysadm/iocage", &headers, br#"{ "action":"listjails" }"#).unwrap();
    assert_eq!(r.status, 200, "{}", r.raw);
    assert!(r.body["args"]["listjails"].is_object(), "{}", r.raw);
    assert!(d.stop());
}

const RELEASE: &str = "13.2-RELEASE";

/// The `iocage` events a socket received, as (event, uuid, changed).
fn jail_events(ws: &mut Ws, until_event: &str, uuid: &str) -> Vec<(String, String, Vec<String>)> {
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < deadline, "no {until_event} of {uuid} within 60 s; got {out:?}");
        let Some(m) = ws.recv_within(Duration::from_secs(60)) else { panic!("socket closed; got {out:?}") };
        if m["name"] != "iocage" || m["args"]["event"] == "progress" {
            continue;
        }
        let e = &m["args"];
        let changed = e["changed"].as_array().map(|a| a.iter().map(|c| c.as_str().unwrap().to_string()).collect());
        let item = (
            e["event"].as_str().unwrap().to_string(),
            e["uuid"].as_str().unwrap().to_string(),
            changed.unwrap_or_default(),
        );
        let done = item.0 == until_event && item.1 == uuid;
        out.push(item);
        if done {
            return out;
        }
    }
}

#[test]
fn subscribers_see_every_jail_change_in_order() {
    let _g = lock();
    let f = Fixture::fresh();
    f.static_release(RELEASE);
    let d = Daemon::start(&[]);
    let mut a = Ws::connect(d.ws);
    let mut b = Ws::connect(d.ws);
    for ws in [&mut a, &mut b] {
        let r = ws.call(&msg("sub", "events", "subscribe", json!("iocage")));
        assert_eq!(r["args"]["subscribe"], "iocage", "{r}");
    }
    // Through the API: create, start, stop.
    let r =
        call(&d, json!({"action": "createjail", "props": format!("release={RELEASE} tag=watched"), "switches": "-c"}));
    let uuid = r["success"]["Successfully created"].as_str().unwrap().split_whitespace().next().unwrap().to_string();
    let dataset = format!("{}/iocage/jails/{uuid}", rig::pool());
    let mut want: Vec<(&str, Vec<&str>)> = vec![("created", vec![])];
    let r = call(&d, json!({"action": "startjail", "jail": "watched"}));
    assert!(r["watched"].is_object(), "{r}");
    want.extend([("started", vec![]), ("properties", vec!["last_started"])]);
    let r = call(&d, json!({"action": "stopjail", "jail": "watched"}));
    assert!(r["watched"].is_object(), "{r}");
    want.push(("stopped", vec![]));
    let head_a = jail_events(&mut a, "stopped", &uuid);
    let head_b = jail_events(&mut b, "stopped", &uuid);
    // Behind its back: a property, then a limit, with `zfs set`.
    zfs(&["set", "org.freebsd.iocage:notes=set behind its back", &dataset]);
    want.push(("properties", vec!["notes"]));
    let mut tail_a = jail_events(&mut a, "properties", &uuid);
    zfs(&["set", "org.freebsd.iocage:memoryuse=1G:deny", &dataset]);
    want.push(("limits", vec!["memoryuse"]));
    tail_a.extend(jail_events(&mut a, "limits", &uuid));
    // Started again (a second later, so that last_started changes), then
    // ended by another tool, then its dataset destroyed with `zfs destroy`.
    std::thread::sleep(Duration::from_millis(1100));
    let r = call(&d, json!({"action": "startjail", "jail": "watched"}));
    assert!(r["watched"].is_object(), "{r}");
    want.extend([("started", vec![]), ("properties", vec!["last_started"])]);
    // Its last_started is written after it runs: seen before the kill, so
    // that one round of the watcher cannot see both.
    tail_a.extend(jail_events(&mut a, "properties", &uuid));
    rig::host::kill_jail(&uuid);
    want.push(("stopped", vec![]));
    tail_a.extend(jail_events(&mut a, "stopped", &uuid));
    zfs(&["destroy", "-r", &dataset]);
    want.push(("destroyed", vec![]));
    tail_a.extend(jail_events(&mut a, "destroyed", &uuid));
    let tail_b = jail_events(&mut b, "destroyed", &uuid);
    // What each socket saw of this jail: every change, in order, once.
    let of_jail = |parts: [&[(String, String, Vec<String>)]; 2]| -> Vec<(String, Vec<String>)> {
        parts.concat().into_iter().filter(|e| e.1 == uuid).map(|e| (e.0, e.2)).collect()
    };
    let want: Vec<(String, Vec<String>)> =
        want.iter().map(|(e, c)| (e.to_string(), c.iter().map(|s| s.to_string()).collect())).collect();
    assert_eq!(of_jail([&head_a, &tail_a]), want, "socket a");
    assert_eq!(of_jail([&head_b, &tail_b]), want, "socket b");
    // Nothing more about it comes.
    assert!(a.recv_within(Duration::from_secs(3)).is_none_or(|m| m["args"]["uuid"] != uuid.as_str()));
    assert!(d.stop());
}

/// The `iocage` events a socket receives until `last` says it is done.
fn events_until(ws: &mut Ws, mut last: impl FnMut(&Value) -> bool) -> Vec<Value> {
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        let Some(m) = ws.recv_within(Duration::from_secs(60)) else { break };
        if m["name"] != "iocage" {
            continue;
        }
        let done = last(&m["args"]);
        out.push(m["args"].clone());
        if done {
            return out;
        }
    }
    panic!("not done within 120 s; got {out:?}")
}

/// The progress events of `action`'s `step` among `events`, as (done, total),
/// checked to go forward to their end (the one event marked last, with
/// done = total and no error) in the unit named.
fn steps(events: &[Value], action: &str, step: &str, unit: &str) -> Vec<(u64, u64)> {
    let got: Vec<(u64, u64)> = events
        .iter()
        .filter(|e| e["event"] == "progress" && e["action"] == action && e["step"] == step)
        .inspect(|e| assert_eq!(e["unit"], unit, "{e}"))
        .map(|e| (e["done"].as_u64().unwrap(), e["total"].as_u64().unwrap()))
        .collect();
    assert!(got.windows(2).all(|w| w[0].0 <= w[1].0), "{action} {step} goes forward: {got:?}");
    let last = got.last().unwrap_or_else(|| panic!("no {action} {step} progress in {events:?}"));
    assert!(last.0 == last.1 && last.1 > 0, "{action} {step} ends done: {got:?}");
    let ends: Vec<&Value> =
        events.iter().filter(|e| e["action"] == action && e["step"] == step && e["last"] == true).collect();
    assert_eq!(ends.len(), 1, "one end: {ends:?}");
    assert!(ends[0]["error"].is_null(), "{}", ends[0]);
    got
}

#[test]
fn long_actions_say_how_far_they_are_and_cleanall_takes_every_kind_of_jail() {
    let _g = lock();
    let f = Fixture::fresh();
    f.static_release(RELEASE);
    f.base(RELEASE, &["bin", "lib"]);
    let d = Daemon::start(&[]);
    let mut ws = Ws::connect(d.ws);
    let r = ws.call(&msg("sub", "events", "subscribe", json!("iocage")));
    assert_eq!(r["args"]["subscribe"], "iocage", "{r}");
    // A thick jail: its copy reports bytes, from 0 to the end, before the
    // jail shows as created.
    let r = call(&d, json!({"action": "createjail", "props": format!("release={RELEASE} tag=thick"), "switches": ""}));
    let created = r["success"]["Successfully created"].as_str().unwrap_or_else(|| panic!("{r}"));
    let thick = created.split_whitespace().next().unwrap().to_string();
    let seen = events_until(&mut ws, |e| e["event"] == "created" && e["uuid"] == thick.as_str());
    let copy = steps(&seen, "createjail", "copy", "bytes");
    assert_eq!(copy[0].0, 0, "the first report is before any byte: {copy:?}");
    assert!(seen.iter().filter(|e| e["event"] == "progress").all(|e| e["target"] == thick.as_str()), "{seen:?}");
    // A clone, running, and a basejail besides it: cleanall stops the one,
    // and removes all three with the release and base they come from.
    let mut uuids = vec![thick];
    for (tag, switch) in [("cloned", "-c"), ("based", "-b")] {
        let r = call(
            &d,
            json!({"action": "createjail", "props": format!("release={RELEASE} tag={tag}"), "switches": switch}),
        );
        let created = r["success"]["Successfully created"].as_str().unwrap_or_else(|| panic!("{r}"));
        uuids.push(created.split_whitespace().next().unwrap().to_string());
    }
    let r = call(&d, json!({"action": "startjail", "jail": "cloned"}));
    assert!(r["cloned"].is_object(), "{r}");
    let _ = events_until(&mut ws, |e| e["event"] == "started");
    let r = call(&d, json!({"action": "cleanall"}));
    assert_eq!(r["success"], "All iocage datasets have been cleaned.", "{r}");
    let mut gone = std::collections::BTreeSet::new();
    let seen = events_until(&mut ws, |e| {
        if e["event"] == "destroyed" {
            gone.insert(e["uuid"].as_str().unwrap().to_string());
        }
        gone.len() == 3
    });
    let stopped = steps(&seen, "cleanall", "stop", "jails");
    assert!(stopped.iter().all(|s| *s == (1, 1)), "one jail to stop: {stopped:?}");
    let destroyed = steps(&seen, "cleanall", "destroy", "datasets");
    assert!(destroyed.last().unwrap().1 >= 5, "each jail, release and base, then the collections: {destroyed:?}");
    assert_eq!(gone, uuids.iter().cloned().collect());
    let left = zfs(&["list", "-H", "-r", "-t", "all", "-o", "name", &format!("{}/iocage", rig::pool())]);
    assert_eq!(left.trim(), format!("{}/iocage", rig::pool()), "nothing left under it");
    assert!(rig::host::leftovers(&uuids[1]).is_empty(), "the stopped clone left nothing");
    assert!(d.stop());
}

#[test]
fn a_configured_pool_exported_and_imported_again_reports_no_jail_destroyed() {
    let _g = lock();
    let f = Fixture::fresh();
    f.static_release(RELEASE);
    let d = Daemon::start(&["--pool", &f.pool]);
    let mut ws = Ws::connect(d.ws);
    let r = ws.call(&msg("sub", "events", "subscribe", json!("iocage")));
    assert_eq!(r["args"]["subscribe"], "iocage", "{r}");
    let r = call(&d, json!({"action": "createjail", "props": format!("release={RELEASE} tag=kept"), "switches": "-c"}));
    let created = r["success"]["Successfully created"].as_str().unwrap_or_else(|| panic!("{r}"));
    let uuid = created.split_whitespace().next().unwrap().to_string();
    events_until(&mut ws, |e| e["event"] == "created" && e["uuid"] == uuid.as_str());
    // Gone for a few of the watcher's rounds, then back (its vdev: tests/vm/guest-common.sh).
    rig::cmd("zpool", &["export", &f.pool]);
    std::thread::sleep(Duration::from_secs(3));
    rig::cmd("zpool", &["import", "-d", &format!("/var/lib/iocaged-{}", f.pool), &f.pool]);
    std::thread::sleep(Duration::from_secs(3));
    let mut seen = Vec::new();
    while let Some(m) = ws.recv_within(Duration::from_secs(1)) {
        if m["name"] == "iocage" {
            seen.push(m["args"].clone());
        }
    }
    assert!(seen.is_empty(), "the jail was neither destroyed nor created: {seen:?}");
    assert!(call(&d, json!({"action": "listjails"}))[&uuid].is_object(), "still listed");
    assert!(d.stop());
}
