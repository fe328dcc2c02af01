//! Properties: native ones as `zfs get` and `zfs get -p` print them,
//! user ones with where they are set, one dataset's or every child's in
//! one pass, and setting or inheriting them.

use std::collections::BTreeMap;
use std::ffi::CStr;

use iocaged_sys as sys;

use super::super::error::{ErrorKind, Result, ZfsError};
use super::super::nvlist::{NvList, read_user_props};
use super::{ANY, Dataset, FS, Libzfs, PROP_BUF, cstring};

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

/// One dataset's properties, as read in one pass by [`Libzfs::scan_children`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetProps {
    pub name: String,
    pub user: BTreeMap<String, UserProp>,
    pub native: BTreeMap<String, NativeValue>,
}

impl Libzfs {
    pub(super) fn native_of(&self, ds: &Dataset<'_>, prop: &str) -> Result<NativeValue> {
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

    pub(super) fn user_of(ds: &Dataset<'_>) -> BTreeMap<String, UserProp> {
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

    /// One dataset with all its user properties and the named native ones
    /// (one open: the kernel hands every property over at once).
    pub fn dataset_props(&self, name: &str, native: &[&str]) -> Result<DatasetProps> {
        let ds = self.open("read properties of", name, ANY)?;
        self.props_of(&ds, native)
    }

    fn props_of(&self, ds: &Dataset<'_>, native: &[&str]) -> Result<DatasetProps> {
        let native = native.iter().map(|n| Ok((n.to_string(), self.native_of(ds, n)?))).collect::<Result<_>>()?;
        Ok(DatasetProps { name: ds.name(), user: Self::user_of(ds), native })
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
            match self.props_of(&c, native) {
                Ok(props) => out.push(props),
                Err(e) => err = Some(e),
            }
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
}
