//! The catalogue itself: one entry per property, sorted by name, and the
//! look-ups into it.

use super::{Format, IpFamily, Kind, Listed, Prop};

const fn prop(name: &'static str, default: &'static str, kind: Kind, format: Format, listed: Listed) -> Prop {
    Prop { name, default, kind, format, listed }
}

use Format::*;
use Kind::*;
use Listed::*;

/// Every property, sorted by name.
pub static CATALOGUE: &[Prop] = &[
    prop("allow_chflags", "0", User, Bool01, Everywhere),
    prop("allow_mount", "0", User, Bool01, Everywhere),
    prop("allow_mount_devfs", "0", User, Bool01, Everywhere),
    prop("allow_mount_nullfs", "0", User, Bool01, Everywhere),
    prop("allow_mount_procfs", "0", User, Bool01, Everywhere),
    prop("allow_mount_tmpfs", "0", User, Bool01, Everywhere),
    prop("allow_mount_zfs", "0", User, Bool01, Everywhere),
    prop("allow_quotas", "0", User, Bool01, Everywhere),
    prop("allow_raw_sockets", "0", User, Bool01, Everywhere),
    prop("allow_set_hostname", "1", User, Bool01, Everywhere),
    prop("allow_socket_af", "0", User, Bool01, Everywhere),
    prop("allow_sysvipc", "0", User, Bool01, Everywhere),
    prop("available", "-", NativeReadOnly, Text, Everywhere),
    prop("boot", "off", User, OnOff, Everywhere),
    prop("bpf", "off", User, OnOff, Everywhere),
    prop("branch", "-", User, Text, JailOnly),
    prop("children_max", "0", User, Int(0, 100_000), Everywhere),
    prop("compression", "-", NativeSettable, Compression, Everywhere),
    prop("compressratio", "-", NativeReadOnly, Text, Everywhere),
    prop("coredumpsize", "off", User, Limit, Everywhere),
    prop("count", "1", User, Int(1, 10_000), Everywhere),
    prop("cpuset", "off", User, Cpuset, Everywhere),
    prop("cputime", "off", User, Limit, Everywhere),
    prop("datasize", "off", User, Limit, Everywhere),
    prop("dedup", "-", NativeSettable, Dedup, Everywhere),
    prop("defaultrouter", "none", User, Router(IpFamily::V4), Everywhere),
    prop("defaultrouter6", "none", User, Router(IpFamily::V6), Everywhere),
    prop("devfs_ruleset", "4", User, Int(0, 65_535), Everywhere),
    prop("dhcp", "off", User, OnOff, Everywhere),
    prop("enforce_statfs", "2", User, Int(0, 2), Everywhere),
    prop("exec_clean", "1", User, Bool01, Everywhere),
    prop("exec_fib", "0", User, Int(0, 65_535), Everywhere),
    prop("exec_jail_user", "root", User, Text, Everywhere),
    prop("exec_poststart", "/usr/bin/true", User, Text, Everywhere),
    prop("exec_poststop", "/usr/bin/true", User, Text, Everywhere),
    prop("exec_prestart", "/usr/bin/true", User, Text, Everywhere),
    prop("exec_prestop", "/usr/bin/true", User, Text, Everywhere),
    prop("exec_start", "/bin/sh /etc/rc", User, Text, Everywhere),
    prop("exec_stop", "/bin/sh /etc/rc.shutdown", User, Text, Everywhere),
    prop("exec_system_jail_user", "0", User, Bool01, Everywhere),
    prop("exec_system_user", "root", User, Text, Everywhere),
    prop("exec_timeout", "60", User, Int(0, 86_400), Everywhere),
    prop("ftpdir", "-", User, Text, JailOnly),
    prop("ftpfiles", "base.txz doc.txz lib32.txz src.txz", User, Text, Everywhere),
    prop("ftphost", "ftp.freebsd.org", User, Text, Everywhere),
    prop("ftplocaldir", "-", User, Text, JailOnly),
    prop("gitlocation", "https://github.com", User, Text, Everywhere),
    prop("hack88", "0", User, Bool01, Everywhere),
    prop("host_domainname", "none", User, Text, Everywhere),
    prop("host_hostname", "none", User, Text, Everywhere),
    prop("host_hostuuid", "none", UserReadOnly, Uuid, Everywhere),
    prop("hostid", "none", User, Text, Everywhere),
    prop("interfaces", "vnet0:bridge0,vnet1:bridge1", User, Interfaces, Everywhere),
    prop("ip4", "new", User, Text, Everywhere),
    prop("ip4_addr", "none", User, IpAddrs(IpFamily::V4), Everywhere),
    prop("ip4_autoend", "none", User, Text, Everywhere),
    prop("ip4_autostart", "none", User, Text, Everywhere),
    prop("ip4_autosubnet", "none", User, Text, Everywhere),
    prop("ip4_saddrsel", "1", User, Bool01, Everywhere),
    prop("ip6", "new", User, Text, Everywhere),
    prop("ip6_addr", "none", User, IpAddrs(IpFamily::V6), Everywhere),
    prop("ip6_saddrsel", "1", User, Bool01, Everywhere),
    prop("istemplate", "no", User, YesNo, Everywhere),
    prop("jail_zfs", "off", User, OnOff, Everywhere),
    prop("jail_zfs_dataset", "none", User, DatasetName, Everywhere),
    prop("jail_zfs_mountpoint", "none", User, Text, Everywhere),
    prop("last_started", "none", UserReadOnly, Text, Everywhere),
    prop("login_flags", "-f root", User, Text, Everywhere),
    prop("maxproc", "off", User, Limit, Everywhere),
    prop("memorylocked", "off", User, Limit, Everywhere),
    prop("memoryuse", "8G:log", User, Limit, Everywhere),
    prop("mount_devfs", "1", User, Bool01, Everywhere),
    prop("mount_fdescfs", "1", User, Bool01, Everywhere),
    prop("mount_linprocfs", "0", User, Bool01, Everywhere),
    prop("mount_procfs", "0", User, Bool01, Everywhere),
    prop("mountpoint", "-", NativeSettable, Mountpoint, Everywhere),
    prop("msgqqueued", "off", User, Limit, Everywhere),
    prop("msgqsize", "off", User, Limit, Everywhere),
    prop("nmsgq", "off", User, Limit, Everywhere),
    prop("notes", "none", User, Text, Everywhere),
    prop("nsemop", "off", User, Limit, Everywhere),
    prop("nshm", "off", User, Limit, Everywhere),
    prop("nthr", "off", User, Limit, Everywhere),
    prop("openfiles", "off", User, Limit, Everywhere),
    prop("origin", "-", NativeReadOnly, Text, Everywhere),
    prop("owner", "root", User, Text, Everywhere),
    prop("pcpu", "off", User, Limit, Everywhere),
    prop("pkglist", "none", User, Text, Everywhere),
    prop("priority", "99", User, Int(0, 99), Everywhere),
    prop("pseudoterminals", "off", User, Limit, Everywhere),
    prop("quota", "-", NativeSettable, SizeOrNone, Everywhere),
    prop("release", "none", UserReadOnly, Name, Everywhere),
    prop("reservation", "-", NativeSettable, SizeOrNone, Everywhere),
    prop("resolver", "none", User, Text, Everywhere),
    prop("rlimits", "off", User, OnOff, Everywhere),
    prop("securelevel", "2", User, Int(-1, 3), Everywhere),
    prop("shmsize", "off", User, Limit, Everywhere),
    prop("stacksize", "off", User, Limit, Everywhere),
    prop("start", "-", User, Text, JailOnly),
    prop("stop_timeout", "30", User, Int(0, 86_400), Everywhere),
    prop("swapuse", "off", User, Limit, Everywhere),
    prop("sync_stat", "-", User, Text, JailOnly),
    prop("sync_target", "none", User, Text, Everywhere),
    prop("sync_tgt_zpool", "none", User, Text, Everywhere),
    prop("tag", "none", User, Name, Everywhere),
    prop("template", "-", User, YesNo, JailOnly),
    prop("type", "basejail", UserReadOnly, Text, Everywhere),
    prop("used", "-", NativeReadOnly, Text, Everywhere),
    prop("vmemoryuse", "off", User, Limit, Everywhere),
    prop("vnet", "off", User, OnOff, Everywhere),
    prop("vnet0_mac", "none", User, Mac, Everywhere),
    prop("vnet1_mac", "none", User, Mac, Everywhere),
    prop("vnet2_mac", "none", User, Mac, Everywhere),
    prop("vnet3_mac", "none", User, Mac, Everywhere),
    prop("wallclock", "off", User, Limit, Everywhere),
];

/// Looks a property up by its API name.
pub fn lookup(name: &str) -> Option<&'static Prop> {
    position(name).map(|i| &CATALOGUE[i])
}

/// A property's place in [`CATALOGUE`] (which is sorted by name).
pub fn position(name: &str) -> Option<usize> {
    CATALOGUE.binary_search_by(|p| p.name.cmp(name)).ok()
}

/// The native ZFS properties the catalogue shows.
pub fn native_names() -> impl Iterator<Item = &'static str> {
    CATALOGUE.iter().filter(|p| p.kind.is_native()).map(|p| p.name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iocage::props::check_format;

    #[test]
    fn catalogue_is_sorted_unique_and_complete() {
        assert!(CATALOGUE.windows(2).all(|w| w[0].name < w[1].name), "sorted, no duplicates");
        assert_eq!(CATALOGUE.len(), 115);
        assert_eq!(CATALOGUE.iter().filter(|p| p.listed == Everywhere).count(), 109);
        assert_eq!(native_names().collect::<Vec<_>>().len(), 9);
        for p in CATALOGUE {
            assert!(lookup(p.name).is_some());
            // Every built-in default of a user property fits its own format.
            if !p.kind.is_native() && p.default != "-" && p.default != "none" {
                assert_eq!(check_format(p.format, p.default), Ok(()), "{}", p.name);
            }
        }
    }

    #[test]
    fn kinds() {
        assert_eq!(lookup("quota").unwrap().kind, NativeSettable);
        assert_eq!(lookup("used").unwrap().kind, NativeReadOnly);
        assert_eq!(lookup("release").unwrap().kind, UserReadOnly);
        assert_eq!(lookup("vnet").unwrap().zfs_name(), "org.freebsd.iocage:vnet");
        assert_eq!(lookup("quota").unwrap().zfs_name(), "quota");
        assert!(lookup("nosuch").is_none());
    }
}
