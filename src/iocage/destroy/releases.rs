//! Releases: listreleases, destroyrelease (refused while jails or
//! templates depend on one), and the marker of a fetch not finished.

use crate::iocage::error::ActionError;
use crate::iocage::jails::{self, INCOMPLETE_PROP, Jail};
use crate::iocage::layout::Layout;
use crate::zfs::{Backend, ErrorKind};
use std::sync::Arc;

use super::{destroy_tree, entry_of};

/// A release's datasets: its root under `releases`, its base pieces, its
/// downloads (those that exist).
fn release_entries(lib: &dyn Backend, layout: &Layout, release: &str) -> Vec<String> {
    [layout.releases(), layout.base(), layout.download()]
        .into_iter()
        .map(|top| format!("{top}/{release}"))
        .filter(|e| lib.exists(e))
        .collect()
}

/// Who holds clones of `entries`' snapshots: a jail as `uuid (tag)`, else
/// the dataset (a template, or anything else).
fn holders(
    lib: &dyn Backend,
    layout: &Layout,
    jails: &[Arc<Jail>],
    entries: &[String],
) -> Result<Vec<String>, ActionError> {
    let mut out: Vec<String> = Vec::new();
    for entry in entries {
        for (clone, _) in lib.outside_clones(entry)? {
            let holder = entry_of(layout, &clone).unwrap_or(clone);
            let named = match jails.iter().find(|j| j.dataset == holder) {
                Some(j) => format!("{} ({})", j.uuid, j.tag()),
                None => holder,
            };
            if !out.contains(&named) {
                out.push(named);
            }
        }
    }
    Ok(out)
}

/// listreleases: every release on the pool (the datasets under
/// `releases`), with the jails and templates that depend on it.
pub fn list_releases(lib: &dyn Backend, layout: &Layout) -> Result<Vec<(String, Vec<String>)>, ActionError> {
    let names = match lib.children(&layout.releases()) {
        Err(e) if e.kind == ErrorKind::NotFound => return Ok(Vec::new()),
        other => other?,
    };
    let jails = jails::read_all_with_incomplete(lib, layout)?;
    let mut out = Vec::with_capacity(names.len());
    for dataset in names {
        let release = dataset.rsplit('/').next().unwrap_or_default().to_string();
        if is_incomplete_release(lib, layout, &release)? {
            continue;
        }
        let entries = release_entries(lib, layout, &release);
        out.push((release, holders(lib, layout, &jails, &entries)?));
    }
    Ok(out)
}

/// destroyrelease: the release's datasets (its root, base pieces and
/// downloads, whichever exist), refused (naming them) while jails or
/// templates depend on it.
pub fn destroy_release(lib: &dyn Backend, layout: &Layout, release: &str) -> Result<(), ActionError> {
    let entries = release_entries(lib, layout, release);
    if entries.is_empty() {
        // (Downloads alone, of a fetch that never finished, are removed.)
        return Err(ActionError::ReleaseNotFound(release.to_string(), format!("{}/{release}", layout.releases())));
    }
    let jails = jails::read_all_with_incomplete(lib, layout)?;
    let dependents = holders(lib, layout, &jails, &entries)?;
    if !dependents.is_empty() {
        return Err(ActionError::HasDependents { what: format!("release {release}"), dependents });
    }
    for entry in &entries {
        destroy_tree(lib, layout, entry)?;
    }
    Ok(())
}

/// Whether `releases/<release>` carries the marker of a fetch not finished.
pub fn is_incomplete_release(lib: &dyn Backend, layout: &Layout, release: &str) -> Result<bool, ActionError> {
    let dataset = format!("{}/{release}", layout.releases());
    match lib.user_props(&dataset) {
        // Set on the release itself (`source` names where a value is set).
        Ok(props) => Ok(props.get(INCOMPLETE_PROP).is_some_and(|p| p.source == dataset)),
        Err(e) if e.kind == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// A release a fetch did not finish: destroyed, if it still carries the
/// marker (a release made otherwise is never removed here).
pub fn destroy_incomplete_release(lib: &dyn Backend, layout: &Layout, release: &str) -> Result<(), ActionError> {
    if is_incomplete_release(lib, layout, release)? {
        destroy_tree(lib, layout, &format!("{}/{release}", layout.releases()))?;
    }
    Ok(())
}
