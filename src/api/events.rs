//! Events pushed to WebSocket subscribers (`events/subscribe`).
//!
//! A subscriber sends `events/subscribe` with the event's name as args (a
//! string, a list of them, or, as older clients did, an object of them);
//! the reply is `{"subscribe": <name>}` and the latest event of that kind is
//! pushed at once. Events arrive as `{"namespace":"events","name":<name>,
//! "id":"","args":{...}}`, the shape sysadm's server used:
//! - `iocage`: one message per jail change ([`crate::iocage::watch`]):
//!   `{"event","uuid","tag","state","changed"?}`; long actions' progress,
//!   `{"event":"progress","action","step","done","total","unit","target"}`;
//!   a subscriber too slow to take them gets `{"event":"missed","count"}`
//!   instead of the ones it lost;
//! - `system-state`: the host's basics (hostname, uptime, load, memory, the
//!   pools' health and capacity, and the `priority` sysadm's tray shows),
//!   pushed on subscribing and every [`SYSTEM_STATE_EVERY`];
//! - `dispatcher` and `life-preserver`: accepted, as sysadm's client
//!   subscribes to them, but this server has no such events to send.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::sync::broadcast;

use crate::iocage::watch::{Event, JailEvent, ProgressEvent, Sink};

/// How often `system-state` is pushed to its subscribers.
pub const SYSTEM_STATE_EVERY: Duration = Duration::from_secs(15 * 60);
/// Jail events kept for subscribers that have not taken them yet.
pub const BACKLOG: usize = 1024;

/// What can be subscribed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Topic {
    Iocage,
    SystemState,
    Dispatcher,
    LifePreserver,
}

impl Topic {
    pub fn parse(name: &str) -> Option<Topic> {
        match name {
            "iocage" => Some(Topic::Iocage),
            "system-state" => Some(Topic::SystemState),
            "dispatcher" => Some(Topic::Dispatcher),
            "life-preserver" => Some(Topic::LifePreserver),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Topic::Iocage => "iocage",
            Topic::SystemState => "system-state",
            Topic::Dispatcher => "dispatcher",
            Topic::LifePreserver => "life-preserver",
        }
    }
}

/// The names a subscribe or unsubscribe request asks for: its args'
/// words, or the string values of an object (older sysadm clients).
pub fn topics(words: &[String], args: &Map<String, Value>) -> Result<BTreeSet<Topic>, String> {
    let names: Vec<&str> = if words.is_empty() {
        args.values().filter_map(Value::as_str).collect()
    } else {
        words.iter().map(String::as_str).collect()
    };
    if names.is_empty() {
        return Err("name the events: \"iocage\", \"system-state\", \"dispatcher\" or \"life-preserver\"".into());
    }
    names
        .into_iter()
        .map(|n| {
            Topic::parse(n).ok_or_else(|| {
                format!("no such event {n:?}: \"iocage\", \"system-state\", \"dispatcher\" or \"life-preserver\"")
            })
        })
        .collect()
}

/// An event message as it goes out.
pub fn message(topic: Topic, args: Value) -> Value {
    json!({ "namespace": "events", "name": topic.name(), "id": "", "args": args })
}

/// Jail events on their way to every socket.
pub struct Hub {
    jails: broadcast::Sender<Event>,
}

impl Default for Hub {
    fn default() -> Self {
        Hub { jails: broadcast::channel(BACKLOG).0 }
    }
}

impl Hub {
    /// A receiver of the jail events from now on.
    pub fn jail_events(&self) -> broadcast::Receiver<Event> {
        self.jails.subscribe()
    }
}

impl Sink for Hub {
    fn publish(&self, events: Vec<JailEvent>) {
        for e in events {
            tracing::info!(event = e.event, uuid = %e.uuid, tag = %e.tag, state = e.state, "jail event");
            // No receiver: nobody subscribed; nothing to keep.
            let _ = self.jails.send(Event::Jail(e));
        }
    }

    fn progress(&self, e: ProgressEvent) {
        tracing::debug!(action = e.action, step = e.step, done = e.done, total = e.total, target = %e.target, "progress");
        let _ = self.jails.send(Event::Progress(e));
    }
}

/// A socket's subscriptions.
#[derive(Debug, Default)]
pub struct Subscriptions(Mutex<BTreeSet<Topic>>);

impl Subscriptions {
    pub fn add(&self, topics: &BTreeSet<Topic>) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).extend(topics);
    }

    pub fn remove(&self, topics: &BTreeSet<Topic>) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).retain(|t| !topics.contains(t));
    }

    pub fn clear(&self) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    pub fn has(&self, topic: Topic) -> bool {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).contains(&topic)
    }
}

/// sysadm's priority label: 0-2 Information, 3-5 Warning, 6-8 Critical,
/// 9 and above Urgent.
fn priority(level: u8) -> String {
    let label = match level {
        0..=2 => "Information",
        3..=5 => "Warning",
        6..=8 => "Critical",
        _ => "Urgent",
    };
    format!("{level} - {label}")
}

/// A pool's entry in `system-state`, and its priority as sysadm rated it:
/// not ONLINE is urgent (9), over 90 % full critical (6).
pub fn pool_state(health: &str, capacity: u64) -> (Value, u8) {
    let level = if health != "ONLINE" {
        9
    } else if capacity > 90 {
        6
    } else {
        0
    };
    (json!({ "health": health, "capacity": capacity.to_string(), "priority": priority(level) }), level)
}

/// The `system-state` event's args: the host's basics and the pools'.
pub fn system_state(hostname: &str, pools: &[(String, String, u64)]) -> Value {
    let mut zpools = Map::new();
    let mut level = 0;
    for (name, health, capacity) in pools {
        let (entry, l) = pool_state(health, *capacity);
        level = level.max(l);
        zpools.insert(name.clone(), entry);
    }
    let host = crate::host::basics();
    json!({
        "hostname": hostname,
        "priority": priority(level),
        "uptime": host.uptime_secs,
        "load": host.load,
        "memory": { "total": host.memory_total, "free": host.memory_free },
        "zpools": zpools,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscriptions_as_clients_send_them() {
        let t = topics(&["system-state".into()], &Map::new()).unwrap();
        assert_eq!(t, [Topic::SystemState].into());
        let t = topics(&["dispatcher".into(), "iocage".into()], &Map::new()).unwrap();
        assert_eq!(t, [Topic::Dispatcher, Topic::Iocage].into());
        let obj: Map<String, Value> = [("a".to_string(), json!("life-preserver"))].into_iter().collect();
        assert_eq!(topics(&[], &obj).unwrap(), [Topic::LifePreserver].into());
        assert!(topics(&[], &Map::new()).unwrap_err().contains("name the events"));
        assert!(topics(&["iocage".into(), "nosuch".into()], &Map::new()).unwrap_err().contains("\"nosuch\""));
    }

    #[test]
    fn priorities_as_sysadm_rated_them() {
        assert_eq!(pool_state("ONLINE", 50).1, 0);
        assert_eq!(pool_state("ONLINE", 91).1, 6);
        assert_eq!(pool_state("DEGRADED", 10).1, 9);
        let s = system_state("h", &[("tank".into(), "ONLINE".into(), 95), ("zroot".into(), "ONLINE".into(), 5)]);
        assert_eq!(s["priority"], "6 - Critical");
        assert_eq!(s["zpools"]["tank"]["capacity"], "95");
        assert_eq!(s["zpools"]["zroot"]["priority"], "0 - Information");
        assert_eq!(system_state("h", &[])["priority"], "0 - Information");
        assert_eq!(message(Topic::SystemState, json!({}))["name"], "system-state");
    }
}
