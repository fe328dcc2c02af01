//! fetchrelease against real ZFS (run in the guest), from a mirror this
//! test serves on loopback (the FreeBSD mirror's layout: a `MANIFEST` and
//! xz-compressed sets under `<mirror>/<arch>/<release>/`): fetch → list →
//! createjail → startjail with no other tool; a corrupted set refused
//! before extraction; a download cut off and resumed; two fetches of one
//! release at once; a daemon killed mid-extract leaving nothing after its
//! restart; hostile archives refused with the host and the pool unchanged;
//! a root filesystem tarball by URL and SHA-256; destroyrelease refused
//! while a jail uses the release.

mod rig;

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use rig::client::{self, Ws};
use rig::conformance::lock;
use rig::daemon::Daemon;
use rig::fixture::Fixture;
use rig::mirror::{ARCH, Mirror, Served, sha256, tar_of, xz};
use rig::{call, get, pool, zfs};

/// A release made by the rig (`static_release`: a system jails start
/// from), as a `.txz` set and its number of entries; the rig's datasets
/// are removed again.
fn static_set(f: &Fixture, rel: &str) -> (Vec<u8>, u64) {
    // Made under another name: the release's own never shows in the pool's
    // history before the fetch makes it.
    let source = format!("source-of-{rel}");
    let made = format!("{}/iocage/releases/{source}", f.pool);
    f.static_release(&source);
    let tar = tar_of(&format!("/iocage/releases/{source}/root"));
    zfs(&["destroy", "-r", &made]);
    let entries = tar::Archive::new(&tar[..]).entries().unwrap().count() as u64;
    (xz(&tar), entries)
}

/// A daemon fetching from `mirror`.
fn daemon(mirror: &Mirror, extra: &str) -> Daemon {
    Daemon::with_config(&format!("release_mirror = {:?}\nrelease_arch = \"{ARCH}\"\n{extra}", mirror.url()))
}

fn fetch(d: &Daemon, args: Value) -> Value {
    let mut args = args;
    args["action"] = json!("fetchrelease");
    call(d, args)
}

fn error_of(v: &Value) -> String {
    v["error"].as_str().unwrap_or_else(|| panic!("expected an error: {v}")).to_string()
}

fn release_dataset(f: &Fixture, rel: &str) -> String {
    format!("{}/iocage/releases/{rel}", f.pool)
}

fn exists(dataset: &str) -> bool {
    std::process::Command::new("zfs").args(["list", dataset]).output().is_ok_and(|o| o.status.success())
}

/// The progress events of `step` among `events`, checked to go forward;
/// those marked last.
fn step_ends(events: &[Value], step: &str) -> Vec<Value> {
    let of: Vec<&Value> = events.iter().filter(|e| e["event"] == "progress" && e["step"] == step).collect();
    let done: Vec<u64> = of.iter().map(|e| e["done"].as_u64().unwrap()).collect();
    assert!(done.windows(2).all(|w| w[0] <= w[1]), "{step} goes forward: {done:?}");
    of.into_iter().filter(|e| e["last"] == true).cloned().collect()
}

#[test]
fn a_release_fetched_lists_and_makes_a_running_jail_and_stays_while_used() {
    let _g = lock();
    let f = Fixture::fresh();
    let mirror = Mirror::start();
    let rel = "13.9-RELEASE";
    let (set, entries) = static_set(&f, rel);
    mirror.release(rel, &[("base.txz", &set, entries)]);
    let d = daemon(&mirror, "");
    let mut ws = Ws::connect(d.ws);
    let r = ws.call(&json!({"id": "sub", "namespace": "events", "name": "subscribe", "args": "iocage"}));
    assert_eq!(r["args"]["subscribe"], "iocage", "{r}");

    ws.send(&json!({"id": "f", "namespace": "sysadm", "name": "iocage", "args": {"action": "fetchrelease", "release": rel}}));
    let mut events = Vec::new();
    let reply = loop {
        let m = ws.recv_within(Duration::from_secs(300)).expect("fetchrelease's reply");
        if m["id"] == "f" {
            break m["args"]["fetchrelease"].clone();
        }
        if m["name"] == "iocage" {
            events.push(m["args"].clone());
        }
    };
    // Events travel apart from replies: the last ones may come just after.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !events.iter().any(|e| e["step"] == "extract" && e["last"] == true) && Instant::now() < deadline {
        if let Some(m) = ws.recv_within(Duration::from_secs(5)) {
            if m["name"] == "iocage" {
                events.push(m["args"].clone());
            }
        }
    }
    assert_eq!(reply["success"], format!("release {rel} fetched."), "{reply}");
    assert_eq!(reply["sets"][0]["file"], "base.txz", "{reply}");
    assert_eq!(reply["sets"][0]["bytes"], set.len() as u64, "{reply}");
    assert_eq!(reply["sets"][0]["sha256"], sha256(&set), "{reply}");
    assert_eq!(reply["extracted"]["entries"], entries, "{reply}");
    for step in ["download", "verify", "extract"] {
        let ends = step_ends(&events, step);
        assert_eq!(ends.len(), 1, "{step} ends once: {events:?}");
        // Each step counts the set's bytes, all of them.
        assert!(ends[0]["error"].is_null() && ends[0]["done"] == set.len() as u64, "{}", ends[0]);
        assert_eq!((ends[0]["target"].as_str(), ends[0]["action"].as_str()), (Some("base.txz"), Some("fetchrelease")));
    }

    // What iocage's fetch leaves: the release's root, its files, no marker,
    // open again to others.
    let root_ds = format!("{}/root", release_dataset(&f, rel));
    assert!(exists(&root_ds));
    assert_eq!(get(&release_dataset(&f, rel), "org.freebsd.iocaged:incomplete"), "-");
    let dir = format!("/iocage/releases/{rel}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o755);
    assert!(std::fs::symlink_metadata(format!("{dir}/root/bin/sh")).unwrap().file_type().is_symlink());
    let listed = call(&d, json!({"action": "listreleases"}));
    assert!(listed.to_string().contains(rel), "{listed}");

    // A second fetch of it is refused, naming the dataset.
    let again = error_of(&fetch(&d, json!({"release": rel})));
    assert!(again.contains("already on the pool") && again.contains(&release_dataset(&f, rel)), "{again}");

    // createjail and startjail from it: no other tool.
    let r = call(&d, json!({"action": "createjail", "props": format!("release={rel} tag=fetched"), "switches": "-c"}));
    let created = r["success"]["Successfully created"].as_str().unwrap_or_else(|| panic!("{r}")).to_string();
    let uuid = created.split_whitespace().next().unwrap().to_string();
    // The release's setuid programs do not run on the host; the jail's do.
    assert_eq!(get(&root_ds, "setuid"), "off");
    assert_eq!(get(&format!("{}/iocage/jails/{uuid}/root", f.pool), "setuid"), "on");
    let r = call(&d, json!({"action": "startjail", "jail": uuid}));
    assert!(!r.to_string().contains("error"), "{r}");
    let r = call(
        &d,
        json!({"action": "execjail", "jail": uuid, "user": "root", "command": "cat /etc/passwd", "output": "lossless"}),
    );
    assert!(r.to_string().contains("alice:x:1001"), "{r}");
    let r = call(&d, json!({"action": "stopjail", "jail": uuid}));
    assert!(!r.to_string().contains("error"), "{r}");

    // destroyrelease: refused while the jail depends on it, then allowed.
    let refused = error_of(&call(&d, json!({"action": "destroyrelease", "release": rel})));
    assert!(refused.contains(&uuid), "{refused}");
    let r = call(&d, json!({"action": "destroyjail", "jail": uuid}));
    assert!(r["success"].is_object(), "{r}");
    let r = call(&d, json!({"action": "destroyrelease", "release": rel}));
    assert!(r["success"].is_string(), "{r}");
    assert!(!exists(&release_dataset(&f, rel)));

    // destroyrelease took its downloads too.
    assert!(!exists(&format!("{}/iocage/download/{rel}", f.pool)));
    assert!(d.stop());
}

#[test]
fn lib32_is_fetched_on_request_into_the_same_root() {
    let _g = lock();
    let f = Fixture::fresh();
    let mirror = Mirror::start();
    let (base, entries) = static_set(&f, "13.4-RELEASE");
    let mut b = tar::Builder::new(Vec::new());
    raw(&mut b, b"usr/lib32/libmarker.so.1", tar::EntryType::Regular, b"", b"32-bit");
    let lib32 = xz(&b.into_inner().unwrap());
    for rel in ["13.4-RELEASE", "13.3-RELEASE"] {
        mirror.release(rel, &[("base.txz", &base, entries), ("lib32.txz", &lib32, 1)]);
    }
    let d = daemon(&mirror, "");
    let r = fetch(&d, json!({"release": "13.4-RELEASE", "lib32": true}));
    let files: Vec<&str> = r["sets"].as_array().unwrap().iter().map(|s| s["file"].as_str().unwrap()).collect();
    assert_eq!(files, ["base.txz", "lib32.txz"], "{r}");
    let root = "/iocage/releases/13.4-RELEASE/root";
    assert_eq!(std::fs::read(format!("{root}/usr/lib32/libmarker.so.1")).unwrap(), b"32-bit");
    assert!(std::fs::symlink_metadata(format!("{root}/bin/sh")).is_ok(), "base.txz is there too");
    // Without it, lib32.txz is not even downloaded.
    let r = fetch(&d, json!({"release": "13.3-RELEASE"}));
    assert_eq!(r["sets"].as_array().map(Vec::len), Some(1), "{r}");
    assert!(mirror.ranges_asked(&format!("/releases/{ARCH}/13.3-RELEASE/lib32.txz")).is_empty());
    assert!(std::fs::symlink_metadata("/iocage/releases/13.3-RELEASE/root/usr/lib32").is_err());
    assert!(d.stop());
}

#[test]
fn a_corrupted_set_is_refused_before_anything_is_extracted_and_is_removed() {
    let _g = lock();
    let f = Fixture::fresh();
    let mirror = Mirror::start();
    let rel = "13.8-RELEASE";
    let (set, entries) = static_set(&f, rel);
    mirror.release(rel, &[("base.txz", &set, entries)]);
    // The mirror serves other bytes than its MANIFEST's.
    let mut bad = set.clone();
    let at = bad.len() / 2;
    bad[at] ^= 0xff;
    mirror.put(&format!("/releases/{ARCH}/{rel}/base.txz"), Served { body: bad, ..Served::default() });
    let d = daemon(&mirror, "");
    let e = error_of(&fetch(&d, json!({"release": rel})));
    assert!(e.contains("base.txz") && e.contains(&sha256(&set)) && e.contains("removed"), "{e}");
    assert!(e.contains("the MANIFEST says"), "{e}");
    assert!(!exists(&release_dataset(&f, rel)), "nothing of the release");
    // Refused before the release's datasets were ever made (not made,
    // extracted and undone): the pool's history never names them.
    // (-i: the daemon's own libzfs calls are logged as internal events.)
    let history = rig::cmd("zpool", &["history", "-i", &f.pool]);
    assert!(!history.contains(&format!("releases/{rel}")), "{history}");
    // The bad download is gone, and with nothing left in it, so is the
    // release's download dataset.
    assert!(!exists(&format!("{}/iocage/download/{rel}", f.pool)), "the bad download is gone");
    // Once the mirror is right, the next fetch works.
    mirror.put(&format!("/releases/{ARCH}/{rel}/base.txz"), Served { body: set, ..Served::default() });
    assert!(fetch(&d, json!({"release": rel}))["success"].is_string());
    assert!(d.stop());
}

#[test]
fn a_download_cut_half_way_is_resumed_from_where_it_stopped() {
    let _g = lock();
    let f = Fixture::fresh();
    let mirror = Mirror::start();
    let rel = "13.7-RELEASE";
    let (set, entries) = static_set(&f, rel);
    mirror.release(rel, &[("base.txz", &set, entries)]);
    let path = format!("/releases/{ARCH}/{rel}/base.txz");
    let half = set.len() / 2;
    mirror.put(&path, Served { body: set.clone(), cut_at: Some(half), ..Served::default() });
    let d = daemon(&mirror, "");
    let e = error_of(&fetch(&d, json!({"release": rel})));
    assert!(e.contains("failed after"), "{e}");
    assert!(!exists(&release_dataset(&f, rel)));
    let part = format!("/iocage/download/{rel}/base.txz.part");
    assert_eq!(std::fs::metadata(&part).unwrap().len(), half as u64, "the bytes so far are kept");
    let r = fetch(&d, json!({"release": rel}));
    assert_eq!(r["sets"][0]["resumed_from"], half as u64, "{r}");
    assert_eq!(mirror.ranges_asked(&path), [None, Some(format!("bytes={half}-"))]);
    assert!(exists(&format!("{}/root", release_dataset(&f, rel))));
    assert!(d.stop());
}

#[test]
fn two_fetches_of_one_release_at_once_do_the_work_once() {
    let _g = lock();
    let f = Fixture::fresh();
    let mirror = Mirror::start();
    let rel = "13.6-RELEASE";
    let (set, entries) = static_set(&f, rel);
    mirror.release(rel, &[("base.txz", &set, entries)]);
    let path = format!("/releases/{ARCH}/{rel}/MANIFEST");
    let manifest = mirror.files.lock().unwrap()[&path].clone();
    mirror.put(&path, Served { delay: Duration::from_secs(2), ..manifest });
    let d = daemon(&mirror, "");
    let rest = d.rest;
    let both: Vec<_> = (0..2)
        .map(|_| {
            std::thread::spawn(move || {
                let r = client::rest(rest, &json!({"action": "fetchrelease", "release": rel}));
                r.body["args"]["fetchrelease"].clone()
            })
        })
        .collect();
    let mut answers: Vec<Value> = both.into_iter().map(|t| t.join().unwrap()).collect();
    answers.sort_by_key(|a| a["success"].is_null());
    assert!(answers[0]["success"].is_string(), "{answers:?}");
    assert!(error_of(&answers[1]).contains("is being fetched by another request"), "{answers:?}");
    assert_eq!(mirror.ranges_asked(&path).len(), 1, "one MANIFEST read");
    assert!(d.stop());
}

#[test]
fn a_daemon_killed_mid_extract_leaves_no_release_after_its_restart() {
    let _g = lock();
    let f = Fixture::fresh();
    let mirror = Mirror::start();
    let rel = "13.5-RELEASE";
    // Many small files: an extraction that takes a while.
    let mut b = tar::Builder::new(Vec::new());
    for i in 0..8000 {
        let text = format!("file {i}\n").repeat(64);
        raw(&mut b, format!("d{}/f{i}", i % 40).as_bytes(), tar::EntryType::Regular, b"", text.as_bytes());
    }
    let set = xz(&b.into_inner().unwrap());
    mirror.release(rel, &[("base.txz", &set, 8100)]);
    let d = daemon(&mirror, "");
    let rest = d.rest;
    let fetching = std::thread::spawn(move || client::rest(rest, &json!({"action": "fetchrelease", "release": rel})));
    let ds = release_dataset(&f, rel);
    let deadline = Instant::now() + Duration::from_secs(120);
    // Files in the root: the extraction is under way (a directory read, not
    // a `zfs` process per look: those are slow in the guest).
    while !std::fs::read_dir(format!("/iocage/releases/{rel}/root")).is_ok_and(|mut d| d.next().is_some()) {
        assert!(Instant::now() < deadline, "the extraction did not start");
        if fetching.is_finished() {
            panic!("the fetch ended before the kill: {:?}", fetching.join().map(|r| r.raw));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    d.kill();
    let _ = fetching.join();
    assert_eq!(get(&ds, "org.freebsd.iocaged:incomplete"), "yes", "killed before the extraction ended");
    let d = daemon(&mirror, "");
    assert!(!exists(&ds), "start-up removed the half release");
    let listed = call(&d, json!({"action": "listreleases"}));
    assert!(!listed.to_string().contains(rel), "{listed}");
    // And a fetch of it now works, from the set downloaded before the kill
    // (checked again, not fetched again).
    let r = fetch(&d, json!({"release": rel}));
    assert!(r["success"].is_string(), "{r}");
    assert_eq!(r["sets"][0]["resumed_from"], set.len() as u64, "{r}");
    assert_eq!(mirror.ranges_asked(&format!("/releases/{ARCH}/{rel}/base.txz")).len(), 1, "one download");
    assert!(d.stop());
}

/// A raw tar entry: the name, link and kind as given (the tar crate's
/// setters refuse `..` and absolute names, which is what these test).
fn raw(b: &mut tar::Builder<Vec<u8>>, name: &[u8], kind: tar::EntryType, link: &[u8], data: &[u8]) {
    let mut h = tar::Header::new_old();
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    h.as_old_mut().linkname[..link.len()].copy_from_slice(link);
    h.set_entry_type(kind);
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1);
    h.set_cksum();
    b.append(&h, data).unwrap();
}

#[test]
fn hostile_archives_are_refused_leaving_the_host_and_the_pool_as_they_were() {
    use tar::EntryType as K;
    let _g = lock();
    let f = Fixture::fresh();
    let mirror = Mirror::start();
    let passwd = std::fs::read("/etc/passwd").unwrap();
    // (`../../escape` from releases/<REL>/root would be /iocage/releases/escape.)
    let outside =
        ["/tmp/iocaged-abs-escape", "/tmp/iocaged-through-link", "/tmp/iocaged-sub", "/iocage/releases/escape"];
    for p in outside {
        let _ = std::fs::remove_file(p);
        let _ = std::fs::remove_dir(p);
    }
    let big = vec![0u8; 3 << 20];
    type Build = Box<dyn Fn(&mut tar::Builder<Vec<u8>>)>;
    // (what, the entry and the reason the refusal names, the archive)
    let cases: Vec<(&str, &str, Build)> = vec![
        (
            "traversal",
            "\"../../escape\": a path with \"..\"",
            Box::new(|b| raw(b, b"../../escape", K::Regular, b"", b"x")),
        ),
        (
            "absolute",
            "\"/tmp/iocaged-abs-escape\": an absolute path",
            Box::new(|b| raw(b, b"/tmp/iocaged-abs-escape", K::Regular, b"", b"x")),
        ),
        (
            "write-through-symlink",
            "\"lnk/iocaged-through-link\": a path through a link",
            Box::new(|b| {
                raw(b, b"lnk", K::Symlink, b"/tmp", b"");
                raw(b, b"lnk/iocaged-through-link", K::Regular, b"", b"x");
            }),
        ),
        (
            "dir-through-symlink",
            "\"d/iocaged-sub/\": a path through a link",
            Box::new(|b| {
                raw(b, b"d", K::Symlink, b"/tmp", b"");
                raw(b, b"d/iocaged-sub/", K::Directory, b"", b"");
            }),
        ),
        (
            "hardlink-absolute",
            "\"pw\": a hard link to something outside",
            Box::new(|b| raw(b, b"pw", K::Link, b"/etc/passwd", b"")),
        ),
        (
            "hardlink-climbing",
            "\"pw\": a hard link to something outside",
            Box::new(|b| raw(b, b"pw", K::Link, b"../../../../etc/passwd", b"")),
        ),
        ("device", "\"dev/evil\": a device node", Box::new(|b| raw(b, b"dev/evil", K::Char, b"", b""))),
        ("fifo", "\"fifo\": a FIFO", Box::new(|b| raw(b, b"fifo", K::Fifo, b"", b""))),
        ("oversize", "\"big\": more than 2097152 bytes", Box::new(move |b| raw(b, b"big", K::Regular, b"", &big))),
        (
            "too-many-entries",
            "more than 66 entries",
            Box::new(|b| {
                for i in 0..200 {
                    raw(b, format!("f{i}").as_bytes(), K::Regular, b"", b"");
                }
            }),
        ),
        (
            "zfs-control-dir",
            "\".zfs/snapshot/x\": ZFS's control directory",
            Box::new(|b| raw(b, b".zfs/snapshot/x", K::Regular, b"", b"x")),
        ),
    ];
    let d = daemon(&mirror, "max_release_bytes = 2097152\n");
    let releases_before = rig::tree(&format!("{}/iocage", f.pool));
    for (i, (what, named, build)) in cases.iter().enumerate() {
        let rel = format!("6.{i}-HOSTILE");
        let mut b = tar::Builder::new(Vec::new());
        raw(&mut b, b"ok-first", K::Regular, b"", b"fine");
        build(&mut b);
        let set = xz(&b.into_inner().unwrap());
        // The MANIFEST vouches for it: the extraction is what must refuse it.
        mirror.release(&rel, &[("base.txz", &set, 1)]);
        let e = error_of(&fetch(&d, json!({"release": rel})));
        assert!(e.contains(named), "{what}: {e}");
        assert!(!exists(&release_dataset(&f, &rel)), "{what}: the release is gone");
    }
    // A damaged xz stream.
    let rel = "6.99-HOSTILE";
    let mut set = xz(b"not a tar at all");
    set.truncate(set.len() - 9);
    mirror.release(rel, &[("base.txz", &set, 1)]);
    let e = error_of(&fetch(&d, json!({"release": rel})));
    assert!(e.contains("base.txz") && (e.contains("damaged") || e.contains("xz")), "damaged: {e}");
    assert!(!exists(&release_dataset(&f, rel)));

    for p in outside {
        assert!(std::fs::symlink_metadata(p).is_err(), "{p} was made");
    }
    assert_eq!(std::fs::read("/etc/passwd").unwrap(), passwd);
    // The collections a fetch makes first (`download` with the sets, and the
    // empty `releases`, as iocage lays a pool out) stay; nothing else.
    let layout_only = |n: &String| !n.contains("/iocage/download") && !n.ends_with("/iocage/releases");
    let after: Vec<String> = rig::tree(&format!("{}/iocage", f.pool)).into_iter().filter(layout_only).collect();
    let before: Vec<String> = releases_before.into_iter().filter(layout_only).collect();
    assert_eq!(after, before, "only downloads were added");
    let releases = zfs(&["list", "-H", "-o", "name", "-r", &format!("{}/iocage/releases", f.pool)]);
    assert_eq!(releases.lines().count(), 1, "no release is left: {releases}");
    assert!(d.stop());
}

#[test]
fn a_root_filesystem_tarball_by_url_and_sha256_becomes_a_release() {
    let _g = lock();
    let f = Fixture::fresh();
    let mirror = Mirror::start();
    let (set, _) = static_set(&f, "x");
    mirror.put("/images/rootfs.tar.xz", Served { body: set.clone(), ..Served::default() });
    let url = format!("http://{}/images/rootfs.tar.xz", mirror.addr);
    let d = daemon(&mirror, "");
    let wrong = "0".repeat(64);
    let e = error_of(&fetch(&d, json!({"release": "alpine-3.20", "url": url, "sha256": wrong})));
    assert!(e.contains(&sha256(&set)) && e.contains("the request's sha256 says"), "{e}");
    assert!(!exists(&release_dataset(&f, "alpine-3.20")));
    let r = fetch(&d, json!({"release": "alpine-3.20", "url": url, "sha256": sha256(&set)}));
    assert!(r["success"].is_string(), "{r}");
    let r = call(&d, json!({"action": "createjail", "props": "release=alpine-3.20 tag=alp", "switches": "-c"}));
    assert!(r["success"]["Successfully created"].is_string(), "{r}");
    // listreleases remote: the mirror's directory listing.
    mirror.put(
        &format!("/releases/{ARCH}/"),
        Served {
            body: b"<a href=\"14.2-RELEASE/\">14.2</a> <a href=\"13.5-RELEASE/\">13.5</a>".to_vec(),
            ..Served::default()
        },
    );
    let r = call(&d, json!({"action": "listreleases", "remote": true}));
    assert_eq!(r["remote"], json!(["13.5-RELEASE", "14.2-RELEASE"]), "{r}");
    assert!(d.stop());
    let _ = pool();
}
