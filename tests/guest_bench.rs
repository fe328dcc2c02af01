//! The benchmark (run in the guest; see BENCHMARKS.md): iocaged's latency
//! and throughput side by side, in one run, with the shell-out way of
//! getting the same answers on the same pool.
//!
//! `guest_bench --full` measures pools of 10, 100 and 1000 jails and prints
//! the tables BENCHMARKS.md holds; without `--full` (the test command's
//! short run) it does the same on 10 jails with a few iterations, so that
//! it cannot rot. It asserts that every answer is a success, never a time.
//! `--lifecycle` measures only the lifecycle table (start and stop with
//! no address, one shared-IP address, one VNET interface, and next to the
//! system's own tools making a jail that runs `true`; exec);
//! `--fetch` only fetchrelease's table; `--exec` only execjail, for the
//! base build (`IOCAGED_BASE_BIN`) and this one. `--exec`, `--lifecycle`,
//! `--throughput` and `--rss` may be given together (one guest boot).

mod rig;

use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use iocaged::zfs::Libzfs;
use rig::client::{self, Ws};
use rig::daemon::Daemon;
use rig::fixture::Fixture;
use rig::mirror::{self, Mirror};

/// Where the daemon logs during the benchmark (a tmpfs in the guest, as a
/// journal would be on a host; not the serial console).
const DAEMON_LOG: &str = "/tmp/iocaged-bench.log";

/// How much to measure.
struct Plan {
    sizes: Vec<usize>,
    /// Requests per latency measurement (fewer when a request is slow: see
    /// `budget`).
    iterations: usize,
    warmup: usize,
    /// Time a latency measurement may take before it stops early.
    budget: Duration,
    /// Jails sampled for the one-process-per-property baseline.
    sample: usize,
    throughput_size: usize,
    throughput_for: Duration,
    clients: Vec<usize>,
    cycles: usize,
    /// createjail/clonejail/destroyjail rounds per pool size.
    writes: usize,
    /// Files of 16 KiB in the release fetchrelease fetches, and its rounds.
    fetch_files: usize,
    fetch_rounds: usize,
}

/// The run's sizes and rounds: `--full`'s, or a quick run's; the
/// lifecycle's cycles set by `IOCAGED_BENCH_CYCLES` when given (more
/// cycles, steadier medians of a start and a stop).
fn plan(full: bool) -> Plan {
    let mut p = sizes(full);
    if let Some(c) = std::env::var("IOCAGED_BENCH_CYCLES").ok().and_then(|c| c.parse().ok()).filter(|c| *c > 0) {
        p.cycles = c;
    }
    p
}

fn sizes(full: bool) -> Plan {
    if full {
        Plan {
            sizes: vec![10, 100, 1000],
            iterations: 200,
            warmup: 20,
            budget: Duration::from_secs(15),
            sample: 5,
            throughput_size: 100,
            throughput_for: Duration::from_secs(3),
            clients: vec![1, 8, 64],
            cycles: 10,
            writes: 5,
            fetch_files: 2000,
            fetch_rounds: 3,
        }
    } else {
        Plan {
            sizes: vec![10],
            iterations: 10,
            warmup: 2,
            budget: Duration::from_secs(5),
            sample: 2,
            throughput_size: 10,
            throughput_for: Duration::from_millis(500),
            clients: vec![1, 8],
            cycles: 2,
            writes: 2,
            fetch_files: 100,
            fetch_rounds: 1,
        }
    }
}

/// p50 and p99 of a set of durations, in milliseconds.
struct Stats {
    p50: f64,
    p99: f64,
    n: usize,
}

fn stats(mut d: Vec<Duration>) -> Stats {
    assert!(!d.is_empty());
    d.sort();
    let at = |q: f64| d[((d.len() as f64 * q).ceil() as usize).clamp(1, d.len()) - 1].as_secs_f64() * 1000.0;
    Stats { p50: at(0.50), p99: at(0.99), n: d.len() }
}

/// Runs `f` (which must succeed) `warmup` times (fewer when a quarter of
/// the budget is spent, at least once), then up to `iterations` times or
/// until `budget` is spent (at least 5 measured runs).
fn measure(p: &Plan, mut f: impl FnMut()) -> Stats {
    let started = Instant::now();
    for i in 0..p.warmup {
        if i > 0 && started.elapsed() > p.budget / 4 {
            break;
        }
        f();
    }
    let started = Instant::now();
    let mut d = Vec::new();
    while d.len() < p.iterations && (d.len() < 5 || started.elapsed() < p.budget) {
        let t = Instant::now();
        f();
        d.push(t.elapsed());
    }
    stats(d)
}

fn ms(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn run(prog: &str, args: &[&str]) -> String {
    let out = Command::new(prog).args(args).output().unwrap_or_else(|e| panic!("{prog}: {e}"));
    assert!(out.status.success(), "{prog} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The reply body of an action; panics unless it is a success.
fn ok(reply: &Value, action: &str) -> Value {
    let body = &reply["args"][action];
    assert!(body.is_object() && body.get("error").is_none(), "{action} failed: {reply}");
    body.clone()
}

/// A pool with `n` jails: one made by createjail (what iocaged stores on
/// a new jail), the others copied from it through libzfs with their own
/// UUID and tag (as fast as ZFS can make them).
fn populate(d: &Daemon, n: usize) -> String {
    let r = client::rest(
        d.rest,
        &json!({"action": "createjail", "props": "tag=bench0 ip4_addr=lo0|127.0.1.1", "switches": "-e"}),
    );
    let first = ok(&r.body, "createjail")["success"]["uuid"].as_str().unwrap().to_string();
    let pool = rig::pool();
    let jails = format!("{pool}/iocage/jails");
    let stored = run("zfs", &["get", "-H", "-s", "local", "-o", "property,value", "all", &format!("{jails}/{first}")]);
    let props: Vec<(String, String)> = stored
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .filter(|(k, _)| k.starts_with("org.freebsd.iocage:"))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let lib = Libzfs::init().expect("libzfs");
    for i in 1..n {
        let uuid = format!("{:08x}-0000-4000-8000-{:012x}", i, i);
        let tag = format!("bench{i}");
        let ip = format!("lo0|127.0.{}.{}", i / 250 + 1, i % 250 + 1);
        let mine = [("tag", &tag), ("host_hostuuid", &uuid), ("host_hostname", &uuid), ("ip4_addr", &ip)]
            .map(|(k, v)| (format!("org.freebsd.iocage:{k}"), v.clone()));
        let p: Vec<(&str, &str)> = props
            .iter()
            .filter(|(k, _)| !mine.iter().any(|(m, _)| m == k))
            .chain(mine.iter())
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let ds = format!("{jails}/{uuid}");
        lib.create_filesystem(&ds, &p).expect("create a jail");
        lib.create_filesystem(&format!("{ds}/root"), &[]).expect("create its root");
    }
    first
}

/// The read actions measured, as (label, action, request args).
fn reads() -> Vec<(&'static str, &'static str, Value)> {
    vec![
        ("listjails", "listjails", json!({"action": "listjails"})),
        (
            "getjailsettings, one prop",
            "getjailsettings",
            json!({"action": "getjailsettings", "jail": "bench0", "prop": "ip4_addr"}),
        ),
        (
            "getjailsettings, all props",
            "getjailsettings",
            json!({"action": "getjailsettings", "jail": "bench0", "prop": "all"}),
        ),
        (
            "getjailsettings -r, one prop",
            "getjailsettings",
            json!({"action": "getjailsettings", "switches": "-r", "prop": "tag"}),
        ),
        ("df", "df", json!({"action": "df"})),
        ("getdefaultsettings", "getdefaultsettings", json!({"action": "getdefaultsettings"})),
    ]
}

/// The best single command that answers the same as `label`.
fn single_command(label: &str, jails: &str, first: &str) -> Vec<String> {
    let p = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let jail = format!("{jails}/{first}");
    let defaults = jails.replace("/jails", "/.defaults");
    match label {
        "listjails" => p(&[
            "list",
            "-H",
            "-p",
            "-d1",
            "-o",
            "name,org.freebsd.iocage:boot,org.freebsd.iocage:tag,org.freebsd.iocage:type,org.freebsd.iocage:ip4_addr",
            jails,
        ]),
        "getjailsettings, one prop" => p(&["get", "-H", "-o", "value", "org.freebsd.iocage:ip4_addr", &jail]),
        "getjailsettings, all props" => p(&["get", "-H", "-p", "all", &jail]),
        "getjailsettings -r, one prop" => p(&["list", "-H", "-d1", "-o", "name,org.freebsd.iocage:tag", jails]),
        "df" => p(&[
            "list",
            "-H",
            "-d1",
            "-o",
            "name,available,compressratio,quota,reservation,used,org.freebsd.iocage:tag",
            jails,
        ]),
        _ => p(&["get", "-H", "-p", "all", &defaults]),
    }
}

fn time_command(args: &[String], times: usize) -> Stats {
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut d = Vec::new();
    for _ in 0..times {
        let t = Instant::now();
        run("zfs", &a);
        d.push(t.elapsed());
    }
    stats(d)
}

/// iocage 1.7's listing: `zfs list` for the jails, then one `zfs get`
/// per shown property per jail. Timed on a sample of jails and scaled
/// linearly to `n` (its cost is linear in the jails).
fn per_property_listing(jails: &str, n: usize, sample: usize) -> f64 {
    let names = run("zfs", &["list", "-H", "-d1", "-o", "name", jails]);
    let names: Vec<&str> = names.lines().skip(1).take(sample).collect();
    let t = Instant::now();
    run("zfs", &["list", "-H", "-d1", "-o", "name", jails]);
    let enumerate = t.elapsed().as_secs_f64();
    let t = Instant::now();
    for ds in &names {
        for prop in ["boot", "tag", "type", "ip4_addr"] {
            run("zfs", &["get", "-H", "-o", "value", &format!("org.freebsd.iocage:{prop}"), ds]);
        }
    }
    let per_jail = t.elapsed().as_secs_f64() / names.len() as f64;
    (enumerate + per_jail * n as f64) * 1000.0
}

fn rest_call(addr: SocketAddr, req: &Value, action: &str) {
    ok(&client::rest(addr, req).body, action);
}

/// Requests per second of `req` from `clients` concurrent clients. The
/// clients check that each answer names the action (or, for identify, the
/// server) without parsing it: a load generator on the daemon's own two CPUs must
/// not spend them decoding JSON.
fn throughput(addr: SocketAddr, ws: bool, clients: usize, req: &Value, for_: Duration) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let start = Arc::new(Barrier::new(clients + 1));
    let key = req["args"]["action"].as_str().map_or_else(|| "\"server\"".to_string(), |a| format!("\"{a}\""));
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let (done, stop, start, req, key) = (done.clone(), stop.clone(), start.clone(), req.clone(), key.clone());
            std::thread::spawn(move || {
                let mut socket = ws.then(|| Ws::connect(addr));
                let text = json!({"id": "t", "namespace": req["namespace"], "name": req["name"], "args": req["args"]})
                    .to_string();
                let path = format!("/{}/{}", req["namespace"].as_str().unwrap(), req["name"].as_str().unwrap());
                let body = req["args"].to_string();
                let mut once = || match socket.as_mut() {
                    Some(s) => {
                        s.send_text(&text);
                        s.recv_text().expect("a reply")
                    }
                    None => raw_rest(addr, &path, &body),
                };
                let first = once();
                assert!(first.contains(&key), "{first}");
                start.wait();
                while !stop.load(Ordering::Relaxed) {
                    let reply = once();
                    assert!(reply.contains(&key), "{reply}");
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    start.wait();
    let t = Instant::now();
    std::thread::sleep(for_);
    let counted = done.load(Ordering::Relaxed);
    let elapsed = t.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    counted as f64 / elapsed
}

/// One REST request on a new connection (as curl makes it), answered 200;
/// returns the raw response.
fn raw_rest(addr: SocketAddr, path: &str, body: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    let key = KEY.lock().unwrap().clone();
    let head = format!(
        "PUT {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAuthorization: Bearer {key}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).and_then(|()| s.write_all(body.as_bytes())).expect("send");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    out
}

/// The API key of the daemon being measured (for [`raw_rest`]).
static KEY: std::sync::Mutex<String> = std::sync::Mutex::new(String::new());

/// Write actions on a pool of `n` jails: createjail -e, clonejail of it,
/// destroyjail of both, `p.writes` times; p50 of each (ms). They must not
/// grow with the pool beyond the one listing a tag check needs.
fn writes(p: &Plan, d: &Daemon, n: usize) -> [Stats; 3] {
    let timed = |times: &mut Vec<Duration>, req: Value| {
        let action = req["action"].as_str().unwrap().to_string();
        let t = Instant::now();
        let r = client::rest(d.rest, &req);
        times.push(t.elapsed());
        ok(&r.body, &action);
    };
    let (mut creates, mut clones, mut destroys) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..p.writes {
        timed(&mut creates, json!({"action": "createjail", "props": format!("tag=w{i}"), "switches": "-e"}));
        timed(&mut clones, json!({"action": "clonejail", "jail": format!("w{i}"), "props": format!("tag=wc{i}")}));
        timed(&mut destroys, json!({"action": "destroyjail", "jail": format!("wc{i}")}));
        timed(&mut destroys, json!({"action": "destroyjail", "jail": format!("w{i}")}));
    }
    println!("[bench] {n} jails, writes done");
    [stats(creates), stats(clones), stats(destroys)]
}

/// Throughput of listjails against the trivial endpoint, same server (the
/// pool of `n` jails the reads were measured on).
fn throughput_table(p: &Plan, d: &Daemon, n: usize) -> Vec<String> {
    *KEY.lock().unwrap() = d.key.clone();
    let mut results = Vec::new();
    results.push(format!("### Throughput at {n} jails: requests per second, listjails against `rpc/identify` (the trivial endpoint), same server"));
    results.push(String::new());
    results.push("| transport | clients | listjails req/s | rpc/identify req/s | identify / listjails |".into());
    results.push("|---|---|---|---|---|".into());
    let list = json!({"namespace": "sysadm", "name": "iocage", "args": {"action": "listjails"}});
    let identify = json!({"namespace": "rpc", "name": "identify", "args": {}});
    for ws in [false, true] {
        let addr = if ws { d.ws } else { d.rest };
        for &c in &p.clients {
            let l = throughput(addr, ws, c, &list, p.throughput_for);
            let i = throughput(addr, ws, c, &identify, p.throughput_for);
            results.push(format!(
                "| {} | {c} | {l:.0} | {i:.0} | {:.2} |",
                if ws { "WebSocket" } else { "REST" },
                i / l
            ));
            println!(
                "[bench] throughput {} x{c}: listjails {l:.0}/s, identify {i:.0}/s",
                if ws { "WS" } else { "REST" }
            );
        }
    }
    results.push(String::new());
    results
}

/// df from 1, then 8, ... REST clients at once, each asking `DF_ROUNDS`
/// times: each df reads every jail's space, and dfs asking at the same
/// time share a scan (`src/iocage/service/flight.rs`). A df takes seconds
/// in the guest, so this counts answers, not a time window.
fn df_throughput(p: &Plan, d: &Daemon, n: usize) -> Vec<String> {
    const DF_ROUNDS: usize = 3;
    let mut rows = vec![format!("df at {n} jails over REST, each client asking {DF_ROUNDS} times:"), String::new()];
    rows.push("| clients | df answers/s | p50 of one df (ms) | refused (503: past request_timeout) |".into());
    rows.push("|---|---|---|---|".into());
    for &c in &p.clients {
        let started = Instant::now();
        let threads: Vec<_> = (0..c)
            .map(|_| {
                let addr = d.rest;
                std::thread::spawn(move || {
                    (0..DF_ROUNDS)
                        .map(|_| {
                            let t = Instant::now();
                            let r = client::rest(addr, &json!({"action": "df"}));
                            assert!(r.status == 503 || r.body["args"]["df"].is_object(), "{}", r.raw);
                            (t.elapsed(), r.status == 503)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let all: Vec<(Duration, bool)> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
        let refused = all.iter().filter(|(_, r)| *r).count();
        let mut each: Vec<Duration> = all.iter().filter(|(_, r)| !*r).map(|(t, _)| *t).collect();
        let rate = each.len() as f64 / started.elapsed().as_secs_f64();
        each.sort();
        let p50 = each.get(each.len() / 2).map_or(f64::NAN, |t| t.as_secs_f64() * 1000.0);
        rows.push(format!("| {c} | {rate:.2} | {p50:.0} | {refused} of {} |", all.len()));
        println!("[bench] df x{c}: {rate:.2}/s, p50 {p50:.0} ms, {refused} refused");
    }
    rows.push(String::new());
    rows
}

/// The window the daemon's memory of the jails leaves open: `rounds`
/// times, `dataset`'s tag set through libzfs (as `zfs set` sets it, without
/// a process start to hide the window), then listjails at once until one
/// shows it. Rounds whose first listing showed it, stale listings in all,
/// and the longest time from the set's return until a listing showed it.
fn staleness(d: &Daemon, dataset: &str, rounds: usize) -> (usize, usize, Duration) {
    let lib = Libzfs::init().expect("libzfs");
    let uuid = dataset.rsplit('/').next().unwrap_or_default().to_string();
    let (mut fresh, mut stale, mut longest) = (0, 0, Duration::ZERO);
    for i in 0..rounds {
        let tag = format!("window{i}");
        lib.set_props(dataset, &[("org.freebsd.iocage:tag", &tag)]).expect("set the tag");
        let set = Instant::now();
        for attempt in 0.. {
            let listed = client::rest(d.rest, &json!({"action": "listjails"})).body;
            if listed["args"]["listjails"][&uuid]["tag"] == tag.as_str() {
                fresh += usize::from(attempt == 0);
                break;
            }
            stale += 1;
            assert!(set.elapsed() < Duration::from_secs(30), "round {i}: the change never showed");
        }
        longest = longest.max(set.elapsed());
    }
    (fresh, stale, longest)
}

/// `IOCAGED_BENCH_PERF`: where the daemon spends its time under listjails
/// from 8 REST clients (`perf record` in the guest, 15 s), printed.
fn profile(d: &Daemon, label: &str) {
    let pid = d.pid().expect("the daemon runs").to_string();
    let data = format!("/tmp/perf-{pid}.data");
    let mut perf = Command::new("perf")
        .args(["record", "-F", "499", "-g", "-o", &data, "-p", &pid, "--", "sleep", "15"])
        .spawn()
        .expect("perf");
    let list = json!({"namespace": "sysadm", "name": "iocage", "args": {"action": "listjails"}});
    *KEY.lock().unwrap() = d.key.clone();
    let rate = throughput(d.rest, false, 8, &list, Duration::from_secs(14));
    perf.wait().expect("perf ends");
    println!("=== profile of {label}: listjails REST x8 {rate:.0}/s ===");
    let report = Command::new("perf")
        .args([
            "report",
            "-i",
            &data,
            "--stdio",
            "--no-children",
            "--percent-limit",
            "1.5",
            "--sort",
            "dso,sym",
            "-g",
            "none",
        ])
        .output()
        .expect("perf report");
    println!("{}", String::from_utf8_lossy(&report.stdout));
    let report = Command::new("perf")
        .args(["report", "-i", &data, "--stdio", "--children", "--percent-limit", "4", "--sort", "sym", "-g", "none"])
        .output()
        .expect("perf report");
    println!("{}", String::from_utf8_lossy(&report.stdout));
}

/// The daemon's memory at `n` jails after the same reads, for the base
/// build (IOCAGED_BASE_BIN, when set) and this one (or the builds
/// IOCAGED_RSS_BINS lists), each also with glibc's
/// malloc held to one arena per CPU at most (`MALLOC_ARENA_MAX`), on one
/// pool in one run.
fn rss_compared(n: usize) -> Vec<String> {
    let mut rows = vec![
        format!("### Daemon memory at {n} jails after the same reads (KiB)"),
        String::new(),
        "| build | environment | RSS | peak (VmHWM) |".into(),
        "|---|---|---|---|".into(),
    ];
    // IOCAGED_RSS_BINS=A,B,...: these builds instead, in this order.
    let bins: Vec<Option<String>> = match std::env::var("IOCAGED_RSS_BINS") {
        Ok(list) => list.split(',').map(|b| Some(b.to_string())).collect(),
        Err(_) => vec![std::env::var("IOCAGED_BASE_BIN").ok(), None],
    };
    let cpus = std::thread::available_parallelism().map_or(1, |c| c.get()).to_string();
    // IOCAGED_RSS_ENVS="A=1 B=2;C=3": these environments instead (`;`
    // between them, `-` for none), to compare the allocator's settings.
    let envs: Vec<Vec<(String, String)>> = match std::env::var("IOCAGED_RSS_ENVS") {
        Ok(list) => list
            .split(';')
            .map(|e| {
                e.split_whitespace()
                    .filter_map(|kv| kv.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
                    .collect()
            })
            .collect(),
        Err(_) => vec![vec![], vec![("MALLOC_ARENA_MAX".to_string(), cpus)]],
    };
    for bin in bins.iter().map(Option::as_deref) {
        for env in &envs {
            let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let d = Daemon::start_build_env(bin, &[], Some(DAEMON_LOG), &env);
            read_everything(&d, n);
            // Idle past the daemon's memory trim (iocaged::memory::TRIM_EVERY):
            // what it holds between bursts, not during one.
            std::thread::sleep(Duration::from_secs(12));
            let (rss, peak) = rig::host::rss_kib(d.pid().unwrap());
            let shown = env.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ");
            rows.push(format!(
                "| {} | {} | {rss} | {} |",
                bin.map_or("this build".to_string(), |b| format!("`{b}`")),
                if shown.is_empty() { "-".to_string() } else { format!("`{shown}`") },
                peak.map_or("-".to_string(), |p| p.to_string())
            ));
            println!("[bench] {}", rows.last().unwrap());
            if std::env::var_os("IOCAGED_BENCH_PERF").is_some() {
                let pid = d.pid().unwrap();
                for line in memory_map(pid) {
                    println!("[bench]   {line}");
                }
                // What the allocator holds free: glibc's malloc_trim(0)
                // called inside the daemon (gdb), and the RSS after it.
                if cfg!(target_os = "linux") {
                    let gdb = Command::new("gdb")
                        .args(["-p", &pid.to_string(), "-batch", "-ex", "call (int) malloc_trim(0)"])
                        .output();
                    let said = gdb.map(|o| String::from_utf8_lossy(&o.stdout).lines().last().unwrap_or("").to_string());
                    println!(
                        "[bench]   malloc_trim(0) in the daemon: {said:?}; RSS now {} KiB",
                        rig::host::rss_kib(pid).0
                    );
                }
            }
            assert!(d.stop());
        }
    }
    rows.push(String::new());
    rows
}

/// The daemon's first listjails: how long the first ask took, how long
/// until one answered with `n` jails, and how many were refused before it.
/// One longer than request_timeout is refused (503): counted, and asked
/// again (at most 20 times more).
fn first_listing(d: &Daemon, n: usize) -> (Duration, Duration, usize) {
    let t = Instant::now();
    let mut first = None;
    let mut refused = 0;
    loop {
        let r = client::rest(d.rest, &json!({"action": "listjails"}));
        let took = t.elapsed();
        first.get_or_insert(took);
        if r.status != 503 || refused >= 20 {
            let listed = ok(&r.body, "listjails");
            assert_eq!(listed.as_object().map(|o| o.len()), Some(n), "{n} jails listed");
            return (first.unwrap_or(took), took, refused);
        }
        refused += 1;
    }
}

/// `--first-answer`: the first listjails after the daemon starts, on a
/// pool of `n` jails whose history log is long (about 20 MB, written here),
/// next to one `zfs list -d 1` of the jails, for the base build
/// (IOCAGED_BASE_BIN, when set) and this one, in turns.
fn first_answer(n: usize) -> Vec<String> {
    let pool = rig::pool();
    let jails = format!("{pool}/iocage/jails");
    let filler = format!("{pool}/bench-history");
    let log_end = || Libzfs::init().expect("libzfs").history_end(&pool, 0).expect("the pool's log");
    let before = log_end();
    // 50 commands of 50 properties of 8000 bytes: about 20 MB of log, more
    // than the ring keeps (0.1% of the pool, from 128 KiB to 1 GiB: 8 MiB
    // of the guest's 8 GiB pool), so the log is as long as this pool's
    // can be; the first read reads all of it.
    let _ = Command::new("zfs").args(["create", &filler]).status();
    let value = "x".repeat(8000);
    for c in 0..50 {
        let mut args: Vec<String> = vec!["set".into()];
        args.extend((0..50).map(|i| format!("org.example:c{c}p{i}={value}")));
        args.push(filler.clone());
        run("zfs", &args.iter().map(String::as_str).collect::<Vec<_>>());
    }
    rig::zfs(&["destroy", &filler]);
    let end = log_end();
    let base = std::env::var("IOCAGED_BASE_BIN").ok();
    let builds: Vec<Option<&str>> = match base.as_deref() {
        Some(b) => vec![Some(b), None],
        None => vec![None],
    };
    let rounds = 3;
    let mut firsts: Vec<Vec<Duration>> = vec![Vec::new(); builds.len()];
    let mut refused = vec![0; builds.len()];
    let mut lists = Vec::new();
    for _ in 0..rounds {
        for (which, bin) in builds.iter().enumerate() {
            let t = Instant::now();
            run("zfs", &["list", "-H", "-d", "1", &jails]);
            lists.push(t.elapsed());
            let d = Daemon::start_build(*bin, &[], Some(DAEMON_LOG));
            *KEY.lock().unwrap() = d.key.clone();
            let (first, _, more) = first_listing(&d, n);
            firsts[which].push(first);
            refused[which] += usize::from(more > 0);
            assert!(d.stop());
        }
    }
    let l = stats(lists);
    let mut rows = vec![
        format!(
            "### First listjails after the daemon starts: {n} jails, the pool's log full ({:.1} MB written to it in all, {:.1} MB for this; it keeps the last 0.1% of the pool), ms",
            end as f64 / 1e6,
            end.saturating_sub(before) as f64 / 1e6
        ),
        String::new(),
        format!(
            "| build | first listjails p50 | n | refused (longer than request_timeout) | `zfs list -H -d 1 {jails}` p50 | x that |"
        ),
        "|---|---|---|---|---|---|".into(),
    ];
    for ((bin, times), refused) in builds.iter().zip(firsts).zip(refused) {
        let f = stats(times);
        let label = bin.map_or("this build".to_string(), |b| format!("`{b}`"));
        println!("[bench] first answer ({label}): {:.1} ms ({refused} refused), zfs list {:.1} ms", f.p50, l.p50);
        rows.push(format!("| {label} | {} | {} | {refused} | {} | {:.2} |", ms(f.p50), f.n, ms(l.p50), f.p50 / l.p50));
    }
    rows.push(String::new());
    rows
}

/// Where a process's resident memory is (Linux): its anonymous and
/// file-backed totals, then its mappings by resident size, largest first
/// (`/proc/PID/smaps`), for `IOCAGED_BENCH_PERF`.
fn memory_map(pid: u32) -> Vec<String> {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else { return vec![] };
    let mut out: Vec<String> = status
        .lines()
        .filter(|l| l.starts_with("Rss") || l.starts_with("VmRSS") || l.starts_with("Threads"))
        .map(str::to_string)
        .collect();
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    let mut maps: Vec<(u64, String)> = Vec::new();
    let mut name = String::new();
    let mut size = 0u64;
    for l in smaps.lines() {
        let first = l.split_whitespace().next().unwrap_or_default();
        if first.contains('-') && first.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            let fields: Vec<&str> = l.split_whitespace().collect();
            name = format!("{} {}", fields.get(5).copied().unwrap_or("[anon]"), fields.get(1).copied().unwrap_or(""));
        } else if let Some(v) = l.strip_prefix("Size:") {
            size = v.trim().trim_end_matches(" kB").trim().parse().unwrap_or(0);
        } else if let Some(v) = l.strip_prefix("Rss:") {
            let kib: u64 = v.trim().trim_end_matches(" kB").trim().parse().unwrap_or(0);
            maps.push((kib, name.clone()));
            if name.starts_with("[anon]") && kib >= 512 {
                out.push(format!("one anonymous mapping of {size} KiB: {kib} KiB resident"));
            }
        }
    }
    // The same file's or kind's mappings added up.
    let mut by: std::collections::BTreeMap<String, u64> = Default::default();
    for (kib, n) in &maps {
        *by.entry(n.clone()).or_default() += kib;
    }
    let mut by: Vec<(u64, String)> = by.into_iter().map(|(n, k)| (k, n)).collect();
    by.sort_by(|a, b| b.cmp(a));
    out.extend(by.into_iter().take(20).map(|(k, n)| format!("{k:>7} KiB {n}")));
    out.push(format!("{} mappings", maps.len()));
    out
}

/// Every read action 20 times over REST and over a WebSocket (df, which
/// takes seconds at 1000 jails, once), then listjails from 8 clients at
/// once for a second: what the daemon holds after serving reads from all
/// its threads.
fn read_everything(d: &Daemon, n: usize) {
    *KEY.lock().unwrap() = d.key.clone();
    let mut ws = Ws::connect(d.ws);
    for (_, action, req) in reads() {
        for _ in 0..if action == "df" { 1 } else { 20 } {
            rest_call(d.rest, &req, action);
            let r = ws.call(&json!({"id": "m", "namespace": "sysadm", "name": "iocage", "args": req}));
            ok(&r, action);
        }
    }
    let listed = ok(&client::rest(d.rest, &json!({"action": "listjails"})).body, "listjails");
    assert_eq!(listed.as_object().map(|o| o.len()), Some(n), "{n} jails listed");
    let req = json!({"namespace": "sysadm", "name": "iocage", "args": {"action": "listjails"}});
    throughput(d.rest, false, 8, &req, Duration::from_secs(1));
    throughput(d.ws, true, 8, &req, Duration::from_secs(1));
}

/// [`throughput_table`] at `n` jails for this build and, when
/// `IOCAGED_BASE_BIN` names another, for that one on the same pool first.
fn throughput_compared(p: &Plan, n: usize) -> Vec<String> {
    let f = Fixture::fresh();
    let d = Daemon::start_logging(&[], Some(DAEMON_LOG));
    let first = format!("{}/iocage/jails/{}", f.pool, populate(&d, n));
    assert!(d.stop());
    let mut results = Vec::new();
    let base = std::env::var("IOCAGED_BASE_BIN").ok();
    for bin in [base.as_deref(), None] {
        if bin.is_none() && base.is_some() {
            results.push("This build:".into());
            results.push(String::new());
        } else if let Some(b) = bin {
            results.push(format!("The base build (`{b}`):"));
            results.push(String::new());
        }
        let d = Daemon::start_build(bin, &[], Some(DAEMON_LOG));
        if std::env::var_os("IOCAGED_BENCH_PERF").is_some() {
            profile(&d, bin.unwrap_or("this build"));
        }
        // `--df`: the df table alone.
        if !std::env::args().any(|a| a == "--df") {
            results.extend(throughput_table(p, &d, n));
        }
        results.extend(df_throughput(p, &d, n));
        if std::env::args().any(|a| a == "--df") {
            // A build that kept the refused dfs' scans queued on the libzfs
            // thread could not stop in time: said, not asserted.
            let stopped = d.stop();
            results.push(format!("Stopped within 30 s of SIGTERM after the dfs: {stopped}."));
            results.push(String::new());
            continue;
        }
        let rounds = 100;
        let (fresh, stale, longest) = staleness(&d, &first, rounds);
        results.push(format!(
            "Changes made behind the daemon's back (a jail's tag set through libzfs in the benchmark's process, then at once listjails over REST until one shows it), {rounds} rounds: the first listing showed the change in {fresh}; {stale} listings were stale in all; the longest until seen: {:.1} ms.",
            longest.as_secs_f64() * 1000.0
        ));
        results.push(String::new());
        assert!(d.stop());
        // The daemon's own account of its listings (logged as it stops).
        let log = std::fs::read_to_string(DAEMON_LOG).unwrap_or_default();
        if let Some(counts) = log.lines().rev().find_map(|l| l.split_once("index=")) {
            results.push(format!("Its index at the end: {}", counts.1.trim_end_matches(" stopped")));
            results.push(String::new());
        }
    }
    results
}

/// The lifecycle of a jail of the small release whose rc does nothing (`:`), so that
/// what is measured is iocaged's own work.
fn lifecycle(p: &Plan) -> Vec<String> {
    let mut results = Vec::new();
    let f = Fixture::fresh();
    f.static_release("13.2-RELEASE");
    let d = Daemon::start_logging(&[], Some(DAEMON_LOG));
    let r = client::rest(
        d.rest,
        &json!({"action": "createjail", "props": "tag=life release=13.2-RELEASE exec_start=: exec_stop=:", "switches": "-c"}),
    );
    ok(&r.body, "createjail");
    let (mut starts, mut stops, mut execs, mut enters) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let listed = ok(&client::rest(d.rest, &json!({"action": "listjails"})).body, "listjails");
    let uuid = listed.as_object().unwrap().keys().next().unwrap().clone();
    // The floor: the system's own tools making a jail of the same root
    // that runs `/bin/true` and ends, in turns with the daemon's rounds.
    let root = format!("/iocage/jails/{uuid}/root");
    let mut floors = Vec::new();
    for _ in 0..p.cycles {
        let (prog, args) = rig::host::jail_true(&root);
        let t = Instant::now();
        run(prog, &args.iter().map(String::as_str).collect::<Vec<_>>());
        floors.push(t.elapsed());
        let t = Instant::now();
        let r = client::rest(d.rest, &json!({"action": "startjail", "jail": "life"}));
        starts.push(t.elapsed());
        assert!(ok(&r.body, "startjail")["life"]["+ Starting services OK"].is_string(), "{}", r.raw);
        let jid = ok(&client::rest(d.rest, &json!({"action": "listjails"})).body, "listjails")
            .as_object()
            .unwrap()
            .values()
            .next()
            .unwrap()["jid"]
            .as_str()
            .unwrap()
            .to_string();
        for _ in 0..5 {
            let t = Instant::now();
            let r =
                client::rest(d.rest, &json!({"action": "execjail", "jail": "life", "user": "root", "command": "true"}));
            execs.push(t.elapsed());
            ok(&r.body, "execjail");
            let t = Instant::now();
            let (prog, args) = rig::host::enter_true(&jid);
            run(prog, &args.iter().map(String::as_str).collect::<Vec<_>>());
            enters.push(t.elapsed());
        }
        let t = Instant::now();
        let r = client::rest(d.rest, &json!({"action": "stopjail", "jail": "life"}));
        stops.push(t.elapsed());
        assert!(ok(&r.body, "stopjail")["life"]["+ Removing jail process OK"].is_string(), "{}", r.raw);
    }
    // The same jail's start and stop with a network: one shared-IP address
    // (an alias on the host's interface, FreeBSD; an ipvlan link, Linux),
    // and on Linux one VNET interface on a bridge (a veth pair).
    rig::host::add_outside_addr();
    let outside = if cfg!(target_os = "linux") { "iocd0" } else { "lo9" };
    let mut networked = vec![("shared IP, one address", format!("ip4_addr={outside}|10.9.9.50/24"))];
    if cfg!(target_os = "linux") {
        networked
            .push(("VNET, one interface", "vnet=on interfaces=vnet0:iocbench0 ip4_addr=vnet0|10.66.0.2/24".into()));
    }
    let mut net_rows = Vec::new();
    for (label, props) in networked {
        let r = client::rest(
            d.rest,
            &json!({"action": "createjail", "switches": "-c",
                "props": format!("tag=net release=13.2-RELEASE exec_start=: exec_stop=: {props}")}),
        );
        ok(&r.body, "createjail");
        let (mut up, mut down) = (Vec::new(), Vec::new());
        for _ in 0..p.cycles {
            let t = Instant::now();
            let r = client::rest(d.rest, &json!({"action": "startjail", "jail": "net"}));
            up.push(t.elapsed());
            assert!(ok(&r.body, "startjail")["net"]["+ Starting services OK"].is_string(), "{}", r.raw);
            let t = Instant::now();
            let r = client::rest(d.rest, &json!({"action": "stopjail", "jail": "net"}));
            down.push(t.elapsed());
            assert!(ok(&r.body, "stopjail")["net"]["+ Removing jail process OK"].is_string(), "{}", r.raw);
        }
        let r = client::rest(d.rest, &json!({"action": "destroyjail", "jail": "net"}));
        ok(&r.body, "destroyjail");
        net_rows.push((label, stats(up), stats(down)));
    }
    if cfg!(target_os = "linux") {
        let _ = std::process::Command::new("ip").args(["link", "del", "iocbench0"]).status();
    }
    assert!(d.stop());
    let cycles: Vec<Duration> = starts.iter().zip(&stops).map(|(a, b)| *a + *b).collect();
    let (s, t, e, ns) = (stats(starts), stats(stops), stats(execs), stats(enters));
    let (c, fl) = (stats(cycles), stats(floors));
    let (enter, enter_args) = rig::host::enter_true("JID");
    let (floor, floor_args) = rig::host::jail_true("ROOT");
    let os = std::env::consts::OS;
    results.push(format!("### Lifecycle of a jail of the small release ({os} runtime; the jail's rc is `:`), ms"));
    results.push(String::new());
    results.push("| action | p50 | p99 | n | shell-out comparison |".into());
    results.push("|---|---|---|---|---|".into());
    results.push(format!("| startjail | {} | {} | {} | |", ms(s.p50), ms(s.p99), s.n));
    results.push(format!("| stopjail | {} | {} | {} | |", ms(t.p50), ms(t.p99), t.n));
    results.push(format!(
        "| startjail + stopjail | {} | {} | {} | `{floor} {}` p50 {} ms: x{:.2} |",
        ms(c.p50),
        ms(c.p99),
        c.n,
        floor_args.join(" "),
        ms(fl.p50),
        c.p50 / fl.p50
    ));
    for (label, up, down) in &net_rows {
        results.push(format!("| startjail ({label}) | {} | {} | {} | |", ms(up.p50), ms(up.p99), up.n));
        results.push(format!("| stopjail ({label}) | {} | {} | {} | |", ms(down.p50), ms(down.p99), down.n));
        println!("[bench] lifecycle ({label}): start {:.1} ms, stop {:.1} ms", up.p50, down.p50);
    }
    results.push(format!(
        "| execjail `true` | {} | {} | {} | `{enter} {}` p50 {} ms (no user switch, no captured output) |",
        ms(e.p50),
        ms(e.p99),
        e.n,
        enter_args.join(" "),
        ms(ns.p50)
    ));
    println!(
        "[bench] lifecycle: start {:.1} ms, stop {:.1} ms (floor {:.1} ms), exec {:.1} ms ({enter} {:.1} ms)",
        s.p50, t.p50, fl.p50, e.p50, ns.p50
    );

    results
}

/// `--profile-jail`: where the time of execjail `true` and of a jail's
/// start and stop goes, system-wide (`perf record -a`: the daemon, its
/// helpers, the jail's processes and the kernel), next to the same profile
/// of the system's tools doing the least of the same (`nsenter`/`jexec`,
/// `unshare ... chroot`/`jail -c`). Printed, not tabled.
fn profile_jail(p: &Plan) {
    let f = Fixture::fresh();
    f.static_release("13.2-RELEASE");
    let d = Daemon::start_logging(&[], Some(DAEMON_LOG));
    let props = "tag=life release=13.2-RELEASE exec_start=: exec_stop=:";
    ok(&client::rest(d.rest, &json!({"action": "createjail", "props": props, "switches": "-c"})).body, "createjail");
    let uuid = ok(&client::rest(d.rest, &json!({"action": "listjails"})).body, "listjails")
        .as_object()
        .unwrap()
        .keys()
        .next()
        .unwrap()
        .clone();
    let root = format!("/iocage/jails/{uuid}/root");
    let start = json!({"action": "startjail", "jail": "life"});
    let stop = json!({"action": "stopjail", "jail": "life"});
    let rounds = p.cycles.max(5);
    // `--timeline`: the timelines alone.
    let whole = !std::env::args().any(|a| a == "--timeline");
    if whole {
        system_profile("startjail + stopjail", || {
            for _ in 0..rounds {
                ok(&client::rest(d.rest, &start).body, "startjail");
                ok(&client::rest(d.rest, &stop).body, "stopjail");
            }
        });
        traced(&d, "startjail + stopjail", || {
            ok(&client::rest(d.rest, &start).body, "startjail");
            ok(&client::rest(d.rest, &stop).body, "stopjail");
        });
        system_profile("the floor: the system's tools making a jail that runs true", || {
            for _ in 0..rounds {
                let (prog, args) = rig::host::jail_true(&root);
                run(prog, &args.iter().map(String::as_str).collect::<Vec<_>>());
            }
        });
    }
    // A cycle first: the timeline is of one like the rest, not the first.
    ok(&client::rest(d.rest, &start).body, "startjail");
    ok(&client::rest(d.rest, &stop).body, "stopjail");
    timeline("startjail + stopjail", || {
        ok(&client::rest(d.rest, &start).body, "startjail");
        ok(&client::rest(d.rest, &stop).body, "stopjail");
    });
    ok(&client::rest(d.rest, &start).body, "startjail");
    let jid = ok(&client::rest(d.rest, &json!({"action": "listjails"})).body, "listjails")[&uuid]["jid"]
        .as_str()
        .unwrap()
        .to_string();
    let exec = json!({"action": "execjail", "jail": "life", "user": "root", "command": "true"});
    for _ in 0..3 {
        ok(&client::rest(d.rest, &exec).body, "execjail");
    }
    if whole {
        system_profile("execjail true", || {
            for _ in 0..rounds * 5 {
                ok(&client::rest(d.rest, &exec).body, "execjail");
            }
        });
        traced(&d, "execjail true", || ok(&client::rest(d.rest, &exec).body, "execjail"));
    }
    timeline("execjail true", || {
        for _ in 0..2 {
            ok(&client::rest(d.rest, &exec).body, "execjail");
        }
    });
    timeline("the system's way into the jail", || {
        for _ in 0..2 {
            let (prog, args) = rig::host::enter_true(&jid);
            run(prog, &args.iter().map(String::as_str).collect::<Vec<_>>());
        }
    });
    if whole {
        system_profile("the system's way into the jail", || {
            for _ in 0..rounds * 5 {
                let (prog, args) = rig::host::enter_true(&jid);
                run(prog, &args.iter().map(String::as_str).collect::<Vec<_>>());
            }
        });
    }
    ok(&client::rest(d.rest, &stop).body, "stopjail");
    assert!(d.stop());
}

/// The daemon and every process it starts under `strace -f` while `work`
/// runs: wall time by system call (where the waits are, which a CPU
/// profile does not see), then each call that took 2 ms or more, in order.
fn traced<T>(d: &Daemon, label: &str, work: impl FnOnce() -> T) {
    let out = "/tmp/strace.out";
    let pid = d.pid().expect("the daemon runs").to_string();
    let mut strace = Command::new("strace")
        .args(["-f", "-tt", "-T", "-qq", "-o", out, "-p", &pid])
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("strace");
    std::thread::sleep(Duration::from_millis(1000));
    let t = Instant::now();
    work();
    let wall = t.elapsed();
    std::thread::sleep(Duration::from_millis(200));
    let _ = Command::new("kill").args(["-INT", &strace.id().to_string()]).status();
    strace.wait().expect("strace ends");
    let text = std::fs::read_to_string(out).unwrap_or_default();
    println!("=== strace of the daemon: {label}: {:.0} ms of wall time (traced) ===", wall.as_secs_f64() * 1000.0);
    // `... <0.012345>`: the call's own time.
    let took =
        |l: &str| -> f64 { l.rsplit_once('<').and_then(|(_, t)| t.trim_end_matches('>').parse().ok()).unwrap_or(0.0) };
    let mut by: std::collections::BTreeMap<String, (f64, usize)> = Default::default();
    for l in text.lines() {
        let call = l.split_whitespace().nth(2).and_then(|c| c.split('(').next()).unwrap_or("?").to_string();
        let e = by.entry(call).or_default();
        e.0 += took(l);
        e.1 += 1;
    }
    let mut by: Vec<_> = by.into_iter().collect();
    by.sort_by(|a, b| b.1.0.total_cmp(&a.1.0));
    for (call, (secs, n)) in by.iter().take(15) {
        println!("{:>9.1} ms {n:>5} {call}", secs * 1000.0);
    }
    // Which ZFS ioctls, by thread: `TID ... ioctl(FD, ZFS_IOC_X, ...`
    // (a call cut by another thread's line still names its request).
    let comm = |tid: &str| {
        std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm"))
            .map_or_else(|_| format!("thread {tid}"), |c| c.trim().to_string())
    };
    let mut ioctls: std::collections::BTreeMap<(String, String), usize> = Default::default();
    for l in text.lines() {
        let Some((_, rest)) = l.split_once(" ioctl(") else { continue };
        let Some(request) = rest.split(", ").nth(1).filter(|r| r.starts_with("ZFS_IOC_")) else { continue };
        let tid = l.split_whitespace().next().unwrap_or("?");
        *ioctls.entry((comm(tid), request.trim_end_matches([',', ')']).to_string())).or_default() += 1;
    }
    // Time in ioctls by thread: a cut call's time is on its resumed line.
    let mut spent: std::collections::BTreeMap<String, f64> = Default::default();
    for l in text.lines().filter(|l| l.contains(" ioctl(") || l.contains("<... ioctl resumed>")) {
        *spent.entry(comm(l.split_whitespace().next().unwrap_or("?"))).or_default() += took(l);
    }
    println!("ZFS ioctls by thread and request:");
    for ((thread, request), n) in &ioctls {
        println!("{n:>5} {thread} {request}");
    }
    for (thread, secs) in &spent {
        println!("{:>9.1} ms in ioctls: {thread}", secs * 1000.0);
    }
    for l in text.lines().filter(|l| took(l) >= 0.002) {
        println!("{}", l.chars().take(220).collect::<String>());
    }
    let _ = std::fs::remove_file(out);
}

/// Every process's system calls, forks, execs and exits while `work`
/// runs, in order, with the time from the first (the kernel's own tracer,
/// through tracefs: the `raw_syscalls` and `sched` tracepoints, far
/// lighter than strace): where the wall time of a request goes between the
/// client, the daemon, its helpers and the command. Printed one event a
/// line.
fn timeline(label: &str, work: impl FnOnce()) {
    let trace = rig::host::TraceInstance::new("iocaged-bench-timeline");
    trace.set("tracing_on", "0");
    trace.set("buffer_size_kb", "16384");
    for e in [
        "raw_syscalls/sys_enter",
        "raw_syscalls/sys_exit",
        "sched/sched_process_fork",
        "sched/sched_process_exec",
        "sched/sched_process_exit",
    ] {
        trace.set(&format!("events/{e}/enable"), "1");
    }
    trace.set("tracing_on", "1");
    let t = Instant::now();
    work();
    let wall = t.elapsed();
    trace.set("tracing_on", "0");
    let text = trace.trace();
    drop(trace);
    println!("=== timeline: {label}: {:.0} ms of wall time ===", wall.as_secs_f64() * 1000.0);
    let mut first = None;
    for l in text.lines().filter(|l| !l.starts_with('#')) {
        // `COMM-PID [CPU] FLAGS SECONDS: EVENT: DETAIL`
        let f: Vec<&str> = l.split_whitespace().collect();
        let Some(i) = f.iter().position(|w| w.ends_with(':') && w.trim_end_matches(':').parse::<f64>().is_ok()) else {
            continue;
        };
        let at: f64 = f[i].trim_end_matches(':').parse().unwrap_or(0.0);
        let t0 = *first.get_or_insert(at);
        let what = f[i + 1..].join(" ").replace("sys_enter: ", "> ").replace("sys_exit: ", "< ");
        // A call's arguments are long and mostly addresses: the first two.
        let what = match what.split_once('(') {
            Some((head, args)) => format!("{head}({})", args.split(", ").take(2).collect::<Vec<_>>().join(", ")),
            None => what,
        };
        println!("{:9.3} {} {what}", (at - t0) * 1000.0, f[0]);
    }
}

/// `perf record -a` while `work` runs; then the time by process and
/// library, and by function, printed under `label`, with the wall time.
fn system_profile(label: &str, work: impl FnOnce()) {
    let data = "/tmp/perf-system.data";
    let mut perf = Command::new("perf")
        .args(["record", "-a", "-F", "999", "-g", "-o", data, "-q"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("perf");
    // perf needs a moment before it records.
    std::thread::sleep(Duration::from_millis(500));
    let t = Instant::now();
    work();
    let wall = t.elapsed();
    let _ = Command::new("kill").args(["-INT", &perf.id().to_string()]).status();
    perf.wait().expect("perf ends");
    println!("=== system profile: {label}: {:.0} ms of wall time ===", wall.as_secs_f64() * 1000.0);
    for sort in [
        &["--sort", "comm"][..],
        &["--sort", "comm,dso", "--percent-limit", "1"],
        &["--sort", "comm,sym", "--percent-limit", "0.4"],
    ] {
        let report = Command::new("perf")
            .args(["report", "-i", data, "--stdio", "--no-children", "-g", "none"])
            .args(sort)
            .output()
            .expect("perf report");
        let text = String::from_utf8_lossy(&report.stdout);
        println!("{}", text.lines().filter(|l| !l.trim().is_empty()).collect::<Vec<_>>().join("\n"));
    }
    let _ = std::fs::remove_file(data);
}

/// execjail `true` in one running jail, for the base build
/// (IOCAGED_BASE_BIN, when set) and this one, each round followed by the
/// system's own way into the same jail (`nsenter`, `jexec`): one jail, one
/// run, the builds in turns (base, this, base, this), each row saying which
/// program its daemon ran the helpers as (from its log). In the same turns,
/// starts and stops of that jail, each next to the floor (`jail_true`).
fn exec_compared(p: &Plan) -> Vec<String> {
    let f = Fixture::fresh();
    f.static_release("13.2-RELEASE");
    let d = Daemon::start_logging(&[], Some(DAEMON_LOG));
    let props = "tag=life release=13.2-RELEASE exec_start=: exec_stop=:";
    ok(&client::rest(d.rest, &json!({"action": "createjail", "props": props, "switches": "-c"})).body, "createjail");
    assert!(d.stop());
    let (enter, enter_args) = rig::host::enter_true("JID");
    let base = std::env::var("IOCAGED_BASE_BIN").ok();
    let builds: Vec<Option<&str>> = match base.as_deref() {
        Some(b) => vec![Some(b), None],
        None => vec![None],
    };
    // Per build: its helpers, its execjails, the entries next to them.
    let mut measured: Vec<(String, Vec<Duration>, Vec<Duration>)> = vec![Default::default(); builds.len()];
    // Per build: its starts and stops, the floors next to them.
    let mut cycled: Vec<[Vec<Duration>; 3]> = vec![Default::default(); builds.len()];
    let (floor, floor_args) = rig::host::jail_true("ROOT");
    let root = {
        let d = Daemon::start_logging(&[], Some(DAEMON_LOG));
        let listed = ok(&client::rest(d.rest, &json!({"action": "listjails"})).body, "listjails");
        assert!(d.stop());
        format!("/iocage/jails/{}/root", listed.as_object().unwrap().keys().next().unwrap())
    };
    for turn in 0..2 * builds.len() {
        let which = turn % builds.len();
        let d = Daemon::start_build(builds[which], &[], Some(DAEMON_LOG));
        let log = std::fs::read_to_string(DAEMON_LOG).unwrap_or_default();
        let helpers = log.lines().find(|l| l.contains("jail helpers")).and_then(|l| l.split("helpers=").nth(1));
        measured[which].0 = helpers.unwrap_or("the daemon's own binary (says nothing: an older build)").to_string();
        ok(&client::rest(d.rest, &json!({"action": "startjail", "jail": "life"})).body, "startjail");
        let listed = ok(&client::rest(d.rest, &json!({"action": "listjails"})).body, "listjails");
        let jid = listed.as_object().unwrap().values().next().unwrap()["jid"].as_str().unwrap().to_string();
        let exec = json!({"action": "execjail", "jail": "life", "user": "root", "command": "true"});
        for round in 0..(p.cycles * 5 / 2 + 3) {
            let t = Instant::now();
            let r = client::rest(d.rest, &exec);
            let took = t.elapsed();
            ok(&r.body, "execjail");
            let (prog, args) = rig::host::enter_true(&jid);
            let t = Instant::now();
            run(prog, &args.iter().map(String::as_str).collect::<Vec<_>>());
            // The first rounds of a turn warm the caches up.
            if round >= 3 {
                measured[which].1.push(took);
                measured[which].2.push(t.elapsed());
            }
        }
        ok(&client::rest(d.rest, &json!({"action": "stopjail", "jail": "life"})).body, "stopjail");
        // Then starts and stops of the same jail, each cycle next to the
        // floor (the system's tools making a jail of its root that runs
        // `/bin/true`); the first cycle of a turn warms up.
        for round in 0..=p.cycles / 2 {
            let (prog, args) = rig::host::jail_true(&root);
            let t = Instant::now();
            run(prog, &args.iter().map(String::as_str).collect::<Vec<_>>());
            let fl = t.elapsed();
            let t = Instant::now();
            let r = client::rest(d.rest, &json!({"action": "startjail", "jail": "life"}));
            let up = t.elapsed();
            ok(&r.body, "startjail");
            let t = Instant::now();
            let r = client::rest(d.rest, &json!({"action": "stopjail", "jail": "life"}));
            let down = t.elapsed();
            ok(&r.body, "stopjail");
            if round > 0 {
                for (v, took) in cycled[which].iter_mut().zip([up, down, fl]) {
                    v.push(took);
                }
            }
        }
        assert!(d.stop());
    }
    let label = |bin: &Option<&str>| {
        bin.map_or_else(
            || std::env::var("IOCAGED_BIN").map_or("this build".to_string(), |b| format!("`{b}`")),
            |b| format!("`{b}`"),
        )
    };
    let mut rows = vec![
        format!("### startjail + stopjail, by build, next to `{floor} {}` on the same root (ms)", floor_args.join(" ")),
        String::new(),
        "| build | startjail p50 | stopjail p50 | start + stop p50 | p99 | n | floor p50 | x floor |".into(),
        "|---|---|---|---|---|---|---|---|".into(),
    ];
    for (bin, [ups, downs, floors]) in builds.iter().zip(cycled) {
        let both: Vec<Duration> = ups.iter().zip(&downs).map(|(a, b)| *a + *b).collect();
        let (u, w, c, f) = (stats(ups), stats(downs), stats(both), stats(floors));
        println!("[bench] start+stop ({}): {:.1} + {:.1} ms, floor {:.1} ms", label(bin), u.p50, w.p50, f.p50);
        rows.push(format!(
            "| {} | {} | {} | {} | {} | {} | {} | {:.2} |",
            label(bin),
            ms(u.p50),
            ms(w.p50),
            ms(c.p50),
            ms(c.p99),
            c.n,
            ms(f.p50),
            c.p50 / f.p50
        ));
    }
    rows.push(String::new());
    rows.extend([
        "### execjail `true`, by build, next to the system's way into the same jail (ms)".to_string(),
        String::new(),
        format!("| build | helpers | execjail p50 | p99 | n | `{enter} {}` p50 | x that |", enter_args.join(" ")),
        "|---|---|---|---|---|---|---|".into(),
    ]);
    for (bin, (helpers, execs, enters)) in builds.iter().zip(measured) {
        let (e, n) = (stats(execs), stats(enters));
        let label = label(bin);
        println!("[bench] exec ({label}, {helpers}): {:.1} ms, {enter} {:.1} ms", e.p50, n.p50);
        rows.push(format!(
            "| {label} | {helpers} | {} | {} | {} | {} | {:.2} |",
            ms(e.p50),
            ms(e.p99),
            e.n,
            ms(n.p50),
            e.p50 / n.p50
        ));
    }
    rows.push(String::new());
    rows
}

/// fetchrelease (download from a loopback mirror, SHA-256 check, xz
/// decompression and extraction) of one set, next to `tar -xJf` of the same
/// set into a new dataset: same pool, same run.
fn fetch_table(p: &Plan) -> Vec<String> {
    const REL: &str = "14.2-RELEASE";
    let f = Fixture::fresh();
    let made = f.static_release("bench-src");
    let dir = "/iocage/releases/bench-src/root";
    std::fs::create_dir_all(format!("{dir}/usr/share/bench")).unwrap();
    for i in 0..p.fetch_files {
        let text: String = (0..512).map(|l| format!("file {i} line {l:08}\n")).collect();
        std::fs::write(format!("{dir}/usr/share/bench/f{i}"), text).unwrap();
    }
    let tar = mirror::tar_of(dir);
    let entries = tar::Archive::new(&tar[..]).entries().unwrap().count() as u64;
    let set = mirror::xz(&tar);
    rig::zfs(&["destroy", "-r", made.trim_end_matches("/root")]);
    let local = "/tmp/bench-base.txz";
    std::fs::write(local, &set).unwrap();
    let m = Mirror::start();
    m.release(REL, &[("base.txz", &set, entries)]);
    let d = Daemon::with_config(&format!("release_mirror = {:?}\nrelease_arch = \"{}\"\n", m.url(), mirror::ARCH));
    let (mut fetches, mut tars) = (Vec::new(), Vec::new());
    let scratch = format!("{}/iocage/bench-tar", f.pool);
    for _ in 0..p.fetch_rounds {
        let _ = Command::new("zfs").args(["destroy", "-r", &format!("{}/iocage/download/{REL}", f.pool)]).status();
        let t = Instant::now();
        let r = client::rest(d.rest, &json!({"action": "fetchrelease", "release": REL}));
        fetches.push(t.elapsed());
        ok(&r.body, "fetchrelease");
        ok(&client::rest(d.rest, &json!({"action": "destroyrelease", "release": REL})).body, "destroyrelease");
        let t = Instant::now();
        rig::zfs(&["create", &scratch]);
        run("tar", &["-xJf", local, "-C", "/iocage/bench-tar"]);
        tars.push(t.elapsed());
        rig::zfs(&["destroy", "-r", &scratch]);
    }
    assert!(d.stop());
    let (fetch, tar_x) = (stats(fetches), stats(tars));
    let mib = |b: usize| b as f64 / (1 << 20) as f64;
    vec![
        "### fetchrelease: one set from a loopback mirror, next to `tar -xJf` of the same set (p50 ms)".into(),
        String::new(),
        "| set (xz / tar MiB, entries) | fetchrelease (download, SHA-256, extract) | `zfs create` and `tar -xJf` into it | x tar |".into(),
        "|---|---|---|---|".into(),
        format!(
            "| {:.1} / {:.1} MiB, {entries} | {} | {} | {:.1}x |",
            mib(set.len()),
            mib(tar.len()),
            ms(fetch.p50),
            ms(tar_x.p50),
            fetch.p50 / tar_x.p50
        ),
        String::new(),
    ]
}

fn main() {
    // The guest runs every test binary test by test (`--list`, then
    // `--exact NAME`, tests/vm/guest.sh); this one is one test.
    if std::env::args().any(|a| a == "--list") {
        println!("benchmark: test");
        return;
    }
    let full = std::env::args().any(|a| a == "--full");
    let mut p = plan(full);
    // `--sizes=100,1000`: other pool sizes (to measure one size alone).
    if let Some(sizes) = std::env::args().find_map(|a| a.strip_prefix("--sizes=").map(str::to_string)) {
        p.sizes = sizes.split(',').map(|n| n.parse().expect("--sizes=N,M,..")).collect();
    }
    rig::pool();
    let say = |s: String| println!("{s}");
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let kernel = run("uname", &["-r"]).trim().to_string();
    let zfs_version = rig::kernel_zfs_version();
    let mut results = vec![
        format!(
            "Run: {} mode; guest: {cpus} vCPUs (QEMU TCG, software CPU), {} {kernel}, OpenZFS {zfs_version}; iocaged {} build.",
            if full { "full" } else { "short" },
            std::env::consts::OS,
            if cfg!(debug_assertions) { "debug" } else { "release" }
        ),
        String::new(),
    ];

    // First the lifecycle, on an empty pool; then the sizes in increasing
    // order, the throughput on the pool of its size, and the largest pool
    // last (never destroyed: that alone takes minutes in the guest).
    // `--fetch`: the fetchrelease table alone (with the mode's set).
    if std::env::args().any(|a| a == "--fetch") {
        results.extend(fetch_table(&p));
        for line in results {
            say(line);
        }
        return;
    }
    // `--throughput`: that table alone, at 100 jails; with
    // IOCAGED_BASE_BIN set, for that build too, on the same pool in the
    // same run (before/after). `--rss`: the daemon's memory at the largest
    // size alone, for the builds IOCAGED_RSS_BINS lists (else base and
    // this one). Both may be asked for in one run.
    let (throughput, rss) =
        (std::env::args().any(|a| a == "--throughput" || a == "--df"), std::env::args().any(|a| a == "--rss"));
    // `--exec`: execjail alone, by build (base and this).
    let exec = std::env::args().any(|a| a == "--exec");
    let life_only = std::env::args().any(|a| a == "--lifecycle");
    // `--profile-jail`: where execjail's and start/stop's time goes.
    let profiled = std::env::args().any(|a| a == "--profile-jail");
    if profiled {
        profile_jail(&p);
    }
    if throughput || rss || exec || profiled || std::env::args().any(|a| a == "--first-answer") {
        if exec {
            results.extend(exec_compared(&p));
        }
        if life_only {
            results.extend(lifecycle(&p));
        }
        if throughput {
            results.extend(throughput_compared(&p, 100));
        }
        let first = std::env::args().any(|a| a == "--first-answer");
        if rss || first {
            let n = *p.sizes.last().unwrap();
            let _f = Fixture::fresh();
            let d = Daemon::start_logging(&[], Some(DAEMON_LOG));
            populate(&d, n);
            assert!(d.stop());
            if rss {
                results.extend(rss_compared(n));
            }
            if first {
                results.extend(first_answer(n));
            }
        }
        for line in results {
            say(line);
        }
        return;
    }
    let life = lifecycle(&p);
    // `--lifecycle`: that table alone (with the mode's cycles).
    if std::env::args().any(|a| a == "--lifecycle") {
        results.extend(life);
        for line in results {
            say(line);
        }
        return;
    }
    let fetched = fetch_table(&p);
    let mut throughput = Vec::new();

    // Latency of the read actions, and the shell-out baselines.
    results.push("### Read actions: latency (ms) and the shell-out way, same pool, same run".into());
    results.push(String::new());
    results.push("| jails | action | REST p50 | REST p99 | WS p50 | WS p99 | n | one `zfs` process per property (scaled) | best single `zfs` command p50 | x per-property | x single command |".into());
    results.push("|---|---|---|---|---|---|---|---|---|---|---|".into());
    let mut rss_line = String::new();
    let mut write_rows = Vec::new();
    let mut catch_up = Vec::new();
    for &n in &p.sizes {
        let f = Fixture::fresh();
        let d = Daemon::start_logging(&[], Some(DAEMON_LOG));
        let first = populate(&d, n);
        let jails = format!("{}/iocage/jails", f.pool);
        // The jails were made behind the daemon's back while it ran: the
        // first listing after is timed, and one longer than
        // request_timeout (503) is said and asked again.
        let (_, caught_up, refused) = first_listing(&d, n);
        say(format!(
            "[bench] {n} jails: the first listjails after they were made: {caught_up:.1?} ({refused} refused)"
        ));
        catch_up.push(format!("{n} jails: {:.0} ms ({refused} refused first, 503)", caught_up.as_secs_f64() * 1e3));
        let mut ws = Ws::connect(d.ws);
        for (label, action, req) in reads() {
            let rest = measure(&p, || rest_call(d.rest, &req, action));
            let wsr = measure(&p, || {
                let r = ws.call(&json!({"id": "b", "namespace": "sysadm", "name": "iocage", "args": req}));
                ok(&r, action);
            });
            let single = time_command(
                &single_command(label, &jails, &first),
                if !full {
                    2
                } else if n < 1000 {
                    5
                } else {
                    1
                },
            );
            let per_prop = (label == "listjails").then(|| per_property_listing(&jails, n, p.sample));
            let best = rest.p50.min(wsr.p50);
            results.push(format!(
                "| {n} | {label} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                ms(rest.p50),
                ms(rest.p99),
                ms(wsr.p50),
                ms(wsr.p99),
                rest.n.min(wsr.n),
                per_prop.map_or("".into(), ms),
                ms(single.p50),
                per_prop.map_or("".into(), |v| format!("{:.0}x", v / best)),
                format_args!("{:.1}x", single.p50 / best),
            ));
            say(format!(
                "[bench] {n} jails, {label}: REST {:.2}/{:.2} ms, WS {:.2}/{:.2} ms, zfs {:.2} ms",
                rest.p50, rest.p99, wsr.p50, wsr.p99, single.p50
            ));
        }
        if n == *p.sizes.last().unwrap() {
            // As `--rss`: idle past the daemon's memory trim first.
            std::thread::sleep(Duration::from_secs(12));
            let pid = d.pid().unwrap();
            let (rss, peak) = rig::host::rss_kib(pid);
            rss_line = format!("Daemon memory after the reads at {n} jails and 12 s idle: RSS {rss} KiB");
            if let Some(peak) = peak {
                rss_line += &format!(", peak (VmHWM) {peak} KiB");
            }
            rss_line += ".";
        }
        if n == p.throughput_size {
            throughput = throughput_table(&p, &d, n);
        }
        let [c, k, x] = writes(&p, &d, n);
        write_rows.push(format!("| {n} | {} | {} | {} | {} |", ms(c.p50), ms(k.p50), ms(x.p50), c.n));
        assert!(d.stop());
    }
    results.push(String::new());
    results.push(rss_line);
    results.push(String::new());
    results.push(format!(
        "The first listjails after the pool's jails were made behind the running daemon's back (through libzfs, as fast as it goes): {}.",
        catch_up.join("; ")
    ));
    results.push(String::new());
    results.push("### Write actions by pool size: p50 ms (createjail -e, clonejail of it, destroyjail of each)".into());
    results.push(String::new());
    results.push("| jails | createjail -e | clonejail | destroyjail | rounds |".into());
    results.push("|---|---|---|---|---|".into());
    results.extend(write_rows);
    results.push(String::new());

    results.extend(throughput);
    results.extend(life);
    results.extend(fetched);
    // Last, on the largest pool (left as the loop made it): the first
    // answer after the daemon starts, with a long pool log.
    if full {
        results.extend(first_answer(*p.sizes.last().unwrap()));
    }

    println!("=== BENCHMARK RESULTS BEGIN ===");
    for l in &results {
        println!("{l}");
    }
    println!("=== BENCHMARK RESULTS END ===");
}
