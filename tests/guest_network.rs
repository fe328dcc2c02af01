//! Jail networking on the Linux runtime, in the guest: VNET jails on a
//! bridge reaching each other and the host, a shared-IP jail that has its
//! own addresses and no others, `DEFAULT|`, failures part-way and stops
//! leaving no interface behind, a restarted daemon, and malformed values
//! refused with nothing made. The oracle is `ip` on the host and busybox's
//! `ip`, `ping` and `nc` in the jails (tests may run `ip`; the daemon
//! never does).
#![cfg(target_os = "linux")]

mod rig;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::json;

use rig::call;
use rig::client;
use rig::conformance::lock;
use rig::daemon::Daemon;
use rig::fixture::Fixture;
use rig::{cmd, host};

const RELEASE: &str = "13.2-RELEASE";

fn setup() -> (std::sync::MutexGuard<'static, ()>, Fixture, Daemon) {
    let turn = lock();
    clean_links();
    let f = Fixture::fresh();
    f.static_release(RELEASE);
    (turn, f, Daemon::start(&[]))
}

/// Removes what an earlier test of this file left: the test's links and
/// bridges, the default route it may have set.
fn clean_links() {
    host::remove_running_jails();
    for l in links() {
        if l.starts_with("iocbr") || l.starts_with("iocsh") || l.starts_with("vnet") {
            let _ = std::process::Command::new("ip").args(["link", "del", &l]).status();
        }
    }
    let _ = std::process::Command::new("ip").args(["route", "del", "default"]).output();
    let _ = std::process::Command::new("ip").args(["netns", "del", "iocrt"]).output();
}

/// The host's link names (`vnet0.123@if2` read as `vnet0.123`).
fn links() -> Vec<String> {
    cmd("ip", &["-o", "link", "show"])
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .collect()
}

fn members(bridge: &str) -> Vec<String> {
    cmd("ip", &["-o", "link", "show", "master", bridge])
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .collect()
}

/// A jail of the small release with these props; returns its UUID.
fn jail(d: &Daemon, props: &str) -> String {
    let r = call(
        d,
        json!({"action": "createjail", "props": format!("release={RELEASE} allow_raw_sockets=1 {props}"), "switches": "-c"}),
    );
    let s = r["success"]["Successfully created"].as_str().unwrap_or_else(|| panic!("not created: {r}"));
    s.split_whitespace().next().unwrap().to_string()
}

fn start(d: &Daemon, tag: &str) {
    let r = call(d, json!({"action": "startjail", "jail": tag}));
    assert!(r[tag]["+ Starting services OK"].is_string(), "{tag} did not start: {r}");
}

fn stop(d: &Daemon, tag: &str) {
    let r = call(d, json!({"action": "stopjail", "jail": tag}));
    assert!(r.to_string().contains("Stopped") || r.to_string().contains("OK"), "{tag} did not stop: {r}");
}

/// Runs `command` in the jail; returns (stdout, exit code).
fn exec(d: &Daemon, tag: &str, command: &str) -> (String, i64) {
    let r =
        call(d, json!({"action": "execjail", "jail": tag, "user": "root", "command": command, "output": "lossless"}));
    let out = r["stdout"].as_str().unwrap_or_else(|| panic!("{command}: {r}")).to_string();
    (out, r["exit_code"].as_i64().unwrap_or(-1))
}

fn jid(d: &Daemon, uuid: &str) -> String {
    call(d, json!({"action": "listjails"}))[uuid]["jid"].as_str().unwrap().to_string()
}

/// Interface names inside the jail (`ip -o link`).
fn jail_links(d: &Daemon, tag: &str) -> Vec<String> {
    let (out, code) = exec(d, tag, "ip -o link");
    assert_eq!(code, 0, "{out}");
    out.lines().filter_map(|l| l.split(": ").nth(1)).map(|n| n.split('@').next().unwrap_or(n).to_string()).collect()
}

/// `addr/len` of the jail's addresses, with their interfaces.
fn jail_addrs(d: &Daemon, tag: &str) -> Vec<String> {
    let (out, code) = exec(d, tag, "ip -o addr");
    assert_eq!(code, 0, "{out}");
    let mut v: Vec<String> = out
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 3 && (f[2] == "inet" || f[2] == "inet6") && !f[3].starts_with("fe80"))
                .then(|| format!("{} {}", f[1], f[3]))
        })
        .collect();
    v.sort();
    v
}

/// The host's own bridge `iocbr0` with its address 10.77.0.1/24 (as an
/// administrator's bridge0 would be).
fn host_bridge() {
    cmd("ip", &["link", "add", "iocbr0", "type", "bridge"]);
    cmd("ip", &["addr", "add", "10.77.0.1/24", "dev", "iocbr0"]);
    cmd("ip", &["link", "set", "iocbr0", "up"]);
}

/// A veth pair for shared-IP tests: `iocsh0` (no address, where jails put
/// theirs) and `iocsh1` (the host's `10.78.0.1/24`): what leaves a jail's
/// address on iocsh0 arrives at the host on iocsh1.
fn shared_segment() {
    cmd("ip", &["link", "add", "iocsh0", "type", "veth", "peer", "name", "iocsh1"]);
    cmd("ip", &["addr", "add", "10.78.0.1/24", "dev", "iocsh1"]);
    cmd("ip", &["link", "set", "iocsh0", "up"]);
    cmd("ip", &["link", "set", "iocsh1", "up"]);
}

#[test]
fn two_vnet_jails_on_a_bridge_reach_each_other_and_the_host() {
    let (_t, _f, d) = setup();
    // bridge0-like: made by the test with the host's address on it;
    // iocbr9 is missing and the daemon makes it.
    host_bridge();
    let a = jail(
        &d,
        "tag=va vnet=on interfaces=vnet0:iocbr0,vnet1:iocbr9 ip4_addr=vnet0|10.77.0.2/24,vnet1|10.79.0.2/24 \
         ip6_addr=vnet0|fd77::2/64 defaultrouter=10.77.0.1",
    );
    let b = jail(
        &d,
        "tag=vb vnet=on interfaces=vnet0:iocbr0 ip4_addr=vnet0|10.77.0.3/24 ip6_addr=vnet0|fd77::3/64 \
         defaultrouter6=fe80::1",
    );
    start(&d, "va");
    start(&d, "vb");
    let (ja, jb) = (jid(&d, &a), jid(&d, &b));

    // The host ends: named as iocage names them, on their bridges.
    let mut on_br0 = members("iocbr0");
    on_br0.sort();
    let mut want = vec![format!("vnet0.{ja}"), format!("vnet0.{jb}")];
    want.sort();
    assert_eq!(on_br0, want);
    assert_eq!(members("iocbr9"), vec![format!("vnet1.{ja}")], "the missing bridge was made");
    assert!(cmd("ip", &["-d", "link", "show", "iocbr9"]).contains("bridge"), "iocbr9 is a bridge");

    // Inside: lo and its vnetN, its addresses, its default route, the MAC
    // iocage derives (the host end's plus one).
    let mut inside = jail_links(&d, "va");
    inside.sort();
    assert_eq!(inside, ["lo", "vnet0", "vnet1"]);
    assert_eq!(
        jail_addrs(&d, "va"),
        ["lo 127.0.0.1/8", "lo ::1/128", "vnet0 10.77.0.2/24", "vnet0 fd77::2/64", "vnet1 10.79.0.2/24"]
    );
    let (routes, _) = exec(&d, "va", "ip route");
    assert!(routes.contains("default via 10.77.0.1 dev vnet0"), "{routes}");
    let (routes, _) = exec(&d, "vb", "ip -6 route");
    assert!(routes.contains("default via fe80::1 dev vnet0"), "a link-local router, through vnet0: {routes}");
    let host_mac = cmd("cat", &[&format!("/sys/class/net/vnet0.{ja}/address")]);
    let (shown, _) = exec(&d, "va", "ip -o link show vnet0");
    let jail_mac = shown.split("link/ether ").nth(1).and_then(|m| m.split_whitespace().next()).unwrap_or_default();
    let last = |m: &str| u8::from_str_radix(m.trim().rsplit(':').next().unwrap(), 16).unwrap();
    assert!(host_mac.starts_with("02:ff:60:"), "iocage's prefix: {host_mac}");
    assert_eq!(last(jail_mac), last(&host_mac).wrapping_add(1), "{host_mac} {jail_mac}");

    // They reach each other and the host.
    for (from, to) in [("va", "10.77.0.3"), ("vb", "10.77.0.2"), ("va", "10.77.0.1"), ("vb", "10.77.0.1")] {
        let (out, code) = exec(&d, from, &format!("ping -c 1 -W 3 {to}"));
        assert_eq!(code, 0, "{from} -> {to}: {out}");
    }

    // Stop takes the jail's host ends away at once; the bridges stay.
    stop(&d, "va");
    assert_eq!(members("iocbr0"), vec![format!("vnet0.{jb}")]);
    assert!(!links().iter().any(|l| l.ends_with(&format!(".{ja}"))), "{:?}", links());
    assert!(links().contains(&"iocbr9".to_string()), "bridges stay, as iocage leaves them");
    stop(&d, "vb");
    assert_eq!(members("iocbr0"), Vec::<String>::new());
    clean_links();
}

#[test]
fn a_shared_ip_jail_has_its_own_addresses_and_no_others() {
    let (_t, _f, d) = setup();
    shared_segment();
    host::add_outside_addr();
    // iocage's loopback alias (lo0 on FreeBSD) goes on the jail's own lo;
    // without an IPv6 address the jail has no IPv6 at all.
    let _ = jail(&d, "tag=sh ip4_addr=iocsh0|10.78.0.2/24,lo0|127.0.1.1 ip6=new");
    start(&d, "sh");
    assert_eq!(jail_addrs(&d, "sh"), ["iocsh0 10.78.0.2/24", "lo 127.0.0.1/8", "lo 127.0.1.1/32"]);
    let mut inside = jail_links(&d, "sh");
    inside.sort();
    assert_eq!(inside, ["iocsh0", "lo"], "the host's other interfaces are not the jail's");

    // It can bind its own address and no other (10.78.0.1 and 10.9.9.1
    // are the host's).
    for (addr, ok) in [("10.78.0.2", true), ("10.78.0.1", false), ("10.9.9.1", false)] {
        let (out, _) = exec(&d, "sh", &format!("timeout 1 httpd -f -p {addr}:7001 2>&1; echo rc=$?"));
        assert_eq!(!out.contains("ssign requested address"), ok, "binding {addr}: {out}");
    }

    // It serves on its address: the host connects to it there.
    let rest = d.rest;
    let server = std::thread::spawn(move || {
        let args = json!({"action": "execjail", "jail": "sh", "user": "root", "output": "lossless",
            "command": "mkdir -p /tmp/www && echo served > /tmp/www/index.html && \
                        timeout 10 httpd -f -p 10.78.0.2:7002 -h /tmp/www"});
        client::rest(rest, &args)
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut got = String::new();
    while Instant::now() < deadline && !got.contains("served") {
        if let Ok(mut s) = TcpStream::connect_timeout(&"10.78.0.2:7002".parse().unwrap(), Duration::from_secs(1)) {
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let _ = s.write_all(b"GET /index.html HTTP/1.0\r\n\r\n");
            let _ = s.read_to_string(&mut got);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(got.contains("served"), "the host reached the jail's server: {got}");
    let _ = server.join();

    // And what it sends comes from its address.
    let listener = std::net::TcpListener::bind("10.78.0.1:7003").unwrap();
    let client = std::thread::spawn(move || {
        let args = json!({"action": "execjail", "jail": "sh", "user": "root",
            "command": "echo hi | nc -w 2 10.78.0.1 7003", "output": "lossless"});
        client::rest(rest, &args)
    });
    listener.set_nonblocking(false).unwrap();
    let (_, peer) = listener.accept().unwrap();
    assert_eq!(peer.ip().to_string(), "10.78.0.2");
    let _ = client.join();

    stop(&d, "sh");
    // Nothing of the jail is left on the host's interfaces.
    assert!(!cmd("ip", &["-o", "addr"]).contains("10.78.0.2"));
    clean_links();
}

#[test]
fn default_names_the_default_routes_interface() {
    let (_t, _f, d) = setup();
    shared_segment();
    // A router: iocsh1 in a namespace of its own with 10.78.0.1. The host's
    // default route leaves through iocsh0 towards it: DEFAULT| is iocsh0,
    // and the jail, on iocsh0's segment, can use that router.
    cmd("ip", &["netns", "add", "iocrt"]);
    cmd("ip", &["link", "set", "iocsh1", "netns", "iocrt"]);
    cmd("ip", &["-n", "iocrt", "addr", "add", "10.78.0.1/24", "dev", "iocsh1"]);
    cmd("ip", &["-n", "iocrt", "link", "set", "iocsh1", "up"]);
    cmd("ip", &["route", "add", "default", "via", "10.78.0.1", "dev", "iocsh0", "onlink"]);
    let _ = jail(&d, "tag=df ip4_addr=DEFAULT|10.78.0.5/24");
    start(&d, "df");
    assert_eq!(jail_addrs(&d, "df"), ["iocsh0 10.78.0.5/24", "lo 127.0.0.1/8"]);
    let (routes, _) = exec(&d, "df", "ip route");
    assert!(routes.contains("default via 10.78.0.1 dev iocsh0"), "the host's default route: {routes}");
    let (out, code) = exec(&d, "df", "ping -c 1 -W 3 10.78.0.1");
    assert_eq!(code, 0, "the jail reaches the router: {out}");
    stop(&d, "df");
    clean_links();
}

#[test]
fn a_start_that_fails_part_way_leaves_no_interface_and_refusals_make_nothing() {
    let (_t, _f, d) = setup();
    shared_segment();
    let before = links();
    // Its second interface's "bridge" is a plain interface: the first
    // pair, already made and on iocbr0, must go again.
    let bad = jail(&d, "tag=bad vnet=on interfaces=vnet0:iocbr0,vnet1:iocsh1 ip4_addr=vnet0|10.77.0.9/24");
    let r = call(&d, json!({"action": "startjail", "jail": "bad"}));
    let text = r.to_string();
    assert!(text.contains("iocsh1 exists and is not a bridge"), "{r}");
    let mut after = links();
    after.retain(|l| l != "iocbr0");
    assert_eq!(after, before, "no interface left (iocbr0 was made by this start and goes too)");
    assert!(!links().contains(&"iocbr0".to_string()), "the bridge this start made is removed");
    assert_eq!(host::leftovers(&bad), Vec::<String>::new());

    // An address the host already has is refused, nothing made.
    let _ = jail(&d, "tag=dup ip4_addr=iocsh0|10.78.0.1/24");
    let r = call(&d, json!({"action": "startjail", "jail": "dup"}));
    assert!(r.to_string().contains("10.78.0.1 is already in use on the host"), "{r}");
    assert_eq!(links(), before);

    // Twenty malformed values: refused at create with the property or the
    // problem named, and no jail made.
    let jails = |d: &Daemon| call(d, json!({"action": "listjails"})).as_object().map_or(0, |o| o.len());
    let n = jails(&d);
    for (props, says) in [
        ("ip4_addr=iocsh0|10.0.0.1/33", "ip4_addr"),
        ("ip4_addr=iocsh0|300.0.0.1/24", "ip4_addr"),
        ("ip4_addr=iocsh0|10.0.0.0/24", "network's own"),
        ("ip4_addr=iocsh0|10.0.0.1/+24", "prefix length"),
        ("ip4_addr=iocsh0|DHCP", "ip4_addr"),
        ("ip4_addr=iocsh0|10.0.0.1/24,iocsh0|10.0.0.1/24", "twice"),
        ("ip4_addr=vnet0|10.0.0.1/24", "vnet is off"),
        ("ip4=inherit ip4_addr=iocsh0|10.0.0.1/24", "ip4=new"),
        ("ip6_addr=iocsh0|10.0.0.1", "ip6_addr"),
        ("ip6_addr=iocsh0|fd00::1/129", "ip6_addr"),
        ("vnet=on interfaces=vnet0:iocbr0 ip4_addr=vnet2|10.0.0.1/24", "vnet2"),
        ("vnet=on interfaces=vnet0:iocbr0 ip6_addr=vnet0|fd00::1", "prefix length"),
        ("vnet=on interfaces=vnet0:iocbr0 vnet0_mac=02aabbccdd01", "vnet0_mac"),
        ("vnet=on interfaces=vnet0:iocbr0 vnet0_mac=01aabbccdd01,02aabbccdd02", "vnet0_mac"),
        ("vnet=on interfaces=eth0:iocbr0", "vnet0 to vnet3"),
        ("vnet=on interfaces=vnet0", "interfaces"),
        ("vnet=on interfaces=vnet0:iocbr0,vnet0:iocbr1", "twice"),
        ("vnet=on interfaces=vnet0:iocbr0 ip4_addr=DEFAULT|10.0.0.1/24", "DEFAULT"),
        ("vnet=on interfaces=vnet0:iocbr0 defaultrouter=fd00::1", "defaultrouter"),
        ("vnet=on interfaces=vnet0:iocbr0,vnet1:iocbr1 ip4_addr=vnet0|10.0.0.1/24,vnet1|10.0.0.1/24", "twice"),
    ] {
        let r = client::rest(
            d.rest,
            &json!({"action": "createjail", "props": format!("release={RELEASE} {props}"), "switches": "-c"}),
        );
        assert!(r.raw.contains(says), "{props}: {}", r.raw);
        assert_eq!(jails(&d), n, "{props}: nothing made");
    }
    clean_links();
}

#[test]
fn a_restarted_daemon_keeps_running_jails_networks_and_stop_still_removes_them() {
    let (_t, _f, d) = setup();
    host_bridge();
    let u = jail(&d, "tag=keep vnet=on interfaces=vnet0:iocbr0 ip4_addr=vnet0|10.77.0.4/24");
    start(&d, "keep");
    let j = jid(&d, &u);
    d.kill();
    let d = Daemon::start(&[]);
    let (out, code) = exec(&d, "keep", "ping -c 1 -W 3 10.77.0.1");
    assert_eq!(code, 0, "{out}");
    assert_eq!(members("iocbr0"), vec![format!("vnet0.{j}")]);
    stop(&d, "keep");
    assert_eq!(members("iocbr0"), Vec::<String>::new());
    clean_links();
}

#[test]
fn the_uplink_joins_a_bridge_iocaged_makes_unless_it_carries_the_hosts_addresses() {
    let (_t, f, d) = setup();
    shared_segment();
    host::add_outside_addr();
    let uplink = |uuid: &str, iface: &str| {
        rig::zfs(&[
            "set",
            &format!("org.freebsd.iocage:vnet_default_interface={iface}"),
            &format!("{}/iocage/jails/{uuid}", f.pool),
        ]);
    };
    // iocd0 has the host's 10.9.9.1: refused, nothing made.
    let a = jail(&d, "tag=up1 vnet=on interfaces=vnet0:iocbr5 ip4_addr=vnet0|10.76.0.2/24");
    uplink(&a, "iocd0");
    let before = links();
    let r = call(&d, json!({"action": "startjail", "jail": "up1"}));
    assert!(r.to_string().contains("iocd0 carries the host's addresses"), "{r}");
    assert_eq!(links(), before, "no bridge, no pair");
    // iocsh0 has none: it becomes the new bridge's member, beside the jail's end.
    uplink(&a, "iocsh0");
    start(&d, "up1");
    let mut m = members("iocbr5");
    m.sort();
    let mut want = vec!["iocsh0".to_string(), format!("vnet0.{}", jid(&d, &a))];
    want.sort();
    assert_eq!(m, want);
    stop(&d, "up1");
    assert_eq!(members("iocbr5"), ["iocsh0"], "the bridge and its uplink stay, as iocage leaves them");
    clean_links();
}
