//! The iocage actions. [`Iocage::run`] takes a parsed request and returns
//! the reply body that goes under the action's name. Each action costs one
//! trip to the libzfs owner thread, where it reads everything it needs
//! (pools, jails, properties) in one pass.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::OwnedMutexGuard;

use serde_json::{Value, json};

use crate::runtime::{Runtime, kernel_name};
use crate::zfs::{Libzfs, OnProgress, Progress as CopyProgress, Zfs};

use super::error::ActionError;
use super::fetch::{self, Fetches};
use super::index::{Index, Listing};
use super::jails::{self, Natives};
use super::layout::Layout;
use super::lifecycle::{self, Progress};
use super::pool;
use super::progress::Reporter;
use super::props::{self, USER_PREFIX};
use super::replies::{
    ListCache, activated, deactivated, default_settings, df, exec_reply, jail_settings, keyed, list_releases,
    progress_body,
};
use super::request::{CreateKind, PropList, Request};
use super::turns::Turns;
use super::{autostart, create, destroy, names, watch};

/// A step's result, its end reported: failed (with why) or left to the
/// caller to finish.
fn ended<T>(report: &Reporter, result: Result<T, ActionError>) -> Result<T, ActionError> {
    if let Err(e) = &result {
        report.fail(e);
    }
    result
}

/// Which pool the service works on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoolChoice {
    /// The one pool marked active (an error when none or several are).
    Auto,
    /// This pool, whatever the markers say (configuration `pool = "..."`).
    Fixed(String),
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
}

/// Ends a write action, when dropped: the next read proves the index with
/// ZFS, and the jail watcher looks at once.
struct WriteEnded(Iocage);

impl Drop for WriteEnded {
    fn drop(&mut self) {
        self.0.index.invalidate();
        self.0.changed.notify_one();
    }
}

/// When the pool in use was found, and which it was (or why none).
struct FoundPool {
    at: Instant,
    found: Result<String, ActionError>,
}

/// How old the pool choice a read uses may be: a pool imported, exported
/// or (de)activated behind the daemon's back shows in reads within this.
/// The daemon's own activatepool and deactivatepool show at once, and so
/// does a pool becoming active where none was (no active pool is never
/// remembered: the jail watcher, reading every second, would otherwise
/// make a pool set up behind the daemon's back look absent to the next
/// client read).
const POOL_CHOICE_AGE: Duration = Duration::from_secs(1);

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
        F: FnOnce(&Libzfs) -> Result<R, ActionError> + Send + 'static,
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
    pub async fn run(&self, req: Request) -> Result<Value, ActionError> {
        let permit = self.actions.clone().try_acquire_owned().map_err(|_| {
            ActionError::Overloaded(format!("{} actions are in flight (max_actions)", self.max_actions))
        })?;
        self.run_admitted(permit, req).await
    }

    /// [`Iocage::run`] that waits for room among `max_actions` instead of
    /// being refused (the daemon's own work: autostart, stops at shutdown).
    pub async fn run_waiting(&self, req: Request) -> Result<Value, ActionError> {
        let permit =
            self.actions.clone().acquire_owned().await.map_err(|_| ActionError::Overloaded("shutting down".into()))?;
        self.run_admitted(permit, req).await
    }

    /// Waits until no action is in flight, at most `within`; whether none is.
    pub async fn drain(&self, within: Duration) -> bool {
        let all = u32::try_from(self.max_actions).unwrap_or(u32::MAX);
        matches!(tokio::time::timeout(within, self.actions.acquire_many(all)).await, Ok(Ok(_)))
    }

    async fn run_admitted(
        &self,
        permit: tokio::sync::OwnedSemaphorePermit,
        req: Request,
    ) -> Result<Value, ActionError> {
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
        joined.unwrap_or_else(|e| Err(ActionError::Io { what: "run the action".into(), message: e.to_string() }))
    }

    /// Every complete jail's tag, properties and whether it runs, for the
    /// jail watcher. Cheap while nothing changed (see `index`).
    /// Also names the pool they are on. A pool that is not imported (a
    /// configured `pool` exported) is an error, not a pool without jails:
    /// its jails were not destroyed.
    pub async fn jail_states(&self) -> Result<(String, watch::States), ActionError> {
        if let Some((pool, jails)) = self.followed_jails() {
            return Ok((pool, watch::states(&jails, &self.running_names()?)));
        }
        let index = self.index.clone();
        let (pool, jails) = self
            .on_read_pool(move |lib, layout| {
                if !lib.exists(layout.pool()) {
                    return Err(ActionError::PoolNotFound(layout.pool().to_string()));
                }
                Ok((layout.pool().to_string(), index.jails(lib, &layout, Instant::now())?))
            })
            .await?;
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

    async fn execute(&self, req: Request) -> Result<Value, ActionError> {
        match req {
            Request::GetDefaultSettings => self.on_read_pool(|lib, layout| default_settings(lib, &layout)).await,
            Request::ListJails => {
                let jails = match self.followed_jails() {
                    Some((_, jails)) => jails,
                    None => {
                        let arrived = Instant::now();
                        let index = self.index.clone();
                        self.on_read_pool(move |lib, layout| index.jails(lib, &layout, arrived)).await?
                    }
                };
                Ok(self.list_jails(jails)?)
            }
            Request::GetJailSettings { jail, prop, all_jails } => {
                let arrived = Instant::now();
                let index = self.index.clone();
                self.on_read_pool(move |lib, layout| {
                    let wanted = prop.as_deref().filter(|p| *p != "all");
                    let natives = wanted.is_none_or(|p| props::lookup(p).is_some_and(|p| p.kind.is_native()));
                    match (all_jails, jail.as_deref()) {
                        (true, _) if natives => {
                            let jails = jails::read_all(lib, &layout, Natives::All)?;
                            jail_settings(&jails, None, prop.as_deref(), true)
                        }
                        (false, Some(query)) if natives => {
                            let listed = index.jails(lib, &layout, arrived)?;
                            let one = jails::resolve(&listed, query)?.clone().with_natives(lib)?;
                            jail_settings(&[one], Some(query), prop.as_deref(), false)
                        }
                        _ => {
                            let listed = index.jails(lib, &layout, arrived)?;
                            jail_settings(&listed, jail.as_deref(), prop.as_deref(), all_jails)
                        }
                    }
                })
                .await
            }
            Request::Df => {
                self.on_read_pool(|lib, layout| Ok(df(&jails::read_all(lib, &layout, Natives::Space)?))).await
            }
            Request::ActivatePool { pool: Some(name) } => {
                let done = self.zfs.run(move |lib| pool::activate(lib, &name).map(|()| activated(&name))).await?;
                self.forget_pool_choice();
                done
            }
            Request::ActivatePool { pool: None } => {
                self.on_read_pool(|_, layout| Ok(json!({"currently active": {"pool": layout.pool()}}))).await
            }
            Request::DeactivatePool { pool: name } => {
                let done = self.zfs.run(move |lib| pool::deactivate(lib, &name).map(|()| deactivated(&name))).await?;
                self.forget_pool_choice();
                done
            }
            Request::CreateJail { props, kind, raw_props, raw_switches } => {
                let plan = self.create(kind, props).await?;
                let success = if kind == CreateKind::Empty {
                    json!({ "uuid": plan.uuid })
                } else {
                    json!({ "Successfully created": format!("{} ({})", plan.uuid, plan.tag) })
                };
                Ok(json!({ "props": raw_props, "switches": raw_switches, "success": success }))
            }
            Request::CloneJail { jail, props, raw_props } => {
                let query = jail.clone();
                let hooks = self.policy.allow_host_hooks;
                let plan = self
                    .on_jails(move |lib, layout, jails| {
                        let source = jails::resolve(&jails, &query)?;
                        let plan = create::prepare_clone(&layout, jails.with_incomplete(), source, &props, hooks)?;
                        create::begin(lib, &plan)?;
                        create::finish(lib, &plan)?;
                        Ok(plan)
                    })
                    .await?;
                let created = format!("{} ({})", plan.uuid, plan.tag);
                Ok(json!({ "jail": jail, "props": raw_props, "success": { "Successfully created": created } }))
            }
            Request::DestroyJail { jail } => {
                let uuid = self.uuid_of(&jail).await?;
                let _turn = self.turn(&uuid).await;
                let running = self.running_names()?;
                // The jail whose turn we hold, by its UUID: the client's
                // name may mean another jail by now.
                self.on_jails(move |lib, layout, jails| {
                    let target = jails::by_uuid(&jails, &uuid)?;
                    destroy::destroy_jail(lib, &layout, target, &running)?;
                    Ok(json!({ "success": { "Destroying": target.uuid } }))
                })
                .await
            }
            Request::CleanJails => {
                self.clean("cleanjails", false).await?;
                Ok(json!({ "success": "All jails have been cleaned." }))
            }
            Request::CleanReleases => {
                self.fetches.refuse_while_fetching(None)?;
                self.on_pool(|lib, layout| destroy::clean_releases(lib, &layout)).await?;
                Ok(json!({ "success": "All RELEASEs have been cleaned." }))
            }
            Request::CleanTemplates => {
                self.on_pool(|lib, layout| destroy::clean_templates(lib, &layout)).await?;
                Ok(json!({ "success": "All templates have been cleaned." }))
            }
            Request::CleanAll => {
                self.fetches.refuse_while_fetching(None)?;
                self.clean("cleanall", true).await?;
                Ok(json!({ "success": "All iocage datasets have been cleaned." }))
            }
            Request::ListReleases { remote: false } => {
                self.on_read_pool(|lib, layout| Ok(list_releases(&destroy::list_releases(lib, &layout)?))).await
            }
            Request::ListReleases { remote: true } => {
                Ok(json!({ "remote": super::fetch::remote_releases(&self.fetches.settings).await? }))
            }
            Request::FetchRelease(wanted) => self.fetch_release(wanted).await,
            Request::DestroyRelease { release } => {
                self.fetches.refuse_while_fetching(Some(&release))?;
                let r = release.clone();
                self.on_pool(move |lib, layout| destroy::destroy_release(lib, &layout, &r)).await?;
                Ok(json!({ "success": format!("release {release} destroyed.") }))
            }
            Request::StartJail { jail } => {
                let (plan, _turn) = self.plan_and_lock(&jail).await?;
                let (progress, plan) = self.blocking(move |rt| lifecycle::start(rt, &plan).map(|p| (p, plan))).await?;
                if let Progress::Lines(_) = progress {
                    let prop = format!("{USER_PREFIX}last_started");
                    let stamp = names::timestamp();
                    self.zfs.run(move |lib| lib.set_props(&plan.dataset, &[(prop.as_str(), stamp.as_str())])).await??;
                }
                Ok(keyed(jail, progress_body(progress)))
            }
            Request::StopJail { jail } => {
                let (plan, _turn) = self.plan_and_lock(&jail).await?;
                let progress = self.blocking(move |rt| lifecycle::stop(rt, &plan)).await?;
                Ok(keyed(jail, progress_body(progress)))
            }
            Request::CapJail { jail } => {
                let (plan, _turn) = self.plan_and_lock(&jail).await?;
                self.blocking(move |rt| lifecycle::cap(rt, &plan)).await?;
                Ok(json!({ "success": format!("jail {jail} capped.") }))
            }
            Request::ExecJail { jail, user, command, lossless, timeout } => {
                // No turn: commands may run alongside each other and a stop.
                let plan = self.plan(&jail).await?;
                let out = self.blocking(move |rt| lifecycle::exec(rt, &plan, &user, &command, timeout)).await?;
                Ok(exec_reply(&out, lossless))
            }
        }
    }

    /// cleanjails (`everything` false) and cleanall: checked first, then
    /// every jail stopped (their turns held to the end), then destroyed,
    /// each step reporting its progress.
    async fn clean(&self, action: &'static str, everything: bool) -> Result<(), ActionError> {
        self.on_pool(move |lib, layout| destroy::check_clean(lib, &layout, everything)).await?;
        let _turns = self.stop_all(action).await?;
        let running = self.running_names()?;
        let report = self.reporter(action, "destroy", "datasets");
        let r = report.clone();
        let cleaned = self
            .on_pool(move |lib, layout| {
                let on_each = &mut |done, total, name: &str| r.report(done, total, name);
                if everything {
                    destroy::clean_all(lib, &layout, &running, on_each)
                } else {
                    destroy::clean_jails(lib, &layout, &running, on_each)
                }
            })
            .await;
        ended(&report, cleaned)?;
        report.finish_counted();
        Ok(())
    }

    /// The UUID of the jail a client names.
    async fn uuid_of(&self, query: &str) -> Result<String, ActionError> {
        let query = query.to_string();
        self.on_jails(move |_, _, jails| Ok(jails::resolve(&jails, &query)?.uuid.clone())).await
    }

    /// Takes the turn of every jail of the pool (in UUID order, so two
    /// cleans cannot deadlock; other actions hold one turn at a time) and
    /// stops the running ones. The clean actions hold the turns until the
    /// jails are destroyed: no start can slip in between (iocage did not
    /// stop jails at all). Each stop is reported as `action`'s progress.
    async fn stop_all(&self, action: &'static str) -> Result<Vec<OwnedMutexGuard<()>>, ActionError> {
        let mut uuids: Vec<String> =
            self.on_jails(|_, _, jails| Ok(jails.iter().map(|j| j.uuid.clone()).collect())).await?;
        uuids.sort();
        let mut turns = Vec::with_capacity(uuids.len());
        for uuid in &uuids {
            turns.push(self.turn(uuid).await);
        }
        // Which run is read once every turn is ours: none can change now.
        let running = self.running_names()?;
        let plans = self
            .on_jails(move |lib, layout, jails| {
                jails
                    .iter()
                    .filter(|j| running.contains(&kernel_name(&j.uuid)))
                    .map(|j| located(lib, &layout, lifecycle::plan(&j.clone().with_natives(lib)?)?))
                    .collect()
            })
            .await?;
        let plans: Vec<lifecycle::Plan> = plans;
        let report = self.reporter(action, "stop", "jails");
        let total = plans.len() as u64;
        for (done, mut plan) in (1..).zip(plans) {
            plan.policy = self.policy.clone();
            let uuid = plan.uuid.clone();
            ended(&report, self.blocking(move |rt| lifecycle::stop(rt, &plan)).await.map(drop))?;
            report.report(done, total, &uuid);
        }
        report.finish_counted();
        Ok(turns)
    }

    /// The lifecycle plan of the jail a client names.
    async fn plan(&self, query: &str) -> Result<lifecycle::Plan, ActionError> {
        let query = query.to_string();
        let policy = self.policy.clone();
        self.on_jails(move |lib, layout, listed| {
            let mut plan =
                located(lib, &layout, lifecycle::plan(&jails::resolve(&listed, &query)?.clone().with_natives(lib)?)?)?;
            plan.policy = policy;
            Ok(plan)
        })
        .await
    }

    /// This jail's turn, and then its plan: start, stop, cap and destroy of
    /// one jail never interleave (other jails' go on in parallel), and the
    /// plan is made from what the jail is once the turn is ours (a destroy
    /// or a change of properties may have come first).
    async fn plan_and_lock(&self, query: &str) -> Result<(lifecycle::Plan, OwnedMutexGuard<()>), ActionError> {
        let uuid = self.uuid_of(query).await?;
        let turn = self.turn(&uuid).await;
        let plan = self.plan(&uuid).await?;
        Ok((plan, turn))
    }

    /// Waits for, and holds, the jail's turn.
    async fn turn(&self, uuid: &str) -> OwnedMutexGuard<()> {
        self.turns.take(uuid).await
    }

    /// Runs a blocking runtime operation on a blocking thread.
    async fn blocking<R, F>(&self, f: F) -> Result<R, ActionError>
    where
        R: Send + 'static,
        F: FnOnce(&dyn Runtime) -> Result<R, ActionError> + Send + 'static,
    {
        let rt = self.runtime.clone();
        tokio::task::spawn_blocking(move || f(&*rt))
            .await
            .unwrap_or_else(|e| Err(ActionError::Io { what: "run the action".into(), message: e.to_string() }))
    }

    /// createjail in its steps (see `create`): the copy of a thick jail runs
    /// on a blocking thread, between two short trips to the owner thread.
    async fn create(&self, kind: CreateKind, props: PropList) -> Result<create::Plan, ActionError> {
        let hooks = self.policy.allow_host_hooks;
        let plan = self
            .on_jails(move |lib, layout, jails| {
                let plan = create::prepare(lib, &layout, jails.with_incomplete(), kind, &props, hooks)?;
                create::begin(lib, &plan)?;
                Ok(plan)
            })
            .await?;
        let p = plan.clone();
        let report = self.reporter("createjail", "copy", "bytes");
        let (r, uuid) = (report.clone(), plan.uuid.clone());
        let on_progress: OnProgress = Arc::new(move |p| match p {
            CopyProgress::Sending { sent, total } => r.report(sent, total, &uuid),
            CopyProgress::Done { bytes } => r.finish(bytes),
        });
        let copied = tokio::task::spawn_blocking(move || create::copy(&p, on_progress))
            .await
            .unwrap_or_else(|e| Err(ActionError::Io { what: "copy the release".into(), message: e.to_string() }));
        if let Err(cause) = copied {
            report.fail(&cause);
            let p = plan.clone();
            self.zfs.run(move |lib| create::undo(lib, &p)).await?;
            return Err(ActionError::CreateFailed {
                uuid: plan.uuid,
                step: "copying the release",
                cause: Box::new(cause),
            });
        }
        let p = plan.clone();
        self.zfs.run(move |lib| create::finish(lib, &p)).await??;
        Ok(plan)
    }

    /// Kernel names of the running jails.
    fn running_names(&self) -> Result<HashSet<String>, ActionError> {
        Ok(self.runtime.running()?.into_iter().map(|j| j.name).collect())
    }

    /// The pool in use and its jails from memory, when ZFS has announced
    /// no change since both were last proven (see `index`): no libzfs call,
    /// no trip to the owner thread.
    fn followed_jails(&self) -> Option<(String, Listing)> {
        let pool = match &self.pool {
            PoolChoice::Fixed(p) => p.clone(),
            // As every read trusts it (POOL_CHOICE_AGE); never waiting
            // for the lock, which the owner thread holds while it looks.
            PoolChoice::Auto => {
                let cache = match self.pool_choice.try_lock() {
                    Ok(cache) => cache,
                    Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
                    Err(std::sync::TryLockError::WouldBlock) => return None,
                };
                cache.as_ref().filter(|f| f.at.elapsed() < POOL_CHOICE_AGE)?.found.clone().ok()?
            }
        };
        let jails = self.index.followed(&pool)?;
        Some((pool, jails))
    }

    /// After activatepool or deactivatepool: reads find the pool afresh.
    fn forget_pool_choice(&self) {
        *self.pool_choice.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Runs `f` on the owner thread with the layout of the pool in use,
    /// found afresh (every action that changes anything uses this).
    pub(super) async fn on_pool<R, F>(&self, f: F) -> Result<R, ActionError>
    where
        R: Send + 'static,
        F: FnOnce(&Libzfs, Layout) -> Result<R, ActionError> + Send + 'static,
    {
        self.on_pool_within(Duration::ZERO, f).await
    }

    /// [`Iocage::on_pool`] with the pool's jails, as the index has them now
    /// (proven with ZFS: see [`Index::proven_jails`]).
    async fn on_jails<R, F>(&self, f: F) -> Result<R, ActionError>
    where
        R: Send + 'static,
        F: FnOnce(&Libzfs, Layout, Listing) -> Result<R, ActionError> + Send + 'static,
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
    async fn on_read_pool<R, F>(&self, f: F) -> Result<R, ActionError>
    where
        R: Send + 'static,
        F: FnOnce(&Libzfs, Layout) -> Result<R, ActionError> + Send + 'static,
    {
        self.on_pool_within(POOL_CHOICE_AGE, f).await
    }

    async fn on_pool_within<R, F>(&self, age: Duration, f: F) -> Result<R, ActionError>
    where
        R: Send + 'static,
        F: FnOnce(&Libzfs, Layout) -> Result<R, ActionError> + Send + 'static,
    {
        let choice = self.pool.clone();
        let cache = self.pool_choice.clone();
        self.zfs
            .run(move |lib| {
                let pool = match choice {
                    PoolChoice::Fixed(p) => p,
                    PoolChoice::Auto => {
                        let mut cache = cache.lock().unwrap_or_else(|p| p.into_inner());
                        // Only a pool found is reused: a failure to find one
                        // (none active, as while a pool is being set up behind
                        // the daemon's back) is looked at again by the next
                        // read, not kept for POOL_CHOICE_AGE.
                        let fresh = |f: &&FoundPool| f.found.is_ok() && !age.is_zero() && f.at.elapsed() < age;
                        match cache.as_ref().filter(fresh) {
                            Some(f) => f.found.clone()?,
                            None => {
                                lib.forget_pools();
                                let found = lib.pools().map_err(ActionError::from).and_then(|p| pool::active(&p));
                                *cache = Some(FoundPool { at: Instant::now(), found: found.clone() });
                                found?
                            }
                        }
                    }
                };
                f(lib, Layout::new(pool))
            })
            .await?
    }

    /// The listjails reply for `jails` (see [`ListCache`]).
    fn list_jails(&self, jails: Listing) -> Result<Value, ActionError> {
        Ok(self.listed.reply(jails, self.runtime.running()?))
    }
}

/// A lifecycle plan with the place its jail must be mounted at (the
/// mountpoint of the pool's `iocage/jails`).
fn located(lib: &Libzfs, layout: &Layout, mut plan: lifecycle::Plan) -> Result<lifecycle::Plan, ActionError> {
    let mp = lib.native_props(&layout.jails(), &["mountpoint"])?;
    plan.jails_dir = mp
        .get("mountpoint")
        .and_then(|m| m.printed.as_deref())
        .filter(|m| m.starts_with('/'))
        .map(std::path::PathBuf::from);
    Ok(plan)
}
