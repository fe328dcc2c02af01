//! Steps 2 to 4 of a create, on the pool: the jail's dataset (marked
//! incomplete) and root, a thick jail's copy, and the finish (mount,
//! fstab, the data dataset, native properties, the marker removed). A
//! step that fails undoes the create.

use crate::iocage::error::ActionError;
use crate::iocage::jails::INCOMPLETE_PROP;
use crate::iocage::request::CreateKind;
use crate::zfs::{Backend, OnProgress, Zfs};

use super::{Plan, ensure, fail};

/// A `mountpoint` the client gave must be the jail's own place,
/// `<mountpoint of iocage/jails>/<uuid>`: anywhere else the jail's dataset
/// would be mounted over host files (`/etc`, `/`), and its root's writes
/// would land there.
fn check_mountpoint(plan: &Plan, jails_dir: Option<&str>) -> Result<(), ActionError> {
    let Some((_, given)) = plan.native.iter().find(|(k, _)| k == "mountpoint") else {
        return Ok(());
    };
    let expected = match jails_dir {
        Some(d) if d.starts_with('/') => format!("{}/{}", d.trim_end_matches('/'), plan.uuid),
        _ => format!("<mountpoint of {}>/{}", plan.layout.jails(), plan.uuid),
    };
    if given.trim_end_matches('/') == expected && !given.split('/').any(|c| c == "..") {
        Ok(())
    } else {
        Err(ActionError::MountpointOutside { prop: "mountpoint", value: given.clone(), expected })
    }
}

/// Step 2: the jail's dataset (marked incomplete) and its root.
pub fn begin(lib: &dyn Backend, plan: &Plan) -> Result<(), ActionError> {
    let layout = &plan.layout;
    ensure(lib, &layout.root(), &[("mountpoint", "/iocage")])?;
    ensure(lib, &layout.jails(), &[])?;
    let jails_dir = lib.native_props(&layout.jails(), &["mountpoint"])?;
    check_mountpoint(plan, jails_dir.get("mountpoint").and_then(|m| m.printed.as_deref()))?;
    let mut props: Vec<(&str, &str)> = plan.user.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    props.push((INCOMPLETE_PROP, "yes"));
    // Only this first write can fail without anything to undo; everything
    // after it is undone on failure.
    if let Some(src) = &plan.source {
        let snap = format!("{}@{}", layout.jail(src), plan.uuid);
        let step = (|| -> Result<(), ActionError> {
            lib.snapshot_recursive(&snap)?;
            let src_ds = layout.jail(src);
            for fs in lib.descendants(&src_ds)? {
                let target = format!("{}{}", plan.dataset(), &fs[src_ds.len()..]);
                let mut extra: Vec<(String, String)> = Vec::new();
                let n = lib.native_props(&fs, &["mountpoint", "readonly"])?;
                if n["mountpoint"].source == crate::zfs::PropSource::Local {
                    if let Some(m) = n["mountpoint"].printed.as_deref().filter(|m| matches!(*m, "none" | "legacy")) {
                        extra.push(("mountpoint".into(), m.into()));
                    }
                }
                if n["readonly"].source == crate::zfs::PropSource::Local {
                    extra.push(("readonly".into(), n["readonly"].printed.clone().unwrap_or_default()));
                }
                let mut p: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                if fs == src_ds {
                    p.extend(props.iter().copied());
                }
                lib.clone_snapshot(&format!("{fs}@{}", plan.uuid), &target, &p)?;
            }
            Ok(())
        })();
        return step.map_err(|e| fail(lib, plan, "cloning the source jail", e));
    }
    lib.create_filesystem(&plan.dataset(), &props)?;
    let step = (|| -> Result<(), ActionError> {
        match (plan.kind, &plan.release) {
            (CreateKind::Empty, _) => lib.create_filesystem(&plan.root(), &[])?,
            (CreateKind::Clone, Some(_)) => {
                let snap = plan.source_snapshot().unwrap_or_default();
                lib.snapshot(&snap, &[])?;
                lib.clone_snapshot(&snap, &plan.root(), &[])?;
            }
            (CreateKind::Thick, Some(_)) => lib.snapshot(&plan.source_snapshot().unwrap_or_default(), &[])?,
            (CreateKind::Base, Some(rel)) => {
                // The base pieces become read-only clones inside an empty root.
                let base = format!("{}/{rel}/root", plan.layout.base());
                lib.snapshot_recursive(&format!("{base}@{}", plan.uuid))?;
                lib.create_filesystem(&plan.root(), &[])?;
                for piece in lib.descendants(&base)?.into_iter().filter(|p| p != &base) {
                    let target = format!("{}{}", plan.root(), &piece[base.len()..]);
                    if !lib.exists(&target) {
                        lib.clone_snapshot(&format!("{piece}@{}", plan.uuid), &target, &[("readonly", "on")])?;
                    }
                }
            }
            (_, None) => return Err(ActionError::MissingKeys(vec!["props: release"])),
        }
        Ok(())
    })();
    step.map_err(|e| fail(lib, plan, "creating the jail's root", e))
}

/// Step 3 (thick jails): copy the release's snapshot into the jail's root,
/// reporting progress to `on_progress` as it goes (see
/// `zfs::copy_snapshot`). Blocking; run it off the async runtime.
pub fn copy(zfs: &Zfs, plan: &Plan, on_progress: OnProgress) -> Result<(), ActionError> {
    match (plan.kind, plan.source_snapshot()) {
        (CreateKind::Thick, Some(snap)) => {
            zfs.copy_snapshot(&snap, &format!("{}@{}", plan.root(), plan.uuid), on_progress).map_err(ActionError::from)
        }
        _ => Ok(()),
    }
}

/// Step 4 (owner thread): mount, the data dataset, native properties.
/// Returns the jail's directory, where [`write_fstab`] writes next.
pub fn finish(lib: &dyn Backend, plan: &Plan) -> Result<String, ActionError> {
    let mut step = "finishing the jail";
    finish_steps(lib, plan, &mut step).map_err(|e| fail(lib, plan, step, e))
}

/// The work of [`finish`]; `step` names the part under way, for the error.
fn finish_steps(lib: &dyn Backend, plan: &Plan, step: &mut &'static str) -> Result<String, ActionError> {
    if plan.kind == CreateKind::Thick && plan.source.is_none() {
        lib.destroy(&format!("{}@{}", plan.root(), plan.uuid))?;
        if let Some(snap) = plan.source_snapshot() {
            lib.destroy(&snap)?;
        }
    }
    for fs in lib.descendants(&plan.dataset())? {
        let mp = lib.native_props(&fs, &["mountpoint"])?;
        if !matches!(mp["mountpoint"].printed.as_deref(), Some("none" | "legacy") | None) {
            lib.mount(&fs)?;
        }
    }
    let dir = lib.native_props(&plan.dataset(), &["mountpoint"])?["mountpoint"].printed.clone().unwrap_or_default();
    if let Some(data) = plan.data_dataset().filter(|d| !d.ends_with("/none")) {
        if !lib.exists(&data) {
            let mut props = vec![("mountpoint", "none")];
            if cfg!(target_os = "freebsd") {
                props.push(("jailed", "on"));
            }
            lib.create_filesystem(&data, &props)?;
        }
    }
    let native: Vec<(&str, &str)> = plan.native.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    if !native.is_empty() {
        *step = "setting native properties";
        lib.set_props(&plan.dataset(), &native)?;
    }
    Ok(dir)
}

/// Step 6 (owner thread): the incomplete marker removed; the jail is
/// listed from now on.
pub fn unmark(lib: &dyn Backend, plan: &Plan) -> Result<(), ActionError> {
    lib.inherit(&plan.dataset(), INCOMPLETE_PROP).map_err(|e| fail(lib, plan, "finishing the jail", e.into()))
}

/// A step run off the owner thread (the fstab) failed with `cause`:
/// undoes the create (on the owner thread) and says so.
pub fn abandon(lib: &dyn Backend, plan: &Plan, step: &'static str, cause: ActionError) -> ActionError {
    fail(lib, plan, step, cause)
}

/// Step 5 (a blocking thread: host file work stays off the owner thread):
/// an empty fstab for a new jail in its directory `dir`; a clone keeps the
/// source's as `fstab.<source uuid>` (its lines name the source's paths),
/// as iocage did. A failure is undone with [`abandon`].
pub fn write_fstab(plan: &Plan, dir: &str) -> Result<(), ActionError> {
    let source = plan.source.as_deref();
    let io = |what: String| move |e: std::io::Error| ActionError::Io { what, message: e.to_string() };
    let fstab = format!("{dir}/fstab");
    if let Some(src) = source {
        if std::path::Path::new(&fstab).exists() {
            std::fs::rename(&fstab, format!("{fstab}.{src}")).map_err(io(format!("keep the source's {fstab}")))?;
        }
    }
    std::fs::write(&fstab, b"").map_err(io(format!("write {fstab}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iocage::layout::Layout;

    #[test]
    fn a_mountpoint_can_only_be_the_jails_own_place() {
        let plan = |mp: Option<&str>| Plan {
            layout: Layout::new("tank"),
            uuid: "u1".into(),
            tag: "t".into(),
            kind: CreateKind::Clone,
            release: None,
            source: None,
            user: Vec::new(),
            native: mp.map(|m| ("mountpoint".to_string(), m.to_string())).into_iter().collect(),
        };
        assert!(check_mountpoint(&plan(None), Some("/iocage/jails")).is_ok());
        assert!(check_mountpoint(&plan(Some("/iocage/jails/u1")), Some("/iocage/jails")).is_ok());
        for bad in ["/", "/etc", "/root", "/iocage/jails/u1/../../../etc", "/iocage/jails", "none", "legacy"] {
            let err = check_mountpoint(&plan(Some(bad)), Some("/iocage/jails")).unwrap_err();
            assert!(matches!(err, ActionError::MountpointOutside { .. }), "{bad}: {err}");
            assert!(err.to_string().contains("/iocage/jails/u1"), "{err}");
        }
        assert!(check_mountpoint(&plan(Some("/iocage/jails/u1")), None).is_err(), "unknown place: refused");
    }
}
