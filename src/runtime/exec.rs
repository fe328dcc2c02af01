//! Running a command inside a jail, daemon side: starts `iocaged
//! jail-exec` (see [`super::helper`]) and reads the JSON it prints.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::capture::{Capture, TICK};
use super::console::Feed;
use super::stream::Outlet;
use super::{ExecIo, ExecSpec, RunningJail, RuntimeError};

/// What a command run in a jail left: its output, whole and in order, and
/// how it ended.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecOutput {
    pub stdout: String,
    pub stderr: String,
    /// Exit status, when it exited.
    pub code: Option<i32>,
    /// Signal number, when a signal ended it.
    pub signal: Option<i32>,
    /// Killed because it ran longer than its timeout.
    pub timed_out: bool,
    /// Stopped because its output reached the limit; `stdout`/`stderr`
    /// hold what it wrote up to there.
    #[serde(default)]
    pub truncated: bool,
}

impl ExecOutput {
    pub fn success(&self) -> bool {
        self.code == Some(0) && !self.timed_out && !self.truncated
    }

    /// How it ended, in words, for error messages.
    pub fn ending(&self) -> String {
        if self.truncated {
            return "was stopped when its output reached the limit (the output is cut there)".into();
        }
        match (self.timed_out, self.code, self.signal) {
            (true, _, _) => "was killed when its timeout ran out".into(),
            (_, Some(c), _) => format!("exited with status {c}"),
            (_, _, Some(s)) => format!("was killed by signal {s}"),
            _ => "ended in an unknown way".into(),
        }
    }

    /// The last non-empty line of stderr (or stdout), for error messages.
    pub fn last_line(&self) -> Option<&str> {
        [&self.stderr, &self.stdout].into_iter().find_map(|s| s.lines().rev().map(str::trim).find(|l| !l.is_empty()))
    }
}

/// The helper's one line of output.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum HelperReply {
    Done(ExecOutput),
    Failed(String),
    /// Streamed output, before `Done` (see [`super::stream`]).
    Output(super::stream::Chunk),
}

/// What `iocaged jail-exec` is asked to do (its one argument, as JSON).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct HelperRequest {
    pub name: String,
    pub jid: i64,
    pub user: String,
    pub command: String,
    /// Seconds; 0: none.
    pub timeout: u64,
    /// Bytes of each of stdout and stderr kept before the command is
    /// stopped.
    pub output_limit: u64,
    /// Stream the output as it comes (see [`super::stream`]).
    #[serde(default)]
    pub stream: bool,
    /// A console of this size instead of the command (see
    /// [`super::console`]).
    #[serde(default)]
    pub console: Option<super::console::WinSize>,
    /// Linux: the jail's cgroup; the command runs in a group of its own
    /// below it, killed whole when the command is.
    pub cgroup: Option<PathBuf>,
    /// Linux: how the jail is confined (recorded when it started).
    #[cfg(target_os = "linux")]
    pub confine: Option<super::linux::confine::Confinement>,
}

impl HelperRequest {
    /// The request for running `spec` in `jail`, with no cgroup and no
    /// confinement (the Linux runtime adds its own).
    pub(crate) fn new(jail: &RunningJail, spec: &ExecSpec) -> HelperRequest {
        HelperRequest {
            name: jail.name.clone(),
            jid: jail.jid,
            user: spec.user.clone(),
            command: spec.command.clone(),
            timeout: timeout_secs(spec.timeout),
            output_limit: spec.output_limit,
            stream: !matches!(spec.io, ExecIo::Captured),
            console: match &spec.io {
                ExecIo::Console(_, c) => Some(c.size),
                ExecIo::Captured | ExecIo::Streamed(_) => None,
            },
            cgroup: None,
            #[cfg(target_os = "linux")]
            confine: None,
        }
    }
}

/// How long past the command's own timeout the daemon waits for the
/// helper before killing it (the helper bounds itself; this bounds a
/// helper stuck in the kernel).
const HELPER_GRACE: Duration = Duration::from_secs(30);

/// Starts the helper with `req` (made from the same spec as `io`) and
/// reads its reply. Streamed, the output goes to the outlet as it comes
/// and the reply has none; for a console, the helper runs the user's
/// shell on a terminal instead of the command, and the console's input
/// goes to it. `started` is told the helper's pid, before anything waits
/// for it; what it returns is kept until the helper is reaped, and an
/// error kills the helper and is the request's.
pub(crate) fn run_helper<T>(
    req: HelperRequest,
    io: &ExecIo,
    started: impl FnOnce(u32) -> Result<T, String>,
) -> Result<ExecOutput, RuntimeError> {
    use std::os::unix::process::CommandExt;
    let verb = if matches!(io, ExecIo::Console(..)) { "run a console in" } else { "run a command in" };
    let fail = |m: String| RuntimeError::new(verb, &req.name, m);
    let (outlet, inlet) = match io {
        ExecIo::Captured => (None, None),
        ExecIo::Streamed(outlet) => (Some(outlet), None),
        ExecIo::Console(outlet, c) => {
            (Some(outlet), Some(c.inlet.take().ok_or_else(|| fail("the console's input was already taken".into()))?))
        }
    };
    let arg = serde_json::to_string(&req).map_err(|e| fail(format!("encoding the request: {e}")))?;
    let mut child = Command::new(super::helper::program())
        .arg0(super::helper::program_name())
        .args(["jail-exec", super::helper::BUILD_ID])
        .arg(arg)
        .env_clear()
        .stdin(if inlet.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("starting the helper: {e}")))?;
    let _started = match started(child.id()) {
        Ok(kept) => kept,
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(fail(e));
        }
    };
    let bound = (req.timeout > 0).then(|| Duration::from_secs(req.timeout).saturating_add(HELPER_GRACE));
    if let Some(outlet) = outlet {
        let mut feed = match (inlet, child.stdin.take()) {
            (Some(inlet), Some(stdin)) => match Feed::new(inlet, stdin) {
                Ok(f) => Some(f),
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(fail(e));
                }
            },
            _ => None,
        };
        let out = streamed(child, outlet, bound, feed.as_mut());
        // A console the client hung up ends for that reason, whatever
        // the shell's ending.
        return match feed.and_then(|f| f.hung_up) {
            Some(why) => Err(fail(why)),
            None => out.map_err(fail),
        };
    }
    let out = wait_output(child, bound).map_err(|e| fail(format!("waiting for the helper: {e}")))?;
    match serde_json::from_slice::<HelperReply>(&out.stdout) {
        Ok(HelperReply::Done(o)) => Ok(o),
        Ok(HelperReply::Failed(message)) => Err(fail(message)),
        Ok(HelperReply::Output(_)) | Err(_) => Err(fail(failed("helper", out.status, &out.stderr))),
    }
}

/// [`run_helper`]'s streaming side: the chunks go to `outlet` as they
/// come; then the helper is reaped.
fn streamed(
    mut child: std::process::Child,
    outlet: &Outlet,
    bound: Option<Duration>,
    feed: Option<&mut Feed>,
) -> Result<ExecOutput, String> {
    let read = super::stream::read_streamed(&mut child, outlet, bound, feed);
    // Its stdout closed, or it was killed: it is ending.
    let status = child.wait().map_err(|e| format!("waiting for the helper: {e}"))?;
    match read? {
        Some(HelperReply::Done(o)) => Ok(o),
        Some(HelperReply::Failed(message)) => Err(message),
        _ => {
            let mut stderr = Vec::new();
            if let Some(e) = child.stderr.take() {
                let _ = std::io::Read::read_to_end(&mut std::io::Read::take(e, 64 << 10), &mut stderr);
            }
            Err(failed("helper", status, &stderr))
        }
    }
}

/// A helper that ended without its reply: its status and what it said.
fn failed(what: &str, status: std::process::ExitStatus, stderr: &[u8]) -> String {
    format!("the {what} failed ({status}): {}", String::from_utf8_lossy(stderr).trim())
}

/// Runs the helper `iocaged <subcommand>` with `request` on its stdin,
/// bounded by `bound`, and reads its one line: `ok[ <rest>]` gives the
/// rest, `error <why>` fails with why; anything else (it crashed) fails
/// with its status and stderr. `what` names it in errors.
pub(crate) fn line_helper(subcommand: &str, request: &[u8], bound: Duration, what: &str) -> Result<String, String> {
    use std::io::Write;
    use std::os::unix::process::CommandExt;
    let mut child = Command::new(super::helper::program())
        .arg0(super::helper::program_name())
        .args([subcommand, super::helper::BUILD_ID])
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("starting the {what}: {e}"))?;
    // A helper that refuses (another build's) may exit before reading:
    // its own line then says why better than the broken pipe.
    let written = child.stdin.take().map(|mut stdin| stdin.write_all(request)).transpose();
    let out = wait_output(child, Some(bound)).map_err(|e| format!("waiting for the {what}: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.trim();
    if let Some(why) = line.strip_prefix("error ") {
        return Err(why.to_string());
    }
    if let Err(e) = written {
        return Err(format!("writing to the {what}: {e}"));
    }
    match line.strip_prefix("ok").filter(|r| r.is_empty() || r.starts_with(' ')) {
        Some(rest) => Ok(rest.trim_start().to_string()),
        None => Err(failed(what, out.status, &out.stderr)),
    }
}

/// `wait_with_output`, killing the child once `bound` has passed.
pub(crate) fn wait_output(
    child: std::process::Child,
    bound: Option<Duration>,
) -> std::io::Result<std::process::Output> {
    let Some(bound) = bound else { return child.wait_with_output() };
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    match rx.recv_timeout(bound) {
        Ok(r) => r,
        Err(_) => {
            // Not reaped yet (the waiting thread holds it): the pid is
            // still this child's.
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            rx.recv().map_err(|e| std::io::Error::other(e.to_string()))?
        }
    }
}

/// What a command run in a jail is allowed: how long, how much output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    pub timeout: Option<Duration>,
    pub output_limit: u64,
}

/// Runs `spec` in `jail` (FreeBSD, or any runtime without a cgroup).
pub fn run(jail: &RunningJail, spec: &ExecSpec) -> Result<ExecOutput, RuntimeError> {
    run_helper(HelperRequest::new(jail, spec), &spec.io, |_| Ok(()))
}

/// Whole seconds, at least 1; 0 for none.
pub(crate) fn timeout_secs(t: Option<Duration>) -> u64 {
    t.map_or(0, |t| t.as_secs().max(1))
}

/// Runs a command on the host (the `exec_prestart`-style hooks): `program`
/// with `args`, a clean environment plus `env`, its process group killed
/// after `bounds.timeout` or once its output reaches the limit.
pub fn run_host(program: &Path, args: &[&str], env: &[(&str, &str)], bounds: Bounds) -> Result<ExecOutput, String> {
    use std::os::unix::process::{CommandExt, ExitStatusExt};
    let (out, err) = (Capture::new("stdout", bounds.output_limit)?, Capture::new("stderr", bounds.output_limit)?);
    let mut child = Command::new(program)
        .args(args)
        .env_clear()
        .env("PATH", DEFAULT_PATH)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(out.stdio()?)
        .stderr(err.stdio()?)
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
    let pgid = nix::unistd::Pid::from_raw(child.id() as i32);
    let started = std::time::Instant::now();
    let (mut timed_out, mut truncated) = (false, false);
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| format!("waiting for {}: {e}", program.display()))? {
            break status;
        }
        if !timed_out && !truncated {
            timed_out = bounds.timeout.is_some_and(|t| started.elapsed() >= t);
            truncated = out.over() || err.over();
            if timed_out || truncated {
                let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
            }
        }
        std::thread::sleep(TICK);
    };
    truncated |= out.over() || err.over();
    Ok(ExecOutput {
        stdout: out.read(),
        stderr: err.read(),
        code: status.code(),
        signal: status.signal(),
        timed_out,
        truncated,
    })
}

/// `PATH` for commands the service runs, on the host and in jails.
pub const DEFAULT_PATH: &str = "/sbin:/bin:/usr/sbin:/usr/bin:/usr/local/sbin:/usr/local/bin";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_capped_by_the_kernel_and_the_writer_stopped() {
        let b = Bounds { timeout: Some(Duration::from_secs(20)), output_limit: 1000 };
        let o = run_host(Path::new("/bin/sh"), &["-c", "echo hi; echo err >&2"], &[], b).unwrap();
        assert_eq!((o.stdout.as_str(), o.stderr.as_str(), o.success()), ("hi\n", "err\n", true));
        let started = std::time::Instant::now();
        // `yes` never stops by itself (it would, on EPERM: the loop does not).
        let o =
            run_host(Path::new("/bin/sh"), &["-c", "while :; do echo yyyyyyyyyy 2>/dev/null; done"], &[], b).unwrap();
        assert!(o.truncated && !o.timed_out && !o.success(), "{o:?}");
        assert_eq!(o.stdout.len(), 1000);
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(o.ending().contains("output reached the limit"));
        let b = Bounds { timeout: Some(Duration::from_secs(1)), output_limit: 1000 };
        let o = run_host(Path::new("/bin/sh"), &["-c", "(setsid sleep 30 &); sleep 30"], &[], b).unwrap();
        assert!(o.timed_out && !o.truncated, "{o:?}");
    }

    #[test]
    fn endings_are_told_apart() {
        let mut o = ExecOutput { stdout: "a\n\nlast out\n".into(), code: Some(0), ..Default::default() };
        assert!(o.success());
        assert_eq!(o.last_line(), Some("last out"));
        o.stderr = "oops\n  \n".into();
        assert_eq!(o.last_line(), Some("oops"));
        o.code = Some(3);
        assert_eq!((o.success(), o.ending().as_str()), (false, "exited with status 3"));
        o.timed_out = true;
        assert!(o.ending().contains("timeout"));
        let sig = ExecOutput { signal: Some(9), ..Default::default() };
        assert_eq!(sig.ending(), "was killed by signal 9");
    }
}
