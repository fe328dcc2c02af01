//! One lock per jail: start, stop, cap and destroy of one jail take turns,
//! other jails' go on in parallel. A jail's lock lives only while somebody
//! holds or waits for it, so the map stays as small as the work in flight.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::OwnedMutexGuard;

/// The per-jail locks, by UUID.
#[derive(Default)]
pub struct Turns {
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Turns {
    /// Waits for, and holds, the jail's turn (until the guard is dropped).
    pub async fn take(&self, uuid: &str) -> OwnedMutexGuard<()> {
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            // A lock only the map refers to is neither held nor awaited
            // (holders and waiters keep a clone): forget it.
            locks.retain(|k, l| k == uuid || Arc::strong_count(l) > 1);
            locks.entry(uuid.to_string()).or_default().clone()
        };
        lock.lock_owned().await
    }

    /// How many jails' locks are kept.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.locks.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_jail_waits_for_its_turn_others_do_not() {
        let turns = Arc::new(Turns::default());
        let a = turns.take("a").await;
        // Another jail's turn is free at once.
        let b = turns.take("b").await;
        // The same jail's is not, until the holder lets go.
        let waiter = tokio::spawn({
            let turns = turns.clone();
            async move { turns.take("a").await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "a second turn of one jail started while the first was held");
        drop(a);
        let again = tokio::time::timeout(std::time::Duration::from_secs(5), waiter).await;
        assert!(again.is_ok_and(|r| r.is_ok()), "the waiting turn never came");
        drop(b);
    }

    #[tokio::test]
    async fn locks_nobody_holds_are_forgotten() {
        let turns = Turns::default();
        for i in 0..100 {
            drop(turns.take(&format!("jail{i}")).await);
        }
        let held = turns.take("kept").await;
        assert_eq!(turns.len(), 1, "only the held lock is kept");
        let other = turns.take("other").await;
        assert_eq!(turns.len(), 2, "a held lock is never forgotten");
        drop((held, other));
    }
}
