//! Pseudo-terminals for consoles (see [`super::console`]), helper side:
//! opening one, and the relay between it and the helper's pipes.
//!
//! Where the terminal comes from:
//! - **Linux**: the jail's own devpts instance (`/dev/pts`, mounted by
//!   `jail-init` in the jail's `/dev`), opened after entering the jail, so
//!   that the shell's `tty` is a device of the jail. The path is the
//!   jail's: it is opened with `O_NOFOLLOW | O_NONBLOCK`, and used only if
//!   it is a character device on a devpts filesystem (the only devpts a
//!   jail's root can reach is its own); the other side is then opened
//!   from it (`TIOCGPTPEER`), by no path at all.
//! - **FreeBSD**: `posix_openpt(2)` (a system call: no path) on the host,
//!   before attaching to the jail, and its other side by the host's
//!   `/dev/pts/N`. Inside the jail devfs shows it to the session whose
//!   controlling terminal it is, as for `jexec` from a host terminal.

use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::WaitStatus;
use nix::unistd::Pid;

use super::console::{Input, TYPED_MAX, WinSize};
use super::exec::ExecOutput;
use super::stream::{Chunk, LineOut, PIECE, Stream, decodable, set_blocking_fd};

/// Both sides of a terminal: the helper keeps `master`; `slave` becomes
/// the shell's stdin, stdout, stderr and controlling terminal.
pub(crate) struct Pty {
    pub master: OwnedFd,
    pub slave: OwnedFd,
}

impl Pty {
    /// A terminal of the jail's own devpts; called after entering the jail.
    #[cfg(target_os = "linux")]
    pub(crate) fn open() -> Result<Pty, String> {
        use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
        const PTMX: &str = "/dev/pts/ptmx";
        let master = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY)
            .open(PTMX)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => format!(
                    "the jail has no terminals of its own ({PTMX}): a console needs mount_devfs=1 and a jail \
                     started by this version of iocaged (restart it)"
                ),
                _ => format!("{PTMX}: {e}"),
            })?;
        let fs = nix::sys::statfs::fstatfs(&master).map_err(|e| format!("{PTMX}: {e}"))?;
        let meta = master.metadata().map_err(|e| format!("{PTMX}: {e}"))?;
        if fs.filesystem_type() != nix::sys::statfs::DEVPTS_SUPER_MAGIC || !meta.file_type().is_char_device() {
            return Err(format!("the jail's {PTMX} is not a terminal multiplexer of a devpts filesystem"));
        }
        let unlock: libc::c_int = 0;
        // SAFETY: TIOCSPTLCK reads one int, alive for the call; the
        // descriptor is open.
        if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) } != 0 {
            return Err(format!("unlocking the terminal: {}", Errno::last()));
        }
        // SAFETY: TIOCGPTPEER takes open flags by value and returns a new
        // descriptor, or -1.
        let fd = unsafe {
            libc::ioctl(master.as_raw_fd(), libc::TIOCGPTPEER, libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC)
        };
        if fd < 0 {
            return Err(format!("opening the terminal's other side: {}", Errno::last()));
        }
        // SAFETY: a new descriptor, owned by nothing else.
        let slave = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Pty { master: master.into(), slave })
    }

    /// A terminal of the host's; called before attaching to the jail.
    #[cfg(not(target_os = "linux"))]
    pub(crate) fn open() -> Result<Pty, String> {
        use std::os::unix::fs::OpenOptionsExt;
        // SAFETY: posix_openpt takes flags and returns a new descriptor, or -1.
        let fd = unsafe { libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(format!("posix_openpt: {}", Errno::last()));
        }
        // SAFETY: a new descriptor, owned by nothing else.
        let master = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: both take an open descriptor of ours.
        if unsafe { libc::grantpt(master.as_raw_fd()) } != 0 || unsafe { libc::unlockpt(master.as_raw_fd()) } != 0 {
            return Err(format!("preparing the terminal: {}", Errno::last()));
        }
        // SAFETY: ptsname returns a static buffer, or null; the helper is
        // single-threaded, so nothing else writes it before it is copied.
        let name = unsafe { libc::ptsname(master.as_raw_fd()) };
        if name.is_null() {
            return Err(format!("ptsname: {}", Errno::last()));
        }
        // SAFETY: not null: a NUL-terminated string, copied here.
        let name = unsafe { std::ffi::CStr::from_ptr(name) }.to_string_lossy().into_owned();
        let slave = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NOCTTY)
            .open(&name)
            .map_err(|e| format!("{name}: {e}"))?;
        set_blocking_fd(&master, false)?;
        Ok(Pty { master, slave: slave.into() })
    }
}

/// Tells the terminal its size (the shell's foreground gets SIGWINCH).
pub(crate) fn set_size(master: &OwnedFd, size: WinSize) -> Result<(), String> {
    let ws = libc::winsize { ws_row: size.rows, ws_col: size.cols, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCSWINSZ reads one winsize, alive for the call.
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) } != 0 {
        return Err(format!("setting the terminal's size: {}", Errno::last()));
    }
    Ok(())
}

/// In the shell's process, after setsid(2): `slave` becomes its
/// controlling terminal.
pub(crate) fn make_controlling(slave: &OwnedFd) -> Result<(), String> {
    // SAFETY: TIOCSCTTY takes an int by value; the descriptor is open.
    if unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) } != 0 {
        return Err(format!("TIOCSCTTY: {}", Errno::last()));
    }
    Ok(())
}

/// The longest line read from the daemon: an input frame's text, every
/// byte escaped.
const LINE_MAX: usize = 6 * super::console::INPUT_MAX + 1024;

/// Ticks given to what the terminal still shows after the shell ended.
const DRAIN_TICKS: u32 = 50;

/// Pieces relayed to stdout in one tick at most (the loop then looks at
/// the input and the signals).
const PIECES_A_TICK: usize = 8;

/// The helper's relay, until the shell `child` ended and its terminal is
/// drained: what the terminal shows goes to stdout as chunks, what comes
/// on stdin (the daemon's [`Input`] lines) to the terminal.
///
/// `kill(reaped)` kills the shell and everything it started (see the
/// helper's `Setup::kill`). It runs once the shell is reaped (what it left
/// behind goes, and the terminal closes), and every tick from the moment
/// the relay is stopped (SIGTERM, stdin closing: the client's hang-up, or
/// an error) until the shell is reaped: a shell killed before it made its
/// session or joined its group is killed again.
///
/// Paced as the exec helper's wait loop: a tick every [`super::capture::TICK`]
/// taken with sigwait(2). Bounded: after the shell is reaped, at most
/// [`DRAIN_TICKS`] for what its terminal still shows (a process of the
/// jail that keeps the terminal open does not hold the relay).
pub(crate) fn relay(child: Pid, master: &OwnedFd, signals: &SigSet, kill: &dyn Fn(bool)) -> Result<ExecOutput, String> {
    let stdin = std::io::stdin();
    set_blocking_fd(&stdin, false)?;
    let mut out = LineOut::start()?;
    let mut t = Terminal { shown: Vec::new(), typed: Vec::new(), line: Vec::new(), closed: false };
    let mut buf = vec![0u8; PIECE];
    let (mut status, mut stopped, mut drain) = (None, None::<String>, DRAIN_TICKS);
    loop {
        if status.is_none() {
            match super::helper::reap(child) {
                Ok(None) => {}
                Ok(Some(s)) => {
                    status = Some(s);
                    kill(true);
                }
                Err(e) => {
                    kill(false);
                    return Err(format!("waitpid: {e}"));
                }
            }
        }
        if stopped.is_none() {
            match t.turn(master, &stdin, &mut out, &mut buf, status.is_some() && drain == 0) {
                Ok(true) => {}
                // stdin closed: the client hung up.
                Ok(false) => stopped = Some(String::new()),
                Err(e) => stopped = Some(e),
            }
        }
        match (&status, &stopped) {
            // Stopped: again until the shell is reaped.
            (None, Some(_)) => kill(false),
            (Some(_), Some(_)) => break,
            (Some(_), None) => {
                if drain == 0 || (t.closed && t.shown.is_empty() && out.flush()?) {
                    break;
                }
                drain -= 1;
            }
            (None, None) => {}
        }
        if signals.wait() == Ok(Signal::SIGTERM) {
            if status.is_some() {
                // The shell ended by itself: what is left is sent now.
                drain = 0;
            } else if stopped.is_none() {
                stopped = Some(
                    "the console was stopped: the helper was told to stop (its client went away, the jail is \
                     being stopped, or the daemon stops)"
                        .into(),
                );
                kill(false);
            }
        }
    }
    drop(out);
    match stopped.filter(|why| !why.is_empty()) {
        Some(why) => Err(why),
        None => {
            let mut o = ExecOutput::default();
            match status {
                Some(WaitStatus::Exited(_, code)) => o.code = Some(code),
                Some(WaitStatus::Signaled(_, sig, _)) => o.signal = Some(sig as i32),
                _ => {}
            }
            Ok(o)
        }
    }
}

/// The relay's buffers.
struct Terminal {
    /// Read from the terminal, not yet sent (a character cut by a read).
    shown: Vec<u8>,
    /// Typed, not yet written to the terminal.
    typed: Vec<u8>,
    /// A line from the daemon, not yet whole.
    line: Vec<u8>,
    /// No process has the terminal open any more.
    closed: bool,
}

impl Terminal {
    /// One tick's relaying; false when stdin closed (the hang-up). `last`:
    /// what is left is sent whole, characters cut or not.
    fn turn(
        &mut self,
        master: &OwnedFd,
        stdin: &std::io::Stdin,
        out: &mut LineOut,
        buf: &mut [u8],
        last: bool,
    ) -> Result<bool, String> {
        // What the terminal shows, to the daemon.
        for _ in 0..PIECES_A_TICK {
            if !out.flush()? {
                break;
            }
            if !self.closed && self.shown.len() < PIECE {
                match nix::unistd::read(master, &mut buf[..PIECE - self.shown.len()]) {
                    // EIO: no process has the terminal open any more.
                    Ok(0) | Err(Errno::EIO) => self.closed = true,
                    Ok(n) => self.shown.extend_from_slice(&buf[..n]),
                    Err(Errno::EAGAIN | Errno::EINTR) => {}
                    Err(e) => return Err(format!("reading the terminal: {e}")),
                }
            }
            let n = if self.closed || last { self.shown.len() } else { decodable(&self.shown) };
            if n == 0 {
                break;
            }
            let data = String::from_utf8_lossy(&self.shown[..n]).into_owned();
            self.shown.drain(..n);
            out.set(&Chunk { stream: Stream::Stdout, data })?;
        }
        // What the client typed, to the terminal.
        if self.typed.len() < TYPED_MAX {
            match nix::unistd::read(stdin, buf) {
                Ok(0) => return Ok(false),
                Ok(n) => self.line.extend_from_slice(&buf[..n]),
                Err(Errno::EAGAIN | Errno::EINTR) => {}
                Err(e) => return Err(format!("reading the console's input: {e}")),
            }
            while let Some(end) = self.line.iter().position(|&b| b == b'\n') {
                let text: Vec<u8> = self.line.drain(..=end).collect();
                match serde_json::from_slice::<Input>(&text[..end]) {
                    Ok(Input::Data(d)) => self.typed.extend_from_slice(d.as_bytes()),
                    Ok(Input::Resize(size)) => set_size(master, size)?,
                    Err(e) => return Err(format!("the daemon sent a line that is not console input: {e}")),
                }
            }
            if self.line.len() > LINE_MAX {
                return Err(format!("the daemon sent a line over {LINE_MAX} bytes"));
            }
        }
        while !self.typed.is_empty() && !self.closed {
            match nix::unistd::write(master.as_fd(), &self.typed) {
                Ok(n) => {
                    self.typed.drain(..n);
                }
                Err(Errno::EAGAIN) => break,
                Err(Errno::EINTR) => {}
                Err(Errno::EIO) => self.typed.clear(),
                Err(e) => return Err(format!("writing to the terminal: {e}")),
            }
        }
        Ok(true)
    }
}
