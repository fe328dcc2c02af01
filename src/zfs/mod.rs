//! Safe access to ZFS through libzfs.
//!
//! - [`Libzfs`] wraps one `libzfs_handle_t` and offers the operations the
//!   service needs (list, read and set properties, create, snapshot, clone,
//!   destroy, mount, rename, pools). It is confined to one thread.
//! - [`Zfs`] is the handle the rest of the program holds: it starts that
//!   thread and sends it work, from async or blocking code. The work is
//!   written against [`Backend`], the trait `Libzfs` implements, so that
//!   host tests can run it against an in-memory pool.
//! - [`follow`] follows ZFS's event queue on a thread of its own, so that
//!   reads can know nothing changed without asking ([`Changes`]).
//! - [`copy_snapshot`] copies a snapshot with a send stream, written by a
//!   helper process of the daemon's own binary (`iocaged zfs-send`).
//! - Every failure is a [`ZfsError`] naming the operation, the dataset and
//!   libzfs's own description.

mod backend;
mod error;
mod events;
mod libzfs;
mod nvlist;
mod owner;
mod stream;

pub use backend::Backend;
pub use error::{ErrorKind, Result, ZfsError};
pub use events::{Changes, TRUST_AGE, follow};
pub use libzfs::{DatasetProps, HistoryTail, Libzfs, NativeValue, PoolInfo, PropSource, UserProp, Versions};
pub use owner::{Copier, Zfs};
pub use stream::{OnProgress, Progress, RELAY_HELPER, SEND_HELPER, copy_snapshot, relay_main, send_main};

/// The OpenZFS version iocaged was built against (from its headers).
pub const OPENZFS_BUILD_VERSION: &str = iocaged_sys::OPENZFS_BUILD_VERSION;
