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
        let bin = std::env::var("IOCAGED_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_iocaged").into());
        let mut child = Command::new(bin)
            .args(["serve", "--websocket", &ws.to_string(), "--rest", &rest.to_string()])
            .args(["--keys", &keys_file, "--pam-service", PAM_SERVICE])
            .args(extra)
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
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

    /// Sends SIGTERM and returns whether iocaged exited successfully
    /// within 30 s.
    pub fn stop(mut self) -> bool {
        self.terminate()
    }

    /// The daemon's pid (for reading its memory use).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL: the daemon gets no chance to clean up.
    pub fn kill(mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
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
                let _ = child.kill();
                let _ = child.wait();
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
