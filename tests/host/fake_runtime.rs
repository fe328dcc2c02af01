//! A jail runtime for host tests: jails "run" in a table, commands answer
//! from a small script of their own (`echo`, `true`, `false`, `sleep`), and
//! every call is recorded, so that a test sees what the service asked of
//! the kernel and in which order.

use std::collections::BTreeMap;
use std::sync::Mutex;

use iocaged::runtime::{ExecIo, ExecOutput, ExecSpec, JailSpec, Limit, RunningJail, Runtime, RuntimeError};

#[derive(Default)]
pub struct FakeRuntime {
    /// Running jails by kernel name, with what they were started as.
    jails: Mutex<BTreeMap<String, (i64, JailSpec)>>,
    next_jid: Mutex<i64>,
    /// Every call: `start ioc-<uuid>`, `exec ioc-<uuid> <command>`, ...
    pub calls: Mutex<Vec<String>>,
}

impl FakeRuntime {
    fn record(&self, call: String) {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).push(call);
    }

    /// The spec a running jail was started with.
    pub fn spec(&self, name: &str) -> Option<JailSpec> {
        self.jails.lock().unwrap_or_else(|p| p.into_inner()).get(name).map(|(_, s)| s.clone())
    }

    /// Every jail ends at once, behind the service's back (as after a
    /// crash of the jails' processes).
    pub fn end_all(&self) {
        self.jails.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// The calls so far, and forgets them.
    pub fn take_calls(&self) -> Vec<String> {
        std::mem::take(&mut *self.calls.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// What a command prints and how it ends, for the few the tests use.
fn answer(command: &str) -> ExecOutput {
    let mut out = ExecOutput { code: Some(0), ..ExecOutput::default() };
    let mut words = command.split_whitespace();
    match words.next() {
        Some("echo") => out.stdout = format!("{}\n", words.collect::<Vec<_>>().join(" ")),
        Some("false") => out.code = Some(1),
        Some("/bin/sh" | "sh" | "true" | ":") | None => {}
        Some(other) => {
            out.stderr = format!("{other}: not found\n");
            out.code = Some(127);
        }
    }
    out
}

impl Runtime for FakeRuntime {
    fn running(&self) -> Result<Vec<RunningJail>, RuntimeError> {
        let jails = self.jails.lock().unwrap_or_else(|p| p.into_inner());
        Ok(jails.iter().map(|(name, (jid, _))| RunningJail { name: name.clone(), jid: *jid }).collect())
    }

    fn check(&self, _spec: &JailSpec) -> Result<(), RuntimeError> {
        Ok(())
    }

    fn start(&self, spec: &JailSpec) -> Result<RunningJail, RuntimeError> {
        self.record(format!("start {}", spec.name));
        let mut jails = self.jails.lock().unwrap_or_else(|p| p.into_inner());
        if jails.contains_key(&spec.name) {
            return Err(RuntimeError::new("start", &spec.name, "a jail of that name runs already"));
        }
        let mut next = self.next_jid.lock().unwrap_or_else(|p| p.into_inner());
        *next += 1;
        jails.insert(spec.name.clone(), (*next, spec.clone()));
        Ok(RunningJail { name: spec.name.clone(), jid: *next })
    }

    fn stop(&self, jail: &RunningJail, _spec: &JailSpec) -> Result<(), RuntimeError> {
        self.record(format!("stop {}", jail.name));
        match self.jails.lock().unwrap_or_else(|p| p.into_inner()).remove(&jail.name) {
            Some(_) => Ok(()),
            None => Err(RuntimeError::new("stop", &jail.name, "no such jail runs")),
        }
    }

    fn set_limits(&self, jail: &RunningJail, limits: &[Limit], cpuset: Option<&str>) -> Result<(), RuntimeError> {
        self.record(format!("limits {} {} {cpuset:?}", jail.name, limits.len()));
        Ok(())
    }

    fn exec(&self, jail: &RunningJail, spec: &ExecSpec) -> Result<ExecOutput, RuntimeError> {
        self.record(format!("exec {} {} {}", jail.name, spec.user, spec.command));
        if !self.jails.lock().unwrap_or_else(|p| p.into_inner()).contains_key(&jail.name) {
            return Err(RuntimeError::new("enter", &jail.name, "no such jail runs"));
        }
        if !matches!(spec.io, ExecIo::Captured) {
            return Err(RuntimeError::new("exec in", &jail.name, "the fake runtime only captures output"));
        }
        Ok(answer(&spec.command))
    }
}
