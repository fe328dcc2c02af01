//! Runs the real `iocaged serve` binary for a test and stops it cleanly.

use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

static NEXT_PORT: AtomicU16 = AtomicU16::new(12150);

pub struct Daemon {
    child: Option<Child>,
    pub ws: SocketAddr,
    pub rest: SocketAddr,
    /// A read/write API key this daemon accepts; the rig's clients present it.
    pub key: String,
    pub keys_file: String,
}

/// The PAM service the guest tests configure (tests/rig/users.rs).
pub const PAM_SERVICE: &str = "iocaged-test";

impl Daemon {
    /// Starts iocaged on fresh loopback ports with `extra` arguments and
    /// waits until both ports accept connections.
    /// (Readiness is a TCP connect, so this serves TLS daemons too.)
    pub fn start(extra: &[&str]) -> Daemon {
        Daemon::start_logging(extra, None)
    }

    /// [`Daemon::start`] with the daemon's log (stderr) going to `log`
    /// instead of the console: a log line per request on the guest's
    /// serial console costs more than most requests, which a benchmark
    /// must not measure.
    pub fn start_logging(extra: &[&str], log: Option<&str>) -> Daemon {
        Daemon::start_build(None, extra, log)
    }

    /// [`Daemon::start_logging`] of the daemon binary `bin` (by default
    /// `IOCAGED_BIN`, else this build's): the benchmark compares two builds
    /// in one run.
    pub fn start_build(bin: Option<&str>, extra: &[&str], log: Option<&str>) -> Daemon {
        Daemon::start_build_env(bin, extra, log, &[])
    }

    /// [`Daemon::start_build`] with these variables added to the daemon's
    /// environment (the benchmark compares allocator settings).
    pub fn start_build_env(bin: Option<&str>, extra: &[&str], log: Option<&str>, env: &[(&str, &str)]) -> Daemon {
        let port = NEXT_PORT.fetch_add(2, Ordering::SeqCst);
        let ws: SocketAddr = ([127, 0, 0, 1], port).into();
        let rest: SocketAddr = ([127, 0, 0, 1], port + 1).into();
        let keys_file = format!("/tmp/iocaged-test-keys-{port}/keys");
        let _ = std::fs::remove_dir_all(format!("/tmp/iocaged-test-keys-{port}"));
        let key = iocaged::auth::keys::add(std::path::Path::new(&keys_file), "rig", iocaged::auth::Role::ReadWrite)
            .expect("make the rig's API key");
        super::client::register_key(ws, &key);
        super::client::register_key(rest, &key);
        // IOCAGED_BIN: another build to run instead (to compare two builds
        // with the benchmark in one guest run); by default this build's.
        let bin = bin
            .map(str::to_string)
            .unwrap_or_else(|| std::env::var("IOCAGED_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_iocaged").into()));
        let mut child = Command::new(bin)
            .args(["serve", "--websocket", &ws.to_string(), "--rest", &rest.to_string()])
            .args(["--keys", &keys_file, "--pam-service", PAM_SERVICE])
            .args(extra)
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stderr(match log {
                Some(path) => Stdio::from(std::fs::File::create(path).expect("create the daemon's log")),
                None => Stdio::inherit(),
            })
            .spawn()
            .expect("start iocaged");
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(ws).is_err() || TcpStream::connect(rest).is_err() {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("iocaged exited during start-up: {status}");
            }
            assert!(Instant::now() < deadline, "iocaged did not listen within 60 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        Daemon { child: Some(child), ws, rest, key, keys_file }
    }

    /// A daemon that also reads these configuration lines (TOML).
    pub fn with_config(config: &str) -> Daemon {
        static N: AtomicU16 = AtomicU16::new(0);
        let path = format!("/tmp/iocaged-test-{}-{}.toml", std::process::id(), N.fetch_add(1, Ordering::SeqCst));
        std::fs::write(&path, config).unwrap();
        Daemon::start(&["--config", &path])
    }

    /// Sends SIGTERM and returns whether iocaged exited successfully
    /// within 30 s.
    pub fn stop(mut self) -> bool {
        self.terminate()
    }

    /// The daemon's pid (for reading its memory use).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL: the daemon gets no chance to clean up. Panics if it has not
    /// died within 60 s (see `kill_and_reap`).
    pub fn kill(mut self) {
        if let Some(child) = self.child.take() {
            if let Err(e) = kill_and_reap(child) {
                panic!("{e}");
            }
        }
    }

    fn terminate(&mut self) -> bool {
        let Some(mut child) = self.child.take() else { return true };
        // SAFETY: kill(2) on the pid of a child we own and have not reaped.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status.success();
            }
            if Instant::now() > deadline {
                if let Err(e) = kill_and_reap(child) {
                    eprintln!("{e}");
                }
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.terminate();
    }
}

/// SIGKILL, then waits at most 60 s for the process to be gone; if it is
/// not, says so with the kernel stacks of what is left of it (a process
/// that cannot finish dying has a thread stuck in the kernel, and waiting
/// for it would hang the test for ever).
fn kill_and_reap(mut child: Child) -> Result<(), String> {
    let _ = child.kill();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().map_err(|e| e.to_string())?.is_none() {
        if Instant::now() > deadline {
            return Err(format!(
                "iocaged (pid {}) did not die within 60 s of SIGKILL:\n{}",
                child.id(),
                kernel_stacks(child.id())
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Each thread of `pid` with its state and kernel stack (Linux; elsewhere
/// nothing).
fn kernel_stacks(pid: u32) -> String {
    let mut out = String::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return out };
    for t in tasks.flatten() {
        let p = t.path();
        let read = |f: &str| std::fs::read_to_string(p.join(f)).unwrap_or_default();
        let state = read("status").lines().find(|l| l.starts_with("State:")).unwrap_or_default().to_string();
        out.push_str(&format!(
            "thread {} ({}) {state}\n{}\n",
            t.file_name().to_string_lossy(),
            read("comm").trim(),
            read("stack")
        ));
    }
    out
}
