//! The iocage model and its actions: properties and their formats, where
//! iocage keeps things on a pool, which pool is active, reading and finding
//! jails, typed requests, and the service that answers them.

pub mod autostart;
pub mod body;
pub(crate) mod create;
pub(crate) mod destroy;
pub(crate) mod download;
pub(crate) mod error;
pub(crate) mod extract;
pub(crate) mod fetch;
pub(crate) mod index;
pub(crate) mod jails;
pub(crate) mod layout;
pub(crate) mod lifecycle;
pub(crate) mod manifest;
pub(crate) mod names;
pub(crate) mod network;
pub(crate) mod pool;
pub(crate) mod progress;
pub mod props;
mod replies;
pub mod request;
pub(crate) mod service;
pub(crate) mod stored;
pub(crate) mod turns;
pub mod watch;

pub use crate::runtime::Usage;
pub use body::Body;
pub use error::ActionError;
pub use request::{Action, Request};
pub use service::{Iocage, JailUsage, PoolChoice, ServiceMetrics};
