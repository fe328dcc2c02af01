//! How actions reach the pool in use: which pool it is ([`PoolChoice`],
//! found and then trusted for a second, by writes only while ZFS announced
//! no change to any pool), the libzfs owner thread, and the jails through
//! the index.

use std::time::{Duration, Instant};

use super::Iocage;
use crate::iocage::error::ActionError;
use crate::iocage::index::{Listing, lock_if_free};
use crate::iocage::layout::Layout;
use crate::iocage::pool;
use crate::zfs::{Backend, TRUST_AGE};

/// Which pool the service works on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoolChoice {
    /// The one pool marked active (an error when none or several are).
    Auto,
    /// This pool, whatever the markers say (configuration `pool = "..."`).
    Fixed(String),
}

/// When the pool in use was found, and which it was (or why none).
pub(super) struct FoundPool {
    at: Instant,
    /// ZFS's count of changes to pools themselves, read before finding it
    /// (`None`: not followed, or not settled then).
    pools: Option<u64>,
    found: Result<String, ActionError>,
}

impl FoundPool {
    /// Whether a write may use this finding: ZFS has announced no change
    /// to any pool since (none imported, exported, created or destroyed,
    /// no pool's or root dataset's property set: where the active markers
    /// are), and it is younger than [`TRUST_AGE`] (changes ZFS does not
    /// announce show within that, as for reads).
    fn stands_for_writes(&self, pools_now: Option<u64>) -> bool {
        self.found.is_ok() && pools_now.is_some() && self.pools == pools_now && self.at.elapsed() < TRUST_AGE
    }
}

/// How old the pool choice a read uses may be: a pool imported, exported
/// or (de)activated behind the daemon's back shows in reads within this.
/// The daemon's own activatepool and deactivatepool show at once, and so
/// does a pool becoming active where none was (no active pool is never
/// remembered: the jail watcher, reading every second, would otherwise
/// make a pool set up behind the daemon's back look absent to the next
/// client read).
const POOL_CHOICE_AGE: Duration = Duration::from_secs(1);

/// What [`Iocage::read_jails`] makes of a pool in use that is not imported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum MissingPool {
    /// A listing: its jails are not where they were, so none is listed.
    HasNoJails,
    /// The jail watcher: its jails were not destroyed, so none is gone.
    IsAnError,
}

impl Iocage {
    /// The pool in use and its jails, for a read: from memory while ZFS
    /// announced no change since both were proven ([`Iocage::followed_jails`]),
    /// otherwise from the index on the owner thread. `missing`: what a
    /// pool that is not imported (a configured `pool` exported) means; ZFS
    /// announces an export, so memory never answers for one.
    pub(super) async fn read_jails(&self, missing: MissingPool) -> Result<(String, Listing), ActionError> {
        if let Some(found) = self.followed_jails() {
            return Ok(found);
        }
        let arrived = Instant::now();
        let index = self.index.clone();
        self.on_read_pool(move |lib, layout| {
            if missing == MissingPool::IsAnError && !lib.exists(layout.pool()) {
                return Err(ActionError::PoolNotFound(layout.pool().to_string()));
            }
            Ok((layout.pool().to_string(), index.jails(lib, &layout, arrived)?))
        })
        .await
    }

    /// The pool in use and its jails from memory, when ZFS has announced
    /// no change since both were last proven (see `index`): no libzfs call,
    /// no trip to the owner thread.
    pub(super) fn followed_jails(&self) -> Option<(String, Listing)> {
        let pool = match &self.pool {
            PoolChoice::Fixed(p) => p.clone(),
            // As every read trusts it (POOL_CHOICE_AGE); never waiting
            // for the lock, which the owner thread holds while it looks.
            PoolChoice::Auto => {
                let cache = lock_if_free(&self.pool_choice)?;
                cache.as_ref().filter(|f| f.at.elapsed() < POOL_CHOICE_AGE)?.found.clone().ok()?
            }
        };
        let jails = self.index.followed(&pool)?;
        Some((pool, jails))
    }

    /// Runs `f` (activatepool, deactivatepool: it marks pools) on the
    /// owner thread and forgets which pool is in use in the same trip,
    /// whatever `f` did: every job after it there, read or write, finds
    /// the pool afresh (forgotten after the trip, a job queued behind it
    /// could use the old finding before the markers' events are counted).
    pub(super) async fn marking_pools<R, F>(&self, f: F) -> Result<R, ActionError>
    where
        R: Send + 'static,
        F: FnOnce(&dyn Backend) -> Result<R, ActionError> + Send + 'static,
    {
        let cache = self.pool_choice.clone();
        self.on_owner(move |lib| {
            let done = f(lib);
            *cache.lock().unwrap_or_else(|p| p.into_inner()) = None;
            done
        })
        .await
    }

    /// Runs `f` on the owner thread with the layout of the pool in use,
    /// found afresh unless ZFS announced no change to any pool since it was
    /// last found, less than [`TRUST_AGE`] ago (every action that changes
    /// anything uses this). Finding it opens every pool: a start and its
    /// stop did it at least twice, about a third of their ZFS calls.
    pub(in crate::iocage) async fn on_pool<R, F>(&self, f: F) -> Result<R, ActionError>
    where
        R: Send + 'static,
        F: FnOnce(&dyn Backend, Layout) -> Result<R, ActionError> + Send + 'static,
    {
        self.on_pool_within(Duration::ZERO, f).await
    }

    /// [`Iocage::on_pool`] with the pool's jails, as the index has them now
    /// (proven with ZFS: see [`crate::iocage::index::Index::proven_jails`]).
    pub(super) async fn on_jails<R, F>(&self, f: F) -> Result<R, ActionError>
    where
        R: Send + 'static,
        F: FnOnce(&dyn Backend, Layout, Listing) -> Result<R, ActionError> + Send + 'static,
    {
        let index = self.index.clone();
        self.on_pool(move |lib, layout| {
            let jails = index.proven_jails(lib, &layout)?;
            f(lib, layout, jails)
        })
        .await
    }

    /// [`Iocage::on_pool`] for reads: the pool in use as found at most
    /// [`POOL_CHOICE_AGE`] ago. Finding it opens every pool; reads that
    /// answer from the index would spend most of their time on that.
    pub(super) async fn on_read_pool<R, F>(&self, f: F) -> Result<R, ActionError>
    where
        R: Send + 'static,
        F: FnOnce(&dyn Backend, Layout) -> Result<R, ActionError> + Send + 'static,
    {
        self.on_pool_within(POOL_CHOICE_AGE, f).await
    }

    pub(super) async fn on_pool_within<R, F>(&self, age: Duration, f: F) -> Result<R, ActionError>
    where
        R: Send + 'static,
        F: FnOnce(&dyn Backend, Layout) -> Result<R, ActionError> + Send + 'static,
    {
        let choice = self.pool.clone();
        let cache = self.pool_choice.clone();
        let index = self.index.clone();
        self.zfs
            .run(move |lib| {
                let pool = match choice {
                    PoolChoice::Fixed(p) => p,
                    PoolChoice::Auto => {
                        // Before finding: what the finding stands on.
                        let pools = index.pools_stamp();
                        let mut cache = cache.lock().unwrap_or_else(|p| p.into_inner());
                        // Only a pool found is reused: a failure to find one
                        // (none active, as while a pool is being set up behind
                        // the daemon's back) is looked at again by the next
                        // read, not kept for POOL_CHOICE_AGE.
                        let fresh = |f: &&FoundPool| match age.is_zero() {
                            true => f.stands_for_writes(pools),
                            false => f.found.is_ok() && f.at.elapsed() < age,
                        };
                        match cache.as_ref().filter(fresh) {
                            Some(f) => f.found.clone()?,
                            None => {
                                lib.forget_pools();
                                let at = Instant::now();
                                let found = lib.pools().map_err(ActionError::from).and_then(|p| pool::active(&p));
                                *cache = Some(FoundPool { at, pools, found: found.clone() });
                                found?
                            }
                        }
                    }
                };
                f(lib, Layout::new(pool))
            })
            .await?
    }
}
