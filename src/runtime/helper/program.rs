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
//! write, in a directory nobody else may write, not set-id: it runs as
//! root with every capability, so a file someone else could replace is
//! refused (and said so in the log). It must also answer `build-id` with
//! the daemon's own build id ([`super::BUILD_ID`]): a helper left from
//! another install would read requests its own way. Otherwise the helpers
//! run as the daemon's own binary, which has the same verbs. On Linux it is
//! opened once and started through that descriptor (`/proc/self/fd/N`),
//! so that, as with `/proc/self/exe`, an upgrade that replaces the file
//! while the daemon runs changes nothing until the daemon restarts. On
//! FreeBSD it is started by its path; should an upgrade replace it, the
//! build id each request carries makes the new file refuse the old
//! daemon's requests (restart the daemon) rather than misread them.

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
            let p = fallback("the daemon's own binary (its directory is unknown)".into());
            tracing::warn!(helpers = %p.why, "jail helpers");
            return p;
        };
        let program = match open_trusted(&candidate).and_then(|p| p.map(same_build).transpose()) {
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
    let euid = nix::unistd::geteuid().as_raw();
    trusted(meta.is_file(), meta.uid(), meta.mode(), euid)?;
    // Nobody else may put another file there (or a hard link to one).
    let dir = path.parent().ok_or("it has no directory")?;
    let dir_meta = std::fs::metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    trusted_dir(dir_meta.uid(), dir_meta.mode(), euid).map_err(|why| format!("{}: {why}", dir.display()))?;
    let why = format!("{} (the helpers alone)", path.display());
    if cfg!(target_os = "linux") {
        use std::os::fd::AsRawFd;
        let path = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
        return Ok(Some(Program { path, name: HELPER_BINARY, why, _file: Some(file) }));
    }
    Ok(Some(Program { path: path.to_path_buf(), name: HELPER_BINARY, why, _file: None }))
}

/// How long the helper may take to say its build id.
const PROBE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// `program` when it is of this build: it answers `build-id` (within
/// [`PROBE_WAIT`]) with [`super::BUILD_ID`].
fn same_build(program: Program) -> Result<Program, String> {
    use std::os::unix::process::CommandExt;
    let child = std::process::Command::new(&program.path)
        .arg0(HELPER_BINARY)
        .arg(super::BUILD_ID_VERB)
        .env_clear()
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("it cannot be started: {e}"))?;
    let started = std::time::Instant::now();
    let out =
        crate::runtime::exec::wait_output(child, Some(PROBE_WAIT)).map_err(|e| format!("it did not answer: {e}"))?;
    let said = String::from_utf8_lossy(&out.stdout);
    match said.trim() {
        id if id == super::BUILD_ID => Ok(program),
        _ if started.elapsed() >= PROBE_WAIT => Err(format!("it did not answer within {} s", PROBE_WAIT.as_secs())),
        "" => Err(format!("it does not say its build ({})", out.status)),
        id => Err(format!("it is build {id}, the daemon {}", super::BUILD_ID)),
    }
}

/// The checks of [`open_trusted`] on what `fstat` said of the file.
fn trusted(regular: bool, owner: u32, mode: u32, euid: u32) -> Result<(), String> {
    if !regular {
        return Err("it is not a regular file".into());
    }
    if mode & 0o6000 != 0 {
        return Err(format!("it is set-id (mode {:o})", mode & 0o7777));
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

/// The checks of [`open_trusted`] on the file's directory.
fn trusted_dir(owner: u32, mode: u32, euid: u32) -> Result<(), String> {
    if owner != 0 && owner != euid {
        return Err(format!("the directory is owned by uid {owner}, neither root nor this daemon's user"));
    }
    if mode & 0o022 != 0 {
        return Err(format!("others may write the directory (mode {:o})", mode & 0o7777));
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
            (trusted(true, 0, 0o104755, 0), "set-id (mode 4755)"),
            (trusted(true, 0, 0o102755, 0), "set-id (mode 2755)"),
            (trusted_dir(1000, 0o40755, 0), "directory is owned by uid 1000"),
            (trusted_dir(0, 0o41777, 0), "others may write the directory (mode 1777)"),
        ];
        assert_eq!(trusted_dir(0, 0o40755, 0), Ok(()));
        for (got, why) in refused {
            assert!(got.as_ref().is_err_and(|e| e.contains(why)), "{got:?} should say {why:?}");
        }
    }

    #[test]
    fn a_helper_binary_next_to_this_one_is_used_only_when_trusted_and_of_this_build() {
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
        drop(p);
        // A file that says nothing, or another build's id, is not used
        // (scripts by their path: through /proc/self/fd their interpreter
        // could not open them; the real helper is an ELF binary, which
        // tests/helper_host.rs starts).
        // Another test thread's fork may hold the script open for a
        // moment after it was written ("Text file busy"): try again.
        let by_path = || Program { path: bin.clone(), name: HELPER_BINARY, why: String::new(), _file: None };
        let same_build = |p: Program| {
            let mut r = super::same_build(p);
            for _ in 0..20 {
                match &r {
                    Err(e) if e.contains("busy") => {
                        std::thread::sleep(std::time::Duration::from_millis(50));
                        r = super::same_build(by_path());
                    }
                    _ => break,
                }
            }
            r
        };
        let said = same_build(by_path()).err().unwrap_or_default();
        assert!(said.contains("does not say its build"), "{said}");
        std::fs::write(&bin, b"#!/bin/sh\necho 0.0.1-other\n").unwrap();
        let said = same_build(by_path()).err().unwrap_or_default();
        assert!(said.contains("it is build 0.0.1-other"), "{said}");
        let this =
            format!("#!/bin/sh\n[ \"$1\" = {} ] && echo {}\n", super::super::BUILD_ID_VERB, super::super::BUILD_ID);
        std::fs::write(&bin, this).unwrap();
        assert!(same_build(by_path()).is_ok(), "its own build's helper is used");
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(open_trusted(&bin).is_err(), "world-writable: refused");
        let link = dir.join("link");
        std::os::unix::fs::symlink(&bin, &link).unwrap();
        assert_eq!(open_trusted(&link).err().as_deref(), Some("it is a symbolic link"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
