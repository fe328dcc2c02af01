//! The shapes of the actions' replies, as the API document shows them
//! (`../shared/seed/`): pure functions of what the actions read.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value, json};

use crate::runtime::{ExecOutput, RunningJail, kernel_name};
use crate::zfs::Backend;

use super::body::{Body, Kept};
use super::error::ActionError;
use super::index::Listing;
use super::jails::{self, Jail};
use super::layout::Layout;
use super::lifecycle::Progress;
use super::props::{self, Listed, PropError, USER_PREFIX};
use super::request::Shown;

/// `{key: value}`: replies nest under the name the client used.
pub(super) fn keyed(key: String, value: Value) -> Value {
    Value::Object(Map::from_iter([(key, value)]))
}

/// startjail/stopjail: one key per progress line (value `""`), or `INFO`.
pub(super) fn progress_body(p: Progress) -> Value {
    match p {
        Progress::Lines(lines) => Value::Object(lines.into_iter().map(|l| (l, Value::from(""))).collect()),
        Progress::Already(info) => json!({ "INFO": info }),
    }
}

/// execjail: the original's shape (each output line a key); `Lossless`
/// adds the whole streams and the exit code; `Stream` (the output went as
/// it came, `out` holds only its end) has no lines, and the exit code. A
/// command that fails answers with `error`, naming how it ended and its
/// last line.
pub(super) fn exec_reply(out: &ExecOutput, shown: &Shown) -> Value {
    let lines: Map<String, Value> = if matches!(shown, Shown::Stream(_)) {
        Map::new()
    } else {
        out.stdout.lines().chain(out.stderr.lines()).map(|l| (l.to_string(), Value::from(""))).collect()
    };
    let mut reply = Map::new();
    if out.success() {
        reply.insert("success".into(), Value::Object(lines));
    } else {
        let detail = out.last_line().map(|l| format!(": {l}")).unwrap_or_default();
        reply.insert("error".into(), Value::from(format!("the command {}{detail}", out.ending())));
    }
    if *shown == Shown::Lossless {
        reply.insert("stdout".into(), Value::from(out.stdout.clone()));
        reply.insert("stderr".into(), Value::from(out.stderr.clone()));
    }
    if *shown != Shown::Lines {
        reply.insert("exit_code".into(), out.code.map_or(Value::Null, Value::from));
        reply.insert("truncated".into(), Value::from(out.truncated));
    }
    Value::Object(reply)
}

/// A console's ending: how its shell ended (exiting, whatever the status,
/// is a success) and how long it ran.
pub(super) fn console_reply(out: &ExecOutput, ran: std::time::Duration) -> Value {
    let key = if out.code.is_some() { "success" } else { "error" };
    let seconds = (ran.as_secs_f64() * 10.0).round() / 10.0;
    json!({ key: format!("the shell {}", out.ending()), "exit_code": out.code, "seconds": seconds })
}

pub(super) fn activated(pool: &str) -> Value {
    json!({ "success": format!("pool {pool} activated.") })
}

pub(super) fn deactivated(pool: &str) -> Value {
    json!({ "success": format!("pool {pool} deactivated.") })
}

/// `{"defaults": {...}}`: the user properties of `POOL/iocage/.defaults`,
/// built-in values for those it does not set, and the native properties of
/// that dataset (of `POOL/iocage`, or the pool, while it does not exist).
pub(super) fn default_settings(lib: &dyn Backend, layout: &Layout) -> Result<Value, ActionError> {
    let source = [layout.defaults(), layout.root(), layout.pool().to_string()]
        .into_iter()
        .find(|d| lib.exists(d))
        .ok_or_else(|| ActionError::PoolNotFound(layout.pool().to_string()))?;
    let user = if source == layout.defaults() { lib.user_props(&source)? } else { BTreeMap::new() };
    let natives: Vec<&str> = props::native_names().collect();
    let native = lib.native_props(&source, &natives)?;
    let mut out = Map::new();
    for p in props::CATALOGUE.iter().filter(|p| p.listed == Listed::Everywhere) {
        let value = if p.kind.is_native() {
            native.get(p.name).and_then(|v| v.printed.clone()).unwrap_or_else(|| "-".into())
        } else {
            user.get(&format!("{USER_PREFIX}{}", p.name)).map(|u| u.value.clone()).unwrap_or_else(|| p.default.into())
        };
        out.insert(p.name.to_string(), Value::String(value));
    }
    Ok(json!({ "defaults": out }))
}

/// The last listjails reply, kept while the listing and the running jails
/// it was made from stay the same: a repeated listjails is a lookup (building
/// it compares thousands of property names, in a guest's profile the largest
/// part of a listing's cost), and the reply is kept as its text
/// ([`Body::Kept`]), neither copied nor printed again.
#[derive(Default)]
pub(super) struct ListCache(Mutex<Option<KeptListing>>);

struct KeptListing {
    jails: Listing,
    running: Vec<RunningJail>,
    reply: Body,
}

impl ListCache {
    /// The listjails reply for `jails` with `running` the jails that run.
    pub(super) fn reply(&self, jails: Listing, mut running: Vec<RunningJail>) -> Body {
        running.sort_by(|a, b| a.name.cmp(&b.name));
        let cached = {
            let listed = self.0.lock().unwrap_or_else(|p| p.into_inner());
            listed.as_ref().filter(|l| l.jails.is(&jails) && l.running == running).map(|l| l.reply.clone())
        };
        if let Some(reply) = cached {
            return reply;
        }
        let jids = running.iter().map(|j| (j.name.clone(), j.jid)).collect();
        let value = list_jails(&jails, &jids);
        let reply = match Kept::new(&value) {
            Some(kept) => Body::Kept(Arc::new(kept)),
            None => return Body::Made(value),
        };
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(KeptListing { jails, running, reply: reply.clone() });
        reply
    }
}

/// `{uuid: {boot, ip4, jid, state, tag, type}}`
pub(super) fn list_jails(jails: &[Arc<Jail>], running: &HashMap<String, i64>) -> Value {
    let mut out = Map::new();
    for j in jails {
        let jid = running.get(&kernel_name(&j.uuid));
        let ip4 = match (jid, j.get("ip4_addr")) {
            (Some(_), addr) if addr != "none" && addr != "-" => addr,
            _ => "-".to_string(),
        };
        out.insert(
            j.uuid.clone(),
            json!({
                "boot": j.get("boot"),
                "ip4": ip4,
                "jid": jid.map_or_else(|| "-".to_string(), |n| n.to_string()),
                "state": if jid.is_some() { "up" } else { "down" },
                "tag": j.tag(),
                "type": j.get("type"),
            }),
        );
    }
    Value::Object(out)
}

/// The four getjailsettings modes.
pub(super) fn jail_settings(
    jails: &[Arc<Jail>],
    jail: Option<&str>,
    prop: Option<&str>,
    all_jails: bool,
) -> Result<Value, ActionError> {
    let prop = prop.filter(|p| *p != "all");
    if let Some(p) = prop {
        props::lookup(p).ok_or_else(|| PropError::Unknown(p.to_string()))?;
    }
    let settings = |j: &Jail| -> Map<String, Value> {
        match prop {
            Some(p) => Map::from_iter([(p.to_string(), Value::String(j.get(p)))]),
            None => j.all().into_iter().map(|(k, v)| (k, Value::String(v))).collect(),
        }
    };
    let mut out = Map::new();
    if all_jails {
        for j in jails {
            let mut m = settings(j);
            m.insert("TAG".into(), Value::String(j.tag().to_string()));
            out.insert(j.uuid.clone(), Value::Object(m));
        }
    } else if let Some(query) = jail {
        // The reply is keyed by the name the client used.
        out.insert(query.to_string(), Value::Object(settings(jails::resolve(jails, query)?)));
    }
    Ok(Value::Object(out))
}

/// `{release: {"dependents": ["<uuid> (<tag>)", ...]}}`
pub(super) fn list_releases(releases: &[(String, Vec<String>)]) -> Value {
    let out: Map<String, Value> =
        releases.iter().map(|(name, deps)| (name.clone(), json!({ "dependents": deps }))).collect();
    Value::Object(out)
}

/// `{uuid: {ava, crt, qta, res, tag, use}}`
pub(super) fn df(jails: &[Arc<Jail>]) -> Value {
    let mut out = Map::new();
    for j in jails {
        out.insert(
            j.uuid.clone(),
            json!({
                "ava": j.get("available"),
                "crt": j.get("compressratio"),
                "qta": j.get("quota"),
                "res": j.get("reservation"),
                "tag": j.tag(),
                "use": j.get("used"),
            }),
        );
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iocage::jails::test_jail;

    #[test]
    fn execjail_replies_by_how_the_output_is_shown() {
        let ok = ExecOutput { stdout: "a\nb\n".into(), code: Some(0), ..Default::default() };
        assert_eq!(exec_reply(&ok, &Shown::Lines), json!({"success": {"a": "", "b": ""}}));
        let whole = exec_reply(&ok, &Shown::Lossless);
        assert_eq!((whole["stdout"].as_str(), whole["exit_code"].as_i64()), (Some("a\nb\n"), Some(0)), "{whole}");
        // Streamed: the output went as it came; the ending only.
        let streamed = exec_reply(&ok, &Shown::Stream(None));
        assert_eq!(streamed, json!({"success": {}, "exit_code": 0, "truncated": false}));
        let failed = ExecOutput { stderr: "x\noops\n".into(), code: Some(3), ..Default::default() };
        let streamed = exec_reply(&failed, &Shown::Stream(None));
        assert_eq!(streamed["error"], "the command exited with status 3: oops", "{streamed}");
        assert!(streamed.get("stderr").is_none(), "{streamed}");
    }

    #[test]
    fn a_kept_listjails_reply_is_made_again_when_a_jail_starts_or_the_listing_changes() {
        let cache = ListCache::default();
        let listing = Listing::new(vec![test_jail("aaa", &[("tag", "web")])]);
        let up = vec![RunningJail { name: "ioc-aaa".into(), jid: 7 }];
        assert_eq!(cache.reply(listing.clone(), vec![]).to_value()["aaa"]["state"], "down");
        let same = |a: &Body, b: &Body| matches!((a, b), (Body::Kept(x), Body::Kept(y)) if Arc::ptr_eq(x, y));
        let first = cache.reply(listing.clone(), vec![]);
        assert!(same(&first, &cache.reply(listing.clone(), vec![])), "kept, the very same text");
        assert_eq!(
            cache.reply(listing.clone(), up.clone()).to_value()["aaa"]["jid"],
            "7",
            "the same listing, a jail started"
        );
        let relisted = Listing::new(vec![test_jail("aaa", &[("tag", "renamed")])]);
        assert_eq!(
            cache.reply(relisted.clone(), up.clone()).to_value()["aaa"]["tag"],
            "renamed",
            "a listing read again"
        );
        let equal = Listing::new(vec![test_jail("aaa", &[("tag", "renamed")])]);
        assert!(!equal.is(&relisted) && relisted.is(&relisted.clone()), "identity, not equality");
        assert_eq!(cache.reply(relisted, vec![]).to_value()["aaa"]["jid"], "-", "stopped");
    }

    #[test]
    fn listjails_state_comes_from_the_runtime() {
        let jails = vec![
            test_jail("aaa", &[("tag", "web"), ("boot", "on"), ("type", "jail"), ("ip4_addr", "em0|10.0.0.2")]),
            test_jail("bbb", &[("tag", "db"), ("boot", "off"), ("type", "basejail"), ("ip4_addr", "em0|10.0.0.3")]),
        ];
        let running = HashMap::from([("ioc-aaa".to_string(), 7)]);
        let v = list_jails(&jails, &running);
        assert_eq!(
            v["aaa"],
            json!({"boot": "on", "ip4": "em0|10.0.0.2", "jid": "7", "state": "up", "tag": "web", "type": "jail"})
        );
        assert_eq!(
            v["bbb"],
            json!({"boot": "off", "ip4": "-", "jid": "-", "state": "down", "tag": "db", "type": "basejail"})
        );
    }

    #[test]
    fn jail_settings_modes_and_errors() {
        let jails = vec![test_jail("aaa", &[("tag", "web"), ("vnet", "on")]), test_jail("bbb", &[("tag", "db")])];
        assert_eq!(jail_settings(&jails, Some("web"), Some("vnet"), false).unwrap(), json!({"web": {"vnet": "on"}}));
        assert_eq!(
            jail_settings(&jails, None, Some("vnet"), true).unwrap(),
            json!({"aaa": {"TAG": "web", "vnet": "on"}, "bbb": {"TAG": "db", "vnet": "-"}})
        );
        let all = jail_settings(&jails, Some("aa"), Some("all"), false).unwrap();
        assert_eq!(all["aa"].as_object().unwrap().len(), 115);
        assert_eq!(jail_settings(&jails, Some("aa"), None, false).unwrap(), all);
        assert_eq!(
            jail_settings(&jails, Some("web"), Some("bogus"), false),
            Err(ActionError::Property(PropError::Unknown("bogus".into())))
        );
        assert_eq!(
            jail_settings(&jails, Some("nope"), Some("vnet"), false),
            Err(ActionError::JailNotFound("nope".into()))
        );
    }
}
