//! Failed logins per address: 5 failures, each within 10 minutes of the
//! previous one, block that address for 60 minutes.
//!
//! - **Attempts in flight count.** An address's password checks take
//!   turns ([`Lockout::admit`]): the next one starts only when the last
//!   one's outcome is recorded, so however many arrive at once, exactly
//!   [`MAX_FAILURES`] wrong passwords reach PAM before the block.
//! - **Addresses.** IPv6 addresses count by their /64 (one host usually
//!   has a whole /64); IPv4-mapped IPv6 as IPv4. Loopback is exempt, unless
//!   it is a trusted reverse proxy (then its clients are told apart by
//!   `X-Forwarded-For`, and a request without one counts against it).
//! - **Bounded.** At most [`MAX_ENTRIES`] addresses are kept. When the
//!   table is full the stalest unblocked entry goes; when every entry is
//!   blocked, the block that ends first goes (an attacker needs 4096
//!   blocked addresses to free one).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::OwnedMutexGuard;

use crate::config::{Network, canonical};

pub const MAX_FAILURES: u32 = 5;
pub const WINDOW: Duration = Duration::from_secs(10 * 60);
pub const BLOCK: Duration = Duration::from_secs(60 * 60);
pub const MAX_ENTRIES: usize = 4096;
/// How long a login waits for its address's turn.
pub const TURN_WAIT: Duration = Duration::from_secs(30);

struct Entry {
    failures: u32,
    last: Instant,
    blocked_until: Option<Instant>,
    /// Held while one of this address's password checks runs.
    gate: Arc<tokio::sync::Mutex<()>>,
}

impl Entry {
    fn new(now: Instant) -> Self {
        Entry { failures: 0, last: now, blocked_until: None, gate: Arc::default() }
    }
    fn blocked(&self, now: Instant) -> bool {
        self.blocked_until.is_some_and(|u| u > now)
    }
    /// Nobody holds or waits for this address's turn.
    fn idle(&self) -> bool {
        Arc::strong_count(&self.gate) == 1
    }
}

/// Why an attempt may not go ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The address is blocked.
    Blocked,
    /// The address's previous attempts did not finish in [`TURN_WAIT`], or
    /// the table is full of attempts in flight.
    Busy,
}

/// An address's turn to check a password; record the outcome with
/// [`Lockout::failure`] or [`Lockout::success`] before dropping it.
pub struct Turn {
    _gate: Option<OwnedMutexGuard<()>>,
}

#[derive(Default)]
pub struct Lockout {
    table: Mutex<HashMap<IpAddr, Entry>>,
    trusted_proxies: Vec<Network>,
}

use crate::config::host_key as key;

impl Lockout {
    pub fn new(trusted_proxies: Vec<Network>) -> Self {
        Lockout { table: Mutex::default(), trusted_proxies }
    }

    fn exempt(&self, ip: IpAddr) -> bool {
        canonical(ip).is_loopback() && !self.trusted_proxies.iter().any(|n| n.contains(ip))
    }

    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Entry>> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Addresses blocked now (for metrics).
    pub fn blocked_count(&self) -> usize {
        let now = Instant::now();
        self.table().values().filter(|e| e.blocked(now)).count()
    }

    pub fn is_blocked(&self, ip: IpAddr) -> bool {
        self.is_blocked_at(ip, Instant::now())
    }

    fn is_blocked_at(&self, ip: IpAddr, now: Instant) -> bool {
        self.table().get(&key(ip)).is_some_and(|e| e.blocked(now))
    }

    /// Waits for the address's turn to check a password (at most
    /// [`TURN_WAIT`]); refuses a blocked address, before and after waiting.
    pub async fn admit(&self, ip: IpAddr) -> Result<Turn, Refusal> {
        if self.exempt(ip) {
            return Ok(Turn { _gate: None });
        }
        let gate = {
            let now = Instant::now();
            let mut t = self.table();
            let e = Self::entry(&mut t, key(ip), now).ok_or(Refusal::Busy)?;
            if e.blocked(now) {
                return Err(Refusal::Blocked);
            }
            e.gate.clone()
        };
        let held = tokio::time::timeout(TURN_WAIT, gate.lock_owned()).await.map_err(|_| Refusal::Busy)?;
        if self.is_blocked(ip) {
            return Err(Refusal::Blocked);
        }
        Ok(Turn { _gate: Some(held) })
    }

    /// The address's entry, made room for when the table is full; `None`
    /// when every entry has an attempt in flight.
    fn entry(t: &mut HashMap<IpAddr, Entry>, k: IpAddr, now: Instant) -> Option<&mut Entry> {
        if t.len() >= MAX_ENTRIES && !t.contains_key(&k) {
            let stalest_unblocked =
                t.iter().filter(|(_, e)| e.idle() && !e.blocked(now)).min_by_key(|(_, e)| e.last).map(|(k, _)| *k);
            let ends_first =
                || t.iter().filter(|(_, e)| e.idle()).min_by_key(|(_, e)| e.blocked_until).map(|(k, _)| *k);
            let victim = stalest_unblocked.or_else(ends_first)?;
            if t.get(&victim).is_some_and(|e| e.blocked(now)) {
                tracing::warn!(peer = %victim, "lockout table full of blocked addresses: unblocking the one whose block ends first");
            }
            t.remove(&victim);
        }
        Some(t.entry(k).or_insert_with(|| Entry::new(now)))
    }

    /// Records a failed login; returns whether the address is now blocked.
    pub fn failure(&self, ip: IpAddr) -> bool {
        self.failure_at(ip, Instant::now())
    }

    fn failure_at(&self, ip: IpAddr, now: Instant) -> bool {
        if self.exempt(ip) {
            return false;
        }
        let mut t = self.table();
        let Some(e) = Self::entry(&mut t, key(ip), now) else { return false };
        if e.blocked_until.is_some_and(|u| u <= now) {
            e.blocked_until = None;
            e.failures = 0;
        }
        if now.duration_since(e.last) > WINDOW {
            e.failures = 0;
        }
        e.failures = e.failures.saturating_add(1);
        e.last = now;
        if e.failures >= MAX_FAILURES && e.blocked_until.is_none() {
            e.blocked_until = Some(now + BLOCK);
        }
        e.blocked(now)
    }

    /// A successful login clears the address's failures.
    pub fn success(&self, ip: IpAddr) {
        if let Some(e) = self.table().get_mut(&key(ip)) {
            if e.blocked_until.is_none() {
                e.failures = 0;
            }
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.table().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 9));

    #[test]
    fn the_fifth_failure_within_the_window_blocks_for_an_hour() {
        let l = Lockout::default();
        let t0 = Instant::now();
        for i in 0..4 {
            assert!(!l.failure_at(IP, t0 + Duration::from_secs(60 * i)), "failure {} does not block", i + 1);
        }
        assert!(!l.is_blocked_at(IP, t0 + Duration::from_secs(300)));
        assert!(l.failure_at(IP, t0 + Duration::from_secs(300)), "the fifth blocks");
        assert!(l.is_blocked_at(IP, t0 + Duration::from_secs(301)));
        assert!(l.is_blocked_at(IP, t0 + Duration::from_secs(300) + BLOCK - Duration::from_secs(1)));
        assert!(!l.is_blocked_at(IP, t0 + Duration::from_secs(301) + BLOCK));
    }

    #[test]
    fn failures_further_apart_than_the_window_start_over() {
        let l = Lockout::default();
        let t0 = Instant::now();
        for i in 0..10u64 {
            assert!(!l.failure_at(IP, t0 + (WINDOW + Duration::from_secs(1)) * i as u32));
        }
    }

    #[test]
    fn loopback_is_never_blocked_and_success_clears() {
        let l = Lockout::default();
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        for _ in 0..20 {
            assert!(!l.failure(lo));
        }
        assert!(!l.is_blocked(lo));
        for _ in 0..4 {
            l.failure(IP);
        }
        l.success(IP);
        assert!(!l.failure(IP), "counting starts over after a success");
    }

    #[test]
    fn loopback_that_is_a_trusted_proxy_is_not_exempt() {
        let l = Lockout::new(vec!["127.0.0.1".parse().unwrap()]);
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        for _ in 0..MAX_FAILURES {
            l.failure(lo);
        }
        assert!(l.is_blocked(lo), "a proxy's requests without X-Forwarded-For count against it");
        assert!(!l.is_blocked("127.0.0.2".parse().unwrap()), "other loopback addresses are still exempt");
    }

    #[test]
    fn ipv6_counts_by_its_64_and_mapped_ipv4_as_ipv4() {
        let l = Lockout::default();
        for i in 0..MAX_FAILURES {
            l.failure(format!("2001:db8:1:2::{i:x}").parse().unwrap());
        }
        assert!(l.is_blocked("2001:db8:1:2:ffff::1".parse().unwrap()), "the whole /64");
        assert!(!l.is_blocked("2001:db8:1:3::1".parse().unwrap()));
        for _ in 0..MAX_FAILURES {
            l.failure("::ffff:10.0.0.9".parse().unwrap());
        }
        assert!(l.is_blocked(IP));
    }

    #[test]
    fn the_table_is_bounded_even_when_every_entry_is_blocked() {
        let l = Lockout::default();
        let now = Instant::now();
        for i in 0..(MAX_ENTRIES as u32 + 100) {
            let ip = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            for _ in 0..MAX_FAILURES {
                l.failure_at(ip, now);
            }
        }
        assert!(l.len() <= MAX_ENTRIES, "{} entries", l.len());
        let last = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + MAX_ENTRIES as u32 + 99));
        assert!(l.is_blocked_at(last, now + Duration::from_secs(1)), "the newest block holds");
    }

    /// 100 wrong passwords at once from one address: exactly
    /// MAX_FAILURES checks run, one at a time; the rest are refused.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn attempts_in_flight_count() {
        let l = Arc::new(Lockout::default());
        let checks = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let at_once = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..100 {
            let (l, checks, at_once) = (l.clone(), checks.clone(), at_once.clone());
            tasks.spawn(async move {
                let turn = l.admit(IP).await?;
                checks.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                assert_eq!(at_once.fetch_add(1, std::sync::atomic::Ordering::SeqCst), 0, "one check at a time");
                tokio::time::sleep(Duration::from_millis(5)).await; // PAM
                at_once.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                l.failure(IP);
                drop(turn);
                Ok::<(), Refusal>(())
            });
        }
        let mut refused = 0;
        while let Some(r) = tasks.join_next().await {
            if r.unwrap() == Err(Refusal::Blocked) {
                refused += 1;
            }
        }
        assert_eq!(checks.load(std::sync::atomic::Ordering::SeqCst), MAX_FAILURES);
        assert_eq!(refused, 100 - MAX_FAILURES);
    }
}
