//! `iocaged jail-init` (Linux): sets a jail up and stays as its init.
//!
//! Reads an [`InitRequest`] on stdin, unshares the namespaces, then forks:
//! the child is PID 1 of the new PID namespace, made in the jail's cgroup
//! (the helper itself stays out of it). It mounts what the spec says
//! inside the jail's root (in the jail's private mount namespace, so
//! nothing shows on the host and everything goes when the namespace dies),
//! pivots into the root, reports `ok` to the parent
//! over a pipe and reaps orphans until it is killed. The parent prints
//! `ok <child pid>` (or `error <step>: <why>`) and exits. A failure
//! part-way needs no undo: the namespaces die with the child.

use std::fs;
use std::io::Read;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use nix::fcntl::OFlag;
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, unshare};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use serde::{Deserialize, Serialize};

use super::cgroup::Birthplace;
use super::confine::{self, Confinement};
use crate::runtime::helper::{Forked, SingleThreaded, child_exit, fork_into};
use crate::runtime::{JailSpec, Mount};

/// fstab filesystem types a Linux jail can mount.
pub const SUPPORTED_FSTYPES: [&str; 6] = ["nullfs", "tmpfs", "procfs", "linprocfs", "devfs", "fdescfs"];

/// Device nodes a Linux jail's `/dev` gets (bound from the host's).
const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

#[derive(Debug, Serialize, Deserialize)]
pub struct InitRequest {
    pub spec: JailSpec,
    pub confine: Confinement,
    pub cgroup: PathBuf,
}

/// A step that failed, and why.
type Failed = (String, String);

fn step<T, E: std::fmt::Display>(what: impl Into<String>, r: Result<T, E>) -> Result<T, Failed> {
    r.map_err(|e| (what.into(), e.to_string()))
}

/// `iocaged jail-init`.
pub(crate) fn init_main() -> ExitCode {
    match start() {
        Ok(pid) => {
            println!("ok {pid}");
            ExitCode::SUCCESS
        }
        Err((what, why)) => {
            println!("error {what}: {why}");
            ExitCode::FAILURE
        }
    }
}

fn start() -> Result<i32, Failed> {
    let mut input = Vec::new();
    step("reading the spec", std::io::stdin().read_to_end(&mut input))?;
    let req: InitRequest = step("reading the spec", serde_json::from_slice(&input))?;
    let spec = &req.spec;
    let single = step("checking threads", SingleThreaded::check())?;
    // The init keeps no capability; decided and compiled here, on the host.
    let prepared = step("preparing the confinement", confine::prepare(&req.confine.for_init()))?;
    let _ = nix::unistd::setsid();
    // The init is made in the jail's group; this helper stays out of it.
    let group = step("opening the jail's cgroup", Birthplace::open(&req.cgroup, &req.cgroup))?;
    let mut flags =
        CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWUTS | CloneFlags::CLONE_NEWIPC | CloneFlags::CLONE_NEWPID;
    if req.confine.own_network {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    step("creating namespaces", unshare(flags))?;
    step(
        "making mounts private",
        mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>),
    )?;
    step("setting the hostname", nix::unistd::sethostname(&spec.hostname))?;
    let devnull = step("opening /dev/null", fs::File::open("/dev/null"))?;
    let (report_r, report_w) = step("creating a pipe", nix::unistd::pipe2(OFlag::O_CLOEXEC))?;
    // The init is born not dumpable (as a process that changed its
    // identity is) and never execs: the jail's root cannot open what it
    // holds through /proc/1/fd, nor its root or cwd.
    step("making the init undumpable", nix::sys::prctl::set_dumpable(false))?;
    match fork_into(&single, &group).map_err(|e| ("starting the init".to_string(), e))? {
        Forked::Child(in_group) => {
            drop(report_r);
            // The group's descriptors are of the host's tree: none may stay
            // open in the jail (its root could walk up from
            // `/proc/1/fd/N/..`).
            drop(group);
            let message = match step("joining the jail's cgroup", in_group)
                .and_then(|()| setup(spec))
                .and_then(|()| step("confining the init", confine::apply(&prepared, || Ok(()))))
            {
                Ok(()) => "ok".to_string(),
                Err((what, why)) => format!("{what}: {why}"),
            };
            let ok = message == "ok";
            if ok {
                // Nothing of the daemon's may stay open in the jail: the
                // init keeps /dev/null as its stdin, stdout and stderr and
                // no other descriptor.
                let _ = nix::unistd::dup2_stdin(devnull.as_fd());
                let _ = nix::unistd::dup2_stdout(devnull.as_fd());
                let _ = nix::unistd::dup2_stderr(devnull.as_fd());
            }
            drop(devnull);
            let _ = nix::unistd::write(&report_w, message.as_bytes());
            drop(report_w);
            if !ok {
                child_exit(1);
            }
            reap_forever()
        }
        Forked::Parent { child } => {
            drop(report_w);
            let mut message = String::new();
            let _ = fs::File::from(report_r).read_to_string(&mut message);
            if message == "ok" {
                Ok(child.as_raw())
            } else {
                let _ = waitpid(child, None);
                let (what, why) = message.split_once(": ").unwrap_or(("setting the jail up", message.as_str()));
                Err((what.to_string(), why.to_string()))
            }
        }
    }
}

/// In the new namespaces: mounts, then the jail's root becomes `/`.
fn setup(spec: &JailSpec) -> Result<(), Failed> {
    let root = step(format!("finding the jail's root {}", spec.root.display()), spec.root.canonicalize())?;
    let bind = MsFlags::MS_BIND | MsFlags::MS_REC;
    step("binding the jail's root", mount(Some(&root), &root, None::<&str>, bind, None::<&str>))?;
    let mut dev_is_ours = false;
    for m in &spec.mounts {
        let target = match m {
            // Not a mount point but links made in the jail's /dev.
            Mount::Fdescfs { target } => inside(&root, target.parent().unwrap_or(target))?.join("fd"),
            _ => inside(&root, m.target())?,
        };
        step(format!("mounting {}", m.target().display()), mount_one(m, &target, &mut dev_is_ours))?;
    }
    step("entering the jail's root", nix::unistd::chdir(&root))?;
    step("entering the jail's root", nix::unistd::pivot_root(".", "."))?;
    step("detaching the host's root", umount2(".", MntFlags::MNT_DETACH))?;
    step("entering the jail's root", nix::unistd::chdir("/"))
}

/// `target` resolved (symlinks followed) and checked to be inside `root`:
/// a jail cannot turn a mount point into a link to a host path.
fn inside(root: &Path, target: &Path) -> Result<PathBuf, Failed> {
    let what = || format!("mounting {}", target.display());
    let real = target.canonicalize().map_err(|e| (what(), e.to_string()))?;
    if real.starts_with(root) {
        Ok(real)
    } else {
        Err((what(), format!("it resolves to {}, outside the jail's root", real.display())))
    }
}

fn mount_one(m: &Mount, target: &Path, dev_is_ours: &mut bool) -> Result<(), String> {
    let nosuid = MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC;
    match m {
        Mount::Devfs { .. } => devfs(target, dev_is_ours),
        Mount::Fdescfs { .. } => fdescfs(target, *dev_is_ours),
        Mount::Procfs { .. } => proc(target),
        Mount::Fstab { source, fstype, options, .. } => {
            let ro = options.iter().any(|o| o == "ro");
            match fstype.as_str() {
                "nullfs" => {
                    let src = Path::new(source).canonicalize().map_err(|e| format!("{source}: {e}"))?;
                    // The host's kernel interfaces never reach a jail through
                    // its fstab: /proc not at all, /sys read-only.
                    if src.starts_with("/proc") {
                        return Err(format!("{source}: the host's /proc cannot be mounted in a jail"));
                    }
                    let ro = ro || src.starts_with("/sys");
                    mount(Some(&src), target, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
                        .map_err(|e| e.to_string())?;
                    if ro {
                        let f = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
                        mount(None::<&str>, target, None::<&str>, f, None::<&str>).map_err(|e| e.to_string())?;
                    }
                    Ok(())
                }
                "tmpfs" => {
                    let data: Vec<&str> =
                        options.iter().map(String::as_str).filter(|o| !matches!(*o, "rw" | "ro")).collect();
                    let flags = if ro { nosuid | MsFlags::MS_RDONLY } else { MsFlags::MS_NOSUID };
                    mount(Some("tmpfs"), target, Some("tmpfs"), flags, Some(data.join(",").as_str()))
                        .map_err(|e| e.to_string())
                }
                "procfs" | "linprocfs" => proc(target),
                "devfs" => devfs(target, dev_is_ours),
                "fdescfs" => fdescfs(target, *dev_is_ours),
                other => Err(format!("{other} is not supported on Linux")),
            }
        }
    }
}

/// Parts of a jail's procfs that stay readable but are mounted read-only
/// (what runc and youki make read-only by default): the kernel's tunables
/// (`/proc/sys`, with `kernel/core_pattern`, a way to run a program on
/// the host), SysRq, IRQ affinity, buses, filesystems.
pub const PROC_READONLY: [&str; 5] = ["bus", "fs", "irq", "sys", "sysrq-trigger"];

/// Parts of a jail's procfs hidden (runc's and youki's default masked
/// paths): a file gets `/dev/null` bound over it, a directory an empty
/// read-only tmpfs. Kernel memory, the keyring, timers and scheduler
/// internals, ACPI, sound, SCSI.
pub const PROC_MASKED: [&str; 9] =
    ["acpi", "asound", "kcore", "keys", "latency_stats", "sched_debug", "scsi", "timer_list", "timer_stats"];

/// A procfs for the jail, with [`PROC_READONLY`] and [`PROC_MASKED`]
/// applied (before the jail's root becomes `/`: `/dev/null` is the
/// host's). A path this kernel does not have is skipped.
fn proc(target: &Path) -> Result<(), String> {
    let safe = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount(Some("proc"), target, Some("proc"), safe, None::<&str>).map_err(|e| e.to_string())?;
    for name in PROC_MASKED {
        let path = target.join(name);
        let r = match fs::symlink_metadata(&path) {
            Err(_) => continue,
            Ok(m) if m.is_dir() => mount(
                Some("tmpfs"),
                &path,
                Some("tmpfs"),
                safe | MsFlags::MS_RDONLY,
                Some("mode=555,size=4k,nr_inodes=1"),
            ),
            Ok(_) => mount(Some("/dev/null"), &path, None::<&str>, MsFlags::MS_BIND, None::<&str>),
        };
        r.map_err(|e| format!("masking /proc/{name}: {e}"))?;
    }
    for name in PROC_READONLY {
        let path = target.join(name);
        if fs::symlink_metadata(&path).is_err() {
            continue;
        }
        let ro = |e: nix::Error| format!("making /proc/{name} read-only: {e}");
        mount(Some(&path), &path, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>).map_err(ro)?;
        let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | safe;
        mount(None::<&str>, &path, None::<&str>, flags, None::<&str>).map_err(ro)?;
    }
    Ok(())
}

/// Terminals a jail's own devpts holds at most (the host keeps
/// `kernel.pty.reserve` of the system's for its own).
const JAIL_PTYS: u32 = 64;

/// A small tmpfs with the host's harmless device nodes bound into it, and
/// terminals of the jail's own: a new devpts instance on `pts` (consoles
/// open theirs there, see `runtime::pty`), `ptmx` a link to its
/// multiplexer, as on any Linux system.
fn devfs(target: &Path, dev_is_ours: &mut bool) -> Result<(), String> {
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC;
    mount(Some("devfs"), target, Some("tmpfs"), flags, Some("mode=755,size=64k")).map_err(|e| e.to_string())?;
    *dev_is_ours = true;
    for d in DEVICES {
        let node = target.join(d);
        fs::File::create(&node).map_err(|e| format!("{}: {e}", node.display()))?;
        mount(Some(&Path::new("/dev").join(d)), &node, None::<&str>, MsFlags::MS_BIND, None::<&str>)
            .map_err(|e| format!("/dev/{d}: {e}"))?;
    }
    let pts = target.join("pts");
    fs::create_dir(&pts).map_err(|e| format!("{}: {e}", pts.display()))?;
    let options = format!("newinstance,ptmxmode=0666,mode=0620,max={JAIL_PTYS}");
    mount(Some("devpts"), &pts, Some("devpts"), flags, Some(options.as_str())).map_err(|e| format!("/dev/pts: {e}"))?;
    std::os::unix::fs::symlink("pts/ptmx", target.join("ptmx")).map_err(|e| format!("/dev/ptmx: {e}"))
}

/// FreeBSD's fdescfs is the `/dev/fd` family; on Linux, links to
/// `/proc/self/fd` made in the jail's own `/dev` (never in the jail's files).
fn fdescfs(target: &Path, dev_is_ours: bool) -> Result<(), String> {
    let Some(dev) = target.parent().filter(|_| dev_is_ours) else { return Ok(()) };
    for (link, to) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        match std::os::unix::fs::symlink(to, dev.join(link)) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(format!("{link}: {e}")),
            _ => {}
        }
    }
    Ok(())
}

/// PID 1's job: reap every orphan; leave on SIGTERM (or die on SIGKILL).
fn reap_forever() -> ! {
    let mut signals = SigSet::empty();
    for s in [Signal::SIGCHLD, Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        signals.add(s);
    }
    let _ = signals.thread_block();
    loop {
        while let Ok(status) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            if status == WaitStatus::StillAlive {
                break;
            }
        }
        if let Ok(Signal::SIGTERM | Signal::SIGINT) = signals.wait() {
            child_exit(0);
        }
    }
}
