//! The host's basics for `system-state`: uptime, load and memory, from the
//! kernel directly (sysinfo(2) on Linux, sysctl(3) on FreeBSD).

use serde::Serialize;

/// What `system-state` reports about the host (zeros where unreadable).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Basics {
    pub uptime_secs: u64,
    /// The 1, 5 and 15 minute load averages.
    pub load: [f64; 3],
    pub memory_total: u64,
    pub memory_free: u64,
}

#[cfg(target_os = "linux")]
pub fn basics() -> Basics {
    match nix::sys::sysinfo::sysinfo() {
        Ok(i) => {
            let (a, b, c) = i.load_average();
            Basics {
                uptime_secs: i.uptime().as_secs(),
                load: [a, b, c],
                memory_total: i.ram_total(),
                memory_free: i.ram_unused(),
            }
        }
        Err(_) => Basics::default(),
    }
}

#[cfg(target_os = "freebsd")]
pub fn basics() -> Basics {
    use nix::time::{ClockId, clock_gettime};
    let uptime_secs = clock_gettime(ClockId::CLOCK_UPTIME).map(|t| t.tv_sec().max(0) as u64).unwrap_or(0);
    let mut load = [0f64; 3];
    // SAFETY: getloadavg(3) writes at most the 3 elements we pass.
    if unsafe { libc::getloadavg(load.as_mut_ptr(), 3) } != 3 {
        load = [0.0; 3];
    }
    let page = sysctl_u64(c"hw.pagesize");
    Basics {
        uptime_secs,
        load,
        memory_total: sysctl_u64(c"hw.physmem"),
        memory_free: sysctl_u64(c"vm.stats.vm.v_free_count").saturating_mul(page),
    }
}

/// An integer sysctl of 4 or 8 bytes (0 when unreadable).
#[cfg(target_os = "freebsd")]
fn sysctl_u64(name: &std::ffi::CStr) -> u64 {
    let mut buf = [0u8; 8];
    let mut len: libc::size_t = buf.len();
    // SAFETY: `name` is NUL-terminated; sysctlbyname writes at most `len`
    // bytes into `buf` and stores the length written in `len`.
    let rc = unsafe { libc::sysctlbyname(name.as_ptr(), buf.as_mut_ptr().cast(), &mut len, std::ptr::null(), 0) };
    match (rc, len) {
        (0, 4) => u64::from(u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]])),
        (0, 8) => u64::from_ne_bytes(buf),
        _ => 0,
    }
}

#[cfg(not(any(target_os = "linux", target_os = "freebsd")))]
pub fn basics() -> Basics {
    Basics::default()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_host_has_memory_and_has_been_up() {
        let b = super::basics();
        assert!(b.memory_total > 0 && b.memory_free <= b.memory_total, "{b:?}");
        assert!(b.uptime_secs > 0, "{b:?}");
    }
}
