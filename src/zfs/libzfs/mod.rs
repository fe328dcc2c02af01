//! `Libzfs`: the safe wrapper around one `libzfs_handle_t`.
//!
//! libzfs is not thread-safe (per-handle error state, unlocked caches), so a
//! `Libzfs` is deliberately neither `Send` nor `Sync`: it lives on the owner
//! thread (`super::owner`) and everything else reaches it through that
//! thread's queue. Every method takes dataset names as `&str`, opens what it
//! needs, and closes it before returning; no libzfs pointer escapes.

//!
//! Here: the handle, the RAII types of open datasets and pools, errors and
//! child iteration. The operations are grouped by what they act on:
//! `props`, `dataset` and `pool`.

mod dataset;
mod pool;
mod props;

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::{CStr, CString, c_void};
use std::marker::PhantomData;
use std::ptr::NonNull;

use iocaged_sys as sys;

use super::error::{ErrorKind, Result, ZfsError};

pub use pool::{HistoryTail, MAX_HISTORY_NAMES, PoolInfo};
pub use props::{DatasetProps, NativeValue, PropSource, UserProp};

/// Longest property value libzfs returns (ZAP_MAXVALUELEN, 8 KiB) plus NUL.
const PROP_BUF: usize = sys::ZFS_MAXPROPLEN as usize + 1;

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
