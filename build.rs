//! Passes the OpenZFS version the bindings were generated from (published
//! by iocaged-sys through its `links = "zfs"` metadata) to the binary, for
//! `iocaged --version`.

fn main() {
    let version = std::env::var("DEP_ZFS_VERSION").unwrap_or_else(|_| "unknown".into());
    println!("cargo::rustc-env=IOCAGED_OPENZFS_VERSION={version}");
    println!("cargo::rerun-if-env-changed=DEP_ZFS_VERSION");
}
