//! The writing actions against real ZFS (run in the guest): createjail,
//! clonejail, destroyjail and the clean actions. The API document's
//! examples over both transports; what each create switch leaves on ZFS;
//! failure part-way and SIGKILL part-way leaving no trace; dependents
//! protected; hostile names refused with the pool unchanged.

mod rig;

use std::collections::BTreeMap;

use serde_json::{Value, json};

use iocaged::zfs::Zfs;
use rig::call;
use rig::client::{self, Ws};
use rig::conformance::{conform, lock};
use rig::daemon::Daemon;
use rig::fixture::Fixture;
use rig::{get, host, tree, zfs};

const SEED_JAIL: &str = "0bf985de-ca0f-11e5-8d45-d05099728dbf";

/// A pool with release 10.2-RELEASE and one jail tagged `test` cloned from it.
fn with_test_jail() -> Fixture {
    let f = Fixture::fresh();
    f.release("10.2-RELEASE", 0);
    let d = Daemon::start(&[]);
    let r = client::rest(
        d.rest,
        &json!({"action": "createjail", "props": "tag=test release=10.2-RELEASE", "switches": "-c"}),
    );
    assert!(r.body["args"]["createjail"]["success"].is_object(), "{}", r.raw);
    assert!(d.stop());
    f
}

/// The UUID in "Successfully created": "<uuid> (<tag>)".
fn created_uuid(reply: &Value) -> String {
    let s = reply["success"]["Successfully created"].as_str().unwrap_or_else(|| panic!("not created: {reply}"));
    s.split_whitespace().next().unwrap().to_string()
}

fn settings(d: &Daemon, jail: &str) -> BTreeMap<String, String> {
    let v = call(d, json!({"action": "getjailsettings", "jail": jail}));
    v[jail]
        .as_object()
        .unwrap_or_else(|| panic!("{v}"))
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().into()))
        .collect()
}

#[test]
fn createjail_matches_the_document() {
    conform("createjail", false, |_| {
        let f = Fixture::fresh();
        f.release("10.2-RELEASE", 0);
        f
    });
}

#[test]
fn clonejail_matches_the_document() {
    conform("clonejail", false, |_| with_test_jail());
}

#[test]
fn destroyjail_matches_the_document() {
    conform("destroyjail", false, |_| with_test_jail());
}

#[test]
fn clean_actions_match_the_document() {
    for action in ["cleanjails", "cleanreleases", "cleantemplates", "cleanall"] {
        conform(action, false, |_| {
            let f = Fixture::fresh();
            f.release("10.2-RELEASE", 0);
            f
        });
    }
}

#[test]
fn each_create_switch_leaves_the_expected_datasets_and_properties() {
    let _g = lock();
    let f = Fixture::fresh();
    let root = f.release("13.2-RELEASE", 1);
    f.base("13.2-RELEASE", &["bin", "lib", "usr/bin"]);
    // A default set on .defaults applies; a value from the client beats it.
    f.set_defaults(&[("notes".into(), "from-defaults".into()), ("boot".into(), "on".into())]);
    let d = Daemon::start(&[]);
    let before_snaps = rig::zfs(&["list", "-H", "-t", "snapshot", "-o", "name", "-r", &root]);

    // Thick: an independent copy.
    let r = call(&d, json!({"action": "createjail", "props": "tag=thick release=13.2-RELEASE notes=\"from client\""}));
    let thick = created_uuid(&r);
    assert_eq!(r["success"]["Successfully created"], format!("{thick} (thick)"));
    let s = settings(&d, "thick");
    assert_eq!((s["tag"].as_str(), s["type"].as_str(), s["release"].as_str()), ("thick", "jail", "13.2-RELEASE"));
    assert_eq!((s["host_hostuuid"].as_str(), s["host_hostname"].as_str()), (thick.as_str(), thick.as_str()));
    assert_eq!(s["notes"], "from client", "the client's value wins over the default");
    assert_eq!(s["boot"], "on", "a default applies where the client gave none");
    assert_eq!(s["jail_zfs_dataset"], format!("iocage/jails/{thick}/root/data"));
    let jroot = format!("{}/iocage/jails/{thick}/root", f.pool);
    assert_eq!(get(&jroot, "origin"), "-", "a thick jail is no clone");
    assert_eq!(std::fs::read_to_string(format!("/iocage/jails/{thick}/root/bin/marker")).unwrap(), "13.2-RELEASE");
    assert_eq!(std::fs::metadata(format!("/iocage/jails/{thick}/root/data.bin")).unwrap().len(), 1 << 20);
    assert!(std::path::Path::new(&format!("/iocage/jails/{thick}/fstab")).exists());
    assert_eq!(get(&format!("{jroot}/data"), "mountpoint"), "none");
    assert_eq!(
        rig::zfs(&["list", "-H", "-t", "snapshot", "-o", "name", "-r", &root]),
        before_snaps,
        "no snapshot left"
    );
    assert_eq!(rig::zfs(&["list", "-H", "-t", "snapshot", "-o", "name", "-r", &jroot]), "");

    // -c: a clone of a snapshot of the release made for it.
    let clone = created_uuid(&call(
        &d,
        json!({"action": "createjail", "props": "tag=thin release=13.2-RELEASE", "switches": "-c"}),
    ));
    assert_eq!(get(&format!("{}/iocage/jails/{clone}/root", f.pool), "origin"), format!("{root}@{clone}"));
    assert_eq!(settings(&d, "thin")["type"], "clonejail");

    // -b: read-only clones of the base pieces.
    let base = created_uuid(&call(
        &d,
        json!({"action": "createjail", "props": "tag=based release=13.2-RELEASE", "switches": "-b"}),
    ));
    let piece = format!("{}/iocage/jails/{base}/root/usr/bin", f.pool);
    assert_eq!(get(&piece, "origin"), format!("{}/iocage/base/13.2-RELEASE/root/usr/bin@{base}", f.pool));
    assert_eq!(get(&piece, "readonly"), "on");
    assert_eq!(std::fs::read_to_string(format!("/iocage/jails/{base}/root/usr/bin/piece")).unwrap(), "usr/bin");
    assert_eq!(settings(&d, "based")["type"], "basejail");

    // -e: datasets and properties only.
    let r = call(&d, json!({"action": "createjail", "props": "tag=empty", "switches": "-e"}));
    let empty = r["success"]["uuid"].as_str().unwrap_or_else(|| panic!("{r}")).to_string();
    assert!(rig::zfs(&["list", "-H", "-o", "name", &format!("{}/iocage/jails/{empty}/root", f.pool)]).contains(&empty));
    assert_eq!(settings(&d, "empty")["type"], "emptyjail");

    let listed = call(&d, json!({"action": "listjails"}));
    assert_eq!(listed.as_object().unwrap().len(), 4, "{listed}");
    // Destroying them leaves no snapshot taken for them (a basejail's
    // recursive base snapshot included) and keeps the releases.
    for tag in ["thick", "thin", "based", "empty"] {
        assert!(call(&d, json!({"action": "destroyjail", "jail": tag}))["success"].is_object(), "{tag}");
    }
    assert_eq!(rig::zfs(&["list", "-H", "-t", "snapshot", "-o", "name", "-r", &format!("{}/iocage", f.pool)]), "");
    assert!(tree(&f.pool).contains(&root));
    assert!(d.stop());
}

#[test]
fn clonejail_copies_properties_with_a_new_identity_and_keeps_the_fstab_aside() {
    let _g = lock();
    let f = with_test_jail();
    let d = Daemon::start(&[]);
    call(&d, json!({"action": "getjailsettings", "jail": "test"}));
    let src = settings(&d, "test")["host_hostuuid"].clone();
    std::fs::write(format!("/iocage/jails/{src}/fstab"), format!("/x /iocage/jails/{src}/root/x nullfs ro 0 0\n"))
        .unwrap();
    let r = call(&d, json!({"action": "clonejail", "jail": "test", "props": "tag=copy notes=cloned"}));
    let uuid = created_uuid(&r);
    assert_eq!((r["jail"].as_str(), r["props"].as_str()), (Some("test"), Some("tag=copy notes=cloned")));
    let s = settings(&d, "copy");
    assert_eq!((s["host_hostuuid"].as_str(), s["host_hostname"].as_str()), (uuid.as_str(), uuid.as_str()));
    assert_eq!((s["notes"].as_str(), s["release"].as_str()), ("cloned", "10.2-RELEASE"));
    assert_eq!(
        get(&format!("{}/iocage/jails/{uuid}", f.pool), "origin"),
        format!("{}/iocage/jails/{src}@{uuid}", f.pool)
    );
    assert_eq!(std::fs::read_to_string(format!("/iocage/jails/{uuid}/fstab")).unwrap(), "", "a fresh fstab");
    assert!(std::fs::read_to_string(format!("/iocage/jails/{uuid}/fstab.{src}")).unwrap().contains(&src));
    // The source cannot be destroyed while the clone depends on it; the clone can.
    let err = call(&d, json!({"action": "destroyjail", "jail": "test"}));
    assert!(err["error"].as_str().unwrap().contains(&uuid), "names the dependent clone: {err}");
    call(&d, json!({"action": "destroyjail", "jail": "copy"}));
    assert_eq!(
        rig::zfs(&["list", "-H", "-t", "snapshot", "-o", "name", "-r", &format!("{}/iocage/jails", f.pool)]),
        ""
    );
    assert!(call(&d, json!({"action": "destroyjail", "jail": "test"}))["success"].is_object());
    assert!(d.stop());
}

#[test]
fn destroyjail_keeps_snapshots_a_user_made() {
    let _g = lock();
    let f = Fixture::fresh();
    let rel = f.release("12.0-RELEASE", 0);
    zfs(&["snapshot", &format!("{rel}@users-own")]);
    let j = f.jail(SEED_JAIL, &[("tag", "mine")]);
    zfs(&["destroy", &format!("{j}/root")]);
    zfs(&["clone", &format!("{rel}@users-own"), &format!("{j}/root")]);
    let d = Daemon::start(&[]);
    assert!(call(&d, json!({"action": "destroyjail", "jail": "mine"}))["success"].is_object());
    assert!(tree(&f.pool).contains(&format!("{rel}@users-own")), "the user's snapshot stays");
    assert!(d.stop());
}

#[test]
fn a_create_that_fails_on_its_last_step_leaves_nothing() {
    let _g = lock();
    let f = Fixture::fresh();
    f.release("13.2-RELEASE", 4);
    let d = Daemon::start(&[]);
    let before = tree(&f.pool);
    // quota is set last; 1K is below what the copied data uses, so ZFS refuses it.
    let r = call(&d, json!({"action": "createjail", "props": "tag=late release=13.2-RELEASE quota=1K"}));
    let err = r["error"].as_str().unwrap_or_else(|| panic!("expected an error: {r}"));
    assert!(err.contains("setting native properties") && err.contains("removed"), "{err}");
    assert_eq!(tree(&f.pool), before, "the dataset list is exactly as before");
    // The same failure for a clone-based create.
    let r = call(
        &d,
        json!({"action": "createjail", "props": "tag=late release=13.2-RELEASE reservation=1T", "switches": "-c"}),
    );
    assert!(r["error"].is_string(), "{r}");
    assert_eq!(tree(&f.pool), before);
    assert!(d.stop());
}

/// SIGKILL at several points of a thick copy: each time the daemon dies at
/// once, having held no write end of the copy's pipe (`Daemon::kill` fails the test if it is still there 60 s later:
/// with both ends of the copy's pipe in the daemon, a killed daemon was
/// seen stuck for ever in the receive), and the next start removes every
/// trace of the half-made jail.
#[test]
fn a_daemon_killed_during_a_thick_create_leaves_no_trace_after_restart() {
    let _g = lock();
    let f = Fixture::fresh();
    f.release("13.2-RELEASE", 400);
    let before = tree(&f.pool);
    let z = Zfs::start().unwrap();
    let jails = format!("{}/iocage/jails", f.pool);
    let mut helpers_seen = 0;
    for delay_ms in [300, 1200, 3000] {
        let d = Daemon::start(&[]);
        let rest = d.rest;
        let req = std::thread::spawn(move || {
            client::http(
                rest,
                "PUT",
                "/sysadm/iocage",
                &[],
                br#"{"action":"createjail","props":"tag=big release=13.2-RELEASE"}"#,
            )
        });
        // Wait until the jail's dataset exists (the copy starts right
        // after), then let the copy run a while and SIGKILL.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        loop {
            let j = jails.clone();
            if !z.run_blocking(move |l| l.children(&j)).unwrap().unwrap().is_empty() {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "the create never started");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        // What makes the daemon always killable: it never holds the write
        // end of the pipe it receives from (the sender is a process of its
        // own), so that end closes when the sender ends, whatever happens
        // to the daemon.
        if let Some(both) = host::pipes_held_at_both_ends_steadily(d.pid().unwrap()) {
            assert!(both.is_empty(), "the daemon holds both ends of {both:?} during a copy");
        }
        // Nor does any of the copy's helpers (the sender, the relay).
        for helper in ["zfs-send", "zfs-relay"] {
            for pid in host::helpers(helper).unwrap_or_default() {
                helpers_seen += 1;
                let both = host::pipes_held_at_both_ends_steadily(pid).unwrap_or_default();
                assert!(both.is_empty(), "the {helper} holds both ends of {both:?}");
            }
        }
        d.kill();
        let reply = req.join().unwrap();
        assert_ne!(reply.status, 200, "the create was cut short after {delay_ms} ms: {}", reply.raw);
        assert_ne!(tree(&f.pool), before, "a half-made jail is left while the daemon is down");
        // The helpers went with the daemon.
        for helper in ["zfs-send", "zfs-relay"] {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            while host::helpers(helper).is_some_and(|p| !p.is_empty()) {
                assert!(std::time::Instant::now() < deadline, "a {helper} outlived the daemon by 30 s");
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
        let d = Daemon::start(&[]);
        assert_eq!(tree(&f.pool), before, "start-up removed every trace (killed after {delay_ms} ms)");
        assert_eq!(call(&d, json!({"action": "listjails"})), json!({}));
        assert!(d.stop());
    }
    if host::helpers("zfs-send").is_some() {
        assert!(helpers_seen > 0, "the copy's helpers were never seen: the checks above looked at nothing");
    }
}

#[test]
fn cleanreleases_refuses_while_a_jail_depends_on_a_release() {
    let _g = lock();
    let f = with_test_jail();
    let d = Daemon::start(&[]);
    let uuid = settings(&d, "test")["host_hostuuid"].clone();
    let before = tree(&f.pool);
    let err = call(&d, json!({"action": "cleanreleases"}));
    let msg = err["error"].as_str().unwrap_or_else(|| panic!("{err}"));
    assert!(msg.contains(&format!("{uuid} (test)")), "names the jail: {msg}");
    assert_eq!(tree(&f.pool), before);
    assert!(call(&d, json!({"action": "destroyjail", "jail": "test"}))["success"].is_object());
    assert_eq!(call(&d, json!({"action": "cleanreleases"}))["success"], "All RELEASEs have been cleaned.");
    assert!(!tree(&f.pool).iter().any(|n| n.contains("10.2-RELEASE")), "{:?}", tree(&f.pool));
    assert!(d.stop());
}

#[test]
fn clean_actions_never_touch_anything_outside_iocage() {
    let _g = lock();
    let f = with_test_jail();
    let outside = format!("{}/not-iocage", f.pool);
    zfs(&["create", &outside]);
    let d = Daemon::start(&[]);
    assert_eq!(call(&d, json!({"action": "cleanjails"}))["success"], "All jails have been cleaned.");
    assert_eq!(call(&d, json!({"action": "listjails"})), json!({}));
    // A clone outside POOL/iocage of a release snapshot: cleanall must refuse.
    let rel = format!("{}/iocage/releases/10.2-RELEASE/root", f.pool);
    zfs(&["snapshot", &format!("{rel}@keep")]);
    zfs(&["clone", &format!("{rel}@keep"), &format!("{outside}/clone")]);
    let before = tree(&f.pool);
    let err = call(&d, json!({"action": "cleanall"}));
    assert!(err["error"].as_str().unwrap_or_default().contains(&format!("{outside}/clone")), "{err}");
    assert_eq!(tree(&f.pool), before);
    zfs(&["destroy", &format!("{outside}/clone")]);
    assert_eq!(call(&d, json!({"action": "cleanall"}))["success"], "All iocage datasets have been cleaned.");
    let left = tree(&f.pool);
    assert!(left.contains(&outside), "{left:?}");
    assert!(!left.iter().any(|n| n.starts_with(&format!("{}/iocage/", f.pool))), "{left:?}");
    zfs(&["destroy", "-r", &outside]);
    assert!(d.stop());
}

#[test]
fn hostile_tags_and_properties_are_refused_and_change_nothing() {
    let _g = lock();
    let f = with_test_jail();
    let d = Daemon::start(&[]);
    let before = (tree(&f.pool), f.state());
    let long = "a".repeat(300);
    let hostile: Vec<(String, &str)> = vec![
        ("tag=../../etc".into(), "tag"),
        ("tag=a/b".into(), "tag"),
        ("tag=x@snap".into(), "tag"),
        ("tag=x#book".into(), "tag"),
        ("tag=..".into(), "tag"),
        (format!("tag={long}"), "tag"),
        ("tag=\"a b\"".into(), "tag"),
        ("tag=\"tab\there\"".into(), "tag"),
        ("tag=\"nl\nx\"".into(), "tag"),
        ("tag=\"bell\u{7}\"".into(), "tag"),
        ("tag=\"rtl\u{202e}gpj\"".into(), "tag"),
        ("tag=$(reboot)".into(), "tag"),
        ("tag=`id`;rm".into(), "tag"),
        ("tag=test".into(), "already used"),
        ("release=../../../tank".into(), "release"),
        ("release=10.2-RELEASE/../x".into(), "release"),
        ("jail_zfs_dataset=../../other".into(), "jail_zfs_dataset"),
        ("notes=\"x\u{0}y\"".into(), "notes"),
        ("mountpoint=relative/path".into(), "mountpoint"),
        ("host_hostuuid=whatever".into(), "read-only"),
    ];
    assert_eq!(hostile.len(), 20);
    for (props, needle) in &hostile {
        for transport in ["rest", "ws"] {
            let props =
                if props.contains("release=") { props.clone() } else { format!("{props} release=10.2-RELEASE") };
            let args = json!({"action": "createjail", "props": props, "switches": "-c"});
            let reply = if transport == "rest" {
                call(&d, args)
            } else {
                Ws::connect(d.ws).call(&json!({"id": "h", "name": "iocage", "namespace": "sysadm", "args": args}))["args"]["createjail"].clone()
            };
            let msg =
                reply["error"].as_str().unwrap_or_else(|| panic!("{props:?} over {transport} was accepted: {reply}"));
            assert!(msg.contains(needle), "{props:?} over {transport}: {msg:?} should mention {needle:?}");
        }
    }
    let clone_err = call(&d, json!({"action": "clonejail", "jail": "test", "props": "tag=../x"}));
    assert!(clone_err["error"].as_str().unwrap_or_default().contains("tag"), "{clone_err}");
    assert_eq!((tree(&f.pool), f.state()), before, "the pool is unchanged");
    assert!(d.stop());
}

/// Two jails holding clones of each other's snapshots (what `zfs promote`
/// or hand-made clones leave): cleanjails and cleanall destroy them
/// together, as one tree, rather than refusing.
#[test]
fn cleanall_takes_jails_that_hold_clones_of_each_other() {
    let _g = lock();
    let f = with_test_jail();
    let d = Daemon::start(&[]);
    let a = settings(&d, "test")["host_hostuuid"].clone();
    let jails = format!("{}/iocage/jails", f.pool);
    // b: a clone of a's root; then a dataset inside a cloned from b.
    zfs(&["snapshot", &format!("{jails}/{a}/root@x")]);
    zfs(&["clone", &format!("{jails}/{a}/root@x"), &format!("{jails}/b")]);
    zfs(&["snapshot", &format!("{jails}/b@y")]);
    zfs(&["clone", &format!("{jails}/b@y"), &format!("{jails}/{a}/extra")]);
    let r = call(&d, json!({"action": "cleanall"}));
    assert_eq!(r["success"], "All iocage datasets have been cleaned.", "{r}");
    let left = tree(&f.pool);
    assert!(!left.iter().any(|n| n.starts_with(&format!("{}/iocage/", f.pool))), "{left:?}");
    assert!(d.stop());
}

/// iocaged's own release actions: listreleases names each release's
/// dependents; destroyrelease is refused, naming them, and changes nothing
/// while there are any, then removes the release.
#[test]
fn listreleases_and_destroyrelease() {
    let _g = lock();
    let f = with_test_jail();
    let d = Daemon::start(&[]);
    let uuid = settings(&d, "test")["host_hostuuid"].clone();
    let listed = call(&d, json!({"action": "listreleases"}));
    assert_eq!(listed, json!({"10.2-RELEASE": {"dependents": [format!("{uuid} (test)")]}}));
    let before = tree(&f.pool);
    let r = call(&d, json!({"action": "destroyrelease", "release": "10.2-RELEASE"}));
    let msg = r["error"].as_str().unwrap_or_else(|| panic!("{r}"));
    assert!(msg.contains("release 10.2-RELEASE") && msg.contains(&format!("{uuid} (test)")), "{msg}");
    assert_eq!(tree(&f.pool), before, "a refusal changes nothing");
    for bad in ["../jails", "", "a/b"] {
        let r = call(&d, json!({"action": "destroyrelease", "release": bad}));
        assert!(r["error"].is_string(), "{bad:?}: {r}");
    }
    assert_eq!(tree(&f.pool), before);
    assert!(call(&d, json!({"action": "destroyjail", "jail": "test"}))["success"].is_object());
    let r = call(&d, json!({"action": "destroyrelease", "release": "10.2-RELEASE"}));
    assert_eq!(r["success"], "release 10.2-RELEASE destroyed.", "{r}");
    assert!(!tree(&f.pool).iter().any(|n| n.contains("10.2-RELEASE")), "{:?}", tree(&f.pool));
    assert_eq!(call(&d, json!({"action": "listreleases"})), json!({}));
    let r = call(&d, json!({"action": "destroyrelease", "release": "10.2-RELEASE"}));
    assert!(r["error"].as_str().unwrap_or_default().contains("not found"), "{r}");
    assert!(d.stop());
}
