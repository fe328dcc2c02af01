//! The forked child's way from the helper to the command: the user as
//! the jail's own `/etc/passwd` defines them, its stdin, stdout and stderr
//! (captured, or a console's terminal), the jail's confinement, a clean
//! environment, and exec.

use std::ffi::CString;
use std::os::fd::AsFd;

use nix::sys::signal::Signal;
use nix::unistd::{Gid, Pid, Uid};

use super::setup::Setup;
use crate::runtime::capture::Capture;
use crate::runtime::exec::{DEFAULT_PATH, HelperRequest};
use crate::runtime::{passwd, pty};

/// `TERM` in a console: what browser terminals and most others emulate.
const CONSOLE_TERM: &str = "xterm";

/// Where the child's stdin, stdout and stderr go.
pub(super) enum Io<'a> {
    /// A command's: nothing in, the output into the memory files.
    Captured { devnull: &'a std::fs::File, out: &'a Capture, err: &'a Capture },
    /// A console's: all three the terminal, which becomes the controlling
    /// terminal of a session of the shell's own.
    Terminal(&'a std::os::fd::OwnedFd),
}

/// In the child: the user's identity, the jail's confinement, a clean
/// environment, the command (or, for a console, the user's login shell).
/// Returns only on failure, with the reason.
pub(super) fn become_and_exec(req: &HelperRequest, setup: &Setup, io: Io<'_>) -> String {
    let user = req.user.as_str();
    let read = |p: &str, must: bool| match passwd::read_jail_file(std::path::Path::new(p), passwd::JAIL_FILE_LIMIT) {
        Ok(b) => Ok(String::from_utf8_lossy(&b).into_owned()),
        Err(_) if !must && !std::path::Path::new(p).exists() => Ok(String::new()),
        Err(e) => Err(format!("cannot read the jail's {p}: {e}")),
    };
    let (pw, gr) = match (read("/etc/passwd", true), read("/etc/group", false)) {
        (Ok(p), Ok(g)) => (p, g),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    let Some(acct) = passwd::lookup(user, &pw, &gr) else {
        return format!("no user {user:?} in the jail's /etc/passwd");
    };
    let set_up = || -> Result<(), String> {
        let e = |e: nix::Error| e.to_string();
        match io {
            Io::Captured { devnull, out, err } => {
                nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0)).map_err(e)?;
                nix::unistd::dup2_stdin(devnull.as_fd()).map_err(e)?;
                nix::unistd::dup2_stdout(out.file().as_fd()).map_err(e)?;
                nix::unistd::dup2_stderr(err.file().as_fd()).map_err(e)?;
            }
            Io::Terminal(t) => {
                nix::unistd::setsid().map_err(e)?;
                pty::make_controlling(t)?;
                // Its terminal is the user's, as login(1) leaves it (on
                // FreeBSD, in the host's devfs: the jail's keeps its own).
                nix::unistd::fchown(t, Some(Uid::from_raw(acct.uid)), None).map_err(e)?;
                nix::unistd::dup2_stdin(t.as_fd()).map_err(e)?;
                nix::unistd::dup2_stdout(t.as_fd()).map_err(e)?;
                nix::unistd::dup2_stderr(t.as_fd()).map_err(e)?;
            }
        }
        Ok(())
    };
    if let Err(e) = set_up() {
        return format!("cannot set the command up: {e}");
    }
    // The daemon ignores SIGPIPE (as Rust programs do); the command must
    // not inherit that (`yes | head` would never end).
    // SAFETY: setting a signal's disposition to its default installs no
    // handler; nothing else runs in this single-threaded child.
    if let Err(e) = unsafe { nix::sys::signal::signal(Signal::SIGPIPE, nix::sys::signal::SigHandler::SigDfl) } {
        return format!("cannot set the command up: SIGPIPE: {e}");
    }
    let console = matches!(io, Io::Terminal(_));
    let become_user = || -> Result<(), String> {
        let groups: Vec<Gid> = acct.groups.iter().map(|&g| Gid::from_raw(g)).collect();
        nix::unistd::setgroups(&groups).map_err(|e| format!("setgroups: {e}"))?;
        nix::unistd::setgid(Gid::from_raw(acct.gid)).map_err(|e| format!("setgid: {e}"))?;
        nix::unistd::setuid(Uid::from_raw(acct.uid)).map_err(|e| format!("setuid: {e}"))
    };
    if let Err(e) = setup.confine(become_user) {
        return format!("cannot become {user}: {e}");
    }
    if nix::unistd::chdir(acct.home.as_str()).is_err() {
        let _ = nix::unistd::chdir("/");
    }
    let cstr = |s: String| CString::new(s).unwrap_or_default();
    let mut env: Vec<CString> = [
        format!("HOME={}", acct.home),
        format!("USER={}", acct.name),
        format!("LOGNAME={}", acct.name),
        format!("SHELL={}", acct.shell),
        format!("PATH={DEFAULT_PATH}"),
    ]
    .map(cstr)
    .into();
    if !console {
        let argv = ["sh".to_string(), "-c".to_string(), req.command.clone()].map(cstr);
        return match nix::unistd::execve(c"/bin/sh", &argv, &env) {
            Err(e) => format!("cannot run the jail's /bin/sh: {e}"),
        };
    }
    // The user's shell as a login shell: its name with a leading dash.
    env.push(cstr(format!("TERM={}", CONSOLE_TERM)));
    let shell = if acct.shell.is_empty() { "/bin/sh" } else { acct.shell.as_str() };
    let name = shell.rsplit('/').next().unwrap_or("sh");
    match nix::unistd::execve(&cstr(shell.to_string()), &[cstr(format!("-{name}"))], &env) {
        Err(e) => format!("cannot run {user}'s shell {shell}: {e}"),
    }
}
