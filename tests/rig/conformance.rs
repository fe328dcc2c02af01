//! Running the API document's examples against a live iocaged and
//! comparing the replies, normalised (see `seed`).

use std::sync::{Mutex, MutexGuard};

use serde_json::Value;

use super::client::{self, Ws};
use super::daemon::Daemon;
use super::fixture::Fixture;
use super::seed::{self, Example, Mismatches, Transport, normalise};

/// Tests in one binary share the pool: they take turns.
static LOCK: Mutex<()> = Mutex::new(());

pub fn lock() -> MutexGuard<'static, ()> {
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// Sends an example over its own transport; returns (expected, actual),
/// both normalised.
pub fn exchange(d: &Daemon, ex: &Example) -> (Value, Value) {
    let got = match ex.transport {
        Transport::Rest => {
            let r = client::rest(d.rest, &seed::sent(ex));
            assert_eq!(r.status, 200, "{}", r.raw);
            r.body
        }
        Transport::WebSocket => Ws::connect(d.ws).call(&seed::sent(ex)),
    };
    (seed::expected(ex), normalise(&got))
}

/// Runs every example of `action`, building the pool state each needs with
/// `setup`, and fails with every mismatch at once.
pub fn conform(action: &str, read_only: bool, setup: impl Fn(&Example) -> Fixture) {
    let _g = lock();
    let examples = seed::of(action);
    assert!(examples.len() >= 2, "{action}: the document has REST and WebSocket examples");
    let mut mismatches = Mismatches::default();
    for (i, ex) in examples.iter().enumerate() {
        let fixture = setup(ex);
        let before = fixture.state();
        let d = Daemon::start(&[]);
        let (want, got) = exchange(&d, ex);
        mismatches.compare(i, ex, &want, &got);
        if read_only {
            assert_eq!(fixture.state(), before, "{action} changed the pool");
        }
        assert!(d.stop(), "iocaged did not shut down cleanly");
    }
    mismatches.assert_none(action, examples.len());
}
