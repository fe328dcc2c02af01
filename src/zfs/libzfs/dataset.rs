//! Datasets: create, snapshot, clone, mount and unmount, rename, and
//! destroy, alone or as a tree (refused before anything is destroyed when a
//! clone outside depends on it).

use std::ffi::CStr;
use std::ffi::c_void;

use iocaged_sys as sys;

use super::super::error::{ErrorKind, Result, ZfsError};
use std::ptr;

use super::super::nvlist::NvList;
use super::{ANY, Dataset, FS, Libzfs, cstring};

impl Libzfs {
    /// Creates a filesystem with the given properties (parent must exist).
    pub fn create_filesystem(&self, name: &str, props: &[(&str, &str)]) -> Result<()> {
        const OP: &str = "create";
        let c = cstring(OP, name)?;
        let list = NvList::from_props(OP, name, props)?;
        // SAFETY: live handle, valid name, owned list.
        let rc = unsafe { sys::zfs_create(self.hdl.as_ptr(), c.as_ptr(), FS, list.as_ptr()) };
        if rc != 0 { Err(self.last_error(OP, name)) } else { Ok(()) }
    }

    /// Takes the snapshot `dataset@snap`.
    pub fn snapshot(&self, snapshot: &str, props: &[(&str, &str)]) -> Result<()> {
        self.snapshot_impl(snapshot, props, false)
    }

    /// Takes `dataset@snap` and the same-named snapshot of every descendant,
    /// atomically.
    pub fn snapshot_recursive(&self, snapshot: &str) -> Result<()> {
        self.snapshot_impl(snapshot, &[], true)
    }

    pub(super) fn snapshot_impl(&self, snapshot: &str, props: &[(&str, &str)], recursive: bool) -> Result<()> {
        const OP: &str = "snapshot";
        let c = cstring(OP, snapshot)?;
        let list = NvList::from_props(OP, snapshot, props)?;
        let recursive = if recursive { sys::boolean_t::B_TRUE } else { sys::boolean_t::B_FALSE };
        // SAFETY: live handle, valid name, owned list.
        let rc = unsafe { sys::zfs_snapshot(self.hdl.as_ptr(), c.as_ptr(), recursive, list.as_ptr()) };
        if rc != 0 { Err(self.last_error(OP, snapshot)) } else { Ok(()) }
    }

    /// `name` and all its descendant filesystems, parents before children.
    pub fn descendants(&self, name: &str) -> Result<Vec<String>> {
        let root = self.open("list", name, FS)?;
        let mut fs = Vec::new();
        self.walk(&root, false, &mut fs)?;
        fs.sort();
        Ok(fs)
    }

    /// Clones `snapshot` to a new filesystem `target`.
    pub fn clone_snapshot(&self, snapshot: &str, target: &str, props: &[(&str, &str)]) -> Result<()> {
        const OP: &str = "clone";
        let snap = self.open(OP, snapshot, sys::zfs_type_t::ZFS_TYPE_SNAPSHOT)?;
        let t = cstring(OP, target)?;
        let list = NvList::from_props(OP, target, props)?;
        // SAFETY: snapshot handle open, valid target name, owned list.
        let rc = unsafe { sys::zfs_clone(snap.zhp.as_ptr(), t.as_ptr(), list.as_ptr()) };
        if rc != 0 { Err(self.last_error(OP, target)) } else { Ok(()) }
    }

    /// Mounts a filesystem at its `mountpoint` (no-op when it is mounted).
    pub fn mount(&self, name: &str) -> Result<()> {
        const OP: &str = "mount";
        let ds = self.open(OP, name, FS)?;
        // SAFETY: handle open; NULL: we do not need the mountpoint back.
        if unsafe { sys::zfs_is_mounted(ds.zhp.as_ptr(), ptr::null_mut()) } == sys::boolean_t::B_TRUE {
            return Ok(());
        }
        // SAFETY: handle open; NULL options mean the dataset's own.
        let rc = unsafe { sys::zfs_mount(ds.zhp.as_ptr(), ptr::null(), 0) };
        if rc != 0 { Err(self.last_error(OP, name)) } else { Ok(()) }
    }

    /// Unmounts a filesystem (no-op when it is not mounted).
    pub fn unmount(&self, name: &str) -> Result<()> {
        const OP: &str = "unmount";
        let ds = self.open(OP, name, FS)?;
        self.unmount_ds(OP, &ds)
    }

    pub(super) fn unmount_ds(&self, op: &'static str, ds: &Dataset<'_>) -> Result<()> {
        if ds.is_snapshot() {
            return Ok(());
        }
        // SAFETY: handle open; NULL mountpoint means "where it is mounted".
        let mounted = unsafe { sys::zfs_is_mounted(ds.zhp.as_ptr(), ptr::null_mut()) };
        if mounted == sys::boolean_t::B_FALSE {
            return Ok(());
        }
        // SAFETY: as above.
        let rc = unsafe { sys::zfs_unmount(ds.zhp.as_ptr(), ptr::null(), 0) };
        if rc != 0 { Err(self.last_error(op, &ds.name())) } else { Ok(()) }
    }

    /// Whether a filesystem is mounted.
    pub fn is_mounted(&self, name: &str) -> Result<bool> {
        let ds = self.open("check mount of", name, FS)?;
        // SAFETY: handle open.
        Ok(unsafe { sys::zfs_is_mounted(ds.zhp.as_ptr(), ptr::null_mut()) } == sys::boolean_t::B_TRUE)
    }

    /// Renames a filesystem (not recursive over snapshots of children).
    pub fn rename(&self, from: &str, to: &str) -> Result<()> {
        const OP: &str = "rename";
        let ds = self.open(OP, from, FS)?;
        let t = cstring(OP, to)?;
        // SAFETY: a zeroed renameflags_t is "no flags" (plain bitfields).
        let flags: sys::renameflags_t = unsafe { std::mem::zeroed() };
        // SAFETY: handle open, valid target name.
        let rc = unsafe { sys::zfs_rename(ds.zhp.as_ptr(), t.as_ptr(), flags) };
        if rc != 0 { Err(self.last_error(OP, from)) } else { Ok(()) }
    }

    /// Destroys one filesystem or snapshot. Refuses (kind `HasDependents`)
    /// when it has children, snapshots or clones; unmounts it first.
    pub fn destroy(&self, name: &str) -> Result<()> {
        const OP: &str = "destroy";
        let ds = self.open(OP, name, ANY)?;
        let deps = self.dependents(&ds)?;
        if !deps.is_empty() {
            return Err(ZfsError::new(
                OP,
                name,
                ErrorKind::HasDependents,
                format!("it has dependents: {}", deps.join(", ")),
            ));
        }
        self.unmount_ds(OP, &ds)?;
        // SAFETY: handle open; B_FALSE = destroy now, not deferred.
        let rc = unsafe { sys::zfs_destroy(ds.zhp.as_ptr(), sys::boolean_t::B_FALSE) };
        if rc != 0 { Err(self.last_error(OP, name)) } else { Ok(()) }
    }

    /// Direct dependents of a dataset: child filesystems, its snapshots and,
    /// for a snapshot, its clones.
    pub(super) fn dependents(&self, ds: &Dataset<'_>) -> Result<Vec<String>> {
        let mut deps = Vec::new();
        if ds.is_snapshot() {
            let clones = self.native_of(ds, "clones")?.raw.unwrap_or_default();
            deps.extend(clones.split(',').filter(|s| !s.is_empty()).map(str::to_string));
        } else {
            self.each_child(ds, |c| deps.push(c.name()))?;
            deps.extend(self.snapshots_of(ds)?);
        }
        Ok(deps)
    }

    pub(super) fn snapshots_of(&self, ds: &Dataset<'_>) -> Result<Vec<String>> {
        unsafe extern "C" fn collect(zhp: *mut sys::zfs_handle_t, data: *mut c_void) -> libc::c_int {
            // SAFETY: `data` is the Vec below, alive during the iteration;
            // the callback owns `zhp` and closes it after copying its name.
            unsafe {
                let names = &mut *(data as *mut Vec<String>);
                names.push(CStr::from_ptr(sys::zfs_get_name(zhp)).to_string_lossy().into_owned());
                sys::zfs_close(zhp);
            }
            0
        }
        let mut names: Vec<String> = Vec::new();
        // SAFETY: handle open; callback matches zfs_iter_f; `names` outlives
        // the call; min/max txg 0 means all snapshots.
        let rc = unsafe {
            sys::zfs_iter_snapshots(
                ds.zhp.as_ptr(),
                sys::boolean_t::B_FALSE,
                Some(collect),
                (&raw mut names).cast(),
                0,
                0,
            )
        };
        // The callback always answers 0: anything else is libzfs's failure.
        if rc != 0 {
            return Err(self.last_error("list snapshots of", &ds.name()));
        }
        names.sort();
        Ok(names)
    }

    /// The snapshots of a filesystem, sorted by name.
    pub fn snapshots(&self, name: &str) -> Result<Vec<String>> {
        let ds = self.open("list snapshots of", name, FS)?;
        self.snapshots_of(&ds)
    }

    /// Destroys a dataset with all its children and snapshots. Refuses before
    /// destroying anything when a clone outside that tree depends on one of
    /// its snapshots. Children go first, then snapshots, then the dataset.
    pub fn destroy_recursive(&self, name: &str) -> Result<()> {
        self.destroy_together(&[name.to_string()])
    }

    /// [`Libzfs::destroy_recursive`] of several datasets as one tree: clones
    /// of each other's snapshots among them do not stop it (they go first),
    /// clones outside all of them do, before anything is destroyed.
    pub fn destroy_together(&self, names: &[String]) -> Result<()> {
        const OP: &str = "destroy recursively";
        let label = names.join(", ");
        let mut pending = Vec::new();
        for name in names {
            pending.extend(self.tree(name)?);
        }
        let outside = self.outside_clones_of_all(&pending, names)?;
        if !outside.is_empty() {
            let outside: Vec<String> = outside.into_iter().map(|(c, s)| format!("{c} (clone of {s})")).collect();
            return Err(ZfsError::new(
                OP,
                &label,
                ErrorKind::HasDependents,
                format!("datasets outside it depend on it: {}", outside.join(", ")),
            ));
        }
        // Clones inside must go before their origin snapshots: keep
        // destroying whatever has no remaining dependents until done.
        while !pending.is_empty() {
            let before = pending.len();
            let mut last_err = None;
            let mut i = 0;
            while i < pending.len() {
                match self.destroy(&pending[i]) {
                    Ok(()) => {
                        pending.remove(i);
                    }
                    Err(e) if e.kind == ErrorKind::HasDependents => {
                        last_err = Some(e);
                        i += 1;
                    }
                    Err(e) => return Err(e),
                }
            }
            if pending.len() == before {
                return Err(last_err.unwrap_or_else(|| ZfsError::new(OP, &label, ErrorKind::Other, "no progress")));
            }
        }
        Ok(())
    }

    /// Clones outside `name`'s tree of snapshots inside it: what stops a
    /// recursive destroy of `name` (checked before destroying anything).
    pub fn outside_dependents(&self, name: &str) -> Result<Vec<String>> {
        let tree = self.tree(name)?;
        self.outside_dependents_of(&tree, name)
    }

    /// [`Libzfs::outside_dependents`] as (clone, the snapshot it was made from).
    pub fn outside_clones(&self, name: &str) -> Result<Vec<(String, String)>> {
        let tree = self.tree(name)?;
        self.outside_clones_of(&tree, name)
    }

    pub(super) fn outside_dependents_of(&self, tree: &[String], name: &str) -> Result<Vec<String>> {
        let clones = self.outside_clones_of(tree, name)?;
        Ok(clones.into_iter().map(|(clone, snap)| format!("{clone} (clone of {snap})")).collect())
    }

    pub(super) fn outside_clones_of(&self, tree: &[String], name: &str) -> Result<Vec<(String, String)>> {
        self.outside_clones_of_all(tree, &[name.to_string()])
    }

    /// The clones of snapshots in `tree` that are outside all of `names`.
    pub(super) fn outside_clones_of_all(&self, tree: &[String], names: &[String]) -> Result<Vec<(String, String)>> {
        let inside = |n: &str| {
            names.iter().any(|name| {
                n.strip_prefix(name.as_str()).is_some_and(|r| r.is_empty() || r.starts_with('/') || r.starts_with('@'))
            })
        };
        let mut outside = Vec::new();
        for item in tree.iter().filter(|n| n.contains('@')) {
            let snap = self.open("check dependents of", item, sys::zfs_type_t::ZFS_TYPE_SNAPSHOT)?;
            for clone in self.dependents(&snap)? {
                if !inside(&clone) {
                    outside.push((clone, item.clone()));
                }
            }
        }
        Ok(outside)
    }

    /// `name`, its descendants and all their snapshots, deepest first.
    pub(super) fn tree(&self, name: &str) -> Result<Vec<String>> {
        let root = self.open("list", name, FS)?;
        let mut out = Vec::new();
        self.walk(&root, true, &mut out)?;
        Ok(out)
    }

    /// Depth first, children before their parent; with their snapshots
    /// (listed before their dataset) when `snapshots` is set.
    pub(super) fn walk(&self, ds: &Dataset<'_>, snapshots: bool, out: &mut Vec<String>) -> Result<()> {
        let mut children = Vec::new();
        self.each_child(ds, |c| children.push(c))?;
        for c in &children {
            self.walk(c, snapshots, out)?;
        }
        if snapshots {
            out.extend(self.snapshots_of(ds)?);
        }
        out.push(ds.name());
        Ok(())
    }
}
