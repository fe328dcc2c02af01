//! What the host shows of jails and users, for each operating system: the
//! guest tests set up and assert through these functions, so that the same
//! tests run in the Linux guest (tests/vm/) and on FreeBSD (vagrant/).
//!
//! Linux: the runtime's state under /run/iocaged, its cgroups, /proc.
//! FreeBSD: jls(8), jail(8), rctl(8), ps(1), mount(8) and pw(8) as oracles.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::cmd;

/// The host's statically linked multi-call binary that small test releases
/// are made of, and the programs of it the tests use inside jails.
#[cfg(target_os = "linux")]
pub const MULTICALL: (&str, &[&str]) = (
    "/bin/busybox",
    &[
        "sh", "sleep", "hostname", "ps", "cat", "echo", "id", "ls", "true", "false", "grep", "wc", "printf", "kill",
        "touch", "env", "pwd", "mount", "head", "dd", "rm", "ip", "ping", "nc", "timeout", "httpd", "mkdir", "tty",
        "stty",
    ],
);
#[cfg(not(target_os = "linux"))]
pub const MULTICALL: (&str, &[&str]) = (
    "/rescue/rescue",
    &[
        "sh", "sleep", "hostname", "ps", "cat", "echo", "id", "ls", "kill", "pwd", "mount", "head", "dd", "rm",
        "sysctl", "stty",
    ],
);

/// A command run as root in a jail that shows it is confined, and its output:
/// the reduced capability bounding set (Linux), the kernel's own flag (FreeBSD).
#[cfg(target_os = "linux")]
pub const CONFINED: (&str, &str) = ("grep CapBnd /proc/self/status", "CapBnd:\t00000000a00405fb");
#[cfg(not(target_os = "linux"))]
pub const CONFINED: (&str, &str) = ("sysctl -n security.jail.jailed", "1");

/// Whether the runtime refuses `vmemoryuse` (Linux: cgroups have no such
/// limit; FreeBSD's rctl enforces it).
pub const REFUSES_VMEMORYUSE: bool = cfg!(target_os = "linux");

/// The kernel name of a jail.
fn name(uuid: &str) -> String {
    format!("ioc-{uuid}")
}

/// Mount points under the jail's root, as the host sees them.
pub fn mounts_under(uuid: &str) -> Vec<String> {
    let root = format!("/iocage/jails/{uuid}/root/");
    mount_points().into_iter().filter(|m| m.starts_with(&root)).collect()
}

fn mount_points() -> Vec<String> {
    let table = if cfg!(target_os = "linux") {
        std::fs::read_to_string("/proc/mounts").unwrap()
    } else {
        cmd("mount", &["-p"])
    };
    table.lines().filter_map(|l| l.split_whitespace().nth(1)).map(str::to_string).collect()
}

/// Host pids of the processes whose command line is exactly `argv`.
pub fn processes(argv: &[&str]) -> Vec<String> {
    if cfg!(target_os = "linux") {
        let want = argv.join("\0") + "\0";
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().chars().all(|c| c.is_ascii_digit()))
            .filter(|e| std::fs::read(e.path().join("cmdline")).is_ok_and(|c| c == want.as_bytes()))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    } else {
        let want = argv.join(" ");
        cmd("ps", &["-ax", "-o", "pid=", "-o", "args="])
            .lines()
            .filter_map(|l| l.trim().split_once(' '))
            .filter(|(_, args)| args.trim() == want)
            .map(|(pid, _)| pid.to_string())
            .collect()
    }
}

/// What the kernel or the runtime still holds of a jail besides its
/// processes and mounts: empty when nothing is left.
pub fn leftovers(uuid: &str) -> Vec<String> {
    let name = name(uuid);
    let mut left = Vec::new();
    if cfg!(target_os = "linux") {
        for path in [format!("/sys/fs/cgroup/iocaged/{name}"), format!("/run/iocaged/jails/{name}")] {
            if Path::new(&path).exists() {
                left.push(path);
            }
        }
    } else {
        if Command::new("jls").args(["-j", &name, "jid"]).output().is_ok_and(|o| o.status.success()) {
            left.push(format!("jail {name}"));
        }
        left.extend(rctl_rules(uuid));
    }
    left
}

/// The rctl rules whose subject is the jail.
fn rctl_rules(uuid: &str) -> Vec<String> {
    let subject = format!("jail:{}:", name(uuid));
    cmd("rctl", &[]).lines().filter(|l| l.starts_with(&subject)).map(str::to_string).collect()
}

/// Asserts that `jid` (listjails' jid) is the jail's own in the kernel: on
/// Linux the host pid of an init in a PID namespace of its own, on FreeBSD
/// the jid of the jail named `ioc-<uuid>`.
pub fn assert_runs_as(jid: &str, uuid: &str) {
    if cfg!(target_os = "linux") {
        let ns = std::fs::read_link(format!("/proc/{jid}/ns/pid")).expect("the jid is the init's host pid");
        assert_ne!(ns, std::fs::read_link("/proc/self/ns/pid").unwrap(), "the jail has its own PID namespace");
    } else {
        assert_eq!(cmd("jls", &["-j", jid, "name"]).trim(), name(uuid), "jid {jid} is the jail's");
    }
}

/// The memory limit the kernel enforces on the jail, in bytes (`None`: none).
pub fn memory_limit(uuid: &str) -> Option<u64> {
    if cfg!(target_os = "linux") {
        let v = std::fs::read_to_string(format!("/sys/fs/cgroup/iocaged/{}/memory.max", name(uuid))).unwrap();
        (v.trim() != "max").then(|| v.trim().parse().unwrap())
    } else {
        rctl_rules(uuid).iter().find_map(|r| r.split_once(":memoryuse:deny=").map(|(_, n)| n.parse().unwrap()))
    }
}

/// A command that runs `true` in the running jail with the system's own
/// tool, to compare execjail with.
pub fn enter_true(jid: &str) -> (&'static str, Vec<String>) {
    if cfg!(target_os = "linux") {
        ("nsenter", ["-t", jid, "-m", "-u", "-i", "-n", "-p", "/bin/true"].map(str::to_string).to_vec())
    } else {
        ("jexec", [jid, "/bin/sh", "-c", "true"].map(str::to_string).to_vec())
    }
}

/// The system's own tools making a jail of `root` that runs `/bin/true`
/// and ends: the floor a start and stop is measured against (Linux: new
/// PID, mount, UTS and IPC namespaces and a chroot; FreeBSD: jail(8)).
pub fn jail_true(root: &str) -> (&'static str, Vec<String>) {
    if cfg!(target_os = "linux") {
        ("unshare", ["-fpmiu", "chroot", root, "/bin/true"].map(str::to_string).to_vec())
    } else {
        let path = format!("path={root}");
        ("jail", ["-c", &path, "command=/bin/sh", "-c", "true"].map(str::to_string).to_vec())
    }
}

/// Resident memory of a process in KiB: now, and the peak where the system
/// keeps it (Linux's VmHWM).
pub fn rss_kib(pid: u32) -> (u64, Option<u64>) {
    if cfg!(target_os = "linux") {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let field = |f: &str| {
            status.lines().find_map(|l| l.strip_prefix(f).map(|v| v.trim().trim_end_matches(" kB").parse().unwrap()))
        };
        (field("VmRSS:").unwrap(), field("VmHWM:"))
    } else {
        (cmd("ps", &["-o", "rss=", "-p", &pid.to_string()]).trim().parse().unwrap(), None)
    }
}

/// The pipes of which process `pid` holds both a read and a write end (by
/// their `pipe:[inode]` names). Linux only (`/proc/PID/fd` and `fdinfo`'s
/// access mode); `None` elsewhere (FreeBSD's pipes have no read and write
/// ends to tell apart).
pub fn pipes_held_at_both_ends(pid: u32) -> Option<Vec<String>> {
    if !cfg!(target_os = "linux") {
        return None;
    }
    let mut ends: std::collections::BTreeMap<String, (bool, bool)> = Default::default();
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.flatten() {
        let Ok(target) = std::fs::read_link(fd.path()) else { continue };
        let target = target.to_string_lossy().into_owned();
        if !target.starts_with("pipe:") {
            continue;
        }
        let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{}", fd.file_name().to_string_lossy()));
        let Some(flags) = info.ok().and_then(|i| {
            i.lines().find_map(|l| l.strip_prefix("flags:").and_then(|f| u32::from_str_radix(f.trim(), 8).ok()))
        }) else {
            continue;
        };
        let e = ends.entry(target).or_default();
        match flags & 3 {
            0 => e.0 = true,
            1 => e.1 = true,
            _ => *e = (true, true),
        }
    }
    Some(ends.into_iter().filter(|(_, (r, w))| *r && *w).map(|(p, _)| p).collect())
}

/// [`pipes_held_at_both_ends`], keeping only the pipes still held at both
/// ends over half a second (five looks): a process holds both ends of a
/// pipe for an instant whenever it makes one to hand an end to a child;
/// what could hang it is holding them for good.
pub fn pipes_held_at_both_ends_steadily(pid: u32) -> Option<Vec<String>> {
    let mut held = pipes_held_at_both_ends(pid)?;
    for _ in 0..5 {
        if held.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        let now = pipes_held_at_both_ends(pid).unwrap_or_default();
        held.retain(|p| now.contains(p));
    }
    Some(held)
}

/// Linux: the pids of the processes whose first argument is `arg` (the
/// daemon's helpers: `zfs-send`, `zfs-relay`, ...). `None` elsewhere.
pub fn helpers(arg: &str) -> Option<Vec<u32>> {
    if !cfg!(target_os = "linux") {
        return None;
    }
    let pids = std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.split(|b| *b == 0).nth(1).is_some_and(|a| a == arg.as_bytes()))
        })
        .collect();
    Some(pids)
}

/// A tracefs instance of a test's own (Linux): its own buffer and events,
/// so that it neither sees nor disturbs another tracer; removed when
/// dropped, however the test ends. tracefs is mounted if the guest has not.
pub struct TraceInstance(PathBuf);

impl TraceInstance {
    pub fn new(name: &str) -> TraceInstance {
        let tracefs = Path::new("/sys/kernel/tracing");
        if !tracefs.join("events").exists() {
            let mounted = Command::new("mount").args(["-t", "tracefs", "tracefs", "/sys/kernel/tracing"]).status();
            assert!(mounted.is_ok_and(|s| s.success()), "mounting tracefs");
        }
        let dir = tracefs.join("instances").join(name);
        // One a killed run left.
        let _ = std::fs::remove_dir(&dir);
        std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("the trace instance {}: {e}", dir.display()));
        TraceInstance(dir)
    }

    /// Writes one of the instance's files: `tracing_on`,
    /// `events/GROUP/EVENT/enable`, `buffer_size_kb`.
    pub fn set(&self, file: &str, value: &str) {
        std::fs::write(self.0.join(file), value).unwrap_or_else(|e| panic!("tracefs {file}: {e}"));
    }

    /// What was traced, one event a line after `#` comments.
    pub fn trace(&self) -> String {
        std::fs::read_to_string(self.0.join("trace")).unwrap_or_else(|e| panic!("reading the trace: {e}"))
    }
}

impl Drop for TraceInstance {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// Linux: the processes moved into a group below `/sys/fs/cgroup/iocaged`
/// while `work` ran, one `dst_path=... pid=... comm=...` each (the
/// kernel's `cgroup:cgroup_attach_task` tracepoint; a process made in its
/// group, by clone3's `CLONE_INTO_CGROUP`, is not moved and does not
/// show). `None` elsewhere (no cgroups).
pub fn moved_into_jail_groups(work: impl FnOnce()) -> Option<Vec<String>> {
    if !cfg!(target_os = "linux") {
        work();
        return None;
    }
    let trace = TraceInstance::new("iocaged-test-moves");
    trace.set("events/cgroup/cgroup_attach_task/enable", "1");
    work();
    trace.set("events/cgroup/cgroup_attach_task/enable", "0");
    Some(
        trace
            .trace()
            .lines()
            .filter_map(|l| l.split_once("dst_path=").map(|(_, rest)| rest.to_string()))
            .filter(|rest| rest.starts_with("/iocaged/"))
            .collect(),
    )
}

/// Ends a running jail behind the daemon's back, as another tool would:
/// Linux, its init killed; FreeBSD, `jail -r`.
pub fn kill_jail(uuid: &str) {
    let name = name(uuid);
    if cfg!(target_os = "linux") {
        let record = std::fs::read_to_string(format!("/run/iocaged/jails/{name}/pid")).unwrap();
        let pid = record.split_whitespace().next().unwrap();
        assert!(Command::new("kill").args(["-9", pid]).status().unwrap().success());
    } else {
        assert!(Command::new("jail").args(["-r", &name]).status().unwrap().success());
        // What the daemon mounted for it on the host (devfs, fdescfs) stays
        // until its own stop: unmounted as another tool would have to.
        let root = format!("/iocage/jails/{uuid}/root/");
        for m in mount_points().iter().rev().filter(|m| m.starts_with(&root)) {
            let _ = Command::new("umount").args(["-f", m]).status();
        }
    }
}

/// Removes the jails an earlier test left running (and their mounts), so
/// that their datasets can go.
pub fn remove_running_jails() {
    if cfg!(target_os = "linux") {
        remove_running_linux_jails();
        return;
    }
    for name in cmd("jls", &["name"]).lines().filter(|n| n.starts_with("ioc-")) {
        let _ = Command::new("jail").args(["-r", name]).status();
    }
    for m in mount_points().iter().rev().filter(|m| m.starts_with("/iocage/jails/")) {
        let _ = Command::new("umount").args(["-f", m]).status();
    }
}

/// Linux runtime: kills the jails' inits (the daemon's state directory)
/// and empties their cgroups.
fn remove_running_linux_jails() {
    let Ok(entries) = std::fs::read_dir("/run/iocaged/jails") else { return };
    for e in entries.flatten() {
        if let Ok(record) = std::fs::read_to_string(e.path().join("pid")) {
            if let Some(pid) = record.split_whitespace().next() {
                let _ = Command::new("kill").args(["-9", pid]).status();
            }
        }
        let _ = std::fs::remove_dir_all(e.path());
        let cg = format!("/sys/fs/cgroup/iocaged/{}", e.file_name().to_string_lossy());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while Path::new(&cg).exists() && std::time::Instant::now() < deadline {
            let _ = std::fs::write(format!("{cg}/cgroup.kill"), "1");
            let _ = std::fs::remove_dir(&cg);
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

/// Gives the host a non-loopback address of its own, `10.9.9.1/24`, on an
/// interface made for the tests (Linux: a dummy link; FreeBSD: a clone of
/// lo); nothing is changed when it is already there.
pub fn add_outside_addr() {
    if cfg!(target_os = "linux") {
        if !Path::new("/sys/class/net/iocd0").exists() {
            cmd("ip", &["link", "add", "iocd0", "type", "dummy"]);
            cmd("ip", &["addr", "add", "10.9.9.1/24", "dev", "iocd0"]);
        }
        cmd("ip", &["link", "set", "iocd0", "up"]);
    } else if !cmd("ifconfig", &["-a"]).contains("inet 10.9.9.1 ") {
        if !Command::new("ifconfig").arg("lo9").output().is_ok_and(|o| o.status.success()) {
            cmd("ifconfig", &["lo9", "create"]);
        }
        cmd("ifconfig", &["lo9", "inet", "10.9.9.1/24", "up"]);
    }
}

/// Creates `user` (or resets its password when it exists) with `password`,
/// in `group` when given, with no login shell; the group is made when the
/// system lacks it (FreeBSD has wheel and operator, Debian only the latter).
pub fn add_user(user: &str, group: Option<&str>, password: &str) {
    let has = |file: &str, entry: &str| {
        std::fs::read_to_string(file).unwrap().lines().any(|l| l.split(':').next() == Some(entry))
    };
    if let Some(g) = group {
        if !has("/etc/group", g) {
            if cfg!(target_os = "linux") {
                cmd("groupadd", &[g])
            } else {
                cmd("pw", &["groupadd", g])
            };
        }
    }
    if !has("/etc/passwd", user) {
        let mut args = if cfg!(target_os = "linux") {
            vec!["useradd", "-M", "-s", "/usr/sbin/nologin"]
        } else {
            vec!["pw", "useradd", "-n", user, "-s", "/usr/sbin/nologin"]
        };
        if let Some(g) = group {
            args.extend(["-G", g]);
        }
        if cfg!(target_os = "linux") {
            args.push(user);
        }
        cmd(args[0], &args[1..]);
    }
    // The password on standard input: never on a command line.
    let (prog, args, input) = if cfg!(target_os = "linux") {
        ("chpasswd", vec![], format!("{user}:{password}\n"))
    } else {
        ("pw", vec!["usermod", "-n", user, "-h", "0"], format!("{password}\n"))
    };
    let mut child = Command::new(prog).args(args).stdin(std::process::Stdio::piped()).spawn().unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), input.as_bytes()).unwrap();
    assert!(child.wait().unwrap().success(), "setting {user}'s password failed");
}
