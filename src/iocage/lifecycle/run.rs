//! The lifecycle's steps over the [`Runtime`]: start, stop, cap and a
//! client's command, on a blocking thread, with the progress lines the API
//! shows; the host hooks they run.

use std::path::Path;
use std::time::Duration;

use crate::iocage::error::ActionError;
use crate::iocage::names;
use crate::runtime::console::Console;
use crate::runtime::stream::Outlet;
use crate::runtime::{self, Bounds, ExecIo, ExecOutput, ExecSpec, JailSpec, RunningJail, Runtime, RuntimeError};

use super::confine::{check_home, confine_mounts, write_resolver};
use super::plan::fstab_mounts;
use super::{Plan, Target};

/// A result that is not an error: the jail already was where asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// The progress lines, in order.
    Lines(Vec<String>),
    /// `INFO`: already up / already down.
    Already(String),
}

/// The jail's running kernel jail, if any.
pub fn find_running(rt: &dyn Runtime, uuid: &str) -> Result<Option<RunningJail>, ActionError> {
    let name = runtime::kernel_name(uuid);
    Ok(rt.running()?.into_iter().find(|j| j.name == name))
}

/// Starts the jail (see the module docs for the steps).
pub fn start(rt: &dyn Runtime, plan: &Plan) -> Result<Progress, ActionError> {
    if find_running(rt, &plan.uuid)?.is_some() {
        return Ok(Progress::Already(format!(" {} is already up", plan.label())));
    }
    if plan.template {
        return Err(plan.failed("start", "checking it", "it is a template; templates are not started"));
    }
    let host = names::host_id();
    if !matches!(plan.hostid.as_str(), "none" | "-" | "") && plan.hostid != host {
        return Err(plan.failed(
            "start",
            "checking it",
            format!("its hostid {} is not this host's ({host})", plan.hostid),
        ));
    }
    check_home(plan).map_err(|e| plan.failed("start", "checking its directory", e))?;
    let mut spec = plan.spec.clone();
    spec.mounts.extend(fstab_mounts(plan)?);
    spec.mounts =
        confine_mounts(&spec.root, &spec.mounts).map_err(|e| plan.failed("start", "checking its mounts", e))?;
    rt.check(&spec)?;
    write_resolver(&spec.root, &plan.resolver).map_err(|e| plan.failed("start", "writing its resolv.conf", e))?;
    host_hook(plan, "prestart", &plan.hooks.prestart).map_err(|e| plan.failed("start", "exec_prestart", e))?;
    let jail = rt.start(&spec).map_err(|e| plan.failed("start", "creating the jail", e.message))?;
    let mode = if spec.vnet() { "VNET" } else { "shared IP" };
    let mut lines = vec![format!("* Starting {}", plan.label()), format!("+ Started ({mode} mode) OK")];
    let undo = |step: &str, why: String| {
        let _ = rt.stop(&jail, &spec);
        plan.failed("start", step, format!("{why}; the jail was removed again"))
    };
    let started = jail_command(rt, &jail, &plan.jail_user, &plan.hooks.start, plan.policy.bounds(plan.exec_timeout))
        .map_err(|e| undo("exec_start", e))?;
    if !started.success() {
        return Err(undo("exec_start", describe(&plan.hooks.start, &started)));
    }
    lines.push("+ Starting services OK".into());
    host_hook(plan, "poststart", &plan.hooks.poststart).map_err(|e| undo("exec_poststart", e))?;
    Ok(Progress::Lines(lines))
}

/// Stops the jail: pre-stop, exec_stop (bounded by stop_timeout), the jail
/// removed with its mounts and limits, post-stop. A failing pre-stop hook
/// leaves the jail running; a failing exec_stop does not stop the removal.
pub fn stop(rt: &dyn Runtime, plan: &Plan) -> Result<Progress, ActionError> {
    let Some(jail) = find_running(rt, &plan.uuid)? else {
        return Ok(Progress::Already(format!(" {} is already down", plan.label())));
    };
    // The fstab's mounts too: a runtime without a record of what the start
    // mounted (a start cut short, an older version's) removes these. An
    // fstab that cannot be read stops the stop before anything is done.
    let mut spec = plan.spec.clone();
    spec.mounts.extend(fstab_mounts(plan)?);
    let mut lines = vec![format!("* Stopping {}", plan.label())];
    host_hook(plan, "prestop", &plan.hooks.prestop).map_err(|e| plan.failed("stop", "exec_prestop", e))?;
    lines.push("+ Running pre-stop OK".into());
    match jail_command(rt, &jail, &plan.jail_user, &plan.hooks.stop, plan.policy.bounds(plan.stop_timeout)) {
        Ok(o) if o.success() => lines.push("+ Stopping services OK".into()),
        Ok(o) => lines.push(format!("+ Stopping services FAILED: {}", describe(&plan.hooks.stop, &o))),
        Err(e) => lines.push(format!("+ Stopping services FAILED: {e}")),
    }
    rt.stop(&jail, &spec).map_err(|e| plan.failed("stop", "removing the jail", e.message))?;
    lines.push("+ Removing jail process OK".into());
    match host_hook(plan, "poststop", &plan.hooks.poststop) {
        Ok(()) => lines.push("+ Running post-stop OK".into()),
        Err(e) => lines.push(format!("+ Running post-stop FAILED: {e}")),
    }
    Ok(Progress::Lines(lines))
}

/// Re-applies the jail's limits (none when `rlimits=off`) and CPU set.
pub fn cap(rt: &dyn Runtime, plan: &Plan) -> Result<(), ActionError> {
    let jail = find_running(rt, &plan.uuid)?.ok_or_else(|| ActionError::NotRunning(plan.label()))?;
    rt.check(&JailSpec { mounts: Vec::new(), ..plan.spec.clone() })?;
    rt.set_limits(&jail, &plan.spec.limits, plan.spec.cpuset.as_deref())?;
    Ok(())
}

/// Runs a client's command in the running jail as `user`, bounded by
/// `timeout` (none: the configured one) and the output limit; at most
/// `max_running` at once. With an `outlet`, the output goes there as it
/// comes.
pub fn exec(
    rt: &dyn Runtime,
    target: &Target,
    user: &str,
    command: &str,
    timeout: Option<Duration>,
    outlet: Option<Outlet>,
) -> Result<ExecOutput, ActionError> {
    let _slot = target.policy.slot()?;
    let jail = find_running(rt, &target.uuid)?.ok_or_else(|| ActionError::NotRunning(target.label.clone()))?;
    let b = target.policy.bounds(timeout);
    let spec = ExecSpec {
        user: user.to_string(),
        command: command.to_string(),
        timeout: b.timeout,
        output_limit: b.output_limit,
        io: outlet.map_or(ExecIo::Captured, ExecIo::Streamed),
    };
    Ok(rt.exec(&jail, &spec)?)
}

/// Runs `user`'s login shell on a terminal in the running jail, until it
/// exits or the client hangs up (see `runtime::console`); it takes a place
/// among the running execjails. What it shows goes to `outlet`.
pub fn console(
    rt: &dyn Runtime,
    target: &Target,
    user: &str,
    outlet: Outlet,
    console: Console,
) -> Result<ExecOutput, ActionError> {
    let _slot = target.policy.slot()?;
    let jail = find_running(rt, &target.uuid)?.ok_or_else(|| ActionError::NotRunning(target.label.clone()))?;
    let spec = ExecSpec {
        user: user.to_string(),
        command: String::new(),
        // Bounded by its client (a hang-up, or runtime::console::IDLE).
        timeout: None,
        output_limit: target.policy.output_limit,
        io: ExecIo::Console(outlet, console),
    };
    Ok(rt.exec(&jail, &spec)?)
}

fn jail_command(
    rt: &dyn Runtime,
    jail: &RunningJail,
    user: &str,
    command: &str,
    b: Bounds,
) -> Result<ExecOutput, String> {
    if is_noop(command) {
        return Ok(ExecOutput { code: Some(0), ..Default::default() });
    }
    let spec = ExecSpec {
        user: user.to_string(),
        command: command.to_string(),
        timeout: b.timeout,
        output_limit: b.output_limit,
        io: ExecIo::Captured,
    };
    rt.exec(jail, &spec).map_err(|e: RuntimeError| e.message)
}

/// `true` needs no process.
fn is_noop(command: &str) -> bool {
    matches!(command.trim(), "" | "true" | "/usr/bin/true" | "/bin/true" | "none")
}

fn describe(command: &str, o: &ExecOutput) -> String {
    match o.last_line() {
        Some(line) => format!("{command:?} {}: {line}", o.ending()),
        None => format!("{command:?} {}", o.ending()),
    }
}

/// Runs a host-side hook: the jail directory's executable `<name>` file,
/// else the property's command through `/bin/sh -c`, bounded by
/// exec_timeout, with the jail's identity in its environment.
fn host_hook(plan: &Plan, name: &str, command: &str) -> Result<(), String> {
    let file = plan.dir.join(name);
    let root = plan.spec.root.display().to_string();
    let env = [("IOCAGE_UUID", plan.uuid.as_str()), ("IOCAGE_TAG", plan.tag.as_str()), ("IOCAGE_PATH", root.as_str())];
    let bounds = plan.policy.bounds(plan.exec_timeout);
    let out = if is_executable(&file) {
        runtime::exec::run_host(&file, &[], &env, bounds)?
    } else if is_noop(command) {
        return Ok(());
    } else {
        runtime::exec::run_host(Path::new("/bin/sh"), &["-c", command], &env, bounds)?
    };
    if out.success() { Ok(()) } else { Err(describe(command, &out)) }
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
