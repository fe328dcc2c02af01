//! The iocage model and its actions: properties and their formats, where
//! iocage keeps things on a pool, which pool is active, reading and finding
//! jails, typed requests, and the service that answers them.

pub mod autostart;
pub mod body;
pub mod create;
pub mod destroy;
pub mod download;
pub mod error;
pub mod extract;
pub mod fetch;
pub mod index;
pub mod jails;
pub mod layout;
pub mod lifecycle;
pub mod manifest;
pub mod names;
pub mod network;
pub mod pool;
pub mod progress;
pub mod props;
mod replies;
pub mod request;
pub mod service;
pub mod stored;
pub mod turns;
pub mod watch;

pub use crate::runtime::Usage;
pub use body::Body;
pub use error::ActionError;
pub use request::{Action, Request};
pub use service::{Iocage, JailUsage, PoolChoice, ServiceMetrics};
