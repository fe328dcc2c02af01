//! Pools: the imported ones with their health and iocage's markers, their
//! properties, and the history log whose end tells whether any dataset
//! changed.

use std::ffi::{CStr, c_void};
use std::ptr::NonNull;

use iocaged_sys as sys;

use super::super::error::Result;
use super::super::nvlist::read_history_records;
use super::{Libzfs, PROP_BUF, cstring};

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

/// The most datasets a [`HistoryTail`] names; a tail that names more is
/// not [`HistoryTail::complete`] (a whole ring of 1 GiB of log could name
/// millions).
pub const MAX_HISTORY_NAMES: usize = 65_536;

/// What a pool's history log gained since an offset ([`Libzfs::history_since`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HistoryTail {
    /// Where the log ends now: the offset to read on from next time.
    pub end: u64,
    /// The datasets the new records name, in order, a run of records
    /// naming one dataset once (ZFS logs every property set or inherit,
    /// create, destroy, clone, snapshot, receive and rename with the
    /// dataset's name; `name@snap` for snapshots).
    pub datasets: Vec<String>,
    /// A rename is among them: its record names only the old name.
    pub renamed: bool,
    /// With names asked for: the records read are every record since the
    /// offset. ZFS keeps its log in a ring (0.1% of the pool's space when
    /// it was made, from 128 KiB to 1 GiB) and starts a read from an offset it
    /// has overwritten at its oldest record instead, without saying so;
    /// this is how that is told: the records read take exactly the log
    /// from the offset to its end. `false` when they do not, when names
    /// were not asked for, or when more than [`MAX_HISTORY_NAMES`] datasets
    /// are named: what changed is then not known.
    pub complete: bool,
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

impl Libzfs {
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

    pub(super) fn read_history(
        &self,
        zph: NonNull<sys::zpool_handle_t>,
        pool: &str,
        from: u64,
        names: bool,
    ) -> Result<HistoryTail> {
        const OP: &str = "read the history of";
        let mut tail = HistoryTail { end: from, ..HistoryTail::default() };
        let mut bytes = 0u64;
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
                    unsafe { read_history_records(list, &mut tail, &mut bytes) };
                }
                // SAFETY: allocated by zpool_get_history for us, freed once.
                unsafe { sys::nvlist_free(list) };
            }
            if rc != 0 {
                return Err(self.last_error(OP, pool));
            }
            if eof == sys::boolean_t::B_TRUE {
                tail.complete = names && Some(bytes) == tail.end.checked_sub(from);
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
