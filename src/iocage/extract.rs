//! Unpacking a release archive (a tar stream: FreeBSD's `base.txz` once
//! decompressed, or a Linux root filesystem tarball) into a new release's
//! root, trusting nothing in the archive.
//!
//! The archive comes from a mirror, and its entries decide names, links and
//! sizes; the daemon runs as root. So every entry is written through
//! directory descriptors opened one component at a time from the root with
//! `O_NOFOLLOW` (a link made by an earlier entry is never followed, whatever
//! it points at), names are plain relative paths (no `..`, nothing
//! absolute), hard links name something already extracted inside the root,
//! device nodes and FIFOs are refused, and both the number of entries and
//! the bytes written are bounded before anything is written. The first
//! entry refused ends the extraction with an error naming it; the caller
//! removes the half-made root (a release dataset, destroyed whole).
//!
//! Names are bounded too (1024 bytes, 128 components), and the extension
//! records that carry long names (GNU `L`/`K`, PAX `x`/`g`) are read here,
//! at most [`MAX_EXTENSION`] bytes each, rather than whole by the parser.
//! `.zfs` (ZFS's control directory at a dataset's root) is never entered.
//!
//! Owners, modes (setuid bits included: a release's `su` needs them) and
//! modification times are kept as the archive says. So the caller must keep
//! the root where no other host user can reach it (a 0700 parent, or the
//! dataset's `setuid=off`) until the release is checked and in place.
//!
//! (The file is over 400 lines with its tests, on purpose: the hostile
//! archives they build sit next to the checks they attack; the code
//! itself is about 370.)

use std::ffi::OsStr;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat};
use nix::sys::stat::{Mode, fchmod, futimens, mkdirat};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchown, fchownat, linkat, symlinkat, unlinkat};

/// The longest name and the most components an entry's path may have
/// (FreeBSD's PATH_MAX).
const MAX_PATH: usize = 1024;
const MAX_COMPONENTS: usize = 128;

/// The most bytes of one extension record (a long name, a PAX header).
pub const MAX_EXTENSION: u64 = 64 << 10;

/// How much an archive may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Entries of any kind.
    pub entries: u64,
    /// Bytes of file contents, all files together.
    pub bytes: u64,
}

/// What an extraction wrote.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Extracted {
    pub entries: u64,
    pub bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    /// An entry the rules above refuse.
    #[error("refusing archive entry {entry:?}: {why}")]
    Refused { entry: String, why: String },
    /// The archive is not a well-formed tar stream (or ends early).
    #[error("the archive is damaged at entry {entry}: {source}")]
    Damaged { entry: u64, source: std::io::Error },
    /// Writing an entry failed.
    #[error("cannot write {entry:?}: {source}")]
    Write { entry: String, source: std::io::Error },
    #[error("cannot open the release root {root}: {source}")]
    Root { root: String, source: std::io::Error },
}

/// An entry's name for messages: at most 256 bytes of it.
fn shown(entry: &[u8]) -> String {
    let cut = &entry[..entry.len().min(256)];
    let more = if entry.len() > cut.len() { "..." } else { "" };
    format!("{}{more}", String::from_utf8_lossy(cut))
}

fn refused(entry: &[u8], why: impl Into<String>) -> ExtractError {
    ExtractError::Refused { entry: shown(entry), why: why.into() }
}

/// The components of an archive path: `./a//b/` is `a`, `b`. Refused:
/// absolute paths, `..`, NUL bytes. Empty for the root itself.
fn components(path: &[u8]) -> Result<Vec<&[u8]>, ExtractError> {
    if path.len() > MAX_PATH {
        return Err(refused(path, format!("a name longer than {MAX_PATH} bytes")));
    }
    if path.first() == Some(&b'/') {
        return Err(refused(path, "an absolute path"));
    }
    if path.contains(&0) {
        return Err(refused(path, "a NUL byte in the name"));
    }
    let mut out = Vec::new();
    for c in path.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err(refused(path, "a path with \"..\"")),
            c if out.is_empty() && c.eq_ignore_ascii_case(b".zfs") => {
                return Err(refused(path, "ZFS's control directory"));
            }
            c => out.push(c),
        }
    }
    if out.len() > MAX_COMPONENTS {
        return Err(refused(path, format!("more than {MAX_COMPONENTS} components")));
    }
    Ok(out)
}

/// An entry's permission bits (setuid, setgid and sticky included).
fn permissions(mode: u32) -> Mode {
    // Masked to 12 bits: fits FreeBSD's 16-bit mode_t as Linux's 32.
    Mode::from_bits_truncate(libc::mode_t::try_from(mode & 0o7777).unwrap_or(0))
}

fn io_of(e: Errno) -> std::io::Error {
    std::io::Error::from_raw_os_error(e as i32)
}

/// Opens the directory `name` in `dir` without following a link.
fn open_dir(dir: impl AsFd, name: &[u8]) -> nix::Result<OwnedFd> {
    openat(
        dir,
        OsStr::from_bytes(name),
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

/// The directory holding `parts`' last component, walked from `root` one
/// component at a time without following links; missing directories are
/// made (0755) when `make` is set.
fn parent_of(root: &OwnedFd, parts: &[&[u8]], entry: &[u8], make: bool) -> Result<OwnedFd, ExtractError> {
    let mut dir = root.try_clone().map_err(|e| write_error(entry, e))?;
    for c in &parts[..parts.len().saturating_sub(1)] {
        let next = match open_dir(&dir, c) {
            Err(Errno::ENOENT) if make => {
                mkdirat(&dir, OsStr::from_bytes(c), Mode::from_bits_truncate(0o755))
                    .or_else(|e| if e == Errno::EEXIST { Ok(()) } else { Err(e) })
                    .map_err(|e| write_error(entry, io_of(e)))?;
                open_dir(&dir, c)
            }
            other => other,
        };
        dir = next.map_err(|e| match e {
            // FreeBSD answers O_NOFOLLOW on a link with EMLINK.
            Errno::ELOOP | Errno::EMLINK | Errno::ENOTDIR => refused(entry, "a path through a link or a file"),
            Errno::ENOENT => refused(entry, "a link to something not extracted"),
            e => write_error(entry, io_of(e)),
        })?;
    }
    Ok(dir)
}

fn write_error(entry: &[u8], source: std::io::Error) -> ExtractError {
    ExtractError::Write { entry: shown(entry), source }
}

/// Removes what an earlier entry left at `name` (a file or a link, not a
/// directory: a later entry may replace a file, as tar does).
fn clear(dir: &OwnedFd, name: &[u8], entry: &[u8]) -> Result<(), ExtractError> {
    match unlinkat(dir, OsStr::from_bytes(name), UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => Ok(()),
        Err(Errno::EISDIR | Errno::EPERM) => Err(refused(entry, "replaces a directory")),
        Err(e) => Err(write_error(entry, io_of(e))),
    }
}

/// What extension records said of the next entry.
#[derive(Default)]
struct Extension {
    path: Option<Vec<u8>>,
    link: Option<Vec<u8>>,
    uid: Option<u64>,
    gid: Option<u64>,
    mtime: Option<u64>,
}

impl Extension {
    /// Takes `entry` in if it is an extension record (GNU long name or
    /// link, PAX header); `false` for an entry to extract.
    fn take_record(&mut self, kind: tar::EntryType, entry: &mut impl Read, n: u64) -> Result<bool, ExtractError> {
        let long = kind.is_gnu_longname() || kind.is_gnu_longlink();
        if !(long || kind.is_pax_local_extensions() || kind.is_pax_global_extensions()) {
            return Ok(false);
        }
        let mut body = Vec::new();
        entry
            .take(MAX_EXTENSION + 1)
            .read_to_end(&mut body)
            .map_err(|source| ExtractError::Damaged { entry: n, source })?;
        if body.len() as u64 > MAX_EXTENSION {
            return Err(refused(
                format!("record {n}").as_bytes(),
                format!("an extension record over {MAX_EXTENSION} bytes"),
            ));
        }
        if long {
            // A NUL-terminated name.
            let name = body.split(|b| *b == 0).next().unwrap_or_default().to_vec();
            if kind.is_gnu_longname() {
                self.path = Some(name);
            } else {
                self.link = Some(name);
            }
        } else if kind.is_pax_local_extensions() {
            for field in tar::PaxExtensions::new(&body) {
                let field = field.map_err(|source| ExtractError::Damaged { entry: n, source })?;
                let number =
                    || std::str::from_utf8(field.value_bytes()).ok().and_then(|v| v.split('.').next()?.parse().ok());
                match field.key_bytes() {
                    b"path" => self.path = Some(field.value_bytes().to_vec()),
                    b"linkpath" => self.link = Some(field.value_bytes().to_vec()),
                    b"uid" => self.uid = number(),
                    b"gid" => self.gid = number(),
                    b"mtime" => self.mtime = number(),
                    // These change where the next entry's data ends or what
                    // it means: not in a release.
                    k if k == b"size" || k.starts_with(b"GNU.sparse.") => {
                        return Err(refused(field.key_bytes(), "a PAX size or sparse file"));
                    }
                    _ => {}
                }
            }
        }
        // A global PAX header applies to no one entry here: read, ignored.
        Ok(true)
    }
}

/// Unpacks the tar stream `archive` into the empty directory `root`.
pub fn extract(archive: impl Read, root: &Path, limits: Limits) -> Result<Extracted, ExtractError> {
    let root_fd = openat(
        nix::fcntl::AT_FDCWD,
        root,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| ExtractError::Root { root: root.display().to_string(), source: io_of(e) })?;
    let mut archive = tar::Archive::new(archive);
    let mut done = Extracted::default();
    // Raw: the extension records come to us (bounded), not read whole.
    let entries = archive.entries().map_err(|source| ExtractError::Damaged { entry: 0, source })?.raw(true);
    let mut ext = Extension::default();
    for entry in entries {
        let mut entry = entry.map_err(|source| ExtractError::Damaged { entry: done.entries + 1, source })?;
        done.entries += 1;
        if done.entries > limits.entries {
            return Err(refused(&entry.header().path_bytes(), format!("more than {} entries", limits.entries)));
        }
        let kind = entry.header().entry_type();
        if ext.take_record(kind, &mut entry, done.entries)? {
            continue;
        }
        let header = entry.header();
        let path = ext.path.take().unwrap_or_else(|| header.path_bytes().into_owned());
        let link = ext.link.take().or_else(|| header.link_name_bytes().map(|l| l.into_owned()));
        let parts = components(&path)?;
        let Some(name) = parts.last().copied() else {
            if kind.is_dir() {
                // The root itself ("./"): it exists; its mode is the caller's.
                continue;
            }
            return Err(refused(&path, "a name that is the root itself"));
        };
        if path.ends_with(b"/") && !kind.is_dir() {
            return Err(refused(&path, "a name ending in \"/\" that is not a directory"));
        }
        let damaged = |source| ExtractError::Damaged { entry: done.entries, source };
        let mode = permissions(header.mode().map_err(damaged)?);
        let id = |v: u64, what: &str| {
            // (uid_t)-1 tells chown "leave it": the file would stay root's.
            u32::try_from(v)
                .ok()
                .filter(|v| *v != u32::MAX)
                .ok_or_else(|| refused(&path, format!("{what} out of range")))
        };
        let uid = Uid::from_raw(id(ext.uid.take().map_or_else(|| header.uid(), Ok).map_err(damaged)?, "an owner")?);
        let gid = Gid::from_raw(id(ext.gid.take().map_or_else(|| header.gid(), Ok).map_err(damaged)?, "a group")?);
        let seconds = ext.mtime.take().map_or_else(|| header.mtime(), Ok).map_err(damaged)?;
        let mtime = TimeSpec::new(seconds.try_into().unwrap_or(0), 0);
        let dir = parent_of(&root_fd, &parts, &path, true)?;
        let werr = |e: Errno| write_error(&path, io_of(e));
        if kind.is_dir() {
            match mkdirat(&dir, OsStr::from_bytes(name), Mode::from_bits_truncate(0o700)) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => return Err(werr(e)),
            }
            let d = open_dir(&dir, name).map_err(|e| match e {
                Errno::ELOOP | Errno::EMLINK | Errno::ENOTDIR => {
                    refused(&path, "a directory where a link or a file is")
                }
                e => werr(e),
            })?;
            fchown(&d, Some(uid), Some(gid)).map_err(werr)?;
            fchmod(&d, mode).map_err(werr)?;
        } else if kind.is_file() || kind.is_contiguous() {
            let size = entry.size();
            if size > limits.bytes.saturating_sub(done.bytes) {
                return Err(refused(&path, format!("more than {} bytes in all", limits.bytes)));
            }
            clear(&dir, name, &path)?;
            let fd = openat(
                &dir,
                OsStr::from_bytes(name),
                OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::from_bits_truncate(0o600),
            )
            .map_err(werr)?;
            let mut file = std::fs::File::from(fd);
            let copied = std::io::copy(&mut (&mut entry).take(size), &mut file)
                .map_err(|source| ExtractError::Damaged { entry: done.entries, source })?;
            if copied != size {
                let source = std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the archive ends inside it");
                return Err(ExtractError::Damaged { entry: done.entries, source });
            }
            done.bytes += size;
            // Owner first: chown clears the setuid bits chmod sets.
            fchown(&file, Some(uid), Some(gid)).map_err(werr)?;
            fchmod(&file, mode).map_err(werr)?;
            futimens(&file, &mtime, &mtime).map_err(werr)?;
        } else if kind.is_symlink() {
            let target = link.ok_or_else(|| refused(&path, "a link without a target"))?;
            if target.is_empty() || target.contains(&0) {
                return Err(refused(&path, "a link with an empty or NUL target"));
            }
            // The target is the jail's business: it is never followed here.
            clear(&dir, name, &path)?;
            symlinkat(OsStr::from_bytes(&target), &dir, OsStr::from_bytes(name)).map_err(werr)?;
            fchownat(&dir, OsStr::from_bytes(name), Some(uid), Some(gid), AtFlags::AT_SYMLINK_NOFOLLOW)
                .map_err(werr)?;
        } else if kind.is_hard_link() {
            let target = link.ok_or_else(|| refused(&path, "a hard link without a target"))?;
            let target_parts =
                components(&target).map_err(|_| refused(&path, "a hard link to something outside the release"))?;
            let Some(target_name) = target_parts.last().copied() else {
                return Err(refused(&path, "a hard link to the root"));
            };
            let target_dir = parent_of(&root_fd, &target_parts, &path, false)?;
            clear(&dir, name, &path)?;
            // No AT_SYMLINK_FOLLOW: a link is linked, never what it names.
            linkat(&target_dir, OsStr::from_bytes(target_name), &dir, OsStr::from_bytes(name), AtFlags::empty())
                .map_err(|e| match e {
                    Errno::ENOENT => refused(&path, "a hard link to something not extracted"),
                    Errno::EPERM => refused(&path, "a hard link to a directory"),
                    e => werr(e),
                })?;
        } else {
            let what = if kind.is_character_special() || kind.is_block_special() {
                "a device node"
            } else if kind.is_fifo() {
                "a FIFO"
            } else {
                "an entry of a kind a release does not hold"
            };
            return Err(refused(&path, what));
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::path::PathBuf;

    const LIMITS: Limits = Limits { entries: 1000, bytes: 1 << 20 };

    fn scratch(name: &str) -> (PathBuf, PathBuf) {
        let base = std::env::temp_dir().join(format!("iocaged-extract-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        let root = base.join("root");
        fs::create_dir_all(&root).unwrap();
        fs::create_dir_all(base.join("outside")).unwrap();
        (base, root)
    }

    /// An archive entry: (kind, path, content or link target, mode).
    type Item<'a> = (tar::EntryType, &'a str, &'a str, u32);

    /// A tar stream of `entries`.
    fn tarball(entries: &[Item]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (kind, path, data, mode) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_mode(*mode);
            h.set_uid(u64::from(nix::unistd::getuid().as_raw()));
            h.set_gid(u64::from(nix::unistd::getgid().as_raw()));
            h.set_mtime(1_700_000_000);
            // Set by bytes: the builder's own setters refuse `..` and
            // absolute paths, which is what these tests must send.
            let name = &mut h.as_old_mut().name;
            name[..path.len()].copy_from_slice(path.as_bytes());
            if kind.is_symlink() || kind.is_hard_link() {
                h.set_link_name(data).unwrap();
                h.set_size(0);
                h.set_cksum();
                b.append(&h, &[][..]).unwrap();
            } else {
                h.set_size(data.len() as u64);
                h.set_cksum();
                b.append(&h, data.as_bytes()).unwrap();
            }
        }
        b.into_inner().unwrap()
    }

    use tar::EntryType::{Block, Char, Directory, Fifo, Link, Regular, Symlink};

    #[test]
    fn a_release_is_unpacked_with_its_links_modes_and_owners() {
        let (base, root) = scratch("good");
        let t = tarball(&[
            (Directory, "./", "", 0o755),
            (Directory, "./bin/", "", 0o755),
            (Regular, "./bin/sh", "#!shell", 0o555),
            (Regular, "./usr/bin/su", "su", 0o4555),
            (Symlink, "./usr/bin/sh", "/bin/sh", 0o777),
            (Link, "./bin/-sh", "./bin/sh", 0o555),
            (Regular, "./etc/motd", "old", 0o644),
            (Regular, "./etc/motd", "new", 0o644),
        ]);
        let done = extract(&t[..], &root, LIMITS).unwrap();
        assert_eq!(done, Extracted { entries: 8, bytes: 7 + 2 + 3 + 3 });
        assert_eq!(fs::read_to_string(root.join("bin/sh")).unwrap(), "#!shell");
        assert_eq!(fs::metadata(root.join("usr/bin/su")).unwrap().permissions().mode() & 0o7777, 0o4555);
        assert_eq!(fs::read_link(root.join("usr/bin/sh")).unwrap(), PathBuf::from("/bin/sh"));
        assert_eq!(fs::metadata(root.join("bin/-sh")).unwrap().ino(), fs::metadata(root.join("bin/sh")).unwrap().ino());
        assert_eq!(fs::read_to_string(root.join("etc/motd")).unwrap(), "new", "a later entry replaces a file");
        assert_eq!(fs::metadata(root.join("bin/sh")).unwrap().mtime(), 1_700_000_000);
        fs::remove_dir_all(base).unwrap();
    }

    #[test]
    fn hostile_archives_are_refused_and_nothing_lands_outside() {
        let big = "x".repeat(2048);
        let cases: Vec<(&str, Vec<Item>, &str)> = vec![
            ("traversal", vec![(Regular, "../outside/owned", "x", 0o644)], "\"..\""),
            ("deep traversal", vec![(Regular, "a/../../outside/owned", "x", 0o644)], "\"..\""),
            ("absolute", vec![(Regular, "/iocaged-extract-owned", "x", 0o644)], "absolute"),
            ("ZFS's control directory", vec![(Directory, "./.zfs/snapshot/x/", "", 0o755)], "control directory"),
            ("its other spelling", vec![(Directory, ".ZFS/snapshot/x/", "", 0o755)], "control directory"),
            ("a file named like a directory", vec![(Regular, "etc/", "x", 0o644)], "ending in"),
            ("a file named as the root", vec![(Regular, "./", "x", 0o644)], "the root itself"),
            (
                "symlink escape, then a write through it",
                vec![(Symlink, "evil", "../outside", 0o777), (Regular, "evil/owned", "x", 0o644)],
                "through a link",
            ),
            (
                "absolute symlink, then a directory through it",
                vec![(Symlink, "etc", "/etc", 0o777), (Directory, "etc/cron.d", "", 0o755)],
                "through a link",
            ),
            ("hard link to a host file", vec![(Link, "passwd", "/etc/passwd", 0o644)], "outside the release"),
            ("hard link up and out", vec![(Link, "passwd", "../outside/f", 0o644)], "outside the release"),
            (
                "hard link through a symlink",
                vec![(Symlink, "up", "../outside", 0o777), (Link, "f", "up/f", 0o644)],
                "through a link",
            ),
            ("device node", vec![(Char, "dev/mem", "", 0o600)], "device node"),
            ("block device", vec![(Block, "dev/ada0", "", 0o600)], "device node"),
            ("fifo", vec![(Fifo, "tmp/fifo", "", 0o600)], "FIFO"),
            ("oversize", vec![(Regular, "big", &big, 0o644)], "bytes in all"),
            ("a directory over a link", vec![(Symlink, "d", "../outside", 0o777), (Directory, "d", "", 0o755)], "link"),
        ];
        let small = Limits { entries: 1000, bytes: 1024 };
        for (what, entries, needle) in cases {
            let (base, root) = scratch("hostile");
            fs::write(base.join("outside/f"), "host file").unwrap();
            let err = extract(&tarball(&entries)[..], &root, small).unwrap_err();
            assert!(matches!(err, ExtractError::Refused { .. }), "{what}: {err}");
            assert!(err.to_string().contains(needle), "{what}: {err}");
            let outside: Vec<_> =
                fs::read_dir(base.join("outside")).unwrap().flatten().map(|e| e.file_name()).collect();
            assert_eq!(outside, vec![std::ffi::OsString::from("f")], "{what}: the host side is untouched");
            assert_eq!(fs::read_to_string(base.join("outside/f")).unwrap(), "host file", "{what}");
            assert!(!Path::new("/iocaged-extract-owned").exists(), "{what}");
            assert!(!root.join("dev/mem").exists() && !root.join("big").exists(), "{what}");
            fs::remove_dir_all(base).unwrap();
        }
    }

    /// A raw header of `kind` named `name` with `body`, then `rest`.
    fn raw_record(kind: tar::EntryType, name: &str, body: &[u8], rest: &[u8]) -> Vec<u8> {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_mode(0o644);
        h.set_size(body.len() as u64);
        h.set_cksum();
        let mut out = h.as_bytes().to_vec();
        out.extend_from_slice(body);
        out.resize(out.len().div_ceil(512) * 512, 0);
        out.extend_from_slice(rest);
        out
    }

    #[test]
    fn long_names_are_read_here_and_bounded() {
        let (base, root) = scratch("long");
        // The builder writes a GNU long-name record for a name over 100 bytes.
        let long = format!("usr/share/{}/file", "d".repeat(150));
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(2);
        h.set_uid(u64::from(nix::unistd::getuid().as_raw()));
        h.set_gid(u64::from(nix::unistd::getgid().as_raw()));
        h.set_mtime(1);
        b.append_data(&mut h, &long, &b"ok"[..]).unwrap();
        let t = b.into_inner().unwrap();
        assert_eq!(extract(&t[..], &root, LIMITS).unwrap(), Extracted { entries: 2, bytes: 2 });
        assert_eq!(fs::read_to_string(root.join(&long)).unwrap(), "ok");
        // A long-name record of 1 MiB: refused at MAX_EXTENSION, never held whole.
        let flood = raw_record(tar::EntryType::GNULongName, "././@LongLink", &vec![b'a'; 1 << 20], &[]);
        let err = extract(&flood[..], &root, LIMITS).unwrap_err();
        assert!(err.to_string().contains("extension record over"), "{err}");
        // A PAX header naming the entry "../x": the name used is the one checked.
        let pax = raw_record(
            tar::EntryType::XHeader,
            "pax",
            b"16 path=../evil\n",
            &tarball(&[(Regular, "fine", "x", 0o644)]),
        );
        let err = extract(&pax[..], &root, LIMITS).unwrap_err();
        assert!(err.to_string().contains("\"..\""), "{err}");
        let sized =
            raw_record(tar::EntryType::XHeader, "pax", b"12 size=100\n", &tarball(&[(Regular, "f", "x", 0o644)]));
        assert!(extract(&sized[..], &root, LIMITS).unwrap_err().to_string().contains("PAX size"));
        // Too deep, and a name too long.
        let named = |name: &[u8]| {
            let real = tarball(&[(Directory, "placeholder", "", 0o755)]);
            raw_record(tar::EntryType::GNULongName, "././@LongLink", name, &real)
        };
        let deep = vec!["a"; 200].join("/");
        let err = extract(&named(deep.as_bytes())[..], &root, LIMITS).unwrap_err();
        assert!(err.to_string().contains("components"), "{err}");
        let err = extract(&named(&vec![b'n'; 2000])[..], &root, LIMITS).unwrap_err();
        assert!(err.to_string().contains("longer than 1024"), "{err}");
        assert!(err.to_string().len() < 400, "the name is cut in messages: {err}");
        fs::remove_dir_all(base).unwrap();
    }

    #[test]
    fn the_owner_that_means_leave_it_is_refused() {
        let (base, root) = scratch("uid");
        let mut t = tarball(&[(Regular, "su", "x", 0o4755)]);
        let mut h = tar::Header::from_byte_slice(&t[..512]).clone();
        h.set_uid(u64::from(u32::MAX));
        h.set_cksum();
        t[..512].copy_from_slice(h.as_bytes());
        let err = extract(&t[..], &root, LIMITS).unwrap_err();
        assert!(err.to_string().contains("owner out of range"), "{err}");
        assert!(!root.join("su").exists());
        fs::remove_dir_all(base).unwrap();
    }

    #[test]
    fn too_many_entries_and_a_cut_archive_are_refused() {
        let (base, root) = scratch("bounds");
        let many: Vec<_> = (0..5).map(|_| (Directory, "d/", "", 0o755)).collect();
        let err = extract(&tarball(&many)[..], &root, Limits { entries: 4, bytes: 100 }).unwrap_err();
        assert!(err.to_string().contains("more than 4 entries"), "{err}");
        let whole = tarball(&[(Regular, "f", &"y".repeat(3000), 0o644)]);
        let err = extract(&whole[..1024], &root, LIMITS).unwrap_err();
        assert!(matches!(err, ExtractError::Damaged { .. }), "{err}");
        fs::remove_dir_all(base).unwrap();
    }
}
