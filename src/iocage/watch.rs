//! Jail events: what changed about the jails, whoever changed it.
//!
//! [`watch`] compares the jails as they are with how they were, after each
//! of this daemon's own write actions and otherwise once a [`TICK`]. Both
//! halves are cheap while nothing changes, so changes made behind the
//! daemon's back (`zfs set`, `iocage`, a jail started or removed by other
//! tools) show within a tick without reading every jail:
//! - properties come from the jail index, which asks ZFS's pool history
//!   whether anything was written (one ioctl) and reads again only the
//!   jails the new history records name (see `index`);
//! - running or not comes from the runtime's jail list.
//!
//! Each difference is one event ([`JailEvent`]): `created`, `destroyed`,
//! `started`, `stopped`, `limits` (resource limits changed) and
//! `properties` (any other property), with the jail's UUID, tag and state.
//!
//! Long actions (a thick createjail, cleanjails, cleanall) also say how far
//! they are as they go ([`ProgressEvent`]), on the same stream.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::Notify;

use super::jails::Jail;
use super::props::{self, Format};

/// How often changes made behind the daemon's back are looked for.
pub const TICK: Duration = Duration::from_secs(1);

/// One jail as the watcher compares it: the index's own copy of the jail
/// (shared, not copied: the index reads again only the jails that
/// changed, so an unchanged jail is the very same one round after round).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JailState {
    pub running: bool,
    pub jail: Arc<Jail>,
}

impl JailState {
    /// The names of the iocage properties whose values differ in `other`.
    fn changed(&self, other: &JailState) -> Vec<String> {
        if Arc::ptr_eq(&self.jail, &other.jail) {
            return Vec::new();
        }
        let (o, n) = (self.jail.stored(), other.jail.stored());
        let names: BTreeSet<&str> = o.iter().chain(n.iter()).map(|(k, _)| k).collect();
        names.into_iter().filter(|k| o.get(k) != n.get(k)).map(str::to_string).collect()
    }
}

/// Every complete jail, by UUID.
pub type States = BTreeMap<String, JailState>;

/// The states of `jails`, running when their kernel name is in `running`.
pub fn states(jails: &[Arc<Jail>], running: &HashSet<String>) -> States {
    jails
        .iter()
        .filter(|j| !j.incomplete)
        .map(|j| {
            let state =
                JailState { running: running.contains(&crate::runtime::kernel_name(&j.uuid)), jail: Arc::clone(j) };
            (j.uuid.clone(), state)
        })
        .collect()
}

/// A change to one jail, as subscribers of the `iocage` events get it (also
/// what autostart did: see `autostart`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JailEvent {
    /// `created`, `destroyed`, `started`, `stopped`, `limits` or `properties`.
    pub event: &'static str,
    pub uuid: String,
    pub tag: String,
    /// `up`, `down`, or `gone` once destroyed.
    pub state: &'static str,
    /// For `limits` and `properties`: the properties whose values changed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changed: Vec<String>,
    /// Why an `autostart` or `autostop` failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// How far a long action is, as subscribers of the `iocage` events get it
/// (made by `progress::Reporter`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProgressEvent {
    /// Always `progress`.
    pub event: &'static str,
    /// `createjail`, `cleanjails` or `cleanall`.
    pub action: &'static str,
    /// createjail: `copy`; the cleans: `stop`, then `destroy`.
    pub step: &'static str,
    /// How much of `total` is done.
    pub done: u64,
    /// For `copy`, ZFS's estimate of the stream's size (0 if it had none)
    /// until the last event, which has the bytes copied.
    pub total: u64,
    /// `bytes`, `jails` or `datasets`.
    pub unit: &'static str,
    /// What the step works on: the jail's UUID (copy, stop), or the
    /// dataset destroyed last (destroy).
    pub target: String,
    /// The step's last event: done (`done` = `total`) or failed (`error`).
    pub last: bool,
    /// Why the step failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What goes out on the `iocage` event stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Event {
    Jail(JailEvent),
    Progress(ProgressEvent),
}

fn is_limit(name: &str) -> bool {
    props::lookup(name).is_some_and(|p| p.format == Format::Limit)
}

/// The events that lead from `old` to `new`, jail by jail in UUID order.
pub fn diff(old: &States, new: &States) -> Vec<JailEvent> {
    let uuids: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    let mut out = Vec::new();
    for uuid in uuids {
        let event = |event, s: &JailState, state, changed| JailEvent {
            event,
            uuid: uuid.clone(),
            tag: s.jail.tag().to_string(),
            state,
            changed,
            error: None,
        };
        let up = |s: &JailState| if s.running { "up" } else { "down" };
        match (old.get(uuid), new.get(uuid)) {
            (Some(o), None) => out.push(event("destroyed", o, "gone", Vec::new())),
            (None, Some(n)) => {
                out.push(event("created", n, up(n), Vec::new()));
                if n.running {
                    out.push(event("started", n, "up", Vec::new()));
                }
            }
            (Some(o), Some(n)) => {
                let (limits, others): (Vec<String>, Vec<String>) = o.changed(n).into_iter().partition(|k| is_limit(k));
                // The state first: a start's own `last_started` is then
                // reported after it, whether seen in one round or two.
                if o.running != n.running {
                    out.push(event(if n.running { "started" } else { "stopped" }, n, up(n), Vec::new()));
                }
                if !others.is_empty() {
                    out.push(event("properties", n, up(n), others));
                }
                if !limits.is_empty() {
                    out.push(event("limits", n, up(n), limits));
                }
            }
            (None, None) => {}
        }
    }
    out
}

/// Where the watcher's findings, autostart's outcomes and long actions'
/// progress go.
pub trait Sink: Send + Sync + 'static {
    fn publish(&self, events: Vec<JailEvent>);
    fn progress(&self, event: ProgressEvent);
}

/// Watches until `stop` is notified: compares at every tick and whenever
/// `changed` is notified (after the daemon's own writes). A round that
/// cannot read the jails (no active pool, say) is skipped: nothing is
/// reported destroyed because it could not be seen. When another pool
/// becomes the active one, its jails are the new starting point: they were
/// not created, and the old pool's were not destroyed.
pub async fn watch(
    iocage: super::Iocage,
    sink: Arc<dyn Sink>,
    changed: Arc<Notify>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut last: Option<(String, States)> = None;
    loop {
        match iocage.jail_states().await {
            Ok(now) => {
                match &last {
                    Some((pool, before)) if *pool == now.0 => {
                        let events = diff(before, &now.1);
                        if !events.is_empty() {
                            sink.publish(events);
                        }
                    }
                    Some((pool, _)) => tracing::info!("jail events: now watching pool {} (was {pool})", now.0),
                    None => {}
                }
                last = Some(now);
            }
            Err(e) => tracing::debug!("jail events: cannot read the jails this round: {e}"),
        }
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = changed.notified() => {}
            _ = stop.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jail(uuid: &str, running: bool, props: &[(&str, &str)]) -> JailState {
        JailState { running, jail: crate::iocage::jails::test_jail(uuid, props) }
    }

    #[test]
    fn each_change_is_one_event() {
        let old: States = [
            ("a".to_string(), jail("a", false, &[("tag", "web"), ("boot", "off"), ("memoryuse", "off")])),
            ("b".to_string(), jail("b", true, &[("tag", "db")])),
        ]
        .into();
        let new: States = [
            ("a".to_string(), jail("a", true, &[("tag", "web"), ("boot", "on"), ("memoryuse", "deny=1G")])),
            ("c".to_string(), jail("c", false, &[("tag", "new")])),
        ]
        .into();
        let events = diff(&old, &new);
        let got: Vec<(&str, &str, &str, Vec<String>)> =
            events.iter().map(|e| (e.event, e.uuid.as_str(), e.state, e.changed.clone())).collect();
        assert_eq!(
            got,
            vec![
                ("started", "a", "up", vec![]),
                ("properties", "a", "up", vec!["boot".to_string()]),
                ("limits", "a", "up", vec!["memoryuse".to_string()]),
                ("destroyed", "b", "gone", vec![]),
                ("created", "c", "down", vec![]),
            ]
        );
        assert!(diff(&new, &new).is_empty(), "no change, no event");
        // The same values read again (a jail the index read anew): no event.
        let again: States = new
            .iter()
            .map(|(u, s)| (u.clone(), JailState { jail: Arc::new((*s.jail).clone()), ..s.clone() }))
            .collect();
        assert!(diff(&new, &again).is_empty(), "equal values read again, no event");
        assert_eq!(events[0].tag, "web", "the tag is the jail's");
        let mut stopped = new.clone();
        stopped.get_mut("a").unwrap().running = false;
        let e = diff(&new, &stopped);
        assert_eq!((e.len(), e[0].event, e[0].uuid.as_str(), e[0].state), (1, "stopped", "a", "down"));
    }
}
