//! Real users for the authentication tests, made in the guest with
//! `groupadd`, `useradd` and `chpasswd` (the guest's /etc is an overlay:
//! the host is untouched), and the PAM service the rig's daemons use.

use std::sync::Once;

use super::cmd;
use super::daemon::PAM_SERVICE;

pub const PASSWORD: &str = "Corr3ct-Horse";
/// In `wheel`: reads and writes.
pub const WHEEL: &str = "iocwheel";
/// In `operator`: reads only.
pub const OPERATOR: &str = "iocoper";
/// In neither: no access.
pub const NOBODY: &str = "iocnone";

static SETUP: Once = Once::new();

pub fn setup() {
    SETUP.call_once(|| {
        let groups = std::fs::read_to_string("/etc/group").unwrap();
        for g in ["wheel", "operator"] {
            if !groups.lines().any(|l| l.starts_with(&format!("{g}:"))) {
                cmd("groupadd", &[g]);
            }
        }
        for (user, group) in [(WHEEL, Some("wheel")), (OPERATOR, Some("operator")), (NOBODY, None)] {
            let mut args = vec!["-M", "-s", "/usr/sbin/nologin"];
            if let Some(g) = group {
                args.extend(["-G", g]);
            }
            args.push(user);
            cmd("useradd", &args);
        }
        let mut chpasswd = std::process::Command::new("chpasswd").stdin(std::process::Stdio::piped()).spawn().unwrap();
        use std::io::Write;
        let input = format!("{WHEEL}:{PASSWORD}\n{OPERATOR}:{PASSWORD}\n{NOBODY}:{PASSWORD}\n");
        chpasswd.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        assert!(chpasswd.wait().unwrap().success(), "chpasswd failed");
        std::fs::write(
            format!("/etc/pam.d/{PAM_SERVICE}"),
            "auth required pam_unix.so\naccount required pam_unix.so\n",
        )
        .unwrap();
    });
}
