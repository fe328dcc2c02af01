//! The `iocaged` command line.

fn main() {
    println!("iocaged {} (OpenZFS {})", env!("CARGO_PKG_VERSION"), iocaged::zfs::OPENZFS_BUILD_VERSION);
}
