//! createjail and clonejail.
//!
//! A create runs in steps, each of which either completes or is undone:
//! 1. [`prepare`]: validate every property and the tag, find the source;
//!    nothing is written.
//! 2. [`begin`] (owner thread): create the jail's dataset carrying the
//!    [`INCOMPLETE_PROP`](super::jails::INCOMPLETE_PROP) marker and every
//!    property, then the jail's root (a clone, an empty dataset, or the
//!    snapshot a thick copy starts from).
//! 3. For a thick jail, [`copy`]: the data moves with a ZFS send stream on
//!    blocking threads, so other requests are served meanwhile.
//! 4. [`finish`] (owner thread): mount, the jail's ZFS data dataset,
//!    native properties.
//! 5. [`write_fstab`] (a blocking thread): the jail's fstab, a host file,
//!    written off the owner thread so that a slow filesystem stalls no ZFS
//!    work; a failure is undone with [`abandon`].
//! 6. [`unmark`] (owner thread): the marker removed, last.
//!
//! A step that fails undoes everything the create made ([`undo`]). A crash
//! leaves the marker behind; start-up removes such jails
//! (`destroy::recover`). The marker also hides the jail from listings
//! while it is being made, but not from the tag check.
//!
//! The pieces: `plan`, step 1 (the checks, and the plan they make);
//! `steps`, steps 2 to 6. This module holds the [`Plan`] they
//! share and the [`undo`] any failed step falls back on.

use crate::zfs::Backend;

use super::error::ActionError;
use super::layout::Layout;
use super::props::USER_PREFIX;
use super::request::CreateKind;

mod plan;
mod steps;

pub use plan::{NewJail, prepare, prepare_clone};
pub use steps::{abandon, begin, copy, finish, unmark, write_fstab};

/// Everything a create needs, decided before anything is written.
#[derive(Debug, Clone)]
pub struct Plan {
    pub layout: Layout,
    pub uuid: String,
    pub tag: String,
    pub kind: CreateKind,
    /// createjail: the release (`None` for an empty jail without one).
    pub release: Option<String>,
    /// clonejail: the source jail's UUID.
    pub source: Option<String>,
    /// ZFS user properties for the jail's dataset.
    user: Vec<(String, String)>,
    /// Native properties the client asked for, set in the last step.
    native: Vec<(String, String)>,
}

impl Plan {
    pub fn dataset(&self) -> String {
        self.layout.jail(&self.uuid)
    }
    fn root(&self) -> String {
        format!("{}/root", self.dataset())
    }
    /// The snapshot of the source made for this jail (`...@<uuid>`).
    fn source_snapshot(&self) -> Option<String> {
        match (&self.source, &self.release, self.kind) {
            (Some(src), _, _) => Some(format!("{}@{}", self.layout.jail(src), self.uuid)),
            (None, Some(rel), CreateKind::Thick | CreateKind::Clone) => {
                Some(format!("{}/{rel}/root@{}", self.layout.releases(), self.uuid))
            }
            (None, Some(rel), CreateKind::Base) => Some(format!("{}/{rel}/root@{}", self.layout.base(), self.uuid)),
            _ => None,
        }
    }
    /// The `jail_zfs_dataset` to create, with the pool in front.
    fn data_dataset(&self) -> Option<String> {
        self.user
            .iter()
            .find(|(k, _)| k == &format!("{USER_PREFIX}jail_zfs_dataset"))
            .map(|(_, v)| format!("{}/{v}", self.layout.pool()))
    }
}

/// `name` made and mounted, unless it exists.
pub(super) fn ensure(lib: &dyn Backend, name: &str, props: &[(&str, &str)]) -> Result<(), ActionError> {
    if !lib.exists(name) {
        lib.create_filesystem(name, props)?;
        lib.mount(name)?;
    }
    Ok(())
}

/// Undoes a create after `cause` failed in `step`, and says so.
fn fail(lib: &dyn Backend, plan: &Plan, step: &'static str, cause: ActionError) -> ActionError {
    undo(lib, plan);
    ActionError::CreateFailed { uuid: plan.uuid.clone(), step, cause: Box::new(cause) }
}

/// Removes everything a create of `plan` made: the jail's datasets and the
/// snapshots taken for it. Failures are logged: undo goes as far as it can.
pub fn undo(lib: &dyn Backend, plan: &Plan) {
    let ds = plan.dataset();
    if plan.layout.contains(&ds) && lib.exists(&ds) {
        if let Err(e) = lib.destroy_recursive(&ds) {
            tracing::error!(jail = %plan.uuid, "undo of a failed create could not remove {ds}: {e}");
        }
    }
    super::destroy::remove_snapshots_named(lib, &plan.layout, &plan.uuid);
}
