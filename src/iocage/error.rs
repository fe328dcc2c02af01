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
    #[error("tag '{tag}' is already used by jail {uuid}")]
    TagInUse { tag: String, uuid: String },
    #[error("release '{0}' not found: fetch it first (no dataset {1})")]
    ReleaseNotFound(String, String),
    #[error("release '{0}' is already on the pool ({1}); destroy it first with destroyrelease")]
    ReleaseExists(String, String),
    #[error("release '{0}' is being fetched by another request; wait for it to finish")]
    FetchRunning(String),
    #[error("cannot fetch release '{release}': {message}")]
    FetchFailed { release: String, message: String },
    #[error(
        "release '{0}' is incomplete: a fetch of it is running (wait for it), or was cut off (the daemon \
         removes it when it starts again; or destroyrelease it)"
    )]
    ReleaseIncomplete(String),
    #[error("jail {0} is running: stop it first")]
    JailRunning(String),
    #[error("jails are running: {}; stop them first", .0.join(", "))]
    JailsRunning(Vec<String>),
    #[error("cannot remove {what}: these jails depend on it: {}; destroy them first", .dependents.join(", "))]
    HasDependents { what: String, dependents: Vec<String> },
    #[error("refusing {prop}={value:?}: a jail's datasets are mounted only at {expected}")]
    MountpointOutside { prop: &'static str, value: String, expected: String },
    #[error(
        "refusing {0}: host hooks run as root on the host; API clients may set them only when the \
         configuration says allow_host_hooks = true"
    )]
    HostHook(String),
    #[error("too many commands are running in jails ({0}); try again when one has finished")]
    TooManyCommands(usize),
    #[error("refusing to touch {0}: it is outside the iocage datasets")]
    OutsideIocage(String),
    #[error("cannot create jail {uuid}: {step} failed: {cause}; everything it created was removed")]
    CreateFailed { uuid: String, step: &'static str, cause: Box<ActionError> },
    #[error("cannot {verb} {jail}: {step} failed: {message}")]
    Lifecycle { verb: &'static str, jail: String, step: String, message: String },
    #[error("jail {0} is not running: start it first")]
    NotRunning(String),
    #[error("the service is busy: {0}; try again in a few seconds")]
    Overloaded(String),
    #[error("cannot {what}: {message}")]
    Io { what: String, message: String },
    #[error(transparent)]
    Zfs(#[from] ZfsError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

impl ActionError {
    /// Whether the action was refused for load before it did anything
    /// (admission, or a read past its deadline): the API answers these
    /// with 503. A full libzfs queue met part-way through an action is
    /// reported in-band, as any other step's failure: the action may have
    /// had effects, and a "try again" would mislead.
    pub fn is_overload(&self) -> bool {
        matches!(self, ActionError::Overloaded(_))
    }
}
