//! `iocaged serve` against real ZFS (run in the guest by tests/vm/run.sh):
//! every request example of the API document for the read actions, over
//! REST and over WebSocket, compared with the document's reply; then the
//! bad-input cases, concurrency on one socket, and clean shutdown.
//!
//! The tests share the one test pool, so they take turns (`lock`).

mod rig;

use serde_json::{Value, json};

use rig::client::{self, Ws};
use rig::conformance::{conform, lock};
use rig::daemon::Daemon;
use rig::fixture::Fixture;
use rig::seed::{self, Example, Transport};

/// Property pairs as the fixture takes them.
fn pairs(props: &[(String, String)]) -> Vec<(&str, &str)> {
    props.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// A fresh layout with the jails the example's reply shows.
fn with_jails_shown(ex: &Example) -> Fixture {
    let f = Fixture::fresh();
    for (uuid, props) in seed::jails_shown(ex) {
        f.jail(&uuid, &pairs(&props));
    }
    f
}

#[test]
fn getdefaultsettings_matches_the_document() {
    conform("getdefaultsettings", true, |ex| {
        let f = Fixture::fresh();
        f.set_defaults(&seed::defaults_shown(ex));
        f
    });
}

#[test]
fn listjails_matches_the_document() {
    conform("listjails", true, with_jails_shown);
}

#[test]
fn df_matches_the_document() {
    conform("df", true, with_jails_shown);
}

#[test]
fn getjailsettings_matches_the_document() {
    conform("getjailsettings", true, with_jails_shown);
}

#[test]
fn activatepool_matches_the_document_and_marks_the_pool() {
    conform(
        "activatepool",
        false,
        |ex| if ex.args().contains_key("pool") { Fixture::inactive() } else { Fixture::fresh() },
    );
    let _g = lock();
    let f = Fixture::inactive();
    let d = Daemon::start(&[]);
    let r = client::rest(d.rest, &json!({"action": "activatepool", "pool": f.pool}));
    assert_eq!(r.body["args"]["activatepool"]["success"], format!("pool {} activated.", f.pool));
    assert_eq!(rig::get(&f.pool, "org.freebsd.ioc:active"), "yes");
    assert!(d.stop());
}

#[test]
fn deactivatepool_matches_the_document_and_clears_both_markers() {
    conform("deactivatepool", false, |_| Fixture::fresh());
    let _g = lock();
    let f = Fixture::inactive();
    rig::cmd("zpool", &["set", "comment=iocage", &f.pool]);
    let d = Daemon::start(&[]);
    let r = client::rest(d.rest, &json!({"action": "deactivatepool", "pool": f.pool}));
    assert_eq!(r.body["args"]["deactivatepool"]["success"], format!("pool {} deactivated.", f.pool));
    let comment = rig::cmd("zpool", &["get", "-H", "-o", "value", "comment", &f.pool]);
    assert!(matches!(comment.trim(), "" | "-"), "comment cleared, not {comment:?}");
    // Deactivating again: the pool is no longer active, and that is said.
    let r = client::rest(d.rest, &json!({"action": "deactivatepool", "pool": f.pool}));
    let err = r.body["args"]["deactivatepool"]["error"].as_str().unwrap().to_string();
    assert!(err.contains("not active") && err.contains(&f.pool), "{err}");
    assert!(d.stop());
}

/// The error message of an in-band error reply, or a panic naming the reply.
fn in_band_error(r: &Value, action: &str) -> String {
    r["args"][action]["error"].as_str().unwrap_or_else(|| panic!("no in-band error in {r}")).to_string()
}

#[test]
fn bad_arguments_are_answered_in_band_and_change_nothing() {
    let _g = lock();
    let f = Fixture::fresh();
    f.jail("0bf985de-ca0f-11e5-8d45-d05099728dbf", &[("tag", "test")]);
    f.jail("0bf9aaaa-ca0f-11e5-8d45-d05099728dbf", &[("tag", "other")]);
    let before = f.state();
    let d = Daemon::start(&[]);
    let cases: Vec<(Value, &str, Vec<&str>)> = vec![
        (json!({"action": "getjailsettings"}), "getjailsettings", vec!["Missing required keys", "jail"]),
        (
            json!({"action": "getjailsettings", "switches": "-r"}),
            "getjailsettings",
            vec!["Missing required keys", "prop"],
        ),
        (json!({"action": "getjailsettings", "jail": "test", "prop": "nosuch"}), "getjailsettings", vec!["nosuch"]),
        (
            json!({"action": "getjailsettings", "jail": "ghost", "prop": "vnet"}),
            "getjailsettings",
            vec!["ghost", "not found"],
        ),
        (
            json!({"action": "getjailsettings", "jail": "0bf9", "prop": "vnet"}),
            "getjailsettings",
            vec![
                "ambiguous",
                "0bf985de-ca0f-11e5-8d45-d05099728dbf (test)",
                "0bf9aaaa-ca0f-11e5-8d45-d05099728dbf (other)",
            ],
        ),
        (json!({"action": "getjailsettings", "jail": 5}), "getjailsettings", vec!["jail", "string"]),
        (json!({"action": "deactivatepool"}), "deactivatepool", vec!["Missing required keys", "pool"]),
        (json!({"action": "activatepool", "pool": "nosuchpool"}), "activatepool", vec!["nosuchpool", "does not exist"]),
    ];
    for (req, action, needles) in &cases {
        for transport in [Transport::Rest, Transport::WebSocket] {
            let reply = match transport {
                Transport::Rest => {
                    let r = client::rest(d.rest, req);
                    assert_eq!(r.status, 200, "{req}: {}", r.raw);
                    r.body
                }
                Transport::WebSocket => {
                    let mut ws = Ws::connect(d.ws);
                    ws.call(&json!({"id": "x", "name": "iocage", "namespace": "sysadm", "args": req}))
                }
            };
            let msg = in_band_error(&reply, action);
            for n in needles {
                assert!(msg.contains(n), "{req} over {transport:?}: {msg:?} should mention {n:?}");
            }
        }
    }
    assert_eq!(f.state(), before, "a failed read changed the pool");
    assert!(d.stop());
}

#[test]
fn no_active_pool_and_two_active_pools_are_errors() {
    let _g = lock();
    let f = Fixture::inactive();
    let d = Daemon::start(&[]);
    for action in ["listjails", "df", "getdefaultsettings"] {
        let msg = in_band_error(&client::rest(d.rest, &json!({"action": action})).body, action);
        assert!(msg.contains("no active pool") && msg.contains("activatepool"), "{msg}");
    }
    // A second pool marked the 1.7.x way, the first the later way: ambiguous.
    rig::zfs(&["set", "org.freebsd.ioc:active=yes", &f.pool]);
    // Beside the test pool's own vdev (tests/vm/guest-common.sh, vagrant/provision.sh).
    let vdev = format!("/var/lib/iocaged-{}/vdev-second", f.pool);
    rig::cmd("truncate", &["-s", "256M", &vdev]);
    rig::cmd("zpool", &["create", "-o", "cachefile=none", "-o", "comment=iocage", "second", &vdev]);
    // Reads find the pool in use afresh at most a second after the last
    // time (pools changed behind the daemon's back show within that).
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let msg = in_band_error(&client::rest(d.rest, &json!({"action": "listjails"})).body, "listjails");
    rig::cmd("zpool", &["destroy", "second"]);
    assert!(msg.contains("more than one") && msg.contains(&f.pool) && msg.contains("second"), "{msg}");
    assert!(d.stop());
}

#[test]
fn protocol_errors_over_rest() {
    let _g = lock();
    let _f = Fixture::fresh();
    let d = Daemon::start(&[]);
    let cases: [(&str, &str, &[u8], u16, &str); 7] = [
        ("PUT", "/sysadm/iocage", b"{not json", 400, "invalid JSON"),
        ("PUT", "/sysadm/iocage", b"[1,2]", 400, "object"),
        ("PUT", "/sysadm/iocage", b"{}", 400, "action"),
        ("POST", "/sysadm/iocage", br#"{"action":"ListJails"}"#, 400, "ListJails"),
        // A string is sysadm's plain-word args (rpc/query "simple-query"); a number is not args at all.
        ("PUT", "/sysadm/iocage", br#"{"args":3}"#, 400, "args"),
        ("PUT", "/sysadm/nosuch", br#"{"action":"listjails"}"#, 404, "sysadm/nosuch"),
        ("PUT", "/just-one-segment", b"{}", 404, "namespace"),
    ];
    for (method, path, body, status, needle) in cases {
        let r = client::http(d.rest, method, path, &[], body);
        assert_eq!(r.status, status, "{method} {path}: {}", r.raw);
        assert_eq!(r.body["args"]["code"], status.to_string(), "{}", r.raw);
        assert!(r.body["args"]["detail"].as_str().unwrap_or_default().contains(needle), "{}", r.raw);
    }
    // GET and POST work like PUT; the body may carry "args".
    for method in ["GET", "POST"] {
        let r = client::http(d.rest, method, "/sysadm/iocage", &[], br#"{"args":{"action":"listjails"}}"#);
        assert_eq!((r.status, r.body["args"]["listjails"].is_object()), (200, true), "{}", r.raw);
    }
    let r = client::http(d.rest, "DELETE", "/sysadm/iocage", &[], b"{}");
    assert_eq!(r.status, 400, "{}", r.raw);
    assert!(d.stop());
}

#[test]
fn protocol_errors_over_websocket_keep_the_id() {
    let _g = lock();
    let _f = Fixture::fresh();
    let d = Daemon::start(&[]);
    let mut ws = Ws::connect(d.ws);
    ws.send_text("{not json");
    let r = ws.recv().unwrap();
    assert_eq!((r["name"].as_str(), r["args"]["code"].as_str()), (Some("error"), Some("400")), "{r}");
    for (req, code) in [
        (json!({"id": "a1", "name": "iocage", "namespace": "sysadm", "args": {"action": "nope"}}), "400"),
        (json!({"id": "a2", "name": "", "namespace": "sysadm", "args": {}}), "400"),
        (json!({"id": "a3", "name": "iocage", "namespace": "sysadm", "args": [1]}), "400"),
        (json!({"id": "a4", "name": "nosuch", "namespace": "sysadm", "args": {}}), "404"),
    ] {
        let r = ws.call(&req);
        assert_eq!(r["id"], req["id"], "{r}");
        assert_eq!((r["name"].as_str(), r["namespace"].as_str()), (Some("error"), Some("error")), "{r}");
        assert_eq!(r["args"]["code"], code, "{r}");
    }
    // Without "args" the whole object is the args; an empty id echoes the name.
    let r = ws.call(&json!({"id": "", "name": "iocage", "namespace": "sysadm", "action": "listjails"}));
    assert_eq!((r["name"].as_str(), r["args"]["listjails"].is_object()), (Some("iocage"), true), "{r}");
    let r = ws.call(&json!({"id": "i", "name": "identify", "namespace": "rpc"}));
    assert_eq!(r["args"]["type"], "server", "{r}");
    assert!(d.stop());
}

#[test]
fn concurrent_requests_on_one_socket_are_answered_by_id() {
    let _g = lock();
    let f = Fixture::fresh();
    for i in 0..5 {
        f.jail(&format!("0000000{i}-0000-4000-8000-000000000000"), &[("tag", &format!("j{i}"))]);
    }
    let d = Daemon::start(&[]);
    let mut ws = Ws::connect(d.ws);
    let actions = ["listjails", "df", "getdefaultsettings"];
    let n = 30;
    for i in 0..n {
        let action = actions[i % actions.len()];
        ws.send(
            &json!({"id": format!("req-{i}"), "name": "iocage", "namespace": "sysadm", "args": {"action": action}}),
        );
    }
    let mut seen = std::collections::BTreeMap::new();
    for _ in 0..n {
        let r = ws.recv().expect("a reply for every request");
        let id = r["id"].as_str().unwrap().to_string();
        let i: usize = id.trim_start_matches("req-").parse().unwrap();
        let action = actions[i % actions.len()];
        assert!(r["args"][action].is_object(), "reply {id} is for {action}: {r}");
        assert!(seen.insert(id, ()).is_none(), "one reply per id");
    }
    assert_eq!(seen.len(), n);
    assert_eq!(
        ws.call(&json!({"id": "z", "name": "iocage", "namespace": "sysadm", "args": {"action": "listjails"}}))["args"]
            ["listjails"]
            .as_object()
            .unwrap()
            .len(),
        5
    );
    assert!(d.stop(), "clean shutdown with a WebSocket open");
}

/// listjails answers from an index kept between requests; a change made
/// behind the daemon's back (with the `zfs` command) shows at once.
#[test]
fn a_pool_activated_behind_the_daemon_s_back_is_seen_at_once() {
    let _g = lock();
    let f = Fixture::fresh();
    let d = Daemon::start(&[]);
    rig::zfs(&["inherit", "org.freebsd.ioc:active", &f.pool]);
    // Long enough for the jail watcher (every second) to find no pool.
    std::thread::sleep(std::time::Duration::from_millis(2500));
    rig::zfs(&["set", "org.freebsd.ioc:active=yes", &f.pool]);
    let r = client::rest(d.rest, &json!({"action": "listjails"}));
    assert_eq!(r.body["args"]["listjails"], json!({}), "no failure remembered: {}", r.raw);
    assert!(d.stop());
}

/// The daemon's threads' names.
fn threads(d: &Daemon) -> Vec<String> {
    let pid = d.pid().expect("the daemon runs");
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("its tasks");
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
        .map(|c| c.trim().into())
        .collect()
}

#[test]
fn listings_answered_from_zfs_events_see_every_outside_change_at_once() {
    let _g = lock();
    let f = Fixture::fresh();
    let a = f.jail("aaaaaaaa-0000-4000-8000-000000000001", &[("tag", "t0")]);
    let log = "/tmp/iocaged-events-test.log";
    let d = Daemon::start_logging(&[], Some(log));
    assert!(threads(&d).iter().any(|t| t == "zfs-events"), "ZFS's events are followed: {:?}", threads(&d));
    let tag = |d: &Daemon| {
        let r = client::rest(d.rest, &json!({"action": "listjails"}));
        r.body["args"]["listjails"]["aaaaaaaa-0000-4000-8000-000000000001"]["tag"].clone()
    };
    // Each change made by another process, then at once a listing, a
    // setting and a listing over WebSocket. ZFS announces the change before
    // `zfs set` returns; between that and the follower counting it is a
    // window of microseconds, so the first listing shows it but in rare
    // rounds (each shows it within the second the count alone is trusted).
    // Without the events followed, most rounds' first listing is stale.
    let mut ws = Ws::connect(d.ws);
    let mut stale = Vec::new();
    for i in 1..=25 {
        let want = format!("t{i}");
        rig::zfs(&["set", &format!("org.freebsd.iocage:tag={want}"), &a]);
        let set = std::time::Instant::now();
        if tag(&d) != want.as_str() {
            stale.push(i);
            while tag(&d) != want.as_str() {
                assert!(set.elapsed() < std::time::Duration::from_secs(3), "round {i}: never shown");
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
        let r = client::rest(d.rest, &json!({"action": "getjailsettings", "jail": &want, "prop": "tag"}));
        assert_eq!(r.body["args"]["getjailsettings"][&want]["tag"], want.as_str(), "round {i}: {}", r.raw);
        let r = ws.call(
            &json!({"namespace": "sysadm", "name": "iocage", "id": format!("l{i}"), "args": {"action": "listjails"}}),
        );
        assert_eq!(r["args"]["listjails"]["aaaaaaaa-0000-4000-8000-000000000001"]["tag"], want.as_str(), "{r}");
    }
    assert!(stale.len() <= 2, "the first listing after a change was stale in rounds {stale:?}");
    // Repeated listings in a quiet moment are answered from memory.
    for _ in 0..20 {
        assert_eq!(tag(&d), "t25");
    }
    // ZFS drops an event larger than its buffer (the record carries the
    // value) without telling anyone: such a change still shows, within the
    // time the count alone is trusted (a second).
    let long = "x".repeat(7000);
    rig::zfs(&["set", &format!("org.freebsd.iocage:tag={long}"), &a]);
    let set = std::time::Instant::now();
    while tag(&d) != long.as_str() {
        assert!(set.elapsed() < std::time::Duration::from_secs(3), "a change ZFS did not announce never showed");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(d.stop());
    let log = std::fs::read_to_string(log).unwrap();
    let counts = log.lines().find_map(|l| l.split_once("index=")).map(|(_, c)| c.to_string()).unwrap_or_default();
    let from_memory: u64 = counts.split_whitespace().next().and_then(|n| n.parse().ok()).unwrap_or(0);
    assert!(from_memory >= 10, "most quiet listings came from memory: {counts}");
}

#[test]
fn a_configured_pool_exported_is_not_listed_from_memory() {
    let _g = lock();
    let f = Fixture::fresh();
    f.jail("aaaaaaaa-0000-4000-8000-000000000001", &[("tag", "one")]);
    let d = Daemon::start(&["--pool", &f.pool]);
    let list = |d: &Daemon| client::rest(d.rest, &json!({"action": "listjails"})).body;
    for _ in 0..3 {
        assert_eq!(list(&d)["args"]["listjails"]["aaaaaaaa-0000-4000-8000-000000000001"]["tag"], "one");
    }
    rig::cmd("zpool", &["export", &f.pool]);
    let r = list(&d);
    rig::cmd("zpool", &["import", "-d", &format!("/var/lib/iocaged-{}", f.pool), &f.pool]);
    // Its jails are not where they were: not listed (as before the daemon
    // followed ZFS's events, the pool's jails dataset is not found).
    assert_eq!(r["args"]["listjails"], json!({}), "{r}");
    assert_eq!(list(&d)["args"]["listjails"]["aaaaaaaa-0000-4000-8000-000000000001"]["tag"], "one", "imported again");
    assert!(d.stop());
}

#[test]
fn listings_see_outside_changes_at_once() {
    let _g = lock();
    let f = Fixture::fresh();
    let a = f.jail("aaaaaaaa-0000-4000-8000-000000000001", &[("tag", "one"), ("boot", "off")]);
    let d = Daemon::start(&[]);
    let list = |d: &Daemon| client::rest(d.rest, &json!({"action": "listjails"})).body["args"]["listjails"].clone();
    let first = list(&d);
    assert_eq!(first["aaaaaaaa-0000-4000-8000-000000000001"]["tag"], "one", "{first}");
    assert_eq!(list(&d), first, "nothing changed: the same answer");
    rig::zfs(&["set", "org.freebsd.iocage:tag=renamed", "org.freebsd.iocage:boot=on", &a]);
    let v = list(&d);
    assert_eq!(v["aaaaaaaa-0000-4000-8000-000000000001"]["tag"], "renamed", "{v}");
    assert_eq!(v["aaaaaaaa-0000-4000-8000-000000000001"]["boot"], "on", "{v}");
    let b = f.jail("bbbbbbbb-0000-4000-8000-000000000002", &[("tag", "two")]);
    assert_eq!(list(&d)["bbbbbbbb-0000-4000-8000-000000000002"]["tag"], "two");
    // Inherited from a parent: the only change is on another dataset.
    rig::zfs(&["set", "org.freebsd.iocage:boot=inherited", &format!("{}/iocage/jails", f.pool)]);
    let v = list(&d);
    assert_eq!(v["bbbbbbbb-0000-4000-8000-000000000002"]["boot"], "inherited", "{v}");
    assert_eq!(v["aaaaaaaa-0000-4000-8000-000000000001"]["boot"], "on", "a local value stays: {v}");
    rig::zfs(&["destroy", "-r", &a]);
    let v = list(&d);
    assert!(v.get("aaaaaaaa-0000-4000-8000-000000000001").is_none(), "{v}");
    let r = client::rest(d.rest, &json!({"action": "getjailsettings", "jail": "two", "prop": "tag"}));
    assert_eq!(r.body["args"]["getjailsettings"], json!({"two": {"tag": "two"}}));
    // Changes elsewhere on the pool leave the listing as it was; a jail
    // renamed shows under its new name only.
    let unchanged = list(&d);
    rig::zfs(&["create", "-p", "-o", "org.freebsd.iocage:tag=x", &format!("{}/iocage/releases/r/root", f.pool)]);
    assert_eq!(list(&d), unchanged);
    rig::zfs(&["rename", &b, &format!("{}/iocage/jails/dddddddd-0000-4000-8000-000000000004", f.pool)]);
    let v = list(&d);
    assert!(v.get("bbbbbbbb-0000-4000-8000-000000000002").is_none(), "{v}");
    assert_eq!(v["dddddddd-0000-4000-8000-000000000004"]["tag"], "two", "{v}");
    // A whole new layout under the same name: not mistaken for the old one.
    let f = Fixture::fresh();
    f.jail("cccccccc-0000-4000-8000-000000000003", &[("tag", "three")]);
    let v = list(&d);
    assert_eq!(v.as_object().map(|o| o.len()), Some(1), "{v}");
    assert_eq!(v["cccccccc-0000-4000-8000-000000000003"]["tag"], "three");
    assert!(d.stop());
}
