//! Passes what iocaged-sys learnt about the OpenZFS headers (published
//! through its `links = "zfs"` metadata) to this crate: the version, for
//! `iocaged --version`, and `cfg(zfs_2_2)` where the libzfs API changed.

fn main() {
    println!("cargo::rerun-if-env-changed=DEP_ZFS_VERSION");
    println!("cargo::rustc-check-cfg=cfg(zfs_2_2)");
    let version = std::env::var("DEP_ZFS_VERSION").unwrap_or_else(|_| "unknown".into());
    println!("cargo::rustc-env=IOCAGED_OPENZFS_VERSION={version}");
    let mut parts = version.split(['.', '-']).map(|p| p.parse::<u32>().unwrap_or(0));
    if (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) >= (2, 2) {
        println!("cargo::rustc-cfg=zfs_2_2");
    }
}
