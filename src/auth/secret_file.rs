//! The daemon's secret files (API keys, client keys): read only when the
//! daemon's user owns them and nobody else can read or write them (checked
//! on the open file, so what is checked is what is read), and bounded;
//! written whole into a new 0600 file, synced, then renamed over the old
//! one, so that a reader sees the old file or the new one, never a part.

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
        "{path} must belong to the daemon's user and be readable by it alone (mode {mode:o}): chown root, chmod 600"
    )]
    Permissions { path: PathBuf, mode: u32 },
    #[error("{path} is larger than {limit} bytes")]
    TooLarge { path: PathBuf, limit: u64 },
    #[error("{path} would grow past {limit} bytes{hint}")]
    WouldGrow { path: PathBuf, limit: u64, hint: &'static str },
}

/// The file's bytes (at most `limit`); `None` when there is none.
pub fn read(path: &Path, limit: u64) -> Result<Option<Vec<u8>>, SecretFileError> {
    let rerr = |source| SecretFileError::Read { path: path.into(), source };
    let file = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(rerr(e)),
    };
    let meta = file.metadata().map_err(rerr)?;
    let mode = meta.permissions().mode() & 0o777;
    // Whoever else could write it could add keys; whoever else could read
    // it could learn what the keys are made from.
    if mode & 0o077 != 0 || meta.uid() != nix::unistd::geteuid().as_raw() {
        return Err(SecretFileError::Permissions { path: path.into(), mode });
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
    let werr = |source| SecretFileError::Write { path: path.into(), source };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(werr)?;
    }
    // A new file each time, made 0600 by us: a stale one (or anything put
    // in its place) is removed, never written through.
    let tmp = path.with_extension("new");
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp).map_err(werr)?;
    f.write_all(bytes).and_then(|()| f.sync_all()).map_err(werr)?;
    fs::rename(&tmp, path).map_err(werr)
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
        std::os::unix::fs::symlink(&victim, path.with_extension("new")).unwrap();
        write(&path, b"keys", 100, "").unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "untouched");
        assert_eq!(fs::read_to_string(&path).unwrap(), "keys");
    }
}
