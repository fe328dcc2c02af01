//! Why an iocage action failed. Each message names what was wrong and on
//! which object; the API returns it in-band as `{"<action>": {"error": msg}}`.

use crate::runtime::RuntimeError;
use crate::zfs::ZfsError;

use super::props::PropError;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActionError {
    #[error("Missing required keys: {}", .0.join(", "))]
    MissingKeys(Vec<&'static str>),
    #[error("invalid value for '{key}': {reason}")]
    BadArgument { key: &'static str, reason: String },
    #[error(transparent)]
    Property(#[from] PropError),
    #[error("jail '{0}' not found")]
    JailNotFound(String),
    #[error("jail '{query}' is ambiguous: it matches {}", .candidates.join(", "))]
    AmbiguousJail { query: String, candidates: Vec<String> },
    #[error("no active pool: activate one with the activatepool action")]
    NoActivePool,
    #[error("more than one pool is marked active ({}): deactivate all but one with deactivatepool", .0.join(", "))]
    SeveralActivePools(Vec<String>),
    #[error("pool '{0}' does not exist")]
    PoolNotFound(String),
    #[error("pool '{0}' is not active")]
    PoolNotActive(String),
    #[error("cannot activate pool '{pool}': pool {} is active; deactivate it first", .active.join(", "))]
    OtherPoolActive { pool: String, active: Vec<String> },
    #[error("the '{0}' action is not available in this version of iocaged")]
    NotImplemented(&'static str),
    #[error(transparent)]
    Zfs(#[from] ZfsError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}
