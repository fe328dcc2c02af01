//! destroyjail, the four clean actions, listreleases and destroyrelease,
//! and start-up recovery.
//!
//! Rules (where iocage lost data, see iocage-model.md): nothing outside
//! `POOL/iocage` is destroyed (every target is checked with
//! [`Layout::contains`]); a running jail is never destroyed (destroyjail
//! refuses one; the clean actions stop them first); a release or
//! template that jails still depend on is not removed, and the refusal
//! names those jails; of the snapshots around a jail only those made for it
//! (named after its UUID, as iocage named them) are removed, never one a
//! user made.
//!
//! The pieces: `jail`, destroyjail and the snapshots made for a jail;
//! `clean`, the four clean actions and the order they destroy a tree's
//! entries in; `releases`, listreleases, destroyrelease and the releases a
//! fetch did not finish. This module holds what they share (the checked
//! recursive destroy, a clone's origin, the entry a dataset is under) and
//! start-up recovery ([`recover`]).

use crate::zfs::{Backend, ErrorKind};

use super::error::ActionError;
use super::jails;
use super::layout::Layout;

mod clean;
mod jail;
mod releases;

pub use clean::{check_clean, clean_all, clean_jails, clean_releases, clean_templates};
pub use jail::{destroy_jail, remove_snapshots_named};
pub use releases::{destroy_incomplete_release, destroy_release, is_incomplete_release, list_releases};

/// Destroys `name` and everything below it, refusing outside `POOL/iocage`.
fn destroy_tree(lib: &dyn Backend, layout: &Layout, name: &str) -> Result<(), ActionError> {
    if !layout.contains(name) {
        return Err(ActionError::OutsideIocage(name.to_string()));
    }
    match lib.destroy_recursive(name) {
        Err(e) if e.kind == ErrorKind::NotFound => Ok(()),
        other => Ok(other?),
    }
}

/// The snapshot `fs` was cloned from, if it is a clone.
fn origin(lib: &dyn Backend, fs: &str) -> Result<Option<String>, ActionError> {
    Ok(lib.native_props(fs, &["origin"])?.remove("origin").and_then(|v| v.printed))
}

/// The dataset right under one of the layout's collections that holds
/// `name`: `POOL/iocage/base/13.2-RELEASE` for
/// `POOL/iocage/base/13.2-RELEASE/root/usr@x`.
fn entry_of(layout: &Layout, name: &str) -> Option<String> {
    [layout.releases(), layout.base(), layout.jails(), layout.templates()].into_iter().find_map(|top| {
        let first = name.strip_prefix(&format!("{top}/"))?.split(['/', '@']).next()?;
        Some(format!("{top}/{first}"))
    })
}

/// Start-up: removes every jail a create left incomplete (the daemon
/// stopped or crashed part-way) with the snapshots taken for it, and every
/// release a fetch left unfinished. Returns what it removed: jails by
/// UUID, releases as `release <name>`.
pub fn recover(lib: &dyn Backend, layout: &Layout) -> Result<Vec<String>, ActionError> {
    let mut removed = Vec::new();
    for j in jails::read_all_with_incomplete(lib, layout)?.into_iter().filter(|j| j.incomplete) {
        destroy_tree(lib, layout, &j.dataset)?;
        remove_snapshots_named(lib, layout, &j.uuid);
        removed.push(j.uuid.clone());
    }
    let releases = match lib.children(&layout.releases()) {
        Err(e) if e.kind == ErrorKind::NotFound => Vec::new(),
        other => other?,
    };
    for dataset in releases {
        let release = dataset.rsplit('/').next().unwrap_or_default().to_string();
        if is_incomplete_release(lib, layout, &release)? {
            destroy_incomplete_release(lib, layout, &release)?;
            removed.push(format!("release {release}"));
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_is_the_entry_right_under_a_collection() {
        let l = Layout::new("tank");
        let entry = |n: &str| entry_of(&l, n);
        assert_eq!(
            entry("tank/iocage/base/13.2-RELEASE/root/usr/bin@x").as_deref(),
            Some("tank/iocage/base/13.2-RELEASE")
        );
        assert_eq!(
            entry("tank/iocage/releases/13.2-RELEASE/root@x").as_deref(),
            Some("tank/iocage/releases/13.2-RELEASE")
        );
        assert_eq!(entry("tank/iocage/jails/abcd@x").as_deref(), Some("tank/iocage/jails/abcd"));
        assert_eq!(entry("tank/iocage/releasesX/r@x"), None, "a lookalike name is no collection");
        assert_eq!(entry("tank/other/releases/r@x"), None, "outside the layout");
    }
}
