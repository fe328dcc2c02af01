//! cgroup v2 for Linux jails: one group per jail under
//! `/sys/fs/cgroup/iocaged`, holding every process of the jail (so that
//! stop can find and kill them all) and its limits, and below it a group
//! per command run in the jail. The helpers that start a jail's processes
//! stay outside both: each process is made in its group ([`Birthplace`]),
//! not moved there.

use std::fs;
use std::io::{ErrorKind, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::runtime::{Limit, Usage};

/// The controllers the jails' limits use.
const CONTROLLERS: [&str; 4] = ["cpu", "cpuset", "memory", "pids"];

/// The files a jail's limits are written to, with their "no limit" value.
const LIMIT_FILES: [(&str, &str); 5] = [
    ("memory.max", "max"),
    ("memory.high", "max"),
    ("pids.max", "max"),
    ("cpu.max", "max 100000"),
    ("cpuset.cpus", ""),
];

/// The cgroup files and values for `limits`, or the limits cgroup v2
/// cannot enforce.
pub fn translate(limits: &[Limit], cpuset: Option<&str>) -> Result<Vec<(&'static str, String)>, Vec<String>> {
    let mut out = Vec::new();
    let mut unsupported = Vec::new();
    for l in limits {
        match (l.resource.as_str(), l.action.as_str()) {
            ("memoryuse", "deny") => out.push(("memory.max", l.value().to_string())),
            ("memoryuse", "log") => out.push(("memory.high", l.value().to_string())),
            ("maxproc", "deny") => out.push(("pids.max", l.value().to_string())),
            ("pcpu", "deny") => match l.value().max(1).checked_mul(1000) {
                Some(quota) => out.push(("cpu.max", format!("{quota} 100000"))),
                None => unsupported.push(l.to_string()),
            },
            _ => unsupported.push(l.to_string()),
        }
    }
    if let Some(cpus) = cpuset {
        out.push(("cpuset.cpus", cpus.to_string()));
    }
    if unsupported.is_empty() { Ok(out) } else { Err(unsupported) }
}

pub struct Cgroups {
    root: PathBuf,
}

impl Cgroups {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Cgroups { root: root.into() }
    }

    pub fn jail(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Creates `iocaged`'s group and enables the controllers for it.
    fn prepare(&self) -> Result<(), String> {
        let parent = self.root.parent().unwrap_or(Path::new("/"));
        let available = fs::read_to_string(parent.join("cgroup.controllers"))
            .map_err(|e| format!("cgroup v2 is not mounted at {} ({e})", parent.display()))?;
        let wanted: Vec<&str> =
            CONTROLLERS.into_iter().filter(|c| available.split_whitespace().any(|a| a == *c)).collect();
        let enable = wanted.iter().map(|c| format!("+{c}")).collect::<Vec<_>>().join(" ");
        fs::write(parent.join("cgroup.subtree_control"), &enable)
            .map_err(|e| format!("enabling {enable} in {}: {e}", parent.display()))?;
        match fs::create_dir(&self.root) {
            Err(e) if e.kind() != ErrorKind::AlreadyExists => return Err(format!("{}: {e}", self.root.display())),
            _ => {}
        }
        fs::write(self.root.join("cgroup.subtree_control"), &enable)
            .map_err(|e| format!("enabling {enable} in {}: {e}", self.root.display()))
    }

    /// A new, empty group for a jail (one left by a crash is reused when
    /// it is empty).
    pub fn create(&self, name: &str) -> Result<PathBuf, String> {
        self.prepare()?;
        let dir = self.jail(name);
        match fs::create_dir(&dir) {
            Ok(()) => Ok(dir),
            Err(e) if e.kind() == ErrorKind::AlreadyExists && self.procs(name).is_empty() => Ok(dir),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                Err(format!("{} still holds processes of an earlier run", dir.display()))
            }
            Err(e) => Err(format!("{}: {e}", dir.display())),
        }
    }

    /// Writes the jail's limits; what `limits` does not set is unlimited.
    pub fn apply(&self, name: &str, limits: &[Limit], cpuset: Option<&str>) -> Result<(), String> {
        let wanted = translate(limits, cpuset).map_err(|u| format!("cannot enforce on Linux: {}", u.join(", ")))?;
        let dir = self.jail(name);
        for (file, unlimited) in LIMIT_FILES {
            let value = wanted.iter().find(|(f, _)| *f == file).map_or(unlimited, |(_, v)| v.as_str());
            let path = dir.join(file);
            if value.is_empty() && !path.exists() {
                continue;
            }
            fs::write(&path, value).map_err(|e| format!("writing {value:?} to {}: {e}", path.display()))?;
        }
        Ok(())
    }

    /// What the jail's group uses, from its files: `cpu.stat`'s
    /// `usage_usec`, `memory.current`, `pids.current`, and the limits
    /// `memory.max` and `pids.max` (`max`: none). The files are the
    /// kernel's (cgroupfs holds no links or FIFOs); each is read to at
    /// most 64 KiB.
    pub fn usage(&self, name: &str) -> Result<Usage, String> {
        let dir = self.jail(name);
        let read = |file: &str| -> Result<String, String> {
            let path = dir.join(file);
            let mut text = String::new();
            fs::File::open(&path)
                .and_then(|f| f.take(64 * 1024).read_to_string(&mut text))
                .map_err(|e| format!("{}: {e}", path.display()))?;
            Ok(text)
        };
        let number = |file: &str| -> Result<u64, String> {
            let text = read(file)?;
            text.trim().parse().map_err(|_| format!("{file}: not a number: {:?}", text.trim()))
        };
        let limit = |file: &str| -> Result<Option<u64>, String> {
            match read(file)?.trim() {
                "max" => Ok(None),
                v => v.parse().map(Some).map_err(|_| format!("{file}: not a limit: {v:?}")),
            }
        };
        let stat = read("cpu.stat")?;
        let usec = stat
            .lines()
            .find_map(|l| l.strip_prefix("usage_usec "))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .ok_or_else(|| "cpu.stat has no usage_usec".to_string())?;
        Ok(Usage {
            cpu_seconds: usec as f64 / 1e6,
            memory_bytes: number("memory.current")?,
            processes: number("pids.current")?,
            memory_limit_bytes: limit("memory.max")?,
            processes_limit: limit("pids.max")?,
        })
    }

    /// Pids in the jail's group.
    pub fn procs(&self, name: &str) -> Vec<i32> {
        fs::read_to_string(self.jail(name).join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    /// Pids in the jail's group and in its command groups.
    pub fn all_procs(&self, name: &str) -> Vec<i32> {
        let dir = self.jail(name);
        let mut dirs = vec![dir.clone()];
        if let Ok(entries) = fs::read_dir(&dir) {
            dirs.extend(entries.flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_dir())).map(|e| e.path()));
        }
        dirs.iter()
            .flat_map(|d| {
                fs::read_to_string(d.join("cgroup.procs"))
                    .unwrap_or_default()
                    .lines()
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    /// Kills whatever is left in the group (its command groups included)
    /// and removes it.
    pub fn remove(&self, name: &str) -> Result<(), String> {
        let dir = self.jail(name);
        if !dir.exists() {
            return Ok(());
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        // cgroup.kill kills the whole subtree.
        while populated(&dir) {
            let _ = fs::write(dir.join("cgroup.kill"), "1");
            if Instant::now() > deadline {
                return Err(format!("processes {:?} in {} did not die", self.procs(name), dir.display()));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let mut dirs = vec![dir.clone()];
        if let Ok(entries) = fs::read_dir(&dir) {
            dirs.extend(entries.flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_dir())).map(|e| e.path()));
        }
        // Children first.
        for d in dirs.iter().rev() {
            loop {
                match fs::remove_dir(d) {
                    Ok(()) => break,
                    Err(e) if e.kind() == ErrorKind::NotFound => break,
                    // The last process may still be leaving the group.
                    Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(e) => return Err(format!("{}: {e}", d.display())),
                }
            }
        }
        Ok(())
    }
}

/// Whether a group or any group below it holds a process
/// (`cgroup.events`; for an unreadable file, its `cgroup.procs`).
fn populated(dir: &Path) -> bool {
    match fs::read_to_string(dir.join("cgroup.events")) {
        Ok(events) => events.lines().any(|l| l.trim() == "populated 1"),
        Err(_) => fs::read_to_string(dir.join("cgroup.procs")).is_ok_and(|p| !p.trim().is_empty()),
    }
}

/// A group a helper's child is to start in (see
/// `helper::fork_into`): the group's directory, which clone3(2) takes to
/// make the child in it, and its `cgroup.procs`, for a kernel without
/// `CLONE_INTO_CGROUP` (before 5.7), where the child joins first thing.
/// Opened on the host, before the helper enters a jail (whose mounts may
/// hide the host's cgroup tree).
///
/// Why not simply join: moving a process between groups (a write to
/// `cgroup.procs`) makes the writer wait for an RCU grace period
/// (`cgroup_threadgroup_rwsem`, a percpu rwsem): 13 to 21 ms in the
/// benchmark's guest for the first move in a while. An execjail moved two
/// processes (the helper, then its command), a start and a stop seven in
/// all; a process made in its group moves nothing.
///
/// It also keeps the CPUs the group's processes may use (the
/// `cpuset.cpus.effective` of the group, or of the nearest group above it
/// with the cpuset controller: a command's group has none of its own),
/// which a child made in it takes at once ([`Birthplace::pin`]): kernels
/// from 5.7 without 42a11bf5c543 ("Make cpuset_fork() handle
/// CLONE_INTO_CGROUP properly", 6.4, backported to some stable series)
/// gave such a child its parent's CPUs, whatever the group's cpuset.
pub struct Birthplace {
    path: PathBuf,
    dir: fs::File,
    procs: fs::File,
    cpus: Option<nix::sched::CpuSet>,
}

impl Birthplace {
    /// The group `dir`, whose CPUs are those of `cpus_of` (the group
    /// itself, or the one above it that has the cpuset controller).
    pub fn open(dir: &Path, cpus_of: &Path) -> Result<Birthplace, String> {
        let group = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY)
            .open(dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        let procs = fs::OpenOptions::new()
            .write(true)
            .open(dir.join("cgroup.procs"))
            .map_err(|e| format!("{}/cgroup.procs: {e}", dir.display()))?;
        Ok(Birthplace { path: dir.to_path_buf(), dir: group, procs, cpus: effective_cpus(cpus_of)? })
    }

    /// In a child made in the group: takes the group's CPUs. Best effort:
    /// a cpuset changed since the group was opened (capjail) may leave
    /// none of those CPUs, and the kernel's own choice then stands.
    pub fn pin(&self) {
        if let Some(set) = &self.cpus {
            let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), set);
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The group's directory, for clone3's `cgroup`.
    pub fn dir(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.dir.as_fd()
    }

    /// Moves the calling process into the group (the way without clone3).
    pub fn join(&self) -> Result<(), String> {
        use std::io::Write;
        (&self.procs).write_all(b"0").map_err(|e| format!("joining {}: {e}", self.path.display()))
    }
}

/// The CPUs `cpuset.cpus.effective` of the group `dir` lists; `None`
/// without the cpuset controller, or with a CPU past what a `CpuSet` holds
/// (1024: the kernel's own choice then stands, see [`Birthplace`]).
fn effective_cpus(dir: &Path) -> Result<Option<nix::sched::CpuSet>, String> {
    let path = dir.join("cpuset.cpus.effective");
    match fs::read_to_string(&path) {
        Ok(list) if !list.trim().is_empty() => match cpu_set(list.trim()) {
            Ok(set) => Ok(Some(set)),
            Err(CpuList::TooLarge) => Ok(None),
            Err(CpuList::Bad) => Err(format!("{}: not a CPU list: {:?}", path.display(), list.trim())),
        },
        _ => Ok(None),
    }
}

/// Why a CPU list was not taken.
#[derive(Debug, PartialEq, Eq)]
enum CpuList {
    Bad,
    TooLarge,
}

/// A CPU list as cgroup files write it (`0-3,8,10-11`).
fn cpu_set(list: &str) -> Result<nix::sched::CpuSet, CpuList> {
    let mut set = nix::sched::CpuSet::new();
    for part in list.split(',') {
        let (from, to) = part.split_once('-').unwrap_or((part, part));
        let number = |n: &str| n.trim().parse::<usize>().map_err(|_| CpuList::Bad);
        let (from, to) = (number(from)?, number(to)?);
        if from > to {
            return Err(CpuList::Bad);
        }
        if to >= nix::sched::CpuSet::count() {
            return Err(CpuList::TooLarge);
        }
        for cpu in from..=to {
            set.set(cpu).map_err(|_| CpuList::TooLarge)?;
        }
    }
    Ok(set)
}

/// The group of one command run in a jail (`exec-<helper pid>-<ns>` below the
/// jail's group): the command starts in it, and killing the group kills
/// everything the command started, however it detached itself. Opened on
/// the host by the helper before it enters the jail; used through these
/// descriptors afterwards.
pub struct CommandGroup {
    parent: fs::File,
    name: String,
    birthplace: Birthplace,
    kill: Option<fs::File>,
}

impl CommandGroup {
    pub fn create(jail_group: &Path) -> Result<CommandGroup, String> {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
        let name = format!("exec-{}-{nanos}", std::process::id());
        let dir = jail_group.join(&name);
        match fs::create_dir(&dir) {
            Err(e) if e.kind() != ErrorKind::AlreadyExists => return Err(format!("{}: {e}", dir.display())),
            _ => {}
        }
        // No controller is enabled below a jail's group: the command's
        // CPUs are the jail's.
        let birthplace = Birthplace::open(&dir, jail_group)?;
        let parent = fs::File::open(jail_group).map_err(|e| format!("{}: {e}", jail_group.display()))?;
        // cgroup.kill is Linux 5.14; without it, the process group is killed.
        let kill = fs::OpenOptions::new().write(true).open(dir.join("cgroup.kill")).ok();
        Ok(CommandGroup { parent, name, birthplace, kill })
    }

    /// Where the command starts.
    pub fn birthplace(&self) -> &Birthplace {
        &self.birthplace
    }

    /// Kills every process in the group.
    pub fn kill(&self) {
        use std::io::Write;
        if let Some(k) = &self.kill {
            let _ = (&*k).write_all(b"1");
        }
    }

    /// Removes the group once it is empty, trying for up to `wait` (its
    /// killed processes may still be exiting); a group still in use is
    /// left (it goes with the jail).
    pub fn remove(&self, wait: Duration) {
        let deadline = Instant::now() + wait;
        loop {
            match nix::unistd::unlinkat(&self.parent, self.name.as_str(), nix::unistd::UnlinkatFlags::RemoveDir) {
                Err(nix::errno::Errno::EBUSY) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                _ => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(r: &str, v: &str) -> Limit {
        Limit::parse(r, v).unwrap().unwrap()
    }

    #[test]
    fn cpu_lists_are_read_as_cgroup_files_write_them() {
        let set = cpu_set("0-2,5,7-8").unwrap();
        let on: Vec<usize> = (0..16).filter(|c| set.is_set(*c).unwrap()).collect();
        assert_eq!(on, [0, 1, 2, 5, 7, 8]);
        assert_eq!((0..16).filter(|c| cpu_set("3").unwrap().is_set(*c).unwrap()).collect::<Vec<_>>(), [3]);
        for bad in ["", "a", "3-1", "1-", "1,,2"] {
            assert_eq!(cpu_set(bad).err(), Some(CpuList::Bad), "{bad:?}");
        }
        assert_eq!(cpu_set("0-99999").err(), Some(CpuList::TooLarge));
    }

    #[test]
    fn a_command_s_group_takes_the_jail_s_cpus() {
        let jail = std::env::temp_dir().join(format!("iocaged-cpus-{}", std::process::id()));
        let command = jail.join("exec-1-2");
        fs::create_dir_all(&command).unwrap();
        fs::write(command.join("cgroup.procs"), "").unwrap();
        fs::write(jail.join("cgroup.procs"), "").unwrap();
        fs::write(jail.join("cpuset.cpus.effective"), "1\n").unwrap();
        let cpus =
            |b: &Birthplace| b.cpus.as_ref().map(|s| (0..8).filter(|c| s.is_set(*c).unwrap()).collect::<Vec<_>>());
        // A command's group has no cpuset file of its own.
        assert_eq!(cpus(&Birthplace::open(&command, &jail).unwrap()), Some(vec![1]));
        assert_eq!(cpus(&Birthplace::open(&command, &command).unwrap()), None);
        assert_eq!(cpus(&Birthplace::open(&jail, &jail).unwrap()), Some(vec![1]));
        fs::write(jail.join("cpuset.cpus.effective"), "0-4095\n").unwrap();
        assert_eq!(cpus(&Birthplace::open(&jail, &jail).unwrap()), None, "more CPUs than a set holds");
        fs::write(jail.join("cpuset.cpus.effective"), "x\n").unwrap();
        assert!(Birthplace::open(&jail, &jail).is_err());
        fs::remove_dir_all(&jail).unwrap();
    }

    #[test]
    fn limits_map_to_cgroup_files_or_are_refused() {
        let got = translate(
            &[limit("memoryuse", "64M:deny"), limit("maxproc", "100:deny"), limit("pcpu", "50:deny")],
            Some("0-1"),
        )
        .unwrap();
        assert_eq!(
            got,
            vec![
                ("memory.max", (64u64 << 20).to_string()),
                ("pids.max", "100".into()),
                ("cpu.max", "50000 100000".into()),
                ("cpuset.cpus", "0-1".into())
            ]
        );
        assert_eq!(
            translate(&[limit("memoryuse", "8G:log")], None).unwrap(),
            vec![("memory.high", (8u64 << 30).to_string())]
        );
        assert_eq!(
            translate(&[limit("vmemoryuse", "1G:deny"), limit("maxproc", "5:log")], None),
            Err(vec!["vmemoryuse=1G:deny".to_string(), "maxproc=5:log".to_string()])
        );
    }
}
