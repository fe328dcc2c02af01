//! Streamed output of a command run in a jail (execjail with
//! `"output": "stream"`), both sides of the helper's pipe.
//!
//! The command writes into the helper's sealed memory files as always
//! (`Capture`). In the helper, `Pump` sends what is new in them, every
//! tick of its wait loop, as `HelperReply::Output` lines on its stdout;
//! the last line is the usual `HelperReply::Done`, without the output
//! (it went as chunks). In the daemon, `read_streamed` reads those lines
//! and hands the chunks to the request's [`Outlet`].
//!
//! A slow reader never stalls the command or the helper's clock: the
//! helper writes its stdout without blocking and leaves what the pipe does
//! not take in the memory files (bounded by the output limit, as for any
//! execjail), and the daemon stops reading the pipe while the outlet is
//! full (`QUEUED` chunks at most wait in between). Nothing is dropped: a
//! slow client sees the output later. Chunks of one stream come in order;
//! stdout and stderr are interleaved only as finely as the helper's tick.
//!
//! When the outlet closes (the client's socket went away), the daemon
//! sends the helper SIGTERM; the helper kills the command with everything
//! it started, and ends.

use std::collections::VecDeque;
use std::io::Read;
use std::os::fd::AsFd;
use std::process::Child;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::sys::signal::{Signal, kill};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::capture::{Capture, TICK};
use super::console::Feed;
use super::exec::{ExecOutput, HelperReply};

/// Which of the command's streams a chunk is from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout = 0,
    Stderr = 1,
}

/// A piece of a streamed command's output, as it came: whole characters
/// (a character cut by a piece's end goes with the next piece), invalid
/// UTF-8 replaced as the lossless reply would replace it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunk {
    pub stream: Stream,
    pub data: String,
}

/// Where a streamed command's chunks go. Closing the receiving side stops
/// the command.
#[derive(Clone)]
pub struct Outlet(mpsc::Sender<Chunk>);

impl Outlet {
    /// An outlet and its receiving side, `room` chunks between them.
    pub fn channel(room: usize) -> (Outlet, mpsc::Receiver<Chunk>) {
        let (tx, rx) = mpsc::channel(room.max(1));
        (Outlet(tx), rx)
    }

    /// Sends `chunk`, waiting for room; false when the receiver is gone.
    pub async fn send(&self, chunk: Chunk) -> bool {
        self.0.send(chunk).await.is_ok()
    }

    /// Resolves when the receiver is gone.
    pub async fn closed(&self) {
        self.0.closed().await
    }
}

impl std::fmt::Debug for Outlet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Outlet")
    }
}

/// Two outlets are equal when they feed the same receiver.
impl PartialEq for Outlet {
    fn eq(&self, other: &Self) -> bool {
        self.0.same_channel(&other.0)
    }
}

impl Eq for Outlet {}

/// The most output one chunk carries, in bytes.
pub(crate) const PIECE: usize = 16 << 10;

/// How many characters of `bytes` can be decoded now: all but an
/// incomplete character at the end (its other bytes may still come).
pub(crate) fn decodable(bytes: &[u8]) -> usize {
    let mut at = 0;
    loop {
        match std::str::from_utf8(&bytes[at..]) {
            Ok(_) => return bytes.len(),
            Err(e) => match e.error_len() {
                // Invalid, whatever follows: decoded (replaced) now.
                Some(bad) => at += e.valid_up_to() + bad,
                None => return at + e.valid_up_to(),
            },
        }
    }
}

/// The helper's side: sends what the command wrote, as chunk lines on
/// stdout (through a [`LineOut`]).
pub(crate) struct Pump {
    /// Bytes of stdout and stderr sent so far.
    sent: [u64; 2],
    /// The stream looked at first next time (they take turns, so that one
    /// that writes a lot does not hold the other back).
    first: usize,
    out: LineOut,
}

impl Pump {
    /// Starts pumping: stdout stops blocking.
    pub(crate) fn start() -> Result<Pump, String> {
        Ok(Pump { sent: [0; 2], first: 0, out: LineOut::start()? })
    }

    /// Sends what is new, as much as the pipe takes now.
    pub(crate) fn pump(&mut self, out: &Capture, err: &Capture) -> Result<(), String> {
        self.send(out, err, false)
    }

    /// After the command: sends the rest, waiting for the pipe, and gives
    /// stdout back its blocking (the reply line follows).
    pub(crate) fn finish(&mut self, out: &Capture, err: &Capture) -> Result<(), String> {
        self.out.block()?;
        self.send(out, err, true)
    }

    fn send(&mut self, out: &Capture, err: &Capture, last: bool) -> Result<(), String> {
        loop {
            if !self.out.flush()? {
                return Ok(());
            }
            let Some(chunk) = self.next(out, err, last) else { return Ok(()) };
            self.out.set(&chunk)?;
        }
    }

    /// The next piece of either stream; at the `last`, the final bytes of
    /// a stream whether they make whole characters or not.
    fn next(&mut self, out: &Capture, err: &Capture, last: bool) -> Option<Chunk> {
        let both = [(out, Stream::Stdout), (err, Stream::Stderr)];
        for i in [self.first, 1 - self.first] {
            let (cap, stream) = both[i];
            let (bytes, to_end) = cap.bytes(self.sent[i], PIECE);
            let n = if last && to_end { bytes.len() } else { decodable(&bytes) };
            if n == 0 {
                continue;
            }
            self.sent[i] = self.sent[i].saturating_add(n as u64);
            self.first = 1 - i;
            return Some(Chunk { stream, data: String::from_utf8_lossy(&bytes[..n]).into_owned() });
        }
        None
    }
}

/// The helper's stdout while it sends chunks: it does not block, and one
/// line at a time waits for the pipe. Dropped, it gives stdout back its
/// blocking and completes the line it was writing, so that a reply
/// printed after it (a failure) stands on a line of its own.
pub(crate) struct LineOut {
    /// The line being written, and how much of it the pipe took.
    line: Vec<u8>,
    written: usize,
}

impl LineOut {
    /// stdout stops blocking.
    pub(crate) fn start() -> Result<LineOut, String> {
        set_blocking(false)?;
        Ok(LineOut { line: Vec::new(), written: 0 })
    }

    /// The next line to write: `chunk`, once the last one is written.
    pub(crate) fn set(&mut self, chunk: &Chunk) -> Result<(), String> {
        self.line = serde_json::to_vec(&HelperReply::Output(chunk.clone())).map_err(|e| e.to_string())?;
        self.line.push(b'\n');
        self.written = 0;
        Ok(())
    }

    /// Writes what is left of the line; whether it is all written (false:
    /// the pipe is full, and stdout does not block).
    pub(crate) fn flush(&mut self) -> Result<bool, String> {
        while self.written < self.line.len() {
            match nix::unistd::write(std::io::stdout(), &self.line[self.written..]) {
                Ok(n) => self.written += n,
                Err(Errno::EAGAIN) => return Ok(false),
                Err(Errno::EINTR) => {}
                Err(e) => return Err(format!("sending output: {e}")),
            }
        }
        Ok(true)
    }

    /// Gives stdout back its blocking (the reply line follows).
    pub(crate) fn block(&mut self) -> Result<(), String> {
        set_blocking(true)
    }
}

impl Drop for LineOut {
    fn drop(&mut self) {
        if set_blocking(true).is_ok() {
            let _ = self.flush();
        }
    }
}

fn set_blocking(blocking: bool) -> Result<(), String> {
    set_blocking_fd(&std::io::stdout(), blocking)
}

/// Sets or clears `O_NONBLOCK` on `fd`.
pub(crate) fn set_blocking_fd(fd: &impl AsFd, blocking: bool) -> Result<(), String> {
    let flags = fcntl(fd.as_fd(), FcntlArg::F_GETFL).map_err(|e| format!("fcntl: {e}"))?;
    let mut flags = OFlag::from_bits_truncate(flags);
    flags.set(OFlag::O_NONBLOCK, !blocking);
    fcntl(fd.as_fd(), FcntlArg::F_SETFL(flags)).map_err(|e| format!("fcntl: {e}"))?;
    Ok(())
}

/// Chunks read from the helper that wait for room in the outlet; while
/// this many wait, the pipe is not read.
const QUEUED: usize = 16;

/// The longest line read from the helper: a piece, every byte escaped.
const LINE_MAX: usize = 6 * PIECE + 1024;

/// How long a cancelled helper has to end before it is killed.
///
/// The helper's own bound (`bound`) does not run while the reader waits
/// for the outlet: the helper is then held up by the client, not by the
/// command (whose own timeout runs in the helper regardless); a client
/// that reads nothing is cut off by the socket's writer (`ws::WRITE_TIMEOUT`),
/// which closes the outlet.
const CANCEL_GRACE: Duration = Duration::from_secs(10);

/// The end of each stream kept for the ending's message (its last line):
/// the output itself went as chunks.
const TAIL: usize = 1024;

/// Appends `data` to `tail`, keeping at most its last [`TAIL`] bytes (whole
/// characters).
fn keep_tail(tail: &mut String, data: &str) {
    tail.push_str(data);
    if tail.len() > TAIL {
        let mut at = tail.len() - TAIL;
        while !tail.is_char_boundary(at) {
            at += 1;
        }
        tail.drain(..at);
    }
}

/// How often the reader looks whether the outlet closed while the helper
/// is quiet.
const LOOK: Duration = Duration::from_millis(100);

/// The daemon's side: reads the helper's lines until it closes its stdout,
/// handing chunks to `outlet`, and returns its last line (a `Done` holds
/// the last [`TAIL`] bytes of each stream, for its message); kills it when
/// `bound` passes (not counting the time spent waiting for the outlet),
/// and on any error. `None`: it ended without a reply (it failed; its
/// status and stderr tell why).
///
/// With a `feed` (a console), the client's frames go to the helper's stdin
/// meanwhile, and the pipe is looked at every [`TICK`] for them.
pub(crate) fn read_streamed(
    child: &mut Child,
    outlet: &Outlet,
    bound: Option<Duration>,
    feed: Option<&mut Feed>,
) -> Result<Option<HelperReply>, String> {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let read = read_lines(child, pid, outlet, bound, feed);
    if read.is_err() {
        // Not reaped yet (the caller waits after this): still its pid.
        let _ = kill(pid, Signal::SIGKILL);
    }
    read
}

fn read_lines(
    child: &mut Child,
    pid: nix::unistd::Pid,
    outlet: &Outlet,
    bound: Option<Duration>,
    mut feed: Option<&mut Feed>,
) -> Result<Option<HelperReply>, String> {
    let look = if feed.is_some() { TICK } else { LOOK };
    let mut pipe = child.stdout.take().ok_or("the helper has no stdout")?;
    let mut deadline = bound.and_then(|b| Instant::now().checked_add(b));
    let (mut line, mut queue, mut reply) = (Vec::new(), VecDeque::new(), None);
    let mut tails = [String::new(), String::new()];
    let (mut ended, mut cancelled) = (false, false);
    let mut piece = vec![0u8; 64 << 10];
    loop {
        while let Some(chunk) = queue.pop_front() {
            match outlet.0.try_send(chunk) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(chunk)) => {
                    queue.push_front(chunk);
                    break;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => queue.clear(),
            }
        }
        if !cancelled && outlet.0.is_closed() {
            cancelled = true;
            queue.clear();
            let _ = kill(pid, Signal::SIGTERM);
            let grace = Instant::now() + CANCEL_GRACE;
            deadline = Some(deadline.map_or(grace, |d| d.min(grace)));
        }
        if let Some(f) = feed.as_deref_mut().filter(|_| !cancelled) {
            let hung_up = f.is_hung_up();
            f.turn()?;
            if !hung_up && f.is_hung_up() {
                // Its stdin closed, but it may not be reading it (its
                // input full): told to stop as well.
                let _ = kill(pid, Signal::SIGTERM);
                let grace = Instant::now() + CANCEL_GRACE;
                deadline = Some(deadline.map_or(grace, |d| d.min(grace)));
            }
        }
        if ended && queue.is_empty() {
            return Ok(reply);
        }
        if ended || queue.len() >= QUEUED {
            // Waiting for the outlet: the helper's clock stops meanwhile.
            std::thread::sleep(TICK);
            deadline = deadline.and_then(|d| d.checked_add(TICK));
            continue;
        }
        let left = match deadline {
            Some(d) => match d.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => left,
                _ => {
                    return Err(match cancelled {
                        true => "the helper did not stop when its client went away".into(),
                        false => "the helper did not end in time".into(),
                    });
                }
            },
            None => look,
        };
        let mut fds = [nix::poll::PollFd::new(pipe.as_fd(), nix::poll::PollFlags::POLLIN)];
        let wait = nix::poll::PollTimeout::try_from(look.min(left)).unwrap_or(nix::poll::PollTimeout::ZERO);
        match nix::poll::poll(&mut fds, wait) {
            Ok(0) | Err(Errno::EINTR) => continue,
            Ok(_) => {}
            Err(e) => return Err(format!("poll: {e}")),
        }
        let n = match pipe.read(&mut piece) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("reading the helper: {e}")),
        };
        ended = n == 0;
        line.extend_from_slice(&piece[..n]);
        while let Some(end) = line.iter().position(|&b| b == b'\n') {
            let text: Vec<u8> = line.drain(..=end).collect();
            match serde_json::from_slice::<HelperReply>(&text[..end]) {
                Ok(HelperReply::Output(chunk)) if !cancelled => {
                    keep_tail(&mut tails[chunk.stream as usize], &chunk.data);
                    queue.push_back(chunk);
                }
                Ok(HelperReply::Output(_)) => {}
                Ok(HelperReply::Done(o)) => {
                    let [stdout, stderr] = std::mem::take(&mut tails);
                    reply = Some(HelperReply::Done(ExecOutput { stdout, stderr, ..o }));
                }
                Ok(failed) => reply = Some(failed),
                Err(e) => return Err(format!("the helper sent a line that is not a reply: {e}")),
            }
        }
        if line.len() > LINE_MAX {
            return Err(format!("the helper sent a line over {LINE_MAX} bytes"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_character_cut_by_a_piece_waits_for_its_other_bytes() {
        let text = "aé€😀".as_bytes();
        assert_eq!(decodable(text), text.len());
        // Cut inside the 4-byte character: everything before it.
        assert_eq!(decodable(&text[..text.len() - 1]), text.len() - 4);
        // Cut inside "é": "a".
        assert_eq!(decodable(&text[..2]), 1);
        // Invalid bytes are not waited for: they will never be whole.
        assert_eq!(decodable(b"a\xffb"), 3);
        assert_eq!(decodable(b"a\xffb\xe2\x82"), 3);
    }

    #[test]
    fn pieces_decode_as_the_whole_does() {
        // Whatever the cuts, the pieces' text joined is the whole's text.
        let whole: Vec<u8> = "x€y😀\u{7f}é".bytes().chain(*b"\xff\xe2\x82z").cycle().take(200).collect();
        for step in 1..9 {
            let (mut at, mut joined) = (0, String::new());
            while at < whole.len() {
                let end = (at + step).min(whole.len());
                // Like `Pump::next`: the final piece is taken whole.
                let n = if end == whole.len() { end - at } else { decodable(&whole[at..end]) };
                joined.push_str(&String::from_utf8_lossy(&whole[at..at + n]));
                at += n;
                if n == 0 {
                    // A piece too short for one character: the next is longer.
                    let end = (at + 4).min(whole.len());
                    let n = if end == whole.len() { end - at } else { decodable(&whole[at..end]) };
                    joined.push_str(&String::from_utf8_lossy(&whole[at..at + n]));
                    at += n;
                }
            }
            assert_eq!(joined, String::from_utf8_lossy(&whole), "pieces of {step}");
        }
    }

    /// A stand-in for the helper: a shell printing `lines`.
    fn helper_printing(lines: &str) -> Child {
        std::process::Command::new("/bin/sh")
            .args(["-c", "printf '%s' \"$1\"", "sh", lines])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    }

    fn line(reply: &HelperReply) -> String {
        serde_json::to_string(reply).unwrap() + "\n"
    }

    #[test]
    fn a_slow_reader_gets_everything_and_the_ending() {
        // More chunks than wait between the pipe and the outlet; the
        // outlet holds one and is read only after the helper's bound: the
        // wait for the reader does not count against the helper.
        let mut lines: String = (0..40)
            .map(|i| line(&HelperReply::Output(Chunk { stream: Stream::Stdout, data: format!("{i}\n") })))
            .collect();
        let done = ExecOutput { code: Some(0), ..Default::default() };
        lines.push_str(&line(&HelperReply::Done(done.clone())));
        let mut child = helper_printing(&lines);
        let (outlet, mut chunks) = Outlet::channel(1);
        let reader = std::thread::spawn(move || {
            let read = read_streamed(&mut child, &outlet, Some(Duration::from_millis(300)), None);
            let _ = child.wait();
            read
        });
        std::thread::sleep(Duration::from_secs(1));
        let mut got = String::new();
        while let Some(c) = chunks.blocking_recv() {
            got.push_str(&c.data);
        }
        let reply = reader.join().unwrap();
        let tail = |o: &ExecOutput| o.stdout.len() <= TAIL && o.stdout.ends_with("38\n39\n");
        assert!(matches!(&reply, Ok(Some(HelperReply::Done(o))) if o.code == Some(0) && tail(o)), "{reply:?}");
        assert_eq!(got, (0..40).map(|i| format!("{i}\n")).collect::<String>());
    }

    #[test]
    fn the_ending_keeps_each_stream_s_last_kib_for_its_message() {
        let mut tail = String::new();
        keep_tail(&mut tail, &"é".repeat(600));
        keep_tail(&mut tail, "x\nlast");
        assert!(tail.len() <= TAIL && tail.len() > TAIL - 2 && tail.ends_with("éx\nlast"), "{}", tail.len());
        let lines: String = [
            HelperReply::Output(Chunk { stream: Stream::Stdout, data: "out\n".into() }),
            HelperReply::Output(Chunk { stream: Stream::Stderr, data: "oops\n".into() }),
            HelperReply::Done(ExecOutput { code: Some(3), ..Default::default() }),
        ]
        .iter()
        .map(line)
        .collect();
        let mut child = helper_printing(&lines);
        let (outlet, mut chunks) = Outlet::channel(8);
        let read = read_streamed(&mut child, &outlet, None, None);
        let _ = child.wait();
        let Ok(Some(HelperReply::Done(o))) = read else { panic!("{read:?}") };
        assert_eq!((o.stdout.as_str(), o.stderr.as_str(), o.code), ("out\n", "oops\n", Some(3)));
        assert_eq!(o.last_line(), Some("oops"));
        assert_eq!(chunks.try_recv().map(|c| c.data), Ok("out\n".to_string()));
    }

    #[test]
    fn a_closed_outlet_stops_the_helper() {
        let mut child =
            std::process::Command::new("/bin/sleep").arg("100").stdout(std::process::Stdio::piped()).spawn().unwrap();
        let (outlet, chunks) = Outlet::channel(1);
        drop(chunks);
        let started = Instant::now();
        let read = read_streamed(&mut child, &outlet, None, None);
        let status = child.wait().unwrap();
        assert!(matches!(read, Ok(None)), "{read:?}");
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGTERM), "{status:?}");
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    }

    #[test]
    fn a_helper_that_sends_garbage_is_killed() {
        let mut child = helper_printing("not json\n");
        let (outlet, _chunks) = Outlet::channel(1);
        let read = read_streamed(&mut child, &outlet, None, None);
        let _ = child.wait();
        assert!(read.as_ref().is_err_and(|e| e.contains("not a reply")), "{read:?}");
    }

    #[test]
    fn outlets_are_equal_when_they_feed_one_receiver() {
        let (a, _ra) = Outlet::channel(1);
        let (b, _rb) = Outlet::channel(1);
        assert_eq!(a, a.clone());
        assert_ne!(a, b);
    }
}
