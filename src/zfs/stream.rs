//! Copying a snapshot into a new dataset with a ZFS send stream
//! (libzfs_core's `lzc_send` into a pipe, `lzc_receive` out of it), the
//! native equivalent of `zfs send SNAP | zfs recv TARGET`.
//!
//! libzfs_core is thread-safe (it is a thin layer over ioctls on /dev/zfs),
//! unlike libzfs, so a copy runs on threads of its own and does not hold up
//! the libzfs owner thread while the data moves.
//!
//! Waits are bounded where they can be: the pipe is close-on-exec (a
//! process forked meanwhile, such as a jail helper, must not keep an end
//! open, or the sender would block on a pipe nobody reads), the receiving
//! side closes its end as soon as `lzc_receive` returns (which ends a send
//! still writing with `EPIPE`), and then waits for the sender for at most
//! [`SENDER_GRACE`]. Each thread holds its own libzfs_core reference, so a
//! sender given up on never outlives the library state it uses.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::ptr;
use std::sync::mpsc;
use std::time::Duration;

use iocaged_sys as sys;

use super::error::{ErrorKind, Result, ZfsError};

/// How long the copy waits for the sending thread once the receive has
/// returned. The sender has then either written its last record or been
/// told by `EPIPE` that nobody reads, so it ends at once; this bound only
/// matters if the kernel does not return from the send.
const SENDER_GRACE: Duration = Duration::from_secs(30);

fn errno_error(op: &'static str, target: &str, rc: i32) -> ZfsError {
    let kind = match rc {
        libc::ENOENT => ErrorKind::NotFound,
        libc::EEXIST => ErrorKind::Exists,
        libc::EBUSY => ErrorKind::Busy,
        _ => ErrorKind::Other,
    };
    ZfsError::new(op, target, kind, std::io::Error::from_raw_os_error(rc).to_string())
}

/// Runs `f` between `libzfs_core_init` and `libzfs_core_fini` on the
/// calling thread; the init's error code if it fails.
fn with_core<T>(f: impl FnOnce() -> T) -> std::result::Result<T, i32> {
    // SAFETY: libzfs_core_init is reference-counted and thread-safe; it is
    // paired with the fini below on every path.
    let rc = unsafe { sys::libzfs_core_init() };
    if rc != 0 {
        return Err(rc);
    }
    let out = f();
    // SAFETY: pairs the successful init above.
    unsafe { sys::libzfs_core_fini() };
    Ok(out)
}

/// The pipe the stream goes through: close-on-exec at creation, so that no
/// process forked by another thread meanwhile inherits an end.
fn stream_pipe() -> nix::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
}

/// Receives a full stream of `snapshot` as the new snapshot `target`
/// (`pool/new/dataset@snap`), creating `pool/new/dataset`. Blocks until the
/// copy is done; call it from a blocking thread.
pub fn copy_snapshot(snapshot: &str, target: &str) -> Result<()> {
    const OP: &str = "copy";
    let bad = |n: &str| ZfsError::new(OP, n, ErrorKind::InvalidName, "name contains a NUL byte");
    let snap = CString::new(snapshot).map_err(|_| bad(snapshot))?;
    let dest = CString::new(target).map_err(|_| bad(target))?;
    let (rd, wr) = stream_pipe().map_err(|e| ZfsError::new(OP, snapshot, ErrorKind::Other, format!("pipe: {e}")))?;

    let (done_tx, done_rx) = mpsc::sync_channel::<i32>(1);
    let sender = std::thread::Builder::new().name("zfs-send".into()).spawn(move || {
        let rc = with_core(|| {
            // SAFETY: valid C string; `wr` is an open pipe end owned by this
            // thread until the call returns; NULL "from" means a full stream.
            unsafe { sys::lzc_send(snap.as_ptr(), ptr::null(), wr.as_raw_fd(), 0) }
        })
        .unwrap_or_else(|init| init);
        drop(wr); // end of stream for the receiver
        // The receiving side may have given up waiting: nobody to tell then.
        let _ = done_tx.send(rc);
    });
    if let Err(e) = sender {
        return Err(ZfsError::new(OP, snapshot, ErrorKind::Other, format!("cannot start the sender: {e}")));
    }
    let received = with_core(|| {
        // SAFETY: valid C string; NULL props and origin; `rd` stays open
        // for the whole call.
        unsafe {
            sys::lzc_receive(
                dest.as_ptr(),
                ptr::null_mut(),
                ptr::null(),
                sys::boolean_t::B_FALSE,
                sys::boolean_t::B_FALSE,
                rd.as_raw_fd(),
            )
        }
    })
    .unwrap_or_else(|init| init);
    // A failed receive stops reading: close our end so the sender ends too.
    drop(rd);
    let sent = match done_rx.recv_timeout(SENDER_GRACE) {
        Ok(rc) => rc,
        // The thread ended without a word: it panicked.
        Err(mpsc::RecvTimeoutError::Disconnected) => libc::EIO,
        Err(mpsc::RecvTimeoutError::Timeout) => {
            tracing::error!(snapshot, "the send did not end {SENDER_GRACE:?} after the receive; left running");
            return Err(ZfsError::new(
                "send",
                snapshot,
                ErrorKind::Other,
                format!("the send did not end within {} s of the receive", SENDER_GRACE.as_secs()),
            ));
        }
    };
    if received != 0 {
        return Err(errno_error("receive into", target, received));
    }
    if sent != 0 {
        return Err(errno_error("send", snapshot, sent));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_pipe_is_not_inherited_by_children() {
        let (rd, wr) = stream_pipe().unwrap();
        for fd in [&rd, &wr] {
            let flags = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFD).unwrap();
            assert!(
                nix::fcntl::FdFlag::from_bits_truncate(flags).contains(nix::fcntl::FdFlag::FD_CLOEXEC),
                "a pipe end without FD_CLOEXEC would be kept open by any child forked during a copy"
            );
        }
    }
}
