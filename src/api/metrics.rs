//! `GET /metrics`: the daemon and its jails in Prometheus' text format
//! (version 0.0.4), for any caller with a read key or better.
//!
//! What is counted as it happens: every call answered ([`Requests`]), by
//! call, action and outcome, with its latency. What is read at each scrape:
//! connections, actions and password checks in flight, locked-out
//! addresses, the owner thread's queue, how the jail index answered, and
//! each running iocage jail's CPU time, memory and processes with the
//! limits in force (`iocage::Iocage::metrics`; the runtime's accounts).
//!
//! Labels are bounded: calls and actions come from fixed lists (anything
//! else is `other`), outcomes are `ok`, `error` or an HTTP status; jail
//! labels are the running jails' UUIDs and tags, escaped.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

use crate::iocage::request::Action;
use crate::iocage::{ServiceMetrics, Usage};

/// The latency histogram's upper bounds, in seconds.
const BUCKETS: [f64; 16] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

/// The calls the API knows; anything else is counted as `other`.
const CALLS: &[&str] = &[
    "rpc/identify",
    "rpc/auth",
    "rpc/auth_token",
    "rpc/auth_ssl",
    "rpc/auth_clear",
    "rpc/query",
    "rpc/settings",
    "events/subscribe",
    "events/unsubscribe",
    "sysadm/iocage",
];

/// The call's label: one of [`CALLS`], or `other`. (Scrapes are counted
/// as `metrics` by the route itself.)
pub fn call_label(namespace: &str, name: &str) -> &'static str {
    CALLS.iter().find(|c| c.split_once('/') == Some((namespace, name))).copied().unwrap_or("other")
}

/// The action's label: its name, or `-` for calls that are not actions.
pub fn action_label(action: Option<Action>) -> &'static str {
    action.map_or("-", Action::name)
}

#[derive(Default)]
struct Latency {
    /// Calls at most each bound (not cumulative; summed when written).
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// Calls answered since the daemon started.
#[derive(Default)]
pub struct Requests {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    outcomes: BTreeMap<(&'static str, &'static str, String), u64>,
    latency: BTreeMap<(&'static str, &'static str), Latency>,
}

impl Requests {
    /// Counts one call of `call` (and `action`) that ended with `outcome`
    /// after `took`.
    pub fn record(&self, call: &'static str, action: &'static str, outcome: &str, took: Duration) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        *inner.outcomes.entry((call, action, outcome.to_string())).or_default() += 1;
        let l = inner.latency.entry((call, action)).or_default();
        let secs = took.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            l.buckets[i] += 1;
        }
        l.count += 1;
        l.sum += secs;
    }
}

/// What the API itself knows at a scrape.
#[derive(Debug, Clone, Copy, Default)]
pub struct Gauges {
    pub connections: usize,
    pub logins_in_flight: usize,
    pub locked_out: usize,
}

/// A label value as the text format wants it: `\`, `"` and newlines escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// One metric's `# HELP` and `# TYPE` lines.
fn head(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// The exposition, as of now.
pub fn render(requests: &Requests, gauges: Gauges, service: &ServiceMetrics) -> String {
    let mut out = String::with_capacity(4096 + service.jails.len() * 600);
    {
        let inner = requests.inner.lock().unwrap_or_else(|p| p.into_inner());
        head(
            &mut out,
            "iocaged_requests_total",
            "counter",
            "Calls answered, by call, action and outcome (ok; error: the action's own; or the HTTP status of a refusal).",
        );
        for ((call, action, outcome), n) in &inner.outcomes {
            let _ = writeln!(
                out,
                "iocaged_requests_total{{call=\"{call}\",action=\"{action}\",outcome=\"{outcome}\"}} {n}"
            );
        }
        head(
            &mut out,
            "iocaged_request_duration_seconds",
            "histogram",
            "How long calls took to answer, by call and action.",
        );
        for ((call, action), l) in &inner.latency {
            let labels = format!("call=\"{call}\",action=\"{action}\"");
            let mut cumulative = 0;
            for (bound, n) in BUCKETS.iter().zip(l.buckets) {
                cumulative += n;
                let _ =
                    writeln!(out, "iocaged_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {cumulative}");
            }
            let _ = writeln!(out, "iocaged_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}", l.count);
            let _ = writeln!(out, "iocaged_request_duration_seconds_sum{{{labels}}} {}", l.sum);
            let _ = writeln!(out, "iocaged_request_duration_seconds_count{{{labels}}} {}", l.count);
        }
    }
    let gauge = |out: &mut String, name: &str, help: &str, value: usize| {
        head(out, name, "gauge", help);
        let _ = writeln!(out, "{name} {value}");
    };
    gauge(&mut out, "iocaged_connections_open", "Connections open, WebSocket sessions included.", gauges.connections);
    gauge(&mut out, "iocaged_actions_in_flight", "iocage actions running.", service.actions_in_flight);
    gauge(&mut out, "iocaged_password_checks_in_flight", "PAM checks running.", gauges.logins_in_flight);
    gauge(&mut out, "iocaged_addresses_locked_out", "Addresses locked out after failed logins.", gauges.locked_out);
    gauge(&mut out, "iocaged_zfs_queue_depth", "Jobs waiting for the libzfs owner thread.", service.zfs_queue);
    head(
        &mut out,
        "iocaged_index_answers_total",
        "counter",
        "How the jail index answered: from memory while ZFS announced no change, proven with ZFS, or read again.",
    );
    for (source, n) in
        [("memory", service.index_followed), ("proven", service.index_proven), ("read", service.index_read)]
    {
        let _ = writeln!(out, "iocaged_index_answers_total{{source=\"{source}\"}} {n}");
    }
    gauge(
        &mut out,
        "iocaged_jails_listed",
        "1 when the running jails were listed at this scrape, 0 when not (no pool, or not within request_timeout).",
        usize::from(service.listed),
    );
    gauge(&mut out, "iocaged_jails_running", "Running iocage jails.", service.jails.len() + service.unreadable);
    gauge(
        &mut out,
        "iocaged_jails_unaccounted",
        "Running iocage jails whose accounts could not be read.",
        service.unreadable,
    );
    let jails: Vec<(String, &Usage)> = service
        .jails
        .iter()
        .map(|j| (format!("uuid=\"{}\",tag=\"{}\"", escape(&j.uuid), escape(&j.tag)), &j.usage))
        .collect();
    let per_jail = |out: &mut String, name: &str, kind: &str, help: &str, value: &dyn Fn(&Usage) -> Option<String>| {
        head(out, name, kind, help);
        for (labels, usage) in &jails {
            if let Some(v) = value(usage) {
                let _ = writeln!(out, "{name}{{{labels}}} {v}");
            }
        }
    };
    per_jail(&mut out, "iocaged_jail_cpu_seconds_total", "counter", "CPU time the jail used since it started.", &|u| {
        Some(u.cpu_seconds.to_string())
    });
    per_jail(
        &mut out,
        "iocaged_jail_memory_bytes",
        "gauge",
        "Memory charged to the jail (Linux: memory.current, page cache and kernel memory included; FreeBSD: resident).",
        &|u| Some(u.memory_bytes.to_string()),
    );
    per_jail(
        &mut out,
        "iocaged_jail_processes",
        "gauge",
        "Processes in the jail (Linux: tasks, threads included).",
        &|u| Some(u.processes.to_string()),
    );
    per_jail(
        &mut out,
        "iocaged_jail_memory_limit_bytes",
        "gauge",
        "The jail's memory limit, where one is set.",
        &|u| u.memory_limit_bytes.map(|v| v.to_string()),
    );
    per_jail(&mut out, "iocaged_jail_processes_limit", "gauge", "The jail's process limit, where one is set.", &|u| {
        u.processes_limit.map(|v| v.to_string())
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_come_from_fixed_lists() {
        assert_eq!(call_label("sysadm", "iocage"), "sysadm/iocage");
        assert_eq!(call_label("metrics", ""), "other", "a scrape is counted by its route, not as a call");
        assert_eq!(call_label("sysadm", "anything-a-client-sends"), "other");
        assert_eq!(call_label("metrics", "x"), "other");
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn a_histogram_is_cumulative_and_counts_every_call() {
        let r = Requests::default();
        r.record("sysadm/iocage", "listjails", "ok", Duration::from_micros(300));
        r.record("sysadm/iocage", "listjails", "ok", Duration::from_millis(20));
        r.record("sysadm/iocage", "listjails", "503", Duration::from_secs(100));
        let text = render(&r, Gauges::default(), &ServiceMetrics::default());
        let labels = "call=\"sysadm/iocage\",action=\"listjails\"";
        for (le, n) in [("0.0005", 1), ("0.025", 2), ("60", 2), ("+Inf", 3)] {
            let line = format!("iocaged_request_duration_seconds_bucket{{{labels},le=\"{le}\"}} {n}\n");
            assert!(text.contains(&line), "{line} in\n{text}");
        }
        assert!(text.contains(&format!("iocaged_requests_total{{{labels},outcome=\"ok\"}} 2\n")), "{text}");
        assert!(text.contains(&format!("iocaged_requests_total{{{labels},outcome=\"503\"}} 1\n")), "{text}");
        assert!(text.contains(&format!("iocaged_request_duration_seconds_count{{{labels}}} 3\n")), "{text}");
    }
}
