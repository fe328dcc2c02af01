//! Running a command inside a jail, daemon side: starts `iocaged
//! jail-exec` (see [`super::helper`]) and reads the JSON it prints.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};

use super::{ExecSpec, RunningJail, RuntimeError};

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
}

impl ExecOutput {
    pub fn success(&self) -> bool {
        self.code == Some(0) && !self.timed_out
    }

    /// How it ended, in words, for error messages.
    pub fn ending(&self) -> String {
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
}

/// This very binary, to start helpers with. On Linux `/proc/self/exe`
/// still works when the file was replaced by an upgrade.
pub(crate) fn self_exe() -> PathBuf {
    if cfg!(target_os = "linux") {
        PathBuf::from("/proc/self/exe")
    } else {
        std::env::current_exe().unwrap_or_else(|_| PathBuf::from("/usr/local/sbin/iocaged"))
    }
}

/// Runs `spec` in `jail`; `cgroup` is the Linux jail's cgroup, which the
/// command joins so that the jail's limits hold for it too.
pub fn run_with(jail: &RunningJail, spec: &ExecSpec, cgroup: Option<&Path>) -> Result<ExecOutput, RuntimeError> {
    use std::os::unix::process::CommandExt;
    let timeout = spec.timeout.map_or(0, |t| t.as_secs().max(1));
    let out = Command::new(self_exe())
        .arg0("iocaged")
        .arg("jail-exec")
        .arg(&jail.name)
        .arg(jail.jid.to_string())
        .arg(&spec.user)
        .arg(timeout.to_string())
        .arg(cgroup.map_or_else(|| "-".into(), |c| c.display().to_string()))
        .arg(&spec.command)
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| RuntimeError::new("run a command in", &jail.name, format!("starting the helper: {e}")))?;
    match serde_json::from_slice::<HelperReply>(&out.stdout) {
        Ok(HelperReply::Done(o)) => Ok(o),
        Ok(HelperReply::Failed(message)) => Err(RuntimeError::new("run a command in", &jail.name, message)),
        Err(_) => Err(RuntimeError::new(
            "run a command in",
            &jail.name,
            format!("the helper failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim()),
        )),
    }
}

/// [`run_with`] without a cgroup (FreeBSD).
pub fn run(jail: &RunningJail, spec: &ExecSpec) -> Result<ExecOutput, RuntimeError> {
    run_with(jail, spec, None)
}

/// Output of a process collected in an anonymous memory file rather than a
/// pipe: a command that leaves daemons behind (an `/etc/rc`) would keep a
/// pipe open for ever, while the file can be read as soon as it exits.
pub(crate) struct Capture(std::fs::File);

/// At most this much of each stream is kept.
const CAPTURE_LIMIT: u64 = 4 << 20;

impl Capture {
    pub(crate) fn new(name: &str) -> Result<Capture, String> {
        use nix::sys::memfd::{MFdFlags, memfd_create};
        let fd = memfd_create(name, MFdFlags::MFD_CLOEXEC).map_err(|e| format!("memfd_create: {e}"))?;
        Ok(Capture(std::fs::File::from(fd)))
    }

    pub(crate) fn file(&self) -> &std::fs::File {
        &self.0
    }

    pub(crate) fn stdio(&self) -> Result<Stdio, String> {
        self.0.try_clone().map(Stdio::from).map_err(|e| format!("dup: {e}"))
    }

    /// What was written so far (lossy UTF-8, at most [`CAPTURE_LIMIT`]).
    pub(crate) fn read(&self) -> String {
        use std::io::{Read, Seek, SeekFrom};
        let mut f = &self.0;
        let mut buf = Vec::new();
        if f.seek(SeekFrom::Start(0)).is_ok() {
            let _ = f.take(CAPTURE_LIMIT).read_to_end(&mut buf);
        }
        String::from_utf8_lossy(&buf).into_owned()
    }
}

/// Runs a command on the host (the `exec_prestart`-style hooks): `program`
/// with `args`, a clean environment plus `env`, killed with its process
/// group after `timeout`.
pub fn run_host(
    program: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    timeout: Option<std::time::Duration>,
) -> Result<ExecOutput, String> {
    use std::os::unix::process::{CommandExt, ExitStatusExt};
    let (out, err) = (Capture::new("stdout")?, Capture::new("stderr")?);
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
    let mut timed_out = false;
    let status = match timeout {
        None => child.wait(),
        Some(t) => {
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || tx.send(child.wait()));
            match rx.recv_timeout(t) {
                Ok(status) => status,
                Err(_) => {
                    timed_out = true;
                    let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
                    rx.recv().map_err(|e| format!("waiting for {}: {e}", program.display()))?
                }
            }
        }
    }
    .map_err(|e| format!("waiting for {}: {e}", program.display()))?;
    Ok(ExecOutput { stdout: out.read(), stderr: err.read(), code: status.code(), signal: status.signal(), timed_out })
}

/// `PATH` for commands the service runs, on the host and in jails.
pub const DEFAULT_PATH: &str = "/sbin:/bin:/usr/sbin:/usr/bin:/usr/local/sbin:/usr/local/bin";

#[cfg(test)]
mod tests {
    use super::*;

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
