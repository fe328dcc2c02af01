//! FreeBSD: jail(2), rctl, nmount. The jail parameter list ([`params`](crate::runtime::freebsd::params))
//! and the record of what a start mounted ([`record`](crate::runtime::freebsd::record)) are plain code,
//! built and tested on every platform; the runtime itself and its system
//! calls exist on FreeBSD only.

pub mod ifreq;
pub mod params;
pub mod record;

#[cfg(target_os = "freebsd")]
mod mount;
#[cfg(target_os = "freebsd")]
mod net;
#[cfg(target_os = "freebsd")]
mod rt;
#[cfg(target_os = "freebsd")]
mod sys;
#[cfg(target_os = "freebsd")]
pub mod vnet;

#[cfg(target_os = "freebsd")]
pub use rt::FreeBsd;
#[cfg(target_os = "freebsd")]
pub(crate) use rt::enter;
#[cfg(target_os = "freebsd")]
pub(crate) use sys::{reap_acquire, reap_kill};
