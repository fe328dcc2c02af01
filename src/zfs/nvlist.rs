//! Owned name/value lists (libnvpair) for passing properties to libzfs, and
//! a reader for the nvlists libzfs hands back.

use std::ffi::{CStr, CString};
use std::ptr::{self, NonNull};

use iocaged_sys as sys;

use super::error::{ErrorKind, Result, ZfsError};

/// An nvlist this process allocated and frees. Only string pairs are needed.
pub(crate) struct NvList(NonNull<sys::nvlist_t>);

impl NvList {
    /// A new list with unique names (a later add of the same name replaces).
    pub(crate) fn new() -> Self {
        let mut raw: *mut sys::nvlist_t = ptr::null_mut();
        // SAFETY: nvlist_alloc writes a freshly allocated list to `raw` on
        // success (return 0); the flag and the 0 kmflag are what libzfs uses.
        let rc = unsafe { sys::nvlist_alloc(&mut raw, sys::NV_UNIQUE_NAME, 0) };
        match NonNull::new(raw) {
            Some(p) if rc == 0 => NvList(p),
            // Allocation failure of a few bytes: the process is out of memory.
            _ => std::alloc::handle_alloc_error(std::alloc::Layout::new::<usize>()),
        }
    }

    /// A list of string properties; names and values must not contain NUL.
    pub(crate) fn from_props(op: &'static str, target: &str, props: &[(&str, &str)]) -> Result<Self> {
        let list = NvList::new();
        for (name, value) in props {
            let bad = |what: &str| {
                ZfsError::new(op, target, ErrorKind::InvalidProperty, format!("property {what} contains a NUL byte"))
            };
            let n = CString::new(*name).map_err(|_| bad("name"))?;
            let v = CString::new(*value).map_err(|_| bad("value"))?;
            // SAFETY: the list is live and owned; both strings are valid C
            // strings that nvlist_add_string copies.
            let rc = unsafe { sys::nvlist_add_string(list.0.as_ptr(), n.as_ptr(), v.as_ptr()) };
            if rc != 0 {
                return Err(ZfsError::new(
                    op,
                    target,
                    ErrorKind::Other,
                    format!("cannot add property {name}: errno {rc}"),
                ));
            }
        }
        Ok(list)
    }

    pub(crate) fn as_ptr(&self) -> *mut sys::nvlist_t {
        self.0.as_ptr()
    }
}

impl Drop for NvList {
    fn drop(&mut self) {
        // SAFETY: the list was allocated by nvlist_alloc and is freed once.
        unsafe { sys::nvlist_free(self.0.as_ptr()) }
    }
}

/// Reads libzfs's user-property list (`name -> {"value": s, "source": s}`)
/// into owned Rust strings. `list` is owned by libzfs and valid until the
/// next property change on its dataset handle, so it is copied at once.
///
/// # Safety
/// `list` must be null or a valid nvlist that stays alive during the call.
pub(crate) unsafe fn read_user_props(list: *mut sys::nvlist_t) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    if list.is_null() {
        return out;
    }
    let mut pair: *mut sys::nvpair_t = ptr::null_mut();
    loop {
        // SAFETY: (whole block) `list` is valid per the caller; each pair and
        // nested list comes from it and lives as long as it; strings returned
        // by lookups are NUL-terminated and copied before the next call.
        unsafe {
            pair = sys::nvlist_next_nvpair(list, pair);
            if pair.is_null() {
                break;
            }
            let name = CStr::from_ptr(sys::nvpair_name(pair)).to_string_lossy().into_owned();
            let mut inner: *mut sys::nvlist_t = ptr::null_mut();
            if sys::nvpair_value_nvlist(pair, &mut inner) != 0 || inner.is_null() {
                continue;
            }
            let Some(value) = lookup_string(inner, c"value") else { continue };
            let source = lookup_string(inner, c"source").unwrap_or_default();
            out.push((name, value, source));
        }
    }
    out
}

/// Adds to `tail` what the records of one `zpool_get_history` chunk name:
/// each record's `dsname` (a run of records naming one dataset once; at
/// most `MAX_HISTORY_NAMES`), and whether one is a rename; and to `bytes`, how
/// much of the log they took: ZFS writes each record as its length (8
/// bytes) and the record packed in libnvpair's native encoding, whose size
/// `nvlist_size` gives again for the unpacked record (`u64::MAX` when it
/// cannot, or more datasets are named than are kept: the sum then never
/// matches, see `Libzfs::read_history`).
///
/// # Safety
/// `list` must be a valid nvlist returned by `zpool_get_history` that stays
/// alive during the call.
pub(crate) unsafe fn read_history_records(
    list: *mut sys::nvlist_t,
    tail: &mut super::libzfs::HistoryTail,
    bytes: &mut u64,
) {
    let mut records: *mut *mut sys::nvlist_t = ptr::null_mut();
    let mut count: sys::uint_t = 0;
    // SAFETY: `list` is valid per the caller; on success `records` points
    // at `count` nvlists owned by `list`, alive as long as it is.
    if unsafe { sys::nvlist_lookup_nvlist_array(list, c"history record".as_ptr(), &mut records, &mut count) } != 0
        || records.is_null()
    {
        return;
    }
    // SAFETY: as above: `count` valid pointers at `records`.
    let records = unsafe { std::slice::from_raw_parts(records, count as usize) };
    for &record in records {
        let mut size: libc::size_t = 0;
        // SAFETY: each record is a valid nvlist owned by `list`; `size` is
        // a valid out-pointer; nvlist_size only reads the list.
        let sized = unsafe { sys::nvlist_size(record, &mut size, sys::NV_ENCODE_NATIVE as libc::c_int) } == 0;
        let taken = if sized { u64::try_from(size).map_or(u64::MAX, |s| s.saturating_add(8)) } else { u64::MAX };
        *bytes = bytes.saturating_add(taken);
        // SAFETY: each record is a valid nvlist owned by `list`.
        if let Some(name) = unsafe { lookup_string(record, c"dsname") } {
            // A create or a `zfs set` logs a record per property, each
            // naming the dataset: one name for a run of them.
            if tail.datasets.last() != Some(&name) {
                if tail.datasets.len() < super::libzfs::MAX_HISTORY_NAMES {
                    tail.datasets.push(name);
                } else {
                    // More than is kept: what changed is not known.
                    *bytes = u64::MAX;
                }
            }
        }
        // SAFETY: as above.
        if unsafe { lookup_string(record, c"internal_name") }.is_some_and(|event| event == "rename") {
            tail.renamed = true;
        }
    }
}

/// A string value of `list`, copied.
///
/// # Safety
/// `list` must be a valid nvlist alive during the call.
pub(crate) unsafe fn lookup_string(list: *mut sys::nvlist_t, key: &CStr) -> Option<String> {
    let mut value: *const libc::c_char = ptr::null();
    // SAFETY: `list` valid per the caller; the returned string belongs to it
    // and is copied before returning.
    unsafe {
        if sys::nvlist_lookup_string(list, key.as_ptr(), (&raw mut value).cast()) != 0 || value.is_null() {
            return None;
        }
        Some(CStr::from_ptr(value).to_string_lossy().into_owned())
    }
}
