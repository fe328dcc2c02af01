//! The seccomp filter: the system calls a jail is denied, always or by
//! its settings, compiled for this architecture and installed.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule, TargetArch,
};

use super::Confinement;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::linux::confine::{confinement, tests::spec};

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
