//! The FreeBSD system calls the runtime makes beyond what the `jail`,
//! `rctl` and `nix` crates offer, each with the FreeBSD source that
//! defines its behaviour.

use std::ffi::{CStr, CString, c_char, c_int};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;

use nix::errno::Errno;

use super::params::{Param, Value};
use super::record::TableEntry;

unsafe extern "C" {
    // Both are system calls in FreeBSD's libc without a binding in the
    // `libc` crate: kldload(2) (sys/kern/kern_linker.c, `sys_kldload`) and
    // setfib(2) (sys/net/route.c, `sys_setfib`).
    fn kldload(file: *const c_char) -> c_int;
    fn setfib(fib: c_int) -> c_int;
}

const ERRMSG_LEN: usize = 1024;

fn c_string(s: &str) -> Result<CString, String> {
    CString::new(s).map_err(|_| format!("{s:?} contains a NUL byte"))
}

fn errmsg_or(buf: &[u8], e: std::io::Error) -> String {
    match CStr::from_bytes_until_nul(buf).map(CStr::to_string_lossy) {
        Ok(m) if !m.is_empty() => m.into_owned(),
        _ => e.to_string(),
    }
}

/// jail_set(2) with `JAIL_CREATE`; returns the new jid. The list is sent
/// as libjail's `jailparam_set` sends it (lib/libjail/jail.c): booleans
/// as a name with a NULL, zero-length value.
pub fn jail_create(params: &[Param]) -> Result<i32, String> {
    let mut owned: Vec<(CString, Option<Vec<u8>>)> = Vec::with_capacity(params.len());
    for p in params {
        let value = match &p.value {
            Value::Flag => None,
            Value::Int(i) => Some(i.to_ne_bytes().to_vec()),
            Value::Str(s) => Some(c_string(s)?.into_bytes_with_nul()),
            Value::Ip4(a) => Some(a.iter().flat_map(|a| a.octets()).collect()),
            Value::Ip6(a) => Some(a.iter().flat_map(|a| a.octets()).collect()),
        };
        owned.push((c_string(&p.name)?, value));
    }
    let mut errmsg = [0u8; ERRMSG_LEN];
    let errmsg_name = c"errmsg";
    let mut iov: Vec<libc::iovec> = Vec::with_capacity(2 * owned.len() + 2);
    for (name, value) in &owned {
        iov.push(libc::iovec { iov_base: name.as_ptr() as *mut _, iov_len: name.as_bytes_with_nul().len() });
        iov.push(match value {
            None => libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 },
            Some(v) => libc::iovec { iov_base: v.as_ptr() as *mut _, iov_len: v.len() },
        });
    }
    iov.push(libc::iovec { iov_base: errmsg_name.as_ptr() as *mut _, iov_len: errmsg_name.to_bytes_with_nul().len() });
    iov.push(libc::iovec { iov_base: errmsg.as_mut_ptr().cast(), iov_len: errmsg.len() });
    let n = u32::try_from(iov.len()).map_err(|_| "too many jail parameters".to_string())?;
    // SAFETY: every iovec points into `owned`, `errmsg_name` or `errmsg`,
    // all alive and unmoved until the call returns; the kernel writes only
    // into `errmsg`, within its length. sys/kern/kern_jail.c `kern_jail_set`.
    let jid = unsafe { libc::jail_set(iov.as_mut_ptr(), n, libc::JAIL_CREATE) };
    if jid < 0 { Err(errmsg_or(&errmsg, std::io::Error::last_os_error())) } else { Ok(jid) }
}

/// Where a jail is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JailState {
    Alive,
    /// Removed, but still held (by exiting processes, sockets): the kernel
    /// frees it when the last reference goes (sys/kern/kern_jail.c,
    /// `prison_deref`).
    Dying,
    Gone,
}

/// The state of jail `jid`, which must still be named `name` (a jid
/// reused by another jail counts as gone): jail_get(2) with `JAIL_DYING`,
/// which also finds dying jails (sys/kern/kern_jail.c, `kern_jail_get`).
pub fn jail_state(jid: i32, name: &str) -> Result<JailState, String> {
    let mut key = jid;
    let mut dying: c_int = 0;
    let mut found = [0u8; libc::MAXHOSTNAMELEN as usize];
    let mut errmsg = [0u8; ERRMSG_LEN];
    let names = [c"jid", c"name", c"dying", c"errmsg"];
    let mut iov = [
        libc::iovec { iov_base: names[0].as_ptr() as *mut _, iov_len: names[0].to_bytes_with_nul().len() },
        libc::iovec { iov_base: (&raw mut key).cast(), iov_len: size_of::<i32>() },
        libc::iovec { iov_base: names[1].as_ptr() as *mut _, iov_len: names[1].to_bytes_with_nul().len() },
        libc::iovec { iov_base: found.as_mut_ptr().cast(), iov_len: found.len() },
        libc::iovec { iov_base: names[2].as_ptr() as *mut _, iov_len: names[2].to_bytes_with_nul().len() },
        libc::iovec { iov_base: (&raw mut dying).cast(), iov_len: size_of::<c_int>() },
        libc::iovec { iov_base: names[3].as_ptr() as *mut _, iov_len: names[3].to_bytes_with_nul().len() },
        libc::iovec { iov_base: errmsg.as_mut_ptr().cast(), iov_len: errmsg.len() },
    ];
    // SAFETY: every iovec points at a live local of the stated length;
    // the kernel writes the values into `found`, `dying` and `errmsg`
    // within those lengths.
    let rc = unsafe { libc::jail_get(iov.as_mut_ptr(), iov.len() as u32, libc::JAIL_DYING) };
    if rc < 0 {
        let e = std::io::Error::last_os_error();
        return if e.raw_os_error() == Some(libc::ENOENT) { Ok(JailState::Gone) } else { Err(errmsg_or(&errmsg, e)) };
    }
    let same = CStr::from_bytes_until_nul(&found).is_ok_and(|n| n.to_bytes() == name.as_bytes());
    Ok(match (same, dying != 0) {
        (false, _) => JailState::Gone,
        (true, true) => JailState::Dying,
        (true, false) => JailState::Alive,
    })
}

/// jail_remove(2): kills every process in the jail and marks it dying
/// (sys/kern/kern_jail.c, `sys_jail_remove`, `prison_remove`). `Ok` also
/// when there is no such jail (EINVAL).
pub fn jail_remove(jid: i32) -> Result<(), Errno> {
    // SAFETY: no pointers; it only acts on the jail `jid`.
    match Errno::result(unsafe { libc::jail_remove(jid) }) {
        Ok(_) | Err(Errno::EINVAL) => Ok(()),
        Err(e) => Err(e),
    }
}

/// The live (not zombie) processes in jail `jid`, from the `kern.proc.proc`
/// sysctl as jail(8) reads them through kvm_getprocs
/// (usr.sbin/jail/command.c, `term_procs`; sys/kern/kern_proc.c,
/// `sysctl_kern_proc`).
pub fn processes_in(jid: i32) -> Result<Vec<libc::pid_t>, String> {
    let mib = [libc::CTL_KERN, libc::KERN_PROC, libc::KERN_PROC_PROC];
    let mut buf: Vec<u8> = Vec::new();
    for _ in 0..8 {
        let mut len: libc::size_t = 0;
        // SAFETY: a size query: no output buffer.
        let rc = unsafe { libc::sysctl(mib.as_ptr(), 3, std::ptr::null_mut(), &mut len, std::ptr::null(), 0) };
        if rc < 0 {
            return Err(format!("sysctl kern.proc.proc: {}", std::io::Error::last_os_error()));
        }
        buf = vec![0u8; len + len / 4 + 4096];
        let mut len = buf.len();
        // SAFETY: `buf` is writable for `len` bytes; the kernel writes at
        // most that and sets `len` to what it wrote.
        let rc = unsafe { libc::sysctl(mib.as_ptr(), 3, buf.as_mut_ptr().cast(), &mut len, std::ptr::null(), 0) };
        if rc == 0 {
            buf.truncate(len);
            break;
        }
        if Errno::last() != Errno::ENOMEM {
            return Err(format!("sysctl kern.proc.proc: {}", std::io::Error::last_os_error()));
        }
        buf.clear();
    }
    let read_i32 =
        |at: usize| -> Option<i32> { buf.get(at..at + 4).map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]])) };
    let (pid_at, jid_at, stat_at) = (
        std::mem::offset_of!(libc::kinfo_proc, ki_pid),
        std::mem::offset_of!(libc::kinfo_proc, ki_jid),
        std::mem::offset_of!(libc::kinfo_proc, ki_stat),
    );
    let mut out = Vec::new();
    let mut at = 0;
    // Each record starts with its own size (`ki_structsize`).
    while let Some(size) = read_i32(at) {
        let size = usize::try_from(size).unwrap_or(0);
        if size <= stat_at || at + size > buf.len() {
            break;
        }
        let zombie = buf[at + stat_at] as c_char == libc::SZOMB;
        if read_i32(at + jid_at) == Some(jid) && !zombie {
            if let Some(pid) = read_i32(at + pid_at) {
                out.push(pid);
            }
        }
        at += size;
    }
    Ok(out)
}

/// Whether the kernel has jail parameter `name`: its sysctl
/// `security.jail.param.<name>` exists (how libjail's `jailparam_type`
/// finds a parameter's type; sys/kern/kern_jail.c declares them).
pub fn param_exists(name: &str) -> bool {
    let Ok(full) = CString::new(format!("security.jail.param.{name}")) else { return false };
    let mut mib = [0 as c_int; 24];
    let mut len: libc::size_t = mib.len();
    // SAFETY: `full` is NUL-terminated; `mib` has room for `len` entries.
    unsafe { libc::sysctlnametomib(full.as_ptr(), mib.as_mut_ptr(), &mut len) == 0 }
}

/// kldload(2) of the module named after a filesystem, as libjail's
/// `kldload_param` does for `allow.mount.<fs>`; already loaded is fine.
pub fn load_filesystem(fs: &str) -> Result<(), String> {
    load_module(fs)
}

/// kldload(2) of a kernel module by name; one already there (loaded, or
/// compiled into the kernel) is fine.
pub fn load_module(fs: &str) -> Result<(), String> {
    let name = c_string(fs)?;
    // SAFETY: `name` is a NUL-terminated string alive for the call.
    match Errno::result(unsafe { kldload(name.as_ptr()) }) {
        Ok(_) | Err(Errno::EEXIST) => Ok(()),
        Err(e) => Err(format!("kldload {fs}: {e}")),
    }
}

/// setfib(2) for the calling process (inherited by what it runs), as
/// jail(8) does before jail_attach for `exec.fib` (usr.sbin/jail/command.c,
/// `run_command`).
pub fn set_fib(fib: u32) -> Result<(), String> {
    let n = c_int::try_from(fib).map_err(|_| format!("FIB {fib} is out of range"))?;
    // SAFETY: no pointers; it changes only this process's FIB.
    Errno::result(unsafe { setfib(n) }).map(drop).map_err(|e| format!("setfib {fib}: {e}"))
}

fn fsid(st: &libc::statfs) -> [i32; 2] {
    // SAFETY: fsid_t is `struct { int32_t val[2]; }` (sys/sys/mount.h);
    // the `libc` crate keeps the field private but has that very layout.
    unsafe { std::mem::transmute_copy::<libc::fsid_t, [i32; 2]>(&st.f_fsid) }
}

fn c_chars(chars: &[c_char]) -> String {
    let bytes: Vec<u8> = chars.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The filesystem directory `fd` lies on: its fsid and mount point
/// (fstatfs(2)).
pub fn filesystem_of(fd: &OwnedFd) -> Result<([i32; 2], PathBuf), String> {
    // SAFETY: statfs is plain data; all zeroes is a valid value.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is an open descriptor; `st` is writable.
    Errno::result(unsafe { libc::fstatfs(fd.as_raw_fd(), &mut st) }).map_err(|e| format!("fstatfs: {e}"))?;
    Ok((fsid(&st), PathBuf::from(c_chars(&st.f_mntonname))))
}

/// The mount table (getfsstat(2), `MNT_NOWAIT`).
pub fn mount_table() -> Result<Vec<TableEntry>, String> {
    for _ in 0..8 {
        // SAFETY: a NULL buffer asks only for the count.
        let n = Errno::result(unsafe { libc::getfsstat(std::ptr::null_mut(), 0, libc::MNT_NOWAIT) })
            .map_err(|e| format!("getfsstat: {e}"))?;
        let cap = usize::try_from(n).unwrap_or(0) + 16;
        // SAFETY: statfs is plain data; all zeroes is a valid value.
        let mut buf: Vec<libc::statfs> = (0..cap).map(|_| unsafe { std::mem::zeroed() }).collect();
        let bytes = libc::c_long::try_from(cap * size_of::<libc::statfs>()).map_err(|_| "mount table too large")?;
        // SAFETY: `buf` holds `cap` statfs, `bytes` long.
        let got = Errno::result(unsafe { libc::getfsstat(buf.as_mut_ptr(), bytes, libc::MNT_NOWAIT) })
            .map_err(|e| format!("getfsstat: {e}"))?;
        let got = usize::try_from(got).unwrap_or(0);
        if got < cap {
            return Ok(buf[..got]
                .iter()
                .map(|st| TableEntry { fsid: fsid(st), on: PathBuf::from(c_chars(&st.f_mntonname)) })
                .collect());
        }
    }
    Err("getfsstat: the mount table keeps growing".into())
}

/// unmount(2) with `MNT_BYFSID`: the filesystem with this fsid, looked up
/// in the mount list, not by a path (sys/kern/vfs_mount.c, `kern_unmount`;
/// umount(8) does the same).
pub fn unmount_fsid(fsid: [i32; 2]) -> Result<(), Errno> {
    let id = format!("FSID:{}:{}", fsid[0], fsid[1]);
    nix::mount::unmount(id.as_str(), nix::mount::MntFlags::MNT_BYFSID)
}

/// An interface-address ioctl (`SIOCAIFADDR`, `SIOCDIFADDR` and their
/// IPv6 forms, see `ifreq`) on a datagram socket of `family` (`AF_INET`
/// or `AF_INET6`), as ifconfig(8) makes them (sbin/ifconfig/ifconfig.c:
/// a socket of the address family, then ioctl).
pub fn if_address_ioctl(family: c_int, request: u64, arg: &mut [u8]) -> Result<(), Errno> {
    // Only these four, whose arguments hold no pointers; and the request
    // number encodes its argument's size: a buffer of any other size would
    // let the kernel read past it.
    use super::ifreq::{SIOCAIFADDR, SIOCAIFADDR_IN6, SIOCDIFADDR, SIOCDIFADDR_IN6, ioc_len};
    if ![SIOCAIFADDR, SIOCDIFADDR, SIOCAIFADDR_IN6, SIOCDIFADDR_IN6].contains(&request) || arg.len() != ioc_len(request)
    {
        return Err(Errno::EINVAL);
    }
    let sock = nix::sys::socket::socket(
        if family == libc::AF_INET6 {
            nix::sys::socket::AddressFamily::Inet6
        } else {
            nix::sys::socket::AddressFamily::Inet
        },
        nix::sys::socket::SockType::Datagram,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    // SAFETY: `sock` is an open socket; `arg` is a live, writable buffer
    // of exactly the size the request number declares (checked above),
    // laid out as the request's structure (`ifreq`), and outlives the call.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), request as libc::c_ulong, arg.as_mut_ptr()) };
    if rc == -1 { Err(Errno::last()) } else { Ok(()) }
}

/// A `struct ifreq` request that carries no pointer (see `ifreq::vnet`) on
/// an `AF_INET` datagram socket, as ifconfig makes them.
pub fn ifreq_ioctl(request: u64, arg: &mut [u8; super::ifreq::IFREQ_LEN]) -> Result<(), Errno> {
    use super::ifreq::vnet::{
        SIOCGIFFLAGS, SIOCGIFMTU, SIOCIFCREATE2, SIOCIFDESTROY, SIOCSIFFLAGS, SIOCSIFLLADDR, SIOCSIFMTU, SIOCSIFVNET,
    };
    // SIOCIFCREATE2 reads `ifr_data` as cloner parameters: zero (none) here.
    if ![SIOCIFCREATE2, SIOCIFDESTROY, SIOCGIFFLAGS, SIOCSIFFLAGS, SIOCSIFLLADDR, SIOCSIFVNET, SIOCGIFMTU, SIOCSIFMTU]
        .contains(&request)
        || arg[16..24] != [0; 8] && request == SIOCIFCREATE2
    {
        return Err(Errno::EINVAL);
    }
    raw_ioctl(request, arg)
}

fn raw_ioctl(request: u64, arg: &mut [u8]) -> Result<(), Errno> {
    let sock = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet,
        nix::sys::socket::SockType::Datagram,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    if arg.len() != super::ifreq::ioc_len(request) {
        return Err(Errno::EINVAL);
    }
    // SAFETY: `sock` is open; `arg` is a live buffer of exactly the size
    // the request encodes, laid out as its structure; any pointer inside
    // it (set by the two callers below) points at a live local of theirs.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), request as libc::c_ulong, arg.as_mut_ptr()) };
    if rc == -1 { Err(Errno::last()) } else { Ok(()) }
}

/// Renames interface `old` to `new` (`SIOCSIFNAME`: `ifr_data` points at
/// the new name, NUL-terminated, sbin/ifconfig/ifconfig.c `setifname`).
pub fn if_rename(old: &str, new: &str) -> Result<(), String> {
    use super::ifreq::vnet::{SIOCSIFNAME, named};
    let mut name = [0u8; 16];
    if new.is_empty() || new.len() >= name.len() || new.bytes().any(|b| b == 0) {
        return Err(format!("{new:?} is not an interface name"));
    }
    name[..new.len()].copy_from_slice(new.as_bytes());
    let mut arg = named(old)?;
    arg[16..24].copy_from_slice(&(name.as_mut_ptr() as u64).to_le_bytes());
    raw_ioctl(SIOCSIFNAME, &mut arg).map_err(|e| format!("renaming {old} to {new}: {e}"))
}

/// Adds `member` to `bridge` (`SIOCSDRVSPEC` with `BRDGADD`: `ifd_data`
/// points at a `struct ifbreq`, sbin/ifconfig/ifbridge.c `setbridge_add`).
pub fn bridge_add(bridge: &str, member: &str) -> Result<(), String> {
    use super::ifreq::vnet::{BRDGADD, IFBREQ_LEN, SIOCSDRVSPEC, ifbreq, ifdrv};
    let mut req = ifbreq(member)?;
    let mut arg = ifdrv(bridge, BRDGADD, IFBREQ_LEN, req.as_mut_ptr() as u64)?;
    raw_ioctl(SIOCSDRVSPEC, &mut arg).map_err(|e| format!("adding {member} to {bridge}: {e}"))
}

/// procctl(2)'s `struct procctl_reaper_kill` (sys/procctl.h).
#[repr(C)]
struct ReaperKill {
    rk_sig: c_int,
    rk_flags: libc::c_uint,
    rk_subtree: libc::pid_t,
    rk_killed: libc::c_uint,
    rk_fpid: libc::pid_t,
    rk_pad0: [libc::c_uint; 15],
}

/// Makes this process the reaper of what it starts (`PROC_REAP_ACQUIRE`):
/// its descendants stay below it whatever process group or session they
/// make, and orphans come back to it.
pub fn reap_acquire() -> Result<(), String> {
    // SAFETY: PROC_REAP_ACQUIRE on this process takes no data.
    let rc = unsafe {
        libc::procctl(libc::P_PID, libc::getpid() as libc::id_t, libc::PROC_REAP_ACQUIRE, std::ptr::null_mut())
    };
    if rc != 0 {
        return Err(format!("procctl(PROC_REAP_ACQUIRE): {}", Errno::last()));
    }
    Ok(())
}

/// SIGKILL to every descendant of this reaper (`PROC_REAP_KILL`); how many.
pub fn reap_kill() -> u32 {
    let mut rk =
        ReaperKill { rk_sig: libc::SIGKILL, rk_flags: 0, rk_subtree: 0, rk_killed: 0, rk_fpid: -1, rk_pad0: [0; 15] };
    // SAFETY: PROC_REAP_KILL reads and writes one procctl_reaper_kill,
    // alive for the call.
    let rc = unsafe {
        libc::procctl(
            libc::P_PID,
            libc::getpid() as libc::id_t,
            libc::PROC_REAP_KILL,
            (&mut rk as *mut ReaperKill).cast(),
        )
    };
    if rc != 0 { 0 } else { rk.rk_killed }
}
