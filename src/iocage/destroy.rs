//! destroyjail, the four clean actions, and start-up recovery.
//!
//! Rules (where iocage lost data, see iocage-model.md): nothing outside
//! `POOL/iocage` is destroyed (every target is checked with
//! [`Layout::contains`]); a running jail is never destroyed (destroyjail
//! refuses one; the clean actions stop them first); a release or
//! template that jails still depend on is not removed, and the refusal
//! names those jails; of the snapshots around a jail only those made for it
//! (named after its UUID, as iocage named them) are removed, never one a
//! user made.

use std::collections::HashSet;

use crate::runtime::kernel_name;
use crate::zfs::{ErrorKind, Libzfs};

use super::error::ActionError;
use super::jails::{self, INCOMPLETE_PROP, Jail};
use super::layout::Layout;

/// Destroys `name` and everything below it, refusing outside `POOL/iocage`.
fn destroy_tree(lib: &Libzfs, layout: &Layout, name: &str) -> Result<(), ActionError> {
    if !layout.contains(name) {
        return Err(ActionError::OutsideIocage(name.to_string()));
    }
    match lib.destroy_recursive(name) {
        Err(e) if e.kind == ErrorKind::NotFound => Ok(()),
        other => Ok(other?),
    }
}

/// Removes snapshots that no longer have clones. Logged, never fatal: the
/// jail they were made for is already gone.
fn remove_unused(lib: &Libzfs, layout: &Layout, snapshots: &[String]) {
    for snap in snapshots.iter().filter(|s| layout.contains(s)) {
        match lib.destroy(snap) {
            Ok(()) => {}
            Err(e) if matches!(e.kind, ErrorKind::NotFound | ErrorKind::HasDependents) => {}
            Err(e) => tracing::warn!("could not remove snapshot {snap}: {e}"),
        }
    }
}

/// Removes every snapshot named `@<uuid>` under the releases, base pieces
/// and jails (what a create of that UUID took), where nothing depends on it.
/// Looks at every dataset there: for a jail whose origins are known,
/// [`remove_snapshots_made_for`] looks only where it came from.
pub fn remove_snapshots_named(lib: &Libzfs, layout: &Layout, uuid: &str) {
    remove_snapshots_named_under(lib, layout, uuid, &[layout.releases(), layout.base(), layout.jails()]);
}

fn remove_snapshots_named_under(lib: &Libzfs, layout: &Layout, uuid: &str, tops: &[String]) {
    let mut found = Vec::new();
    for top in tops {
        if let Ok(all) = lib.descendants(top) {
            for fs in all {
                let snap = format!("{fs}@{uuid}");
                if lib.exists(&snap) {
                    found.push(snap);
                }
            }
        }
    }
    // Children's snapshots first, so that clones inside go before origins.
    found.reverse();
    remove_unused(lib, layout, &found);
}

/// What `jail` was made from: the releases, base pieces or jails (the
/// datasets right under the layout's collections) that hold the origin of
/// one of its datasets, where the origin snapshot is named after the jail
/// (made for it by its create or clone; a user's snapshot is not).
fn made_from(lib: &Libzfs, layout: &Layout, jail: &Jail) -> Result<Vec<String>, ActionError> {
    let made_for_it = format!("@{}", jail.uuid);
    let mut sources = Vec::new();
    for fs in lib.descendants(&jail.dataset)? {
        if let Some(entry) = origin(lib, &fs)?.filter(|o| o.ends_with(&made_for_it)).and_then(|o| entry_of(layout, &o))
        {
            if !sources.contains(&entry) {
                sources.push(entry);
            }
        }
    }
    Ok(sources)
}

/// The snapshot `fs` was cloned from, if it is a clone.
fn origin(lib: &Libzfs, fs: &str) -> Result<Option<String>, ActionError> {
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

fn running_iocage_jails(jails: &[Jail], running: &HashSet<String>) -> Vec<String> {
    jails
        .iter()
        .filter(|j| running.contains(&kernel_name(&j.uuid)))
        .map(|j| format!("{} ({})", j.uuid, j.tag()))
        .collect()
}

/// destroyjail: refuses a running jail; removes its datasets and the
/// snapshots made for it.
pub fn destroy_jail(lib: &Libzfs, layout: &Layout, jail: &Jail, running: &HashSet<String>) -> Result<(), ActionError> {
    if running.contains(&kernel_name(&jail.uuid)) {
        return Err(ActionError::JailRunning(format!("{} ({})", jail.uuid, jail.tag())));
    }
    // Where it came from, read before it goes: the snapshots made for it
    // are there (its clones' origins, and for a basejail the base's own
    // recursive snapshot too). Looking only there keeps a destroy as cheap
    // on a pool of 1000 jails as on one of 10.
    let sources = made_from(lib, layout, jail)?;
    destroy_tree(lib, layout, &jail.dataset)?;
    remove_snapshots_named_under(lib, layout, &jail.uuid, &sources);
    Ok(())
}

/// Jails with a dataset cloned from something under `top`.
fn dependents_of(lib: &Libzfs, jails: &[Jail], top: &str) -> Result<Vec<String>, ActionError> {
    let prefix = format!("{top}/");
    let mut out = Vec::new();
    for j in jails {
        for fs in lib.descendants(&j.dataset)? {
            if origin(lib, &fs)?.is_some_and(|o| o.starts_with(&prefix)) {
                out.push(format!("{} ({})", j.uuid, j.tag()));
                break;
            }
        }
    }
    Ok(out)
}

/// Refuses, before anything is destroyed, when a clone outside one of
/// `tops` depends on a snapshot inside it: a clean is all or nothing.
fn check_removable(lib: &Libzfs, layout: &Layout, tops: &[String]) -> Result<(), ActionError> {
    for top in tops.iter().filter(|t| lib.exists(t)) {
        if !layout.contains(top) {
            return Err(ActionError::OutsideIocage(top.clone()));
        }
        let outside = lib.outside_dependents(top)?;
        if !outside.is_empty() {
            return Err(ActionError::HasDependents { what: top.clone(), dependents: outside });
        }
    }
    Ok(())
}

/// Destroys `top` (if it exists) and creates it again, empty.
fn empty_out(lib: &Libzfs, layout: &Layout, top: &str) -> Result<(), ActionError> {
    if lib.exists(top) {
        destroy_tree(lib, layout, top)?;
        lib.create_filesystem(top, &[])?;
        lib.mount(top)?;
    }
    Ok(())
}

/// How far a clean is: `(done, total, dataset destroyed last)`.
pub type OnDestroyed<'a> = &'a mut dyn FnMut(u64, u64, &str);

/// Destroys what is right under each of `tops` (a jail, a release, ...) one
/// at a time, then the tops themselves, calling `on_each` after each. The
/// order is worked out before anything is destroyed: an entry holding
/// clones of another's snapshots goes first (a jail before the release it
/// was cloned from). Entries that hold clones of each other (a circle, as
/// `zfs promote` can make) go last, together, as one tree. A clone outside
/// all the entries is refused before anything is destroyed.
fn destroy_entries(lib: &Libzfs, layout: &Layout, tops: &[String], on_each: OnDestroyed) -> Result<(), ActionError> {
    let tops: Vec<&String> = tops.iter().filter(|t| lib.exists(t)).collect();
    let mut entries = Vec::new();
    for top in &tops {
        entries.extend(lib.children(top)?);
    }
    let mut clones = Vec::with_capacity(entries.len());
    for entry in &entries {
        clones.push(lib.outside_clones(entry)?);
    }
    let Order { one_by_one, together } = destroy_order(&entries, &clones)?;
    let total = (entries.len() + tops.len()) as u64;
    let mut done = 0;
    for name in one_by_one.into_iter().map(|i| &entries[i]) {
        destroy_tree(lib, layout, name)?;
        done += 1;
        on_each(done, total, name);
    }
    let together: Vec<String> = together.into_iter().map(|i| entries[i].clone()).collect();
    if !together.is_empty() {
        if let Some(outside) = together.iter().find(|n| !layout.contains(n)) {
            return Err(ActionError::OutsideIocage(outside.clone()));
        }
        lib.destroy_together(&together)?;
        for name in &together {
            done += 1;
            on_each(done, total, name);
        }
    }
    for top in tops {
        destroy_tree(lib, layout, top)?;
        done += 1;
        on_each(done, total, top);
    }
    Ok(())
}

/// The order to destroy `entries` in, given each one's clones outside it
/// as (clone, snapshot): every entry after those holding its clones; then
/// those caught in a circle of clones (and those waiting on them), to be
/// destroyed together. Or the entry a clone outside them all depends on.
fn destroy_order(entries: &[String], clones: &[Vec<(String, String)>]) -> Result<Order, ActionError> {
    let holder = |clone: &str| {
        entries.iter().position(|e| clone.strip_prefix(e.as_str()).is_some_and(|r| r.is_empty() || r.starts_with('/')))
    };
    // waits_for[i]: the entries holding clones of i's snapshots.
    let mut waits_for: Vec<Vec<usize>> = Vec::with_capacity(entries.len());
    for (i, outside) in clones.iter().enumerate() {
        let mut holders = Vec::new();
        for (clone, snap) in outside {
            match holder(clone) {
                Some(h) if h != i => holders.push(h),
                Some(_) => {}
                None => {
                    let dependents = vec![format!("{clone} (clone of {snap})")];
                    return Err(ActionError::HasDependents { what: entries[i].clone(), dependents });
                }
            }
        }
        waits_for.push(holders);
    }
    let mut order = Vec::with_capacity(entries.len());
    let mut gone = vec![false; entries.len()];
    loop {
        let ready: Vec<usize> =
            (0..entries.len()).filter(|&i| !gone[i] && waits_for[i].iter().all(|&h| gone[h])).collect();
        if ready.is_empty() {
            break;
        }
        for i in ready {
            gone[i] = true;
            order.push(i);
        }
    }
    let together = (0..entries.len()).filter(|&i| !gone[i]).collect();
    Ok(Order { one_by_one: order, together })
}

/// Indices of entries: those destroyed one at a time, in this order, and
/// then those destroyed together.
#[derive(Debug, PartialEq, Eq)]
struct Order {
    one_by_one: Vec<usize>,
    together: Vec<usize>,
}

/// Refuses when a clone outside `POOL/iocage` depends on a snapshot in it.
fn check_nothing_outside_depends(lib: &Libzfs, layout: &Layout) -> Result<(), ActionError> {
    let root = layout.root();
    if !lib.exists(&root) {
        return Ok(());
    }
    let outside = lib.outside_dependents(&root)?;
    if !outside.is_empty() {
        return Err(ActionError::HasDependents { what: root, dependents: outside });
    }
    Ok(())
}

/// What cleanjails (`everything` false) and cleanall check before they
/// change anything, stopping jails included: that no dataset outside the
/// ones they remove depends on them.
pub fn check_clean(lib: &Libzfs, layout: &Layout, everything: bool) -> Result<(), ActionError> {
    if everything {
        check_nothing_outside_depends(lib, layout)
    } else {
        check_removable(lib, layout, &[layout.jails()])
    }
}

/// cleanjails: every jail, with the snapshots made for them.
pub fn clean_jails(
    lib: &Libzfs,
    layout: &Layout,
    running: &HashSet<String>,
    on_each: OnDestroyed,
) -> Result<(), ActionError> {
    let jails = jails::read_all_with_incomplete(lib, layout)?;
    let up = running_iocage_jails(&jails, running);
    if !up.is_empty() {
        return Err(ActionError::JailsRunning(up));
    }
    check_removable(lib, layout, &[layout.jails()])?;
    if lib.exists(&layout.jails()) {
        destroy_entries(lib, layout, &[layout.jails()], on_each)?;
        lib.create_filesystem(&layout.jails(), &[])?;
        lib.mount(&layout.jails())?;
    }
    for j in &jails {
        remove_snapshots_named(lib, layout, &j.uuid);
    }
    Ok(())
}

/// cleanreleases: the fetched releases, their base pieces and downloads;
/// refused while jails depend on them.
pub fn clean_releases(lib: &Libzfs, layout: &Layout) -> Result<(), ActionError> {
    let jails = jails::read_all_with_incomplete(lib, layout)?;
    for top in [layout.releases(), layout.base()] {
        let deps = dependents_of(lib, &jails, &top)?;
        if !deps.is_empty() {
            return Err(ActionError::HasDependents { what: top, dependents: deps });
        }
    }
    let tops = [layout.releases(), layout.base(), layout.download()];
    check_removable(lib, layout, &tops)?;
    for top in &tops {
        empty_out(lib, layout, top)?;
    }
    Ok(())
}

/// A release's datasets: its root under `releases`, its base pieces, its
/// downloads (those that exist).
fn release_entries(lib: &Libzfs, layout: &Layout, release: &str) -> Vec<String> {
    [layout.releases(), layout.base(), layout.download()]
        .into_iter()
        .map(|top| format!("{top}/{release}"))
        .filter(|e| lib.exists(e))
        .collect()
}

/// Who holds clones of `entries`' snapshots: a jail as `uuid (tag)`, else
/// the dataset (a template, or anything else).
fn holders(lib: &Libzfs, layout: &Layout, jails: &[Jail], entries: &[String]) -> Result<Vec<String>, ActionError> {
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
pub fn list_releases(lib: &Libzfs, layout: &Layout) -> Result<Vec<(String, Vec<String>)>, ActionError> {
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
pub fn destroy_release(lib: &Libzfs, layout: &Layout, release: &str) -> Result<(), ActionError> {
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

/// cleantemplates: the templates; refused while jails depend on them.
pub fn clean_templates(lib: &Libzfs, layout: &Layout) -> Result<(), ActionError> {
    let jails = jails::read_all_with_incomplete(lib, layout)?;
    let deps = dependents_of(lib, &jails, &layout.templates())?;
    if !deps.is_empty() {
        return Err(ActionError::HasDependents { what: layout.templates(), dependents: deps });
    }
    check_removable(lib, layout, &[layout.templates()])?;
    empty_out(lib, layout, &layout.templates())
}

/// cleanall: everything under `POOL/iocage` (and nothing else): refused
/// only when a clone outside it depends on it (jails cloned from its
/// releases and templates go with them).
pub fn clean_all(
    lib: &Libzfs,
    layout: &Layout,
    running: &HashSet<String>,
    on_each: OnDestroyed,
) -> Result<(), ActionError> {
    let jails = jails::read_all_with_incomplete(lib, layout)?;
    let up = running_iocage_jails(&jails, running);
    if !up.is_empty() {
        return Err(ActionError::JailsRunning(up));
    }
    check_nothing_outside_depends(lib, layout)?;
    let children =
        lib.children(&layout.root()).or_else(|e| if e.kind == ErrorKind::NotFound { Ok(vec![]) } else { Err(e) })?;
    destroy_entries(lib, layout, &children, on_each)
}

/// Start-up: removes every jail a create left incomplete (the daemon
/// stopped or crashed part-way) with the snapshots taken for it. Returns
/// the UUIDs removed.
pub fn recover(lib: &Libzfs, layout: &Layout) -> Result<Vec<String>, ActionError> {
    let mut removed = Vec::new();
    for j in jails::read_all_with_incomplete(lib, layout)?.into_iter().filter(|j| j.incomplete) {
        destroy_tree(lib, layout, &j.dataset)?;
        remove_snapshots_named(lib, layout, &j.uuid);
        removed.push(j.uuid);
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

/// Whether `releases/<release>` carries the marker of a fetch not finished.
pub fn is_incomplete_release(lib: &Libzfs, layout: &Layout, release: &str) -> Result<bool, ActionError> {
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
pub fn destroy_incomplete_release(lib: &Libzfs, layout: &Layout, release: &str) -> Result<(), ActionError> {
    if is_incomplete_release(lib, layout, release)? {
        destroy_tree(lib, layout, &format!("{}/{release}", layout.releases()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(clone: &str, snap: &str) -> (String, String) {
        (clone.to_string(), snap.to_string())
    }

    #[test]
    fn entries_go_after_those_holding_their_clones() {
        let entries: Vec<String> =
            ["t/iocage/base/R", "t/iocage/jails/a", "t/iocage/jails/b", "t/iocage/releases/R"].map(String::from).into();
        let clones = vec![
            vec![pair("t/iocage/jails/a/root/bin", "t/iocage/base/R/root/bin@a")],
            vec![pair("t/iocage/jails/b/root", "t/iocage/jails/a/root@b")],
            vec![],
            vec![
                pair("t/iocage/jails/b/root", "t/iocage/releases/R/root@b"),
                pair("t/iocage/releases/R/x", "t/iocage/releases/R/root@x"),
            ],
        ];
        let Order { one_by_one: order, together } = destroy_order(&entries, &clones).unwrap();
        let at = |i| order.iter().position(|&o| o == i).unwrap();
        assert!(at(2) < at(1) && at(1) < at(0), "b, then a, then the base: {order:?}");
        assert!(at(2) < at(3), "b before its release: {order:?}");
        assert_eq!((order.len(), together), (4, vec![]));
    }

    #[test]
    fn a_circle_goes_together_and_a_clone_outside_is_refused() {
        let entries: Vec<String> =
            ["t/iocage/jails/a", "t/iocage/jails/b", "t/iocage/jails/c", "t/iocage/jails/d"].map(String::from).into();
        // a and b hold clones of each other; c holds a clone of d.
        let circle = vec![
            vec![pair("t/iocage/jails/b", "t/iocage/jails/a@x")],
            vec![pair("t/iocage/jails/a/data", "t/iocage/jails/b@y")],
            vec![],
            vec![pair("t/iocage/jails/c", "t/iocage/jails/d@z")],
        ];
        assert_eq!(destroy_order(&entries, &circle).unwrap(), Order { one_by_one: vec![2, 3], together: vec![0, 1] });
        let outside = vec![vec![], vec![pair("t/elsewhere", "t/iocage/jails/b@z")], vec![], vec![]];
        assert_eq!(
            destroy_order(&entries, &outside).unwrap_err(),
            ActionError::HasDependents {
                what: "t/iocage/jails/b".into(),
                dependents: vec!["t/elsewhere (clone of t/iocage/jails/b@z)".into()]
            }
        );
        // A name that only starts like an entry is not inside it.
        let lookalike = vec![vec![pair("t/iocage/jails/ab", "t/iocage/jails/a@q")], vec![], vec![], vec![]];
        assert!(destroy_order(&entries, &lookalike).is_err());
    }

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
