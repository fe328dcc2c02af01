//! The one thread that owns the libzfs handle.
//!
//! Callers send closures over a channel; the owner runs them one at a time
//! against its [`Backend`] ([`Libzfs`] in the daemon) and sends each result
//! back. A request that needs
//! many libzfs calls (read every jail) is one closure, so it costs one trip.
//! [`Zfs::run`] is the async front for tokio; [`Zfs::run_blocking`] is for
//! plain threads (the CLI, tests).
//!
//! The queue is bounded ([`Zfs::start_with_queue`]): a job that finds it
//! full waits up to [`QUEUE_WAIT`] for room, then fails as
//! [`ErrorKind::Overloaded`] (the API answers 503) instead of growing it.
//! A job whose caller stopped waiting before its turn (its request timed
//! out) is skipped when its turn comes.

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use tokio::sync::mpsc::error::{SendTimeoutError, TrySendError};
use tokio::sync::{mpsc as bounded, oneshot};

use std::sync::Arc;

use super::backend::Backend;
use super::error::{ErrorKind, Result, ZfsError};
use super::libzfs::Libzfs;
use super::stream::{OnProgress, copy_snapshot};

type Job = Box<dyn FnOnce(&dyn Backend) + Send>;

/// A cheap, cloneable handle to the owner thread. The thread ends (and
/// closes libzfs) when the last clone is dropped.
#[derive(Clone)]
pub struct Zfs {
    tx: bounded::Sender<Job>,
    /// How a snapshot is copied into a new dataset ([`Zfs::copy_snapshot`]).
    copy: Copier,
}

/// Copies `snapshot` into the new snapshot `target`, creating its dataset,
/// with progress: [`copy_snapshot`] (a send stream into a receive), or a
/// host test's own ([`Zfs::with_copier`]).
pub type Copier = Arc<dyn Fn(&str, &str, OnProgress) -> Result<()> + Send + Sync>;

/// Jobs that may wait for the owner thread by default.
pub const DEFAULT_QUEUE: usize = 512;

/// How long a job waits for room in a full queue.
pub const QUEUE_WAIT: Duration = Duration::from_secs(5);

fn gone() -> ZfsError {
    ZfsError::new("reach", "the libzfs owner thread", ErrorKind::Shutdown, "it has stopped")
}

fn full(capacity: usize) -> ZfsError {
    ZfsError::new(
        "queue work for",
        "the libzfs owner thread",
        ErrorKind::Overloaded,
        format!("{capacity} jobs are waiting already (zfs_queue); try again in a few seconds"),
    )
}

/// Starts a thread named `name` that runs `open`, then `run` with what it
/// opened; returns once `open` has answered, with its error if it failed
/// (the thread then ends). Whatever `open` makes stays on that thread.
pub(super) fn spawn_ready<T, O, F>(name: &str, open: O, run: F) -> Result<()>
where
    O: FnOnce() -> Result<T> + Send + 'static,
    F: FnOnce(T) + Send + 'static,
{
    let (ready_tx, ready_rx) = mpsc::channel::<Result<()>>();
    thread::Builder::new()
        .name(name.into())
        .spawn(move || match open() {
            Ok(opened) => {
                let _ = ready_tx.send(Ok(()));
                run(opened);
            }
            Err(e) => {
                let _ = ready_tx.send(Err(e));
            }
        })
        .map_err(|e| ZfsError::new("start", name, ErrorKind::Other, e.to_string()))?;
    ready_rx.recv().map_err(|_| ZfsError::new("start", name, ErrorKind::Other, "it exited"))?
}

impl Zfs {
    /// Jobs waiting for the owner thread now (for metrics).
    pub fn queued(&self) -> usize {
        self.tx.max_capacity().saturating_sub(self.tx.capacity())
    }

    /// Starts the owner thread and opens libzfs on it. Fails as
    /// [`Libzfs::init`] does when ZFS is not available.
    pub fn start() -> Result<Zfs> {
        Self::start_with_queue(DEFAULT_QUEUE)
    }

    /// [`Zfs::start`] with room for `capacity` waiting jobs.
    pub fn start_with_queue(capacity: usize) -> Result<Zfs> {
        Self::start_on(capacity, Libzfs::init)
    }

    /// [`Zfs::start_with_queue`] with the backend `open` makes, on the
    /// owner thread (where it stays: it need not be `Send`). The daemon
    /// opens [`Libzfs`]; host tests open an in-memory pool.
    pub fn start_on<B, O>(capacity: usize, open: O) -> Result<Zfs>
    where
        B: Backend + 'static,
        O: FnOnce() -> Result<B> + Send + 'static,
    {
        let (tx, mut rx) = bounded::channel::<Job>(capacity.max(1));
        spawn_ready("libzfs-owner", open, move |lib| {
            while let Some(job) = rx.blocking_recv() {
                // A bug that panics in one job fails that request (its
                // reply channel is dropped), not every later one. libzfs
                // is left consistent: a panic cannot unwind through its
                // C frames, so it happens between libzfs calls.
                if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&lib))).is_err() {
                    tracing::error!("a libzfs job panicked; its request failed, the owner thread goes on");
                }
            }
        })?;
        Ok(Zfs { tx, copy: Arc::new(copy_snapshot) })
    }

    /// The same handle copying snapshots with `copy` (host tests, whose
    /// pool is in memory; the daemon copies with [`copy_snapshot`]).
    pub fn with_copier(mut self, copy: Copier) -> Zfs {
        self.copy = copy;
        self
    }

    /// Copies `snapshot` into the new snapshot `target` (`pool/ds@snap`),
    /// creating its dataset; see [`copy_snapshot`]. Blocks: call it from a
    /// blocking thread.
    pub fn copy_snapshot(&self, snapshot: &str, target: &str, on_progress: OnProgress) -> Result<()> {
        (self.copy)(snapshot, target, on_progress)
    }

    /// Runs `f` on the owner thread and awaits its result.
    pub async fn run<R, F>(&self, f: F) -> Result<R>
    where
        F: FnOnce(&dyn Backend) -> R + Send + 'static,
        R: Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |lib| {
            // Its caller gave up waiting (the request timed out, the
            // client went): nobody wants the answer, so no libzfs time
            // is spent on it.
            if tx.is_closed() {
                return;
            }
            let _ = tx.send(f(lib));
        });
        match self.tx.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Closed(_)) => return Err(gone()),
            Err(TrySendError::Full(job)) => match self.tx.send_timeout(job, QUEUE_WAIT).await {
                Ok(()) => {}
                Err(SendTimeoutError::Closed(_)) => return Err(gone()),
                Err(SendTimeoutError::Timeout(_)) => return Err(full(self.tx.max_capacity())),
            },
        }
        rx.await.map_err(|_| gone())
    }

    /// Runs `f` on the owner thread and blocks this thread until it is done.
    /// Not for use inside an async task (use [`Zfs::run`]).
    pub fn run_blocking<R, F>(&self, f: F) -> Result<R>
    where
        F: FnOnce(&dyn Backend) -> R + Send + 'static,
        R: Send + 'static,
    {
        let (tx, rx) = mpsc::sync_channel(1);
        self.tx
            .blocking_send(Box::new(move |lib| {
                let _ = tx.send(f(lib));
            }))
            .map_err(|_| gone())?;
        rx.recv().map_err(|_| gone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On a host without the ZFS module (these build machines), starting
    /// must fail with a message that says what is missing; where /dev/zfs
    /// exists it must succeed. Either way the outcome is checked.
    #[test]
    fn start_reports_whether_zfs_is_available() {
        match Zfs::start() {
            Ok(z) => {
                assert!(std::path::Path::new("/dev/zfs").exists());
                assert!(z.run_blocking(|l| l.pools()).unwrap().is_ok());
            }
            Err(e) => {
                assert_eq!(e.kind, ErrorKind::Unavailable, "{e}");
                assert!(e.to_string().contains("kernel module"), "{e}");
            }
        }
    }
}
