//! The jail index: every jail's iocage properties, kept in memory between
//! requests and checked against ZFS with one cheap call.
//!
//! Reading 1000 jails means opening 1000 datasets; doing that on every
//! listjails is what made listings slow. ZFS appends to the pool's history
//! log for every change of a dataset's properties and every create,
//! destroy, rename, clone, snapshot and receive (whoever makes it: this
//! daemon, `zfs`, iocage), and never for reads or data writes. So the
//! index remembers where the log ended when it read the jails; while the
//! log has not grown (one ioctl to find out) and the jails dataset is the
//! same one (its guid), the index is current. When it has grown, the new
//! records name the datasets changed: only those jails are read again
//! (everything is, after a rename, a change to the jails dataset or one of
//! its parents, whose values the jails inherit, or records lost to the
//! log's ring: see [`changed_jails`]; and when most jails changed, one scan
//! costs less than reading them one by one).
//! Requests queued behind one that found the index current use that
//! finding (see [`Index::jails`]). When ZFS's event queue is followed
//! (`zfs::follow`), a read that finds no change announced since the index
//! was last proven current uses it without that ioctl, and without the
//! owner thread ([`Index::followed`]). Of the native properties only the
//! mountpoints are indexed, each jail's and the jails dataset's (a start's
//! and a stop's plan need them; the log records every change to them, see
//! [`GuidRead`]): the others, such as `used`, change
//! with data writes, which the log does not record, so they are read
//! fresh. Jails still being created are kept
//! too, apart (a new tag must not be one of theirs either).

use std::collections::BTreeSet;
use std::ops::Deref;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::time::Instant;

use crate::zfs::{Backend, Changes, ErrorKind, HistoryTail, TRUST_AGE};

use super::error::ActionError;
use super::jails::{self, Jail};
use super::layout::Layout;

/// The jails as last read, and how to tell whether that is still current.
struct Snapshot {
    pool: String,
    /// guid of `POOL/iocage/jails`: a pool or dataset recreated under the
    /// same name starts a history of its own. Looked up again unless it
    /// is [`GuidRead::trusted`].
    guid: GuidRead,
    history_end: u64,
    /// When the history was last found unchanged (or the jails read).
    validated: Instant,
    /// What that proof stands on afterwards, if ZFS's count of changes was
    /// settled then (see [`Stamp`]).
    stamp: Option<Stamp>,
    jails: Listing,
}

impl Snapshot {
    /// Whether this snapshot stands without asking ZFS, `now` being the
    /// stamp a proof made now would carry.
    fn trusted(&self, now: Option<Stamp>) -> bool {
        now.is_some() && self.stamp == now && self.validated.elapsed() < TRUST_AGE
    }
}

/// The jails as the index holds them. Dereferences to the complete ones
/// (what the actions list and find), sorted by UUID.
#[derive(Clone, Default)]
pub struct Listing {
    /// The complete jails, then those still being created; each part
    /// sorted by UUID.
    jails: Arc<Vec<Arc<Jail>>>,
    complete: usize,
    /// The mountpoint of the pool's `iocage/jails`, read with its guid
    /// (see [`GuidRead`]); `None` when it is not a path.
    jails_dir: Option<Arc<Path>>,
}

impl Listing {
    pub(super) fn new(mut jails: Vec<Arc<Jail>>) -> Listing {
        jails.sort_by(|a, b| a.incomplete.cmp(&b.incomplete).then_with(|| a.uuid.cmp(&b.uuid)));
        let complete = jails.iter().take_while(|j| !j.incomplete).count();
        Listing { jails: Arc::new(jails), complete, jails_dir: None }
    }

    /// This listing, its jails under the jails dataset `guid` read.
    fn under(mut self, guid: &GuidRead) -> Listing {
        self.jails_dir = guid.mountpoint.as_deref().filter(|m| m.starts_with('/')).map(|m| Arc::from(Path::new(m)));
        self
    }

    /// Where the pool's `iocage/jails` is mounted: every jail's directory
    /// must be its own there.
    pub fn jails_dir(&self) -> Option<&Path> {
        self.jails_dir.as_deref()
    }

    /// Whether `other` is this very listing (a clone of it), not merely an
    /// equal one: a listing made again after a change is never the same.
    pub fn is(&self, other: &Listing) -> bool {
        Arc::ptr_eq(&self.jails, &other.jails)
    }

    /// Every jail dataset, those still being created (or left by a create
    /// that crashed) included.
    pub fn with_incomplete(&self) -> &[Arc<Jail>] {
        &self.jails
    }
}

impl Deref for Listing {
    type Target = [Arc<Jail>];

    fn deref(&self) -> &[Arc<Jail>] {
        &self.jails[..self.complete]
    }
}

/// What a proof with ZFS stands on afterwards: ZFS's count of announced
/// changes (settled: see `zfs::Changes`) and this daemon's count of its own
/// writes, both read before the proof. While both stay, and for at most
/// [`TRUST_AGE`] (ZFS does not announce every change: see `zfs::events`),
/// the jails are as proven.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    changes: u64,
    writes: u64,
}

/// `m` locked if no one holds it (a poisoned lock's value is used as it
/// is: every writer leaves it whole); `None` rather than waiting.
pub(super) fn lock_if_free<T>(m: &Mutex<T>) -> Option<MutexGuard<'_, T>> {
    match m.try_lock() {
        Ok(guard) => Some(guard),
        Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
        Err(TryLockError::WouldBlock) => None,
    }
}

/// The jails dataset's guid as last read, and what that stands on.
///
/// The guid tells a pool destroyed and created again under the same name
/// from the one read before: its history, read from the old pool's end,
/// would show nothing new, and the old pool's jails would be listed.
/// (Trusted for a plain second once, that went unnoticed: guest_api's
/// listings test caught it.) ZFS announces a pool destroyed, created,
/// imported or exported, so the guid is trusted while ZFS's count of such
/// changes stands (`Changes::pools_settled`, read before the guid was) and
/// for at most [`TRUST_AGE`] (what ZFS does not announce); otherwise it is
/// read (one dataset opened, the costliest part of a look that finds
/// nothing new). The jails dataset destroyed and made again on the same
/// pool is in that pool's log, which makes the look read everything, and
/// the guid with it.
///
/// The dataset's mountpoint is read with it (the same open): every jail's
/// directory must be its own under it. A new one is set with `zfs`, which
/// the log records, naming the dataset: the look reads every jail again,
/// and the guid and mountpoint with them. (A pool imported again under
/// another altroot while the daemon runs changes what every mountpoint
/// prints with no such record; but libzfs keeps a pool's properties, its
/// altroot among them, for the life of the process, so no read here would
/// see it: README says to restart the daemon then.)
#[derive(Debug, Clone)]
struct GuidRead {
    guid: String,
    mountpoint: Option<String>,
    at: Instant,
    pools: Option<u64>,
}

impl GuidRead {
    fn trusted(&self, pools_now: Option<u64>) -> bool {
        pools_now.is_some() && self.pools == pools_now && self.at.elapsed() < TRUST_AGE
    }
}

/// The pool has no jails dataset: nothing is kept, no jail is listed.
fn no_jails_dataset(current: &mut Option<Snapshot>) -> Listing {
    *current = None;
    Listing::default()
}

/// The guid and mountpoint of the pool's jails dataset (`None`: there is
/// none).
fn read_guid(lib: &dyn Backend, layout: &Layout, pools: Option<u64>) -> Result<Option<GuidRead>, ActionError> {
    let at = Instant::now();
    match lib.native_props(&layout.jails(), &["guid", "mountpoint"]) {
        Ok(mut n) => {
            let guid = n.remove("guid").and_then(|v| v.raw).unwrap_or_default();
            let mountpoint = n.remove("mountpoint").and_then(|v| v.printed);
            Ok(Some(GuidRead { guid, mountpoint, at, pools }))
        }
        Err(e) if e.kind == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

#[derive(Default)]
pub struct Index {
    current: Mutex<Option<Snapshot>>,
    /// ZFS's announced changes, when its event queue is followed.
    changes: Option<Arc<Changes>>,
    /// This daemon's writes that ended ([`Index::invalidate`]).
    writes: AtomicU64,
    counts: Counts,
}

/// How the index's answers were found, since the daemon started.
#[derive(Debug, Default)]
pub struct Counts {
    /// From memory: ZFS announced no change since the last proof.
    pub followed: AtomicU64,
    /// From memory after asking ZFS (one history ioctl) or using the
    /// finding of a request queued before.
    pub proven: AtomicU64,
    /// Some or all jails read again.
    pub read: AtomicU64,
}

impl Counts {
    fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

impl std::fmt::Display for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        write!(
            f,
            "{} answered from memory while ZFS announced no change, {} proven with ZFS (an ioctl, or a proof a request queued before made), {} read from ZFS",
            get(&self.followed),
            get(&self.proven),
            get(&self.read)
        )
    }
}

/// The jails (UUIDs) the history appended since the last look names, or
/// `None` when the whole index must be read again: records lost (ZFS's log
/// is a ring, and went round past the last look's end: see
/// [`HistoryTail::complete`]), a rename (its record names only the old
/// name), or a change to the jails dataset or one of its parents (jails
/// inherit their values). Changes elsewhere on the pool (releases,
/// templates, other datasets) and snapshots name no jail.
fn changed_jails(layout: &Layout, tail: &HistoryTail) -> Option<BTreeSet<String>> {
    if !tail.complete || tail.renamed {
        return None;
    }
    let parent = layout.jails();
    let inside = format!("{parent}/");
    let mut changed = BTreeSet::new();
    // A snapshot's record (taken, destroyed, its own properties set)
    // changes no filesystem's properties: a recursive snapshot of the pool
    // by a backup tool reads nothing again.
    for dataset in tail.datasets.iter().filter(|n| !n.contains('@')) {
        if *dataset == parent || parent.starts_with(&format!("{dataset}/")) {
            return None;
        }
        if let Some(uuid) = dataset.strip_prefix(&inside).and_then(|rest| rest.split('/').next()) {
            changed.insert(uuid.to_string());
        }
    }
    Some(changed)
}

impl Index {
    /// An index that trusts `changes` (ZFS's event queue, followed) to
    /// say when nothing changed.
    pub fn following(changes: Arc<Changes>) -> Index {
        Index { changes: Some(changes), ..Index::default() }
    }

    /// How its answers were found so far.
    pub fn counts(&self) -> &Counts {
        &self.counts
    }

    /// ZFS's count of changes that may concern pools themselves, when
    /// followed and settled (see `zfs::Changes::pools_settled`): what a
    /// finding of which pools there are stands on. Read it before finding.
    pub fn pools_stamp(&self) -> Option<u64> {
        self.changes.as_ref().and_then(|c| c.pools_settled())
    }

    /// The stamp a proof made now would carry (`None`: not following).
    fn stamp(&self) -> Option<Stamp> {
        let changes = self.changes.as_ref().and_then(|c| c.settled())?;
        Some(Stamp { changes, writes: self.writes.load(Ordering::Acquire) })
    }

    /// `pool`'s jails from memory, when ZFS has announced no change since
    /// they were last proven current; `None` when that is not known (ask
    /// with [`Index::jails`]). Needs no libzfs call.
    ///
    /// Called from async code: it never waits for the lock, which a proof
    /// on the owner thread may hold for long (`None` then).
    pub fn followed(&self, pool: &str) -> Option<Listing> {
        let now = self.stamp()?;
        let current = lock_if_free(&self.current)?;
        let s = current.as_ref().filter(|s| s.pool == pool && s.trusted(Some(now)))?;
        Counts::add(&self.counts.followed);
        Some(s.jails.clone())
    }

    /// After this daemon changed something: the next read proves the
    /// index current with ZFS (the change's own events may not have been
    /// counted yet).
    pub fn invalidate(&self) {
        self.writes.fetch_add(1, Ordering::AcqRel);
    }

    /// Every complete jail with its iocage properties and mountpoint,
    /// from memory when nothing changed. Runs on the owner thread.
    ///
    /// `arrived` is when the request came: if the index was found current
    /// after that (by another request queued before this one), this one
    /// uses that finding without asking ZFS again.
    pub fn jails(&self, lib: &dyn Backend, layout: &Layout, arrived: Instant) -> Result<Listing, ActionError> {
        self.jails_trusting(lib, layout, arrived, true)
    }

    /// [`Index::jails`] proven with ZFS even when no change was announced:
    /// for write actions, which act on what they read (one ioctl is
    /// nothing next to a write, and closes the window an event not yet
    /// counted leaves for changes to the pool's datasets). Which pool the
    /// log is that of (the jails dataset's guid) is still taken from ZFS's
    /// events when they announced no change to any pool (see [`GuidRead`]):
    /// a pool destroyed and made again under the same name in the moment
    /// before its events are counted is the window left.
    pub fn proven_jails(&self, lib: &dyn Backend, layout: &Layout) -> Result<Listing, ActionError> {
        self.jails_trusting(lib, layout, Instant::now(), false)
    }

    fn jails_trusting(
        &self,
        lib: &dyn Backend,
        layout: &Layout,
        arrived: Instant,
        trust_events: bool,
    ) -> Result<Listing, ActionError> {
        // Before anything is read: what this read proves holds from here.
        let pools = self.pools_stamp();
        let stamp = self.stamp();
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        let mine = current.as_mut().filter(|s| s.pool == layout.pool());
        if let Some(s) = mine.as_ref().filter(|s| trust_events && s.trusted(stamp)) {
            Counts::add(&self.counts.followed);
            return Ok(s.jails.clone());
        }
        if let Some(s) = mine.as_ref().filter(|s| s.validated >= arrived) {
            Counts::add(&self.counts.proven);
            return Ok(s.jails.clone());
        }
        let trusted = mine.as_ref().map(|s| s.guid.clone()).filter(|g| g.trusted(pools));
        let guid = match trusted.clone() {
            Some(g) => g,
            None => match read_guid(lib, layout, pools)? {
                Some(g) => g,
                None => return Ok(no_jails_dataset(&mut current)),
            },
        };
        let same = mine.filter(|s| s.guid.guid == guid.guid);
        let from = same.as_ref().map_or(0, |s| s.history_end);
        // Read where the log ends *before* reading the jails: a change made
        // while they are read shows as growth next time.
        // A proof counts from before its look (requests arriving during it
        // were not covered by it).
        let now = Instant::now();
        let tail = lib.history_since(layout.pool(), from, same.is_some())?;
        if let Some(s) = same {
            s.guid = guid.clone();
            if s.history_end == tail.end {
                s.validated = now;
                s.stamp = stamp;
                Counts::add(&self.counts.proven);
                return Ok(s.jails.clone());
            }
            // Reading most jails one by one costs more than one scan.
            let few = |c: &BTreeSet<String>| c.len().saturating_mul(2) <= s.jails.with_incomplete().len();
            if let Some(changed) = changed_jails(layout, &tail).filter(few) {
                let mut all: Vec<Arc<Jail>> =
                    s.jails.with_incomplete().iter().filter(|j| !changed.contains(&j.uuid)).cloned().collect();
                for uuid in &changed {
                    all.extend(jails::read_one(lib, layout, uuid)?);
                }
                tracing::debug!(changed = changed.len(), jails = all.len(), "index: changed jails read again");
                Counts::add(&self.counts.read);
                s.jails = Listing::new(all).under(&guid);
                s.history_end = tail.end;
                s.validated = now;
                s.stamp = stamp;
                return Ok(s.jails.clone());
            }
        }
        let mut end = tail.end;
        let mut guid = guid;
        if let Some(old) = trusted {
            // Everything is read: so is the guid (a dataset made again
            // shows here). Another one means another pool whose events
            // went unannounced: the tail, read from the old pool's end,
            // says nothing of it, so its end is read from the start.
            guid = match read_guid(lib, layout, pools)? {
                Some(g) => g,
                None => return Ok(no_jails_dataset(&mut current)),
            };
            if guid.guid != old.guid {
                end = lib.history_since(layout.pool(), 0, false)?.end;
            }
        }
        let jails = Listing::new(jails::read_all_with_incomplete(lib, layout)?).under(&guid);
        tracing::debug!(jails = jails.with_incomplete().len(), "index: every jail read");
        Counts::add(&self.counts.read);
        *current = Some(Snapshot {
            pool: layout.pool().to_string(),
            guid,
            history_end: end,
            validated: now,
            stamp,
            jails: jails.clone(),
        });
        Ok(jails)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listing_shows_complete_jails_and_keeps_the_others_apart() {
        let mut making = jails::test_jail("bbbb", &[("tag", "new")]);
        Arc::make_mut(&mut making).incomplete = true;
        let read =
            vec![jails::test_jail("aaaa", &[("tag", "web")]), making, jails::test_jail("cccc", &[("tag", "db")])];
        let l = Listing::new(read);
        let uuids = |js: &[Arc<Jail>]| js.iter().map(|j| j.uuid.clone()).collect::<Vec<_>>();
        assert_eq!(uuids(&l), ["aaaa", "cccc"], "complete jails, in UUID order");
        assert_eq!(uuids(l.with_incomplete()), ["aaaa", "cccc", "bbbb"]);
        assert!(jails::resolve(&l, "new").is_err(), "a jail being created is not found by its tag");
    }

    fn tail(names: &[&str], renamed: bool, complete: bool) -> HistoryTail {
        HistoryTail { end: 1100, datasets: names.iter().map(|n| n.to_string()).collect(), renamed, complete }
    }

    #[test]
    fn the_history_names_the_jails_to_read_again() {
        let l = Layout::new("tank");
        let changed = |t: &HistoryTail| changed_jails(&l, t).map(|s| s.into_iter().collect::<Vec<_>>());
        let t = tail(
            &[
                "tank/iocage/jails/aaaa",
                "tank/iocage/jails/bbbb/root",
                "tank/iocage/jails/cccc@snap",
                "tank/iocage/releases/13.2-RELEASE/root",
                "tank/iocage/.defaults",
                "tank/elsewhere",
            ],
            false,
            true,
        );
        assert_eq!(changed(&t).unwrap(), ["aaaa", "bbbb"], "jails named, other datasets and snapshots not");
        assert_eq!(changed(&tail(&[], false, true)).unwrap(), Vec::<String>::new(), "pool events only");
        for parent in ["tank/iocage/jails", "tank/iocage", "tank"] {
            assert_eq!(changed(&tail(&[parent], false, true)), None, "{parent}: jails inherit from it");
        }
        let snapshots = ["tank@daily", "tank/iocage@daily", "tank/iocage/jails@daily", "tank/iocage/jails/aaaa@daily"];
        assert_eq!(changed(&tail(&snapshots, false, true)).unwrap(), Vec::<String>::new(), "snapshots");
        assert_eq!(changed(&tail(&["tank/iocage/jails/aaaa"], true, true)), None, "a rename");
        assert_eq!(changed(&tail(&["tank/iocage/jails/aaaa"], false, false)), None, "records lost to the ring");
        assert_eq!(changed(&tail(&[], false, false)), None, "records lost, whatever is left");
        assert_eq!(changed(&tail(&["tank/iocage/jailsX/aaaa"], false, true)).unwrap(), Vec::<String>::new());
    }
}
