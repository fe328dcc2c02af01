//! Typed iocage requests, parsed from a request's `args` object.
//!
//! Parsing is in two steps with two kinds of failure, as the original API
//! had them: a missing or unknown `action` is a protocol error (400), while
//! a known action with missing or malformed keys is answered in-band with
//! `{"<action>": {"error": ...}}`.
//!
//! Here: the actions and the typed requests. Its parts: `parse` (the
//! action a request names, and the arguments of each action) and `args`
//! (one argument read and checked; createjail's `props` and `switches`).

mod args;
mod parse;

use crate::runtime::console::{Inlet, WinSize};
use crate::runtime::stream::Outlet;

pub use args::{MAX_EXEC_TIMEOUT, MAX_PROPS, parse_props};
pub use parse::{action_of, parse};

/// The actions of the sysadm iocage class (names are case-sensitive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    GetDefaultSettings,
    ListJails,
    GetJailSettings,
    Df,
    StartJail,
    StopJail,
    CapJail,
    CloneJail,
    CreateJail,
    DestroyJail,
    ExecJail,
    CleanJails,
    CleanReleases,
    CleanTemplates,
    CleanAll,
    ActivatePool,
    DeactivatePool,
    /// iocaged's own: the releases on the pool and who depends on them.
    ListReleases,
    /// iocaged's own: removes a release nothing depends on.
    DestroyRelease,
    /// iocaged's own: downloads, verifies and extracts a release.
    FetchRelease,
    /// iocaged's own: a login shell on a terminal in a running jail, over
    /// a WebSocket.
    Console,
}

impl Action {
    pub const ALL: [Action; 21] = [
        Action::GetDefaultSettings,
        Action::ListJails,
        Action::GetJailSettings,
        Action::Df,
        Action::StartJail,
        Action::StopJail,
        Action::CapJail,
        Action::CloneJail,
        Action::CreateJail,
        Action::DestroyJail,
        Action::ExecJail,
        Action::CleanJails,
        Action::CleanReleases,
        Action::CleanTemplates,
        Action::CleanAll,
        Action::ActivatePool,
        Action::DeactivatePool,
        Action::ListReleases,
        Action::DestroyRelease,
        Action::FetchRelease,
        Action::Console,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Action::GetDefaultSettings => "getdefaultsettings",
            Action::ListJails => "listjails",
            Action::GetJailSettings => "getjailsettings",
            Action::Df => "df",
            Action::StartJail => "startjail",
            Action::StopJail => "stopjail",
            Action::CapJail => "capjail",
            Action::CloneJail => "clonejail",
            Action::CreateJail => "createjail",
            Action::DestroyJail => "destroyjail",
            Action::ExecJail => "execjail",
            Action::CleanJails => "cleanjails",
            Action::CleanReleases => "cleanreleases",
            Action::CleanTemplates => "cleantemplates",
            Action::CleanAll => "cleanall",
            Action::ActivatePool => "activatepool",
            Action::DeactivatePool => "deactivatepool",
            Action::ListReleases => "listreleases",
            Action::DestroyRelease => "destroyrelease",
            Action::FetchRelease => "fetchrelease",
            Action::Console => "console",
        }
    }

    pub fn from_name(name: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.name() == name)
    }

    /// Whether the action changes anything (a read-only caller may not run
    /// it). `activatepool` without a pool only reads, but the role check
    /// happens before the arguments are looked at, so it counts as a write.
    pub fn is_write(self) -> bool {
        !matches!(
            self,
            Action::GetDefaultSettings
                | Action::ListJails
                | Action::GetJailSettings
                | Action::Df
                | Action::ListReleases
        )
    }
}

/// How execjail gives the command's output (its `output` argument).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shown {
    /// `"lines"` (or none): the original's shape, each line a key.
    Lines,
    /// `"lossless"`: also the whole stdout, stderr and exit code.
    Lossless,
    /// `"stream"`: pushed as it comes, over a WebSocket, to the outlet the
    /// API attaches ([`Request::stream_to`]); the reply has the ending.
    Stream(Option<Outlet>),
}

/// A parsed request with its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    GetDefaultSettings,
    ListJails,
    Df,
    /// `jail` + `prop`; `switches: "-r"` + `prop` for every jail; `jail`
    /// alone (or `prop: "all"`) for every property.
    GetJailSettings {
        jail: Option<String>,
        prop: Option<String>,
        all_jails: bool,
    },
    ActivatePool {
        pool: Option<String>,
    },
    DeactivatePool {
        pool: String,
    },
    /// `props` ("k=v k=v") and `switches` (`-e`, `-c`, `-b`, or none).
    CreateJail {
        props: PropList,
        kind: CreateKind,
        raw_props: String,
        raw_switches: String,
    },
    CloneJail {
        jail: String,
        props: PropList,
        raw_props: String,
    },
    DestroyJail {
        jail: String,
    },
    CleanJails,
    CleanReleases,
    CleanTemplates,
    CleanAll,
    StartJail {
        jail: String,
    },
    StopJail {
        jail: String,
    },
    CapJail {
        jail: String,
    },
    /// `jail`, `user`, `command`; `output` as [`Shown`] says; `timeout`
    /// (seconds, 1 to 86400) replaces the configured one.
    ExecJail {
        jail: String,
        user: String,
        command: String,
        output: Shown,
        timeout: Option<std::time::Duration>,
    },
    /// `remote: true`: what the mirror offers instead.
    ListReleases {
        remote: bool,
    },
    /// `release`; `lib32: true`; or `url` and `sha256` of a tarball.
    FetchRelease(super::fetch::Wanted),
    /// `release`: a name as createjail's `release=` takes it.
    DestroyRelease {
        release: String,
    },
    /// `jail`; `user` (root when not given); `rows` and `cols` (24 by 80
    /// when not given). `io`: attached by the API ([`Request::stream_to`]).
    Console {
        jail: String,
        user: String,
        size: WinSize,
        io: Option<(Outlet, Inlet)>,
    },
}

impl Request {
    /// The action this request is of.
    pub fn action(&self) -> Action {
        match self {
            Request::GetDefaultSettings => Action::GetDefaultSettings,
            Request::ListJails => Action::ListJails,
            Request::Df => Action::Df,
            Request::GetJailSettings { .. } => Action::GetJailSettings,
            Request::ActivatePool { .. } => Action::ActivatePool,
            Request::DeactivatePool { .. } => Action::DeactivatePool,
            Request::CreateJail { .. } => Action::CreateJail,
            Request::CloneJail { .. } => Action::CloneJail,
            Request::DestroyJail { .. } => Action::DestroyJail,
            Request::CleanJails => Action::CleanJails,
            Request::CleanReleases => Action::CleanReleases,
            Request::CleanTemplates => Action::CleanTemplates,
            Request::CleanAll => Action::CleanAll,
            Request::StartJail { .. } => Action::StartJail,
            Request::StopJail { .. } => Action::StopJail,
            Request::CapJail { .. } => Action::CapJail,
            Request::ExecJail { .. } => Action::ExecJail,
            Request::ListReleases { .. } => Action::ListReleases,
            Request::FetchRelease(_) => Action::FetchRelease,
            Request::DestroyRelease { .. } => Action::DestroyRelease,
            Request::Console { .. } => Action::Console,
        }
    }

    /// Whether it asks for output streamed as it comes (execjail's
    /// `"output":"stream"`, a console), which needs an outlet
    /// ([`Request::stream_to`]).
    pub fn streams(&self) -> bool {
        matches!(self, Request::ExecJail { output: Shown::Stream(_), .. } | Request::Console { .. })
    }

    /// Whether it is a console, which needs an inlet too.
    pub fn is_console(&self) -> bool {
        matches!(self, Request::Console { .. })
    }

    /// Gives a streaming request the outlet its output goes to, and a
    /// console its input (without one, the service refuses it).
    pub fn stream_to(&mut self, outlet: Outlet, inlet: Option<Inlet>) {
        match self {
            Request::ExecJail { output: Shown::Stream(o), .. } => *o = Some(outlet),
            Request::Console { io, .. } => *io = inlet.map(|i| (outlet, i)),
            _ => {}
        }
    }
}

/// `k=v` pairs in the order given.
pub type PropList = Vec<(String, String)>;

/// What createjail makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateKind {
    /// No switch: an independent copy of the release (send/receive).
    Thick,
    /// `-c`: a ZFS clone of a snapshot of the release.
    Clone,
    /// `-b`: read-only clones of the release's base pieces.
    Base,
    /// `-e`: datasets and properties only.
    Empty,
}

impl CreateKind {
    /// The jail's `type` property.
    pub fn jail_type(self) -> &'static str {
        match self {
            CreateKind::Thick => "jail",
            CreateKind::Clone => "clonejail",
            CreateKind::Base => "basejail",
            CreateKind::Empty => "emptyjail",
        }
    }
}
