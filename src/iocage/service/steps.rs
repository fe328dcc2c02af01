//! The steps actions are made of: finding a jail, taking its turn,
//! planning its lifecycle, running blocking runtime work, the stops before
//! a clean, and createjail's copy between two trips to the owner thread.

use std::collections::HashSet;
use std::sync::Arc;

use tokio::sync::OwnedMutexGuard;

use super::Iocage;
use crate::iocage::error::ActionError;
use crate::iocage::index::Listing;
use crate::iocage::progress::Reporter;
use crate::iocage::request::{CreateKind, PropList};
use crate::iocage::{create, jails, lifecycle};
use crate::runtime::{Runtime, kernel_name};
use crate::zfs::{OnProgress, Progress as CopyProgress};

/// A step's result, its end reported: failed (with why) or left to the
/// caller to finish.
pub(super) fn ended<T>(report: &Reporter, result: Result<T, ActionError>) -> Result<T, ActionError> {
    if let Err(e) = &result {
        report.fail(e);
    }
    result
}

impl Iocage {
    /// Takes the turn of every jail of the pool (in UUID order, so two
    /// cleans cannot deadlock; other actions hold one turn at a time) and
    /// stops the running ones. The clean actions hold the turns until the
    /// jails are destroyed: no start can slip in between (iocage did not
    /// stop jails at all). Each stop is reported as `action`'s progress.
    pub(super) async fn stop_all(&self, action: &'static str) -> Result<Vec<OwnedMutexGuard<()>>, ActionError> {
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
            .on_jails(move |_, _, jails| {
                jails
                    .iter()
                    .filter(|j| running.contains(&kernel_name(&j.uuid)))
                    .map(|j| Ok(located(&jails, lifecycle::plan(j)?)))
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

    /// The lifecycle plan of the jail a client names, from its properties
    /// (its fstab, a host file, is read by start and stop themselves).
    pub(super) async fn plan(&self, uuid: &str) -> Result<lifecycle::Plan, ActionError> {
        let uuid = uuid.to_string();
        let policy = self.policy.clone();
        self.on_jails(move |_, _, listed| {
            // The jail's directory is the index's (`jails::INDEXED_NATIVES`).
            let mut plan = located(&listed, lifecycle::plan(jails::by_uuid(&listed, &uuid)?)?);
            plan.policy = policy;
            Ok(plan)
        })
        .await
    }

    /// The jails of the pool in use, proven current with ZFS (the
    /// history ioctl: a tag changed behind the daemon's back is seen as
    /// soon as the change returned), with the pool in use as reads find
    /// it (trusted for a second, `POOL_CHOICE_AGE`). What actions that
    /// name a jail resolve the name with: one or two ioctls where finding
    /// the pool afresh opens every pool.
    pub(super) async fn proven_listing(&self) -> Result<Listing, ActionError> {
        let index = self.index.clone();
        self.on_read_pool(move |lib, layout| index.proven_jails(lib, &layout)).await
    }

    /// The running jail a command is for (execjail, console): which one the
    /// client means ([`Iocage::proven_listing`]), and no more. A command
    /// writes nothing to ZFS and needs none of the jail's properties;
    /// whether the jail runs is asked of the runtime, live.
    pub(super) async fn target(&self, query: &str) -> Result<lifecycle::Target, ActionError> {
        let jails = self.proven_listing().await?;
        Ok(lifecycle::Target::new(jails::resolve(&jails, query)?, self.policy.clone()))
    }

    /// This jail's turn, and then its plan: start, stop, cap and destroy of
    /// one jail never interleave (other jails' go on in parallel), and the
    /// plan is made from what the jail is once the turn is ours (a destroy
    /// or a change of properties may have come first).
    ///
    /// Which jail the client means is found with [`Iocage::proven_listing`];
    /// the plan, made once the turn is ours, with the pool as writes find
    /// it (`Iocage::on_pool`), by that UUID.
    pub(super) async fn plan_and_lock(
        &self,
        query: &str,
    ) -> Result<(lifecycle::Plan, OwnedMutexGuard<()>), ActionError> {
        let uuid = jails::resolve(&self.proven_listing().await?, query)?.uuid.clone();
        let turn = self.turn(&uuid).await;
        let plan = self.plan(&uuid).await?;
        Ok((plan, turn))
    }

    /// Records a start in the jail's `last_started`, as iocage did, after
    /// the reply: the jail runs once `lifecycle::start` returns, and a
    /// property write waits for ZFS to sync (tens of milliseconds, a
    /// large part of a start). The write holds the jail's turn, so a stop,
    /// cap or destroy of it (and the daemon's own stops at shutdown) comes
    /// after, and a place among the actions in flight, so that shutdown
    /// (`drain`) waits for it (taken while the start holds its own, which
    /// it gives up with the reply: no request after the reply finds fewer
    /// places free than during the start). With no place free (the daemon
    /// busy, or shutting down) it is made before the reply instead, in the
    /// start's own place. The index and the jail watcher are told when it
    /// has been made. A failure is logged: the jail runs all the same.
    pub(super) async fn record_start(&self, dataset: String, turn: OwnedMutexGuard<()>) {
        match self.actions.clone().try_acquire_owned() {
            Ok(permit) => {
                let this = self.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    this.write_last_started(dataset, turn).await;
                });
            }
            Err(_) => self.write_last_started(dataset, turn).await,
        }
    }

    async fn write_last_started(&self, dataset: String, turn: OwnedMutexGuard<()>) {
        let _turn = turn;
        let _written = super::WriteEnded(self.clone());
        let prop = format!("{}last_started", crate::iocage::props::USER_PREFIX);
        let stamp = crate::iocage::names::timestamp();
        let d = dataset.clone();
        let written = self.zfs.run(move |lib| lib.set_props(&d, &[(prop.as_str(), stamp.as_str())])).await;
        if let Err(error) = written.map_err(|e| e.to_string()).and_then(|w| w.map_err(|e| e.to_string())) {
            tracing::warn!(%dataset, %error, "startjail: recording last_started failed");
        }
    }

    /// Waits for, and holds, the jail's turn.
    pub(super) async fn turn(&self, uuid: &str) -> OwnedMutexGuard<()> {
        self.turns.take(uuid).await
    }

    /// Runs a blocking runtime operation on a blocking thread.
    pub(super) async fn blocking<R, F>(&self, f: F) -> Result<R, ActionError>
    where
        R: Send + 'static,
        F: FnOnce(&dyn Runtime) -> Result<R, ActionError> + Send + 'static,
    {
        let rt = self.runtime.clone();
        on_blocking_thread("run the action", move || f(&*rt)).await
    }

    /// createjail in its steps (see `create`): the copy of a thick jail runs
    /// on a blocking thread, between two short trips to the owner thread.
    pub(super) async fn create(&self, kind: CreateKind, props: PropList) -> Result<create::Plan, ActionError> {
        let hostid = on_blocking_thread("read /etc/hostid", || Ok(crate::iocage::names::host_id())).await?;
        let new = create::NewJail { kind, props, allow_host_hooks: self.policy.allow_host_hooks, hostid };
        let plan = self
            .on_jails(move |lib, layout, jails| {
                let plan = create::prepare(lib, &layout, jails.with_incomplete(), &new)?;
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
        let zfs = self.zfs.clone();
        let copied = on_blocking_thread("copy the release", move || create::copy(&zfs, &p, on_progress)).await;
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
        let dir = self.zfs.run(move |lib| create::finish(lib, &p)).await??;
        self.complete_create(plan, dir).await
    }

    /// createjail's and clonejail's last steps: the jail's fstab in `dir`
    /// (a host file: on a blocking thread, not the owner thread), then its
    /// marker removed. A failure undoes the create.
    pub(super) async fn complete_create(&self, plan: create::Plan, dir: String) -> Result<create::Plan, ActionError> {
        let p = plan.clone();
        let written = on_blocking_thread("write the jail's fstab", move || create::write_fstab(&p, &dir)).await;
        let p = plan.clone();
        match written {
            Ok(()) => self.zfs.run(move |lib| create::unmark(lib, &p)).await??,
            Err(cause) => {
                return Err(self.zfs.run(move |lib| create::abandon(lib, &p, "writing its fstab", cause)).await?);
            }
        }
        Ok(plan)
    }

    /// Kernel names of the running jails.
    pub(super) fn running_names(&self) -> Result<HashSet<String>, ActionError> {
        Ok(self.runtime.running()?.into_iter().map(|j| j.name).collect())
    }
}

/// A lifecycle plan with the place its jail must be mounted at: the
/// mountpoint of the pool's `iocage/jails` as the index read it with the
/// jails (see `index::GuidRead`).
pub(super) fn located(listed: &Listing, mut plan: lifecycle::Plan) -> lifecycle::Plan {
    plan.jails_dir = listed.jails_dir().map(std::path::Path::to_path_buf);
    plan
}

/// Runs `f` on a blocking thread; a panic there fails as `what`.
pub(super) async fn on_blocking_thread<T, F>(what: &str, f: F) -> Result<T, ActionError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, ActionError> + Send + 'static,
{
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| Err(joined_failed(what, e)))
}

/// A task that panicked (or was cancelled) while doing `what`.
pub(super) fn joined_failed(what: &str, e: tokio::task::JoinError) -> ActionError {
    ActionError::Io { what: what.into(), message: e.to_string() }
}
