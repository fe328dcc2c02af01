//! Linux runtime: a jail is a set of namespaces around an init process.
//! The kernel has no registry of "jails", so the runtime keeps one: a
//! directory per running jail under the state directory holding its init
//! pid. A jail is running when that process is alive; that is also how
//! running jails are found again after the daemon restarts.

use std::fs;
use std::io::ErrorKind;
use std::path::PathBuf;

use super::{RunningJail, Runtime, RuntimeError};

pub const DEFAULT_STATE_DIR: &str = "/run/iocaged/jails";

pub struct Linux {
    state_dir: PathBuf,
}

impl Linux {
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        Linux { state_dir: state_dir.into() }
    }
}

fn alive(pid: i64) -> bool {
    pid > 0 && fs::metadata(format!("/proc/{pid}")).is_ok()
}

impl Runtime for Linux {
    fn running(&self) -> Result<Vec<RunningJail>, RuntimeError> {
        let entries = match fs::read_dir(&self.state_dir) {
            Ok(e) => e,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(RuntimeError {
                    op: "list",
                    jail: "running jails".into(),
                    message: format!("{}: {e}", self.state_dir.display()),
                });
            }
        };
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let pid = fs::read_to_string(entry.path().join("pid")).ok().and_then(|s| s.trim().parse::<i64>().ok());
            if let Some(pid) = pid.filter(|&p| alive(p)) {
                out.push(RunningJail { name, jid: pid });
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_jails_are_those_with_a_live_init() {
        let dir = std::env::temp_dir().join(format!("iocaged-linux-rt-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        for (name, pid) in [("ioc-live", std::process::id() as i64), ("ioc-dead", i64::from(i32::MAX))] {
            fs::create_dir_all(dir.join(name)).unwrap();
            fs::write(dir.join(name).join("pid"), pid.to_string()).unwrap();
        }
        fs::create_dir_all(dir.join("ioc-nopid")).unwrap();
        let got = Linux::new(&dir).running().unwrap();
        assert_eq!(got, vec![RunningJail { name: "ioc-live".into(), jid: std::process::id() as i64 }]);
        assert_eq!(Linux::new(dir.join("absent")).running().unwrap(), vec![]);
        fs::remove_dir_all(&dir).unwrap();
    }
}
