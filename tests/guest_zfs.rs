//! The ZFS layer against the real OpenZFS kernel module (run in the guest by
//! tests/vm/run.sh). Each test works in a dataset of its own and checks the
//! result with the `zfs` command, not with the code under test.

mod rig;

use iocaged::zfs::{ErrorKind, PropSource, Zfs};
use rig::{Scratch, get, pool, tree, zfs};

fn lib() -> Zfs {
    pool();
    Zfs::start().expect("libzfs_init with the module loaded")
}

#[test]
fn kernel_module_is_loaded_and_libzfs_opens() {
    let pool = pool();
    assert!(std::path::Path::new("/dev/zfs").exists());
    let z = lib();
    let pools = z.run_blocking(|l| l.pools()).unwrap().unwrap();
    assert!(pools.iter().any(|p| p.name == pool), "{pools:?}");
}

#[test]
fn children_are_the_direct_children_sorted() {
    let s = Scratch::new("children");
    for d in ["b", "a", "a/deep", "c"] {
        zfs(&["create", &s.path(d)]);
    }
    let name = s.name.clone();
    let got = lib().run_blocking(move |l| l.children(&name)).unwrap().unwrap();
    assert_eq!(got, vec![s.path("a"), s.path("b"), s.path("c")]);
}

#[test]
fn native_properties_printed_and_raw() {
    let s = Scratch::new("native");
    zfs(&["set", "quota=1G", "compression=lz4", &s.name]);
    let name = s.name.clone();
    let props = lib()
        .run_blocking(move |l| {
            l.native_props(&name, &["quota", "reservation", "compression", "origin", "used", "available", "mountpoint"])
        })
        .unwrap()
        .unwrap();
    assert_eq!(props["quota"].printed.as_deref(), Some("1G"));
    assert_eq!(props["quota"].raw.as_deref(), Some("1073741824"));
    assert_eq!(props["quota"].source, PropSource::Local);
    assert_eq!(props["reservation"].printed.as_deref(), Some("none"));
    assert_eq!(props["reservation"].raw.as_deref(), Some("0"));
    assert_eq!(props["compression"].printed.as_deref(), Some("lz4"));
    assert_eq!(props["origin"].printed, None, "a non-clone has no origin");
    assert_eq!(props["used"].raw.as_deref(), Some(get(&s.name, "used").as_str()));
    assert_eq!(props["mountpoint"].printed.as_deref(), Some(format!("/{}", s.name).as_str()));
}

/// One dataset's user properties and named native ones in one read, as a
/// scan of its parent reads each child (the index's read of one jail).
#[test]
fn one_dataset_s_properties_read_as_a_scan_reads_each_child() {
    let s = Scratch::new("oneds");
    zfs(&["create", &s.path("child")]);
    zfs(&["set", "org.freebsd.iocage:notes=inherited", &s.name]);
    zfs(&["set", "org.freebsd.iocage:tag=child", "mountpoint=/oneds-elsewhere", &s.path("child")]);
    let (parent, child) = (s.name.clone(), s.path("child"));
    let (one, scanned) = lib()
        .run_blocking(move |l| {
            (
                l.dataset_props(&child, &["mountpoint", "quota"]).unwrap(),
                l.scan_children(&parent, &["mountpoint", "quota"]).unwrap(),
            )
        })
        .unwrap();
    assert_eq!(one.name, s.path("child"));
    assert_eq!(one.user["org.freebsd.iocage:tag"].value, "child");
    assert_eq!(one.user["org.freebsd.iocage:notes"].source, s.name, "inherited from the parent");
    assert_eq!(one.native["mountpoint"].printed.as_deref(), Some(get(&s.path("child"), "mountpoint").as_str()));
    assert_eq!(one.native["mountpoint"].source, PropSource::Local);
    assert_eq!(one.native["quota"].printed.as_deref(), Some("none"));
    assert_eq!(scanned, vec![one], "the same as the scan's");
}

#[test]
fn unknown_native_property_is_an_error_naming_it() {
    let s = Scratch::new("badnative");
    let name = s.name.clone();
    let err = lib().run_blocking(move |l| l.native_props(&name, &["nosuchprop"])).unwrap().unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidProperty);
    assert!(err.to_string().contains("nosuchprop"), "{err}");
}

#[test]
fn user_properties_local_and_inherited() {
    let s = Scratch::new("userprops");
    zfs(&["create", &s.path("child")]);
    zfs(&["set", "org.freebsd.iocage:tag=web", "org.freebsd.iocage:notes=a b=c", &s.name]);
    zfs(&["set", "org.freebsd.iocage:tag=child", &s.path("child")]);
    let (parent, child) = (s.name.clone(), s.path("child"));
    let (p, c) = lib().run_blocking(move |l| (l.user_props(&parent).unwrap(), l.user_props(&child).unwrap())).unwrap();
    assert_eq!(p["org.freebsd.iocage:tag"].value, "web");
    assert_eq!(p["org.freebsd.iocage:notes"].value, "a b=c");
    assert_eq!(c["org.freebsd.iocage:tag"].value, "child");
    assert_eq!(c["org.freebsd.iocage:tag"].source, s.path("child"));
    assert_eq!(c["org.freebsd.iocage:notes"].value, "a b=c", "inherited");
    assert_eq!(c["org.freebsd.iocage:notes"].source, s.name, "inherited from the parent");
}

#[test]
fn scan_children_reads_every_child_in_one_pass() {
    let s = Scratch::new("scan");
    for (i, d) in ["j1", "j2", "j3"].iter().enumerate() {
        zfs(&["create", "-o", &format!("org.freebsd.iocage:tag=t{i}"), &s.path(d)]);
        zfs(&["create", &s.path(&format!("{d}/root"))]);
    }
    let name = s.name.clone();
    let got = lib().run_blocking(move |l| l.scan_children(&name, &["used", "quota"])).unwrap().unwrap();
    let names: Vec<_> = got.iter().map(|d| d.name.clone()).collect();
    assert_eq!(names, vec![s.path("j1"), s.path("j2"), s.path("j3")], "depth 1 only");
    for (i, d) in got.iter().enumerate() {
        assert_eq!(d.user["org.freebsd.iocage:tag"].value, format!("t{i}"));
        assert_eq!(d.native["quota"].printed.as_deref(), Some("none"));
        assert!(d.native["used"].raw.as_deref().unwrap().parse::<u64>().unwrap() > 0);
    }
}

#[test]
fn set_several_properties_at_once() {
    let s = Scratch::new("setprops");
    let name = s.name.clone();
    lib()
        .run_blocking(move |l| {
            l.set_props(&name, &[("org.freebsd.iocage:tag", "x y"), ("quota", "2G"), ("compression", "off")])
        })
        .unwrap()
        .unwrap();
    assert_eq!(get(&s.name, "org.freebsd.iocage:tag"), "x y");
    assert_eq!(get(&s.name, "quota"), "2147483648");
    assert_eq!(get(&s.name, "compression"), "off");
}

#[test]
fn invalid_native_value_is_refused_and_changes_nothing() {
    let s = Scratch::new("badvalue");
    let name = s.name.clone();
    let err = lib()
        .run_blocking(move |l| l.set_props(&name, &[("org.freebsd.iocage:tag", "new"), ("compression", "bogus")]))
        .unwrap()
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidProperty, "{err}");
    assert!(err.to_string().contains(&s.name), "names the dataset: {err}");
    assert!(err.to_string().contains("compression"), "names the property: {err}");
    assert_eq!(get(&s.name, "org.freebsd.iocage:tag"), "-", "all or nothing");
    assert_eq!(get(&s.name, "compression"), "lz4");
}

#[test]
fn user_property_value_at_the_length_limit() {
    let s = Scratch::new("longvalue");
    let (n1, n2) = (s.name.clone(), s.name.clone());
    let z = lib();
    let longest = "x".repeat(8191);
    z.run_blocking(move |l| l.set_props(&n1, &[("org.freebsd.iocage:notes", &longest)])).unwrap().unwrap();
    assert_eq!(get(&s.name, "org.freebsd.iocage:notes").len(), 8191);
    let too_long = "y".repeat(8192);
    let err =
        z.run_blocking(move |l| l.set_props(&n2, &[("org.freebsd.iocage:notes", &too_long)])).unwrap().unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidProperty, "{err}");
    assert_eq!(get(&s.name, "org.freebsd.iocage:notes").len(), 8191, "unchanged");
    let name = s.name.clone();
    let read = z.run_blocking(move |l| l.user_props(&name)).unwrap().unwrap();
    assert_eq!(read["org.freebsd.iocage:notes"].value.len(), 8191, "read back whole");
}

#[test]
fn inherit_clears_a_local_value() {
    let s = Scratch::new("inherit");
    zfs(&["create", &s.path("c")]);
    zfs(&["set", "org.freebsd.iocage:boot=on", &s.name]);
    zfs(&["set", "org.freebsd.iocage:boot=off", &s.path("c")]);
    let c = s.path("c");
    lib().run_blocking(move |l| l.inherit(&c, "org.freebsd.iocage:boot")).unwrap().unwrap();
    assert_eq!(get(&s.path("c"), "org.freebsd.iocage:boot"), "on");
}

#[test]
fn create_with_properties_and_its_failures() {
    let s = Scratch::new("create");
    let (a, dup, orphan) = (s.path("a"), s.path("a"), s.path("missing/child"));
    let z = lib();
    z.run_blocking(move |l| l.create_filesystem(&a, &[("org.freebsd.iocage:tag", "t"), ("quota", "1G")]))
        .unwrap()
        .unwrap();
    assert_eq!(get(&s.path("a"), "org.freebsd.iocage:tag"), "t");
    assert_eq!(get(&s.path("a"), "quota"), "1073741824");
    let err = z.run_blocking(move |l| l.create_filesystem(&dup, &[])).unwrap().unwrap_err();
    assert_eq!(err.kind, ErrorKind::Exists, "{err}");
    let err = z.run_blocking(move |l| l.create_filesystem(&orphan, &[])).unwrap().unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound, "{err}");
    assert!(err.to_string().contains("missing/child"), "{err}");
}

#[test]
fn missing_dataset_and_bad_names() {
    let p = pool();
    let z = lib();
    let missing = format!("{p}/does-not-exist");
    let m = missing.clone();
    let err = z.run_blocking(move |l| l.user_props(&m)).unwrap().unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound);
    assert!(err.to_string().contains(&missing), "{err}");
    assert!(!z.run_blocking(move |l| l.exists(&missing)).unwrap());
    // (ZFS itself allows spaces in names; refusing them is the iocage layer's job.)
    for bad in [format!("{p}/../x"), format!("{p}/a@@b"), format!("{p}/a%b"), format!("{p}/nul\0x"), "x".repeat(300)] {
        let b = bad.clone();
        let res = z.run_blocking(move |l| l.create_filesystem(&b, &[])).unwrap();
        let err = res.expect_err(&format!("{bad:?} must be refused"));
        assert_eq!(err.kind, ErrorKind::InvalidName, "{bad:?}: {err}");
    }
}

#[test]
fn snapshot_clone_and_origin() {
    let s = Scratch::new("clone");
    zfs(&["create", &s.path("src")]);
    let (snap, src, target) = (format!("{}@base", s.path("src")), s.path("src"), s.path("copy"));
    let z = lib();
    let (sn, t) = (snap.clone(), target.clone());
    z.run_blocking(move |l| {
        l.snapshot(&sn, &[])?;
        l.clone_snapshot(&sn, &t, &[("org.freebsd.iocage:tag", "copy")])
    })
    .unwrap()
    .unwrap();
    assert_eq!(get(&target, "origin"), snap);
    assert_eq!(get(&target, "org.freebsd.iocage:tag"), "copy");
    let t = target.clone();
    let origin = z.run_blocking(move |l| l.native_props(&t, &["origin"])).unwrap().unwrap();
    assert_eq!(origin["origin"].printed.as_deref(), Some(snap.as_str()));
    let snaps = z.run_blocking(move |l| l.snapshots(&src)).unwrap().unwrap();
    assert_eq!(snaps, vec![snap]);
}

#[test]
fn destroy_refuses_a_dataset_with_dependents() {
    let s = Scratch::new("destroydeps");
    zfs(&["create", &s.path("parent")]);
    zfs(&["create", &s.path("parent/child")]);
    zfs(&["snapshot", &format!("{}@s", s.path("parent/child"))]);
    zfs(&["clone", &format!("{}@s", s.path("parent/child")), &s.path("outside")]);
    let before = tree(&s.name);
    let z = lib();
    for target in [s.path("parent"), format!("{}@s", s.path("parent/child"))] {
        let t = target.clone();
        let err = z.run_blocking(move |l| l.destroy(&t)).unwrap().unwrap_err();
        assert_eq!(err.kind, ErrorKind::HasDependents, "{target}: {err}");
    }
    // Recursive destroy of parent would take the origin of `outside`: refused
    // before anything is destroyed.
    let p = s.path("parent");
    let err = z.run_blocking(move |l| l.destroy_recursive(&p)).unwrap().unwrap_err();
    assert_eq!(err.kind, ErrorKind::HasDependents, "{err}");
    assert!(err.to_string().contains(&s.path("outside")), "names the clone: {err}");
    assert_eq!(tree(&s.name), before, "nothing destroyed");
}

#[test]
fn destroy_one_and_recursive() {
    let s = Scratch::new("destroy");
    zfs(&["create", &s.path("leaf")]);
    zfs(&["create", &s.path("tree")]);
    zfs(&["create", &s.path("tree/a")]);
    zfs(&["snapshot", &format!("{}@s1", s.path("tree/a"))]);
    zfs(&["clone", &format!("{}@s1", s.path("tree/a")), &s.path("tree/b")]);
    zfs(&["snapshot", &format!("{}@s2", s.path("tree"))]);
    let (leaf, t) = (s.path("leaf"), s.path("tree"));
    lib()
        .run_blocking(move |l| {
            l.destroy(&leaf)?;
            l.destroy_recursive(&t)
        })
        .unwrap()
        .unwrap();
    assert_eq!(tree(&s.name), vec![s.name.clone()]);
}

#[test]
fn mount_unmount_and_rename() {
    let s = Scratch::new("mount");
    zfs(&["create", &s.path("m")]);
    let (m, m2, m3, renamed) = (s.path("m"), s.path("m"), s.path("m"), s.path("renamed"));
    let z = lib();
    z.run_blocking(move |l| l.unmount(&m)).unwrap().unwrap();
    assert_eq!(get(&s.path("m"), "mounted"), "no");
    z.run_blocking(move |l| l.mount(&m2)).unwrap().unwrap();
    assert_eq!(get(&s.path("m"), "mounted"), "yes");
    let r = renamed.clone();
    z.run_blocking(move |l| l.rename(&m3, &r)).unwrap().unwrap();
    assert_eq!(tree(&s.name), vec![s.name.clone(), renamed.clone()]);
    assert!(z.run_blocking(move |l| l.is_mounted(&renamed)).unwrap().unwrap());
}

#[test]
fn pool_comment_and_active_property() {
    let p = pool();
    let z = lib();
    let p2 = p.clone();
    z.run_blocking(move |l| {
        l.set_pool_prop(&p2, "comment", "iocage")?;
        l.set_props(&p2, &[("org.freebsd.ioc:active", "yes")])
    })
    .unwrap()
    .unwrap();
    let pools = z.run_blocking(|l| l.pools()).unwrap().unwrap();
    let info = pools.iter().find(|i| i.name == p).expect("test pool listed");
    assert_eq!(info.comment.as_deref(), Some("iocage"));
    assert_eq!(info.active_prop.as_deref(), Some("yes"));
    assert_eq!(rig::cmd("zpool", &["get", "-H", "-o", "value", "comment", &p]).trim(), "iocage");
    let p3 = p.clone();
    z.run_blocking(move |l| {
        l.set_pool_prop(&p3, "comment", "")?;
        l.inherit(&p3, "org.freebsd.ioc:active")
    })
    .unwrap()
    .unwrap();
    let pools = z.run_blocking(|l| l.pools()).unwrap().unwrap();
    let info = pools.iter().find(|i| i.name == p).unwrap();
    assert_eq!((info.comment.clone(), info.active_prop.clone()), (None, None));
}

#[test]
fn async_front_and_concurrent_callers() {
    let s = Scratch::new("concurrent");
    for i in 0..8 {
        zfs(&["create", &s.path(&format!("d{i}"))]);
    }
    let z = lib();
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let name = s.name.clone();
    let results = rt.block_on(async {
        let tasks: Vec<_> = (0..32)
            .map(|_| {
                let z = z.clone();
                let n = name.clone();
                tokio::spawn(async move { z.run(move |l| l.children(&n)).await })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    });
    for r in results {
        assert_eq!(r.unwrap().unwrap().len(), 8);
    }
    // Blocking callers on several threads share the one owner thread too.
    std::thread::scope(|sc| {
        for _ in 0..4 {
            let (z, n) = (z.clone(), name.clone());
            sc.spawn(move || assert_eq!(z.run_blocking(move |l| l.children(&n)).unwrap().unwrap().len(), 8));
        }
    });
}

#[test]
fn the_history_names_the_datasets_changed_since_an_offset() {
    let s = Scratch::new("history");
    let z = lib();
    let since = |from: u64| {
        let p = pool();
        z.run_blocking(move |l| l.history_since(&p, from, true)).unwrap().unwrap()
    };
    // Other tests change the pool at the same time: what they log may be
    // among the records too, so only what this one did is looked for.
    let start = since(0).end;
    zfs(&["set", "org.example:x=1", &s.name]);
    zfs(&["create", &s.path("new")]);
    let t = since(start);
    assert!(t.end > start, "the log grew");
    for name in [&s.name, &s.path("new")] {
        assert!(t.datasets.contains(name), "{name} is named: {:?}", t.datasets);
    }
    zfs(&["rename", &s.path("new"), &s.path("moved")]);
    let t = since(t.end);
    assert!(t.renamed, "a rename is told: {t:?}");
    assert!(t.datasets.contains(&s.path("new")), "by its old name: {:?}", t.datasets);
    zfs(&["inherit", "org.example:x", &s.name]);
    zfs(&["destroy", &s.path("moved")]);
    let t = since(t.end);
    for name in [&s.name, &s.path("moved")] {
        assert!(t.datasets.contains(name), "{name} is named: {:?}", t.datasets);
    }
    assert!(t.complete, "every record since the offset was read: {t:?}");
    let end = t.end;
    let p = pool();
    assert_eq!(z.run_blocking(move |l| l.history_end(&p, end)).unwrap().unwrap(), since(end).end);
}

/// ZFS's events, followed: a change to a dataset below the pool's root
/// leaves the count of changes to pools as it was (the daemon's own writes
/// then keep its pool choice), one to the root dataset (where iocage marks
/// the active pool) moves it.
#[test]
fn the_followed_events_tell_a_pool_s_changes_from_its_datasets() {
    use std::sync::Arc;
    use std::time::{Duration, Instant};
    let s = Scratch::new("poolcount");
    let z = lib();
    let changes = Arc::new(iocaged::zfs::Changes::default());
    iocaged::zfs::follow(changes.clone()).expect("the event queue followed");
    // Both counts once they have stood, settled, for 200 ms: whatever was
    // announced before this was called is counted then.
    let standing = || {
        let since = Instant::now();
        let mut last = None;
        loop {
            std::thread::sleep(Duration::from_millis(200));
            let now = changes.settled().zip(changes.pools_settled());
            if let Some(both) = now.filter(|_| now == last) {
                return both;
            }
            last = now;
            assert!(since.elapsed() < Duration::from_secs(60), "the counts never stood: {last:?}");
        }
    };
    let set = |name: String, value: String| {
        z.run_blocking(move |l| l.set_props(&name, &[("org.example:count", value.as_str())])).unwrap().unwrap()
    };
    // Anything else changing a pool meanwhile (the guest runs one test at
    // a time, but its pools are not this test's alone) moves the count: a
    // round it cuts into proves nothing and is made again.
    let mut kept = false;
    for round in 0..20 {
        let (changes_before, pools_before) = standing();
        set(s.name.clone(), round.to_string());
        let (changes_after, pools_after) = standing();
        assert!(changes_after > changes_before, "the set was announced");
        if pools_after == pools_before {
            kept = true;
            break;
        }
    }
    assert!(kept, "a dataset's property set moved the count of pools' changes in 20 rounds");
    let (_, pools_before) = standing();
    set(pool(), "1".into());
    let (_, pools_after) = standing();
    assert!(pools_after > pools_before, "a property of the root dataset is a pool's change");
    let root = pool();
    z.run_blocking(move |l| l.inherit(&root, "org.example:count")).unwrap().unwrap();
}

/// A pool's log is a ring (0.1% of the pool when it was made, at least
/// 128 KiB); a read from an offset it has gone past starts at its oldest
/// record without an error. `complete` tells: the records read then do not
/// take the whole log from the offset on.
#[test]
fn a_tail_read_from_an_offset_the_ring_has_overwritten_is_not_complete() {
    // A pool of 64 MiB (the least ZFS makes) keeps 128 KiB of log.
    let vdev = format!("/var/lib/iocaged-{}/vdev-ring", pool());
    let name = "ringlog";
    rig::cmd("truncate", &["-s", "64M", &vdev]);
    rig::cmd("zpool", &["create", "-o", "cachefile=none", name, &vdev]);
    struct Gone(String);
    impl Drop for Gone {
        fn drop(&mut self) {
            let _ = std::process::Command::new("zpool").args(["destroy", "ringlog"]).status();
            let _ = std::fs::remove_file(&self.0);
        }
    }
    let _gone = Gone(vdev);
    let z = lib();
    let since = |from: u64| z.run_blocking(move |l| l.history_since(name, from, true)).unwrap().unwrap();
    let start = since(0).end;
    zfs(&["set", "org.example:a=1", name]);
    let t = since(start);
    assert!(t.complete && t.datasets.contains(&name.to_string()), "{t:?}");
    // Records of 8000 bytes, 50 a command: far more than the ring holds.
    let value = "x".repeat(8000);
    for c in 0..4 {
        let mut args: Vec<String> = vec!["set".into()];
        args.extend((0..50).map(|i| format!("org.example:c{c}p{i}={value}")));
        args.push(name.into());
        zfs(&args.iter().map(String::as_str).collect::<Vec<_>>());
    }
    let wrapped = since(start);
    assert!(wrapped.end > start + 1_000_000, "the log went past a ring of 128 KiB: {}", wrapped.end);
    assert!(!wrapped.complete, "records read from an overwritten offset are not all since it");
    // From the end: complete again.
    zfs(&["set", "org.example:b=1", name]);
    let t = since(wrapped.end);
    assert!(t.complete && t.datasets.contains(&name.to_string()), "{t:?}");
}

/// The owner thread's queue is bounded: with the thread busy and the queue
/// full, a job waits QUEUE_WAIT for room and then fails as Overloaded (the
/// API's 503), instead of the queue growing; once the thread is free again
/// jobs run as before.
#[test]
fn a_full_owner_queue_refuses_instead_of_growing() {
    pool();
    let z = Zfs::start_with_queue(2).unwrap();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let (started_tx, started_rx) = std::sync::mpsc::channel::<()>();
    // Occupies the owner thread until released (from a thread of its own:
    // the runtime below has one thread, which must not block).
    let busy = std::thread::spawn({
        let z = z.clone();
        move || {
            z.run_blocking(move |_| {
                let _ = started_tx.send(());
                let _ = release_rx.recv();
            })
        }
    });
    started_rx.recv().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    rt.block_on(async {
        // Two fill the queue...
        let queued: Vec<_> = (0..2)
            .map(|i| {
                let z = z.clone();
                tokio::spawn(async move { z.run(move |_| i).await })
            })
            .collect();
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        // ...the next waits QUEUE_WAIT for room and is refused.
        let e = z.run(|_| ()).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Overloaded, "{e}");
        assert!(e.to_string().contains("zfs_queue"), "{e}");
        release_tx.send(()).unwrap();
        for (i, q) in queued.into_iter().enumerate() {
            assert_eq!(q.await.unwrap().unwrap(), i);
        }
        assert!(z.run(|_| 7).await.is_ok(), "jobs run again once there is room");
    });
    busy.join().unwrap().unwrap();
}

#[test]
fn a_job_whose_caller_stopped_waiting_is_skipped() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let z = lib();
    let ran = Arc::new(AtomicUsize::new(0));
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    rt.block_on(async {
        // The owner is busy for a second; ten callers give up after 50 ms.
        let busy = z.run(|_| std::thread::sleep(std::time::Duration::from_secs(1)));
        let quick = std::time::Duration::from_millis(50);
        let (_, ()) = tokio::join!(busy, async {
            for _ in 0..10 {
                let ran = ran.clone();
                let job = z.run(move |_| ran.fetch_add(1, Ordering::SeqCst));
                assert!(tokio::time::timeout(quick, job).await.is_err(), "the owner was busy");
            }
        });
        let ran2 = ran.clone();
        z.run(move |_| ran2.fetch_add(100, Ordering::SeqCst)).await.unwrap();
    });
    assert_eq!(ran.load(Ordering::SeqCst), 100, "only the job still awaited ran");
}
