//! The copy's two helper processes: `iocaged zfs-send` (the sender, which
//! runs `lzc_send` into its stdout) and `iocaged zfs-relay` (which copies
//! its stdin to its stdout, saying how far it is on stderr). See the
//! [parent module](super) for why they are processes.

use std::ffi::CString;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::process::ExitCode;
use std::ptr;
use std::time::Instant;

use iocaged_sys as sys;

use super::{PROGRESS_EVERY, RELAY_HELPER, SEND_HELPER, with_core};

/// What the relay reads and writes at once.
const RELAY_BUFFER: usize = 1 << 20;

/// Copies `from` to `to` until `from` ends, calling `say(sent)` first,
/// then at most every [`PROGRESS_EVERY`]. The bytes copied.
fn relay(mut from: impl Read, mut to: impl Write, mut say: impl FnMut(u64)) -> std::io::Result<u64> {
    let mut buf = vec![0u8; RELAY_BUFFER];
    let mut sent: u64 = 0;
    say(0);
    let mut said_at = Instant::now();
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(sent),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        to.write_all(&buf[..n])?;
        sent = sent.saturating_add(n as u64);
        if said_at.elapsed() >= PROGRESS_EVERY {
            say(sent);
            said_at = Instant::now();
        }
    }
}

/// `iocaged zfs-send SNAPSHOT`: writes a full send stream of SNAPSHOT to
/// standard output (the relay's pipe). Exits 0, or 1 with the reason on
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

/// `iocaged zfs-relay TOTAL`: copies standard input to standard output,
/// saying on standard error how far it is (see the module). Exits 0, or 1
/// with the reason on standard error.
pub fn relay_main(args: &[String]) -> ExitCode {
    let Some(total) = args.first().and_then(|t| t.parse::<u64>().ok()).filter(|_| args.len() == 1) else {
        eprintln!("usage: iocaged {RELAY_HELPER} TOTAL (started by the daemon for a thick copy)");
        return ExitCode::from(2);
    };
    // Standard output as a plain file: no line buffering of binary data.
    let out = match std::io::stdout().as_fd().try_clone_to_owned() {
        Ok(fd) => std::fs::File::from(fd),
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    // Nobody reading stderr is no reason to stop the copy.
    let relayed = relay(std::io::stdin().lock(), out, |sent| {
        let _ = writeln!(std::io::stderr(), "progress {sent} {total}");
    });
    match relayed {
        Ok(sent) => {
            let _ = writeln!(std::io::stderr(), "sent {sent}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_relay_copies_everything_and_says_so_first() {
        let data: Vec<u8> = (0..3 * RELAY_BUFFER + 17).map(|i| (i % 251) as u8).collect();
        let mut out = Vec::new();
        let mut said = Vec::new();
        let sent = relay(&data[..], &mut out, |s| said.push(s)).unwrap();
        assert_eq!(sent, data.len() as u64);
        assert_eq!(out, data);
        assert_eq!(said[0], 0, "progress starts at once");
    }

    #[test]
    fn a_relay_whose_reader_went_away_fails() {
        struct Gone;
        impl Write for Gone {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(std::io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let err = relay(&[1u8; 10][..], Gone, |_| {}).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::BrokenPipe);
    }
}
