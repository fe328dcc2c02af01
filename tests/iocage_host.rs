//! The iocage layer on the host, in seconds: the real service (`Iocage`),
//! server, transports and envelopes, against the in-memory ZFS and jail
//! runtime of `host/` (test code only). Every example of the API
//! document, for each of the seventeen actions, is sent over its own
//! transport and its reply compared with the document's, normalised as
//! the guest's conformance tests compare them (`rig/seed.rs`); reads must
//! leave the pool as it was.
//!
//! What this cannot show, the guest suite does against the real OpenZFS
//! module and kernel (`guest_*.rs`): how ZFS and jails really behave. Here,
//! what the service does with what they answer: the reply shapes, the
//! order of its steps, and its undoing when a step fails.

#[path = "rig/client.rs"]
#[allow(dead_code)]
mod client;
mod host;
#[path = "rig/seed.rs"]
#[allow(dead_code)]
mod seed;

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::{Value, json};

use host::fake_runtime::FakeRuntime;
use host::fake_zfs::FakeZfs;
use host::server::Server;
use iocaged::config::Limits;
use iocaged::iocage::{Iocage, PoolChoice};
use iocaged::runtime::Runtime;
use iocaged::zfs::{Backend, Changes, TRUST_AGE, Zfs};
use seed::{Example, Mismatches, Transport, normalise};

const POOL: &str = "tank";
const IOC: &str = "org.freebsd.iocage:";

/// One served pool: the fakes, the real service and server over them.
struct Rig {
    zfs: FakeZfs,
    runtime: Arc<FakeRuntime>,
    server: Server<Iocage>,
    /// The pool's altroot: the datasets' files are under it.
    dir: PathBuf,
}

impl Rig {
    /// An empty iocage layout on pool `tank`, marked active, served.
    fn fresh(name: &str) -> Rig {
        Rig::with(name, |i| i)
    }

    /// [`Rig::fresh`] with the service set up by `setup` too.
    fn with(name: &str, setup: impl FnOnce(Iocage) -> Iocage) -> Rig {
        let dir = std::env::temp_dir().join(format!("iocaged-iocage-host-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let zfs = FakeZfs::new(POOL, &dir);
        let lib = zfs.backend();
        // As the guest's test pool is made (`tests/vm/guest-common.sh`).
        lib.set_props(POOL, &[("org.freebsd.ioc:active", "yes"), ("compression", "lz4")]).unwrap();
        lib.create_filesystem("tank/iocage", &[("mountpoint", "/iocage")]).unwrap();
        for ds in ["tank/iocage", "tank/iocage/.defaults", "tank/iocage/jails"] {
            if !lib.exists(ds) {
                lib.create_filesystem(ds, &[]).unwrap();
            }
            lib.mount(ds).unwrap();
        }
        let backend = zfs.backend();
        let owner = Zfs::start_on(64, move || Ok(backend)).unwrap().with_copier(zfs.copier());
        let runtime = Arc::new(FakeRuntime::default());
        let iocage = setup(Iocage::new(owner, runtime.clone(), PoolChoice::Auto));
        let server = Server::start(name, Limits::default(), Arc::new(iocage));
        Rig { zfs, runtime, server, dir }
    }

    /// Sets iocage properties (API names) on `.defaults`.
    fn set_defaults(&self, props: &[(String, String)]) {
        let props: Vec<(String, &str)> = props.iter().map(|(k, v)| (format!("{IOC}{k}"), v.as_str())).collect();
        let props: Vec<(&str, &str)> = props.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        self.zfs.backend().set_props("tank/iocage/.defaults", &props).unwrap();
    }

    /// A jail dataset (and its `root`) with iocage properties, as iocage
    /// 1.7.x left them.
    fn jail(&self, uuid: &str, props: &[(String, String)]) {
        let name = format!("tank/iocage/jails/{uuid}");
        let props: Vec<(String, &str)> = props.iter().map(|(k, v)| (format!("{IOC}{k}"), v.as_str())).collect();
        let props: Vec<(&str, &str)> = props.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        let lib = self.zfs.backend();
        lib.create_filesystem(&name, &props).unwrap();
        lib.create_filesystem(&format!("{name}/root"), &[]).unwrap();
    }

    /// A fetched release, `tank/iocage/releases/<rel>/root`, with enough of
    /// a system for a jail's start (rc scripts, users).
    fn release(&self, rel: &str) {
        let lib = self.zfs.backend();
        let mut at = String::from("tank/iocage");
        for part in ["releases".to_string(), rel.to_string(), "root".to_string()] {
            at = format!("{at}/{part}");
            lib.create_filesystem(&at, &[]).unwrap();
            lib.mount(&at).unwrap();
        }
        let root = self.zfs.dir(&at).unwrap();
        for d in ["bin", "etc", "dev", "proc", "tmp", "root", "var/run"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        for (f, text) in [
            ("etc/rc", "#!/bin/sh\n"),
            ("etc/rc.shutdown", "#!/bin/sh\n"),
            ("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"),
            ("etc/group", "wheel:x:0:root\n"),
            ("bin/marker", rel),
        ] {
            std::fs::write(root.join(f), text).unwrap();
        }
    }

    /// An action over REST with the read/write key; its body.
    fn call(&self, args: Value) -> Value {
        let r = self.server.rest(Some(&self.server.write_key), &[], &args);
        assert_eq!(r.status, 200, "{}", r.raw);
        r.body["args"][args["action"].as_str().unwrap()].clone()
    }

    /// Sends an example over its own transport; (expected, actual), both
    /// normalised, the actual one without the pool's altroot (mountpoints
    /// show it, as on a pool imported with `-R`; the document's was not).
    fn exchange(&self, ex: &Example) -> (Value, Value) {
        let got = match ex.transport {
            Transport::Rest => {
                let r = self.server.rest(Some(&self.server.write_key), &[], &seed::sent(ex));
                assert_eq!(r.status, 200, "{}", r.raw);
                r.body
            }
            Transport::WebSocket => self.server.ws(&self.server.write_key).call(&seed::sent(ex)),
        };
        let unrooted = got.to_string().replace(&self.dir.display().to_string(), "");
        (seed::expected(ex), normalise(&serde_json::from_str(&unrooted).unwrap()))
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs every example of `action` on a rig of its own, made ready by
/// `setup`, and fails with every mismatch at once; `after` then checks
/// what the example did to the pool (given the pool as it was before).
fn conform(action: &str, setup: impl Fn(&Example, &Rig), after: impl Fn(&Example, &Rig, &str)) {
    let examples = seed::of(action);
    assert!(examples.len() >= 2, "{action}: the document has REST and WebSocket examples");
    let mut mismatches = Mismatches::default();
    for (i, ex) in examples.iter().enumerate() {
        let rig = Rig::fresh(&format!("{action}-{i}"));
        setup(ex, &rig);
        let before = rig.zfs.dump();
        let (want, got) = rig.exchange(ex);
        mismatches.compare(i, ex, &want, &got);
        after(ex, &rig, &before);
    }
    mismatches.assert_none(action, examples.len());
}

/// A read's `after`: the pool (properties, mounts, its history) is as it was.
fn unchanged(ex: &Example, rig: &Rig, before: &str) {
    assert_eq!(rig.zfs.dump(), before, "{} changed the pool", ex.action);
}

/// The UUIDs of the jails on the pool.
fn jail_uuids(rig: &Rig) -> Vec<String> {
    let prefix = "tank/iocage/jails/";
    let names = rig.zfs.names();
    names.iter().filter_map(|n| n.strip_prefix(prefix)).filter(|u| !u.contains(['/', '@'])).map(String::from).collect()
}

/// The UUID of the jail tagged `tag`.
fn uuid_of(rig: &Rig, tag: &str) -> Option<String> {
    jail_uuids(rig)
        .into_iter()
        .find(|u| rig.zfs.local(&format!("tank/iocage/jails/{u}"), &format!("{IOC}tag")).as_deref() == Some(tag))
}

fn with_jails_shown(ex: &Example, rig: &Rig) {
    for (uuid, props) in seed::jails_shown(ex) {
        rig.jail(&uuid, &props);
    }
}

/// Jail `test`, a clone of release 10.2-RELEASE, made through the API;
/// started when `up`. Returns its UUID.
fn test_jail(rig: &Rig, up: bool) -> String {
    rig.release("10.2-RELEASE");
    let r = rig.call(json!({"action": "createjail", "props": "tag=test release=10.2-RELEASE", "switches": "-c"}));
    assert!(r["success"].is_object(), "{r}");
    if up {
        let r = rig.call(json!({"action": "startjail", "jail": "test"}));
        assert!(r["test"]["+ Starting services OK"].is_string(), "{r}");
        wait_recorded(rig, &jail_datasets(rig)[0]);
    }
    jail_datasets(rig)[0].rsplit('/').next().unwrap().to_string()
}

/// Waits (at most 5 s) until a start of the jail of `dataset` is recorded
/// in its `last_started` (written after startjail's reply).
fn wait_recorded(rig: &Rig, dataset: &str) {
    let last = || rig.zfs.local(dataset, &format!("{IOC}last_started")).unwrap_or_default();
    let since = std::time::Instant::now();
    while !last().starts_with("20") {
        assert!(since.elapsed() < std::time::Duration::from_secs(5), "last_started: {}", last());
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

#[test]
fn the_reads_match_the_document_and_change_nothing() {
    conform("getdefaultsettings", |ex, rig| rig.set_defaults(&seed::defaults_shown(ex)), unchanged);
    for action in ["listjails", "df", "getjailsettings"] {
        conform(action, with_jails_shown, unchanged);
    }
}

#[test]
fn the_pool_actions_match_the_document_and_mark_the_pool() {
    let active = |rig: &Rig| rig.zfs.local(POOL, "org.freebsd.ioc:active");
    conform(
        "activatepool",
        |ex, rig| {
            if ex.args().contains_key("pool") {
                rig.zfs.backend().inherit(POOL, "org.freebsd.ioc:active").unwrap();
            }
        },
        |_, rig, _| assert_eq!(active(rig).as_deref(), Some("yes")),
    );
    conform("deactivatepool", |_, _| {}, |_, rig, _| assert_ne!(active(rig).as_deref(), Some("yes")));
}

#[test]
fn the_lifecycle_actions_match_the_document_and_reach_the_runtime() {
    // Jail `test` runs, except where the example shows it already down
    // (stop) or not yet up (start).
    for action in ["startjail", "stopjail", "capjail", "execjail"] {
        let up = |ex: &Example| match action {
            "startjail" => ex.reply.to_string().contains("already up"),
            "stopjail" => !ex.reply.to_string().contains("already down"),
            _ => true,
        };
        conform(
            action,
            |ex, rig| {
                test_jail(rig, up(ex));
                rig.runtime.take_calls();
            },
            |ex, rig, _| {
                let runs = !rig.runtime.running().unwrap().is_empty();
                assert_eq!(runs, action != "stopjail", "{action}: whether jail test runs after it");
                let calls = rig.runtime.take_calls().join("\n");
                let wanted = match action {
                    "startjail" if !up(ex) => "start ioc-",
                    "stopjail" if up(ex) => "stop ioc-",
                    "capjail" => "limits ioc-",
                    "execjail" => "echo hi",
                    _ => "",
                };
                assert!(calls.contains(wanted), "{action}: the runtime was asked ({wanted:?}): {calls}");
            },
        );
    }
}

#[test]
fn the_write_actions_match_the_document_and_change_the_pool() {
    conform(
        "createjail",
        |_, rig| rig.release("10.2-RELEASE"),
        |ex, rig, _| {
            let tag = if ex.request.to_string().contains("emptytest") { "emptytest" } else { "test" };
            let uuid = uuid_of(rig, tag).unwrap_or_else(|| panic!("no jail tagged {tag}"));
            assert!(rig.zfs.mounted(&format!("tank/iocage/jails/{uuid}/root")), "its root is mounted");
        },
    );
    conform(
        "clonejail",
        |_, rig| drop(test_jail(rig, false)),
        |_, rig, _| {
            let source = uuid_of(rig, "test").expect("the source stays");
            let uuids = jail_uuids(rig);
            assert_eq!(uuids.len(), 2, "one clone: {uuids:?}");
            let clone = uuids.iter().find(|u| **u != source).unwrap();
            let origin = rig
                .zfs
                .dump()
                .lines()
                .find(|l| l.starts_with(&format!("tank/iocage/jails/{clone}/root ")))
                .map(String::from);
            assert!(
                origin.is_some_and(|o| o.contains(&format!("tank/iocage/jails/{source}/root@"))),
                "a clone of the source's root"
            );
        },
    );
    conform(
        "destroyjail",
        |_, rig| drop(test_jail(rig, false)),
        |_, rig, _| assert_eq!(jail_uuids(rig), Vec::<String>::new()),
    );
    // Something of each kind, none depending on another: a release, an
    // empty jail, a template.
    let left = |rig: &Rig, part: &str| {
        let prefix = format!("tank/iocage/{part}/");
        rig.zfs.names().iter().filter(|n| n.starts_with(&prefix)).count()
    };
    for action in ["cleanjails", "cleanreleases", "cleantemplates", "cleanall"] {
        conform(
            action,
            |_, rig| {
                rig.release("10.2-RELEASE");
                let r = rig.call(json!({"action": "createjail", "props": "tag=empty", "switches": "-e"}));
                assert!(r["success"].is_object(), "{r}");
                let lib = rig.zfs.backend();
                for ds in ["tank/iocage/templates", "tank/iocage/templates/tpl", "tank/iocage/templates/tpl/root"] {
                    lib.create_filesystem(ds, &[]).unwrap();
                }
            },
            |_, rig, _| {
                for (part, cleaned_by) in
                    [("jails", "cleanjails"), ("releases", "cleanreleases"), ("templates", "cleantemplates")]
                {
                    let gone = left(rig, part) == 0;
                    assert_eq!(gone, action == cleaned_by || action == "cleanall", "{action}: {part} gone");
                }
                if action == "cleanall" {
                    assert_eq!(rig.zfs.names(), ["tank", "tank/iocage"], "cleanall leaves the root only");
                }
            },
        );
    }
}

/// The jail datasets on the pool (filesystems and snapshots under
/// `iocage/jails`).
fn jail_datasets(rig: &Rig) -> Vec<String> {
    rig.zfs.names().into_iter().filter(|n| n.starts_with("tank/iocage/jails/")).collect()
}

#[test]
fn a_create_that_fails_part_way_leaves_nothing_behind_and_says_where() {
    for (op, switches, step) in [
        ("copy", "", "copying the release"),
        ("clone_snapshot", "-c", "creating the jail's root"),
        ("mount", "-c", "finishing the jail"),
        ("set_props", "", "setting native properties"),
        ("inherit", "", "finishing the jail"),
    ] {
        let rig = Rig::fresh(&format!("create-fails-{op}"));
        rig.release("10.2-RELEASE");
        let before = rig.zfs.names();
        rig.zfs.fail(op, "tank/iocage/jails/");
        let props = "tag=web release=10.2-RELEASE quota=1G";
        let r = rig.call(json!({"action": "createjail", "props": props, "switches": switches}));
        let err = r["error"].as_str().unwrap_or_else(|| panic!("{op}: not refused: {r}"));
        assert!(err.contains("failed as the test asked"), "{op}: the cause is given: {err}");
        assert!(err.to_lowercase().contains(step), "{op}: the step is named ({step}): {err}");
        assert_eq!(rig.zfs.names(), before, "{op}: what the create made is gone");
        assert_eq!(rig.call(json!({"action": "listjails"})), json!({}), "{op}: no jail is listed");
        // The pool works on: the same create now succeeds.
        let r = rig.call(json!({"action": "createjail", "props": props, "switches": switches}));
        assert!(r["success"].is_object(), "{op}: {r}");
    }
}

#[test]
fn a_create_whose_fstab_cannot_be_written_is_undone() {
    for switches in ["", "-c"] {
        let rig = Rig::fresh(&format!("fstab-fails{switches}"));
        rig.release("10.2-RELEASE");
        let before = rig.zfs.names();
        rig.zfs.hollow("tank/iocage/jails/");
        let r =
            rig.call(json!({"action": "createjail", "props": "tag=web release=10.2-RELEASE", "switches": switches}));
        let err = r["error"].as_str().unwrap_or_else(|| panic!("{switches}: not refused: {r}"));
        assert!(err.contains("writing its fstab") && err.contains("fstab"), "{switches}: {err}");
        assert_eq!(rig.zfs.names(), before, "{switches}: what the create made is gone");
    }
    // clonejail goes the same way.
    let rig = Rig::fresh("fstab-fails-clone");
    test_jail(&rig, false);
    let before = rig.zfs.names();
    rig.zfs.hollow("tank/iocage/jails/");
    let r = rig.call(json!({"action": "clonejail", "jail": "test", "props": "tag=copy"}));
    let err = r["error"].as_str().unwrap_or_else(|| panic!("clone not refused: {r}"));
    assert!(err.contains("writing its fstab"), "{err}");
    assert_eq!(rig.zfs.names(), before, "what the clone made is gone");
}

#[test]
fn start_runs_rc_in_the_jail_made_from_the_jail_s_properties_and_stop_undoes_it() {
    let rig = Rig::fresh("start-stop");
    let uuid = test_jail(&rig, false);
    let kernel = format!("ioc-{uuid}");
    rig.runtime.take_calls();
    rig.call(json!({"action": "startjail", "jail": "test"}));
    assert_eq!(
        rig.runtime.take_calls(),
        [format!("start {kernel}"), format!("exec {kernel} root /bin/sh /etc/rc")],
        "the jail is made, then its rc runs in it"
    );
    let spec = rig.runtime.spec(&kernel).expect("it runs");
    assert!(rig.zfs.mounted(&format!("tank/iocage/jails/{uuid}/root")), "its root is mounted");
    assert!(spec.root.join("bin/marker").is_file(), "and shows its release's files");
    assert_eq!(spec.root, rig.zfs.dir(&format!("tank/iocage/jails/{uuid}/root")).unwrap(), "its root is its dataset's");
    assert_eq!(spec.hostname, uuid, "iocage's default host_hostname is the UUID");
    let listed = rig.call(json!({"action": "listjails"}));
    assert_eq!((listed[&uuid]["state"].as_str(), listed[&uuid]["jid"].as_str()), (Some("up"), Some("1")), "{listed}");

    let r = rig.call(json!({"action": "stopjail", "jail": "test"}));
    assert!(r["test"]["+ Removing jail process OK"].is_string(), "{r}");
    assert_eq!(
        rig.runtime.take_calls(),
        [format!("exec {kernel} root /bin/sh /etc/rc.shutdown"), format!("stop {kernel}")]
    );
    assert!(rig.runtime.spec(&kernel).is_none(), "nothing of it runs");
    assert_eq!(rig.call(json!({"action": "listjails"}))[&uuid]["state"], "down");
}

/// A start and a stop take the jail's directory from the index, not from
/// a read of the jail's dataset (the kernel hands over all its hundred
/// properties for one), and the index sees it moved behind the service's
/// back: by the jail's own mountpoint, or by a parent's.
#[test]
fn start_and_stop_take_the_jail_s_directory_from_the_index_and_see_it_moved() {
    let rig = Rig::fresh("indexed-dir");
    test_jail(&rig, false);
    let dataset = jail_datasets(&rig)[0].clone();
    let uuid = dataset.rsplit('/').next().unwrap().to_string();
    rig.zfs.fail("native_props", &dataset);
    let r = rig.call(json!({"action": "startjail", "jail": "test"}));
    assert!(r["test"]["+ Starting services OK"].is_string(), "{r}");
    wait_recorded(&rig, &dataset);
    let r = rig.call(json!({"action": "stopjail", "jail": "test"}));
    assert!(r["test"]["+ Removing jail process OK"].is_string(), "{r}");

    let lib = rig.zfs.backend();
    lib.set_props(&dataset, &[("mountpoint", "/elsewhere")]).unwrap();
    let r = rig.call(json!({"action": "startjail", "jail": "test"}));
    let e = r["error"].as_str().unwrap_or_else(|| panic!("started where it was: {r}"));
    assert!(e.contains("elsewhere") && e.contains("not at"), "{e}");

    lib.inherit(&dataset, "mountpoint").unwrap();
    lib.set_props("tank/iocage/jails", &[("mountpoint", "/iocage/moved")]).unwrap();
    // The plan follows (the fake mounts nothing again: the start stops
    // at the new root, which it names).
    let r = rig.call(json!({"action": "startjail", "jail": "test"}));
    let e = r["error"].as_str().unwrap_or_else(|| panic!("{r}"));
    assert!(e.contains(&format!("/iocage/moved/{uuid}/root:")), "{e}");
}

#[test]
fn a_command_in_a_running_jail_reads_nothing_of_the_jail_from_zfs() {
    let rig = Rig::fresh("exec-reads-nothing");
    let uuid = test_jail(&rig, true);
    assert_eq!(rig.call(json!({"action": "listjails"}))[&uuid]["state"], "up");
    // Any read of the jail's own dataset now fails: a command needs only
    // which jail it is (the index) and the runtime.
    for op in ["native_props", "user_props", "exists"] {
        rig.zfs.fail(op, &format!("tank/iocage/jails/{uuid}"));
    }
    rig.runtime.take_calls();
    let exec = json!({"action": "execjail", "jail": "test", "user": "root", "command": "echo hi"});
    let r = rig.call(exec.clone());
    assert!(!r.to_string().contains("error"), "the command ran: {r}");
    let kernel = format!("ioc-{uuid}");
    assert_eq!(rig.runtime.take_calls(), [format!("exec {kernel} root echo hi")]);
    // A stopped jail is said to be down, by its name, and nothing runs.
    rig.runtime.end_all();
    let r = rig.call(exec);
    let err = r["error"].as_str().unwrap_or_else(|| panic!("ran in a stopped jail: {r}"));
    assert!(err.contains(&uuid) && err.contains("(test)") && err.contains("not running"), "{err}");
    assert!(rig.runtime.take_calls().iter().all(|c| !c.starts_with("exec")));
}

#[test]
fn a_start_is_recorded_after_it_and_a_failure_to_record_it_leaves_the_jail_running() {
    let rig = Rig::fresh("last-started");
    test_jail(&rig, false);
    let dataset = jail_datasets(&rig)[0].clone();
    let last = || rig.zfs.local(&dataset, &format!("{IOC}last_started")).unwrap_or_default();
    assert_eq!(last(), "none");
    rig.zfs.fail("set_props", &dataset);
    let r = rig.call(json!({"action": "startjail", "jail": "test"}));
    assert!(r["test"]["+ Starting services OK"].is_string(), "the jail started: {r}");
    // The stop takes the jail's turn after the record's try.
    let r = rig.call(json!({"action": "stopjail", "jail": "test"}));
    assert!(r["test"]["+ Removing jail process OK"].is_string(), "{r}");
    assert_eq!(last(), "none", "the record failed");
    let gate = rig.zfs.hold("set_props", &dataset);
    let r = rig.call(json!({"action": "startjail", "jail": "test"}));
    assert!(r["test"]["+ Starting services OK"].is_string(), "{r}");
    assert_eq!(last(), "none", "the reply came before the record's write ended");
    gate.open();
    wait_recorded(&rig, &dataset);
}

#[test]
fn a_start_with_no_room_for_its_record_makes_it_before_the_reply() {
    // One action at a time: the start holds the only place.
    let rig = Rig::with("last-started-inline", |i| i.with_limits(1, std::time::Duration::from_secs(30)));
    test_jail(&rig, false);
    let dataset = jail_datasets(&rig)[0].clone();
    // The record's write waits, as ZFS's does for a sync: no reply while
    // it does (a slow machine only makes the reply later still).
    let gate = rig.zfs.hold("set_props", &dataset);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::scope(|s| {
        s.spawn(|| tx.send(rig.call(json!({"action": "startjail", "jail": "test"}))).unwrap());
        let early = rx.recv_timeout(std::time::Duration::from_millis(300));
        assert!(early.is_err(), "a reply while the record's write waits: {early:?}");
        gate.open();
        let r = rx.recv().unwrap();
        assert!(r["test"]["+ Starting services OK"].is_string(), "{r}");
    });
    let last = rig.zfs.local(&dataset, &format!("{IOC}last_started")).unwrap_or_default();
    assert!(last.starts_with("20"), "recorded before the reply: {last:?}");
}

/// A rig whose service follows `changes`, standing in for ZFS's event
/// queue (posted and settled by the test); settled, nothing posted yet.
fn following(name: &str) -> (Rig, Arc<Changes>) {
    let changes = Arc::new(Changes::default());
    changes.settle_all();
    let c = changes.clone();
    (Rig::with(name, move |i| i.with_changes(c)), changes)
}

/// ZFS announcing a change, written: to a pool itself when `pool_level`.
fn announce(changes: &Changes, pool_level: bool) {
    changes.post(pool_level);
    changes.settle_all();
}

/// Runs `round` until one takes less than `TRUST_AGE` (what a finding
/// is trusted for; a host too slow for that proves nothing), at most 5
/// times; the result of that round.
fn within_trust_age<T>(mut round: impl FnMut() -> (std::time::Duration, T)) -> T {
    for _ in 0..5 {
        let (took, out) = round();
        if took < TRUST_AGE {
            return out;
        }
    }
    panic!("no round took less than {TRUST_AGE:?}");
}

#[test]
fn a_write_finds_the_pool_again_only_once_zfs_announces_a_change_to_a_pool() {
    let (rig, changes) = following("pool-choice-followed");
    test_jail(&rig, false);
    // A stop of a stopped jail is a write's trip: its plan, on the pool in
    // use, changes nothing.
    let stop = json!({"action": "stopjail", "jail": "test"});
    let (second, third) = within_trust_age(|| {
        announce(&changes, true);
        let t = std::time::Instant::now();
        let first = rig.call(stop.clone());
        assert!(first["test"]["INFO"].is_string(), "the pool found: {first}");
        rig.zfs.fail("pools", "");
        let second = rig.call(stop.clone());
        // A pool imported, marked or made: the next write looks again
        // (within the second too: not for the finding's age).
        announce(&changes, true);
        let third = rig.call(stop.clone());
        (t.elapsed(), (second, third))
    });
    assert!(second["test"]["INFO"].is_string(), "no pool changed: the finding stands, no pool opened: {second}");
    let err = third["error"].as_str().unwrap_or_else(|| panic!("the pools were not looked at again: {third}"));
    assert!(err.contains("failed as the test asked"), "{err}");
    // A change to a dataset (this daemon's own writes), once written,
    // leaves it standing.
    let after = within_trust_age(|| {
        announce(&changes, true);
        let t = std::time::Instant::now();
        rig.call(stop.clone());
        announce(&changes, false);
        rig.zfs.fail("pools", "");
        let after = rig.call(stop.clone());
        // The failure, if not hit, is used up here.
        announce(&changes, true);
        rig.call(stop.clone());
        (t.elapsed(), after)
    });
    assert!(after["test"]["INFO"].is_string(), "a dataset's change is no pool's: {after}");
}

#[test]
fn the_jails_dataset_s_identity_is_read_again_only_once_zfs_announces_a_change_to_a_pool() {
    let (rig, changes) = following("guid-followed");
    let uuid = test_jail(&rig, false);
    // Two more jails: one changed of three is read alone (of one, the
    // whole index would be, the guid with it).
    for other in ["b0000000-0000-0000-0000-000000000000", "c0000000-0000-0000-0000-000000000000"] {
        rig.jail(other, &[("tag".to_string(), other[..1].to_string())]);
    }
    let dataset = format!("tank/iocage/jails/{uuid}");
    let (second, third) = within_trust_age(|| {
        announce(&changes, true);
        let t = std::time::Instant::now();
        assert!(rig.call(json!({"action": "listjails"}))[&uuid].is_object(), "looked, the guid read");
        rig.zfs.fail("native_props", "tank/iocage/jails");
        // A change behind the daemon's back, announced: a look, from the
        // log, without opening the jails dataset.
        let tag = format!("t{}", t.elapsed().as_nanos());
        rig.zfs.backend().set_props(&dataset, &[(&format!("{IOC}tag"), tag.as_str())]).unwrap();
        announce(&changes, false);
        let second = rig.call(json!({"action": "listjails"}));
        announce(&changes, true);
        let third = rig.server.rest(Some(&rig.server.write_key), &[], &json!({"action": "listjails"}));
        (t.elapsed(), ((second, tag), third))
    });
    let ((second, tag), third) = (second, third);
    assert_eq!(second[&uuid]["tag"], tag.as_str(), "the change seen, from the log: {second}");
    assert!(third.raw.contains("failed as the test asked"), "a pool's change: the guid is read again: {}", third.raw);
}

#[test]
fn a_change_whose_record_the_log_has_overwritten_is_still_listed() {
    let rig = Rig::fresh("history-ring");
    test_jail(&rig, false);
    let listed = rig.call(json!({"action": "listjails"}));
    let uuid = listed.as_object().unwrap().keys().next().unwrap().clone();
    assert_eq!(listed[&uuid]["tag"], "test", "{listed}");
    // Behind the service's back: a new tag, then so much log that ZFS's
    // ring goes round past the service's last look (the tag's record too).
    let dataset = format!("tank/iocage/jails/{uuid}");
    rig.zfs.backend().set_props(&dataset, &[(&format!("{IOC}tag"), "renamed")]).unwrap();
    rig.zfs.overwrite_history(POOL);
    let listed = rig.call(json!({"action": "listjails"}));
    assert_eq!(listed[&uuid]["tag"], "renamed", "a change whose record is gone is seen: {listed}");
}

#[test]
fn a_start_whose_rc_fails_removes_the_jail_again() {
    let rig = Rig::fresh("start-rc-fails");
    rig.release("10.2-RELEASE");
    let r = rig.call(
        json!({"action": "createjail", "props": "tag=bad release=10.2-RELEASE exec_start=false", "switches": "-c"}),
    );
    assert!(r["success"].is_object(), "{r}");
    let r = rig.call(json!({"action": "startjail", "jail": "bad"}));
    let text = r.to_string();
    assert!(text.contains("exec_start") && text.contains("removed again"), "says what failed and what was undone: {r}");
    let calls = rig.runtime.take_calls();
    assert!(calls.last().is_some_and(|c| c.starts_with("stop ioc-")), "the jail was removed: {calls:?}");
    assert!(rig.runtime.running().unwrap().is_empty(), "nothing runs");
}

#[test]
fn a_running_jail_is_not_destroyed_and_a_stopped_one_goes_with_its_files() {
    let rig = Rig::fresh("destroy");
    let uuid = test_jail(&rig, true);
    let home = rig.zfs.dir(&format!("tank/iocage/jails/{uuid}")).unwrap();
    assert!(home.join("root/bin/marker").is_file(), "the clone has its release's files");
    let before = rig.zfs.dump();
    let r = rig.call(json!({"action": "destroyjail", "jail": "test"}));
    let err = r["error"].as_str().unwrap_or_else(|| panic!("a running jail is destroyed: {r}"));
    assert!(err.contains(&uuid) && err.contains("running"), "{err}");
    assert_eq!(rig.zfs.dump(), before, "nothing changed");
    assert_eq!(rig.runtime.running().unwrap().len(), 1, "it runs on");

    rig.call(json!({"action": "stopjail", "jail": "test"}));
    let r = rig.call(json!({"action": "destroyjail", "jail": "test"}));
    assert!(r.get("error").is_none(), "{r}");
    assert_eq!(jail_datasets(&rig), Vec::<String>::new(), "its datasets are gone");
    assert!(!home.exists(), "and its files");
    // The release it was cloned from stays, without the clone's snapshot.
    let left: Vec<String> = rig.zfs.names().into_iter().filter(|n| n.contains("releases")).collect();
    assert!(left.iter().all(|n| !n.contains('@')), "{left:?}");
    assert!(left.contains(&"tank/iocage/releases/10.2-RELEASE/root".to_string()), "{left:?}");
}

#[test]
fn bad_input_is_refused_by_name_and_changes_nothing() {
    let rig = Rig::fresh("bad-input");
    test_jail(&rig, false);
    let before = rig.zfs.dump();
    for (args, needles) in [
        (json!({"action": "createjail", "props": "tag=x release=10.2-RELEASE nosuchprop=1"}), vec!["nosuchprop"]),
        (
            json!({"action": "createjail", "props": "tag=test release=10.2-RELEASE", "switches": "-c"}),
            vec!["'test' is already used"],
        ),
        (json!({"action": "createjail", "props": "tag=x release=10.2-RELEASE quota=abc"}), vec!["quota", "abc"]),
        (json!({"action": "createjail", "props": "tag=x release=9.9-RELEASE"}), vec!["9.9-RELEASE"]),
        (json!({"action": "startjail", "jail": "ghost"}), vec!["'ghost' not found"]),
        (json!({"action": "clonejail", "jail": "test", "props": "tag=test"}), vec!["'test' is already used"]),
        (json!({"action": "capjail", "jail": "test"}), vec!["(test) is not running"]),
        (json!({"action": "execjail", "jail": "test", "command": "echo hi"}), vec!["user"]),
        (
            json!({"action": "execjail", "jail": "test", "command": "echo hi", "user": "root"}),
            vec!["(test) is not running"],
        ),
        (json!({"action": "destroyjail", "jail": "tes"}), vec!["'tes' not found"]),
    ] {
        let r = rig.call(args.clone());
        let text = r.to_string();
        assert!(text.contains("error") || text.contains("ERROR"), "{args}: refused: {r}");
        for n in needles {
            assert!(text.contains(n), "{args}: names {n:?}: {r}");
        }
        assert_eq!(rig.zfs.dump(), before, "{args}: nothing changed");
    }
    assert!(rig.runtime.running().unwrap().is_empty());
}
