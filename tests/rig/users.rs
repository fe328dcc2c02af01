//! Real users for the authentication tests, made with the system's own
//! tools (`rig::host::add_user`; in the Linux guest /etc is an overlay, so
//! the host is untouched), and the PAM service the rig's daemons use.

use std::sync::Once;

use super::daemon::PAM_SERVICE;
use super::host::add_user;

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
        for (user, group) in [(WHEEL, Some("wheel")), (OPERATOR, Some("operator")), (NOBODY, None)] {
            add_user(user, group, PASSWORD);
        }
        std::fs::write(
            format!("/etc/pam.d/{PAM_SERVICE}"),
            "auth required pam_unix.so\naccount required pam_unix.so\n",
        )
        .unwrap();
    });
}
