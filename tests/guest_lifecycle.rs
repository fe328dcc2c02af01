//! The jail lifecycle against real ZFS with the host's runtime (Linux: in
//! the guest; FreeBSD: vagrant/): startjail, stopjail, capjail and execjail
//! on jails of a small release made of the host's static multi-call binary.
//! The document's examples; what a running jail is (its own hostname,
//! processes, limits); stop leaving no process, mount, cgroup or rule
//! behind; failures part-way leaving nothing; a restarted daemon finding
//! its running jails; one jail's starts and stops taking turns. What the
//! kernel shows is read through `rig::host`, one function per question.

mod rig;

use std::collections::BTreeSet;

use serde_json::{Value, json};

use rig::call;
use rig::client::Ws;
use rig::conformance::{conform, lock};
use rig::daemon::Daemon;
use rig::fixture::Fixture;
use rig::host::{self, mounts_under, processes};
use rig::{get, zfs};

const RELEASE: &str = "13.2-RELEASE";

/// The test's turn on the pool, a fresh pool with the small release, and
/// a daemon (dropped in reverse: the daemon first, the turn last).
fn small_pool() -> (std::sync::MutexGuard<'static, ()>, Fixture, Daemon) {
    let turn = lock();
    let f = Fixture::fresh();
    f.static_release(RELEASE);
    (turn, f, Daemon::start(&[]))
}

/// A jail made from the small release with `props` (a createjail props
/// string); returns its UUID.
fn small_jail(d: &Daemon, props: &str) -> String {
    let r = call(d, json!({"action": "createjail", "props": format!("release={RELEASE} {props}"), "switches": "-c"}));
    let s = r["success"]["Successfully created"].as_str().unwrap_or_else(|| panic!("not created: {r}"));
    s.split_whitespace().next().unwrap().to_string()
}

/// The pool the document's examples need: jail `test`, up or down.
fn test_jail(up: bool) -> Fixture {
    let f = Fixture::fresh();
    f.static_release(RELEASE);
    let d = Daemon::start(&[]);
    small_jail(&d, "tag=test mount_procfs=1");
    if up {
        let r = call(&d, json!({"action": "startjail", "jail": "test"}));
        assert!(r["test"]["+ Starting services OK"].is_string(), "{r}");
    }
    assert!(d.stop());
    f
}

fn listed(d: &Daemon, uuid: &str) -> Value {
    call(d, json!({"action": "listjails"}))[uuid].clone()
}

/// Asserts that nothing of a jail is left in the kernel.
fn assert_gone(d: &Daemon, uuid: &str) {
    let l = listed(d, uuid);
    assert_eq!((l["state"].as_str(), l["jid"].as_str()), (Some("down"), Some("-")), "{l}");
    assert_eq!(host::leftovers(uuid), Vec::<String>::new(), "the runtime left these");
    assert_eq!(mounts_under(uuid), Vec::<String>::new(), "mounts are left");
    assert_eq!(processes(&["sleep", "100000"]), Vec::<String>::new(), "the jail's rc process is left");
}

#[test]
fn startjail_matches_the_document() {
    conform("startjail", false, |ex| test_jail(ex.reply.to_string().contains("already up")));
}

#[test]
fn stopjail_matches_the_document() {
    conform("stopjail", false, |ex| test_jail(!ex.reply.to_string().contains("already down")));
}

#[test]
fn capjail_matches_the_document() {
    conform("capjail", false, |_| test_jail(true));
}

#[test]
fn execjail_matches_the_document() {
    conform("execjail", false, |_| test_jail(true));
}

#[test]
fn a_jail_runs_isolated_and_stops_without_a_trace() {
    let (_g, f, d) = small_pool();
    let uuid = small_jail(&d, "tag=bb host_hostname=bbhost mount_procfs=1");
    let before = zfs(&["list", "-H", "-t", "all", "-o", "name", "-r", &f.pool]);

    let r = call(&d, json!({"action": "startjail", "jail": "bb"}));
    let keys: Vec<&String> = r["bb"].as_object().unwrap_or_else(|| panic!("{r}")).keys().collect();
    assert_eq!(
        keys,
        [
            &format!("* Starting {uuid} (bb)"),
            &"+ Started (shared IP mode) OK".to_string(),
            &"+ Starting services OK".to_string()
        ],
        "{r}"
    );
    let l = listed(&d, &uuid);
    assert_eq!(l["state"], "up", "{l}");
    let jid = l["jid"].as_str().unwrap().to_string();
    host::assert_runs_as(&jid, &uuid);
    // Recorded right after the reply (startjail answers once the jail runs).
    let recorded = || get(&format!("{}/iocage/jails/{uuid}", f.pool), "org.freebsd.iocage:last_started");
    let since = std::time::Instant::now();
    while !recorded().starts_with("20") {
        assert!(since.elapsed() < std::time::Duration::from_secs(10), "last_started: {}", recorded());
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(
        std::fs::read_to_string(format!("/iocage/jails/{uuid}/root/tmp/rc.ran")).unwrap(),
        "bbhost\n",
        "exec_start ran /etc/rc inside the jail"
    );

    // Inside: its own hostname, its own processes only, its own users.
    let r = call(&d, json!({"action": "execjail", "jail": "bb", "user": "root", "command": "hostname"}));
    assert_eq!(r, json!({"success": {"bbhost": ""}}));
    let r = call(
        &d,
        json!({"action": "execjail", "jail": "bb", "user": "root", "command": "ps -o pid,comm", "output": "lossless"}),
    );
    let stdout = r["stdout"].as_str().unwrap_or_else(|| panic!("{r}"));
    let procs: Vec<(u32, String)> = stdout
        .lines()
        .skip(1)
        .map(|l| {
            let mut f = l.split_whitespace();
            (f.next().unwrap().parse().unwrap(), f.next().unwrap_or_default().to_string())
        })
        .collect();
    let comms: BTreeSet<&str> = procs.iter().map(|(_, c)| c.as_str()).collect();
    assert!(comms.contains("sleep") && comms.contains("ps"), "{stdout}");
    if cfg!(target_os = "linux") {
        assert!(procs.iter().any(|(p, _)| *p == 1), "the jail's init is pid 1: {stdout}");
    }
    assert!(procs.len() <= 5, "only the jail's processes are visible: {stdout}");
    assert_eq!(r["exit_code"], 0);
    let r = call(&d, json!({"action": "execjail", "jail": "bb", "user": "alice", "command": "id -u; id -G; pwd"}));
    assert_eq!(r, json!({"success": {"1001": "", "1001 20": "", "/home/alice": ""}}));

    // Root in the jail is not the host's root: no mounting, and confined
    // (Linux: a bounding set of the usual container capabilities only).
    let (command, proof) = host::CONFINED;
    let r = call(&d, json!({"action": "execjail", "jail": "bb", "user": "root", "command": command}));
    assert_eq!(r, json!({"success": {proof: ""}}));
    let r =
        call(&d, json!({"action": "execjail", "jail": "bb", "user": "root", "command": "mount -t tmpfs none /mnt"}));
    assert!(r["error"].as_str().is_some_and(|e| e.contains("exited with status")), "mounting must fail: {r}");

    // Output whole, and failures told.
    let r = call(
        &d,
        json!({"action": "execjail", "jail": "bb", "user": "root", "command": "printf 'a\\n\\na\\n'; echo err >&2; exit 3", "output": "lossless"}),
    );
    assert_eq!(
        (r["stdout"].as_str(), r["stderr"].as_str(), &r["exit_code"]),
        (Some("a\n\na\n"), Some("err\n"), &json!(3))
    );
    assert!(r["error"].as_str().unwrap().contains("exited with status 3: err"), "{r}");
    let r = call(&d, json!({"action": "execjail", "jail": "bb", "user": "mallory", "command": "id"}));
    assert!(r["error"].as_str().unwrap().contains("no user \"mallory\""), "{r}");

    // capjail: limits from the properties into the kernel (Linux: the
    // jail's cgroup; FreeBSD: rctl rules).
    let capped = json!({"success": "jail bb capped."});
    assert_eq!(call(&d, json!({"action": "capjail", "jail": "bb"})), capped);
    assert_eq!(host::memory_limit(&uuid), None, "rlimits=off: no limit");
    let ds = format!("{}/iocage/jails/{uuid}", f.pool);
    zfs(&["set", "org.freebsd.iocage:rlimits=on", "org.freebsd.iocage:memoryuse=64M:deny", &ds]);
    assert_eq!(call(&d, json!({"action": "capjail", "jail": "bb"})), capped);
    assert_eq!(host::memory_limit(&uuid), Some(64 << 20));
    // A limit the property cannot mean (set behind iocaged's back), and one
    // the runtime cannot enforce: refused by name, and nothing changes.
    zfs(&["set", "org.freebsd.iocage:memoryuse=lots:deny", &ds]);
    let r = call(&d, json!({"action": "capjail", "jail": "bb"}));
    assert!(r["error"].as_str().unwrap().contains("memoryuse=lots:deny"), "{r}");
    assert_eq!(host::memory_limit(&uuid), Some(64 << 20), "a refused cap changes nothing");
    zfs(&["set", "org.freebsd.iocage:memoryuse=64M:deny", "org.freebsd.iocage:vmemoryuse=1G:deny", &ds]);
    let r = call(&d, json!({"action": "capjail", "jail": "bb"}));
    if host::REFUSES_VMEMORYUSE {
        assert!(r["error"].as_str().unwrap().contains("vmemoryuse=1G:deny"), "{r}");
    } else {
        assert_eq!(r, capped);
    }
    assert_eq!(host::memory_limit(&uuid), Some(64 << 20));
    zfs(&["set", "org.freebsd.iocage:vmemoryuse=off", &ds]);

    // Starting again is "already up"; stop removes everything.
    let r = call(&d, json!({"action": "startjail", "jail": "bb"}));
    assert_eq!(r, json!({"bb": {"INFO": format!(" {uuid} (bb) is already up")}}));
    let r = call(&d, json!({"action": "stopjail", "jail": uuid}));
    // An object's keys: the original's shape keeps no order (JSON objects
    // come out sorted, as the document shows them).
    let keys: BTreeSet<&str> =
        r[&uuid].as_object().unwrap_or_else(|| panic!("{r}")).keys().map(String::as_str).collect();
    let want = format!("* Stopping {uuid} (bb)");
    let want = BTreeSet::from([
        want.as_str(),
        "+ Running pre-stop OK",
        "+ Stopping services OK",
        "+ Removing jail process OK",
        "+ Running post-stop OK",
    ]);
    assert_eq!(keys, want, "{r}");
    assert!(std::path::Path::new(&format!("/iocage/jails/{uuid}/root/tmp/rc.shutdown")).exists(), "exec_stop ran");
    assert_gone(&d, &uuid);
    let r = call(&d, json!({"action": "stopjail", "jail": "bb"}));
    assert_eq!(r, json!({"bb": {"INFO": format!(" {uuid} (bb) is already down")}}));
    let r = call(&d, json!({"action": "execjail", "jail": "bb", "user": "root", "command": "id"}));
    assert!(r["error"].as_str().unwrap().contains("is not running"), "{r}");
    assert_eq!(zfs(&["list", "-H", "-t", "all", "-o", "name", "-r", &f.pool]), before, "no dataset was added or lost");
    assert!(d.stop());
}

#[test]
fn exec_timeout_kills_a_hanging_start_and_undoes_it() {
    let (_g, f, d) = small_pool();
    let uuid = small_jail(&d, "tag=hang mount_procfs=1 exec_start=\"sleep 100000\" exec_timeout=2");
    let r = call(&d, json!({"action": "startjail", "jail": "hang"}));
    let e = r["error"].as_str().unwrap_or_else(|| panic!("{r}"));
    assert!(e.contains("exec_start failed") && e.contains("timeout") && e.contains("removed again"), "{e}");
    assert_gone(&d, &uuid);
    assert_eq!(get(&format!("{}/iocage/jails/{uuid}", f.pool), "org.freebsd.iocage:last_started"), "none");
    assert!(d.stop());
}

#[test]
fn a_failing_prestart_leaves_nothing_behind() {
    let (_g, _f, d) = small_pool();
    // Host hooks from API clients need the configuration's consent.
    drop(d);
    let d = Daemon::with_config("allow_host_hooks = true\n");
    let uuid = small_jail(&d, "tag=pre mount_procfs=1 exec_prestart=\"echo no way >&2; exit 4\"");
    let r = call(&d, json!({"action": "startjail", "jail": "pre"}));
    let e = r["error"].as_str().unwrap_or_else(|| panic!("{r}"));
    assert!(e.contains("exec_prestart failed") && e.contains("exited with status 4: no way"), "{e}");
    assert_gone(&d, &uuid);
    // An executable hook file in the jail's directory wins over the property.
    let hook = format!("/iocage/jails/{uuid}/prestart");
    std::fs::write(&hook, "#!/bin/sh\necho \"$IOCAGE_UUID\" > \"$IOCAGE_PATH/tmp/prestart.ran\"\n").unwrap();
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let r = call(&d, json!({"action": "startjail", "jail": "pre"}));
    assert!(r["pre"]["+ Starting services OK"].is_string(), "{r}");
    assert_eq!(
        std::fs::read_to_string(format!("/iocage/jails/{uuid}/root/tmp/prestart.ran")).unwrap(),
        format!("{uuid}\n")
    );
    assert!(call(&d, json!({"action": "stopjail", "jail": "pre"}))["pre"]["+ Removing jail process OK"].is_string());
    assert_gone(&d, &uuid);
    assert!(d.stop());
}

#[test]
fn a_restarted_daemon_finds_and_stops_a_running_jail() {
    let (_g, _f, d) = small_pool();
    let uuid = small_jail(&d, "tag=keep mount_procfs=1");
    assert!(call(&d, json!({"action": "startjail", "jail": "keep"}))["keep"].is_object());
    let jid = listed(&d, &uuid)["jid"].clone();
    assert!(d.stop(), "iocaged did not shut down cleanly");
    assert_eq!(processes(&["sleep", "100000"]).len(), 1, "the jail outlives the daemon");

    let d = Daemon::start(&[]);
    let l = listed(&d, &uuid);
    assert_eq!((l["state"].as_str(), &l["jid"]), (Some("up"), &jid), "{l}");
    let r = call(&d, json!({"action": "execjail", "jail": "keep", "user": "root", "command": "hostname"}));
    assert_eq!(r, json!({"success": {uuid.clone(): ""}}), "hostname defaults to the UUID");
    assert!(call(&d, json!({"action": "stopjail", "jail": "keep"}))["keep"]["+ Removing jail process OK"].is_string());
    assert_gone(&d, &uuid);
    assert!(d.stop());
}

#[test]
fn starts_and_stops_of_one_jail_take_turns() {
    let (_g, _f, d) = small_pool();
    let uuid = small_jail(&d, "tag=turns mount_procfs=1");
    for (action, done, already) in [
        ("startjail", "+ Starting services OK", "is already up"),
        ("stopjail", "+ Removing jail process OK", "is already down"),
    ] {
        // Six requests at once over one WebSocket, each to be answered.
        let mut ws = Ws::connect(d.ws);
        for i in 0..6 {
            ws.send(&json!({"id": format!("r{i}"), "namespace": "sysadm", "name": "iocage", "args": {"action": action, "jail": "turns"}}));
        }
        let replies: Vec<Value> = (0..6).map(|_| ws.recv().expect("a reply")).collect();
        let bodies: Vec<&Value> = replies.iter().map(|r| &r["args"][action]["turns"]).collect();
        let did = bodies.iter().filter(|b| b[done].is_string()).count();
        let skipped = bodies.iter().filter(|b| b["INFO"].as_str().is_some_and(|i| i.contains(already))).count();
        assert_eq!(
            (did, skipped),
            (1, 5),
            "{action}: exactly one did it, the rest waited and saw it done: {replies:?}"
        );
    }
    assert_gone(&d, &uuid);
    assert!(d.stop());
}

#[test]
fn cleanjails_stops_running_jails_before_destroying_them() {
    let (_g, f, d) = small_pool();
    let up = small_jail(&d, "tag=up mount_procfs=1");
    let down = small_jail(&d, "tag=down");
    assert!(call(&d, json!({"action": "startjail", "jail": "up"}))["up"].is_object());
    let r = call(&d, json!({"action": "destroyjail", "jail": "up"}));
    assert!(r["error"].as_str().unwrap().contains("is running"), "destroyjail refuses a running jail: {r}");
    assert_eq!(call(&d, json!({"action": "cleanjails"})), json!({"success": "All jails have been cleaned."}));
    for uuid in [&up, &down] {
        assert_eq!(host::leftovers(uuid), Vec::<String>::new(), "the runtime left these");
        assert_eq!(mounts_under(uuid), Vec::<String>::new(), "mounts are left");
    }
    assert_eq!(processes(&["sleep", "100000"]), Vec::<String>::new(), "the jail's rc process is left");
    assert_eq!(
        zfs(&["list", "-H", "-o", "name", "-d", "1", &format!("{}/iocage/jails", f.pool)]).trim(),
        format!("{}/iocage/jails", f.pool)
    );
    assert!(d.stop());
}

/// destroyjail waits for the jail's turn, then acts on the jail it waited
/// for, not on whatever the client's name means by then: here the tag
/// moves to another jail while a start holds the first one's turn. (Before
/// the fix it resolved the name again and destroyed the other jail.)
#[test]
fn destroyjail_acts_on_the_jail_whose_turn_it_waited_for() {
    let (_g, f, d) = small_pool();
    let first = small_jail(&d, "tag=x mount_procfs=1 exec_start='/bin/sleep 6'");
    let mut ws = Ws::connect(d.ws);
    ws.send(
        &json!({"id": "start", "namespace": "sysadm", "name": "iocage", "args": {"action": "startjail", "jail": "x"}}),
    );
    // The start holds the turn while its exec_start runs.
    let t = std::time::Instant::now();
    while processes(&["/bin/sleep", "6"]).is_empty() {
        assert!(t.elapsed() < std::time::Duration::from_secs(60), "exec_start never ran");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    ws.send(&json!({"id": "destroy", "namespace": "sysadm", "name": "iocage", "args": {"action": "destroyjail", "jail": "x"}}));
    // Let the destroy name its jail and queue for the turn, then move the tag.
    std::thread::sleep(std::time::Duration::from_secs(2));
    zfs(&["set", "org.freebsd.iocage:tag=moved", &format!("{}/iocage/jails/{first}", f.pool)]);
    let second = small_jail(&d, "tag=x");
    let replies: Vec<Value> = (0..2).map(|_| ws.recv().expect("a reply")).collect();
    let destroy = replies.iter().find(|r| r["id"] == "destroy").expect("the destroy's reply");
    let said = destroy["args"]["destroyjail"].to_string();
    assert!(said.contains(&first) && said.contains("running"), "it acted on the first jail (running): {destroy}");
    assert_eq!(get(&format!("{}/iocage/jails/{second}", f.pool), "name"), format!("{}/iocage/jails/{second}", f.pool));
    assert!(call(&d, json!({"action": "stopjail", "jail": first.clone()}))[&first].is_object());
    assert!(d.stop());
}

/// Autostart as iocage's rc did: six `boot=on` jails of mixed priorities,
/// one of which cannot start, and a `boot=off` jail and a template that
/// must stay down. The order comes from the `iocage` events: lowest
/// priority first; the failure is reported and the others go on. Stopping
/// the daemon with `stop_jails_on_shutdown` stops them, and the restarted
/// service starts them again; a daemon restarted without stopping them
/// does not start again a jail its user stopped (once per boot).
#[test]
fn autostart_starts_boot_jails_by_priority() {
    let (_g, f, d) = small_pool();
    let specs = [("p30", 30), ("p10a", 10), ("p20", 20), ("p10b", 10), ("p5", 5), ("bad", 20)];
    for (tag, priority) in specs {
        let extra = if tag == "bad" { "exec_start=\"exit 3\"" } else { "" };
        small_jail(&d, &format!("tag={tag} boot=on priority={priority} mount_procfs=1 {extra}"));
    }
    small_jail(&d, "tag=off boot=off priority=1 mount_procfs=1");
    let template = small_jail(&d, "tag=tmpl boot=on priority=1 mount_procfs=1");
    zfs(&["set", "org.freebsd.iocage:template=yes", &format!("{}/iocage/jails/{template}", f.pool)]);
    assert!(d.stop());
    let priority = |tag: &str| specs.iter().find(|(t, _)| *t == tag).map(|(_, p)| *p).unwrap();
    let states = |d: &Daemon| -> std::collections::BTreeMap<String, String> {
        let listed = call(d, json!({"action": "listjails"}));
        listed
            .as_object()
            .unwrap()
            .values()
            .map(|j| (j["tag"].as_str().unwrap().into(), j["state"].as_str().unwrap().into()))
            .collect()
    };
    let autostarted = |config: &str| -> (Daemon, Vec<Value>) {
        let d = Daemon::with_config(config);
        let mut ws = Ws::connect(d.ws);
        let r = ws.call(&json!({"id": "s", "namespace": "events", "name": "subscribe", "args": "iocage"}));
        assert_eq!(r["args"]["subscribe"], "iocage", "{r}");
        let mut outcomes = Vec::new();
        while outcomes.len() < specs.len() {
            let m = ws.recv().unwrap_or_else(|| panic!("socket closed after {outcomes:?}"));
            if m["name"] == "iocage" && m["args"]["event"] == "autostart" {
                outcomes.push(m["args"].clone());
            }
        }
        (d, outcomes)
    };

    let _ = std::fs::remove_file(iocaged::iocage::autostart::MARKER);
    let (d, outcomes) = autostarted("autostart = true\nautostart_delay = 3\nstop_jails_on_shutdown = true\n");
    let order: Vec<(i64, &str)> =
        outcomes.iter().map(|o| (priority(o["tag"].as_str().unwrap()), o["tag"].as_str().unwrap())).collect();
    assert!(order.windows(2).all(|w| w[0].0 <= w[1].0), "lowest priority first: {order:?}");
    for o in &outcomes {
        if o["tag"] == "bad" {
            assert_eq!(o["state"], "down", "{o}");
            assert!(o["error"].as_str().is_some_and(|e| e.contains("exec_start")), "the failure says why: {o}");
        } else {
            assert_eq!((o["state"].as_str(), o.get("error")), (Some("up"), None), "{o}");
        }
    }
    let s = states(&d);
    for (tag, _) in specs {
        assert_eq!(s[tag], if tag == "bad" { "down" } else { "up" }, "{tag}: {s:?}");
    }
    assert_eq!((s["off"].as_str(), s["tmpl"].as_str()), ("down", "down"), "boot=off and templates stay down");
    assert!(d.stop(), "iocaged did not shut down cleanly");

    // stop_jails_on_shutdown stopped them all; the service restarted
    // starts them again.
    let d = Daemon::start(&[]);
    assert!(states(&d).values().all(|s| s == "down"), "stopped at shutdown: {:?}", states(&d));
    assert!(d.stop());
    let (d, outcomes) = autostarted("autostart = true\n");
    assert_eq!(outcomes.iter().filter(|o| o["state"] == "up").count(), 5, "{outcomes:?}");
    // The user stops one; a daemon restarted in the same boot (jails left
    // running) does not start it again.
    assert!(call(&d, json!({"action": "stopjail", "jail": "p5"}))["p5"].is_object());
    assert!(d.stop());
    let d = Daemon::with_config("autostart = true\n");
    std::thread::sleep(std::time::Duration::from_secs(8));
    let s = states(&d);
    assert_eq!((s["p5"].as_str(), s["p10a"].as_str()), ("down", "up"), "not autostarted twice in one boot: {s:?}");
    for (tag, state) in &s {
        if state == "up" {
            assert!(call(&d, json!({"action": "stopjail", "jail": tag}))[tag.as_str()].is_object());
        }
    }
    assert!(d.stop());
}

/// `iocaged_jail_*` samples of `uuid` in a `GET /metrics`, by metric name.
fn jail_samples(d: &Daemon, uuid: &str) -> std::collections::BTreeMap<String, f64> {
    let r = rig::client::http(d.rest, "GET", "/metrics", &[], b"");
    assert_eq!(r.status, 200, "{}", r.raw);
    let text = r.raw.split_once("\r\n\r\n").map_or("", |(_, t)| t).to_string();
    let label = format!("{{uuid=\"{uuid}\",");
    text.lines()
        .filter(|l| l.starts_with("iocaged_jail_") && l.contains(&label))
        .filter_map(|l| {
            let (name, rest) = l.split_once('{')?;
            Some((name.to_string(), rest.rsplit_once(' ')?.1.parse().ok()?))
        })
        .collect()
}

#[test]
fn metrics_show_what_a_running_jail_uses() {
    let (_turn, _f, d, uuid) = small_running_jail("hog", "rlimits=on memoryuse=128M:deny");
    let before = jail_samples(&d, &uuid);
    assert!(before["iocaged_jail_processes"] >= 1.0, "{before:?}");
    // What the kernel enforces (Linux: memory.max; FreeBSD: the deny rule).
    let limit = host::memory_limit(&uuid).map(|m| m as f64);
    assert_eq!(before.get("iocaged_jail_memory_limit_bytes"), limit.as_ref(), "{before:?}");
    assert_eq!(before.get("iocaged_jail_memory_limit_bytes"), Some(&134217728.0), "{before:?}");
    // A command that burns CPU, then holds 16 MB for a while: scraped
    // while it holds them, the jail uses more of both.
    let (rest, key) = (d.rest, d.key.clone());
    let hog = std::thread::spawn(move || {
        rig::client::register_key(rest, &key);
        // Only the shell's builtins and the jail's own applets (no /proc:
        // busybox cannot run an applet that has no link).
        let command = "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; \
                       x=$(printf '%016000000d' 0); echo held; sleep 8; echo ${#x}";
        rig::client::rest(
            rest,
            &json!({"action": "execjail", "jail": "hog", "user": "root", "command": command, "output": "lossless", "timeout": 300}),
        )
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(240);
    let during = loop {
        let now = jail_samples(&d, &uuid);
        if now["iocaged_jail_memory_bytes"] >= before["iocaged_jail_memory_bytes"] + 16e6 {
            break now;
        }
        assert!(std::time::Instant::now() < deadline, "memory never rose: {before:?} {now:?}");
        assert!(!hog.is_finished(), "the hog ended before its memory was seen: {before:?} {now:?}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    // RACCT counts whole seconds; the cgroup, microseconds.
    if cfg!(target_os = "linux") {
        let cpu = |m: &std::collections::BTreeMap<String, f64>| m["iocaged_jail_cpu_seconds_total"];
        assert!(cpu(&during) > cpu(&before), "{before:?} {during:?}");
    }
    assert!(during["iocaged_jail_processes"] > before["iocaged_jail_processes"], "{before:?} {during:?}");
    let r = hog.join().unwrap();
    assert_eq!(r.body["args"]["execjail"]["exit_code"], 0, "{}", r.raw);
    assert!(r.body["args"]["execjail"]["stdout"].as_str().is_some_and(|o| o.contains("16000000")), "{}", r.raw);
    // What the kernel's own file says, read just before and just after a
    // scrape: the scrape's CPU time lies between the two.
    if cfg!(target_os = "linux") {
        let usec = || -> f64 {
            let stat = std::fs::read_to_string(format!("/sys/fs/cgroup/iocaged/ioc-{uuid}/cpu.stat")).unwrap();
            stat.lines().find_map(|l| l.strip_prefix("usage_usec ")).unwrap().trim().parse().unwrap()
        };
        let first = usec() / 1e6;
        let scraped = jail_samples(&d, &uuid)["iocaged_jail_cpu_seconds_total"];
        let last = usec() / 1e6;
        assert!(first <= scraped && scraped <= last, "the cgroup's {first} <= {scraped} <= {last}");
    }
    let r = call(&d, json!({"action": "stopjail", "jail": "hog"}));
    assert!(r["hog"].is_object(), "{r}");
    assert!(jail_samples(&d, &uuid).is_empty(), "a stopped jail has no samples");
}

/// The messages of one streamed execjail on `ws`, each with when it came,
/// up to and with its reply.
fn streamed(ws: &mut Ws, id: &str, jail: &str, command: &str) -> Vec<(std::time::Instant, Value)> {
    ws.send(&json!({"id": id, "namespace": "sysadm", "name": "iocage",
                    "args": {"action": "execjail", "jail": jail, "user": "root", "command": command, "output": "stream"}}));
    let mut got = Vec::new();
    loop {
        let m = ws.recv_within(std::time::Duration::from_secs(60)).expect("a message within 60 s");
        assert_eq!(m["id"], id, "{m}");
        let last = m["name"] != "output";
        got.push((std::time::Instant::now(), m));
        if last {
            return got;
        }
    }
}

/// Linux: the jail's init and every command run in it are made in their
/// cgroups, and the helpers that start them stay out: no process is moved
/// into a jail's group (a move costs the mover an RCU grace period), and a
/// command's group is its own, below the jail's.
#[test]
fn jail_processes_are_made_in_their_cgroups_not_moved_there() {
    let (_g, _f, d) = small_pool();
    let uuid = small_jail(&d, "tag=born mount_procfs=1");
    let (mut cgroup, mut init_cgroup) = (String::new(), String::new());
    let moved = host::moved_into_jail_groups(|| {
        let r = call(&d, json!({"action": "startjail", "jail": "born"}));
        assert!(r["born"]["+ Starting services OK"].is_string(), "{r}");
        let init = listed(&d, &uuid)["jid"].as_str().unwrap().to_string();
        init_cgroup = std::fs::read_to_string(format!("/proc/{init}/cgroup")).unwrap_or_default().trim().to_string();
        let r = call(
            &d,
            json!({"action": "execjail", "jail": "born", "user": "root", "command": "cat /proc/self/cgroup", "output": "lossless"}),
        );
        cgroup = r["stdout"].as_str().unwrap_or_else(|| panic!("{r}")).trim().to_string();
        let r = call(&d, json!({"action": "stopjail", "jail": "born"}));
        assert!(r["born"]["+ Stopping services OK"].is_string(), "{r}");
    });
    let Some(moved) = moved else { return assert!(d.stop()) };
    assert_eq!(moved, Vec::<String>::new(), "processes were moved into the jail's groups");
    assert_eq!(init_cgroup, format!("0::/iocaged/ioc-{uuid}"), "the jail's init is in the jail's group");
    let own = format!("0::/iocaged/ioc-{uuid}/exec-");
    assert!(cgroup.starts_with(&own), "the command runs in a group of its own below the jail's: {cgroup}");
    assert!(d.stop());
}

/// A jail's `cpuset` holds for its init and for every command run in it,
/// from their first instruction (a process made in a cpuset's group by
/// clone3 took its parent's CPUs on kernels before 6.4, whatever the
/// group's).
#[test]
fn a_jail_s_cpuset_holds_for_its_init_and_its_commands() {
    let (_g, _f, d, uuid) = small_running_jail("pinned", "mount_procfs=1 cpuset=1");
    if cfg!(target_os = "linux") {
        let allowed = |status: &str| {
            status.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:")).map(|v| v.trim().to_string())
        };
        let init = listed(&d, &uuid)["jid"].as_str().unwrap().to_string();
        let status = std::fs::read_to_string(format!("/proc/{init}/status")).unwrap();
        assert_eq!(allowed(&status).as_deref(), Some("1"), "the init's CPUs");
        let r = call(
            &d,
            json!({"action": "execjail", "jail": "pinned", "user": "root", "command": "cat /proc/self/status", "output": "lossless"}),
        );
        assert_eq!(allowed(r["stdout"].as_str().unwrap_or_default()).as_deref(), Some("1"), "a command's CPUs: {r}");
    }
    let r = call(&d, json!({"action": "stopjail", "jail": "pinned"}));
    assert!(r["pinned"].is_object(), "{r}");
    assert!(d.stop());
}

/// A pool with a small jail tagged `tag`, made with the properties
/// `props` besides, and started; the jail's uuid last.
fn small_running_jail(tag: &str, props: &str) -> (std::sync::MutexGuard<'static, ()>, Fixture, Daemon, String) {
    let (turn, f, d) = small_pool();
    let uuid = small_jail(&d, format!("tag={tag} {props}").trim_end());
    let r = call(&d, json!({"action": "startjail", "jail": tag}));
    assert!(r[tag]["+ Starting services OK"].is_string(), "{r}");
    (turn, f, d, uuid)
}

/// Waits up to 30 s until one process runs `argv`; fails with `why`.
fn runs_within_30_s(argv: &[&str], why: &str) {
    let runs = std::time::Instant::now();
    while processes(argv).len() != 1 {
        assert!(runs.elapsed() < std::time::Duration::from_secs(30), "{why}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Waits up to 30 s until no process runs `argv` and no `jail-exec`
/// helper is left; fails with `why` if they stay.
fn gone_within_30_s(argv: &[&str], why: &str) {
    let gone = std::time::Instant::now();
    while !processes(argv).is_empty() || host::helpers("jail-exec").is_some_and(|h| !h.is_empty()) {
        assert!(gone.elapsed() < std::time::Duration::from_secs(30), "{why}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Sends a console frame under `id`.
fn console_frame(ws: &mut Ws, id: &str, args: Value) {
    ws.send(&json!({"id": id, "namespace": "sysadm", "name": "console", "args": args}));
}

/// What console `id` shows until `want` is in it (or its reply comes),
/// and its reply if it came.
fn shown_until(ws: &mut Ws, id: &str, want: &str) -> (String, Option<Value>) {
    let mut shown = String::new();
    let started = std::time::Instant::now();
    while !shown.contains(want) {
        assert!(started.elapsed() < std::time::Duration::from_secs(60), "{want:?} never showed: {shown:?}");
        let Some(m) = ws.recv_within(std::time::Duration::from_secs(60)) else { continue };
        assert_eq!(m["id"], id, "{m} after {shown:?}");
        if m["name"] != "output" {
            return (shown, Some(m));
        }
        shown.push_str(m["args"]["data"].as_str().unwrap());
    }
    (shown, None)
}

#[test]
fn a_console_is_a_login_shell_on_a_terminal_of_the_jail() {
    let (_turn, _f, d, _) = small_running_jail("con", "");
    let mut ws = Ws::connect(d.ws);
    let open = |ws: &mut Ws, id: &str| {
        ws.send(&json!({"id": id, "namespace": "sysadm", "name": "iocage",
                        "args": {"action": "console", "jail": "con", "user": "alice", "rows": 30, "cols": 100}}));
    };
    open(&mut ws, "c1");
    // A login shell of alice's, on a terminal of the jail's, 30 by 100.
    console_frame(&mut ws, "c1", json!({"input": "echo \"pid=$$ user=$(id -un) login=$0\"; stty size\n"}));
    let (shown, end) = shown_until(&mut ws, "c1", "30 100");
    assert!(end.is_none() && shown.contains("user=alice login=-sh"), "{shown:?}");
    if cfg!(target_os = "linux") {
        console_frame(&mut ws, "c1", json!({"input": "tty\n"}));
        let (shown, _) = shown_until(&mut ws, "c1", "/dev/pts/0");
        assert!(!shown.contains("not a tty"), "{shown:?}");
    }
    // A resize is seen by the shell's terminal.
    console_frame(&mut ws, "c1", json!({"resize": {"rows": 40, "cols": 120}}));
    console_frame(&mut ws, "c1", json!({"input": "stty size\n"}));
    shown_until(&mut ws, "c1", "40 120");
    // A frame the console cannot take is refused by name, and changes nothing.
    console_frame(&mut ws, "c1", json!({"resize": {"rows": 0, "cols": 80}}));
    let (_, refused) = shown_until(&mut ws, "c1", "\u{0}never");
    let refused = refused.unwrap();
    assert!(refused["args"]["detail"].as_str().unwrap().contains("\"rows\", a number from 1 to 1000"), "{refused}");
    // exit: the reply under the console's id, and nothing left behind
    // (what the shell started in the background goes with it).
    console_frame(&mut ws, "c1", json!({"input": "sleep 100002 & exit 4\n"}));
    let (_, end) = shown_until(&mut ws, "c1", "\u{0}never");
    let end = end.unwrap();
    assert_eq!(end["args"]["console"]["success"], "the shell exited with status 4", "{end}");
    assert_eq!(end["args"]["console"]["exit_code"], 4, "{end}");
    gone_within_30_s(&["sleep", "100002"], "the console left processes behind");
    if cfg!(target_os = "linux") {
        // Its terminal is gone from the jail's devpts.
        let r = call(
            &d,
            json!({"action": "execjail", "jail": "con", "user": "root", "command": "ls /dev/pts",
                                "output": "lossless"}),
        );
        assert_eq!(r["stdout"], "ptmx\n", "{r}");
    }

    // A frame for no console is refused, naming the id.
    console_frame(&mut ws, "c1", json!({"input": "x"}));
    let r = ws.recv_within(std::time::Duration::from_secs(30)).unwrap();
    assert!(r["args"]["detail"].as_str().unwrap().contains("no console is open under id \"c1\""), "{r}");

    // "close" hangs the console up.
    open(&mut ws, "c2");
    console_frame(&mut ws, "c2", json!({"input": "echo ready\n"}));
    shown_until(&mut ws, "c2", "ready\r\n");
    console_frame(&mut ws, "c2", json!({"close": true}));
    let (_, end) = shown_until(&mut ws, "c2", "\u{0}never");
    let end = end.unwrap();
    let error = end["args"]["console"]["error"].as_str().unwrap();
    assert!(error.starts_with("cannot run a console in ioc-"), "{end}");
    assert!(error.ends_with(": the console was hung up: the client hung up"), "{end}");

    // Hung up at once, before its shell can have started: nothing is left.
    open(&mut ws, "c4");
    console_frame(&mut ws, "c4", json!({"close": true}));
    let (_, end) = shown_until(&mut ws, "c4", "\u{0}never");
    assert!(end.unwrap()["args"]["console"]["error"].as_str().unwrap().contains("hung up"));
    gone_within_30_s(&["-sh"], "a console hung up at once left processes");

    // The socket goes: the shell and what it runs go too.
    open(&mut ws, "c3");
    console_frame(&mut ws, "c3", json!({"input": "sleep 100003\n"}));
    runs_within_30_s(&["sleep", "100003"], "the console's command never ran");
    drop(ws);
    gone_within_30_s(&["sleep", "100003"], "the console outlived its socket");

    // Over REST: refused, naming why.
    let r = call(&d, json!({"action": "console", "jail": "con"}));
    assert!(r["error"].as_str().is_some_and(|e| e.contains("WebSocket")), "{r}");
    let r = call(&d, json!({"action": "stopjail", "jail": "con"}));
    assert!(r["con"].is_object(), "{r}");
}

/// A stop ends the commands the daemon runs in the jail at once, even one
/// that ignores SIGTERM (a console's shell does), rather than after the
/// jail's `stop_timeout` (30 s here); the command's reply says why it
/// ended.
#[test]
fn a_stop_ends_the_commands_it_finds_running_at_once() {
    let (_turn, _f, d, _) = small_running_jail("halt", "");
    let exec = json!({"action": "execjail", "jail": "halt", "user": "root", "output": "lossless",
                      "command": "trap '' TERM; sleep 100004"});
    let rest = d.rest;
    let running = std::thread::spawn(move || rig::client::rest(rest, &exec).body["args"]["execjail"].clone());
    runs_within_30_s(&["sleep", "100004"], "the command never ran");
    let since = std::time::Instant::now();
    let r = call(&d, json!({"action": "stopjail", "jail": "halt"}));
    let took = since.elapsed();
    assert!(r["halt"].is_object(), "{r}");
    assert!(took < std::time::Duration::from_secs(20), "the stop waited {took:?} for the command");
    let ended = running.join().unwrap();
    let error = ended["error"].as_str().unwrap_or_else(|| panic!("{ended}"));
    assert!(error.contains("the command was stopped") && error.contains("the jail is being stopped"), "{ended}");
    gone_within_30_s(&["sleep", "100004"], "the command outlived the jail");
}

#[test]
fn streamed_exec_comes_as_it_runs_and_stops_with_its_socket() {
    let (_turn, _f, d, _) = small_running_jail("st", "");
    // A line every 100 ms, then stderr, a character whose two bytes are
    // written apart, a status.
    let command = "i=0; while [ $i -lt 10 ]; do echo line $i; i=$((i+1)); sleep 0.1; done; \
                   echo oops >&2; printf 'caf\\303'; sleep 0.1; printf '\\251'; exit 3";
    let mut ws = Ws::connect(d.ws);
    let got = streamed(&mut ws, "s1", "st", command);
    let (reply_at, reply) = got.last().unwrap().clone();
    let chunks: Vec<&(std::time::Instant, Value)> = got.iter().filter(|(_, m)| m["name"] == "output").collect();
    let joined = |stream: &str| -> String {
        chunks
            .iter()
            .filter(|(_, m)| m["args"]["stream"] == stream)
            .map(|(_, m)| m["args"]["data"].as_str().unwrap())
            .collect()
    };
    // In pieces, the first well before the end (the command sleeps 900 ms
    // after its first line).
    assert!(chunks.len() >= 3, "{got:?}");
    assert!(reply_at.duration_since(chunks[0].0) >= std::time::Duration::from_millis(500), "{got:?}");
    // The same output and status as a lossless execjail of the command.
    let whole =
        call(&d, json!({"action": "execjail", "jail": "st", "user": "root", "command": command, "output": "lossless"}));
    assert_eq!(whole["stdout"].as_str().unwrap(), joined("stdout"), "{whole} {got:?}");
    assert_eq!(whole["stderr"].as_str().unwrap(), joined("stderr"), "{whole} {got:?}");
    assert!(joined("stdout").ends_with("line 9\ncafé"), "{got:?}");
    let ended = &reply["args"]["execjail"];
    assert_eq!((ended["exit_code"].clone(), whole["exit_code"].clone()), (json!(3), json!(3)), "{reply}");
    assert_eq!(ended["error"], "the command exited with status 3: oops", "{reply}");
    assert!(ended.get("stdout").is_none(), "the output went as it came: {reply}");

    // The socket goes mid-command: the command goes with it.
    ws.send(&json!({"id": "s2", "namespace": "sysadm", "name": "iocage",
                    "args": {"action": "execjail", "jail": "st", "user": "root", "output": "stream",
                             "command": "echo started; sleep 100001; echo never"}}));
    let first = ws.recv_within(std::time::Duration::from_secs(60)).expect("the first chunk");
    assert_eq!(first["args"], json!({"stream": "stdout", "data": "started\n"}), "{first}");
    runs_within_30_s(&["sleep", "100001"], "the command never ran");
    drop(ws);
    gone_within_30_s(&["sleep", "100001"], "the command outlived its socket");

    // Over REST there is no socket to stream to: refused, naming why.
    let r =
        call(&d, json!({"action": "execjail", "jail": "st", "user": "root", "command": "echo x", "output": "stream"}));
    assert!(r["error"].as_str().is_some_and(|e| e.contains("output") && e.contains("WebSocket")), "{r}");
    let r = call(&d, json!({"action": "stopjail", "jail": "st"}));
    assert!(r["st"].is_object(), "{r}");
}
