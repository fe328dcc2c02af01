//! destroyjail: a jail's datasets, and the snapshots made for it (found
//! where it was made from, before it goes); also every snapshot named
//! after a UUID, for a create undone or recovered.

use std::collections::HashSet;

use crate::iocage::error::ActionError;
use crate::iocage::jails::Jail;
use crate::iocage::layout::Layout;
use crate::runtime::kernel_name;
use crate::zfs::{Backend, ErrorKind};

use super::{destroy_tree, entry_of, origin};

/// Removes snapshots that no longer have clones. Logged, never fatal: the
/// jail they were made for is already gone.
fn remove_unused(lib: &dyn Backend, layout: &Layout, snapshots: &[String]) {
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
/// [`destroy_jail`] looks only where it came from ([`made_from`]).
pub fn remove_snapshots_named(lib: &dyn Backend, layout: &Layout, uuid: &str) {
    remove_snapshots_named_under(lib, layout, uuid, &[layout.releases(), layout.base(), layout.jails()]);
}

fn remove_snapshots_named_under(lib: &dyn Backend, layout: &Layout, uuid: &str, tops: &[String]) {
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
fn made_from(lib: &dyn Backend, layout: &Layout, jail: &Jail) -> Result<Vec<String>, ActionError> {
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

/// destroyjail: refuses a running jail; removes its datasets and the
/// snapshots made for it.
pub fn destroy_jail(
    lib: &dyn Backend,
    layout: &Layout,
    jail: &Jail,
    running: &HashSet<String>,
) -> Result<(), ActionError> {
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
