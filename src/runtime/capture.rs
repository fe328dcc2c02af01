//! Output collected in a sealed anonymous memory file rather than a pipe
//! (see [`Capture`]): the exec helper's and host commands' stdout and
//! stderr, read back whole or, streamed, piece by piece.

use std::process::Stdio;
use std::time::Duration;

/// Output of a process collected in an anonymous memory file rather than a
/// pipe: a command that leaves daemons behind (an `/etc/rc`) would keep a
/// pipe open for ever, while the file can be read as soon as it exits.
///
/// The file is made twice `limit` bytes long (at least 64 KiB more) and
/// sealed against growing: the kernel refuses (EPERM) every write past
/// that, so the output takes bounded memory whatever the command does.
/// [`Capture::over`] tells the waiting side, which looks every [`TICK`],
/// to stop the command once it has written more than `limit`; what is
/// read back is cut at `limit`. The writer's offset is shared with this
/// descriptor (the same open file), so it is how much was written.
pub(crate) struct Capture {
    file: std::fs::File,
    limit: u64,
}

/// The default limit of each stream.
pub const DEFAULT_OUTPUT_LIMIT: u64 = 4 << 20;

impl Capture {
    pub(crate) fn new(name: &str, limit: u64) -> Result<Capture, String> {
        use nix::sys::memfd::{MFdFlags, memfd_create};
        use std::os::fd::AsRawFd;
        let fd = memfd_create(name, MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING)
            .map_err(|e| format!("memfd_create: {e}"))?;
        let file = std::fs::File::from(fd);
        file.set_len(Self::room(limit)).map_err(|e| format!("sizing the output file: {e}"))?;
        let seals = libc::F_SEAL_GROW | libc::F_SEAL_SHRINK | libc::F_SEAL_SEAL;
        // SAFETY: F_ADD_SEALS takes an int; the descriptor is ours and open.
        if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_ADD_SEALS, seals) } != 0 {
            return Err(format!("sealing the output file: {}", std::io::Error::last_os_error()));
        }
        Ok(Capture { file, limit })
    }

    /// The size of the sealed file: the limit and as much again, so that a
    /// write crossing the limit lands (and is seen) rather than failing.
    fn room(limit: u64) -> u64 {
        limit.saturating_add(limit.max(64 << 10))
    }

    pub(crate) fn file(&self) -> &std::fs::File {
        &self.file
    }

    pub(crate) fn stdio(&self) -> Result<Stdio, String> {
        self.file.try_clone().map(Stdio::from).map_err(|e| format!("dup: {e}"))
    }

    /// How much has been written (the shared offset).
    fn written(&self) -> u64 {
        use std::io::Seek;
        (&self.file).stream_position().map_or(0, |p| p.min(Self::room(self.limit)))
    }

    /// Whether the command has written more than it may.
    pub(crate) fn over(&self) -> bool {
        self.written() > self.limit
    }

    /// Up to `max` bytes of what was written, from `from` on (cut at the
    /// limit), and whether they reach the end of what was written so far.
    pub(crate) fn bytes(&self, from: u64, max: usize) -> (Vec<u8>, bool) {
        use std::os::unix::fs::FileExt;
        let end = self.written().min(self.limit);
        let n = end.saturating_sub(from).min(u64::try_from(max).unwrap_or(u64::MAX));
        let mut buf = vec![0u8; usize::try_from(n).unwrap_or(0)];
        if self.file.read_exact_at(&mut buf, from).is_err() {
            return (Vec::new(), false);
        }
        (buf, from.saturating_add(n) == end)
    }

    /// What was written (lossy UTF-8), cut at the limit.
    pub(crate) fn read(&self) -> String {
        use std::os::unix::fs::FileExt;
        let n = usize::try_from(self.written().min(self.limit)).unwrap_or(0);
        let mut buf = vec![0u8; n];
        let got = self.file.read_at(&mut buf, 0).unwrap_or(0);
        buf.truncate(got);
        String::from_utf8_lossy(&buf).into_owned()
    }
}

/// How often a waiting side looks at the clock and the output.
pub(crate) const TICK: Duration = Duration::from_millis(20);
