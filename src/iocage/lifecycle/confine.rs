//! What the host does to a jail's files before the jail starts, as root:
//! the jail's directory must be its own place under the jails dataset, its
//! mount targets must stay inside its root, and its resolv.conf is written
//! without following anything the jail's root could have planted.

use std::path::Path;

use crate::runtime::Mount;

use super::Plan;

/// The jail's directory must be `<jails>/<uuid>`: a dataset mounted
/// anywhere else (`mountpoint=/etc`) would put the jail's files over the
/// host's, and its root's writes with them.
pub(super) fn check_home(plan: &Plan) -> Result<(), String> {
    let Some(jails) = &plan.jails_dir else {
        return Err("the mountpoint of the pool's iocage/jails is unknown".into());
    };
    let want = jails.join(&plan.uuid);
    if plan.dir != want || !jails.is_absolute() || jails.components().any(|c| c.as_os_str() == "..") {
        return Err(format!(
            "its dataset is mounted at {}, not at {}; set its mountpoint back (zfs inherit mountpoint)",
            plan.dir.display(),
            want.display()
        ));
    }
    Ok(())
}

/// Resolves every mount target (following links) and refuses one that
/// leads outside the jail's root: a jail's files must not be able to
/// point a host mount elsewhere. A target that does not exist yet (made
/// by an earlier mount, like `dev/fd`) is checked through its parent.
pub(super) fn confine_mounts(root: &Path, mounts: &[Mount]) -> Result<Vec<Mount>, String> {
    let root = root.canonicalize().map_err(|e| format!("{}: {e}", root.display()))?;
    mounts
        .iter()
        .map(|m| {
            let t = m.target();
            let real = match t.canonicalize() {
                Ok(r) => r,
                Err(_) => {
                    let parent = t.parent().unwrap_or(t);
                    let name = t.file_name().ok_or_else(|| format!("{}: no such directory", t.display()))?;
                    parent.canonicalize().map_err(|e| format!("{}: {e}", t.display()))?.join(name)
                }
            };
            if !real.starts_with(&root) {
                return Err(format!("{} leads to {}, outside the jail's root", t.display(), real.display()));
            }
            let mut m = m.clone();
            match &mut m {
                Mount::Devfs { target, .. }
                | Mount::Fdescfs { target }
                | Mount::Procfs { target }
                | Mount::Fstab { target, .. } => *target = real,
            }
            Ok(m)
        })
        .collect()
}

/// Writes the jail's `/etc/resolv.conf` from `resolver`: `none` copies the
/// host's (as iocage did), anything else is the file's text with `;`
/// between lines. Walked from the jail's root one component at a time
/// (`etc`, then `resolv.conf`), never following a link: an `/etc` that is
/// a link is refused, and so is a `resolv.conf` that is not a regular file.
/// A file that already holds the text (the jail started before) is left
/// as it is: emptying it makes ZFS free its blocks, 1 to 6 ms of a start
/// in the guest's trace.
pub(super) fn write_resolver(root: &Path, resolver: &str) -> Result<(), String> {
    use nix::fcntl::{AT_FDCWD, OFlag, openat};
    use nix::sys::stat::Mode;
    use std::os::unix::fs::FileExt;
    let text = match resolver {
        "-" | "" => return Ok(()),
        "none" => match std::fs::read_to_string("/etc/resolv.conf") {
            Ok(t) => t,
            Err(_) => return Ok(()),
        },
        r => r.split(';').map(str::trim).collect::<Vec<_>>().join("\n") + "\n",
    };
    let dir = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let path = root.join("etc/resolv.conf");
    let failed = |e: nix::Error| format!("{}: {e}", path.display());
    let root_fd = openat(AT_FDCWD, root, dir, Mode::empty()).map_err(|e| format!("{}: {e}", root.display()))?;
    let etc = match openat(&root_fd, "etc", dir, Mode::empty()) {
        Ok(fd) => fd,
        Err(nix::Error::ENOENT) => return Ok(()), // no /etc: nothing to resolve with
        Err(nix::Error::ELOOP | nix::Error::ENOTDIR) => {
            return Err(format!("{} is not a directory (a link is not followed)", root.join("etc").display()));
        }
        Err(e) => return Err(format!("{}: {e}", root.join("etc").display())),
    };
    // Not truncated on open, and never waiting on it: a FIFO the jail's
    // root left there would block a writer's open until a reader came
    // (none does: the jail is not running), holding the jail's turn.
    let file =
        OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_NOCTTY | OFlag::O_CLOEXEC;
    let fd = openat(&etc, "resolv.conf", file, Mode::from_bits_truncate(0o644)).map_err(failed)?;
    let f = std::fs::File::from(fd);
    let io = |e: std::io::Error| format!("{}: {e}", path.display());
    let meta = f.metadata().map_err(io)?;
    if !meta.is_file() {
        return Err(format!("{} is not a regular file", path.display()));
    }
    // Read only when its size is the text's: no more than that is read.
    if meta.len() == text.len() as u64 {
        let mut there = vec![0; text.len()];
        if f.read_exact_at(&mut there, 0).is_ok() && there == text.as_bytes() {
            return Ok(());
        }
    }
    f.set_len(0).and_then(|()| f.write_all_at(text.as_bytes(), 0)).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iocage::jails::test_jail;
    use crate::iocage::lifecycle::plan;

    #[test]
    fn a_jail_lives_only_in_its_place_under_the_jails_dataset() {
        let mut p = plan(&test_jail("u1", &[("mountpoint", "/iocage/jails/u1")])).unwrap();
        assert!(check_home(&p).unwrap_err().contains("unknown"), "no place known: refused");
        p.jails_dir = Some("/iocage/jails".into());
        check_home(&p).unwrap();
        for elsewhere in ["/", "/etc", "/root", "/iocage/jails/u2", "/iocage/jails/u1/root", "/iocage/jails/../u1"] {
            let mut p = plan(&test_jail("u1", &[("mountpoint", elsewhere)])).unwrap();
            p.jails_dir = Some("/iocage/jails".into());
            assert!(check_home(&p).unwrap_err().contains("not at /iocage/jails/u1"), "{elsewhere}");
        }
    }

    #[test]
    fn mounts_cannot_be_pointed_outside_the_root() {
        let base = std::env::temp_dir().join(format!("iocaged-confine-{}", std::process::id()));
        let root = base.join("root");
        std::fs::create_dir_all(root.join("dev")).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("proc")).unwrap();
        let ok = confine_mounts(&root, &[Mount::Fdescfs { target: root.join("dev/fd") }]).unwrap();
        assert_eq!(ok[0].target(), &root.canonicalize().unwrap().join("dev/fd"));
        let err = confine_mounts(&root, &[Mount::Procfs { target: root.join("proc") }]).unwrap_err();
        assert!(err.contains("outside the jail's root"), "{err}");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::os::unix::fs::symlink("/nonexistent-target", root.join("etc/resolv.conf")).unwrap();
        assert!(write_resolver(&root, "nameserver 10.0.0.1").is_err(), "never writes through a link");
        std::fs::remove_file(root.join("etc/resolv.conf")).unwrap();
        let made = std::process::Command::new("mkfifo").arg(root.join("etc/resolv.conf")).status().unwrap();
        assert!(made.success());
        let err = write_resolver(&root, "nameserver 10.0.0.1").unwrap_err();
        assert!(err.contains("resolv.conf"), "a FIFO is refused, not waited on: {err}");
        std::fs::remove_file(root.join("etc/resolv.conf")).unwrap();
        write_resolver(&root, "nameserver 10.0.0.1;search example").unwrap();
        let resolv = root.join("etc/resolv.conf");
        assert_eq!(std::fs::read_to_string(&resolv).unwrap(), "nameserver 10.0.0.1\nsearch example\n");
        // The same text again: the file is not written (its times stay).
        let epoch = nix::sys::time::TimeSpec::new(0, 0);
        nix::sys::stat::utimensat(
            nix::fcntl::AT_FDCWD,
            &resolv,
            &epoch,
            &epoch,
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        )
        .unwrap();
        let modified = || std::fs::metadata(&resolv).unwrap().modified().unwrap();
        write_resolver(&root, "nameserver 10.0.0.1;search example").unwrap();
        assert_eq!(modified(), std::time::UNIX_EPOCH, "rewritten with what it held");
        // Another text of the same length replaces it whole.
        write_resolver(&root, "nameserver 10.0.0.9;search example").unwrap();
        assert_eq!(std::fs::read_to_string(&resolv).unwrap(), "nameserver 10.0.0.9\nsearch example\n");
        assert_ne!(modified(), std::time::UNIX_EPOCH);
        // A shorter one leaves nothing of the longer.
        write_resolver(&root, "nameserver 10.0.0.1").unwrap();
        assert_eq!(std::fs::read_to_string(&resolv).unwrap(), "nameserver 10.0.0.1\n");
        // An /etc that is a link (here to a directory inside the root, so
        // that following it would have passed any check of where it ends).
        std::fs::rename(root.join("etc"), root.join("real-etc")).unwrap();
        std::os::unix::fs::symlink("real-etc", root.join("etc")).unwrap();
        let err = write_resolver(&root, "nameserver 10.0.0.2").unwrap_err();
        assert!(err.contains("not a directory"), "{err}");
        assert!(std::fs::read_to_string(root.join("real-etc/resolv.conf")).unwrap().contains("10.0.0.1"));
        std::fs::remove_dir_all(&base).unwrap();
    }
}
