//! `iocaged-jail`: the jail helpers alone, for the daemon to start.
//!
//! `jail-exec REQUEST` runs a command (or a console) in a jail; on Linux
//! `jail-init` makes a jail's namespaces and stays as its first process;
//! on FreeBSD `jail-net` sets a VNET jail's interfaces up from inside.
//! The daemon's binary has the same verbs; this one links only libc (and
//! libgcc_s), so it starts in a fraction of the time, and every execjail
//! starts one (see `iocaged::runtime::helper::program`). Each request
//! carries the daemon's build id, which this binary refuses unless it is
//! its own (`build-id` prints it). Not a command for people: the
//! daemon writes its requests and reads its replies.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args_os().map(|a| a.to_string_lossy().into_owned()).collect();
    iocaged::runtime::helper::helper_main(&args).unwrap_or_else(|| {
        eprintln!("iocaged-jail: the helpers of iocaged(8), started by the daemon; not a command to run");
        ExitCode::from(2)
    })
}
