//! Long actions' progress on the `iocage` event stream ([`ProgressEvent`]).
//!
//! A [`Reporter`] speaks for one step of one action (a thick createjail's
//! `copy`, a clean's `stop` and `destroy`): its first report goes out at
//! once, later ones at most every [`EVERY`] (a cleanall of a thousand jails
//! must not crowd the jail events out of a subscriber's backlog), and its
//! end, done or failed, always. A step that never reported says nothing at
//! its end either.

use std::fmt::Display;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::watch::{ProgressEvent, Sink};

/// The least time between two reports of one step (its end excepted).
pub const EVERY: Duration = Duration::from_millis(500);

/// Reports one step of one action to a sink (none: reports go nowhere).
pub struct Reporter {
    sink: Option<Arc<dyn Sink>>,
    action: &'static str,
    step: &'static str,
    unit: &'static str,
    seen: Mutex<Seen>,
}

/// What the step last reported, and when a report last went out.
#[derive(Default)]
struct Seen {
    done: u64,
    total: u64,
    target: String,
    sent_at: Option<Instant>,
}

impl Reporter {
    pub fn new(sink: Option<Arc<dyn Sink>>, action: &'static str, step: &'static str, unit: &'static str) -> Self {
        Reporter { sink, action, step, unit, seen: Mutex::default() }
    }

    fn publish(&self, seen: &Seen, last: bool, error: Option<String>) {
        if let Some(sink) = &self.sink {
            sink.progress(ProgressEvent {
                event: "progress",
                action: self.action,
                step: self.step,
                done: seen.done,
                total: seen.total,
                unit: self.unit,
                target: seen.target.clone(),
                last,
                error,
            });
        }
    }

    /// `done` of `total` so far, working on `target`.
    pub fn report(&self, done: u64, total: u64, target: &str) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        (seen.done, seen.total) = (done, total);
        target.clone_into(&mut seen.target);
        if seen.sent_at.is_none_or(|t| t.elapsed() >= EVERY) {
            seen.sent_at = Some(Instant::now());
            self.publish(&seen, false, None);
        }
    }

    /// The step is done, `done` long (its total too).
    pub fn finish(&self, done: u64) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.sent_at.is_some() {
            (seen.done, seen.total) = (done, done);
            self.publish(&seen, true, None);
        }
    }

    /// The step is done, as counted: all of its last report's total.
    pub fn finish_counted(&self) {
        let total = self.seen.lock().unwrap_or_else(|p| p.into_inner()).total;
        self.finish(total);
    }

    /// The step failed, for `why`.
    pub fn fail(&self, why: &dyn Display) {
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.sent_at.is_some() {
            self.publish(&seen, true, Some(why.to_string()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iocage::watch::JailEvent;

    #[derive(Default)]
    struct Kept(Mutex<Vec<ProgressEvent>>);

    impl Sink for Kept {
        fn publish(&self, _: Vec<JailEvent>) {}
        fn progress(&self, e: ProgressEvent) {
            self.0.lock().unwrap().push(e);
        }
    }

    fn reporter() -> (Arc<Kept>, Reporter) {
        let kept = Arc::new(Kept::default());
        (kept.clone(), Reporter::new(Some(kept), "cleanall", "destroy", "datasets"))
    }

    #[test]
    fn the_first_report_and_the_end_go_out_and_the_rest_at_most_every_half_second() {
        let (kept, r) = reporter();
        for done in 1..=1000 {
            r.report(done, 1000, &format!("tank/iocage/jails/{done}"));
        }
        r.finish(1000);
        let got: Vec<(u64, u64, bool)> = kept.0.lock().unwrap().iter().map(|e| (e.done, e.total, e.last)).collect();
        assert_eq!(got.first(), Some(&(1, 1000, false)));
        assert_eq!(got.last(), Some(&(1000, 1000, true)));
        assert!(got.len() < 10, "a burst is not a flood: {got:?}");
        assert_eq!(kept.0.lock().unwrap().last().unwrap().target, "tank/iocage/jails/1000");
    }

    #[test]
    fn a_failed_step_ends_with_why_and_a_silent_one_says_nothing() {
        let (kept, r) = reporter();
        r.report(0, 300, "jail");
        r.report(120, 300, "jail");
        r.fail(&"No space left on device");
        let events = kept.0.lock().unwrap().clone();
        let end = events.last().unwrap();
        assert!(end.last && end.done <= end.total);
        assert_eq!(end.error.as_deref(), Some("No space left on device"));
        let (kept, r) = reporter();
        r.finish(0);
        r.fail(&"refused before it began");
        assert!(kept.0.lock().unwrap().is_empty());
    }
}
