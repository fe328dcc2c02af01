//! The jail helpers' binary (`iocaged-jail`) on the host: the build id it
//! and the daemon agree on, its refusal of another build's request, and
//! what it links (none of the daemon's libraries).

use std::process::Command;

use iocaged::runtime::helper::{BUILD_ID, BUILD_ID_VERB};

const HELPER: &str = env!("CARGO_BIN_EXE_iocaged-jail");
const DAEMON: &str = env!("CARGO_BIN_EXE_iocaged");

fn said(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{program}: {e}"));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn both_binaries_say_this_build_s_id() {
    assert!(BUILD_ID.starts_with(env!("CARGO_PKG_VERSION")), "{BUILD_ID}");
    assert_eq!(said(HELPER, &[BUILD_ID_VERB]), BUILD_ID);
    assert_eq!(said(DAEMON, &[BUILD_ID_VERB]), BUILD_ID);
}

#[test]
fn a_request_of_another_build_is_refused_before_anything_is_done() {
    for program in [HELPER, DAEMON] {
        let reply = said(program, &["jail-exec", "0.0.1-other", "{}"]);
        let v: serde_json::Value = serde_json::from_str(&reply).unwrap_or_else(|e| panic!("{reply}: {e}"));
        let why = v["failed"].as_str().unwrap_or_else(|| panic!("{program}: not refused: {reply}"));
        assert!(why.contains("0.0.1-other") && why.contains(BUILD_ID), "{why}");
        // A line helper refuses on its one line.
        if cfg!(target_os = "linux") {
            assert!(said(program, &["jail-init", "0.0.1-other"]).starts_with("error "), "{program}");
        }
    }
    // An older daemon put its request (a command, a user) where the id
    // goes: the refusal does not repeat it.
    let reply = said(HELPER, &["jail-exec", r#"{"command":"secret-thing"}"#]);
    assert!(reply.contains("one without a build id") && !reply.contains("secret-thing"), "{reply}");
    // Without a verb it is no command.
    assert!(!Command::new(HELPER).status().unwrap().success());
}

#[test]
fn the_helper_links_none_of_the_daemon_s_libraries() {
    if !cfg!(target_os = "linux") {
        return;
    }
    let needed = |program: &str| {
        let out = Command::new("ldd").arg(program).output().expect("ldd");
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let (helper, daemon) = (needed(HELPER), needed(DAEMON));
    for lib in ["libzfs", "libnvpair", "libpam", "libcrypto"] {
        assert!(daemon.contains(lib), "the daemon links {lib} (else this test checks nothing): {daemon}");
        assert!(!helper.contains(lib), "the helper links {lib}: {helper}");
    }
}
