//! Running the API document's examples against a live iocaged and
//! comparing the replies, normalised (see `seed`).

use std::sync::{Mutex, MutexGuard};

use serde_json::{Value, json};

use super::client::{self, Ws};
use super::daemon::Daemon;
use super::fixture::Fixture;
use super::seed::{self, Example, Transport, normalise};

/// Tests in one binary share the pool: they take turns.
static LOCK: Mutex<()> = Mutex::new(());

pub fn lock() -> MutexGuard<'static, ()> {
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// Sends an example over its own transport; returns (expected, actual),
/// both normalised.
pub fn exchange(d: &Daemon, ex: &Example) -> (Value, Value) {
    match ex.transport {
        Transport::Rest => {
            let r = client::rest(d.rest, &ex.request);
            assert_eq!(r.status, 200, "{}", r.raw);
            (normalise(&json!({"args": ex.reply["args"]})), normalise(&r.body))
        }
        Transport::WebSocket => {
            let mut req = ex.request.clone();
            if req.get("id").is_none() {
                // The document's activatepool example omits the id its reply shows.
                req["id"] = ex.reply["id"].clone();
            }
            let got = Ws::connect(d.ws).call(&req);
            (normalise(&ex.reply), normalise(&got))
        }
    }
}

/// Runs every example of `action`, building the pool state each needs with
/// `setup`, and fails with every mismatch at once.
pub fn conform(action: &str, read_only: bool, setup: impl Fn(&Example) -> Fixture) {
    let _g = lock();
    let examples = seed::of(action);
    assert!(examples.len() >= 2, "{action}: the document has REST and WebSocket examples");
    let mut failures = Vec::new();
    for (i, ex) in examples.iter().enumerate() {
        let fixture = setup(ex);
        let before = fixture.state();
        let d = Daemon::start(&[]);
        let (want, got) = exchange(&d, ex);
        if want != got {
            failures.push(format!(
                "example {i} ({:?}) {}\nwant {}\ngot  {}",
                ex.transport,
                ex.request,
                serde_json::to_string_pretty(&want).unwrap(),
                serde_json::to_string_pretty(&got).unwrap()
            ));
        }
        if read_only {
            assert_eq!(fixture.state(), before, "{action} changed the pool");
        }
        assert!(d.stop(), "iocaged did not shut down cleanly");
    }
    assert!(
        failures.is_empty(),
        "{action}: {} of {} examples differ:\n{}",
        failures.len(),
        examples.len(),
        failures.join("\n\n")
    );
}
