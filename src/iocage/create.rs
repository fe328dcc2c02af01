//! createjail and clonejail.
//!
//! A create runs in steps, each of which either completes or is undone:
//! 1. [`prepare`]: validate every property and the tag, find the source;
//!    nothing is written.
//! 2. [`begin`] (owner thread): create the jail's dataset carrying the
//!    [`INCOMPLETE_PROP`] marker and every property, then the jail's root
//!    (a clone, an empty dataset, or the snapshot a thick copy starts from).
//! 3. For a thick jail, [`copy`]: the data moves with a ZFS send stream on
//!    blocking threads, so other requests are served meanwhile.
//! 4. [`finish`] (owner thread): mount, fstab, the jail's ZFS data dataset,
//!    native properties, and last, removing the marker.
//!
//! A step that fails undoes everything the create made ([`undo`]). A crash
//! leaves the marker behind; start-up removes such jails
//! (`destroy::recover`). The marker also hides the jail from listings
//! while it is being made, but not from the tag check.

use crate::zfs::{Libzfs, OnProgress, copy_snapshot};

use super::error::ActionError;
use super::jails::{INCOMPLETE_PROP, Jail};
use super::layout::Layout;
use super::names;
use super::props::{self, Kind, PropError, USER_PREFIX};
use super::request::{CreateKind, PropList};

/// Everything a create needs, decided before anything is written.
#[derive(Debug, Clone)]
pub struct Plan {
    pub layout: Layout,
    pub uuid: String,
    pub tag: String,
    pub kind: CreateKind,
    /// createjail: the release (`None` for an empty jail without one).
    pub release: Option<String>,
    /// clonejail: the source jail's UUID.
    pub source: Option<String>,
    /// ZFS user properties for the jail's dataset.
    user: Vec<(String, String)>,
    /// Native properties the client asked for, set in the last step.
    native: Vec<(String, String)>,
}

impl Plan {
    pub fn dataset(&self) -> String {
        self.layout.jail(&self.uuid)
    }
    fn root(&self) -> String {
        format!("{}/root", self.dataset())
    }
    /// The snapshot of the source made for this jail (`...@<uuid>`).
    fn source_snapshot(&self) -> Option<String> {
        match (&self.source, &self.release, self.kind) {
            (Some(src), _, _) => Some(format!("{}@{}", self.layout.jail(src), self.uuid)),
            (None, Some(rel), CreateKind::Thick | CreateKind::Clone) => {
                Some(format!("{}/{rel}/root@{}", self.layout.releases(), self.uuid))
            }
            (None, Some(rel), CreateKind::Base) => Some(format!("{}/{rel}/root@{}", self.layout.base(), self.uuid)),
            _ => None,
        }
    }
    /// The `jail_zfs_dataset` to create, with the pool in front.
    fn data_dataset(&self) -> Option<String> {
        self.user
            .iter()
            .find(|(k, _)| k == &format!("{USER_PREFIX}jail_zfs_dataset"))
            .map(|(_, v)| format!("{}/{v}", self.layout.pool()))
    }
}

/// `name` made and mounted, unless it exists.
pub(super) fn ensure(lib: &Libzfs, name: &str, props: &[(&str, &str)]) -> Result<(), ActionError> {
    if !lib.exists(name) {
        lib.create_filesystem(name, props)?;
        lib.mount(name)?;
    }
    Ok(())
}

/// The effective values for a new jail: the client's value, else the
/// `.defaults` dataset's, else the built-in default. Derived values
/// (UUIDs, hostid, the data dataset) are filled in by the caller.
fn effective_props(lib: &Libzfs, layout: &Layout, client: &PropList) -> Result<Vec<(String, String)>, ActionError> {
    let defaults =
        if lib.exists(&layout.defaults()) { lib.user_props(&layout.defaults())? } else { Default::default() };
    let mut out = Vec::new();
    for p in props::CATALOGUE.iter().filter(|p| !p.kind.is_native() && p.listed == props::Listed::Everywhere) {
        let zfs = p.zfs_name();
        let value = client
            .iter()
            .find(|(k, _)| k == p.name)
            .map(|(_, v)| v.clone())
            .or_else(|| defaults.get(&zfs).map(|u| u.value.clone()))
            .unwrap_or_else(|| p.default.to_string());
        out.push((zfs, value));
    }
    Ok(out)
}

/// Checks the client's properties: known, settable at creation (`release`
/// only at createjail), well-formed, no host hook unless the configuration
/// allows them (`allow_host_hooks`). Returns the native ones separately.
fn check_client_props(
    client: &PropList,
    allow_release: bool,
    allow_host_hooks: bool,
) -> Result<Vec<(String, String)>, ActionError> {
    let mut native = Vec::new();
    for (k, v) in client {
        if !allow_host_hooks && props::HOST_HOOKS.contains(&k.as_str()) {
            return Err(ActionError::HostHook(k.clone()));
        }
        let p = if allow_release && k == "release" {
            let p = props::lookup(k).ok_or_else(|| PropError::Unknown(k.clone()))?;
            props::check_format(p.format, v).map_err(|expected| PropError::Invalid {
                name: k.clone(),
                value: v.clone(),
                expected: expected.into(),
            })?;
            p
        } else {
            props::validate_client_value(k, v)?
        };
        if p.kind == Kind::NativeSettable {
            native.push((k.clone(), v.clone()));
        }
    }
    Ok(native)
}

/// The new jail's network properties must make a network (each value is
/// already well-formed): refused here rather than at its first start.
fn check_network(uuid: &str, user: &[(String, String)]) -> Result<(), ActionError> {
    let get = |name: &str| {
        let key = format!("{USER_PREFIX}{name}");
        match user.iter().find(|(k, _)| *k == key) {
            Some((_, v)) if v != "-" => v.clone(),
            _ => props::lookup(name).map(|p| p.default.to_string()).unwrap_or_else(|| "none".into()),
        }
    };
    let ip4 = crate::runtime::IpMode::parse(&get("ip4"));
    let ip6 = crate::runtime::IpMode::parse(&get("ip6"));
    super::network::plan(uuid, &get, &ip4, &ip6).map(drop).map_err(|e| PropError::Network(e).into())
}

fn set(props: &mut Vec<(String, String)>, name: &str, value: String) {
    let key = format!("{USER_PREFIX}{name}");
    match props.iter_mut().find(|(k, _)| *k == key) {
        Some(slot) => slot.1 = value,
        None => props.push((key, value)),
    }
}

fn check_tag(jails: &[Jail], tag: &str) -> Result<(), ActionError> {
    match jails.iter().find(|j| j.stored().get("tag").is_some_and(|t| t == tag) || j.uuid == tag) {
        Some(j) => Err(ActionError::TagInUse { tag: tag.into(), uuid: j.uuid.clone() }),
        None => Ok(()),
    }
}

/// Step 1 of createjail: decide everything, write nothing. `jails` are
/// the pool's jails, those still being created included (their tags are
/// taken too).
pub fn prepare(
    lib: &Libzfs,
    layout: &Layout,
    jails: &[Jail],
    kind: CreateKind,
    client: &PropList,
    allow_host_hooks: bool,
) -> Result<Plan, ActionError> {
    let native = check_client_props(client, true, allow_host_hooks)?;
    let given = |k: &str| client.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let tag = given("tag").unwrap_or_else(names::date_tag);
    check_tag(jails, &tag)?;
    let mut user = effective_props(lib, layout, client)?;
    let release = given("release").or_else(|| {
        user.iter().find(|(k, _)| k == &format!("{USER_PREFIX}release")).map(|(_, v)| v.clone()).filter(|r| r != "none")
    });
    let release = match (kind, release) {
        (CreateKind::Empty, r) => r,
        (_, None) => return Err(ActionError::MissingKeys(vec!["props: release"])),
        (k, Some(rel)) => {
            props::check_format(props::Format::Name, &rel).map_err(|expected| PropError::Invalid {
                name: "release".into(),
                value: rel.clone(),
                expected: expected.into(),
            })?;
            let source = match k {
                CreateKind::Base => format!("{}/{rel}/root", layout.base()),
                _ => format!("{}/{rel}/root", layout.releases()),
            };
            if !lib.exists(&source) {
                return Err(ActionError::ReleaseNotFound(rel, source));
            }
            if k != CreateKind::Base && super::destroy::is_incomplete_release(lib, layout, &rel)? {
                return Err(ActionError::ReleaseIncomplete(rel));
            }
            Some(rel)
        }
    };
    let uuid = names::new_uuid().map_err(|e| ActionError::Io { what: "make a UUID".into(), message: e.to_string() })?;
    set(&mut user, "tag", tag.clone());
    set(&mut user, "host_hostuuid", uuid.clone());
    if given("host_hostname").is_none() {
        set(&mut user, "host_hostname", uuid.clone());
    }
    set(&mut user, "hostid", names::host_id());
    set(&mut user, "release", release.clone().unwrap_or_else(|| "none".into()));
    set(&mut user, "type", kind.jail_type().into());
    set(&mut user, "last_started", "none".into());
    if given("jail_zfs_dataset").is_none() {
        set(&mut user, "jail_zfs_dataset", format!("iocage/jails/{uuid}/root/data"));
    }
    check_network(&uuid, &user)?;
    let plan = Plan { layout: layout.clone(), uuid, tag, kind, release, source: None, user, native };
    check_data_dataset(&plan)?;
    Ok(plan)
}

fn check_data_dataset(plan: &Plan) -> Result<(), ActionError> {
    match plan.data_dataset() {
        Some(d) if d.ends_with("/none") || plan.layout.contains(&d) => Ok(()),
        Some(d) => Err(ActionError::OutsideIocage(d)),
        None => Ok(()),
    }
}

/// Step 1 of clonejail: the new jail takes the source's properties, a new
/// UUID (hostname and hostuuid too), a new tag, and the client's values.
/// `jails` as for [`prepare`].
pub fn prepare_clone(
    layout: &Layout,
    jails: &[Jail],
    source: &Jail,
    client: &PropList,
    allow_host_hooks: bool,
) -> Result<Plan, ActionError> {
    let native = check_client_props(client, false, allow_host_hooks)?;
    let given = |k: &str| client.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let tag = given("tag").unwrap_or_else(names::date_tag);
    check_tag(jails, &tag)?;
    let uuid = names::new_uuid().map_err(|e| ActionError::Io { what: "make a UUID".into(), message: e.to_string() })?;
    let mut user: Vec<(String, String)> =
        source.stored().iter().map(|(k, v)| (format!("{USER_PREFIX}{k}"), v.replace(&source.uuid, &uuid))).collect();
    for (k, v) in client {
        if !props::lookup(k).is_some_and(|p| p.kind.is_native()) {
            set(&mut user, k, v.clone());
        }
    }
    set(&mut user, "tag", tag.clone());
    set(&mut user, "host_hostuuid", uuid.clone());
    if given("host_hostname").is_none() {
        set(&mut user, "host_hostname", uuid.clone());
    }
    set(&mut user, "last_started", "none".into());
    let plan = Plan {
        layout: layout.clone(),
        uuid,
        tag,
        kind: CreateKind::Clone,
        release: source.stored().get("release").cloned(),
        source: Some(source.uuid.clone()),
        user,
        native,
    };
    check_data_dataset(&plan)?;
    Ok(plan)
}

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
pub fn begin(lib: &Libzfs, plan: &Plan) -> Result<(), ActionError> {
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
pub fn copy(plan: &Plan, on_progress: OnProgress) -> Result<(), ActionError> {
    match (plan.kind, plan.source_snapshot()) {
        (CreateKind::Thick, Some(snap)) => {
            copy_snapshot(&snap, &format!("{}@{}", plan.root(), plan.uuid), on_progress).map_err(ActionError::from)
        }
        _ => Ok(()),
    }
}

/// Step 4: mount, fstab, the data dataset, native properties, unmark.
pub fn finish(lib: &Libzfs, plan: &Plan) -> Result<(), ActionError> {
    let mut step = "finishing the jail";
    finish_steps(lib, plan, &mut step).map_err(|e| fail(lib, plan, step, e))
}

/// The work of [`finish`]; `step` names the part under way, for the error.
fn finish_steps(lib: &Libzfs, plan: &Plan, step: &mut &'static str) -> Result<(), ActionError> {
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
    write_fstab(&dir, plan.source.as_deref())?;
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
        *step = "finishing the jail";
    }
    lib.inherit(&plan.dataset(), INCOMPLETE_PROP)?;
    Ok(())
}

/// An empty fstab for a new jail; a clone keeps the source's as
/// `fstab.<source uuid>` (its lines name the source's paths), as iocage did.
fn write_fstab(dir: &str, source: Option<&str>) -> Result<(), ActionError> {
    let io = |what: String| move |e: std::io::Error| ActionError::Io { what, message: e.to_string() };
    let fstab = format!("{dir}/fstab");
    if let Some(src) = source {
        if std::path::Path::new(&fstab).exists() {
            std::fs::rename(&fstab, format!("{fstab}.{src}")).map_err(io(format!("keep the source's {fstab}")))?;
        }
    }
    std::fs::write(&fstab, b"").map_err(io(format!("write {fstab}")))
}

/// Undoes a create after `cause` failed in `step`, and says so.
fn fail(lib: &Libzfs, plan: &Plan, step: &'static str, cause: ActionError) -> ActionError {
    undo(lib, plan);
    ActionError::CreateFailed { uuid: plan.uuid.clone(), step, cause: Box::new(cause) }
}

/// Removes everything a create of `plan` made: the jail's datasets and the
/// snapshots taken for it. Failures are logged: undo goes as far as it can.
pub fn undo(lib: &Libzfs, plan: &Plan) {
    let ds = plan.dataset();
    if plan.layout.contains(&ds) && lib.exists(&ds) {
        if let Err(e) = lib.destroy_recursive(&ds) {
            tracing::error!(jail = %plan.uuid, "undo of a failed create could not remove {ds}: {e}");
        }
    }
    super::destroy::remove_snapshots_named(lib, &plan.layout, &plan.uuid);
}

#[cfg(test)]
mod tests {
    use super::super::jails;
    use super::*;

    #[test]
    fn client_props_are_checked_before_anything() {
        let ok = vec![("tag".to_string(), "web".to_string()), ("quota".to_string(), "1G".to_string())];
        assert_eq!(check_client_props(&ok, true, false).unwrap(), vec![("quota".to_string(), "1G".to_string())]);
        let release = vec![("release".to_string(), "14.1-RELEASE".to_string())];
        assert!(check_client_props(&release, true, false).is_ok());
        assert!(matches!(
            check_client_props(&release, false, false),
            Err(ActionError::Property(PropError::ReadOnly(_)))
        ));
        let bad = vec![("release".to_string(), "../x".to_string())];
        assert!(matches!(check_client_props(&bad, true, false), Err(ActionError::Property(PropError::Invalid { .. }))));
        let unknown = vec![("nosuch".to_string(), "1".to_string())];
        assert!(matches!(check_client_props(&unknown, true, false), Err(ActionError::Property(PropError::Unknown(_)))));
    }

    #[test]
    fn a_network_that_does_not_hold_together_is_refused_at_create() {
        let user = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs.iter().map(|(k, v)| (format!("{USER_PREFIX}{k}"), v.to_string())).collect()
        };
        assert_eq!(check_network("u1", &user(&[("ip4_addr", "em0|10.0.0.2/24")])), Ok(()));
        assert_eq!(
            check_network("u1", &user(&[("vnet", "on"), ("ip4_addr", "vnet0|10.0.0.2/24")])),
            Ok(()),
            "vnet0:bridge0 by default"
        );
        let err = check_network("u1", &user(&[("ip4", "disable"), ("ip4_addr", "em0|10.0.0.2/24")])).unwrap_err();
        assert!(matches!(&err, ActionError::Property(PropError::Network(m)) if m.contains("ip4=new")), "{err}");
        let err = check_network("u1", &user(&[("vnet", "on"), ("ip4_addr", "vnet3|10.0.0.2/24")])).unwrap_err();
        assert!(err.to_string().contains("vnet3 is not one of the jail's interfaces"), "{err}");
    }

    #[test]
    fn host_hooks_need_the_configuration() {
        for hook in props::HOST_HOOKS {
            let p = vec![(hook.to_string(), "touch /tmp/owned".to_string())];
            let err = check_client_props(&p, true, false).unwrap_err();
            assert_eq!(err, ActionError::HostHook(hook.to_string()));
            assert!(err.to_string().contains("allow_host_hooks = true"), "{err}");
            assert!(check_client_props(&p, true, true).is_ok());
        }
        let inside = vec![("exec_start".to_string(), "/bin/sh /etc/rc".to_string())];
        assert!(check_client_props(&inside, true, false).is_ok(), "commands run in the jail are not host hooks");
    }

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

    #[test]
    fn tags_are_unique_and_never_a_uuid_of_another_jail() {
        let jails = vec![jails::test_jail("aaaa", &[("tag", "web")])];
        assert!(matches!(check_tag(&jails, "web"), Err(ActionError::TagInUse { .. })));
        assert!(matches!(check_tag(&jails, "aaaa"), Err(ActionError::TagInUse { .. })));
        assert!(check_tag(&jails, "db").is_ok());
    }
}
