//! Which program the jail helpers run as.
//!
//! Every execjail starts a helper, so its start-up is on the request's
//! path. The daemon's own binary links libzfs, PAM and, through them, about
//! twenty other libraries the helpers never use, and the dynamic loader
//! maps and relocates every one at each start. `iocaged-jail`
//! (`src/bin/iocaged-jail.rs`) is the helpers alone: it links only libc.
//!
//! It is used when it is installed next to the daemon's binary, a regular
//! file owned by root (or by the daemon's user) that nobody else may
//! write: it runs as root with every capability, so a file someone else
//! could replace is refused (and said so in the log). Otherwise the helpers
//! run as the daemon's own binary, which has the same verbs. On Linux it is
//! opened once and started through that descriptor (`/proc/self/fd/N`),
//! so that, as with `/proc/self/exe`, an upgrade that replaces the file
//! while the daemon runs changes nothing until the daemon restarts.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The helpers' binary, installed next to the daemon's.
pub const HELPER_BINARY: &str = "iocaged-jail";

/// What the helpers run as, found once.
struct Program {
    path: PathBuf,
    /// Its name, for `argv[0]` (what `ps` shows).
    name: &'static str,
    /// Said once in the log when found (at start-up: `serve` asks first).
    why: String,
    /// Held open for `/proc/self/fd/N` (Linux).
    _file: Option<std::fs::File>,
}

static PROGRAM: OnceLock<Program> = OnceLock::new();

/// The program to start a jail helper with (`jail-exec`, `jail-init`,
/// `jail-net` are its first argument).
pub fn program() -> &'static Path {
    &found().path
}

/// The helper's `argv[0]`: `iocaged-jail`, or `iocaged` for the daemon's
/// own binary.
pub fn name() -> &'static str {
    found().name
}

fn found() -> &'static Program {
    PROGRAM.get_or_init(|| {
        let fallback = |why: String| Program { path: crate::self_exe(), name: "iocaged", why, _file: None };
        let Some(candidate) = std::env::current_exe().ok().and_then(|e| Some(e.parent()?.join(HELPER_BINARY))) else {
            return fallback("the daemon's own binary (its directory is unknown)".into());
        };
        let program = match open_trusted(&candidate) {
            Ok(Some(p)) => p,
            Ok(None) => fallback(format!("the daemon's own binary ({} is not installed)", candidate.display())),
            Err(why) => {
                let p = fallback(format!("the daemon's own binary ({} is refused: {why})", candidate.display()));
                tracing::warn!(helpers = %p.why, "jail helpers");
                return p;
            }
        };
        tracing::info!(helpers = %program.why, "jail helpers");
        program
    })
}

/// `path` when it is a helper binary root may run: a regular file (not a
/// link), owned by root or by us, writable by nobody else, executable.
/// `None` when there is no such file.
fn open_trusted(path: &Path) -> Result<Option<Program>, String> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Err("it is a symbolic link".into()),
        Err(e) => return Err(e.to_string()),
    };
    let meta = file.metadata().map_err(|e| e.to_string())?;
    trusted(meta.is_file(), meta.uid(), meta.mode(), nix::unistd::geteuid().as_raw())?;
    let why = format!("{} (the helpers alone)", path.display());
    if cfg!(target_os = "linux") {
        use std::os::fd::AsRawFd;
        let path = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
        return Ok(Some(Program { path, name: HELPER_BINARY, why, _file: Some(file) }));
    }
    Ok(Some(Program { path: path.to_path_buf(), name: HELPER_BINARY, why, _file: None }))
}

/// The checks of [`open_trusted`] on what `fstat` said.
fn trusted(regular: bool, owner: u32, mode: u32, euid: u32) -> Result<(), String> {
    if !regular {
        return Err("it is not a regular file".into());
    }
    if owner != 0 && owner != euid {
        return Err(format!("it is owned by uid {owner}, neither root nor this daemon's user"));
    }
    if mode & 0o022 != 0 {
        return Err(format!("others may write it (mode {:o})", mode & 0o7777));
    }
    if mode & 0o100 == 0 {
        return Err("it is not executable".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_file_nobody_else_can_replace_is_trusted() {
        assert_eq!(trusted(true, 0, 0o100755, 0), Ok(()));
        assert_eq!(trusted(true, 1000, 0o100700, 1000), Ok(()), "the daemon's own user's");
        let refused = [
            (trusted(false, 0, 0o040755, 0), "not a regular file"),
            (trusted(true, 1000, 0o100755, 0), "owned by uid 1000"),
            (trusted(true, 0, 0o100775, 0), "others may write it (mode 775)"),
            (trusted(true, 0, 0o100757, 0), "others may write it (mode 757)"),
            (trusted(true, 0, 0o100644, 0), "not executable"),
        ];
        for (got, why) in refused {
            assert!(got.as_ref().is_err_and(|e| e.contains(why)), "{got:?} should say {why:?}");
        }
    }

    #[test]
    fn a_helper_binary_next_to_this_one_is_used_only_when_trusted() {
        let dir = std::env::temp_dir().join(format!("iocaged-helper-program-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let bin = dir.join(HELPER_BINARY);
        assert!(open_trusted(&bin).unwrap().is_none(), "none installed");
        std::fs::write(&bin, b"#!/bin/sh\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        let p = open_trusted(&bin).unwrap().expect("installed and trusted");
        assert!(p.why.contains(HELPER_BINARY), "{}", p.why);
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(open_trusted(&bin).is_err(), "world-writable: refused");
        let link = dir.join("link");
        std::os::unix::fs::symlink(&bin, &link).unwrap();
        assert_eq!(open_trusted(&link).err().as_deref(), Some("it is a symbolic link"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
