//! An in-memory ZFS for host tests: pools, filesystems, snapshots and
//! clones, user and native properties, a history log, and directories.
//!
//! It implements `iocaged::zfs::Backend` the way `Libzfs` behaves where
//! the iocage layer can tell (`tests/guest_zfs.rs` pins the real one down):
//! errors of the same kinds (`NotFound`, `Exists`, `HasDependents`,
//! `InvalidProperty`), inherited user properties with their source,
//! `mountpoint` inherited as a path, a destroy refused while anything
//! depends on the dataset, a recursive destroy refused before it starts
//! when a clone outside depends on it.
//!
//! Files are real: the pool is imported under an `altroot` (a temporary
//! directory), so a mountpoint reads as `<altroot>/iocage/jails/<uuid>`
//! as it does on a pool imported with `-R`. Mounting makes the directory;
//! a clone's (or a received copy's) files, its origin's, appear when it is
//! first mounted, so a service that forgot the mount finds none;
//! destroying a mounted filesystem removes its directory.
//!
//! A test can make one operation fail ([`FakeZfs::fail`]) to see the
//! service undo what it did.
//!
//! Here: the pool's state and what a test does with it; `backend.rs`: the
//! `Backend` the owner thread runs against.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use iocaged::zfs::{
    Copier, DatasetProps, ErrorKind, NativeValue, OnProgress, Progress, PropSource, Result, UserProp, ZfsError,
};

mod backend;

pub use backend::Backed;

/// Native properties that ZFS computes: never set, source none.
const READ_ONLY: &[&str] = &["available", "compressratio", "guid", "origin", "referenced", "used"];

/// Native properties a child takes from its parent when not set on it
/// (`quota`, `reservation`, `canmount` do not inherit).
const INHERITABLE: &[&str] =
    &["atime", "checksum", "compression", "dedup", "jailed", "mountpoint", "readonly", "recordsize", "sync"];

/// Whether `value` is one ZFS takes for the native property `prop` (the
/// checks the tests can reach: sizes, on/off, compression, mountpoints).
fn valid_native(prop: &str, value: &str) -> bool {
    let size = |v: &str| {
        let n = v.trim_end_matches(['K', 'M', 'G', 'T', 'P', 'k', 'm', 'g', 't', 'p']);
        !n.is_empty() && n.parse::<f64>().is_ok()
    };
    match prop {
        "quota" | "reservation" => value == "none" || size(value),
        "recordsize" => size(value),
        "mountpoint" => value.starts_with('/') || matches!(value, "none" | "legacy"),
        "compression" => {
            matches!(value, "on" | "off" | "lz4" | "gzip" | "zle" | "lzjb" | "zstd") || value.starts_with("gzip-")
        }
        "canmount" => matches!(value, "on" | "off" | "noauto"),
        "sync" => matches!(value, "standard" | "always" | "disabled"),
        _ => matches!(value, "on" | "off"),
    }
}

/// Native properties the fake knows; others are refused as libzfs does.
const NATIVE: &[&str] = &[
    "available",
    "canmount",
    "compression",
    "compressratio",
    "dedup",
    "guid",
    "mountpoint",
    "origin",
    "quota",
    "readonly",
    "referenced",
    "reservation",
    "used",
    "atime",
    "recordsize",
    "checksum",
    "sync",
    "jailed",
];

#[derive(Debug, Clone, Default)]
struct Dataset {
    /// User properties set here.
    user: BTreeMap<String, String>,
    /// Native properties set here.
    native: BTreeMap<String, String>,
    /// The snapshot a clone was made from.
    origin: Option<String>,
    mounted: bool,
    /// Where the files it shows when first mounted come from (a clone's
    /// origin, a received copy's source).
    seed: Option<PathBuf>,
    guid: u64,
}

/// The pool's state, shared by the owner thread's backend and the test.
#[derive(Debug, Default)]
pub struct State {
    altroot: PathBuf,
    /// Pools and their `comment`.
    pools: BTreeMap<String, Option<String>>,
    datasets: BTreeMap<String, Dataset>,
    /// Per pool: each record's dataset (none for a pool's own), and
    /// whether it was a rename.
    history: BTreeMap<String, Vec<(Option<String>, bool)>>,
    /// Per pool: how many of its oldest records the log's ring has
    /// overwritten (a read from before them starts after them).
    overwritten: BTreeMap<String, usize>,
    next_guid: u64,
    /// (operation, name prefix): the next such call fails.
    fail: Vec<(&'static str, String)>,
    /// Name prefixes whose mounts succeed without showing a directory.
    hollow: Vec<String>,
    /// (operation, name prefix, gate): such calls wait until the gate opens.
    held: Vec<(&'static str, String, Gate)>,
}

/// A handle on the fake: give [`FakeZfs::backend`] to the owner thread,
/// keep this to set the pool up and look at it.
#[derive(Clone)]
pub struct FakeZfs(Arc<Mutex<State>>);

fn err(op: &'static str, name: &str, kind: ErrorKind, why: impl Into<String>) -> ZfsError {
    // ZfsError's constructor is the crate's; the struct's fields are public.
    ZfsError { op, target: name.to_string(), kind, description: why.into() }
}

fn parent(name: &str) -> Option<&str> {
    name.rsplit_once('/').map(|(p, _)| p)
}

fn pool_of(name: &str) -> &str {
    name.split(['/', '@']).next().unwrap_or(name)
}

/// Whether `n` is `name` or inside its tree (children, snapshots).
fn inside(n: &str, name: &str) -> bool {
    n == name || n.strip_prefix(name).is_some_and(|rest| rest.starts_with('/') || rest.starts_with('@'))
}

fn valid_name(name: &str) -> bool {
    let (fs, snap) = name.split_once('@').unwrap_or((name, ""));
    let ok = |c: &str| !c.is_empty() && c.chars().all(|ch| ch.is_ascii_alphanumeric() || "-_.:".contains(ch));
    fs.split('/').all(ok) && (snap.is_empty() && !name.contains('@') || ok(snap)) && name.len() < 256
}

impl FakeZfs {
    /// One pool, `pool`, empty, with its files under `altroot`.
    pub fn new(pool: &str, altroot: &Path) -> FakeZfs {
        let mut s = State { altroot: altroot.to_path_buf(), next_guid: 1000, ..State::default() };
        s.pools.insert(pool.to_string(), None);
        s.datasets.insert(pool.to_string(), Dataset { mounted: true, ..Dataset::default() });
        FakeZfs(Arc::new(Mutex::new(s)))
    }

    /// What the owner thread runs against.
    pub fn backend(&self) -> Backed {
        Backed(self.clone())
    }

    /// The copy a thick create makes (`Zfs::with_copier`): what a send
    /// stream received as `target` would leave, a new dataset with the
    /// snapshot's files and the snapshot `target`.
    pub fn copier(&self) -> Copier {
        let fake = self.clone();
        Arc::new(move |snapshot: &str, target: &str, on_progress: OnProgress| {
            let mut s = fake.state();
            s.take_failure("copy", target)?;
            s.get("copy", snapshot)?;
            let (fs, _) = target
                .split_once('@')
                .ok_or_else(|| err("copy", target, ErrorKind::InvalidName, "a snapshot name has an '@'"))?;
            s.insert("receive", fs, None, &[])?;
            s.seed(fs, snapshot);
            s.insert("receive", target, None, &[])?;
            on_progress(Progress::Done { bytes: 98304 });
            Ok(())
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes the next `op` (the trait method's name, or `copy`) on a name
    /// starting with `prefix` fail.
    pub fn fail(&self, op: &'static str, prefix: &str) {
        self.state().fail.push((op, prefix.to_string()));
    }

    /// Every `op` on a name starting with `prefix` waits until the gate
    /// returned opens (as a ZFS write waits for a sync), at most 10 s.
    pub fn hold(&self, op: &'static str, prefix: &str) -> Gate {
        let gate = Gate::default();
        self.state().held.push((op, prefix.to_string(), gate.clone()));
        gate
    }

    /// The pool's log as ZFS's ring leaves it once it has gone round: the
    /// records so far are overwritten, its end stays where it is.
    pub fn overwrite_history(&self, pool: &str) {
        let mut s = self.state();
        let len = s.history.get(pool).map_or(0, Vec::len);
        s.overwritten.insert(pool.to_string(), len);
    }

    /// Mounts of names starting with `prefix` succeed but show no
    /// directory (a mount that did not happen), so that what the service
    /// writes there fails.
    pub fn hollow(&self, prefix: &str) {
        self.state().hollow.push(prefix.to_string());
    }

    /// Every dataset and snapshot with its local properties, and each
    /// pool's comment: what a read must leave as it was.
    pub fn dump(&self) -> String {
        let s = self.state();
        let mut out = format!("{:?}\nhistory {:?}\n", s.pools, s.history.values().map(Vec::len).collect::<Vec<_>>());
        for (n, d) in &s.datasets {
            out.push_str(&format!("{n} {:?} {:?} {:?} mounted={}\n", d.user, d.native, d.origin, d.mounted));
        }
        out
    }

    /// The names of every dataset and snapshot.
    pub fn names(&self) -> Vec<String> {
        self.state().datasets.keys().cloned().collect()
    }

    /// A user or native property as set on `name` (not inherited).
    pub fn local(&self, name: &str, prop: &str) -> Option<String> {
        let s = self.state();
        let d = s.datasets.get(name)?;
        d.user.get(prop).or_else(|| d.native.get(prop)).cloned()
    }

    /// Whether `name` is mounted.
    pub fn mounted(&self, name: &str) -> bool {
        self.state().datasets.get(name).is_some_and(|d| d.mounted)
    }

    /// Where `name` is (or would be) mounted, as the service sees it.
    pub fn dir(&self, name: &str) -> Option<PathBuf> {
        self.state().mountpoint(name).map(PathBuf::from)
    }
}

impl State {
    fn take_failure(&mut self, op: &'static str, name: &str) -> Result<()> {
        match self.fail.iter().position(|(o, prefix)| *o == op && name.starts_with(prefix.as_str())) {
            Some(i) => {
                self.fail.remove(i);
                Err(err(op, name, ErrorKind::Other, "failed as the test asked"))
            }
            None => Ok(()),
        }
    }

    fn get(&self, op: &'static str, name: &str) -> Result<&Dataset> {
        self.datasets.get(name).ok_or_else(|| err(op, name, ErrorKind::NotFound, "dataset does not exist"))
    }

    fn log(&mut self, name: &str, renamed: bool) {
        self.history.entry(pool_of(name).to_string()).or_default().push((Some(name.to_string()), renamed));
    }

    /// The printed mountpoint: set here, else the parent's plus the last
    /// component; `none` and `legacy` inherit as they are.
    fn mountpoint(&self, name: &str) -> Option<String> {
        if name.contains('@') {
            return None;
        }
        let d = self.datasets.get(name)?;
        if let Some(m) = d.native.get("mountpoint") {
            if m.starts_with('/') {
                return Some(format!("{}{}", self.altroot.display(), m.trim_end_matches('/')));
            }
            return Some(m.clone());
        }
        match parent(name) {
            None => Some(format!("{}/{name}", self.altroot.display())),
            Some(p) => {
                let pm = self.mountpoint(p)?;
                if pm == "none" || pm == "legacy" {
                    Some(pm)
                } else {
                    Some(format!("{pm}/{}", name.rsplit('/').next().unwrap_or(name)))
                }
            }
        }
    }

    fn source_of(&self, name: &str, prop: &str) -> PropSource {
        if READ_ONLY.contains(&prop) {
            return PropSource::None;
        }
        if !INHERITABLE.contains(&prop) {
            let local = self.datasets.get(name).is_some_and(|d| d.native.contains_key(prop));
            return if local { PropSource::Local } else { PropSource::Default };
        }
        let mut at = Some(name);
        while let Some(n) = at {
            if self.datasets.get(n).is_some_and(|d| d.native.contains_key(prop)) {
                return if n == name { PropSource::Local } else { PropSource::Inherited };
            }
            at = parent(n);
        }
        PropSource::Default
    }

    /// A native property's value: set here, else (when it inherits) on the
    /// nearest ancestor that sets it.
    fn inherited_native(&self, name: &str, prop: &str) -> Option<String> {
        if !INHERITABLE.contains(&prop) {
            return self.datasets.get(name).and_then(|d| d.native.get(prop)).cloned();
        }
        let mut at = Some(name.split('@').next().unwrap_or(name));
        while let Some(n) = at {
            if let Some(v) = self.datasets.get(n).and_then(|d| d.native.get(prop)) {
                return Some(v.clone());
            }
            at = parent(n);
        }
        None
    }

    fn native(&self, name: &str, prop: &str) -> Result<NativeValue> {
        let d = self.get("read properties of", name)?;
        let both = |s: &str| (Some(s.to_string()), Some(s.to_string()));
        let (printed, raw) = match prop {
            "mountpoint" => {
                let m = self.mountpoint(name);
                (m.clone(), m)
            }
            "origin" => (d.origin.clone(), d.origin.clone()),
            "guid" => both(&d.guid.to_string()),
            "used" | "referenced" => (Some("96K".into()), Some("98304".into())),
            "available" => (Some("7.50G".into()), Some("8053063680".into())),
            "compressratio" => (Some("1.00x".into()), Some("1.00".into())),
            "quota" | "reservation" => match self.inherited_native(name, prop) {
                Some(v) if v != "none" && v != "0" => both(&v),
                _ => (Some("none".into()), Some("0".into())),
            },
            p if NATIVE.contains(&p) => {
                let default = match p {
                    "canmount" | "atime" | "checksum" => "on",
                    "recordsize" => "128K",
                    "sync" => "standard",
                    _ => "off",
                };
                both(&self.inherited_native(name, p).unwrap_or_else(|| default.into()))
            }
            other => {
                return Err(err(
                    "read property of",
                    name,
                    ErrorKind::InvalidProperty,
                    format!("'{other}' is not a native ZFS property"),
                ));
            }
        };
        Ok(NativeValue { printed, raw, source: self.source_of(name, prop) })
    }

    fn user(&self, name: &str) -> Result<BTreeMap<String, UserProp>> {
        self.get("read user properties of", name)?;
        let mut out = BTreeMap::new();
        // Nearest first: a value set closer wins.
        let mut at = Some(name);
        while let Some(n) = at {
            if let Some(d) = self.datasets.get(n) {
                for (k, v) in &d.user {
                    out.entry(k.clone()).or_insert_with(|| UserProp { value: v.clone(), source: n.to_string() });
                }
            }
            // A snapshot inherits from its filesystem.
            at = match n.split_once('@') {
                Some((fs, _)) => Some(fs),
                None => parent(n),
            };
        }
        Ok(out)
    }

    /// One dataset's user properties and the named native ones.
    fn props(&self, name: &str, native: &[&str]) -> Result<DatasetProps> {
        let user = self.user(name)?;
        let native = native.iter().map(|p| Ok((p.to_string(), self.native(name, p)?))).collect::<Result<_>>()?;
        Ok(DatasetProps { name: name.to_string(), user, native })
    }

    /// Checks every property first, then sets them all (libzfs sets a
    /// list in one ioctl: all or none).
    fn set(&mut self, op: &'static str, name: &str, props: &[(&str, &str)]) -> Result<()> {
        for (k, v) in props {
            let user = k.contains(':');
            if !user && !NATIVE.contains(k) || READ_ONLY.contains(k) {
                return Err(err(op, name, ErrorKind::InvalidProperty, format!("invalid property '{k}'")));
            }
            if !user && (name.contains('@') || !valid_native(k, v)) {
                return Err(err(op, name, ErrorKind::InvalidProperty, format!("bad {k} value '{v}'")));
            }
            if user && v.len() > 8191 {
                return Err(err(op, name, ErrorKind::InvalidProperty, format!("property '{k}' is too long")));
            }
        }
        let d =
            self.datasets.get_mut(name).ok_or_else(|| err(op, name, ErrorKind::NotFound, "dataset does not exist"))?;
        for (k, v) in props {
            let map = if k.contains(':') { &mut d.user } else { &mut d.native };
            map.insert(k.to_string(), v.to_string());
        }
        Ok(())
    }

    fn insert(&mut self, op: &'static str, name: &str, origin: Option<String>, props: &[(&str, &str)]) -> Result<()> {
        if !valid_name(name) {
            return Err(err(op, name, ErrorKind::InvalidName, "invalid dataset name"));
        }
        if self.datasets.contains_key(name) {
            return Err(err(op, name, ErrorKind::Exists, "dataset already exists"));
        }
        let base = name.split('@').next().unwrap_or(name);
        let parent = if name.contains('@') { Some(base) } else { parent(name) };
        if !parent.is_some_and(|p| self.datasets.contains_key(p)) {
            return Err(err(op, name, ErrorKind::NotFound, "parent does not exist"));
        }
        self.next_guid += 1;
        self.datasets.insert(name.to_string(), Dataset { origin, guid: self.next_guid, ..Dataset::default() });
        if let Err(e) = self.set(op, name, props) {
            self.datasets.remove(name);
            return Err(e);
        }
        self.log(name, false);
        Ok(())
    }

    /// `name` shows `snapshot`'s filesystem's files when first mounted.
    fn seed(&mut self, name: &str, snapshot: &str) {
        let from = self.mountpoint(snapshot.split('@').next().unwrap_or(snapshot)).map(PathBuf::from);
        if let Some(d) = self.datasets.get_mut(name) {
            d.seed = from.filter(|f| f.is_dir());
        }
    }

    fn children(&self, name: &str) -> Vec<String> {
        let prefix = format!("{name}/");
        self.datasets
            .keys()
            .filter(|n| n.strip_prefix(&prefix).is_some_and(|r| !r.contains('/') && !r.contains('@')))
            .cloned()
            .collect()
    }

    fn snapshots(&self, name: &str) -> Vec<String> {
        let prefix = format!("{name}@");
        self.datasets.keys().filter(|n| n.starts_with(&prefix)).cloned().collect()
    }

    fn clones(&self, snap: &str) -> Vec<String> {
        self.datasets.iter().filter(|(_, d)| d.origin.as_deref() == Some(snap)).map(|(n, _)| n.clone()).collect()
    }

    fn dependents(&self, name: &str) -> Vec<String> {
        if name.contains('@') {
            self.clones(name)
        } else {
            let mut deps = self.children(name);
            deps.extend(self.snapshots(name));
            deps
        }
    }

    fn destroy(&mut self, name: &str) -> Result<()> {
        self.get("destroy", name)?;
        let deps = self.dependents(name);
        if !deps.is_empty() {
            return Err(err(
                "destroy",
                name,
                ErrorKind::HasDependents,
                format!("it has dependents: {}", deps.join(", ")),
            ));
        }
        let dir = self.mountpoint(name).filter(|m| m.starts_with('/'));
        if let Some(d) = self.datasets.remove(name) {
            if d.mounted {
                if let Some(dir) = dir {
                    let _ = std::fs::remove_dir_all(dir);
                }
            }
        }
        self.log(name, false);
        Ok(())
    }

    /// `name`, its descendants and all their snapshots.
    fn tree(&self, name: &str) -> Result<Vec<String>> {
        self.get("list", name)?;
        Ok(self.datasets.keys().filter(|n| inside(n, name)).cloned().collect())
    }

    fn outside_clones(&self, tree: &[String], names: &[String]) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for snap in tree.iter().filter(|n| n.contains('@')) {
            for c in self.clones(snap) {
                if !names.iter().any(|n| inside(&c, n)) {
                    out.push((c, snap.clone()));
                }
            }
        }
        out
    }
}

/// What held calls wait for ([`FakeZfs::hold`]).
#[derive(Debug, Clone, Default)]
pub struct Gate(std::sync::Arc<(Mutex<bool>, std::sync::Condvar)>);

impl Gate {
    /// Lets every held call (and every later one) go on.
    pub fn open(&self) {
        *self.0.0.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.0.1.notify_all();
    }

    /// Waits until the gate is open, at most 10 s (a test that forgets to
    /// open it fails rather than hangs).
    fn pass(&self) {
        let open = self.0.0.lock().unwrap_or_else(|p| p.into_inner());
        let _ = self.0.1.wait_timeout_while(open, std::time::Duration::from_secs(10), |o| !*o);
    }
}
