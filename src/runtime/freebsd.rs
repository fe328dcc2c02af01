//! FreeBSD runtime: jails are jail(2) jails, found with jail_get(2) through
//! the `jail` crate.

use jail::RunningJail as KernelJail;

use super::{RunningJail, Runtime, RuntimeError};

pub struct FreeBsd;

impl FreeBsd {
    pub fn new() -> Self {
        FreeBsd
    }
}

impl Runtime for FreeBsd {
    fn running(&self) -> Result<Vec<RunningJail>, RuntimeError> {
        // A jail that vanishes between jail_nextjid and reading its name is
        // simply no longer running: skip it.
        Ok(KernelJail::all()
            .filter_map(|j| j.name().ok().map(|name| RunningJail { name, jid: i64::from(j.jid) }))
            .collect())
    }
}
