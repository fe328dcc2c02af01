//! The escape suite: as root inside a jail of the small release (and as a
//! hostile API client with a write key), every way out that a review of
//! the Linux runtime found, and the usual ones. Each attempt must fail and
//! leave the host as it was. Runs in the guest (tests/vm/run.sh), with
//! real ZFS and the real runtime.
//!
//! Inside a jail the attempts use busybox's applets and `probe`, a small
//! static C program (compiled here with the host's C compiler) that makes
//! one system call per argument and prints `<name> ok` or `<name> denied
//! <error>`: `caps` prints the capability sets, no-new-privileges and the
//! seccomp mode as the kernel reports them to the process itself.

mod rig;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use rig::call;
use rig::client;
use rig::conformance::lock;
use rig::daemon::Daemon;
use rig::fixture::Fixture;
use rig::host::{self, processes};
use rig::zfs;

const RELEASE: &str = "13.2-RELEASE";

/// The jail's capability sets with iocage's defaults (CHOWN, DAC_OVERRIDE,
/// FOWNER, FSETID, KILL, SETGID, SETUID, SETPCAP, NET_BIND_SERVICE,
/// SYS_CHROOT, AUDIT_WRITE, SETFCAP).
const JAIL_CAPS: &str = "00000000a00405fb";

/// The test's turn, a fresh pool with the small release, and a daemon.
fn small_pool(config: &str) -> (std::sync::MutexGuard<'static, ()>, Fixture, Daemon) {
    let turn = lock();
    let f = Fixture::fresh();
    f.static_release(RELEASE);
    (turn, f, Daemon::with_config(config))
}

/// A jail of the small release with `props`; returns its UUID.
fn make_jail(d: &Daemon, props: &str) -> String {
    let r = call(d, json!({"action": "createjail", "props": format!("release={RELEASE} {props}"), "switches": "-c"}));
    let s = r["success"]["Successfully created"].as_str().unwrap_or_else(|| panic!("not created: {r}"));
    s.split_whitespace().next().unwrap().to_string()
}

/// The jail's root as the host sees it.
fn root_of(uuid: &str) -> PathBuf {
    PathBuf::from(format!("/iocage/jails/{uuid}/root"))
}

/// A started jail with `probe` in its `/bin`; returns its UUID.
fn started_jail(d: &Daemon, tag: &str, props: &str) -> String {
    let uuid = make_jail(d, &format!("tag={tag} {props}"));
    install_probe(&root_of(&uuid));
    let r = call(d, json!({"action": "startjail", "jail": tag}));
    assert!(r[tag]["+ Starting services OK"].is_string(), "{r}");
    uuid
}

/// execjail as `user`, lossless: (stdout, stderr, exit code, error).
fn sh(d: &Daemon, jail: &str, user: &str, command: &str) -> (String, String, Value, Option<String>) {
    let r =
        call(d, json!({"action": "execjail", "jail": jail, "user": user, "command": command, "output": "lossless"}));
    let s = |k: &str| r[k].as_str().unwrap_or_default().to_string();
    (s("stdout"), s("stderr"), r["exit_code"].clone(), r["error"].as_str().map(str::to_string))
}

/// Root's output of `probe ARGS` in the jail.
fn probe(d: &Daemon, jail: &str, args: &str) -> String {
    let (out, err, _, _) = sh(d, jail, "root", &format!("/bin/probe {args}"));
    assert!(!out.is_empty(), "probe printed nothing: {err}");
    out
}

/// Asserts that each attempt the probe made was denied with EPERM.
fn assert_denied(out: &str, names: &[&str]) {
    for n in names {
        let line = out.lines().find(|l| l.starts_with(&format!("{n} "))).unwrap_or_else(|| panic!("{n}?\n{out}"));
        assert_eq!(line, format!("{n} denied Operation not permitted"), "the jail's root could {n}:\n{out}");
    }
}

const PROBE_C: &str = r#"
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/shm.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/capability.h>

static void report(const char *what, long rc) {
    if (rc < 0) printf("%s denied %s\n", what, strerror(errno));
    else printf("%s ok\n", what);
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IONBF, 0);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        long rc = -1;
        errno = 0;
        if (!strcmp(a, "caps")) {
            struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
            struct __user_cap_data_struct c[2];
            memset(c, 0, sizeof c);
            syscall(SYS_capget, &h, c);
            unsigned long long bnd = 0;
            int amb = 0;
            for (int n = 0; n < 64; n++) {
                if (prctl(PR_CAPBSET_READ, n, 0, 0, 0) == 1) bnd |= 1ULL << n;
                if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, n, 0, 0) == 1) amb++;
            }
            printf("eff %08x%08x\nprm %08x%08x\ninh %08x%08x\nbnd %016llx\namb %d\nnnp %d\nseccomp %d\n",
                   c[1].effective, c[0].effective, c[1].permitted, c[0].permitted, c[1].inheritable,
                   c[0].inheritable, bnd, amb, prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0),
                   prctl(PR_GET_SECCOMP, 0, 0, 0, 0));
            continue;
        }
        if (!strcmp(a, "userns")) rc = unshare(CLONE_NEWUSER);
        else if (!strcmp(a, "mntns")) rc = unshare(CLONE_NEWNS);
        else if (!strcmp(a, "clone_userns")) {
            rc = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
            if (rc == 0) _exit(0);
            if (rc > 0) waitpid(rc, NULL, 0);
        }
        else if (!strcmp(a, "setns")) { int fd = open("/proc/1/ns/mnt", O_RDONLY); rc = syscall(SYS_setns, fd, 0); }
        else if (!strcmp(a, "keyctl")) rc = syscall(SYS_keyctl, 0 /* GET_KEYRING_ID */, -3 /* session */, 0);
        else if (!strcmp(a, "add_key")) rc = syscall(SYS_add_key, "user", "escape", "x", 1, -3);
        else if (!strcmp(a, "bpf")) rc = syscall(SYS_bpf, 0, NULL, 0);
        else if (!strcmp(a, "perf")) rc = syscall(SYS_perf_event_open, NULL, 0, -1, -1, 0);
        else if (!strcmp(a, "module")) rc = syscall(SYS_finit_module, 0, "", 0);
        else if (!strcmp(a, "handle")) rc = syscall(SYS_open_by_handle_at, AT_FDCWD, NULL, 0);
        else if (!strcmp(a, "mount")) rc = mount("none", "/mnt", "tmpfs", 0, NULL);
        else if (!strcmp(a, "mknod")) rc = mknod("/tmp/probe-disk", S_IFBLK | 0600, makedev(8, 0));
        else if (!strcmp(a, "raw")) rc = socket(AF_INET, SOCK_RAW, IPPROTO_ICMP);
        else if (!strcmp(a, "alg")) rc = socket(38 /* AF_ALG */, SOCK_SEQPACKET, 0);
        else if (!strcmp(a, "packet")) rc = socket(17 /* AF_PACKET */, SOCK_DGRAM, 0);
        else if (!strcmp(a, "shm")) rc = shmget(IPC_PRIVATE, 4096, IPC_CREAT | 0600);
        else if (!strcmp(a, "x32")) rc = syscall(0x40000000 | 39 /* getpid */);
        else if (!strcmp(a, "swapoff")) rc = syscall(SYS_swapoff, "/nonexistent");
        else if (!strncmp(a, "ptrace=", 7)) rc = ptrace(PTRACE_ATTACH, atoi(a + 7), 0, 0);
        else { printf("%s unknown\n", a); continue; }
        report(a, rc);
    }
    return 0;
}
"#;

/// The probe, compiled once per test process.
fn probe_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("escape-probe-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("probe.c"), PROBE_C).unwrap();
        let out = Command::new("cc")
            .args(["-static", "-O1", "-o"])
            .arg(dir.join("probe"))
            .arg(dir.join("probe.c"))
            .output()
            .expect("a C compiler (cc) to build the probe");
        assert!(out.status.success(), "cc: {}", String::from_utf8_lossy(&out.stderr));
        dir.join("probe")
    })
}

fn install_probe(root: &Path) {
    let to = root.join("bin/probe");
    std::fs::copy(probe_binary(), &to).unwrap();
    std::fs::set_permissions(&to, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    // Busybox applets the attempts use besides those of the release.
    for applet in ["unshare", "nsenter", "mknod", "insmod", "mkfifo", "ln", "yes", "setsid", "mkdir", "sysctl", "cut"] {
        let _ = std::os::unix::fs::symlink("multicall", root.join("bin").join(applet));
    }
}

/// The capability report of the probe as `key value` pairs.
fn caps(out: &str) -> std::collections::BTreeMap<String, String> {
    out.lines().filter_map(|l| l.split_once(' ')).map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn assert_confined_root(d: &Daemon, jail: &str) {
    let c = caps(&probe(d, jail, "caps"));
    assert_eq!(c["eff"], JAIL_CAPS, "effective capabilities: {c:?}");
    assert_eq!(c["prm"], JAIL_CAPS, "permitted capabilities: {c:?}");
    assert_eq!(c["bnd"], JAIL_CAPS, "bounding set: {c:?}");
    assert_eq!((c["inh"].as_str(), c["amb"].as_str()), ("0000000000000000", "0"), "{c:?}");
    assert_eq!((c["nnp"].as_str(), c["seccomp"].as_str()), ("1", "2"), "no new privileges, a filter: {c:?}");
}

// ---------------------------------------------------------------------

/// The review's critical finding: with mount_procfs=0 the jail's root
/// makes its own `/proc/sys/kernel/cap_last_cap` saying 0; the helper must
/// not believe it (the next root command kept every capability).
#[test]
fn a_faked_cap_last_cap_changes_nothing() {
    let (_g, _f, d) = small_pool("");
    started_jail(&d, "caps", "mount_procfs=0");
    let (_, err, code, _) =
        sh(&d, "caps", "root", "mkdir -p /proc/sys/kernel && echo 0 > /proc/sys/kernel/cap_last_cap");
    assert_eq!(code, json!(0), "the jail's root can write its own fake: {err}");
    assert_confined_root(&d, "caps");
    assert_denied(&probe(&d, "caps", "mount mknod"), &["mount", "mknod"]);
    let (_, _, code, _) = sh(&d, "caps", "root", "mount -t tmpfs none /mnt");
    assert_ne!(code, json!(0), "mount after the fake");
    // And a non-root user has nothing at all.
    let c = caps(&sh(&d, "caps", "alice", "/bin/probe caps").0);
    assert_eq!((c["eff"].as_str(), c["prm"].as_str()), ("0000000000000000", "0000000000000000"), "{c:?}");
    done(d);
}

/// With mount_procfs=1: `/proc/sys` (core_pattern: a program the host's
/// kernel runs as root), SysRq and the rest read-only; kcore, keys,
/// timer_list masked; no /sys to write.
#[test]
fn procfs_is_read_only_and_masked_where_runc_does() {
    let (_g, _f, d) = small_pool("");
    started_jail(&d, "proc", "mount_procfs=1");
    let before = std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap();
    let (_, err, code, _) = sh(&d, "proc", "root", "echo '|/tmp/owned' > /proc/sys/kernel/core_pattern");
    assert_ne!(code, json!(0), "core_pattern is writable: {err}");
    assert!(err.contains("Read-only file system"), "{err}");
    assert_eq!(std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap(), before, "the host's is unchanged");
    let (_, err, code, _) = sh(&d, "proc", "root", "echo h > /proc/sysrq-trigger");
    assert_ne!(code, json!(0), "sysrq-trigger is writable: {err}");
    for (path, what) in [("/proc/sys/vm/drop_caches", "3"), ("/proc/sys/kernel/hostname", "x")] {
        let (_, _, code, _) = sh(&d, "proc", "root", &format!("echo {what} > {path}"));
        assert_ne!(code, json!(0), "{path} is writable");
    }
    for masked in ["kcore", "keys", "timer_list", "sched_debug"] {
        let (out, _, _, _) = sh(&d, "proc", "root", &format!("test -e /proc/{masked} && wc -c < /proc/{masked}"));
        assert!(out.trim().is_empty() || out.trim() == "0", "/proc/{masked} is not masked: {out}");
    }
    let (out, _, _, _) =
        sh(&d, "proc", "root", "ls -A /proc/acpi /proc/scsi 2>/dev/null | grep -v -e : -e '^$' | wc -l");
    assert_eq!(out.trim(), "0", "masked directories are empty");
    let (_, _, code, _) = sh(&d, "proc", "root", "mount -t sysfs none /mnt");
    assert_ne!(code, json!(0), "sysfs mounted");
    let (out, _, _, _) = sh(&d, "proc", "root", "ls /sys 2>/dev/null | wc -l");
    assert_eq!(out.trim(), "0", "the jail has no /sys of the host's");
    done(d);
}

/// Mounts, device nodes, namespaces, kernel modules, the keyring, BPF,
/// perf, file handles, x32 system calls: denied by capability and by the
/// seccomp filter (EPERM).
#[test]
fn mounts_devices_namespaces_and_modules_are_refused() {
    let (_g, _f, d) = small_pool("");
    started_jail(&d, "calls", "mount_procfs=1");
    let out = probe(
        &d,
        "calls",
        "userns mntns clone_userns setns keyctl add_key bpf perf module handle mount mknod swapoff x32",
    );
    assert_denied(
        &out,
        &[
            "userns",
            "mntns",
            "clone_userns",
            "setns",
            "keyctl",
            "add_key",
            "bpf",
            "perf",
            "module",
            "handle",
            "mount",
            "mknod",
            "swapoff",
            "x32",
        ],
    );
    // The same with the usual tools, and nothing of it on the host.
    for cmd in [
        "unshare -U true",
        "unshare -m true",
        "unshare -n true",
        "nsenter -t 1 -m true",
        "mknod /tmp/sda b 8 0",
        "mount -t tmpfs none /mnt",
        "touch /tmp/m.ko && insmod /tmp/m.ko",
    ] {
        let (_, err, code, _) = sh(&d, "calls", "root", cmd);
        assert_ne!(code, json!(0), "{cmd} worked in the jail: {err}");
    }
    assert_confined_root(&d, "calls");
    // Non-root users are denied as well (the filter is for everyone).
    assert_denied(&sh(&d, "calls", "alice", "/bin/probe userns keyctl bpf").0, &["userns", "keyctl", "bpf"]);
    done(d);
}

/// Raw sockets only with allow_raw_sockets=1; socket families other than
/// local, IPv4, IPv6 and netlink only with allow_socket_af=1; SysV IPC
/// only with allow_sysvipc=1.
#[test]
fn raw_sockets_socket_families_and_sysvipc_follow_the_properties() {
    let (_g, _f, d) = small_pool("");
    started_jail(&d, "closed", "");
    assert_denied(&probe(&d, "closed", "raw packet alg shm"), &["raw", "packet", "alg", "shm"]);
    started_jail(&d, "open", "allow_raw_sockets=1 allow_socket_af=1 allow_sysvipc=1");
    let out = probe(&d, "open", "raw packet alg shm caps");
    for granted in ["raw ok", "packet ok", "shm ok"] {
        assert!(out.lines().any(|l| l == granted), "{granted}?\n{out}");
    }
    // AF_ALG may be missing from the kernel; it is not the filter's EPERM.
    assert!(out.lines().any(|l| l.starts_with("alg ") && !l.contains("not permitted")), "{out}");
    assert_eq!(caps(&out)["eff"], "00000000a00425fb", "CAP_NET_RAW added: {out}");
    // What Linux cannot grant is refused at start, by name.
    for (tag, prop, word) in [
        ("m", "allow_mount=1", "allow_mount=1"),
        ("z", "allow_mount_zfs=1", "allow_mount_zfs=1"),
        ("c", "children_max=2", "children_max=2"),
        ("r", "devfs_ruleset=0", "devfs_ruleset=0"),
    ] {
        make_jail(&d, &format!("tag={tag} {prop}"));
        let r = call(&d, json!({"action": "startjail", "jail": tag}));
        let e = r["error"].as_str().unwrap_or_else(|| panic!("{prop} was not refused: {r}"));
        assert!(e.contains("cannot honour on Linux") && e.contains(word), "{e}");
    }
    done(d);
}

/// No host process is visible or reachable from the jail; tracing is
/// denied even of the jail's own processes.
#[test]
fn host_processes_are_out_of_reach() {
    let (_g, _f, d) = small_pool("");
    started_jail(&d, "pids", "mount_procfs=1");
    let host_pid = d.pid().unwrap();
    let (out, _, _, _) = sh(&d, "pids", "root", "ls /proc | grep -c '^[0-9]'");
    let visible: u32 = out.trim().parse().unwrap();
    assert!(visible <= 6, "only the jail's processes are visible: {out}");
    let (_, _, code, _) = sh(&d, "pids", "root", &format!("kill -0 {host_pid}"));
    assert_ne!(code, json!(0), "the daemon ({host_pid}) is reachable from the jail");
    let out = probe(&d, "pids", &format!("ptrace=1 ptrace={host_pid}"));
    assert!(out.lines().all(|l| l.contains("denied")), "{out}");
    assert_denied(&out, &["ptrace=1"]);
    // Its own sleep, as root: still no tracing.
    let (pid, _, _, _) = sh(&d, "pids", "root", "pidof sleep || ps -o pid,comm | grep sleep | head -1 | cut -c1-6");
    let pid = pid.split_whitespace().next().unwrap_or("1").to_string();
    assert_denied(&probe(&d, "pids", &format!("ptrace={pid}")), &[&format!("ptrace={pid}")]);
    done(d);
}

/// The jail's init holds nothing of the host's open (a descriptor of the
/// host's tree would let the jail's root walk up from `/proc/1/fd/N/..`),
/// and what it holds is not the jail's root's to open: the init is not
/// dumpable, so `/proc/1/fd/N` does not open without CAP_SYS_PTRACE.
#[test]
fn the_jail_s_init_holds_nothing_of_the_host() {
    let (_g, _f, d) = small_pool("");
    let uuid = started_jail(&d, "init", "mount_procfs=1");
    if cfg!(target_os = "linux") {
        let init = call(&d, json!({"action": "listjails"}))[&uuid]["jid"].as_str().unwrap().to_string();
        let mut fds: Vec<String> = std::fs::read_dir(format!("/proc/{init}/fd"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        fds.sort();
        assert_eq!(fds, ["0", "1", "2"], "the init holds more than its stdin, stdout and stderr");
        use std::os::unix::fs::MetadataExt;
        let null = std::fs::metadata("/dev/null").unwrap().rdev();
        for fd in &fds {
            let held = std::fs::metadata(format!("/proc/{init}/fd/{fd}")).unwrap();
            assert_eq!(held.rdev(), null, "the init's fd {fd} is not /dev/null");
        }
        // The names show (root owns the directory); what they lead to does
        // not open.
        let (_, err, code, _) = sh(&d, "init", "root", "cat /proc/1/fd/0");
        assert_ne!(code, json!(0), "the jail's root opened its init's descriptor");
        assert!(err.contains("ermission denied"), "{err}");
    }
    done(d);
}

/// One jail cannot reach another's files, nor its own cgroup limits.
#[test]
fn other_jails_and_its_own_limits_are_out_of_reach() {
    let (_g, f, d) = small_pool("");
    let a = started_jail(&d, "a", "mount_procfs=1 rlimits=on memoryuse=64M:deny");
    let b = started_jail(&d, "b", "");
    std::fs::write(root_of(&b).join("tmp/secret"), "b's secret\n").unwrap();
    for path in [
        format!("/iocage/jails/{b}/root/tmp/secret"),
        format!("/../../../iocage/jails/{b}/root/tmp/secret"),
        "/proc/1/root/../../tmp/secret".to_string(),
    ] {
        let (out, _, _, _) = sh(&d, "a", "root", &format!("cat {path}"));
        assert!(!out.contains("secret"), "jail a read b's file through {path}");
    }
    let (out, _, _, _) = sh(&d, "a", "root", "ls /");
    assert!(!out.contains("iocage"), "the host's tree is visible: {out}");
    // The pool's datasets are not the jail's to mount.
    let (out, _, _, _) = sh(
        &d,
        "a",
        "root",
        &format!("mount -t zfs {pool}/iocage/jails/{b}/root /mnt && cat /mnt/tmp/secret", pool = f.pool),
    );
    assert!(!out.contains("secret"), "jail a mounted b's dataset");
    assert_eq!(host::memory_limit(&a), Some(64 << 20));
    let (_, err, code, _) = sh(
        &d,
        "a",
        "root",
        "mount -t cgroup2 none /mnt && p=$(cut -d: -f3 /proc/self/cgroup) && echo max > /mnt$p/../memory.max",
    );
    assert_ne!(code, json!(0), "the jail reached its cgroup: {err}");
    assert_eq!(host::memory_limit(&a), Some(64 << 20), "the jail changed its own limit");
    done(d);
}

/// The jail's `/etc/passwd` as a FIFO, a link to /dev/zero or a huge file:
/// the root helper neither waits nor reads without bound; stopjail ends
/// within the stop timeout; the jail's turn is free again.
#[test]
fn hostile_passwd_files_neither_stall_nor_flood_the_helper() {
    let (_g, _f, d) = small_pool("");
    started_jail(&d, "fifo", "stop_timeout=10");
    for (setup, why) in [
        ("rm /etc/passwd && mkfifo /etc/passwd", "not a regular file"),
        ("rm /etc/passwd && ln -s /dev/zero /etc/passwd", "/etc/passwd"),
        ("dd if=/dev/zero of=/etc/passwd bs=1M count=6", "larger than"),
    ] {
        let (_, err, code, _) = sh(&d, "fifo", "root", &format!("cp /etc/passwd /tmp/passwd.ok 2>/dev/null; {setup}"));
        assert_eq!(code, json!(0), "{setup}: {err}");
        let started = Instant::now();
        let r = call(&d, json!({"action": "execjail", "jail": "fifo", "user": "root", "command": "id"}));
        let e = r["error"].as_str().unwrap_or_else(|| panic!("{setup}: {r}"));
        assert!(e.contains(why), "{setup}: {e}");
        assert!(started.elapsed() < Duration::from_secs(20), "{setup}: the helper waited {:?}", started.elapsed());
        // Put it back through the host (the jail can no longer exec).
        let root = root_of(&jail_uuid(&d, "fifo"));
        let _ = std::fs::remove_file(root.join("etc/passwd"));
        std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    }
    sh(&d, "fifo", "root", "rm /etc/passwd && mkfifo /etc/passwd");
    let started = Instant::now();
    let r = call(&d, json!({"action": "stopjail", "jail": "fifo"}));
    assert!(r["fifo"]["+ Removing jail process OK"].is_string(), "{r}");
    assert!(started.elapsed() < Duration::from_secs(40), "stopjail took {:?}", started.elapsed());
    // The turn is free: start and stop again.
    let root = root_of(&jail_uuid(&d, "fifo"));
    std::fs::remove_file(root.join("etc/passwd")).unwrap();
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    assert!(call(&d, json!({"action": "startjail", "jail": "fifo"}))["fifo"].is_object());
    assert!(call(&d, json!({"action": "stopjail", "jail": "fifo"}))["fifo"]["+ Removing jail process OK"].is_string());
    done(d);
}

/// The end of a test: the jails it left running go (their mounts hold the
/// pool), then the daemon, which must exit cleanly.
fn done(d: Daemon) {
    host::remove_running_jails();
    assert!(d.stop(), "iocaged did not exit cleanly");
}

/// Asserts that no process runs `argv` (within a few seconds: a killed
/// process may still be on its way out).
fn assert_gone(argv: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !processes(argv).is_empty() {
        assert!(Instant::now() < deadline, "{argv:?} outlived its command: {:?}", processes(argv));
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn jail_uuid(d: &Daemon, tag: &str) -> String {
    let l = call(d, json!({"action": "listjails"}));
    l.as_object().unwrap().iter().find(|(_, v)| v["tag"] == tag).map(|(k, _)| k.clone()).unwrap()
}

/// The single-thread guard reads the host's /proc before entering: a fake
/// `/proc/self/task` in a jail without procfs changes nothing.
#[test]
fn a_fake_proc_self_task_does_not_fool_the_helper() {
    let (_g, _f, d) = small_pool("");
    started_jail(&d, "task", "mount_procfs=0");
    let (_, err, code, _) = sh(&d, "task", "root", "mkdir -p /proc/self/task/1 /proc/self/task/2 /proc/self/task/3");
    assert_eq!(code, json!(0), "{err}");
    let (out, err, code, _) = sh(&d, "task", "root", "id -u");
    assert_eq!((out.as_str(), &code), ("0\n", &json!(0)), "{err}");
    done(d);
}

/// 1 GiB of output: the command is stopped once it passes the limit, the
/// reply says the output was cut, the daemon's memory stays small.
#[test]
fn an_output_flood_is_stopped_and_the_reply_says_so() {
    let (_g, _f, d) = small_pool("exec_output_limit = 1048576\n");
    started_jail(&d, "flood", "");
    let pid = d.pid().unwrap();
    let started = Instant::now();
    let r = call(
        &d,
        json!({"action": "execjail", "jail": "flood", "user": "root", "output": "lossless",
               "command": "yes yyyyyyyyyyyyyyyyyyy | head -c 1073741824; echo finished"}),
    );
    assert!(started.elapsed() < Duration::from_secs(60), "took {:?}", started.elapsed());
    assert_eq!(r["truncated"], json!(true), "{}", &r.to_string()[..200.min(r.to_string().len())]);
    assert!(r["error"].as_str().unwrap().contains("output reached the limit"), "{}", r["error"]);
    let out = r["stdout"].as_str().unwrap();
    assert_eq!(out.len(), 1 << 20, "cut at the limit");
    assert!(!out.contains("finished"), "the command ran to its end");
    assert_gone(&["yes", "yyyyyyyyyyyyyyyyyyy"]);
    assert_gone(&["head", "-c", "1073741824"]);
    let (_, peak) = host::rss_kib(pid);
    assert!(peak.unwrap_or(0) < 200 * 1024, "the daemon grew to {peak:?} KiB");
    done(d);
}

/// A command that never ends is killed at its timeout (the request's, or
/// the configured one) with everything it started, even what detached
/// itself; SIGTERM of the daemon is not held up by one.
#[test]
fn a_command_that_never_ends_is_killed_with_what_it_started() {
    let (_g, _f, d) = small_pool("execjail_timeout = 4\n");
    started_jail(&d, "forever", "");
    let started = Instant::now();
    let r = call(
        &d,
        json!({"action": "execjail", "jail": "forever", "user": "root",
               "command": "setsid sleep 200001 & sleep 200002 & sleep 200003"}),
    );
    let e = r["error"].as_str().unwrap_or_else(|| panic!("{r}"));
    assert!(e.contains("timeout"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(30), "took {:?}", started.elapsed());
    for n in ["200001", "200002", "200003"] {
        assert_gone(&["sleep", n]);
    }
    let r = call(
        &d,
        json!({"action": "execjail", "jail": "forever", "user": "root", "command": "sleep 200004", "timeout": "2"}),
    );
    assert!(r["error"].as_str().is_some_and(|e| e.contains("timeout")), "{r}");
    let r = call(&d, json!({"action": "execjail", "jail": "forever", "user": "root", "command": "true", "timeout": 0}));
    assert!(r["error"].as_str().is_some_and(|e| e.contains("timeout")), "0 is not a timeout: {r}");
    // SIGTERM while one runs (with its own, longer timeout).
    let rest = d.rest;
    let pending = std::thread::spawn(move || {
        client::rest(
            rest,
            &json!({"action": "execjail", "jail": "forever", "user": "root", "command": "sleep 200005", "timeout": 15}),
        )
    });
    std::thread::sleep(Duration::from_secs(2));
    let stopping = Instant::now();
    assert!(d.stop(), "iocaged did not exit on SIGTERM within 30 s");
    assert!(stopping.elapsed() < Duration::from_secs(25), "SIGTERM took {:?}", stopping.elapsed());
    let _ = pending.join();
    assert_gone(&["sleep", "200005"]);
    host::remove_running_jails();
}

/// A write client cannot mount a jail over host paths, nor set host
/// hooks, unless the configuration allows hooks; start checks the
/// mountpoint again.
#[test]
fn clients_cannot_reach_host_paths_or_run_host_hooks() {
    let (_g, f, d) = small_pool("");
    let keys = std::fs::read_to_string(&d.keys_file).unwrap();
    let datasets = || zfs(&["list", "-H", "-o", "name", "-r", &format!("{}/iocage/jails", f.pool)]);
    let before = datasets();
    for mp in ["/", "/etc", "/root", "/iocage/jails", "/iocage/../etc"] {
        let r = call(
            &d,
            json!({"action": "createjail", "props": format!("release={RELEASE} mountpoint={mp}"), "switches": "-c"}),
        );
        let e = r["error"].as_str().unwrap_or_else(|| panic!("mountpoint={mp} accepted: {r}"));
        assert!(e.contains("mounted only at"), "{e}");
    }
    let src = make_jail(&d, "tag=src");
    let r = call(&d, json!({"action": "clonejail", "jail": "src", "props": "tag=c mountpoint=/etc"}));
    assert!(r["error"].as_str().is_some_and(|e| e.contains("mounted only at")), "{r}");
    for hook in ["exec_prestart", "exec_poststart", "exec_prestop", "exec_poststop"] {
        let props = format!("release={RELEASE} tag=h {hook}=\"touch /tmp/owned\"");
        let r = call(&d, json!({"action": "createjail", "props": props, "switches": "-c"}));
        let e = r["error"].as_str().unwrap_or_else(|| panic!("{hook} accepted: {r}"));
        assert!(e.contains(hook) && e.contains("allow_host_hooks"), "{e}");
        let r = call(
            &d,
            json!({"action": "clonejail", "jail": "src", "props": format!("tag=h {hook}=\"touch /tmp/owned\"")}),
        );
        assert!(r["error"].as_str().is_some_and(|e| e.contains(hook)), "{r}");
    }
    assert_eq!(std::fs::read_to_string(&d.keys_file).unwrap(), keys, "the key file is untouched");
    let now = datasets();
    let added: Vec<&str> = now.lines().filter(|l| !before.lines().any(|b| b == *l)).collect();
    assert!(!added.is_empty() && added.iter().all(|l| l.contains(&src)), "only the source jail was made: {added:?}");
    // Start refuses a jail mounted elsewhere behind iocaged's back.
    let ds = format!("{}/iocage/jails/{src}", f.pool);
    zfs(&["set", "mountpoint=/tmp/escape-elsewhere", &ds]);
    let r = call(&d, json!({"action": "startjail", "jail": "src"}));
    assert!(r["error"].as_str().is_some_and(|e| e.contains("not at")), "{r}");
    zfs(&["inherit", "mountpoint", &ds]);
    assert!(!Path::new("/tmp/owned").exists());
    assert!(d.stop());

    // With allow_host_hooks = true, hooks are the administrator's choice.
    let d = Daemon::with_config("allow_host_hooks = true\n");
    make_jail(&d, "tag=hooked exec_prestart=\"echo ran > /tmp/escape-hook\"");
    assert!(call(&d, json!({"action": "startjail", "jail": "hooked"}))["hooked"].is_object());
    assert_eq!(std::fs::read_to_string("/tmp/escape-hook").unwrap(), "ran\n");
    assert!(call(&d, json!({"action": "stopjail", "jail": "hooked"}))["hooked"].is_object());
    done(d);
}
