//! The daemon's own memory: giving back to the system what the allocator
//! holds free.
//!
//! glibc's malloc gives freed memory back to the system only from the top
//! of a heap, and only past a threshold that grows with the largest block
//! freed. A daemon that now and then builds a large reply (df, or a listing
//! with the daemon's 1000 jails read again) keeps the peak of those
//! moments resident for ever, in holes the heap cannot shrink past. In the
//! guest at 1000 jails, after the benchmark's reads, the daemon held 35.4
//! MiB resident, of which `malloc_trim(0)` gave back 10.2 (BENCHMARKS.md,
//! "execjail, start and memory after a profile"). So the daemon calls [`trim`] every [`TRIM_EVERY`].
//!
//! FreeBSD's allocator (jemalloc) gives unused pages back by itself, after
//! a delay (its decay); there, [`trim`] does nothing.

use std::time::Duration;

/// How often the daemon gives free memory back. A trim walks the heap's
/// free blocks (well under a millisecond at the daemon's size); pages
/// given back cost a fault each when used again, so not much more often.
pub const TRIM_EVERY: Duration = Duration::from_secs(10);

/// Gives the allocator's free memory back to the system; whether any was.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn trim() -> bool {
    // SAFETY: malloc_trim takes no pointer and may be called from any
    // thread at any time: glibc locks each arena while it trims it.
    unsafe { libc::malloc_trim(0) != 0 }
}

/// Gives the allocator's free memory back to the system; whether any was.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn trim() -> bool {
    false
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;

    /// Resident KiB of this process (`/proc/self/status`).
    fn rss_kib() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
            .unwrap()
    }

    #[test]
    fn freed_memory_held_below_a_live_block_is_given_back() {
        // 64 MiB in small blocks (below malloc's mmap threshold: its heaps,
        // not a mapping each), written to, then all freed but the last,
        // which keeps the heap from shrinking at its top. (Under another
        // allocator, or `MALLOC_MMAP_THRESHOLD_=0`, this test cannot hold.)
        let mut blocks: Vec<Vec<u8>> = (0..256 * 1024).map(|i| vec![i as u8; 256]).collect();
        let last = blocks.pop();
        drop(blocks);
        let held = rss_kib();
        assert!(trim(), "something was given back");
        let after = rss_kib();
        assert!(after + 32 * 1024 < held, "RSS {held} KiB before the trim, {after} KiB after");
        drop(last);
    }
}
