//! Failed logins per address: 5 failures, each within 10 minutes of the
//! previous one, block that address for 60 minutes. Loopback is never
//! blocked. The table is bounded: past its size the stalest entry goes.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const MAX_FAILURES: u32 = 5;
pub const WINDOW: Duration = Duration::from_secs(10 * 60);
pub const BLOCK: Duration = Duration::from_secs(60 * 60);
const MAX_ENTRIES: usize = 4096;

struct Entry {
    failures: u32,
    last: Instant,
    blocked_until: Option<Instant>,
}

#[derive(Default)]
pub struct Lockout {
    table: Mutex<HashMap<IpAddr, Entry>>,
}

fn exempt(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => a.is_loopback(),
        IpAddr::V6(a) => a.is_loopback() || a.to_ipv4_mapped().is_some_and(|v| v.is_loopback()),
    }
}

impl Lockout {
    pub fn is_blocked(&self, ip: IpAddr) -> bool {
        self.is_blocked_at(ip, Instant::now())
    }

    fn is_blocked_at(&self, ip: IpAddr, now: Instant) -> bool {
        let t = self.table.lock().unwrap_or_else(|p| p.into_inner());
        t.get(&ip).and_then(|e| e.blocked_until).is_some_and(|until| until > now)
    }

    /// Records a failed login; returns whether the address is now blocked.
    pub fn failure(&self, ip: IpAddr) -> bool {
        self.failure_at(ip, Instant::now())
    }

    fn failure_at(&self, ip: IpAddr, now: Instant) -> bool {
        if exempt(ip) {
            return false;
        }
        let mut t = self.table.lock().unwrap_or_else(|p| p.into_inner());
        if t.len() >= MAX_ENTRIES && !t.contains_key(&ip) {
            if let Some(stalest) = t
                .iter()
                .filter(|(_, e)| e.blocked_until.is_none_or(|u| u <= now))
                .min_by_key(|(_, e)| e.last)
                .map(|(k, _)| *k)
            {
                t.remove(&stalest);
            }
        }
        let e = t.entry(ip).or_insert(Entry { failures: 0, last: now, blocked_until: None });
        if e.blocked_until.is_some_and(|u| u <= now) {
            e.blocked_until = None;
            e.failures = 0;
        }
        if now.duration_since(e.last) > WINDOW {
            e.failures = 0;
        }
        e.failures += 1;
        e.last = now;
        if e.failures >= MAX_FAILURES {
            e.blocked_until = Some(now + BLOCK);
        }
        e.blocked_until.is_some()
    }

    /// A successful login clears the address's failures.
    pub fn success(&self, ip: IpAddr) {
        let mut t = self.table.lock().unwrap_or_else(|p| p.into_inner());
        if t.get(&ip).is_some_and(|e| e.blocked_until.is_none()) {
            t.remove(&ip);
        }
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
    fn the_table_is_bounded() {
        let l = Lockout::default();
        let now = Instant::now();
        for i in 0..(MAX_ENTRIES as u32 + 100) {
            l.failure_at(IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i)), now);
        }
        assert!(l.table.lock().unwrap().len() <= MAX_ENTRIES);
    }
}
