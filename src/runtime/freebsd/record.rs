//! What a FreeBSD start mounted, and how stop finds it again.
//!
//! Start records every filesystem it mounted (the mount point and the
//! filesystem's fsid) and the jail's FIB in a state file, one per running
//! jail (`/var/run/iocaged/jails/<name>.json`). Stop unmounts exactly that,
//! newest first, by fsid (unmount(2) with `MNT_BYFSID`: no path lookup a
//! jail could redirect with a symbolic link), and only a filesystem that
//! the mount table still shows on the recorded mount point. A mount point
//! is opened one component at a time below the jail's root, refusing every
//! symbolic link, before anything is mounted on it.
//!
//! Everything here but the syscalls in `rt.rs` is portable and tested on
//! every platform.

use std::ffi::OsStr;
use std::io::{ErrorKind, Write};
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};

use nix::fcntl::{OFlag, open, openat};
use nix::sys::stat::Mode;
use serde::{Deserialize, Serialize};

/// Where running jails are recorded.
pub const DEFAULT_STATE_DIR: &str = "/var/run/iocaged/jails";

/// A running jail as its start left it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub jid: i64,
    /// The FIB its commands run with (`exec_fib` when it was started).
    pub exec_fib: u32,
    /// What start mounted, in order.
    pub mounts: Vec<Mounted>,
    /// The shared-IP aliases start added to host interfaces (none in
    /// records written before there were any).
    #[serde(default)]
    pub aliases: Vec<AddedAlias>,
    /// The VNET interfaces start made on the host.
    #[serde(default)]
    pub links: Links,
}

/// What a VNET start made on the host: epair host ends (`vnetN.<jid>`;
/// destroying one destroys its pair). Bridges it creates are not listed:
/// they are never destroyed (another jail may use one).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Links {
    pub host_links: Vec<String>,
}

/// An address start put on a host interface for the jail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddedAlias {
    pub interface: String,
    pub addr: std::net::IpAddr,
}

/// One filesystem start mounted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mounted {
    /// The mount point, as the mount table shows it (`f_mntonname`).
    pub target: PathBuf,
    /// Its `f_fsid`.
    pub fsid: [i32; 2],
}

/// A line of the mount table (getfsstat(2)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableEntry {
    pub fsid: [i32; 2],
    pub on: PathBuf,
}

/// What stop does with one recorded mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unmount {
    /// Still mounted where start put it: unmount it by fsid.
    ByFsid(Mounted),
    /// No longer mounted: nothing to do.
    Gone(Mounted),
    /// Its fsid now names a filesystem mounted elsewhere: not ours to
    /// touch.
    Elsewhere { mounted: Mounted, on: PathBuf },
}

/// The unmounts for `recorded` against the current mount table, newest
/// mount first.
pub fn plan_unmounts(recorded: &[Mounted], table: &[TableEntry]) -> Vec<Unmount> {
    recorded
        .iter()
        .rev()
        .map(|m| match table.iter().find(|e| e.fsid == m.fsid) {
            None => Unmount::Gone(m.clone()),
            Some(e) if e.on == m.target => Unmount::ByFsid(m.clone()),
            Some(e) => Unmount::Elsewhere { mounted: m.clone(), on: e.on.clone() },
        })
        .collect()
}

/// For a jail without a record (started before records were kept): the
/// filesystems the table shows on exactly these mount points (compared as
/// strings, no lookup), the topmost of each, in the order given.
pub fn mounted_on(targets: &[PathBuf], table: &[TableEntry]) -> Vec<Mounted> {
    targets
        .iter()
        .filter_map(|t| table.iter().rev().find(|e| &e.on == t).map(|e| Mounted { target: t.clone(), fsid: e.fsid }))
        .collect()
}

fn record_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.json"))
}

/// The record of jail `name`, if there is one.
pub fn read(dir: &Path, name: &str) -> Result<Option<Record>, String> {
    let path = record_path(dir, name);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Writes the record of jail `name` (whole or not at all: a new file
/// renamed over the old one).
pub fn write(dir: &Path, name: &str, record: &Record) -> Result<(), String> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    let path = record_path(dir, name);
    let tmp = dir.join(format!(".{name}.json.new"));
    let text = serde_json::to_vec(record).map_err(|e| format!("encoding the record: {e}"))?;
    let mut f = std::fs::File::create(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
    f.write_all(&text).and_then(|()| f.sync_all()).map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, &path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Removes the record of jail `name` (none is fine).
pub fn remove(dir: &Path, name: &str) -> Result<(), String> {
    let path = record_path(dir, name);
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(format!("{}: {e}", path.display())),
        _ => Ok(()),
    }
}

/// Opens directory `target` below directory `root` one component at a
/// time, never following a symbolic link (`O_NOFOLLOW | O_DIRECTORY` on
/// each), so that what is opened really lies under `root`. `root` itself
/// (the host's path to the jail) may be reached through links.
pub fn open_beneath(root: &Path, target: &Path) -> Result<OwnedFd, String> {
    let rel = target
        .strip_prefix(root)
        .map_err(|_| format!("{} is not under the jail's root {}", target.display(), root.display()))?;
    let dir = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    let mut fd = open(root, dir, Mode::empty()).map_err(|e| format!("{}: {e}", root.display()))?;
    let mut walked = root.to_path_buf();
    for c in rel.components() {
        let name: &OsStr = match c {
            Component::Normal(n) => n,
            Component::CurDir => continue,
            _ => return Err(format!("{}: only plain names may follow the jail's root", target.display())),
        };
        walked.push(name);
        fd = openat(&fd, name, dir | OFlag::O_NOFOLLOW, Mode::empty()).map_err(|e| {
            let link = std::fs::symlink_metadata(&walked).is_ok_and(|m| m.file_type().is_symlink());
            if link {
                format!("{} is a symbolic link; refusing to mount through it", walked.display())
            } else {
                format!("{}: {e}", walked.display())
            }
        })?;
    }
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(target: &str, fsid: i32) -> Mounted {
        Mounted { target: target.into(), fsid: [fsid, 0x71] }
    }

    fn e(on: &str, fsid: i32) -> TableEntry {
        TableEntry { fsid: [fsid, 0x71], on: on.into() }
    }

    #[test]
    fn stop_unmounts_what_start_recorded_newest_first_by_fsid() {
        let recorded = [m("/j/root/dev", 1), m("/j/root/dev/fd", 2), m("/j/root/proc", 3), m("/j/root/mnt", 4)];
        let table = [e("/", 9), e("/j/root/dev", 1), e("/j/root/dev/fd", 2), e("/elsewhere", 3)];
        assert_eq!(
            plan_unmounts(&recorded, &table),
            [
                Unmount::Gone(m("/j/root/mnt", 4)),
                Unmount::Elsewhere { mounted: m("/j/root/proc", 3), on: "/elsewhere".into() },
                Unmount::ByFsid(m("/j/root/dev/fd", 2)),
                Unmount::ByFsid(m("/j/root/dev", 1)),
            ]
        );
        // Without a record: what the table shows on exactly those paths,
        // the topmost of two stacked mounts.
        let table = [e("/j/root/dev", 1), e("/j/root/dev", 5), e("/j/root/procx", 3)];
        assert_eq!(mounted_on(&["/j/root/dev".into(), "/j/root/proc".into()], &table), [m("/j/root/dev", 5)]);
    }

    #[test]
    fn records_round_trip_and_vanish() {
        let dir = std::env::temp_dir().join(format!("iocaged-fbsd-record-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(read(&dir, "ioc-a").unwrap(), None);
        let r = Record {
            jid: 7,
            exec_fib: 2,
            mounts: vec![m("/j/root/dev", 1)],
            aliases: Vec::new(),
            links: Links::default(),
        };
        write(&dir, "ioc-a", &r).unwrap();
        assert_eq!(read(&dir, "ioc-a").unwrap(), Some(r));
        remove(&dir, "ioc-a").unwrap();
        remove(&dir, "ioc-a").unwrap();
        assert_eq!(read(&dir, "ioc-a").unwrap(), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn mount_points_are_reached_without_symbolic_links() {
        let base = std::env::temp_dir().join(format!("iocaged-fbsd-beneath-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let root = base.join("root");
        std::fs::create_dir_all(root.join("dev")).unwrap();
        std::fs::create_dir_all(root.join("real/mnt")).unwrap();
        std::fs::create_dir_all(base.join("host")).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("proc")).unwrap();
        std::os::unix::fs::symlink("real", root.join("inside")).unwrap();
        assert!(open_beneath(&root, &root.join("dev")).is_ok());
        assert!(open_beneath(&root, &root.join("real/mnt")).is_ok());
        let err = open_beneath(&root, &root.join("proc")).unwrap_err();
        assert!(err.contains("symbolic link"), "{err}");
        // Even a link that stays inside the root is refused: what stop
        // finds there later must be what start saw.
        let err = open_beneath(&root, &root.join("inside/mnt")).unwrap_err();
        assert!(err.contains("symbolic link"), "{err}");
        assert!(open_beneath(&root, &root.join("../host")).is_err());
        assert!(open_beneath(&root, &base.join("host")).unwrap_err().contains("not under"));
        std::fs::remove_dir_all(&base).unwrap();
    }
}
