//! Following ZFS's event queue, so that "nothing changed" is known without
//! asking ZFS.
//!
//! The jail index proves itself current with one history ioctl per read,
//! made on the owner thread (see `iocage::index`). Most reads find nothing
//! changed, so most of that work is wasted. ZFS itself announces changes:
//! each internal pool-history record (every property set or inherited,
//! every create, destroy, rename, clone, snapshot and receive, whoever makes
//! it) posts a `sysevent.fs.zfs.history_event`, and pools imported,
//! exported, created or destroyed post events of their own. [`follow`]
//! runs one thread that waits on that queue and counts what it reads
//! ([`Changes`]), and one that syncs the pools the events name; a read
//! that finds the count where it was when the index was last proven
//! current needs neither the owner thread nor an ioctl.
//!
//! The count only vouches for records that are *written*: ZFS posts the
//! history event just before it writes the record, in the same sync. So
//! after events are read the syncer waits for their pools' open
//! transaction groups to be synced (`zpool_sync_one`, not forced: no
//! uberblock is rewritten for it; ZFS waits for the open group and the two
//! after it) and only then is the count settled ([`Changes::settled`]).
//! The follower goes on reading meanwhile, so a change announced during a
//! long sync is counted at once. An index proven current after that has
//! read the records. What remains is the time between ZFS posting an event and
//! this thread waking to count it: a read in that window answers as of
//! just before the change (BENCHMARKS.md measures it).
//!
//! Events dropped by ZFS (its queue is bounded by `zfs_zevent_len_max`)
//! move the count too. Only `sysevent.*` classes count: error
//! reports (`ereport.*`, a failing disk's stream of them) change no
//! dataset. If the queue cannot be followed (no `/dev/zfs`, an error from
//! the kernel, the thread gone), the count is never settled again and every
//! read asks ZFS as before. A pool that cannot be synced (suspended,
//! faulted) keeps the count unsettled until it can be.
//!
//! ZFS does not announce every change: it drops an event larger than its
//! event buffer without telling readers (a history record carries the
//! property's value, and a user property may be 8 KiB), a `zpool events
//! -c` removes events unread, and its wait for the next event can miss a
//! wakeup. So the count is trusted for a bounded time only: users of it
//! also require their proof to be younger than [`TRUST_AGE`], and what it
//! misses shows within that (see `iocage::index`).
//!
//! Apart, the follower counts the changes that may concern pools
//! themselves ([`Changes::pools_settled`]): every event but a history
//! record naming a dataset below a pool's root or a snapshot. Which pool is
//! in use (iocage's marker is a property of the root dataset) and which
//! jails dataset the index's log is that of stand while that count does;
//! this daemon's own writes, being below the root, leave it as it is.
//!
//! The thread waits for events without a timeout: it is a listener, not a
//! caller waiting for an answer; it holds no lock while it waits, and the
//! process's exit ends it.

use std::collections::BTreeSet;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use iocaged_sys as sys;

use super::error::{ErrorKind, Result, ZfsError};
use super::libzfs::Libzfs;
use super::nvlist::lookup_string;

/// How long a proof made with ZFS stands on the count alone: changes ZFS
/// did not announce show within this.
pub const TRUST_AGE: std::time::Duration = std::time::Duration::from_secs(1);

/// How long the syncer waits before trying again to sync a pool that
/// refused (suspended, faulted).
const SYNC_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

/// `ZEVENT_NONBLOCK` from `sys/zfs_ioctl.h` (the same in OpenZFS 2.1 to
/// 2.3; that header is not part of the bound API).
const ZEVENT_NONBLOCK: libc::c_uint = 0x1;

/// How many changes ZFS has announced, and up to which they are written.
#[derive(Debug, Default)]
pub struct Changes {
    /// Events read (and drops seen) since the daemon started.
    posted: AtomicU64,
    /// Those of them that may change which pools there are or how they
    /// are marked (see [`Changes::pools_settled`]).
    pools: AtomicU64,
    /// `pools` as it was when every change it counts was known written.
    pools_written: AtomicU64,
    /// `posted` as it was when every change so far was known written.
    settled: AtomicU64,
    /// Whether the follower runs and has settled at least once.
    following: AtomicBool,
    /// The follower or the syncer ended: never vouched for again, whatever
    /// the other thread settles after.
    stopped: AtomicBool,
}

impl Changes {
    /// The count of changes, when ZFS's queue is followed and every change
    /// it announced is written (`None` otherwise: ask ZFS). Read it
    /// *before* proving something current; while it stays the same, that
    /// proof stands.
    pub fn settled(&self) -> Option<u64> {
        if !self.following.load(Ordering::Acquire) || self.stopped.load(Ordering::Acquire) {
            return None;
        }
        let settled = self.settled.load(Ordering::Acquire);
        (settled == self.posted.load(Ordering::Acquire)).then_some(settled)
    }

    /// The count of changes that may concern pools themselves (a pool
    /// imported, exported, created, destroyed; a property of one or of its
    /// root dataset, where iocage marks the active pool; events dropped)
    /// when every one of them announced is written; `None` otherwise.
    /// Changes to datasets below a pool's root, this daemon's own writes
    /// among them, neither move it nor keep it unsettled while ZFS syncs
    /// them: the follower goes on reading events while a pool is synced
    /// (the syncer is a thread of its own), so a pool's change announced
    /// meanwhile is counted, and unsettles this, at once. Read it *before*
    /// finding which pools there are; while it stays, that finding stands.
    pub fn pools_settled(&self) -> Option<u64> {
        // Before `pools_written`, which never passes it: a change counted
        // after this read moves the next one.
        let pools = self.pools.load(Ordering::Acquire);
        if !self.following.load(Ordering::Acquire) || self.stopped.load(Ordering::Acquire) {
            return None;
        }
        (self.pools_written.load(Ordering::Acquire) == pools).then_some(pools)
    }

    /// One change announced (an event read, or events dropped), and
    /// whether it may concern pools themselves. Called by the follower;
    /// public for tests that stand in for it.
    #[doc(hidden)]
    pub fn post(&self, pool_level: bool) {
        self.posted.fetch_add(1, Ordering::AcqRel);
        if pool_level {
            self.pools.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Every change announced so far is written (nothing read is left to
    /// sync). Called with the lock the follower and the syncer share held
    /// (see [`Shared`]), so the counts read are exact; public for tests
    /// that stand in for them.
    #[doc(hidden)]
    pub fn settle_all(&self) {
        self.settle(self.posted.load(Ordering::Acquire), self.pools.load(Ordering::Acquire));
    }

    /// Every change announced up to `upto` (a `posted` value), of which
    /// `pools` concern pools, is written.
    fn settle(&self, upto: u64, pools: u64) {
        self.pools_written.store(pools, Ordering::Release);
        self.settled.store(upto, Ordering::Release);
        self.following.store(true, Ordering::Release);
    }

    /// The changes of pools up to `pools` (a `pools` value) are written,
    /// whatever changes to datasets came since.
    fn pools_written_up_to(&self, pools: u64) {
        self.pools_written.store(pools, Ordering::Release);
    }

    /// The queue can no longer be followed: nothing is vouched for again.
    fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        self.following.store(false, Ordering::Release);
        self.post(true);
    }
}

/// One event from ZFS's queue, as much as the follower needs.
struct Event {
    /// A `sysevent.*` class: a change (history record, pool created,
    /// destroyed, imported, exported, configuration), not an error report.
    change: bool,
    /// The pool it is about, if it names one.
    pool: Option<String>,
    /// Whether it may concern a pool itself rather than only datasets
    /// below a pool's root (see [`pool_level`]).
    pool_level: bool,
    /// Events ZFS dropped before this one (its queue was full).
    dropped: bool,
}

impl Libzfs {
    /// The next event of the queue `zevent` (an open `/dev/zfs`): waits for
    /// one when `wait`, else `None` when there is none.
    fn next_event(&self, zevent: &File, wait: bool) -> Result<Option<Event>> {
        const OP: &str = "read the event queue of";
        let flags = if wait { 0 } else { ZEVENT_NONBLOCK };
        loop {
            let mut list: *mut sys::nvlist_t = ptr::null_mut();
            let mut dropped: libc::c_int = 0;
            // SAFETY: live handle; `list` and `dropped` are valid out
            // pointers; `zevent` is an open /dev/zfs descriptor, borrowed
            // for the call. On success `list` is NULL (no event, non-
            // blocking) or an nvlist this process owns and frees below.
            let rc = unsafe {
                sys::zpool_events_next(self.hdl.as_ptr(), &mut list, &mut dropped, flags, zevent.as_raw_fd())
            };
            if rc != 0 {
                // SAFETY: live handle.
                if unsafe { sys::libzfs_errno(self.hdl.as_ptr()) } == sys::zfs_error::EZFS_INTR as libc::c_int {
                    continue; // a signal; the thread blocks them, but be sure
                }
                return Err(self.last_error(OP, "ZFS"));
            }
            if list.is_null() {
                return Ok(None);
            }
            // SAFETY: `list` is a valid nvlist owned here; the string is
            // copied before the list is freed.
            let (class, pool, dataset) = unsafe {
                (lookup_string(list, c"class"), lookup_string(list, c"pool"), lookup_string(list, c"history_dsname"))
            };
            // SAFETY: `list` came from zpool_events_next and is freed once.
            unsafe { sys::nvlist_free(list) };
            let change = class.as_deref().is_none_or(|c| c.starts_with("sysevent."));
            let pool_level = pool_level(class.as_deref(), dataset.as_deref());
            return Ok(Some(Event { change, pool, pool_level, dropped: dropped != 0 }));
        }
    }

    /// Waits until what `pool`'s open transaction group holds is written
    /// (`zpool sync` without `-f`). A pool gone meanwhile is not an error,
    /// nor is a read-only one (it writes no history).
    fn sync_pool(&self, pool: &str) -> Result<()> {
        const OP: &str = "sync";
        let p = match self.open_pool(OP, pool) {
            Ok(p) => p,
            Err(e) if e.kind == ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let mut force = sys::boolean_t::B_FALSE;
        // SAFETY: the pool handle is open; zpool_sync_one reads the
        // boolean_t that its second argument points to, which lives across
        // the call.
        let rc = unsafe { sys::zpool_sync_one(p.zph.as_ptr(), (&raw mut force).cast()) };
        if rc == 0 {
            return Ok(());
        }
        // SAFETY: live handle.
        let code = unsafe { sys::libzfs_errno(self.hdl.as_ptr()) };
        match self.last_error(OP, pool) {
            e if e.kind == ErrorKind::NotFound => Ok(()),
            _ if code == sys::zfs_error::EZFS_POOLREADONLY as libc::c_int => Ok(()),
            e => Err(e),
        }
    }
}

/// The class of a pool history record's event (`ESC_ZFS_HISTORY_EVENT`).
const HISTORY_EVENT: &str = "sysevent.fs.zfs.history_event";

/// Whether an event of `class`, naming `dataset` (`history_dsname`), may
/// concern a pool itself: every event but a history record of a dataset
/// below a pool's root or of a snapshot. Pool events (imported, exported,
/// created, destroyed, its configuration) and records of pool properties
/// name no dataset, and the root dataset, which carries iocage's active
/// marker, is named by the pool's name alone. (The command lines that
/// `zfs` and `zpool` log post no event; what they change is logged, and
/// posted, as ZFS's own records.)
fn pool_level(class: Option<&str>, dataset: Option<&str>) -> bool {
    let below_a_root = |d: &str| d.contains('/') || d.contains('@');
    !(class == Some(HISTORY_EVENT) && dataset.is_some_and(below_a_root))
}

/// Starts the threads that follow ZFS's event queue into `changes`: the
/// follower, which reads events, and the syncer, which waits for the pools
/// they name to be written. Fails when libzfs or `/dev/zfs` cannot be
/// opened; the daemon then asks ZFS on every read, as without it.
pub fn follow(changes: Arc<Changes>) -> Result<()> {
    let shared = Arc::new(Shared { changes, unsynced: Mutex::default(), wake: Condvar::new() });
    let opened = || {
        block_signals();
        Libzfs::init()
    };
    let syncing = shared.clone();
    super::owner::spawn_ready("zfs-sync", opened, move |lib| {
        let _stop = StopOnExit(&syncing.changes);
        sync_loop(&lib, &syncing);
    })?;
    let open = || {
        block_signals();
        let lib = Libzfs::init()?;
        let zevent = File::options().read(true).write(true).open("/dev/zfs").map_err(|e| {
            ZfsError::new("open", "/dev/zfs", ErrorKind::Unavailable, format!("for ZFS's event queue: {e}"))
        })?;
        Ok((lib, zevent))
    };
    super::owner::spawn_ready("zfs-events", open, move |(lib, zevent)| {
        // However the loop ends (an error, a panic), nothing is vouched for.
        let _stop = StopOnExit(&shared.changes);
        if let Err(e) = run(&lib, &zevent, &shared) {
            tracing::warn!(error = %e, "ZFS's event queue is no longer followed: every read asks ZFS again");
        }
    })
}

/// What the follower and the syncer share.
struct Shared {
    changes: Arc<Changes>,
    /// Held while a change is counted and its pool noted, and while the
    /// syncer takes what to sync: so the counts it reads then are exactly
    /// those of the pools it takes.
    unsynced: Mutex<Unsynced>,
    /// Wakes the syncer: pools to sync.
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Unsynced> {
        self.unsynced.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Pools named by changes read and not yet synced (at most one entry per
/// pool), whether the syncer is syncing some, and the count of changes
/// when the follower last found the queue empty.
#[derive(Debug, Default)]
struct Unsynced {
    pools: BTreeSet<String>,
    busy: bool,
    drained: Option<u64>,
}

/// Stops [`Changes`] when dropped: the follower's or the syncer's thread
/// ending, by an error or by a panic unwinding it.
struct StopOnExit<'a>(&'a Changes);

impl Drop for StopOnExit<'_> {
    fn drop(&mut self) {
        self.0.stop();
    }
}

/// Signals sent to the process go to the other threads: this one waits in
/// the kernel. (Signals caused by this thread's own faults stay unblocked.)
fn block_signals() {
    use nix::sys::signal::{SigSet, SigmaskHow, Signal, pthread_sigmask};
    let mut set = SigSet::empty();
    for s in [
        Signal::SIGHUP,
        Signal::SIGINT,
        Signal::SIGQUIT,
        Signal::SIGTERM,
        Signal::SIGCHLD,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGPIPE,
        Signal::SIGALRM,
        Signal::SIGWINCH,
    ] {
        set.add(s);
    }
    if let Err(e) = pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None) {
        tracing::debug!(error = %e, "zfs-events: signals not blocked");
    }
}

/// The follower's loop: reads every queued event, counts the changes and
/// notes their pools for the syncer; when the queue is empty and nothing
/// is left to sync, everything is written (settled); then waits for the
/// next event. Returns only on an error reading the queue.
fn run(lib: &Libzfs, zevent: &File, shared: &Shared) -> Result<()> {
    // At start: the queue's older events are read first (they settle once).
    let mut wait = false;
    loop {
        match lib.next_event(zevent, wait)? {
            Some(event) if event.change || event.dropped => {
                // Drops (ZFS's queue full, or error reports it rate-limited)
                // move the count too; what they were is unknown, and is
                // covered by TRUST_AGE like the changes ZFS never announces
                // (syncing every pool for each would let a failing disk's
                // reports keep the count from settling).
                let mut unsynced = shared.lock();
                shared.changes.post(event.pool_level || event.dropped);
                unsynced.pools.extend(event.pool.filter(|_| event.change));
                wait = false;
            }
            Some(_) => wait = false, // an error report: no dataset changed
            None => {
                let mut unsynced = shared.lock();
                unsynced.drained = Some(shared.changes.posted.load(Ordering::Acquire));
                if unsynced.pools.is_empty() && !unsynced.busy {
                    // Nothing read is left to sync: all written.
                    shared.changes.settle_all();
                } else {
                    shared.wake.notify_one();
                }
                wait = true;
            }
        }
    }
}

/// The syncer's loop: takes the pools noted, with the counts of changes
/// read so far, and waits until each is written (`zpool sync` without
/// `-f`); then the pools' changes up to those counts are written, and, if
/// nothing is left to sync and the follower has found the queue empty
/// since the last change it read, all are (settled). A pool that refuses
/// (suspended, faulted) is tried again after [`SYNC_RETRY`], and keeps the
/// counts unsettled until then. It waits for work without a timeout, as
/// the follower waits for events.
fn sync_loop(lib: &Libzfs, shared: &Shared) {
    let mut unsynced = shared.lock();
    loop {
        while unsynced.pools.is_empty() {
            unsynced = shared.wake.wait(unsynced).unwrap_or_else(|p| p.into_inner());
        }
        let batch = std::mem::take(&mut unsynced.pools);
        let pools = shared.changes.pools.load(Ordering::Acquire);
        unsynced.busy = true;
        drop(unsynced);
        let mut refused = BTreeSet::new();
        for pool in batch {
            if let Err(e) = lib.sync_pool(&pool) {
                tracing::debug!(error = %e, "zfs-sync: not synced yet; reads ask ZFS meanwhile");
                refused.insert(pool);
            }
        }
        if !refused.is_empty() {
            std::thread::sleep(SYNC_RETRY);
        }
        unsynced = shared.lock();
        unsynced.busy = false;
        if refused.is_empty() {
            shared.changes.pools_written_up_to(pools);
            // Changes read since that name no pool (drops) need no sync.
            if unsynced.pools.is_empty() && unsynced.drained == Some(shared.changes.posted.load(Ordering::Acquire)) {
                shared.changes.settle_all();
            }
        } else {
            unsynced.pools.extend(refused);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_count_vouches_only_once_settled_and_until_the_next_change() {
        let c = Changes::default();
        assert_eq!(c.settled(), None, "not followed yet");
        c.post(false);
        c.settle(1, 0);
        assert_eq!(c.settled(), Some(1));
        c.post(false);
        assert_eq!(c.settled(), None, "a change announced, not yet known written");
        c.settle(2, 0);
        assert_eq!(c.settled(), Some(2), "written: a new count, so proofs made before do not stand");
        c.stop();
        assert_eq!(c.settled(), None, "no longer followed");
        // The other thread settling after the stop vouches for nothing.
        c.settle_all();
        assert_eq!((c.settled(), c.pools_settled()), (None, None), "stopped for good");
    }

    #[test]
    fn only_changes_below_a_pool_s_root_leave_the_pool_count_as_it_is() {
        let c = Changes::default();
        assert_eq!(c.pools_settled(), None, "not followed yet");
        c.settle_all();
        let first = c.pools_settled().expect("settled");
        c.post(false);
        assert_eq!(c.pools_settled(), Some(first), "a dataset's change, written or not, is not a pool's");
        assert_eq!(c.settled(), None);
        c.post(true);
        assert_eq!(c.pools_settled(), None, "a pool's change announced, not yet known written");
        // A sync that took the changes so far ends while a dataset's
        // change read since is not yet synced: the pools' count stands.
        let (posted, pools) = (c.posted.load(Ordering::Acquire), c.pools.load(Ordering::Acquire));
        c.post(false);
        c.pools_written_up_to(pools);
        let second = c.pools_settled().expect("the pools' changes written");
        assert_ne!(second, first, "a pool's change moves it");
        assert_eq!(c.settled(), None, "the dataset's change is not");
        c.settle(posted + 1, pools);
        assert_eq!(c.pools_settled(), Some(second));
        c.stop();
        assert_eq!(c.pools_settled(), None, "no longer followed");
    }

    #[test]
    fn which_events_may_concern_a_pool() {
        let h = Some(HISTORY_EVENT);
        assert!(!pool_level(h, Some("tank/iocage/jails/a")), "a jail's property");
        assert!(!pool_level(h, Some("tank@daily")), "a snapshot of the root");
        assert!(pool_level(h, Some("tank")), "the root dataset: iocage's marker");
        assert!(pool_level(h, None), "a pool property, a command's record");
        assert!(pool_level(Some("sysevent.fs.zfs.pool_import"), None));
        assert!(pool_level(Some("sysevent.fs.zfs.pool_destroy"), Some("tank/x")), "only history records name datasets");
        assert!(pool_level(None, None), "no class: unknown");
    }
}
