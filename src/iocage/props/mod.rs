//! The iocage property catalogue: every property the API shows, its
//! built-in default, where it lives (a ZFS user property, a settable native
//! ZFS property, or read-only), and the format its values must have.
//!
//! The names and built-in defaults are those of iocage 1.7.x as the sysadm
//! API document shows them (getdefaultsettings and getjailsettings). Values
//! derived when a jail is created (tag, UUIDs, hostid, release, the jail's
//! dataset) have no meaningful built-in and default to `none`.
//!
//! The pieces: `catalogue`, the table of every property and its look-up;
//! `check`, whether a client may set a value (the property's format, and
//! what the format alone does not settle). This module holds the terms an
//! entry is described in: its kind, where it is listed, its format.

mod catalogue;
mod check;

pub use catalogue::{CATALOGUE, lookup, native_names, position};
pub use check::{HOST_HOOKS, MAX_VALUE_LEN, PropError, check_format, is_safe_name, validate_client_value};

/// The ZFS user-property namespace iocage keeps its properties in.
pub const USER_PREFIX: &str = "org.freebsd.iocage:";

/// Where a property's value lives and who may change it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `org.freebsd.iocage:<name>` user property; clients may set it.
    User,
    /// A user property that only iocaged writes (UUID, release, type, ...).
    UserReadOnly,
    /// A native ZFS property clients may set (quota, compression, ...).
    NativeSettable,
    /// A native ZFS property nobody sets (used, available, origin, ...).
    NativeReadOnly,
}

impl Kind {
    pub fn is_native(self) -> bool {
        matches!(self, Kind::NativeSettable | Kind::NativeReadOnly)
    }
    pub fn client_settable(self) -> bool {
        matches!(self, Kind::User | Kind::NativeSettable)
    }
}

/// Where the API lists a property.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listed {
    /// In getdefaultsettings and in a jail's settings.
    Everywhere,
    /// Only in a jail's settings (iocage 1.7.x's per-jail bookkeeping).
    JailOnly,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpFamily {
    V4,
    V6,
}

/// The format a property's value must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `0` or `1`.
    Bool01,
    /// `on` or `off`.
    OnOff,
    /// `yes` or `no`.
    YesNo,
    /// A whole number in a range.
    Int(i64, i64),
    /// `off`, or `<amount>:<action>` (action deny, log, devctl, sig*).
    Limit,
    /// `off`, or a CPU list such as `1,2` or `0-3`.
    Cpuset,
    /// `none`, or `iface|addr[/mask]` entries separated by commas.
    IpAddrs(IpFamily),
    /// `none`, or one address.
    Router(IpFamily),
    /// `none`, or `nic:bridge` pairs separated by commas.
    Interfaces,
    /// `none`, or MAC addresses separated by commas.
    Mac,
    /// A name that may end up in a dataset name or a path.
    Name,
    /// A dataset name relative to the pool.
    DatasetName,
    /// `none` or a size (`10G`, `512M`, a byte count).
    SizeOrNone,
    /// A ZFS compression algorithm.
    Compression,
    /// A ZFS dedup setting.
    Dedup,
    /// An absolute path, `none` or `legacy`.
    Mountpoint,
    /// A UUID.
    Uuid,
    /// Free text: no control characters, within ZFS's value length.
    Text,
}

/// One catalogue entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prop {
    pub name: &'static str,
    /// Built-in default; `-` means "unset" (native props read from ZFS).
    pub default: &'static str,
    pub kind: Kind,
    pub format: Format,
    pub listed: Listed,
}

impl Prop {
    /// The ZFS property name it is stored under.
    pub fn zfs_name(&self) -> String {
        if self.kind.is_native() { self.name.to_string() } else { format!("{USER_PREFIX}{}", self.name) }
    }
}
