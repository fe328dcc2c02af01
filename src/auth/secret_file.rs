//! The daemon's secret files (API keys, client keys): read only when they
//! are regular files the daemon's user owns and nobody else can read or
//! write (checked on the open file, so what is checked is what is read),
//! and bounded; written whole into a new 0600 file of a name of its own,
//! synced, then renamed over the old one, so that a reader sees the old
//! file or the new one, never a part. Read-change-write sequences (adding
//! a key) hold the file's lock ([`lock`]) so that two at once lose nothing.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum SecretFileError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error(
        "{path} must be a file of the daemon's user (uid {want}) readable by it alone; it is uid {uid}'s, mode \
         {mode:o}: chown {want}, chmod 600"
    )]
    Permissions { path: PathBuf, uid: u32, mode: u32, want: u32 },
    #[error("{path} is not a regular file")]
    NotAFile { path: PathBuf },
    #[error("{path} is larger than {limit} bytes")]
    TooLarge { path: PathBuf, limit: u64 },
    #[error("{path} would grow past {limit} bytes{hint}")]
    WouldGrow { path: PathBuf, limit: u64, hint: &'static str },
}

/// The file's bytes (at most `limit`); `None` when there is none.
pub fn read(path: &Path, limit: u64) -> Result<Option<Vec<u8>>, SecretFileError> {
    let rerr = |source| SecretFileError::Read { path: path.into(), source };
    // Non-blocking: a FIFO put in its place must not hang the reader.
    let file = match fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(rerr(e)),
    };
    let meta = file.metadata().map_err(rerr)?;
    if !meta.file_type().is_file() {
        return Err(SecretFileError::NotAFile { path: path.into() });
    }
    let mode = meta.permissions().mode() & 0o777;
    let want = nix::unistd::geteuid().as_raw();
    // Whoever else could write it could add keys; whoever else could read
    // it could learn what the keys are made from.
    if mode & 0o077 != 0 || meta.uid() != want {
        return Err(SecretFileError::Permissions { path: path.into(), uid: meta.uid(), mode, want });
    }
    let mut bytes = Vec::new();
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes).map_err(rerr)?;
    if bytes.len() as u64 > limit {
        return Err(SecretFileError::TooLarge { path: path.into(), limit });
    }
    Ok(Some(bytes))
}

/// Replaces the file with `bytes` (at most `limit`, else `hint` says what
/// to do), creating its directory if need be.
pub fn write(path: &Path, bytes: &[u8], limit: u64, hint: &'static str) -> Result<(), SecretFileError> {
    if bytes.len() as u64 > limit {
        return Err(SecretFileError::WouldGrow { path: path.into(), limit, hint });
    }
    fn werr(at: &Path) -> impl FnOnce(std::io::Error) -> SecretFileError + '_ {
        move |source| SecretFileError::Write { path: at.into(), source }
    }
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(werr(dir))?;
    // A name of its own (two writers never share one), made new and 0600
    // by us: nothing put there before is written through.
    let tmp = sibling(path, &format!(".new-{}-{}", std::process::id(), unique()));
    let written = (|| {
        let mut f = fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        // The rename itself made durable.
        fs::File::open(dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written.map_err(werr(path))
}

/// `path` with `suffix` added to its name (`keys` → `keys.lock`).
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// A number no other call in this process got.
fn unique() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// How long [`lock`] waits for another holder.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Holds `<path>.lock` exclusively (flock) until dropped: one reader-
/// changer-writer of the file at a time, across processes (the daemon and
/// `iocaged key`). Waits at most [`LOCK_WAIT`] for another holder.
pub fn lock(path: &Path) -> Result<nix::fcntl::Flock<fs::File>, SecretFileError> {
    let at = sibling(path, ".lock");
    let werr = |source| SecretFileError::Write { path: at.clone(), source };
    if let Some(dir) = at.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(werr)?;
    }
    let f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&at)
        .map_err(werr)?;
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    let mut f = f;
    loop {
        match nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock) {
            Ok(held) => return Ok(held),
            Err((back, nix::errno::Errno::EWOULDBLOCK)) if std::time::Instant::now() < deadline => {
                f = back;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
                return Err(werr(std::io::Error::other(format!(
                    "held by another process for over {} s",
                    LOCK_WAIT.as_secs()
                ))));
            }
            Err((_, e)) => return Err(werr(e.into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("iocaged-secret-file-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir.join("file")
    }

    #[test]
    fn written_closed_read_back_and_refused_once_opened_to_others() {
        let path = tmp("round");
        assert!(read(&path, 100).unwrap().is_none(), "no file, nothing in it");
        write(&path, b"secret\n", 100, "").unwrap();
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(read(&path, 100).unwrap().as_deref(), Some(&b"secret\n"[..]));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        assert!(matches!(read(&path, 100), Err(SecretFileError::Permissions { mode: 0o640, .. })));
        // A FIFO in its place is refused, not waited on.
        let fifo = path.with_file_name("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        assert!(matches!(read(&fifo, 100), Err(SecretFileError::NotAFile { .. })));
        // Owned by another user, even closed to others: refused (as root,
        // which the daemon and CI run as, a file can be given away).
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        if nix::unistd::geteuid().is_root() {
            std::os::unix::fs::chown(&path, Some(65534), None).unwrap();
            assert!(matches!(read(&path, 100), Err(SecretFileError::Permissions { mode: 0o600, .. })));
        } else {
            eprintln!("not root: the owner check is not exercised here");
        }
    }

    #[test]
    fn one_holder_of_the_lock_at_a_time() {
        let path = tmp("lock");
        let held = lock(&path).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let p = path.clone();
        let waiter = std::thread::spawn(move || {
            let got = lock(&p);
            tx.send(()).unwrap();
            got.is_ok()
        });
        assert!(rx.recv_timeout(std::time::Duration::from_millis(300)).is_err(), "it waits while the lock is held");
        drop(held);
        assert!(waiter.join().unwrap(), "and gets it once released");
    }

    #[test]
    fn sizes_are_bounded_both_ways() {
        let path = tmp("size");
        let err = write(&path, &[b'x'; 101], 100, "; revoke keys first").unwrap_err();
        assert!(err.to_string().contains("would grow past 100 bytes; revoke keys first"), "{err}");
        assert!(!path.exists(), "nothing written");
        write(&path, &[b'x'; 100], 1000, "").unwrap();
        assert!(matches!(read(&path, 99), Err(SecretFileError::TooLarge { limit: 99, .. })));
    }

    #[test]
    fn a_stale_temporary_link_is_replaced_not_followed() {
        let path = tmp("link");
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        let victim = path.with_file_name("victim");
        fs::write(&victim, "untouched").unwrap();
        // Where the next temporary file of this process will be.
        let next = sibling(&path, &format!(".new-{}-{}", std::process::id(), unique() + 1));
        std::os::unix::fs::symlink(&victim, &next).unwrap();
        let err = write(&path, b"keys", 100, "");
        assert_eq!(fs::read_to_string(&victim).unwrap(), "untouched", "{err:?}");
        write(&path, b"keys", 100, "").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "keys");
    }
}
