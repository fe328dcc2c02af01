//! The error every ZFS operation returns: what was attempted, on which
//! dataset or pool, and libzfs's own description of why it failed.

use std::fmt;

/// What kind of failure libzfs reported, for callers that must react to it
/// (map "not found" to a client error, refuse on "has dependents", ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The dataset, snapshot or pool does not exist.
    NotFound,
    /// The name is not a valid ZFS name (or is too long).
    InvalidName,
    /// Something with that name already exists.
    Exists,
    /// The dataset is busy (mounted and in use, a hold, ...).
    Busy,
    /// Other datasets depend on it (children, clones of its snapshots).
    HasDependents,
    /// A property name or value was refused.
    InvalidProperty,
    /// libzfs could not be initialised: no ZFS kernel module or no /dev/zfs.
    Unavailable,
    /// The owner thread is gone (the service is shutting down).
    Shutdown,
    /// The owner thread's queue is full: try again later.
    Overloaded,
    /// Anything else; the description says what.
    Other,
}

/// A failed ZFS operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZfsError {
    /// The operation, as a verb phrase: "open", "set properties on", ...
    pub op: &'static str,
    /// The dataset, snapshot or pool the operation was aimed at.
    pub target: String,
    /// Classification for callers that branch on it.
    pub kind: ErrorKind,
    /// libzfs's description (or ours, where libzfs gives none).
    pub description: String,
}

impl ZfsError {
    pub(crate) fn new(
        op: &'static str,
        target: impl Into<String>,
        kind: ErrorKind,
        description: impl Into<String>,
    ) -> Self {
        ZfsError { op, target: target.into(), kind, description: description.into() }
    }
}

impl fmt::Display for ZfsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot {} '{}': {}", self.op, self.target, self.description)
    }
}

impl std::error::Error for ZfsError {}

/// Shorthand used throughout the ZFS layer.
pub type Result<T> = std::result::Result<T, ZfsError>;
