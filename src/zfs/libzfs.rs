//! `Libzfs`: the safe wrapper around one `libzfs_handle_t`.
//!
//! libzfs is not thread-safe (per-handle error state, unlocked caches), so a
//! `Libzfs` is deliberately neither `Send` nor `Sync`: it lives on the owner
//! thread (`super::owner`) and everything else reaches it through that
//! thread's queue. Every method takes dataset names as `&str`, opens what it
//! needs, and closes it before returning; no libzfs pointer escapes.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::ffi::{CStr, CString, c_void};
use std::marker::PhantomData;
use std::ptr::{self, NonNull};

use iocaged_sys as sys;

use super::error::{ErrorKind, Result, ZfsError};
use super::nvlist::{NvList, read_history_records, read_user_props};

/// Longest property value libzfs returns (ZAP_MAXVALUELEN, 8 KiB) plus NUL.
const PROP_BUF: usize = sys::ZFS_MAXPROPLEN as usize + 1;

/// A native property's value, both as `zfs get` prints it and as `zfs get -p`
/// prints it. `None` where ZFS shows `-` (e.g. `origin` of a non-clone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NativeValue {
    pub printed: Option<String>,
    pub raw: Option<String>,
    pub source: PropSource,
}

/// Where a property's value comes from (zprop_source_t).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PropSource {
    None,
    Default,
    Temporary,
    Local,
    Inherited,
    Received,
}

impl PropSource {
    fn from_raw(src: sys::zprop_source_t::Type) -> Self {
        use sys::zprop_source_t as s;
        match src {
            s::ZPROP_SRC_DEFAULT => PropSource::Default,
            s::ZPROP_SRC_TEMPORARY => PropSource::Temporary,
            s::ZPROP_SRC_LOCAL => PropSource::Local,
            s::ZPROP_SRC_INHERITED => PropSource::Inherited,
            s::ZPROP_SRC_RECEIVED => PropSource::Received,
            _ => PropSource::None,
        }
    }
}

/// A user property (`module:name`) and where it is set: `source` is the
/// dataset it is set on (itself when local, an ancestor when inherited).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserProp {
    pub value: String,
    pub source: String,
}

/// What a pool's history log gained since an offset ([`Libzfs::history_since`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HistoryTail {
    /// Where the log ends now: the offset to read on from next time.
    pub end: u64,
    /// The datasets the new records name, in order (ZFS logs every
    /// property set or inherit, create, destroy, clone, snapshot, receive
    /// and rename with the dataset's name; `name@snap` for snapshots).
    pub datasets: Vec<String>,
    /// A rename is among them: its record names only the old name.
    pub renamed: bool,
}

/// One dataset's properties, as read in one pass by [`Libzfs::scan_children`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetProps {
    pub name: String,
    pub user: BTreeMap<String, UserProp>,
    pub native: BTreeMap<String, NativeValue>,
}

/// A pool, with what iocage uses to mark the active one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolInfo {
    pub name: String,
    /// The pool's `comment` property (`None` when unset). iocage 1.7.x marks
    /// the active pool with `comment=iocage`.
    pub comment: Option<String>,
    /// The `org.freebsd.ioc:active` user property of the pool's root dataset.
    pub active_prop: Option<String>,
    /// `health`: ONLINE, DEGRADED, FAULTED... (empty when unreadable).
    pub health: String,
    /// `capacity`: percent of the pool in use.
    pub capacity: u64,
}

/// The handle. Not `Send`: see the module comment.
pub struct Libzfs {
    pub(super) hdl: NonNull<sys::libzfs_handle_t>,
    /// Pool handles kept open for [`Libzfs::history_end`], which runs on
    /// every listing: opening a pool fetches its whole configuration.
    history_pools: RefCell<HashMap<String, NonNull<sys::zpool_handle_t>>>,
    _not_send: PhantomData<*mut ()>,
}

/// An open dataset handle, closed on drop; borrowed from its `Libzfs`.
struct Dataset<'a> {
    zhp: NonNull<sys::zfs_handle_t>,
    _lib: PhantomData<&'a Libzfs>,
}

impl Drop for Dataset<'_> {
    fn drop(&mut self) {
        // SAFETY: `zhp` came from zfs_open or an iterator callback that handed
        // us ownership, and is closed exactly once, here.
        unsafe { sys::zfs_close(self.zhp.as_ptr()) }
    }
}

impl Dataset<'_> {
    fn name(&self) -> String {
        // SAFETY: the handle is open; zfs_get_name returns a pointer into it,
        // valid while it is open, copied at once.
        unsafe { CStr::from_ptr(sys::zfs_get_name(self.zhp.as_ptr())).to_string_lossy().into_owned() }
    }

    fn is_snapshot(&self) -> bool {
        // SAFETY: the handle is open.
        unsafe { sys::zfs_get_type(self.zhp.as_ptr()) == sys::zfs_type_t::ZFS_TYPE_SNAPSHOT }
    }
}

/// A pool's property, literally (`None` when unset or unreadable).
///
/// # Safety
/// `zph` must be an open pool handle.
unsafe fn pool_prop(zph: *mut sys::zpool_handle_t, prop: sys::zpool_prop_t::Type) -> Option<String> {
    let mut buf = vec![0u8; PROP_BUF];
    let mut src: sys::zprop_source_t::Type = sys::zprop_source_t::ZPROP_SRC_NONE;
    // SAFETY: the caller guarantees an open handle; `buf` has the length we pass.
    let rc =
        unsafe { sys::zpool_get_prop(zph, prop, buf.as_mut_ptr().cast(), buf.len(), &mut src, sys::boolean_t::B_TRUE) };
    if rc != 0 {
        return None;
    }
    let s = CStr::from_bytes_until_nul(&buf).map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    if s.is_empty() || s == "-" { None } else { Some(s) }
}

/// A pool handle, closed on drop.
pub(super) struct Pool<'a> {
    pub(super) zph: NonNull<sys::zpool_handle_t>,
    _lib: PhantomData<&'a Libzfs>,
}

impl Drop for Pool<'_> {
    fn drop(&mut self) {
        // SAFETY: opened by zpool_open_canfail or handed to us by zpool_iter.
        unsafe { sys::zpool_close(self.zph.as_ptr()) }
    }
}

const FS: sys::zfs_type_t::Type = sys::zfs_type_t::ZFS_TYPE_FILESYSTEM;
const ANY: sys::zfs_type_t::Type =
    sys::zfs_type_t::ZFS_TYPE_FILESYSTEM | sys::zfs_type_t::ZFS_TYPE_SNAPSHOT | sys::zfs_type_t::ZFS_TYPE_VOLUME;

fn cstring(op: &'static str, name: &str) -> Result<CString> {
    CString::new(name).map_err(|_| ZfsError::new(op, name, ErrorKind::InvalidName, "name contains a NUL byte"))
}

impl Libzfs {
    /// Opens libzfs. Fails when there is no ZFS kernel module or no access
    /// to /dev/zfs.
    pub fn init() -> Result<Self> {
        // SAFETY: libzfs_init has no preconditions; it returns NULL on failure.
        let hdl = unsafe { sys::libzfs_init() };
        let hdl = NonNull::new(hdl).ok_or_else(|| {
            let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
            // SAFETY: libzfs_error_init maps an errno to a static message
            // (NULL for none); it touches no handle.
            let why = unsafe { sys::libzfs_error_init(errno) };
            let why = if why.is_null() {
                String::new()
            } else {
                // SAFETY: non-null, NUL-terminated static string.
                unsafe { CStr::from_ptr(why) }.to_string_lossy().replace('\n', " ")
            };
            ZfsError::new(
                "initialise",
                "libzfs",
                ErrorKind::Unavailable,
                format!("the ZFS kernel module is not usable: {why}").trim_end().to_string(),
            )
        })?;
        // SAFETY: `hdl` is a live handle; this only turns off stderr printing.
        unsafe { sys::libzfs_print_on_error(hdl.as_ptr(), sys::boolean_t::B_FALSE) };
        Ok(Libzfs { hdl, history_pools: RefCell::default(), _not_send: PhantomData })
    }

    /// The error libzfs recorded for the last failed call on this handle.
    pub(super) fn last_error(&self, op: &'static str, target: &str) -> ZfsError {
        use sys::zfs_error as e;
        // SAFETY: the handle is live; the description is a NUL-terminated
        // string in the handle's buffer, copied before any other libzfs call.
        let (code, description) = unsafe {
            let code = sys::libzfs_errno(self.hdl.as_ptr());
            let desc = CStr::from_ptr(sys::libzfs_error_description(self.hdl.as_ptr())).to_string_lossy().into_owned();
            (code, desc)
        };
        let kind = match code as sys::zfs_error_t {
            e::EZFS_NOENT => ErrorKind::NotFound,
            e::EZFS_INVALIDNAME | e::EZFS_NAMETOOLONG => ErrorKind::InvalidName,
            e::EZFS_EXISTS => ErrorKind::Exists,
            e::EZFS_BUSY | e::EZFS_UMOUNTFAILED => ErrorKind::Busy,
            e::EZFS_BADPROP | e::EZFS_PROPREADONLY | e::EZFS_PROPTYPE | e::EZFS_PROPNONINHERIT | e::EZFS_PROPSPACE => {
                ErrorKind::InvalidProperty
            }
            _ => ErrorKind::Other,
        };
        ZfsError::new(op, target, kind, description)
    }

    fn open(&self, op: &'static str, name: &str, types: sys::zfs_type_t::Type) -> Result<Dataset<'_>> {
        let c = cstring(op, name)?;
        // SAFETY: live handle, valid C string; NULL on failure with the error
        // recorded on the handle.
        let zhp = unsafe { sys::zfs_open(self.hdl.as_ptr(), c.as_ptr(), types as libc::c_int) };
        match NonNull::new(zhp) {
            Some(zhp) => Ok(Dataset { zhp, _lib: PhantomData }),
            None => Err(self.last_error(op, name)),
        }
    }

    pub(super) fn open_pool(&self, op: &'static str, name: &str) -> Result<Pool<'_>> {
        let c = cstring(op, name)?;
        // SAFETY: live handle, valid C string; NULL on failure.
        let zph = unsafe { sys::zpool_open_canfail(self.hdl.as_ptr(), c.as_ptr()) };
        match NonNull::new(zph) {
            Some(zph) => Ok(Pool { zph, _lib: PhantomData }),
            None => Err(self.last_error(op, name)),
        }
    }

    /// Whether a filesystem, volume or snapshot of that name exists.
    pub fn exists(&self, name: &str) -> bool {
        let Ok(c) = CString::new(name) else { return false };
        // SAFETY: live handle, valid C string.
        unsafe { sys::zfs_dataset_exists(self.hdl.as_ptr(), c.as_ptr(), ANY) == sys::boolean_t::B_TRUE }
    }

    /// Calls `f` with every direct child filesystem of `parent`, in the
    /// order libzfs returns them. A failed iteration is an error, not a
    /// short listing (a child removed meanwhile is simply not listed).
    fn each_child<'a>(&'a self, parent: &Dataset<'a>, mut f: impl FnMut(Dataset<'a>)) -> Result<()> {
        unsafe extern "C" fn trampoline<F: FnMut(NonNull<sys::zfs_handle_t>)>(
            zhp: *mut sys::zfs_handle_t,
            data: *mut c_void,
        ) -> libc::c_int {
            // SAFETY: `data` is the closure of type F passed below, alive for
            // the whole zfs_iter_filesystems call. An unwinding panic cannot
            // cross this frame: extern "C" aborts instead.
            unsafe {
                let f = &mut *(data as *mut F);
                if let Some(zhp) = NonNull::new(zhp) {
                    f(zhp);
                }
            }
            0
        }
        fn trampoline_for<F: FnMut(NonNull<sys::zfs_handle_t>)>(_: &F) -> sys::zfs_iter_f {
            Some(trampoline::<F>)
        }
        // The callback owns `zhp` (libzfs's iterator contract), so a Dataset
        // that closes it on drop is the right wrapper.
        let mut wrap = |zhp| f(Dataset { zhp, _lib: PhantomData });
        let cb = trampoline_for(&wrap);
        // SAFETY: parent is open; `cb` matches zfs_iter_f and receives the
        // closure it was made for; the closure outlives the call.
        let rc = unsafe { sys::zfs_iter_filesystems(parent.zhp.as_ptr(), cb, (&raw mut wrap).cast()) };
        // The callback always answers 0: anything else is libzfs's failure.
        if rc != 0 { Err(self.last_error("list children of", &parent.name())) } else { Ok(()) }
    }

    /// Names of the direct child filesystems of `parent`, sorted.
    pub fn children(&self, parent: &str) -> Result<Vec<String>> {
        let p = self.open("list children of", parent, FS)?;
        let mut names = Vec::new();
        self.each_child(&p, |c| names.push(c.name()))?;
        names.sort();
        Ok(names)
    }

    fn native_of(&self, ds: &Dataset<'_>, prop: &str) -> Result<NativeValue> {
        let c = cstring("read property of", prop)?;
        // SAFETY: valid C string; zfs_name_to_prop only reads it.
        let p = unsafe { sys::zfs_name_to_prop(c.as_ptr()) };
        // OpenZFS 2.2 added ZPROP_USERPROP (equal to ZPROP_INVAL there);
        // 2.1 (FreeBSD 13.x) has only ZPROP_INVAL.
        #[cfg(zfs_2_2)]
        let not_native = p == sys::zfs_prop_t::ZPROP_INVAL || p == sys::zfs_prop_t::ZPROP_USERPROP;
        #[cfg(not(zfs_2_2))]
        let not_native = p == sys::zfs_prop_t::ZPROP_INVAL;
        if not_native {
            return Err(ZfsError::new(
                "read property of",
                ds.name(),
                ErrorKind::InvalidProperty,
                format!("'{prop}' is not a native ZFS property"),
            ));
        }
        let get = |literal: sys::boolean_t::Type| -> (Option<String>, PropSource) {
            let mut buf = vec![0u8; PROP_BUF];
            // libzfs fills in the source only when given a buffer for where
            // an inherited value comes from.
            let mut from = [0u8; sys::ZFS_MAX_DATASET_NAME_LEN as usize];
            let mut src: sys::zprop_source_t::Type = sys::zprop_source_t::ZPROP_SRC_NONE;
            // SAFETY: the handle is open; `buf` and `from` have the lengths
            // we tell libzfs.
            let rc = unsafe {
                sys::zfs_prop_get(
                    ds.zhp.as_ptr(),
                    p,
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    &mut src,
                    from.as_mut_ptr().cast(),
                    from.len(),
                    literal,
                )
            };
            if rc != 0 {
                return (None, PropSource::None);
            }
            let s = CStr::from_bytes_until_nul(&buf).map(|s| s.to_string_lossy().into_owned()).ok();
            (s, PropSource::from_raw(src))
        };
        let (printed, source) = get(sys::boolean_t::B_FALSE);
        let (raw, _) = get(sys::boolean_t::B_TRUE);
        Ok(NativeValue { printed, raw, source })
    }

    /// Native properties of one dataset, printed and raw.
    pub fn native_props(&self, name: &str, props: &[&str]) -> Result<BTreeMap<String, NativeValue>> {
        let ds = self.open("read properties of", name, ANY)?;
        props.iter().map(|p| Ok((p.to_string(), self.native_of(&ds, p)?))).collect()
    }

    fn user_of(ds: &Dataset<'_>) -> BTreeMap<String, UserProp> {
        // SAFETY: the handle is open; the returned list belongs to it and is
        // copied by read_user_props before anything else touches the handle.
        let entries = unsafe { read_user_props(sys::zfs_get_user_props(ds.zhp.as_ptr())) };
        entries.into_iter().map(|(k, value, source)| (k, UserProp { value, source })).collect()
    }

    /// All user properties of a dataset (set locally or inherited).
    pub fn user_props(&self, name: &str) -> Result<BTreeMap<String, UserProp>> {
        let ds = self.open("read user properties of", name, ANY)?;
        Ok(Self::user_of(&ds))
    }

    /// Every direct child filesystem of `parent` with all its user properties
    /// and the named native ones, in one pass (one open per child).
    pub fn scan_children(&self, parent: &str, native: &[&str]) -> Result<Vec<DatasetProps>> {
        let p = self.open("list children of", parent, FS)?;
        let mut out = Vec::new();
        let mut err = None;
        self.each_child(&p, |c| {
            if err.is_some() {
                return;
            }
            let mut props = DatasetProps { name: c.name(), user: Self::user_of(&c), native: BTreeMap::new() };
            for n in native {
                match self.native_of(&c, n) {
                    Ok(v) => {
                        props.native.insert(n.to_string(), v);
                    }
                    Err(e) => err = Some(e),
                }
            }
            out.push(props);
        })?;
        match err {
            Some(e) => Err(e),
            None => {
                out.sort_by(|a, b| a.name.cmp(&b.name));
                Ok(out)
            }
        }
    }

    /// Sets several properties at once (one ioctl: all or none).
    pub fn set_props(&self, name: &str, props: &[(&str, &str)]) -> Result<()> {
        const OP: &str = "set properties on";
        let ds = self.open(OP, name, ANY)?;
        let list = NvList::from_props(OP, name, props)?;
        // SAFETY: handle open, list owned and alive for the call.
        let rc = unsafe { sys::zfs_prop_set_list(ds.zhp.as_ptr(), list.as_ptr()) };
        if rc != 0 { Err(self.last_error(OP, name)) } else { Ok(()) }
    }

    /// Clears a local value so the property is inherited again.
    pub fn inherit(&self, name: &str, prop: &str) -> Result<()> {
        const OP: &str = "inherit property on";
        let ds = self.open(OP, name, ANY)?;
        let c = cstring(OP, prop)?;
        // SAFETY: handle open, valid C string.
        let rc = unsafe { sys::zfs_prop_inherit(ds.zhp.as_ptr(), c.as_ptr(), sys::boolean_t::B_FALSE) };
        if rc != 0 { Err(self.last_error(OP, name)) } else { Ok(()) }
    }

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

    fn snapshot_impl(&self, snapshot: &str, props: &[(&str, &str)], recursive: bool) -> Result<()> {
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

    fn unmount_ds(&self, op: &'static str, ds: &Dataset<'_>) -> Result<()> {
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
    fn dependents(&self, ds: &Dataset<'_>) -> Result<Vec<String>> {
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

    fn snapshots_of(&self, ds: &Dataset<'_>) -> Result<Vec<String>> {
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

    fn outside_dependents_of(&self, tree: &[String], name: &str) -> Result<Vec<String>> {
        let clones = self.outside_clones_of(tree, name)?;
        Ok(clones.into_iter().map(|(clone, snap)| format!("{clone} (clone of {snap})")).collect())
    }

    fn outside_clones_of(&self, tree: &[String], name: &str) -> Result<Vec<(String, String)>> {
        self.outside_clones_of_all(tree, &[name.to_string()])
    }

    /// The clones of snapshots in `tree` that are outside all of `names`.
    fn outside_clones_of_all(&self, tree: &[String], names: &[String]) -> Result<Vec<(String, String)>> {
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
    fn tree(&self, name: &str) -> Result<Vec<String>> {
        let root = self.open("list", name, FS)?;
        let mut out = Vec::new();
        self.walk(&root, true, &mut out)?;
        Ok(out)
    }

    /// Depth first, children before their parent; with their snapshots
    /// (listed before their dataset) when `snapshots` is set.
    fn walk(&self, ds: &Dataset<'_>, snapshots: bool, out: &mut Vec<String>) -> Result<()> {
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

    /// Every imported pool with its comment and `org.freebsd.ioc:active`.
    /// Each pool is opened once (by the iteration); this runs on every
    /// request when the pool is chosen automatically.
    pub fn pools(&self) -> Result<Vec<PoolInfo>> {
        unsafe extern "C" fn collect(zph: *mut sys::zpool_handle_t, data: *mut c_void) -> libc::c_int {
            // SAFETY: `data` is the Vec below; the callback owns `zph`, reads
            // its name and comment, and closes it.
            unsafe {
                let found = &mut *(data as *mut Vec<Found>);
                let name = CStr::from_ptr(sys::zpool_get_name(zph)).to_string_lossy().into_owned();
                let comment = pool_prop(zph, sys::zpool_prop_t::ZPOOL_PROP_COMMENT);
                let health = pool_prop(zph, sys::zpool_prop_t::ZPOOL_PROP_HEALTH).unwrap_or_default();
                let capacity = pool_prop(zph, sys::zpool_prop_t::ZPOOL_PROP_CAPACITY)
                    .and_then(|c| c.trim_end_matches('%').parse().ok())
                    .unwrap_or(0);
                found.push((name, comment, health, capacity));
                sys::zpool_close(zph);
            }
            0
        }
        type Found = (String, Option<String>, String, u64);
        let mut found: Vec<Found> = Vec::new();
        // SAFETY: live handle; callback matches zpool_iter_f; `found` outlives the call.
        let rc = unsafe { sys::zpool_iter(self.hdl.as_ptr(), Some(collect), (&raw mut found).cast()) };
        if rc != 0 {
            return Err(self.last_error("list", "pools"));
        }
        found.sort();
        let mut pools = Vec::with_capacity(found.len());
        for (name, comment, health, capacity) in found {
            let active_prop = self.user_props(&name)?.remove("org.freebsd.ioc:active").map(|p| p.value);
            pools.push(PoolInfo { name, comment, active_prop, health, capacity });
        }
        Ok(pools)
    }

    /// The end of the pool's history log, read on from `from` (a value this
    /// returned before, or 0). ZFS appends a record for every change to a
    /// dataset's properties and for every create, destroy, rename, clone,
    /// snapshot and receive, but none for reads or data writes: an
    /// unchanged end means no dataset was changed. Costs one ioctl when
    /// nothing was appended.
    ///
    /// The pool's handle stays open between calls (see [`Libzfs::forget_pools`]).
    pub fn history_end(&self, pool: &str, from: u64) -> Result<u64> {
        Ok(self.history_since(pool, from, false)?.end)
    }

    /// [`Libzfs::history_end`], and with `names` set, which datasets the
    /// records appended since `from` name (see [`HistoryTail`]).
    pub fn history_since(&self, pool: &str, from: u64, names: bool) -> Result<HistoryTail> {
        const OP: &str = "read the history of";
        let cached = self.history_pools.borrow().get(pool).copied();
        let zph = match cached {
            Some(zph) => zph,
            None => {
                let p = self.open_pool(OP, pool)?;
                let zph = p.zph;
                std::mem::forget(p); // now owned by `history_pools`
                self.history_pools.borrow_mut().insert(pool.to_string(), zph);
                zph
            }
        };
        let result = self.read_history(zph, pool, from, names);
        if result.is_err() {
            // Exported or destroyed: open it afresh next time.
            self.forget_pools();
        }
        result
    }

    /// Closes the pool handles [`Libzfs::history_end`] keeps, so that pools
    /// exported, destroyed or re-created since are seen as they are now.
    pub fn forget_pools(&self) {
        for (_, zph) in self.history_pools.borrow_mut().drain() {
            // SAFETY: opened by zpool_open_canfail, closed once (removed
            // from the map here).
            unsafe { sys::zpool_close(zph.as_ptr()) }
        }
    }

    fn read_history(
        &self,
        zph: NonNull<sys::zpool_handle_t>,
        pool: &str,
        from: u64,
        names: bool,
    ) -> Result<HistoryTail> {
        const OP: &str = "read the history of";
        let mut tail = HistoryTail { end: from, datasets: Vec::new(), renamed: false };
        loop {
            let mut list: *mut sys::nvlist_t = std::ptr::null_mut();
            let mut eof = sys::boolean_t::B_FALSE;
            // SAFETY: pool handle open; `list` and `off`, `eof` are valid
            // out-pointers; on success libzfs allocates `list`, which is
            // read (when `names`) and freed below.
            let rc = unsafe { sys::zpool_get_history(zph.as_ptr(), &mut list, &mut tail.end, &mut eof) };
            if !list.is_null() {
                if names {
                    // SAFETY: `list` is the valid nvlist just returned; its
                    // records live until it is freed, right after.
                    unsafe { read_history_records(list, &mut tail) };
                }
                // SAFETY: allocated by zpool_get_history for us, freed once.
                unsafe { sys::nvlist_free(list) };
            }
            if rc != 0 {
                return Err(self.last_error(OP, pool));
            }
            if eof == sys::boolean_t::B_TRUE {
                return Ok(tail);
            }
        }
    }

    /// Sets a pool property (e.g. `comment`).
    pub fn set_pool_prop(&self, pool: &str, prop: &str, value: &str) -> Result<()> {
        const OP: &str = "set pool property on";
        let p = self.open_pool(OP, pool)?;
        let (n, v) = (cstring(OP, prop)?, cstring(OP, value)?);
        // SAFETY: pool handle open, valid C strings.
        let rc = unsafe { sys::zpool_set_prop(p.zph.as_ptr(), n.as_ptr(), v.as_ptr()) };
        if rc != 0 { Err(self.last_error(OP, pool)) } else { Ok(()) }
    }
}

/// The OpenZFS versions in use: the userland library's and the loaded
/// kernel module's (e.g. `zfs-2.3.2-2~bpo12+2`, `zfs-kmod-2.3.2-2~bpo12+2`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versions {
    pub userland: String,
    pub kernel: String,
}

impl Libzfs {
    /// The running OpenZFS versions, as `zfs version` prints them.
    #[cfg(zfs_2_2)]
    pub fn versions(&self) -> Versions {
        // SAFETY: zfs_version_userland returns a static string;
        // zfs_version_kernel a malloc'd one (or NULL) that we free.
        unsafe {
            let u = sys::zfs_version_userland();
            let userland = if u.is_null() { String::new() } else { CStr::from_ptr(u).to_string_lossy().into_owned() };
            let k = sys::zfs_version_kernel();
            let kernel = if k.is_null() {
                String::new()
            } else {
                let s = CStr::from_ptr(k).to_string_lossy().into_owned();
                libc::free(k.cast());
                s
            };
            Versions { userland, kernel }
        }
    }

    /// The running OpenZFS versions, as `zfs version` prints them.
    #[cfg(not(zfs_2_2))]
    pub fn versions(&self) -> Versions {
        let mut u = [0 as libc::c_char; 128];
        let mut k = [0 as libc::c_char; 128];
        // SAFETY: OpenZFS 2.1 fills caller buffers of the given length
        // with NUL-terminated strings.
        unsafe {
            sys::zfs_version_userland(u.as_mut_ptr(), u.len() as libc::c_int);
            sys::zfs_version_kernel(k.as_mut_ptr(), k.len() as libc::c_int);
            Versions {
                userland: CStr::from_ptr(u.as_ptr()).to_string_lossy().into_owned(),
                kernel: CStr::from_ptr(k.as_ptr()).to_string_lossy().into_owned(),
            }
        }
    }
}

impl Drop for Libzfs {
    fn drop(&mut self) {
        self.forget_pools();
        // SAFETY: the handle was returned by libzfs_init; every dataset and
        // pool handle borrowed from it has been dropped (their lifetimes end
        // before `self`'s), so it is finalised exactly once with nothing open.
        unsafe { sys::libzfs_fini(self.hdl.as_ptr()) }
    }
}
