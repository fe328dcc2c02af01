//! Starting jails with the host, as iocage's rc script did: every jail with
//! `boot=on` (templates never), in `priority` order, lowest first; jails of
//! one priority start together, and the next priority waits for them. A
//! jail that fails to start is logged and reported as an event; the others
//! go on. At shutdown, optionally, the same jails stop in the reverse order.
//!
//! Autostart runs once per boot of the host: a marker in a directory the
//! boot empties ([`MARKER`]) keeps a daemon restarted by its supervisor
//! from starting again a jail its user has stopped since.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use super::Iocage;
use super::jails::Jail;
use super::request::Request;
use super::watch::{JailEvent, Sink};

/// Present once this boot's autostart has run.
pub const MARKER: &str =
    if cfg!(target_os = "freebsd") { "/var/run/iocaged.autostarted" } else { "/run/iocaged/autostarted" };

/// How often, and how many times, autostart looks again for jails it
/// could not read (about five minutes in all).
const RETRY_EVERY: std::time::Duration = std::time::Duration::from_secs(5);
const RETRIES: u32 = 60;

/// Jails by priority, lowest first, each as (uuid, tag).
pub type Groups = Vec<(i64, Vec<(String, String)>)>;

/// The `boot=on` jails (complete, not templates) that are running
/// (`running_ones`) or not, by priority.
pub fn plan(jails: &[Arc<Jail>], running: &HashSet<String>, running_ones: bool) -> Groups {
    let mut groups: BTreeMap<i64, Vec<(String, String)>> = BTreeMap::new();
    for j in jails.iter().filter(|j| !j.incomplete) {
        if j.get("boot") != "on" || j.get("template") == "yes" {
            continue;
        }
        if running.contains(&crate::runtime::kernel_name(&j.uuid)) != running_ones {
            continue;
        }
        // The catalogue bounds priority to 0..=99; a value set behind our
        // back that is no number goes last, as iocage's default does.
        let priority = j.get("priority").parse().unwrap_or(99);
        groups.entry(priority).or_default().push((j.uuid.clone(), j.tag().to_string()));
    }
    groups.into_iter().collect()
}

/// What happened to one jail, as an event: `autostart` or `autostop`, with
/// the state it ended in and, on failure, why.
fn outcome(event: &'static str, uuid: &str, tag: &str, up: bool, error: Option<String>) -> JailEvent {
    JailEvent {
        event,
        uuid: uuid.to_string(),
        tag: tag.to_string(),
        state: if up { "up" } else { "down" },
        changed: Vec::new(),
        error,
    }
}

/// Starts this boot's `boot=on` jails, unless that was done already.
pub async fn start_all(iocage: &Iocage, sink: Arc<dyn Sink>) {
    if std::path::Path::new(MARKER).exists() {
        tracing::info!("autostart: done already since the host booted ({MARKER} exists)");
        return;
    }
    // The pool may not be there yet at boot (imported late, unlocked by
    // hand): look again for a while before giving up.
    let mut tries = 0;
    let groups = loop {
        match iocage.boot_jails(false).await {
            Ok(g) => break g,
            Err(e) if tries < RETRIES => {
                if tries == 0 {
                    tracing::warn!("autostart: cannot read the jails yet ({e}); trying every {RETRY_EVERY:?}");
                }
                tries += 1;
                tokio::time::sleep(RETRY_EVERY).await;
            }
            Err(e) => {
                tracing::error!("autostart: cannot read the jails, none started: {e}");
                return;
            }
        }
    };
    // Marked once the jails could be read: a daemon restarted after a
    // failure to read them tries again.
    if let Some(dir) = std::path::Path::new(MARKER).parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    if let Err(e) = std::fs::write(MARKER, b"") {
        tracing::warn!("autostart: cannot write {MARKER} ({e}); a restarted daemon will autostart again");
    }
    for (priority, jails) in groups {
        tracing::info!(priority, jails = jails.len(), "autostart: starting");
        let start = |jail| Request::StartJail { jail };
        sink.publish(run_group(iocage, priority, jails, "autostart", start, true).await);
    }
}

/// Runs `request` for every jail of one priority at once and returns the
/// outcomes as `event`s: up when it succeeded and `up_on_success`.
async fn run_group(
    iocage: &Iocage,
    priority: i64,
    jails: Vec<(String, String)>,
    event: &'static str,
    request: impl Fn(String) -> Request,
    up_on_success: bool,
) -> Vec<JailEvent> {
    let runs = jails.into_iter().map(|(uuid, tag)| {
        let (iocage, req) = (iocage.clone(), request(uuid.clone()));
        async move { (uuid, tag, iocage.run_waiting(req).await) }
    });
    let mut events = Vec::new();
    for (uuid, tag, result) in futures_util::future::join_all(runs).await {
        match result {
            Ok(_) => {
                tracing::info!(jail = %uuid, tag, priority, "{event}: done");
                events.push(outcome(event, &uuid, &tag, up_on_success, None));
            }
            Err(e) => {
                tracing::error!(jail = %uuid, tag, priority, "{event}: failed: {e}");
                events.push(outcome(event, &uuid, &tag, !up_on_success, Some(e.to_string())));
            }
        }
    }
    events
}

/// Stops the running `boot=on` jails, highest priority first. The next
/// daemon then autostarts again (a restart of the service brings the jails
/// back), so the marker goes.
pub async fn stop_all(iocage: &Iocage, sink: Arc<dyn Sink>) {
    let _ = std::fs::remove_file(MARKER);
    let groups = match iocage.boot_jails(true).await {
        Ok(g) => g,
        Err(e) => {
            tracing::error!("stop at shutdown: cannot read the jails: {e}");
            return;
        }
    };
    for (priority, jails) in groups.into_iter().rev() {
        let stop = |jail| Request::StopJail { jail };
        sink.publish(run_group(iocage, priority, jails, "autostop", stop, false).await);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iocage::jails::test_jail;

    #[test]
    fn boot_jails_by_priority_never_templates() {
        let jails = vec![
            test_jail("a", &[("tag", "a"), ("boot", "on"), ("priority", "20")]),
            test_jail("b", &[("tag", "b"), ("boot", "on"), ("priority", "5")]),
            test_jail("c", &[("tag", "c"), ("boot", "on"), ("priority", "20")]),
            test_jail("d", &[("tag", "d"), ("boot", "off"), ("priority", "1")]),
            test_jail("e", &[("tag", "e"), ("boot", "on"), ("priority", "1"), ("template", "yes")]),
            test_jail("f", &[("tag", "f"), ("boot", "on"), ("priority", "-")]),
            test_jail("g", &[("tag", "g"), ("boot", "on"), ("priority", "3")]),
        ];
        let running = HashSet::from([crate::runtime::kernel_name("g")]);
        let uuids = |groups: Groups| -> Vec<(i64, Vec<String>)> {
            groups.into_iter().map(|(p, j)| (p, j.into_iter().map(|(u, _)| u).collect())).collect()
        };
        assert_eq!(
            uuids(plan(&jails, &running, false)),
            vec![(5, vec!["b".into()]), (20, vec!["a".into(), "c".into()]), (99, vec!["f".into()])],
            "lowest first, one priority together, boot=off, templates and running jails left out"
        );
        assert_eq!(uuids(plan(&jails, &running, true)), vec![(3, vec!["g".into()])], "what runs, for stopping");
    }
}
