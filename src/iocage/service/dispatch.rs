//! The seventeen actions, one arm each: what each reads or changes, in
//! which steps, and the reply it makes (shapes in `replies`).

use std::sync::Arc;
use std::time::Instant;

use serde_json::json;

use super::Iocage;
use super::on_pool::MissingPool;
use super::steps::ended;
use crate::iocage::body::Body;
use crate::iocage::error::ActionError;
use crate::iocage::index::Listing;
use crate::iocage::jails::{self, Natives};
use crate::iocage::lifecycle::{self, Progress};
use crate::iocage::props;
use crate::iocage::replies::{
    activated, console_reply, deactivated, default_settings, df, exec_reply, jail_settings, keyed, list_releases,
    progress_body,
};
use crate::iocage::request::{CreateKind, Request, Shown};
use crate::iocage::{create, destroy, pool};
use crate::runtime::console::Console;

impl Iocage {
    pub(super) async fn execute(&self, req: Request) -> Result<Body, ActionError> {
        let made = match req {
            Request::GetDefaultSettings => self.on_read_pool(|lib, layout| default_settings(lib, &layout)).await,
            // The one reply kept between requests.
            Request::ListJails => {
                let (_, jails) = self.read_jails(MissingPool::HasNoJails).await?;
                return self.list_jails(jails);
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
                            let one = jails::resolve(&listed, query)?.with_natives(lib)?;
                            jail_settings(&[Arc::new(one)], Some(query), prop.as_deref(), false)
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
                // Dfs asking while one reads share its scan (see `flight`).
                let since = self.writes.load(std::sync::atomic::Ordering::SeqCst);
                let this = self.clone();
                let scan = move || async move {
                    this.on_read_pool(|lib, layout| Ok(df(&jails::read_all(lib, &layout, Natives::Space)?))).await
                };
                self.df.join_or_start(since, scan).await
            }
            Request::ActivatePool { pool: Some(name) } => {
                self.marking_pools(move |lib| pool::activate(lib, &name).map(|()| activated(&name))).await
            }
            Request::ActivatePool { pool: None } => {
                self.on_read_pool(|_, layout| Ok(json!({"currently active": {"pool": layout.pool()}}))).await
            }
            Request::DeactivatePool { pool: name } => {
                self.marking_pools(move |lib| pool::deactivate(lib, &name).map(|()| deactivated(&name))).await
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
                let (plan, dir) = self
                    .on_jails(move |lib, layout, jails| {
                        let source = jails::resolve(&jails, &query)?;
                        let plan = create::prepare_clone(&layout, jails.with_incomplete(), source, &props, hooks)?;
                        create::begin(lib, &plan)?;
                        let dir = create::finish(lib, &plan)?;
                        Ok((plan, dir))
                    })
                    .await?;
                let plan = self.complete_create(plan, dir).await?;
                let created = format!("{} ({})", plan.uuid, plan.tag);
                Ok(json!({ "jail": jail, "props": raw_props, "success": { "Successfully created": created } }))
            }
            Request::DestroyJail { jail } => {
                let uuid = jails::resolve(&self.proven_listing().await?, &jail)?.uuid.clone();
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
                let (plan, turn) = self.plan_and_lock(&jail).await?;
                let (progress, plan) = self.blocking(move |rt| lifecycle::start(rt, &plan).map(|p| (p, plan))).await?;
                if let Progress::Lines(_) = progress {
                    self.record_start(plan.dataset, turn).await;
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
            Request::ExecJail { jail, user, command, output, timeout } => {
                let outlet = match &output {
                    Shown::Stream(None) => {
                        return Err(ActionError::BadArgument {
                            key: "output",
                            reason: "\"stream\" pushes the output over a WebSocket; over REST ask for \"lossless\""
                                .into(),
                        });
                    }
                    Shown::Stream(Some(outlet)) => Some(outlet.clone()),
                    Shown::Lines | Shown::Lossless => None,
                };
                // No turn: commands may run alongside each other and a stop.
                let target = self.target(&jail).await?;
                let out =
                    self.blocking(move |rt| lifecycle::exec(rt, &target, &user, &command, timeout, outlet)).await?;
                Ok(exec_reply(&out, &output))
            }
            Request::Console { jail, user, size, io } => {
                let Some((outlet, inlet)) = io else {
                    return Err(ActionError::BadArgument {
                        key: "action",
                        reason: "a console runs over a WebSocket: its input and output are messages there".into(),
                    });
                };
                let target = self.target(&jail).await?;
                let started = std::time::Instant::now();
                let console = Console { size, inlet };
                let out = self.blocking(move |rt| lifecycle::console(rt, &target, &user, outlet, console)).await?;
                Ok(console_reply(&out, started.elapsed()))
            }
        };
        made.map(Body::Made)
    }

    /// cleanjails (`everything` false) and cleanall: checked first, then
    /// every jail stopped (their turns held to the end), then destroyed,
    /// each step reporting its progress.
    pub(super) async fn clean(&self, action: &'static str, everything: bool) -> Result<(), ActionError> {
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

    /// The listjails reply for `jails` (see `replies::ListCache`).
    fn list_jails(&self, jails: Listing) -> Result<Body, ActionError> {
        Ok(self.listed.reply(jails, self.runtime.running()?))
    }
}
