//! What a Linux jail's processes may do: the capabilities they keep, the
//! system calls they may make (a seccomp filter), and the mapping from
//! the jail's FreeBSD-style settings ([`JailSettings`]) to those, with
//! what cannot be honoured refused.
//!
//! # Rules for everything that runs as root near a jail
//!
//! The helpers (`jail-init`, `jail-exec`) are root with every capability
//! and sit, for a moment, inside namespaces whose files the jail's root
//! controls. They follow these rules:
//!
//! 1. Decide before entering. The capability set is computed from the
//!    kernel (`PR_CAPBSET_READ` until `EINVAL`, never a file such as
//!    `/proc/sys/kernel/cap_last_cap`, which inside the jail may be the
//!    jail's own), and the seccomp filter is compiled, before `setns(2)`
//!    or `pivot_root(2)`.
//! 2. Drop everything on the way in: the bounding set is cut to the
//!    jail's capabilities, the inheritable and ambient sets are cleared,
//!    the effective and permitted sets cut, `PR_SET_NO_NEW_PRIVS` set and
//!    the seccomp filter installed before the jail's first program runs.
//! 3. Read nothing from the jail that can block or grow: jail files are
//!    opened with `O_NOFOLLOW|O_NONBLOCK`, must be regular files
//!    (`fstat(2)`), and are read up to a cap
//!    ([`crate::runtime::passwd::read_jail_file`]).
//! 4. Arm the timeout before the first step that can block.
//! 5. Check that the process is single-threaded before entering, from the
//!    host's `/proc`, and fail closed.
//! 6. A forked child leaves with `_exit(2)`, never through the parent's
//!    exit handlers and buffers.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule, TargetArch,
};
use serde::{Deserialize, Serialize};

use crate::runtime::{IpMode, JailSpec, Network};

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
    pub const SYS_ADMIN: u32 = 21;
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

/// How a jail is confined, decided from its settings by [`confinement`]
/// when it starts, recorded with it, and applied by every helper that
/// runs a program in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confinement {
    /// The capabilities the jail's processes keep, sorted.
    pub capabilities: Vec<u32>,
    /// Deny SysV IPC (`allow_sysvipc=0`).
    pub deny_sysvipc: bool,
    /// Deny mlock(2) and friends (`allow_mlock=0`).
    pub deny_mlock: bool,
    /// Only local, IPv4, IPv6 and routing (netlink) sockets
    /// (`allow_socket_af=0`).
    pub restrict_socket_af: bool,
    /// A network namespace of its own: `vnet=on`, or a shared-IP jail
    /// that is not `inherit` (`linux::net` puts its interfaces there).
    pub own_network: bool,
}

impl Confinement {
    /// What the jail's init keeps: nothing.
    pub fn for_init(&self) -> Confinement {
        Confinement { capabilities: Vec::new(), ..self.clone() }
    }
}

/// The permission names (jail(8)'s, less `allow.`) and what Linux does
/// with each when granted (`Ok(Some(cap))`: that capability; `Ok(None)`:
/// a seccomp relaxation) or why it cannot (`Err`).
fn grant(name: &str) -> Result<Option<u32>, &'static str> {
    match name {
        "raw_sockets" => Ok(Some(cap::NET_RAW)),
        "chflags" => Ok(Some(cap::LINUX_IMMUTABLE)),
        "mlock" => Ok(Some(cap::IPC_LOCK)),
        "sysvipc" | "socket_af" => Ok(None),
        // iocage's default; see [`confinement`].
        "set_hostname" => Ok(None),
        "quotas" => Err("quotactl(2) needs CAP_SYS_ADMIN, which would let the jail's root out"),
        n if n == "mount" || n.starts_with("mount.") => {
            Err("mounting needs CAP_SYS_ADMIN, which would let the jail's root out; use the jail's fstab")
        }
        _ => Err("the Linux runtime has no such permission"),
    }
}

/// The property name of a permission (`mount.zfs` -> `allow_mount_zfs`).
fn prop_of(allow: &str) -> String {
    format!("allow_{}", allow.replace('.', "_"))
}

/// The jail's confinement, or every setting the Linux runtime cannot
/// honour, each with the reason (the runtime's `check` refuses the start).
///
/// - `allow_*`: a refused permission is enforced (the capability is not
///   kept, the seccomp filter denies the calls); a granted one is mapped
///   (`raw_sockets`: CAP_NET_RAW, `chflags`: CAP_LINUX_IMMUTABLE, `mlock`:
///   CAP_IPC_LOCK, `sysvipc`, `socket_af`: the calls allowed) or refused
///   (`mount*`, `quotas`: they need CAP_SYS_ADMIN). The exception is
///   `allow_set_hostname=1`, iocage's default, which every jail stores:
///   the jail has a hostname of its own (a UTS namespace, set from
///   `host_hostname`) but its root cannot change it (that needs
///   CAP_SYS_ADMIN); refusing it would refuse every jail, so it is
///   accepted and documented as not granted.
/// - `securelevel`: every level is accepted: the jail's root holds none
///   of the capabilities a securelevel takes away (raw disks, immutable
///   flags, modules, the clock, firewall).
/// - `enforce_statfs`: the jail sees only its own mounts, below its root
///   (2, iocage's default); 0 and 1 show more, so the jail is stricter
///   than asked.
/// - `children_max` above 0: refused (a jail cannot create namespaces).
/// - `devfs_ruleset`: the jail's `/dev` is a fixed set of harmless nodes,
///   a subset of ruleset 4 (`devfsrules_jail`); any other ruleset is
///   refused.
/// - `ip4`/`ip6` without VNET: `inherit` for both shares the host's
///   network; otherwise the jail gets a network namespace of its own,
///   with loopback and its shared-IP addresses on ipvlan links of their
///   host interfaces (`linux::net`), so it can use no other host address,
///   as on FreeBSD; an address without its interface, or a mix of
///   `inherit` and the others, is refused.
/// - `exec_fib` other than 0: refused.
pub fn confinement(spec: &JailSpec) -> Result<Confinement, Vec<String>> {
    let s = &spec.jail;
    let mut refused = Vec::new();
    let mut caps: Vec<u32> = BASE_CAPABILITIES.to_vec();
    let granted = |name: &str| s.allow.iter().any(|(n, g)| n == name && *g);
    for (name, on) in &s.allow {
        if !*on {
            continue;
        }
        match grant(name) {
            Ok(Some(c)) => caps.push(c),
            Ok(None) => {}
            Err(why) => refused.push(format!("{}=1: {why}", prop_of(name))),
        }
    }
    caps.sort_unstable();
    caps.dedup();
    if let Some(n) = s.children_max.filter(|n| *n > 0) {
        refused.push(format!("children_max={n}: a Linux jail cannot create jails (namespaces)"));
    }
    if let Some(n) = s.enforce_statfs.filter(|n| !(0..=2).contains(n)) {
        refused.push(format!("enforce_statfs={n}: expected 0, 1 or 2"));
    }
    if s.devfs_ruleset != 4 {
        refused.push(format!(
            "devfs_ruleset={}: a Linux jail's /dev has only null, zero, full, random, urandom and tty (ruleset 4)",
            s.devfs_ruleset
        ));
    }
    if s.exec_fib != 0 {
        refused.push(format!("exec_fib={}: the Linux runtime has no routing tables per jail", s.exec_fib));
    }
    let own_network = spec.vnet() || {
        let modes = [(&s.ip4, "ip4"), (&s.ip6, "ip6")];
        let inherit = modes.iter().filter(|(m, _)| **m == IpMode::Inherit).count();
        for (m, name) in modes {
            if let IpMode::Invalid(v) = m {
                refused.push(format!("{name}={v:?}: expected new, inherit or disable"));
            }
        }
        if let Network::Shared { addresses } = &spec.network {
            let bare: Vec<String> =
                addresses.iter().filter(|a| a.interface.is_none()).map(|a| a.addr.to_string()).collect();
            if !bare.is_empty() {
                refused.push(format!(
                    "ip4_addr/ip6_addr {}: a Linux jail's address must name its host interface \
                     (iface|address, or DEFAULT|address)",
                    bare.join(",")
                ));
            }
        }
        if inherit == 1 {
            refused.push("ip4 and ip6: a Linux jail shares the host's network for both or for neither".into());
        }
        if inherit == 2 && (!s.ip4_saddrsel || !s.ip6_saddrsel) {
            refused.push("ip4_saddrsel/ip6_saddrsel=0: the host's network selects source addresses itself".into());
        }
        inherit == 0
    };
    if !refused.is_empty() {
        return Err(refused);
    }
    Ok(Confinement {
        capabilities: caps,
        deny_sysvipc: !granted("sysvipc"),
        deny_mlock: !granted("mlock"),
        restrict_socket_af: !granted("socket_af"),
        own_network,
    })
}

// ---------------------------------------------------------------------
// Capabilities

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

// ---------------------------------------------------------------------
// Seccomp

/// System calls every jail is denied (EPERM), as Docker's default profile
/// denies them to a container without extra capabilities: namespaces,
/// mounts, the kernel keyring, BPF, perf, modules, kexec, reboot, file
/// handles, swap, tracing, the clock, accounting, quotas, io_uring.
fn denied_always() -> Vec<i64> {
    let mut v = vec![
        libc::SYS_acct,
        libc::SYS_add_key,
        libc::SYS_bpf,
        libc::SYS_clock_adjtime,
        libc::SYS_clock_settime,
        libc::SYS_delete_module,
        libc::SYS_finit_module,
        libc::SYS_fsconfig,
        libc::SYS_fsmount,
        libc::SYS_fsopen,
        libc::SYS_fspick,
        libc::SYS_init_module,
        libc::SYS_io_uring_enter,
        libc::SYS_io_uring_register,
        libc::SYS_io_uring_setup,
        libc::SYS_kcmp,
        libc::SYS_kexec_file_load,
        libc::SYS_kexec_load,
        libc::SYS_keyctl,
        libc::SYS_lookup_dcookie,
        libc::SYS_mount,
        libc::SYS_mount_setattr,
        libc::SYS_move_mount,
        libc::SYS_name_to_handle_at,
        libc::SYS_open_by_handle_at,
        libc::SYS_open_tree,
        libc::SYS_perf_event_open,
        libc::SYS_pidfd_getfd,
        libc::SYS_pivot_root,
        libc::SYS_process_vm_readv,
        libc::SYS_process_vm_writev,
        libc::SYS_ptrace,
        libc::SYS_quotactl,
        libc::SYS_reboot,
        libc::SYS_request_key,
        libc::SYS_setns,
        libc::SYS_settimeofday,
        libc::SYS_swapoff,
        libc::SYS_swapon,
        libc::SYS_syslog,
        libc::SYS_umount2,
        libc::SYS_unshare,
        libc::SYS_userfaultfd,
    ];
    #[cfg(target_arch = "x86_64")]
    v.extend([
        libc::SYS_ioperm,
        libc::SYS_iopl,
        libc::SYS_modify_ldt,
        libc::SYS_nfsservctl,
        libc::SYS__sysctl,
        libc::SYS_sysfs,
        libc::SYS_uselib,
        libc::SYS_ustat,
    ]);
    v
}

const SYSVIPC: [i64; 12] = [
    libc::SYS_msgctl,
    libc::SYS_msgget,
    libc::SYS_msgrcv,
    libc::SYS_msgsnd,
    libc::SYS_semctl,
    libc::SYS_semget,
    libc::SYS_semop,
    libc::SYS_semtimedop,
    libc::SYS_shmat,
    libc::SYS_shmctl,
    libc::SYS_shmdt,
    libc::SYS_shmget,
];

const MLOCK: [i64; 3] = [libc::SYS_mlock, libc::SYS_mlock2, libc::SYS_mlockall];

/// Socket families a jail without `allow_socket_af` may open (FreeBSD's:
/// local, IPv4, IPv6 and the routing socket, here netlink).
pub const SOCKET_FAMILIES: [i32; 4] = [libc::AF_UNIX, libc::AF_INET, libc::AF_INET6, libc::AF_NETLINK];

/// clone(2) flags that make namespaces (CLONE_NEWTIME shares its bit with
/// the exit signal in clone(2) and is refused by the kernel there).
const NAMESPACE_FLAGS: [i32; 7] = [
    libc::CLONE_NEWNS,
    libc::CLONE_NEWUTS,
    libc::CLONE_NEWIPC,
    libc::CLONE_NEWUSER,
    libc::CLONE_NEWPID,
    libc::CLONE_NEWNET,
    libc::CLONE_NEWCGROUP,
];

/// The architecture the filters are made for; other architectures cannot
/// run jails (the runtime refuses them rather than run unfiltered).
pub fn target_arch() -> Result<TargetArch, String> {
    TargetArch::try_from(std::env::consts::ARCH)
        .map_err(|_| format!("no seccomp filter for {}: jails cannot be confined here", std::env::consts::ARCH))
}

fn cond(arg: u8, op: SeccompCmpOp, value: u64) -> Result<SeccompCondition, String> {
    SeccompCondition::new(arg, SeccompCmpArgLen::Dword, op, value).map_err(|e| format!("seccomp condition: {e}"))
}

fn rule(conds: Vec<SeccompCondition>) -> Result<SeccompRule, String> {
    SeccompRule::new(conds).map_err(|e| format!("seccomp rule: {e}"))
}

/// The deny list of `c` as a map from system call to the rules that deny
/// it (an empty list: always).
pub fn denied(c: &Confinement) -> Result<BTreeMap<i64, Vec<SeccompRule>>, String> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for nr in denied_always() {
        rules.insert(nr, Vec::new());
    }
    if c.deny_sysvipc {
        for nr in SYSVIPC {
            rules.insert(nr, Vec::new());
        }
    }
    if c.deny_mlock {
        for nr in MLOCK {
            rules.insert(nr, Vec::new());
        }
    }
    // clone(2) with any namespace flag.
    let clone = NAMESPACE_FLAGS
        .iter()
        .map(|&f| rule(vec![cond(0, SeccompCmpOp::MaskedEq(f as u32 as u64), f as u32 as u64)?]))
        .collect::<Result<Vec<_>, String>>()?;
    rules.insert(libc::SYS_clone, clone);
    if c.restrict_socket_af {
        let others = SOCKET_FAMILIES.iter().map(|&f| cond(0, SeccompCmpOp::Ne, f as u64)).collect::<Result<_, _>>()?;
        rules.insert(libc::SYS_socket, vec![rule(others)?]);
    }
    Ok(rules)
}

/// The filters to install, in order: the deny list (EPERM), clone3(2)
/// answered ENOSYS (its flags are in memory a filter cannot read; the C
/// library then falls back to clone(2), which is filtered), and on x86_64
/// a guard against x32 system calls (numbers with bit 30 set, which pass
/// the architecture check).
pub fn filters(c: &Confinement) -> Result<Vec<BpfProgram>, String> {
    let arch = target_arch()?;
    let build = |rules, errno: i32| -> Result<BpfProgram, String> {
        let f = SeccompFilter::new(rules, SeccompAction::Allow, SeccompAction::Errno(errno as u32), arch)
            .map_err(|e| format!("seccomp filter: {e}"))?;
        BpfProgram::try_from(f).map_err(|e| format!("seccomp filter: {e}"))
    };
    let mut out = vec![build(denied(c)?, libc::EPERM)?];
    out.push(build(BTreeMap::from([(libc::SYS_clone3, Vec::new())]), libc::ENOSYS)?);
    #[cfg(target_arch = "x86_64")]
    out.push(x32_guard());
    Ok(out)
}

/// `if (nr >= 0x40000000) return ERRNO(EPERM); return ALLOW;`
#[cfg(target_arch = "x86_64")]
fn x32_guard() -> BpfProgram {
    use seccompiler::sock_filter;
    const LD_W_ABS: u16 = 0x20;
    const JGE_K: u16 = 0x35;
    const RET_K: u16 = 0x06;
    const RET_ERRNO: u32 = 0x0005_0000;
    const RET_ALLOW: u32 = 0x7fff_0000;
    let ins = |code, jt, jf, k| sock_filter { code, jt, jf, k };
    vec![
        ins(LD_W_ABS, 0, 0, 0), // seccomp_data.nr
        ins(JGE_K, 0, 1, 0x4000_0000),
        ins(RET_K, 0, 0, RET_ERRNO | libc::EPERM as u32),
        ins(RET_K, 0, 0, RET_ALLOW),
    ]
}

/// Installs compiled filters (sets `PR_SET_NO_NEW_PRIVS` first).
pub fn install(filters: &[BpfProgram]) -> Result<(), String> {
    for f in filters {
        seccompiler::apply_filter(f).map_err(|e| format!("installing the seccomp filter: {e}"))?;
    }
    Ok(())
}

/// Everything [`apply`] needs, decided and compiled before entering.
pub struct Prepared {
    keep: Vec<u32>,
    drop: Vec<u32>,
    filters: Vec<BpfProgram>,
}

/// Decides and compiles (rule 1): call before entering the jail.
pub fn prepare(c: &Confinement) -> Result<Prepared, String> {
    let last = last_cap()?;
    Ok(Prepared { keep: c.capabilities.clone(), drop: to_drop(&c.capabilities, last), filters: filters(c)? })
}

/// Applies what [`prepare`] decided, in the process that will exec the
/// jail's program: capabilities, no new privileges, seccomp.
/// `before_filter` runs between the capability drop and the filter
/// (setuid and friends, which the filter would allow anyway).
pub fn apply(p: &Prepared, before_filter: impl FnOnce() -> Result<(), String>) -> Result<(), String> {
    drop_capabilities(&p.keep, &p.drop)?;
    before_filter()?;
    no_new_privs()?;
    install(&p.filters)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> JailSpec {
        let allow = [
            "chflags",
            "mount",
            "mount.devfs",
            "mount.nullfs",
            "mount.procfs",
            "mount.tmpfs",
            "mount.zfs",
            "quotas",
            "raw_sockets",
            "socket_af",
            "sysvipc",
        ]
        .into_iter()
        .map(|n| (n.to_string(), false))
        .chain([("set_hostname".to_string(), true)])
        .collect();
        JailSpec::for_tests(allow, Vec::new())
    }

    fn set(s: &mut JailSpec, name: &str, on: bool) {
        s.jail.allow.iter_mut().find(|(n, _)| n == name).unwrap().1 = on;
    }

    #[test]
    fn iocage_defaults_map_to_the_strictest_confinement() {
        let c = confinement(&spec()).unwrap();
        assert_eq!(c.capabilities, BASE_CAPABILITIES.to_vec());
        assert!(!c.capabilities.contains(&cap::SYS_ADMIN) && !c.capabilities.contains(&cap::NET_RAW));
        assert!(!c.capabilities.contains(&cap::MKNOD));
        assert!(c.deny_sysvipc && c.deny_mlock && c.restrict_socket_af);
        // ip4=new, ip6=new and no address: no host address at all.
        assert!(c.own_network);
        assert!(c.for_init().capabilities.is_empty());
    }

    #[test]
    fn permissions_are_mapped_or_refused_by_name() {
        let mut s = spec();
        set(&mut s, "raw_sockets", true);
        set(&mut s, "sysvipc", true);
        let c = confinement(&s).unwrap();
        assert!(c.capabilities.contains(&cap::NET_RAW));
        assert!(!c.deny_sysvipc);
        for p in ["mount", "mount.nullfs", "quotas"] {
            let mut s = spec();
            set(&mut s, p, true);
            let err = confinement(&s).unwrap_err().join("; ");
            assert!(err.contains(&prop_of(p)) && err.contains("CAP_SYS_ADMIN"), "{err}");
        }
        let mut s = spec();
        s.jail.allow.push(("vmm".into(), true));
        assert!(confinement(&s).unwrap_err()[0].contains("allow_vmm=1: the Linux runtime has no such"));
        s.jail.allow.last_mut().unwrap().1 = false;
        assert!(confinement(&s).is_ok(), "an unknown permission refused is enforced");
    }

    #[test]
    fn parameters_linux_cannot_honour_are_refused() {
        let refused = |f: &dyn Fn(&mut JailSpec)| {
            let mut s = spec();
            f(&mut s);
            confinement(&s).unwrap_err().join("; ")
        };
        assert!(refused(&|s| s.jail.children_max = Some(3)).contains("children_max=3"));
        assert!(refused(&|s| s.jail.devfs_ruleset = 0).contains("devfs_ruleset=0"));
        assert!(refused(&|s| s.jail.exec_fib = 1).contains("exec_fib=1"));
        // for_tests gives its addresses no interface: Linux needs one.
        let bare = JailSpec::for_tests(Vec::new(), vec!["10.0.0.2".parse().unwrap()]);
        assert!(confinement(&bare).unwrap_err().join("; ").contains("10.0.0.2: a Linux jail's address must name"));
        assert!(refused(&|s| s.jail.ip4 = IpMode::Inherit).contains("both or for neither"));
        assert!(refused(&|s| s.jail.ip6 = IpMode::parse("bogus")).contains("ip6=\"bogus\""));
        for level in [-1, 0, 1, 2, 3] {
            let mut s = spec();
            s.jail.securelevel = Some(level);
            s.jail.enforce_statfs = Some(level.clamp(0, 2));
            assert!(confinement(&s).is_ok(), "securelevel {level}");
        }
        let mut s = spec();
        s.jail.ip4 = IpMode::Inherit;
        s.jail.ip6 = IpMode::Inherit;
        assert!(!confinement(&s).unwrap().own_network, "inherit: the host's network");
        s.network = Network::Vnet(crate::runtime::net::Vnet {
            interfaces: Vec::new(),
            router4: None,
            router6: None,
            bridge_uplink: None,
        });
        assert!(confinement(&s).unwrap().own_network);
    }

    #[test]
    fn the_filter_denies_what_docker_denies() {
        let c = confinement(&spec()).unwrap();
        let d = denied(&c).unwrap();
        for nr in [
            libc::SYS_mount,
            libc::SYS_umount2,
            libc::SYS_unshare,
            libc::SYS_setns,
            libc::SYS_keyctl,
            libc::SYS_add_key,
            libc::SYS_request_key,
            libc::SYS_bpf,
            libc::SYS_perf_event_open,
            libc::SYS_init_module,
            libc::SYS_finit_module,
            libc::SYS_delete_module,
            libc::SYS_kexec_load,
            libc::SYS_kexec_file_load,
            libc::SYS_reboot,
            libc::SYS_open_by_handle_at,
            libc::SYS_swapon,
            libc::SYS_swapoff,
            libc::SYS_ptrace,
            libc::SYS_shmget,
            libc::SYS_mlock,
        ] {
            assert_eq!(d.get(&nr).map(Vec::len), Some(0), "syscall {nr} is denied outright");
        }
        assert_eq!(d[&libc::SYS_clone].len(), NAMESPACE_FLAGS.len(), "clone with a namespace flag");
        assert_eq!(d[&libc::SYS_socket].len(), 1);
        for allowed in [libc::SYS_read, libc::SYS_execve, libc::SYS_setuid, libc::SYS_chroot, libc::SYS_kill] {
            assert!(!d.contains_key(&allowed), "{allowed}");
        }
        let relaxed = Confinement { deny_sysvipc: false, deny_mlock: false, restrict_socket_af: false, ..c.clone() };
        let d = denied(&relaxed).unwrap();
        assert!(!d.contains_key(&libc::SYS_shmget) && !d.contains_key(&libc::SYS_mlock));
        assert!(!d.contains_key(&libc::SYS_socket));
        assert_eq!(filters(&c).unwrap().len(), if cfg!(target_arch = "x86_64") { 3 } else { 2 });
    }

    #[test]
    fn capabilities_come_from_the_kernel_not_from_a_file() {
        let last = last_cap().unwrap();
        assert!(last >= 36, "this kernel knows at least CAP_BLOCK_SUSPEND: {last}");
        let drop = to_drop(&BASE_CAPABILITIES, last);
        assert!(drop.contains(&cap::SYS_ADMIN) && drop.contains(&last));
        assert!(!drop.contains(&cap::CHOWN));
        assert_eq!(mask(&[0, 31, 32, 40]), [1 | 1 << 31, 1 | 1 << 8]);
    }

    /// The compiled filter, installed in a child before exec, denies what
    /// it lists (this host lets the test's process make namespaces
    /// without it: checked first).
    #[test]
    fn the_installed_filter_denies_namespaces_and_mounts() {
        use std::os::unix::process::CommandExt;
        let run = |filters: Option<Vec<BpfProgram>>, script: &str| {
            let mut cmd = std::process::Command::new("/bin/sh");
            cmd.args(["-c", script]);
            if let Some(f) = filters {
                // SAFETY: the hook only makes system calls (prctl, seccomp)
                // and allocates nothing on success.
                unsafe {
                    cmd.pre_exec(move || install(&f).map_err(std::io::Error::other));
                }
            }
            cmd.status().unwrap().success()
        };
        if !run(None, "unshare -U true && unshare -U -m true") {
            eprintln!("skipped: this host does not allow namespaces anyway");
            return;
        }
        let c = confinement(&spec()).unwrap();
        assert!(!run(Some(filters(&c).unwrap()), "unshare -U true"), "a user namespace");
        assert!(!run(Some(filters(&c).unwrap()), "unshare -U -m true"), "a mount namespace");
        assert!(run(Some(filters(&c).unwrap()), "echo fine > /dev/null; true"), "ordinary programs run");
    }
}
