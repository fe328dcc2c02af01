//! The four clean actions (cleanjails, cleanreleases, cleantemplates,
//! cleanall): what they check before changing anything, and the order
//! they destroy a tree's entries in (clones before their origins, a
//! circle of clones together).

use std::collections::HashSet;
use std::sync::Arc;

use crate::iocage::error::ActionError;
use crate::iocage::jails::{self, Jail};
use crate::iocage::layout::Layout;
use crate::runtime::kernel_name;
use crate::zfs::{Backend, ErrorKind};

use super::{destroy_tree, origin, remove_snapshots_named};

fn running_iocage_jails(jails: &[Arc<Jail>], running: &HashSet<String>) -> Vec<String> {
    jails
        .iter()
        .filter(|j| running.contains(&kernel_name(&j.uuid)))
        .map(|j| format!("{} ({})", j.uuid, j.tag()))
        .collect()
}

/// Jails with a dataset cloned from something under `top`.
fn dependents_of(lib: &dyn Backend, jails: &[Arc<Jail>], top: &str) -> Result<Vec<String>, ActionError> {
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
fn check_removable(lib: &dyn Backend, layout: &Layout, tops: &[String]) -> Result<(), ActionError> {
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
fn empty_out(lib: &dyn Backend, layout: &Layout, top: &str) -> Result<(), ActionError> {
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
fn destroy_entries(
    lib: &dyn Backend,
    layout: &Layout,
    tops: &[String],
    on_each: OnDestroyed,
) -> Result<(), ActionError> {
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
fn check_nothing_outside_depends(lib: &dyn Backend, layout: &Layout) -> Result<(), ActionError> {
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
pub fn check_clean(lib: &dyn Backend, layout: &Layout, everything: bool) -> Result<(), ActionError> {
    if everything {
        check_nothing_outside_depends(lib, layout)
    } else {
        check_removable(lib, layout, &[layout.jails()])
    }
}

/// Every jail, incomplete ones too; refused, naming them, while any of
/// them runs.
fn all_stopped(lib: &dyn Backend, layout: &Layout, running: &HashSet<String>) -> Result<Vec<Arc<Jail>>, ActionError> {
    let jails = jails::read_all_with_incomplete(lib, layout)?;
    let up = running_iocage_jails(&jails, running);
    if up.is_empty() { Ok(jails) } else { Err(ActionError::JailsRunning(up)) }
}

/// cleanjails: every jail, with the snapshots made for them.
pub fn clean_jails(
    lib: &dyn Backend,
    layout: &Layout,
    running: &HashSet<String>,
    on_each: OnDestroyed,
) -> Result<(), ActionError> {
    let jails = all_stopped(lib, layout, running)?;
    check_clean(lib, layout, false)?;
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
pub fn clean_releases(lib: &dyn Backend, layout: &Layout) -> Result<(), ActionError> {
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

/// cleantemplates: the templates; refused while jails depend on them.
pub fn clean_templates(lib: &dyn Backend, layout: &Layout) -> Result<(), ActionError> {
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
    lib: &dyn Backend,
    layout: &Layout,
    running: &HashSet<String>,
    on_each: OnDestroyed,
) -> Result<(), ActionError> {
    all_stopped(lib, layout, running)?;
    check_clean(lib, layout, true)?;
    let children =
        lib.children(&layout.root()).or_else(|e| if e.kind == ErrorKind::NotFound { Ok(vec![]) } else { Err(e) })?;
    destroy_entries(lib, layout, &children, on_each)
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
}
