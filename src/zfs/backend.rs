//! [`Backend`]: what the daemon asks of ZFS, as one trait.
//!
//! The owner thread ([`super::Zfs`]) runs every job against a
//! `&dyn Backend`. In the daemon that is [`Libzfs`], always: the binary
//! holds no other. Host tests give the owner thread an in-memory pool
//! of their own (`tests/host/fake_zfs/`), so that the iocage layer's actions
//! run, reply and undo on the host in seconds; the guest suite keeps the
//! real module's truth.
//!
//! Each method is documented where [`Libzfs`] implements it; the trait
//! only forwards. Names are dataset names (`pool/a/b`, `pool/a@snap`).

use std::collections::BTreeMap;

use super::error::Result;
use super::libzfs::{DatasetProps, HistoryTail, Libzfs, NativeValue, PoolInfo, UserProp, Versions};

/// ZFS as the service uses it. See the module doc; [`Libzfs`] has each
/// method's contract.
pub trait Backend {
    fn versions(&self) -> Versions;
    fn exists(&self, name: &str) -> bool;
    fn children(&self, parent: &str) -> Result<Vec<String>>;
    fn descendants(&self, name: &str) -> Result<Vec<String>>;
    fn snapshots(&self, name: &str) -> Result<Vec<String>>;

    fn pools(&self) -> Result<Vec<PoolInfo>>;
    fn forget_pools(&self);
    fn set_pool_prop(&self, pool: &str, prop: &str, value: &str) -> Result<()>;
    fn history_end(&self, pool: &str, from: u64) -> Result<u64>;
    fn history_since(&self, pool: &str, from: u64, names: bool) -> Result<HistoryTail>;

    fn native_props(&self, name: &str, props: &[&str]) -> Result<BTreeMap<String, NativeValue>>;
    fn user_props(&self, name: &str) -> Result<BTreeMap<String, UserProp>>;
    fn dataset_props(&self, name: &str, native: &[&str]) -> Result<DatasetProps>;
    fn scan_children(&self, parent: &str, native: &[&str]) -> Result<Vec<DatasetProps>>;
    fn set_props(&self, name: &str, props: &[(&str, &str)]) -> Result<()>;
    fn inherit(&self, name: &str, prop: &str) -> Result<()>;

    fn create_filesystem(&self, name: &str, props: &[(&str, &str)]) -> Result<()>;
    fn snapshot(&self, snapshot: &str, props: &[(&str, &str)]) -> Result<()>;
    fn snapshot_recursive(&self, snapshot: &str) -> Result<()>;
    fn clone_snapshot(&self, snapshot: &str, target: &str, props: &[(&str, &str)]) -> Result<()>;
    fn mount(&self, name: &str) -> Result<()>;
    fn unmount(&self, name: &str) -> Result<()>;
    fn is_mounted(&self, name: &str) -> Result<bool>;
    fn rename(&self, from: &str, to: &str) -> Result<()>;
    fn destroy(&self, name: &str) -> Result<()>;
    fn destroy_recursive(&self, name: &str) -> Result<()>;
    fn destroy_together(&self, names: &[String]) -> Result<()>;
    fn outside_dependents(&self, name: &str) -> Result<Vec<String>>;
    fn outside_clones(&self, name: &str) -> Result<Vec<(String, String)>>;
}

/// Forwards each method to `Libzfs`'s own (the inherent method wins over
/// the trait's in `Libzfs::$name`, so this does not recurse).
macro_rules! forward {
    ($($name:ident($($arg:ident: $ty:ty),*) -> $ret:ty;)*) => {
        // `forget_pools` returns nothing: written `-> ()` to fit the list.
        #[allow(clippy::unused_unit)]
        // Should an inherent method go, its forward would call itself.
        #[deny(unconditional_recursion)]
        impl Backend for Libzfs {
            $(fn $name(&self, $($arg: $ty),*) -> $ret { Libzfs::$name(self, $($arg),*) })*
        }
    };
}

forward! {
    versions() -> Versions;
    exists(name: &str) -> bool;
    children(parent: &str) -> Result<Vec<String>>;
    descendants(name: &str) -> Result<Vec<String>>;
    snapshots(name: &str) -> Result<Vec<String>>;
    pools() -> Result<Vec<PoolInfo>>;
    forget_pools() -> ();
    set_pool_prop(pool: &str, prop: &str, value: &str) -> Result<()>;
    history_end(pool: &str, from: u64) -> Result<u64>;
    history_since(pool: &str, from: u64, names: bool) -> Result<HistoryTail>;
    native_props(name: &str, props: &[&str]) -> Result<BTreeMap<String, NativeValue>>;
    user_props(name: &str) -> Result<BTreeMap<String, UserProp>>;
    dataset_props(name: &str, native: &[&str]) -> Result<DatasetProps>;
    scan_children(parent: &str, native: &[&str]) -> Result<Vec<DatasetProps>>;
    set_props(name: &str, props: &[(&str, &str)]) -> Result<()>;
    inherit(name: &str, prop: &str) -> Result<()>;
    create_filesystem(name: &str, props: &[(&str, &str)]) -> Result<()>;
    snapshot(snapshot: &str, props: &[(&str, &str)]) -> Result<()>;
    snapshot_recursive(snapshot: &str) -> Result<()>;
    clone_snapshot(snapshot: &str, target: &str, props: &[(&str, &str)]) -> Result<()>;
    mount(name: &str) -> Result<()>;
    unmount(name: &str) -> Result<()>;
    is_mounted(name: &str) -> Result<bool>;
    rename(from: &str, to: &str) -> Result<()>;
    destroy(name: &str) -> Result<()>;
    destroy_recursive(name: &str) -> Result<()>;
    destroy_together(names: &[String]) -> Result<()>;
    outside_dependents(name: &str) -> Result<Vec<String>>;
    outside_clones(name: &str) -> Result<Vec<(String, String)>>;
}
