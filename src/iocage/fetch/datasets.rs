//! fetchrelease's steps on the pool, on the libzfs owner thread: no release
//! of that name yet, the download dataset, the release's datasets made
//! (marked incomplete, closed to other users) and finished, or destroyed
//! when the fetch fails.

use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::iocage::error::ActionError;
use crate::iocage::jails::INCOMPLETE_PROP;
use crate::iocage::layout::Layout;
use crate::zfs::Backend;

use super::failed;

/// Step 1 (owner thread): no release of that name yet.
pub(super) fn refuse_existing(lib: &dyn Backend, layout: &Layout, release: &str) -> Result<(), ActionError> {
    let dataset = format!("{}/{release}", layout.releases());
    if lib.exists(&dataset) {
        return Err(ActionError::ReleaseExists(release.to_string(), dataset));
    }
    Ok(())
}

/// Step 3 (owner thread): the download dataset there and mounted; its path.
pub(super) fn prepare(lib: &dyn Backend, layout: &Layout, release: &str) -> Result<PathBuf, ActionError> {
    crate::iocage::create::ensure(lib, &layout.root(), &[("mountpoint", "/iocage")])?;
    crate::iocage::create::ensure(lib, &layout.download(), &[])?;
    let dl = format!("{}/{release}", layout.download());
    crate::iocage::create::ensure(lib, &dl, &[])?;
    lib.mount(&dl)?;
    mountpoint(lib, &dl)
}

/// The download dataset of `release`, removed (it holds nothing).
pub(super) fn forget_downloads(lib: &dyn Backend, layout: &Layout, release: &str) -> Result<(), ActionError> {
    let dl = format!("{}/{release}", layout.download());
    if layout.contains(&dl) && lib.exists(&dl) {
        lib.destroy(&dl)?;
    }
    Ok(())
}

fn mountpoint(lib: &dyn Backend, dataset: &str) -> Result<PathBuf, ActionError> {
    let props = lib.native_props(dataset, &["mountpoint"])?;
    match props.get("mountpoint").and_then(|m| m.printed.as_deref()) {
        Some(m) if m.starts_with('/') => Ok(PathBuf::from(m)),
        other => Err(ActionError::Io {
            what: format!("use {dataset}"),
            message: format!("it has no mountpoint to work in ({})", other.unwrap_or("none")),
        }),
    }
}

/// Step 4 (owner thread): `releases/<REL>` marked incomplete, with
/// `setuid=off` (the release's setuid programs never run on the host; a
/// jail's clone of it takes its properties from its own parent), its
/// directory closed to other users (0700) before its `root` is made in it;
/// the directory's path.
pub(super) fn begin(lib: &dyn Backend, layout: &Layout, release: &str) -> Result<PathBuf, ActionError> {
    let dataset = format!("{}/{release}", layout.releases());
    refuse_existing(lib, layout, release)?;
    crate::iocage::create::ensure(lib, &layout.releases(), &[])?;
    lib.create_filesystem(&dataset, &[(INCOMPLETE_PROP, "yes"), ("setuid", "off")])?;
    let made = (|| {
        lib.mount(&dataset)?;
        let dir = mountpoint(lib, &dataset)?;
        set_mode(&dir, 0o700).map_err(|e| failed(release, format!("cannot close {}: {e}", dir.display())))?;
        let root = format!("{dataset}/root");
        lib.create_filesystem(&root, &[])?;
        lib.mount(&root)?;
        Ok(dir)
    })();
    if made.is_err() {
        if let Err(e) = undo(lib, layout, release) {
            tracing::error!(release, "could not remove the half-made release: {e}; start-up removes it");
        }
    }
    made
}

/// chmod of a directory, never through a link.
pub(super) fn set_mode(dir: &Path, mode: u32) -> std::io::Result<()> {
    let d = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(dir)?;
    nix::sys::stat::fchmod(d.as_fd(), nix::sys::stat::Mode::from_bits_truncate(mode as nix::sys::stat::mode_t))?;
    Ok(())
}

/// Step 5 (owner thread): the marker removed.
pub(super) fn finish(lib: &dyn Backend, layout: &Layout, release: &str) -> Result<(), ActionError> {
    Ok(lib.inherit(&format!("{}/{release}", layout.releases()), INCOMPLETE_PROP)?)
}

/// What a failed fetch made of the release: destroyed.
pub(super) fn undo(lib: &dyn Backend, layout: &Layout, release: &str) -> Result<(), ActionError> {
    crate::iocage::destroy::destroy_incomplete_release(lib, layout, release)
}
