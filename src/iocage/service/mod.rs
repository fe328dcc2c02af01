//! The iocage service: [`Iocage::run`] takes a parsed request and returns
//! the reply body that goes under the action's name.
//!
//! A request's way through this module, top to bottom:
//! - here: admission (`max_actions`), the action's own task (it finishes
//!   even if its client goes away), the read deadline, and the end of a
//!   write announced to the index and the jail watcher;
//! - `dispatch`: one arm per action, naming its steps;
//! - `steps`: the steps (a jail's turn, its lifecycle plan, blocking
//!   runtime work, createjail's copy);
//! - `on_pool`: which pool is in use, and the trips to the libzfs owner
//!   thread with its layout and, through the index, its jails.
//!
//! An action costs one trip to the owner thread for what it reads, where
//! it reads everything it needs (pools, jails, properties) in one pass;
//! a listing while ZFS announced no change costs none. Actions that name a
//! jail first find which one (a proven listing, `steps::proven_listing`);
//! a start records `last_started` in a trip after its reply (before it,
//! when `max_actions` leaves no room).

mod dispatch;
mod flight;
mod on_pool;
mod steps;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::body::Body;

use crate::runtime::{Runtime, Usage, kernel_name};
use crate::zfs::{Backend, Zfs};

use super::error::ActionError;
use super::fetch::{self, Fetches};
use super::index::Index;
use super::lifecycle;
use super::progress::Reporter;
use super::replies::ListCache;
use super::request::Request;
use super::turns::Turns;
use super::{autostart, destroy, watch};

pub use on_pool::PoolChoice;
use on_pool::{FoundPool, MissingPool};

/// What the service reports to metrics ([`Iocage::metrics`]).
#[derive(Debug, Clone, Default)]
pub struct ServiceMetrics {
    /// The running iocage jails whose accounts could be read.
    pub jails: Vec<JailUsage>,
    /// Running iocage jails whose accounts could not be read.
    pub unreadable: usize,
    /// Whether the jails could be listed at all (within `request_timeout`).
    pub listed: bool,
    /// Index answers from memory, after a proof with ZFS, and by reading.
    pub index_followed: u64,
    pub index_proven: u64,
    pub index_read: u64,
    pub actions_in_flight: usize,
    /// Jobs waiting for the libzfs owner thread.
    pub zfs_queue: usize,
}

/// One running jail's use of the machine.
#[derive(Debug, Clone)]
pub struct JailUsage {
    pub uuid: String,
    pub tag: String,
    pub usage: Usage,
}

/// The iocage service: ZFS, the jail runtime and the pool choice.
#[derive(Clone)]
pub struct Iocage {
    zfs: Zfs,
    runtime: Arc<dyn Runtime>,
    pool: PoolChoice,
    /// One lock per jail (by UUID), taken by start, stop, cap and destroy.
    turns: Arc<Turns>,
    /// The jails' iocage properties between requests (see `index`).
    index: Arc<Index>,
    /// The pool in use (or why there is none) and when it was found.
    pool_choice: Arc<Mutex<Option<FoundPool>>>,
    /// Host hooks, command timeouts and output limits (configuration).
    policy: lifecycle::Policy,
    /// Admission: one permit per action in flight (`max_actions`).
    actions: Arc<tokio::sync::Semaphore>,
    max_actions: usize,
    /// How long a read action may take before its caller is answered.
    read_deadline: Duration,
    /// Notified when a write action ends: the jail watcher looks at once.
    changed: Arc<tokio::sync::Notify>,
    /// Where long actions say how far they are (`with_events`).
    events: Option<Arc<dyn watch::Sink>>,
    /// Where releases come from, and the fetches running (`with_fetch`).
    fetches: Arc<Fetches>,
    /// The last listjails reply and what it was made from.
    listed: Arc<ListCache>,
    /// This daemon's write actions ended so far (see `flight`).
    writes: Arc<std::sync::atomic::AtomicU64>,
    /// The df scan under way, shared by the dfs asking meanwhile.
    df: Arc<flight::Flight>,
}

/// Ends a write action, when dropped: the next read proves the index with
/// ZFS, and the jail watcher looks at once.
struct WriteEnded(Iocage);

impl Drop for WriteEnded {
    fn drop(&mut self) {
        self.0.writes.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.0.index.invalidate();
        self.0.changed.notify_one();
    }
}

/// Actions in flight without a configuration (`max_actions`).
const DEFAULT_MAX_ACTIONS: usize = 256;

/// How long a read may take without a configuration (`request_timeout`).
const DEFAULT_READ_DEADLINE: Duration = Duration::from_secs(30);

impl Iocage {
    pub fn new(zfs: Zfs, runtime: Arc<dyn Runtime>, pool: PoolChoice) -> Self {
        Iocage {
            zfs,
            runtime,
            pool,
            turns: Arc::default(),
            index: Arc::default(),
            pool_choice: Arc::default(),
            policy: lifecycle::Policy::default(),
            actions: Arc::new(tokio::sync::Semaphore::new(DEFAULT_MAX_ACTIONS)),
            max_actions: DEFAULT_MAX_ACTIONS,
            read_deadline: DEFAULT_READ_DEADLINE,
            changed: Arc::default(),
            events: None,
            fetches: Arc::default(),
            listed: Arc::default(),
            writes: Arc::default(),
            df: Arc::default(),
        }
    }

    /// The same service trusting ZFS's event queue, followed into
    /// `changes`, to say when nothing changed: reads that find nothing
    /// announced answer from memory (see `index`).
    pub fn with_changes(mut self, changes: Arc<crate::zfs::Changes>) -> Self {
        self.index = Arc::new(Index::following(changes));
        self
    }

    /// The same service fetching releases as `settings` say.
    pub fn with_fetch(mut self, settings: fetch::Settings) -> Self {
        self.fetches = Arc::new(Fetches::new(settings));
        self
    }

    /// Runs `f` on the owner thread (a layout already chosen: the pool an
    /// action started on, whichever is active now).
    pub(super) async fn on_owner<R, F>(&self, f: F) -> Result<R, ActionError>
    where
        R: Send + 'static,
        F: FnOnce(&dyn Backend) -> Result<R, ActionError> + Send + 'static,
    {
        self.zfs.run(f).await?
    }

    /// The fetch settings and the fetches running (see `fetch`).
    pub(super) fn fetches(&self) -> Arc<Fetches> {
        self.fetches.clone()
    }

    /// The same service reporting long actions' progress to `sink`.
    pub fn with_events(mut self, sink: Arc<dyn watch::Sink>) -> Self {
        self.events = Some(sink);
        self
    }

    /// A reporter of `action`'s `step`, counted in `unit`.
    pub(super) fn reporter(&self, action: &'static str, step: &'static str, unit: &'static str) -> Arc<Reporter> {
        Arc::new(Reporter::new(self.events.clone(), action, step, unit))
    }

    /// The same service admitting at most `max_actions` actions at once,
    /// and answering a read that takes longer than `read_deadline` with
    /// [`ActionError::Overloaded`].
    pub fn with_limits(mut self, max_actions: usize, read_deadline: Duration) -> Self {
        self.max_actions = max_actions.max(1);
        self.actions = Arc::new(tokio::sync::Semaphore::new(self.max_actions));
        self.read_deadline = read_deadline;
        self
    }

    /// The same service with this policy (the configuration's).
    pub fn with_policy(mut self, policy: lifecycle::Policy) -> Self {
        self.policy = policy;
        self
    }

    /// Runs a request; `Ok` is the body that goes under the action's name.
    ///
    /// Admission first: with `max_actions` in flight the request is refused
    /// at once ([`ActionError::Overloaded`]). The request then runs as a
    /// task of its own, holding its permit: if the client goes away, the
    /// action still completes (or undoes itself); a create is never left
    /// half-made because a connection dropped. A read's caller waits at
    /// most the read deadline.
    pub async fn run(&self, req: Request) -> Result<Body, ActionError> {
        let permit = self.actions.clone().try_acquire_owned().map_err(|_| {
            ActionError::Overloaded(format!("{} actions are in flight (max_actions)", self.max_actions))
        })?;
        self.run_admitted(permit, req).await
    }

    /// [`Iocage::run`] that waits for room among `max_actions` instead of
    /// being refused (the daemon's own work: autostart, stops at shutdown).
    pub async fn run_waiting(&self, req: Request) -> Result<Body, ActionError> {
        let permit =
            self.actions.clone().acquire_owned().await.map_err(|_| ActionError::Overloaded("shutting down".into()))?;
        self.run_admitted(permit, req).await
    }

    /// Waits until no action is in flight, at most `within`; whether none is.
    pub async fn drain(&self, within: Duration) -> bool {
        let all = u32::try_from(self.max_actions).unwrap_or(u32::MAX);
        matches!(tokio::time::timeout(within, self.actions.acquire_many(all)).await, Ok(Ok(_)))
    }

    async fn run_admitted(&self, permit: tokio::sync::OwnedSemaphorePermit, req: Request) -> Result<Body, ActionError> {
        let write = req.action().is_write();
        let this = self.clone();
        let mut task = tokio::spawn(async move {
            let _permit = permit;
            // Here, not in the caller (gone if its client went), and however
            // the action ends.
            let _written = write.then(|| WriteEnded(this.clone()));
            this.execute(req).await
        });
        let joined = if write {
            task.await
        } else {
            match tokio::time::timeout(self.read_deadline, &mut task).await {
                Ok(joined) => joined,
                Err(_) => {
                    // A read changes nothing: stop it, so that its permit
                    // comes back (its libzfs job, if one is running,
                    // finishes on the owner thread and is dropped).
                    task.abort();
                    return Err(ActionError::Overloaded(format!(
                        "the read took longer than {} s (request_timeout)",
                        self.read_deadline.as_secs()
                    )));
                }
            }
        };
        joined.unwrap_or_else(|e| Err(steps::joined_failed("run the action", e)))
    }

    /// Every complete jail's tag, properties and whether it runs, for the
    /// jail watcher. Cheap while nothing changed (see `index`).
    /// Also names the pool they are on. A pool that is not imported (a
    /// configured `pool` exported) is an error, not a pool without jails:
    /// its jails were not destroyed.
    pub async fn jail_states(&self) -> Result<(String, watch::States), ActionError> {
        let (pool, jails) = self.read_jails(MissingPool::IsAnError).await?;
        Ok((pool, watch::states(&jails, &self.running_names()?)))
    }

    /// The `boot=on` jails that run (`running`) or not, by priority.
    pub async fn boot_jails(&self, running: bool) -> Result<autostart::Groups, ActionError> {
        let jails = self.on_jails(|_, _, jails| Ok(jails)).await?;
        Ok(autostart::plan(&jails, &self.running_names()?, running))
    }

    /// Every imported pool's name, health and capacity (percent used).
    pub async fn pool_states(&self) -> Result<Vec<(String, String, u64)>, ActionError> {
        let pools = self.zfs.run(|lib| lib.pools()).await??;
        Ok(pools.into_iter().map(|p| (p.name, p.health, p.capacity)).collect())
    }

    /// What the service reports to `GET /metrics`, as of now: the running
    /// iocage jails and what each uses (read on a blocking thread; a jail
    /// whose accounts cannot be read is counted, not listed), how the index
    /// answered, the actions in flight and the owner thread's queue.
    pub async fn metrics(&self) -> ServiceMetrics {
        // Bounded like a read: a scrape waits no longer for a busy owner
        // thread than a client would, and then says the jails were not read.
        let accounted = tokio::time::timeout(self.read_deadline, self.jail_usage()).await;
        let (jails, unreadable, listed) = match accounted {
            Ok(Ok((jails, unreadable))) => (jails, unreadable, true),
            Ok(Err(e)) => {
                tracing::debug!("metrics without jails: {e}");
                (Vec::new(), 0, false)
            }
            Err(_) => {
                tracing::debug!("metrics without jails: not listed within request_timeout");
                (Vec::new(), 0, false)
            }
        };
        let counts = self.index.counts();
        let get = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        ServiceMetrics {
            jails,
            unreadable,
            listed,
            index_followed: get(&counts.followed),
            index_proven: get(&counts.proven),
            index_read: get(&counts.read),
            actions_in_flight: self.max_actions.saturating_sub(self.actions.available_permits()),
            zfs_queue: self.zfs.queued(),
        }
    }

    /// The running iocage jails and what each uses, and how many more run
    /// whose accounts could not be read.
    async fn jail_usage(&self) -> Result<(Vec<JailUsage>, usize), ActionError> {
        let (_, listed) = self.read_jails(MissingPool::HasNoJails).await?;
        let tags: HashMap<String, (String, String)> =
            listed.iter().map(|j| (kernel_name(&j.uuid), (j.uuid.clone(), j.tag().to_string()))).collect();
        self.blocking(move |rt| {
            let mut jails = Vec::new();
            let mut unreadable = 0;
            for running in rt.running()? {
                let Some((uuid, tag)) = tags.get(&running.name) else { continue };
                match rt.usage(&running) {
                    Ok(usage) => jails.push(JailUsage { uuid: uuid.clone(), tag: tag.clone(), usage }),
                    Err(e) => {
                        tracing::debug!("metrics: {e}");
                        unreadable += 1;
                    }
                }
            }
            Ok((jails, unreadable))
        })
        .await
    }

    /// How the jail index found its answers (logged at shutdown).
    pub fn index_counts(&self) -> String {
        self.index.counts().to_string()
    }

    /// Notified when one of this daemon's write actions ends.
    pub fn changes(&self) -> Arc<tokio::sync::Notify> {
        self.changed.clone()
    }

    /// Removes what creates left incomplete (run at start-up). Without an
    /// active pool there is nothing to recover.
    pub async fn recover(&self) -> Result<Vec<String>, ActionError> {
        match self.on_pool(|lib, layout| destroy::recover(lib, &layout)).await {
            Err(ActionError::NoActivePool) => Ok(Vec::new()),
            other => other,
        }
    }
}
