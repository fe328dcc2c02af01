//! Capabilities: their numbers, the set every jail keeps, and cutting a
//! process to a set (bounding, ambient, inheritable, effective and
//! permitted); also `PR_SET_NO_NEW_PRIVS`.

/// Capability numbers (linux/capability.h).
pub mod cap {
    pub const CHOWN: u32 = 0;
    pub const DAC_OVERRIDE: u32 = 1;
    pub const FOWNER: u32 = 3;
    pub const FSETID: u32 = 4;
    pub const KILL: u32 = 5;
    pub const SETGID: u32 = 6;
    pub const SETUID: u32 = 7;
    pub const SETPCAP: u32 = 8;
    pub const LINUX_IMMUTABLE: u32 = 9;
    pub const NET_BIND_SERVICE: u32 = 10;
    pub const NET_RAW: u32 = 13;
    pub const IPC_LOCK: u32 = 14;
    pub const SYS_CHROOT: u32 = 18;
    /// Never kept (the tests check that).
    #[cfg(test)]
    pub const SYS_ADMIN: u32 = 21;
    #[cfg(test)]
    pub const MKNOD: u32 = 27;
    pub const AUDIT_WRITE: u32 = 29;
    pub const SETFCAP: u32 = 31;
}

/// The capabilities every jail's processes keep (a subset of what
/// container runtimes keep by default): root in a jail may own files,
/// switch users, bind low ports, but not mount, load modules, trace
/// processes, change the clock, make device nodes or use raw sockets.
pub const BASE_CAPABILITIES: [u32; 12] = [
    cap::CHOWN,
    cap::DAC_OVERRIDE,
    cap::FOWNER,
    cap::FSETID,
    cap::KILL,
    cap::SETGID,
    cap::SETUID,
    cap::SETPCAP,
    cap::NET_BIND_SERVICE,
    cap::SYS_CHROOT,
    cap::AUDIT_WRITE,
    cap::SETFCAP,
];

/// The highest capability number the running kernel knows, found with
/// `PR_CAPBSET_READ` (EINVAL past the last one): no file is read.
pub fn last_cap() -> Result<u32, String> {
    for cap in 0..64u32 {
        // SAFETY: PR_CAPBSET_READ takes a number and reads nothing else.
        let rc = unsafe { libc::prctl(libc::PR_CAPBSET_READ, libc::c_ulong::from(cap), 0, 0, 0) };
        if rc < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINVAL) && cap > 0 {
                return Ok(cap - 1);
            }
            return Err(format!("PR_CAPBSET_READ {cap}: {e}"));
        }
    }
    Err("the kernel reports more than 64 capabilities".into())
}

/// The capabilities to take out of the bounding set: every one up to
/// `last` that `keep` does not name.
pub fn to_drop(keep: &[u32], last: u32) -> Vec<u32> {
    (0..=last).filter(|c| !keep.contains(c)).collect()
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const CAP_VERSION_3: u32 = 0x2008_0522;

/// The 64-bit mask of `caps` as capset(2)'s two 32-bit words.
fn mask(caps: &[u32]) -> [u32; 2] {
    let mut m = [0u32; 2];
    for &c in caps.iter().filter(|c| **c < 64) {
        m[(c / 32) as usize] |= 1 << (c % 32);
    }
    m
}

/// Cuts this process to `keep`: bounding set (`drop` from [`to_drop`],
/// decided before entering the jail), ambient set cleared, inheritable
/// set empty, effective and permitted sets `keep`.
pub fn drop_capabilities(keep: &[u32], drop: &[u32]) -> Result<(), String> {
    for &c in drop {
        // SAFETY: PR_CAPBSET_DROP takes a capability number and no
        // pointers; it only changes this process's bounding set.
        let rc = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(c), 0, 0, 0) };
        if rc != 0 {
            return Err(format!("dropping capability {c} from the bounding set: {}", std::io::Error::last_os_error()));
        }
    }
    // SAFETY: PR_CAP_AMBIENT_CLEAR_ALL takes no pointers.
    let rc = unsafe { libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong, 0, 0, 0) };
    if rc != 0 {
        return Err(format!("clearing the ambient capabilities: {}", std::io::Error::last_os_error()));
    }
    let m = mask(keep);
    let hdr = CapHeader { version: CAP_VERSION_3, pid: 0 };
    let data = [0, 1].map(|i| CapData { effective: m[i], permitted: m[i], inheritable: 0 });
    // SAFETY: capset(2) reads one header and two data structs (version 3),
    // both alive and laid out as linux/capability.h declares them.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &hdr as *const CapHeader, data.as_ptr()) };
    if rc != 0 {
        return Err(format!("setting the capabilities: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

/// `PR_SET_NO_NEW_PRIVS`: no exec can ever give more (set-user-ID files,
/// file capabilities).
pub fn no_new_privs() -> Result<(), String> {
    // SAFETY: takes plain integers.
    let rc = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    if rc != 0 {
        return Err(format!("PR_SET_NO_NEW_PRIVS: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_come_from_the_kernel_not_from_a_file() {
        let last = last_cap().unwrap();
        assert!(last >= 36, "this kernel knows at least CAP_BLOCK_SUSPEND: {last}");
        let drop = to_drop(&BASE_CAPABILITIES, last);
        assert!(drop.contains(&cap::SYS_ADMIN) && drop.contains(&last));
        assert!(!drop.contains(&cap::CHOWN));
        assert_eq!(mask(&[0, 31, 32, 40]), [1 | 1 << 31, 1 | 1 << 8]);
    }
}
