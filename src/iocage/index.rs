//! The jail index: every jail's iocage properties, kept in memory between
//! requests and checked against ZFS with one cheap call.
//!
//! Reading 1000 jails means opening 1000 datasets; doing that on every
//! listjails is what made listings slow. ZFS appends to the pool's history
//! log for every change of a dataset's properties and every create,
//! destroy, rename, clone, snapshot and receive (whoever makes it: this
//! daemon, `zfs`, iocage), and never for reads or data writes. So the
//! index remembers where the log ended when it read the jails; while the
//! log has not grown (one ioctl to find out) and the jails dataset is the
//! same one (its guid), the index is current. Otherwise it is read again.
//! Only user properties are indexed: native ones such as `used` change
//! with data writes, which the log does not record, so they are read
//! fresh.

use std::sync::{Arc, Mutex};

use crate::zfs::{ErrorKind, Libzfs};

use super::error::ActionError;
use super::jails::{self, Jail, Natives};
use super::layout::Layout;

/// The jails as last read, and how to tell whether that is still current.
struct Snapshot {
    pool: String,
    /// guid of `POOL/iocage/jails`: a pool or dataset recreated under the
    /// same name starts a history of its own.
    guid: String,
    history_end: u64,
    jails: Arc<Vec<Jail>>,
}

#[derive(Default)]
pub struct Index {
    current: Mutex<Option<Snapshot>>,
}

impl Index {
    /// Every complete jail with its iocage properties (no native ones),
    /// from memory when nothing changed. Runs on the owner thread.
    pub fn jails(&self, lib: &Libzfs, layout: &Layout) -> Result<Arc<Vec<Jail>>, ActionError> {
        let guid = match lib.native_props(&layout.jails(), &["guid"]) {
            Ok(mut n) => n.remove("guid").and_then(|v| v.raw).unwrap_or_default(),
            Err(e) if e.kind == ErrorKind::NotFound => return Ok(Arc::new(Vec::new())),
            Err(e) => return Err(e.into()),
        };
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        let same = current.as_ref().filter(|s| s.pool == layout.pool() && s.guid == guid);
        let from = same.map_or(0, |s| s.history_end);
        // Read where the log ends *before* reading the jails: a change made
        // while they are read shows as growth next time.
        let end = lib.history_end(layout.pool(), from)?;
        if let Some(s) = same.filter(|s| s.history_end == end) {
            return Ok(s.jails.clone());
        }
        let jails = Arc::new(jails::read_all(lib, layout, Natives::None)?);
        *current = Some(Snapshot { pool: layout.pool().to_string(), guid, history_end: end, jails: jails.clone() });
        Ok(jails)
    }
}
