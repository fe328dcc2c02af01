//! The jail lifecycle, runtime-neutral: what `iocage start` and `iocage
//! stop` did, step by step (iocage-model.md, "Lifecycle"), over the
//! [`Runtime`](crate::runtime::Runtime) interface.
//!
//! [`plan()`] turns a jail's properties into a [`Plan`] (no side effects;
//! owner thread). [`start`], [`stop`] and [`cap`] carry it out on a
//! blocking thread and return the progress lines the API shows; [`exec`]
//! and [`console`] need only a [`Target`] (which jail, and the bounds).
//! Hooks: `exec_prestart`, `exec_poststart`, `exec_prestop` and
//! `exec_poststop` run on the host (an executable file of that name without
//! the `exec_` prefix in the jail's directory wins over the property);
//! `exec_start` and `exec_stop` run inside the jail as `exec_jail_user`.
//! A start that fails part-way removes the jail again (its mounts and
//! limits with it) and says which step failed.
//!
//! Its parts: `plan` (properties to a [`Plan`]), `run` (the steps, over
//! the runtime) and `confine` (what the host does to a jail's files before
//! it starts, never past the jail's root: the security-critical part).

mod confine;
mod plan;
mod run;

pub use plan::{Plan, Policy, Target, plan};
pub use run::{Progress, cap, console, exec, start, stop};
