//! Passes what iocaged-sys learnt about the OpenZFS headers (published
//! through its `links = "zfs"` metadata) to this crate: the version, for
//! `iocaged --version`, and `cfg(zfs_2_2)` where the libzfs API changed.
//! Also the build's id (`IOCAGED_BUILD_ID`): the version and a hash of the
//! sources, which the daemon and its helper binary (`iocaged-jail`) compare,
//! so that a helper of another build is never handed a request it may read
//! differently.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};

/// Every file under `dir`, recursively.
fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files(&path, out);
        } else {
            out.push(path);
        }
    }
}

fn build_id() -> String {
    let mut sources = Vec::new();
    files(Path::new("src"), &mut sources);
    sources.push(PathBuf::from("Cargo.lock"));
    sources.sort();
    // SipHash with fixed keys: the same sources give the same id.
    let mut h = DefaultHasher::new();
    for path in &sources {
        path.hash(&mut h);
        std::fs::read(path).unwrap_or_default().hash(&mut h);
    }
    format!("{}-{:016x}", std::env::var("CARGO_PKG_VERSION").unwrap_or_default(), h.finish())
}

fn main() {
    println!("cargo::rerun-if-changed=src");
    if Path::new("Cargo.lock").exists() {
        println!("cargo::rerun-if-changed=Cargo.lock");
    }
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rustc-env=IOCAGED_BUILD_ID={}", build_id());
    println!("cargo::rerun-if-env-changed=DEP_ZFS_VERSION");
    println!("cargo::rustc-check-cfg=cfg(zfs_2_2)");
    let version = std::env::var("DEP_ZFS_VERSION").unwrap_or_else(|_| "unknown".into());
    println!("cargo::rustc-env=IOCAGED_OPENZFS_VERSION={version}");
    let mut parts = version.split(['.', '-']).map(|p| p.parse::<u32>().unwrap_or(0));
    if (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) >= (2, 2) {
        println!("cargo::rustc-cfg=zfs_2_2");
    }
}
