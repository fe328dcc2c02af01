//! Users of a jail, read from the jail's own `/etc/passwd` and
//! `/etc/group` by a helper that has already entered the jail.
//!
//! Parsed here rather than with getpwnam(3): inside a jail, the C library
//! would follow the *jail's* nsswitch.conf and could load a shared library
//! the jail provides into a process that is still root.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// The most [`read_jail_file`] reads of a jail's file.
pub const JAIL_FILE_LIMIT: u64 = 4 << 20;

/// Reads a file the jail's root controls, as a root helper must:
/// `O_NOFOLLOW` (no link to a host path or a device), `O_NONBLOCK` (a FIFO
/// cannot make the open or the read wait), a regular file only (`fstat`),
/// at most `limit` bytes (a larger file is an error, not a prefix).
pub fn read_jail_file(path: &Path, limit: u64) -> Result<Vec<u8>, String> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let meta = f.metadata().map_err(|e| format!("{}: {e}", path.display()))?;
    if !meta.file_type().is_file() {
        return Err(format!("{} is not a regular file", path.display()));
    }
    // Room for the size it has now (one read, not a doubling series from
    // 32 bytes); it may grow while read, up to the bound.
    let room = usize::try_from(meta.len().min(limit).saturating_add(1)).unwrap_or(0);
    let mut buf = Vec::with_capacity(room);
    f.take(limit.saturating_add(1)).read_to_end(&mut buf).map_err(|e| format!("{}: {e}", path.display()))?;
    if buf.len() as u64 > limit {
        return Err(format!("{} is larger than {limit} bytes", path.display()));
    }
    Ok(buf)
}

/// What `exec` needs to become a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
    pub shell: String,
    /// Supplementary groups (the primary one included).
    pub groups: Vec<u32>,
}

/// Finds `user` (a name, or a numeric uid) in passwd and group text.
pub fn lookup(user: &str, passwd: &str, group: &str) -> Option<Account> {
    let entry = passwd.lines().filter(|l| !l.starts_with('#')).find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 7 {
            return None;
        }
        let uid = f[2].parse::<u32>().ok()?;
        (f[0] == user || user.parse::<u32>() == Ok(uid)).then_some(f)
    })?;
    let (uid, gid) = (entry[2].parse().ok()?, entry[3].parse().ok()?);
    let name = entry[0].to_string();
    let mut groups = vec![gid];
    for line in group.lines().filter(|l| !l.starts_with('#')) {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() >= 4 && f[3].split(',').any(|m| m == name) {
            if let Ok(g) = f[2].parse::<u32>() {
                if !groups.contains(&g) {
                    groups.push(g);
                }
            }
        }
    }
    Some(Account { name, uid, gid, home: entry[5].to_string(), shell: entry[6].to_string(), groups })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str =
        "# comment\nroot:x:0:0:root:/root:/bin/sh\nalice:*:1001:1001:Alice:/home/alice:/bin/sh\nbroken:x\n";
    const GROUP: &str = "wheel:*:0:root\nstaff:*:20:alice,bob\nalice:*:1001:\n";

    #[test]
    fn jail_files_are_read_carefully() {
        let dir = std::env::temp_dir().join(format!("iocaged-jailfile-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
        assert_eq!(read_jail_file(&dir.join("passwd"), 100).unwrap().len(), 26);
        assert!(read_jail_file(&dir.join("passwd"), 10).unwrap_err().contains("larger than 10"));
        std::os::unix::fs::symlink(dir.join("passwd"), dir.join("link")).unwrap();
        assert!(read_jail_file(&dir.join("link"), 100).is_err(), "links are not followed");
        nix::unistd::mkfifo(&dir.join("fifo"), nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let started = std::time::Instant::now();
        assert!(read_jail_file(&dir.join("fifo"), 100).unwrap_err().contains("not a regular file"));
        assert!(started.elapsed() < std::time::Duration::from_secs(1), "a FIFO does not block");
        assert!(read_jail_file(Path::new("/dev/zero"), 100).unwrap_err().contains("not a regular file"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn users_are_found_by_name_or_uid_with_their_groups() {
        let a = lookup("alice", PASSWD, GROUP).unwrap();
        assert_eq!((a.uid, a.gid, a.home.as_str()), (1001, 1001, "/home/alice"));
        assert_eq!(a.groups, vec![1001, 20]);
        assert_eq!(lookup("0", PASSWD, GROUP).unwrap().name, "root");
        assert_eq!(lookup("bob", PASSWD, GROUP), None);
        assert_eq!(lookup("broken", PASSWD, GROUP), None);
        assert_eq!(lookup("x", PASSWD, GROUP), None);
    }
}
