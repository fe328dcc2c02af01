//! Copying a snapshot into a new dataset with a ZFS send stream, the
//! native equivalent of `zfs send SNAP | pv | zfs recv TARGET`: a sender
//! process (`iocaged zfs-send SNAP`, [`send_main`]) writes the stream with
//! libzfs_core's `lzc_send` into a pipe; a relay process (`iocaged
//! zfs-relay TOTAL`, [`relay_main`]) copies it into a second pipe, counting
//! bytes; the calling thread receives it with `lzc_receive`. libzfs_core is
//! thread-safe (a thin layer over ioctls on /dev/zfs), so a copy does not
//! hold up the libzfs owner thread.
//!
//! Why each pipe's two ends live in two processes: a pipe end stays open as
//! long as any thread of a process that holds it is alive. With both ends
//! in one process, that process killed during a copy (SIGKILL, or its own
//! exit while a copy runs) could never finish dying: on Linux a receiving
//! thread was seen sleeping in `pipe_read` under `lzc_receive` for ever,
//! waiting for a write end that only the dying process itself still held
//! (the kernel's send and receive do not always stop for a fatal signal;
//! OpenZFS issue 12500 is one such case). So every process holds one end of
//! a pipe at most (the daemon holds both only from making a pipe to handing
//! an end to the helper that starts next, while nothing waits on it): the sender the first pipe's write end, the relay (plain
//! reads and writes, always killable) the first's read end and the second's
//! write end, the daemon the second's read end. Whoever ends, however it
//! ends, its ends close, and the next in line sees the end of the stream or
//! `EPIPE`.
//!
//! Waits are bounded where they can be: the pipes are close-on-exec (no
//! other child inherits an end), the daemon closes its read end as soon as
//! the receive returns, then waits for each helper at most [`SENDER_GRACE`]
//! before killing it, and for a killed one at most [`REAP_GRACE`].
//!
//! Progress: the relay says on stderr `progress SENT TOTAL` at once and
//! then at most every [`PROGRESS_EVERY`], TOTAL being ZFS's estimate of the
//! stream's size (`lzc_send_space`, 0 if it had none), and `sent SENT` when
//! its input ended. [`copy_snapshot`] passes these on, and its last report,
//! only once the copy succeeded, is [`Progress::Done`] with the bytes copied.
//! Counting in a process of our own is the one way that works alike
//! everywhere: ZFS's own progress query answers only the thread that runs
//! the send on Linux.

use std::ffi::CString;
use std::io::{BufRead, BufReader, Read};
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::ptr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use iocaged_sys as sys;

use super::error::{ErrorKind, Result, ZfsError};

mod helpers;
pub use helpers::{relay_main, send_main};

/// How long the copy waits for each helper once the receive has returned.
/// The helpers have then either written their last bytes or been told by
/// `EPIPE` that nobody reads, so they end at once; this bound only matters
/// if the kernel does not return from the send.
const SENDER_GRACE: Duration = Duration::from_secs(30);

/// How long the copy waits for a helper it killed to be gone. One that is
/// not (stuck in the kernel) is left behind, and logged.
const REAP_GRACE: Duration = Duration::from_secs(5);

/// The subcommand of the daemon's own binary that writes a send stream.
pub const SEND_HELPER: &str = "zfs-send";

/// The subcommand of the daemon's own binary that relays it, counting.
pub const RELAY_HELPER: &str = "zfs-relay";

/// How often the relay says how far the copy is.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// The most of a helper's other words (an error) the daemon keeps.
const SAID_LIMIT: usize = 4096;

/// How far a copy is, as [`copy_snapshot`] reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// `sent` bytes so far, of about `total` (ZFS's estimate; 0 if none).
    Sending { sent: u64, total: u64 },
    /// The copy succeeded, `bytes` long. Reported once, last.
    Done { bytes: u64 },
}

/// Where [`copy_snapshot`] reports progress (called from another thread).
pub type OnProgress = Arc<dyn Fn(Progress) + Send + Sync>;

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
pub(super) fn with_core(f: impl FnOnce() -> i32) -> i32 {
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

/// A pipe for the stream: close-on-exec at creation, so that no process
/// forked by another thread meanwhile inherits an end.
fn stream_pipe() -> nix::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
}

/// ZFS's estimate of a full stream of `snapshot`, in bytes; 0 if it has none.
fn estimate(snapshot: &CString) -> u64 {
    let mut total: u64 = 0;
    let rc = with_core(|| {
        // SAFETY: valid C string; NULL "from" means a full stream, flags 0
        // as the sender's; `total` is a valid out-pointer for the call.
        unsafe { sys::lzc_send_space(snapshot.as_ptr(), ptr::null(), 0, &mut total) }
    });
    if rc == 0 { total } else { 0 }
}

/// Starts `iocaged ARGS...` with this stdin and stdout, and stderr piped.
fn start_helper(args: &[&str], stdin: Stdio, stdout: Stdio) -> std::io::Result<Child> {
    let mut cmd = Command::new(crate::self_exe());
    cmd.args(args).stdin(stdin).stdout(stdout).stderr(Stdio::piped());
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
    #[cfg(target_os = "freebsd")]
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: procctl(2) on the calling process is a plain system call
        // touching only `sig`, a local of this closure. The helper gets
        // SIGKILL when the daemon exits (PROC_PDEATHSIG_CTL), so it never
        // outlives the copy.
        unsafe {
            cmd.pre_exec(|| {
                let mut sig: libc::c_int = libc::SIGKILL;
                if libc::procctl(libc::P_PID, 0, libc::PROC_PDEATHSIG_CTL, (&raw mut sig).cast()) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    // `cmd` (and with it this process's copies of the pipe ends given) is
    // dropped on return: from then on only the helper holds them.
    cmd.spawn()
}

/// How a helper ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    Exited(ExitStatus),
    /// It did not end in time and was killed.
    Killed,
    /// Killed, and still not gone after [`REAP_GRACE`]: its pipe ends
    /// may still be open.
    Stuck,
}

impl Ended {
    fn gone(self) -> bool {
        self != Ended::Stuck
    }

    fn success(self) -> bool {
        matches!(self, Ended::Exited(s) if s.success())
    }
}

fn wait_until(child: &mut Child, deadline: Instant) -> Option<ExitStatus> {
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            _ => return None,
        }
    }
}

/// Waits for `child` at most `limit`, then kills it and waits at most
/// [`REAP_GRACE`] more.
fn finish_helper(child: &mut Child, limit: Duration) -> Ended {
    if let Some(status) = wait_until(child, Instant::now() + limit) {
        return Ended::Exited(status);
    }
    let _ = child.kill();
    match wait_until(child, Instant::now() + REAP_GRACE) {
        Some(_) => Ended::Killed,
        None => Ended::Stuck,
    }
}

/// What a helper that is gone said on stderr (bounded: it has ended, so
/// this reads what is buffered).
fn said_by(child: &mut Child) -> String {
    let mut said = String::new();
    if let Some(err) = child.stderr.take() {
        let _ = err.take(SAID_LIMIT as u64).read_to_string(&mut said);
    }
    said.trim().to_string()
}

/// A line of the relay: `progress SENT TOTAL`, or `sent SENT` at the end.
fn parse_line(line: &str) -> Option<(u64, Option<u64>)> {
    let (head, rest) = line.split_once(' ')?;
    let mut words = rest.split(' ');
    let sent = words.next()?.parse().ok()?;
    let parsed = match head {
        "progress" => (sent, Some(words.next()?.parse().ok()?)),
        "sent" => (sent, None),
        _ => return None,
    };
    words.next().is_none().then_some(parsed)
}

/// What the relay said, once its stderr closed (it ended).
#[derive(Debug, Default, PartialEq, Eq)]
struct Heard {
    /// The bytes it relayed, from its closing `sent` line.
    sent: Option<u64>,
    /// Anything else (up to [`SAID_LIMIT`]): why it failed.
    said: String,
}

/// Reads the relay's stderr until it closes: progress goes to `on_progress`
/// as it comes.
fn listen_to_relay(err: impl Read, on_progress: &(dyn Fn(Progress) + Send + Sync)) -> Heard {
    let mut reader = BufReader::new(err);
    let mut heard = Heard::default();
    let mut line = Vec::new();
    loop {
        line.clear();
        // One line at most SAID_LIMIT bytes; a longer one comes in pieces.
        match (&mut reader).take(SAID_LIMIT as u64).read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&line);
        match parse_line(text.trim_end()) {
            Some((sent, Some(total))) => on_progress(Progress::Sending { sent, total }),
            Some((sent, None)) => heard.sent = Some(sent),
            None if heard.said.len() < SAID_LIMIT => heard.said.push_str(&text),
            None => {}
        }
    }
    let mut end = heard.said.len().min(SAID_LIMIT);
    while !heard.said.is_char_boundary(end) {
        end -= 1;
    }
    heard.said.truncate(end);
    heard.said = heard.said.trim().to_string();
    heard
}

/// Receives a full stream of `snapshot` as the new snapshot `target`
/// (`pool/new/dataset@snap`), creating `pool/new/dataset`. Blocks until the
/// copy is done; call it from a blocking thread. Progress goes to
/// `on_progress` as the relay reports it, [`Progress::Done`] last if the
/// copy succeeded (see the module).
pub fn copy_snapshot(snapshot: &str, target: &str, on_progress: OnProgress) -> Result<()> {
    const OP: &str = "copy";
    let bad = |n: &str| ZfsError::new(OP, n, ErrorKind::InvalidName, "name contains a NUL byte");
    let snap = CString::new(snapshot).map_err(|_| bad(snapshot))?;
    let dest = CString::new(target).map_err(|_| bad(target))?;
    let failed =
        |what: &str, e: &dyn std::fmt::Display| ZfsError::new(OP, snapshot, ErrorKind::Other, format!("{what}: {e}"));
    let total = estimate(&snap);
    let (from_sender, to_relay) = stream_pipe().map_err(|e| failed("pipe", &e))?;
    let (from_relay, to_daemon) = stream_pipe().map_err(|e| failed("pipe", &e))?;
    let mut sender = start_helper(&[SEND_HELPER, snapshot], Stdio::null(), Stdio::from(to_relay))
        .map_err(|e| failed("cannot start the sender", &e))?;
    let mut relay =
        match start_helper(&[RELAY_HELPER, &total.to_string()], Stdio::from(from_sender), Stdio::from(to_daemon)) {
            Ok(relay) => relay,
            Err(e) => {
                // Its pipe's read end is gone with the failed start: the
                // sender stops on EPIPE.
                finish_helper(&mut sender, SENDER_GRACE);
                return Err(failed("cannot start the relay", &e));
            }
        };
    // Ends when the relay does (only the relay holds its stderr's write end).
    let listener = relay.stderr.take().and_then(|err| {
        let report = on_progress.clone();
        std::thread::Builder::new().name("zfs-relay".into()).spawn(move || listen_to_relay(err, &*report)).ok()
    });
    let received = with_core(|| {
        // SAFETY: valid C strings; NULL props and origin; `from_relay`
        // stays open for the whole call.
        unsafe {
            sys::lzc_receive(
                dest.as_ptr(),
                ptr::null_mut(),
                ptr::null(),
                sys::boolean_t::B_FALSE,
                sys::boolean_t::B_FALSE,
                from_relay.as_raw_fd(),
            )
        }
    });
    // A failed receive stops reading: close our end so the helpers end too.
    drop(from_relay);
    let relay_ended = finish_helper(&mut relay, SENDER_GRACE);
    let sender_ended = finish_helper(&mut sender, SENDER_GRACE);
    for (who, ended) in [("relay", relay_ended), ("sender", sender_ended)] {
        if !ended.gone() {
            tracing::error!(snapshot, "the copy's {who} was killed but is not gone after {REAP_GRACE:?}; left behind");
        }
    }
    let sender_said = if sender_ended.gone() { said_by(&mut sender) } else { String::new() };
    // Joined only if the relay is gone: its stderr has closed, so the
    // listener has returned or is about to.
    let heard = match listener {
        Some(l) if relay_ended.gone() => l.join().unwrap_or_default(),
        _ => Heard::default(),
    };
    let why = |ended: Ended, said: &str| match (ended, said) {
        (_, said) if !said.is_empty() => said.to_string(),
        (Ended::Exited(status), _) => format!("failed ({status})"),
        _ => format!("did not end within {} s of the receive", SENDER_GRACE.as_secs()),
    };
    if received != 0 {
        let mut e = errno_error("receive into", target, received);
        if !sender_ended.success() {
            e.description = format!("{}; the sender: {}", e.description, why(sender_ended, &sender_said));
        }
        return Err(e);
    }
    if !sender_ended.success() {
        return Err(ZfsError::new("send", snapshot, ErrorKind::Other, why(sender_ended, &sender_said)));
    }
    if !relay_ended.success() {
        return Err(ZfsError::new("relay", snapshot, ErrorKind::Other, why(relay_ended, &heard.said)));
    }
    on_progress(Progress::Done { bytes: heard.sent.unwrap_or(0) });
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

    #[test]
    fn a_helper_that_does_not_end_is_killed_after_its_limit() {
        let mut child = Command::new("sleep").arg("100").spawn().unwrap();
        let start = Instant::now();
        assert_eq!(finish_helper(&mut child, Duration::from_millis(200)), Ended::Killed);
        assert!(start.elapsed() < Duration::from_secs(10));
        assert!(child.try_wait().unwrap().is_some(), "killed and reaped");
    }

    #[test]
    fn a_failed_helper_says_why() {
        let mut child =
            Command::new("sh").args(["-c", "echo 'No such file' >&2; exit 1"]).stderr(Stdio::piped()).spawn().unwrap();
        let ended = finish_helper(&mut child, Duration::from_secs(30));
        assert!(ended.gone() && !ended.success(), "{ended:?}");
        assert_eq!(said_by(&mut child), "No such file");
    }

    #[test]
    fn the_relay_s_progress_is_reported_and_anything_else_is_why_it_failed() {
        let seen = std::sync::Mutex::new(Vec::new());
        let heard = listen_to_relay(
            &b"progress 0 300\nprogress 120 300\nprogress x\nNo such file\nprogress 300 300 9\nsent 310\n"[..],
            &|p| seen.lock().unwrap().push(p),
        );
        assert_eq!(
            *seen.lock().unwrap(),
            vec![Progress::Sending { sent: 0, total: 300 }, Progress::Sending { sent: 120, total: 300 }]
        );
        assert_eq!(heard, Heard { sent: Some(310), said: "progress x\nNo such file\nprogress 300 300 9".into() });
        // What it keeps of a flood is bounded.
        let flood = "e".repeat(3 * SAID_LIMIT) + "\n";
        assert_eq!(listen_to_relay(flood.as_bytes(), &|_| {}).said.len(), SAID_LIMIT);
    }
}
