//! Copying a snapshot into a new dataset with a ZFS send stream
//! (libzfs_core's `lzc_send` into a pipe, `lzc_receive` out of it), the
//! native equivalent of `zfs send SNAP | zfs recv TARGET`.
//!
//! libzfs_core is thread-safe (it is a thin layer over ioctls on /dev/zfs),
//! unlike libzfs, so a copy runs on threads of its own and does not hold up
//! the libzfs owner thread while the data moves.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::ptr;

use iocaged_sys as sys;

use super::error::{ErrorKind, Result, ZfsError};

fn errno_error(op: &'static str, target: &str, rc: i32) -> ZfsError {
    let kind = match rc {
        libc::ENOENT => ErrorKind::NotFound,
        libc::EEXIST => ErrorKind::Exists,
        libc::EBUSY => ErrorKind::Busy,
        _ => ErrorKind::Other,
    };
    ZfsError::new(op, target, kind, std::io::Error::from_raw_os_error(rc).to_string())
}

/// Receives a full stream of `snapshot` as the new snapshot `target`
/// (`pool/new/dataset@snap`), creating `pool/new/dataset`. Blocks until the
/// copy is done; call it from a blocking thread.
pub fn copy_snapshot(snapshot: &str, target: &str) -> Result<()> {
    const OP: &str = "copy";
    let bad = |n: &str| ZfsError::new(OP, n, ErrorKind::InvalidName, "name contains a NUL byte");
    let snap = CString::new(snapshot).map_err(|_| bad(snapshot))?;
    let dest = CString::new(target).map_err(|_| bad(target))?;
    let (rd, wr): (OwnedFd, OwnedFd) =
        nix::unistd::pipe().map_err(|e| ZfsError::new(OP, snapshot, ErrorKind::Other, format!("pipe: {e}")))?;

    // SAFETY: libzfs_core_init is reference-counted and thread-safe; it is
    // paired with the fini below.
    let rc = unsafe { sys::libzfs_core_init() };
    if rc != 0 {
        return Err(errno_error(OP, snapshot, rc));
    }
    let sender = std::thread::Builder::new().name("zfs-send".into()).spawn(move || {
        // SAFETY: valid C string; `wr` is an open pipe end owned by this
        // thread until the call returns; NULL "from" means a full stream.
        let rc = unsafe { sys::lzc_send(snap.as_ptr(), ptr::null(), wr.as_raw_fd(), 0) };
        drop(wr); // end of stream for the receiver
        rc
    });
    let sender = match sender {
        Ok(s) => s,
        Err(e) => {
            // SAFETY: pairs the init above.
            unsafe { sys::libzfs_core_fini() };
            return Err(ZfsError::new(OP, snapshot, ErrorKind::Other, format!("cannot start the sender: {e}")));
        }
    };
    // SAFETY: valid C string; NULL props and origin; `rd` stays open for
    // the whole call.
    let received = unsafe {
        sys::lzc_receive(
            dest.as_ptr(),
            ptr::null_mut(),
            ptr::null(),
            sys::boolean_t::B_FALSE,
            sys::boolean_t::B_FALSE,
            rd.as_raw_fd(),
        )
    };
    // A failed receive stops reading: close our end so the sender ends too.
    drop(rd);
    let sent = sender.join().unwrap_or(libc::EIO);
    // SAFETY: pairs the init above.
    unsafe { sys::libzfs_core_fini() };
    if received != 0 {
        return Err(errno_error("receive into", target, received));
    }
    if sent != 0 {
        return Err(errno_error("send", snapshot, sent));
    }
    Ok(())
}
