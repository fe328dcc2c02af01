//! The mounts a FreeBSD jail's start makes on the host, under the jail's
//! root, and stop's unmounts: each nmount(2) as mount(8) would pass it,
//! its target opened beneath the root without following a link, and its
//! filesystem recorded by fsid, so that stop unmounts what was mounted
//! and nothing the jail put in its place.

use std::path::Path;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::mount::{MntFlags, Nmount};

use super::record::{self, Mounted, Unmount};
use super::rt::POLL;
use super::sys;
use crate::runtime::Mount;

/// How long an unmount that finds its filesystem busy is retried.
const UNMOUNT_TIMEOUT: Duration = Duration::from_secs(5);

/// Unmounts what was recorded, newest first, by fsid, each only while the
/// mount table shows it where it was mounted; a busy one is retried for
/// [`UNMOUNT_TIMEOUT`]. Returns what could not be unmounted.
pub(super) fn unmount_all(mounts: &[Mounted]) -> Vec<String> {
    if mounts.is_empty() {
        return Vec::new();
    }
    let table = match sys::mount_table() {
        Ok(t) => t,
        Err(e) => return vec![e],
    };
    let mut errors = Vec::new();
    for u in record::plan_unmounts(mounts, &table) {
        match u {
            Unmount::Gone(_) => {}
            Unmount::Elsewhere { mounted, on } => errors.push(format!(
                "{}: its filesystem is now mounted on {}; left alone",
                mounted.target.display(),
                on.display()
            )),
            Unmount::ByFsid(m) => {
                let deadline = Instant::now() + UNMOUNT_TIMEOUT;
                loop {
                    match sys::unmount_fsid(m.fsid) {
                        Ok(()) | Err(Errno::ENOENT) => break,
                        Err(Errno::EBUSY) if Instant::now() < deadline => std::thread::sleep(POLL),
                        Err(e) => {
                            errors.push(format!("unmounting {}: {e}", m.target.display()));
                            break;
                        }
                    }
                }
            }
        }
    }
    errors
}

/// Mounts `m` on its target after opening that target below the jail's
/// (canonical) root without following a symbolic link, then finds what
/// was mounted there the same way and records its fsid.
pub(super) fn mount_confined(root: &Path, m: &Mount) -> Result<Mounted, String> {
    let target = m.target();
    drop(record::open_beneath(root, target)?);
    mount_one(m)?;
    let check = record::open_beneath(root, target).and_then(|fd| sys::filesystem_of(&fd));
    match check {
        Ok((fsid, on)) if &on == target => Ok(Mounted { target: target.clone(), fsid }),
        Ok((_, on)) => Err(format!("after mounting, {} is on {}", target.display(), on.display())),
        Err(e) => Err(format!("after mounting: {e}")),
    }
}

/// One nmount(2), as mount(8) would pass it.
fn mount_one(m: &Mount) -> Result<(), String> {
    let mut n = Nmount::new();
    let mut flags = MntFlags::empty();
    let ruleset;
    match m {
        Mount::Devfs { target, ruleset: r } => {
            ruleset = r.to_string();
            n.str_opt_owned("fstype", "devfs")
                .str_opt_owned("fspath", target)
                .str_opt_owned("ruleset", ruleset.as_str());
        }
        Mount::Fdescfs { target } => {
            n.str_opt_owned("fstype", "fdescfs").str_opt_owned("fspath", target);
        }
        Mount::Procfs { target } => {
            n.str_opt_owned("fstype", "procfs").str_opt_owned("fspath", target);
        }
        Mount::Fstab { source, target, fstype, options } => {
            n.str_opt_owned("fstype", fstype.as_str()).str_opt_owned("fspath", target);
            // mount_nullfs(8) names the directory shown "target"; the rest
            // take "from".
            n.str_opt_owned(if fstype == "nullfs" { "target" } else { "from" }, source.as_str());
            for o in options {
                match o.split_once('=') {
                    _ if o == "rw" => {}
                    _ if o == "ro" => flags |= MntFlags::MNT_RDONLY,
                    Some((k, v)) => {
                        n.str_opt_owned(k, v);
                    }
                    None => {
                        n.null_opt_owned(o.as_str());
                    }
                }
            }
        }
    }
    n.nmount(flags).map_err(|e| e.to_string())
}
