//! Copying a snapshot into a new dataset with a ZFS send stream, the
//! native equivalent of `zfs send SNAP | zfs recv TARGET`: a helper process
//! (`iocaged zfs-send SNAP`, [`send_main`]) writes the stream with
//! libzfs_core's `lzc_send` into a pipe, and the calling thread receives it
//! with `lzc_receive`. libzfs_core is thread-safe (a thin layer over ioctls
//! on /dev/zfs), so a copy does not hold up the libzfs owner thread.
//!
//! Why the two ends live in two processes: a pipe end stays open as long as
//! any thread of a process that holds it is alive. With both ends in the
//! daemon, a daemon killed during a copy (SIGKILL, or its own exit while a
//! copy runs) could never finish dying: on Linux the receiving thread was
//! seen sleeping in `pipe_read` under `lzc_receive` for ever, waiting for
//! a write end that only the dying process itself still held (the kernel's
//! send and receive do not always stop for a fatal signal; OpenZFS issue
//! 12500 is one such case). With the writer in its own process, the write
//! end closes when that process ends, however it ends, and the receive sees
//! the end of the stream; the daemon's read end closes with the daemon, and
//! the writer then stops on `EPIPE`.
//!
//! Waits are bounded where they can be: the pipe is close-on-exec (no other
//! child inherits an end), the daemon closes its read end as soon as the
//! receive returns, and then waits for the helper at most [`SENDER_GRACE`]
//! before killing it.

use std::ffi::CString;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::{Child, Command, ExitCode, Stdio};
use std::ptr;
use std::time::{Duration, Instant};

use iocaged_sys as sys;

use super::error::{ErrorKind, Result, ZfsError};

/// How long the copy waits for the helper once the receive has returned.
/// The helper has then either written its last record or been told by
/// `EPIPE` that nobody reads, so it ends at once; this bound only matters
/// if the kernel does not return from the send.
const SENDER_GRACE: Duration = Duration::from_secs(30);

/// The subcommand of the daemon's own binary that writes a send stream.
pub const SEND_HELPER: &str = "zfs-send";

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
fn with_core(f: impl FnOnce() -> i32) -> i32 {
    // SAFETY: libzfs_core_init is reference-counted and thread-safe; it is
    // paired with the fini below.
    let rc = unsafe { sys::libzfs_core_init() };
    if rc != 0 {
        return rc;
    }
    let out = f();
    // SAFETY: pairs the successful init above.
    unsafe { sys::libzfs_core_fini() };
    out
}

/// The pipe the stream goes through: close-on-exec at creation, so that no
/// process forked by another thread meanwhile inherits an end.
fn stream_pipe() -> nix::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
}

/// Starts `iocaged zfs-send SNAPSHOT` writing into `wr`.
fn start_sender(snapshot: &str, wr: OwnedFd) -> std::io::Result<Child> {
    let mut cmd = Command::new(crate::self_exe());
    cmd.arg(SEND_HELPER).arg(snapshot).stdin(Stdio::null()).stdout(Stdio::from(wr)).stderr(Stdio::piped());
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: prctl(2) is async-signal-safe and touches no memory of
        // the parent. The helper is killed if the thread that started it
        // (the one receiving) is gone, so it never outlives the copy.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    // `cmd` (and with it this process's copy of `wr`) is dropped on return:
    // from then on only the helper holds the write end.
    cmd.spawn()
}

/// Waits for `child` at most `limit`, then kills it. Its exit status and
/// what it said on stderr; `None` if it had to be killed.
fn finish_sender(child: &mut Child, limit: Duration) -> (Option<std::process::ExitStatus>, String) {
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let mut said = String::new();
    if let Some(mut err) = child.stderr.take() {
        // Bounded: the helper has ended, so this reads what is buffered.
        let _ = (&mut err).take(4096).read_to_string(&mut said);
    }
    (status, said.trim().to_string())
}

/// Receives a full stream of `snapshot` as the new snapshot `target`
/// (`pool/new/dataset@snap`), creating `pool/new/dataset`. Blocks until the
/// copy is done; call it from a blocking thread.
pub fn copy_snapshot(snapshot: &str, target: &str) -> Result<()> {
    const OP: &str = "copy";
    let bad = |n: &str| ZfsError::new(OP, n, ErrorKind::InvalidName, "name contains a NUL byte");
    if snapshot.contains('\0') {
        return Err(bad(snapshot));
    }
    let dest = CString::new(target).map_err(|_| bad(target))?;
    let (rd, wr) = stream_pipe().map_err(|e| ZfsError::new(OP, snapshot, ErrorKind::Other, format!("pipe: {e}")))?;
    let mut sender = start_sender(snapshot, wr)
        .map_err(|e| ZfsError::new(OP, snapshot, ErrorKind::Other, format!("cannot start the sender: {e}")))?;
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
    });
    // A failed receive stops reading: close our end so the sender ends too.
    drop(rd);
    let (status, said) = finish_sender(&mut sender, SENDER_GRACE);
    if received != 0 {
        return Err(errno_error("receive into", target, received));
    }
    match status {
        Some(s) if s.success() => Ok(()),
        Some(s) => Err(ZfsError::new(
            "send",
            snapshot,
            ErrorKind::Other,
            if said.is_empty() { format!("the sender failed ({s})") } else { said },
        )),
        None => {
            tracing::error!(snapshot, "the sender did not end {SENDER_GRACE:?} after the receive; killed");
            Err(ZfsError::new(
                "send",
                snapshot,
                ErrorKind::Other,
                format!("the sender did not end within {} s of the receive", SENDER_GRACE.as_secs()),
            ))
        }
    }
}

/// `iocaged zfs-send SNAPSHOT`: writes a full send stream of SNAPSHOT to
/// standard output (the daemon's pipe). Exits 0, or 1 with the reason on
/// standard error.
pub fn send_main(args: &[String]) -> ExitCode {
    let [snapshot] = args else {
        eprintln!("usage: iocaged {SEND_HELPER} SNAPSHOT (started by the daemon for a thick copy)");
        return ExitCode::from(2);
    };
    let Ok(snap) = CString::new(snapshot.as_str()) else {
        eprintln!("cannot send '{snapshot}': name contains a NUL byte");
        return ExitCode::FAILURE;
    };
    let rc = with_core(|| {
        // SAFETY: valid C string; fd 1 is the pipe the daemon gave us, open
        // for the whole call; NULL "from" means a full stream.
        unsafe { sys::lzc_send(snap.as_ptr(), ptr::null(), 1, 0) }
    });
    if rc == 0 {
        return ExitCode::SUCCESS;
    }
    eprintln!("{}", std::io::Error::from_raw_os_error(rc));
    ExitCode::FAILURE
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

    #[test]
    fn a_sender_that_does_not_end_is_killed_after_its_limit() {
        let mut child = Command::new("sleep").arg("100").stderr(Stdio::piped()).spawn().unwrap();
        let start = Instant::now();
        let (status, _) = finish_sender(&mut child, Duration::from_millis(200));
        assert!(status.is_none(), "reported as ended: {status:?}");
        assert!(start.elapsed() < Duration::from_secs(10));
        assert!(child.try_wait().unwrap().is_some(), "killed and reaped");
    }

    #[test]
    fn a_failed_sender_says_why() {
        let mut child =
            Command::new("sh").args(["-c", "echo 'No such file' >&2; exit 1"]).stderr(Stdio::piped()).spawn().unwrap();
        let (status, said) = finish_sender(&mut child, Duration::from_secs(30));
        assert_eq!(status.map(|s| s.success()), Some(false));
        assert_eq!(said, "No such file");
    }
}
