//! One scan for many askers: reads that arrive while the same read is
//! under way share its run instead of starting their own (df at 1000 jails
//! reads every jail's space properties; eight clients asking at once cost
//! one scan, not eight).
//!
//! An asker joins only a run that started at its own *write generation*
//! (the count of this daemon's write actions ended, see `service`): a read
//! sent after a write has ended never gets an answer read before that
//! write. A change made behind the daemon's back while a run is under way
//! may be missed by those who joined it, as it would be by a read sent a
//! moment earlier.

use std::sync::Mutex;

use futures_util::future::{BoxFuture, FutureExt, Shared};
use serde_json::Value;

use crate::iocage::error::ActionError;

type Outcome = Result<Value, ActionError>;

/// The run under way, if any, and the write generation it started at.
#[derive(Default)]
pub(super) struct Flight {
    running: Mutex<Option<(u64, Shared<BoxFuture<'static, Outcome>>)>>,
}

impl Flight {
    /// The outcome of the run started at `generation`: the one under way,
    /// or a new one made by `run`. A run that panics answers its askers
    /// with an error (and is not joined again).
    pub(super) async fn join_or_start<F>(&self, generation: u64, run: impl FnOnce() -> F) -> Outcome
    where
        F: std::future::Future<Output = Outcome> + Send + 'static,
    {
        let shared = {
            let mut slot = self.running.lock().unwrap_or_else(|p| p.into_inner());
            match &*slot {
                Some((g, f)) if *g == generation => f.clone(),
                _ => {
                    let f = std::panic::AssertUnwindSafe(run())
                        .catch_unwind()
                        .map(|r| {
                            r.unwrap_or_else(|_| {
                                Err(ActionError::Io {
                                    what: "read".into(),
                                    message: "the read failed inside the server (a bug; see its log)".into(),
                                })
                            })
                        })
                        .boxed()
                        .shared();
                    *slot = Some((generation, f.clone()));
                    f
                }
            }
        };
        let outcome = shared.clone().await;
        // Done: the next asker starts a run of its own.
        let mut slot = self.running.lock().unwrap_or_else(|p| p.into_inner());
        if slot.as_ref().is_some_and(|(_, f)| f.ptr_eq(&shared)) {
            *slot = None;
        }
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    /// A run that counts itself and takes 100 ms.
    fn counted(runs: &Arc<AtomicUsize>) -> impl FnOnce() -> BoxFuture<'static, Outcome> + use<> {
        let runs = runs.clone();
        move || {
            async move {
                let n = runs.fetch_add(1, Ordering::SeqCst) + 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
                Ok(Value::from(n))
            }
            .boxed()
        }
    }

    #[tokio::test]
    async fn askers_at_once_share_one_run_and_later_ones_start_another() {
        let (flight, runs) = (Arc::new(Flight::default()), Arc::new(AtomicUsize::new(0)));
        let askers: Vec<_> = (0..5)
            .map(|_| {
                let (flight, runs) = (flight.clone(), runs.clone());
                tokio::spawn(async move { flight.join_or_start(7, counted(&runs)).await })
            })
            .collect();
        for a in askers {
            assert_eq!(a.await.unwrap(), Ok(Value::from(1)));
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1, "five askers, one run");
        // Finished: the next asker does not get the old answer.
        assert_eq!(flight.join_or_start(7, counted(&runs)).await, Ok(Value::from(2)));
    }

    #[tokio::test]
    async fn a_write_ended_since_a_run_started_is_not_joined() {
        let (flight, runs) = (Arc::new(Flight::default()), Arc::new(AtomicUsize::new(0)));
        let early = {
            let (flight, runs) = (flight.clone(), runs.clone());
            tokio::spawn(async move { flight.join_or_start(1, counted(&runs)).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        // A write ended (generation 2): a run of its own, not the one under way.
        assert_eq!(flight.join_or_start(2, counted(&runs)).await, Ok(Value::from(2)));
        assert_eq!(early.await.unwrap(), Ok(Value::from(1)));
    }

    #[tokio::test]
    async fn a_run_that_panics_is_an_error_and_not_joined_again() {
        let flight = Flight::default();
        let boom = || async { panic!("a bug") };
        let e = flight.join_or_start(1, || boom().boxed()).await;
        assert!(e.as_ref().is_err_and(|e| e.to_string().contains("inside the server")), "{e:?}");
        assert_eq!(flight.join_or_start(1, || async { Ok(Value::from(5)) }.boxed()).await, Ok(Value::from(5)));
    }
}
