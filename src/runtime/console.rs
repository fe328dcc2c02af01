//! An interactive console (the `console` action): the jail user's login
//! shell on a terminal of the jail's own, relayed over a WebSocket.
//!
//! It is a streamed execjail (see [`super::stream`]) with a way in:
//! - the client's frames ([`Input`]: typed text, a new window size) come
//!   through an [`Inlet`]; the daemon (`Feed`) writes them as JSON lines
//!   to the helper's stdin;
//! - the helper (`iocaged jail-exec` asked for a console, see
//!   [`super::helper`]) opens a pseudo-terminal (`super::pty`), starts the
//!   shell on it, and relays: the lines on its stdin to the terminal, what
//!   the terminal shows to its stdout, as `HelperReply::Output` chunks;
//! - the reply is the shell's ending.
//!
//! It ends when the shell exits, when the client hangs up (its `close`
//! frame, or its socket going), or after [`IDLE`] with nothing typed. A
//! hang-up closes the helper's stdin and tells it to stop (SIGTERM); the
//! helper then kills the shell with everything it started (the command's
//! cgroup on Linux; on FreeBSD every descendant of the helper, which is
//! their reaper) and closes the terminal.
//!
//! Bounds: [`ROOM`] frames wait between the socket and the helper (the
//! socket is not read meanwhile), `TYPED_MAX` bytes between the helper
//! and the terminal (the helper stops reading its stdin meanwhile).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

/// A terminal's size in characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WinSize {
    pub rows: u16,
    pub cols: u16,
}

impl WinSize {
    /// The largest side accepted.
    pub const MAX: u16 = 1000;
    pub const DEFAULT: WinSize = WinSize { rows: 24, cols: 80 };

    /// A side given as JSON: a number from 1 to [`WinSize::MAX`].
    pub fn side(v: &serde_json::Value) -> Option<u16> {
        v.as_u64().and_then(|n| u16::try_from(n).ok()).filter(|n| (1..=WinSize::MAX).contains(n))
    }
}

/// A client's frame for its console.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Input {
    /// Typed text, as the terminal should receive it.
    Data(String),
    /// The client's window changed size.
    Resize(WinSize),
}

/// The most text one input frame carries, in bytes.
pub const INPUT_MAX: usize = 64 << 10;

/// The most frames waiting between a socket and its console.
pub const ROOM: usize = 64;

/// The client's side of an [`Inlet`]: the API hands frames in here.
#[derive(Debug, Clone)]
pub struct Keys(mpsc::Sender<Input>);

impl Keys {
    /// Hands `input` over, waiting up to `wait` for room; why not, if not.
    pub async fn send(&self, input: Input, wait: Duration) -> Result<(), &'static str> {
        match self.0.send_timeout(input, wait).await {
            Ok(()) => Ok(()),
            Err(mpsc::error::SendTimeoutError::Timeout(_)) => Err("the console took no input for too long"),
            Err(mpsc::error::SendTimeoutError::Closed(_)) => Err("the console has ended"),
        }
    }
}

/// Where a console's input comes from: taken once, by the runtime that
/// runs the console. Dropping every [`Keys`] hangs the console up.
#[derive(Clone)]
pub struct Inlet(Arc<Mutex<Option<mpsc::Receiver<Input>>>>);

impl Inlet {
    /// An inlet and its client side, [`ROOM`] frames between them.
    pub fn channel() -> (Keys, Inlet) {
        let (tx, rx) = mpsc::channel(ROOM);
        (Keys(tx), Inlet(Arc::new(Mutex::new(Some(rx)))))
    }

    /// The receiving side; `None` once taken.
    pub fn take(&self) -> Option<mpsc::Receiver<Input>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

impl std::fmt::Debug for Inlet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Inlet")
    }
}

/// Two inlets are equal when they are the same.
impl PartialEq for Inlet {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Inlet {}

/// What a console is started with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Console {
    pub size: WinSize,
    pub inlet: Inlet,
}

/// A console with nothing typed this long is hung up (output does not
/// count: a jail's process could keep an abandoned console alive).
pub const IDLE: Duration = Duration::from_secs(30 * 60);

/// The most typed bytes waiting for the terminal, in the helper, and for
/// the helper's stdin, in the daemon.
pub(crate) const TYPED_MAX: usize = 64 << 10;

/// The daemon's side of the way in: the client's frames to the helper's
/// stdin, as JSON lines, without blocking.
pub(crate) struct Feed {
    inlet: mpsc::Receiver<Input>,
    stdin: Option<std::process::ChildStdin>,
    pending: Vec<u8>,
    last: Instant,
    /// Why the console was hung up, once it was.
    pub(crate) hung_up: Option<String>,
}

impl Feed {
    pub(crate) fn new(inlet: mpsc::Receiver<Input>, stdin: std::process::ChildStdin) -> Result<Feed, String> {
        super::stream::set_blocking_fd(&stdin, false)?;
        Ok(Feed { inlet, stdin: Some(stdin), pending: Vec::new(), last: Instant::now(), hung_up: None })
    }

    /// One turn: takes what the client sent and writes what the pipe
    /// takes. Hangs up when the client did, or after [`IDLE`] without
    /// input: what waits is dropped and the helper's stdin closed (the
    /// caller then tells the helper to stop, which may not be reading).
    pub(crate) fn turn(&mut self) -> Result<(), String> {
        let Some(stdin) = &self.stdin else { return Ok(()) };
        // Seen even while input waits (pending full, nothing received).
        let mut gone = self.inlet.is_closed();
        while self.pending.len() < TYPED_MAX {
            match self.inlet.try_recv() {
                Ok(input) => {
                    self.last = Instant::now();
                    serde_json::to_writer(&mut self.pending, &input).map_err(|e| e.to_string())?;
                    self.pending.push(b'\n');
                }
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    gone = true;
                    break;
                }
            }
        }
        while !self.pending.is_empty() {
            match nix::unistd::write(stdin, &self.pending) {
                Ok(n) => {
                    self.pending.drain(..n);
                }
                Err(Errno::EAGAIN) => break,
                Err(Errno::EINTR) => {}
                // The helper is ending: its reply says why.
                Err(Errno::EPIPE) => {
                    self.stdin = None;
                    return Ok(());
                }
                Err(e) => return Err(format!("writing to the helper: {e}")),
            }
        }
        let why = if gone {
            Some("the client hung up")
        } else if self.last.elapsed() >= IDLE {
            Some("nothing was typed for 30 minutes")
        } else {
            None
        };
        if let Some(why) = why {
            self.hung_up = Some(format!("the console was hung up: {why}"));
            self.pending.clear();
            self.stdin = None;
        }
        Ok(())
    }

    /// Whether the console was hung up.
    pub(crate) fn is_hung_up(&self) -> bool {
        self.hung_up.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_one_json_object_a_line() {
        let r = serde_json::to_string(&Input::Resize(WinSize { rows: 2, cols: 3 })).unwrap();
        assert_eq!(r, r#"{"resize":{"rows":2,"cols":3}}"#);
        let d: Input = serde_json::from_str(r#"{"data":"ls\n"}"#).unwrap();
        assert_eq!(d, Input::Data("ls\n".into()));
    }

    #[tokio::test]
    async fn an_inlet_is_taken_once_and_its_keys_see_it_end() {
        let (keys, inlet) = Inlet::channel();
        assert_eq!(inlet.clone(), inlet);
        let rx = inlet.take();
        assert!(rx.is_some() && inlet.take().is_none());
        keys.send(Input::Data("a".into()), Duration::from_millis(10)).await.unwrap();
        drop(rx);
        let e = keys.send(Input::Data("b".into()), Duration::from_millis(10)).await.unwrap_err();
        assert!(e.contains("ended"), "{e}");
    }

    #[test]
    fn the_feed_writes_frames_as_lines_and_hangs_up_when_the_client_goes() {
        let mut child = std::process::Command::new("cat")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let (keys, inlet) = Inlet::channel();
        let mut feed = Feed::new(inlet.take().unwrap(), child.stdin.take().unwrap()).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        rt.block_on(keys.send(Input::Data("é\n".into()), Duration::from_secs(1))).unwrap();
        rt.block_on(keys.send(Input::Resize(WinSize::DEFAULT), Duration::from_secs(1))).unwrap();
        feed.turn().unwrap();
        assert!(!feed.is_hung_up());
        drop(keys);
        feed.turn().unwrap();
        assert_eq!(feed.hung_up.as_deref(), Some("the console was hung up: the client hung up"));
        // Its stdin closed: cat ends, having copied both lines.
        let out = child.wait_with_output().unwrap();
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            "{\"data\":\"é\\n\"}\n{\"resize\":{\"rows\":24,\"cols\":80}}\n"
        );
    }
}
