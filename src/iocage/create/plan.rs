//! Step 1 of createjail and clonejail: the client's properties, the tag,
//! the network and the source checked, the new jail's properties and UUID
//! decided, as a [`Plan`]; nothing is written.

use crate::iocage::error::ActionError;
use crate::iocage::jails::Jail;
use crate::iocage::layout::Layout;
use crate::iocage::names;
use crate::iocage::props::{self, Kind, PropError, USER_PREFIX};
use crate::iocage::request::{CreateKind, PropList};
use crate::zfs::Backend;
use std::sync::Arc;

use super::Plan;

/// The effective values for a new jail: the client's value, else the
/// `.defaults` dataset's, else the built-in default. Derived values
/// (UUIDs, hostid, the data dataset) are filled in by the caller.
fn effective_props(
    lib: &dyn Backend,
    layout: &Layout,
    client: &PropList,
) -> Result<Vec<(String, String)>, ActionError> {
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
    crate::iocage::network::plan(uuid, &get, &ip4, &ip6).map(drop).map_err(|e| PropError::Network(e).into())
}

fn set(props: &mut Vec<(String, String)>, name: &str, value: String) {
    let key = format!("{USER_PREFIX}{name}");
    match props.iter_mut().find(|(k, _)| *k == key) {
        Some(slot) => slot.1 = value,
        None => props.push((key, value)),
    }
}

fn check_tag(jails: &[Arc<Jail>], tag: &str) -> Result<(), ActionError> {
    match jails.iter().find(|j| j.stored().get("tag") == Some(tag) || j.uuid == tag) {
        Some(j) => Err(ActionError::TagInUse { tag: tag.into(), uuid: j.uuid.clone() }),
        None => Ok(()),
    }
}

/// Step 1 of createjail: decide everything, write nothing. `jails` are
/// the pool's jails, those still being created included (their tags are
/// taken too); `hostid` is this host's ([`names::host_id`], read by the
/// caller: no host file is read on the owner thread).
pub fn prepare(lib: &dyn Backend, layout: &Layout, jails: &[Arc<Jail>], new: &NewJail) -> Result<Plan, ActionError> {
    let NewJail { kind, props: client, allow_host_hooks, hostid } = new;
    let (kind, allow_host_hooks) = (*kind, *allow_host_hooks);
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
            if k != CreateKind::Base && crate::iocage::destroy::is_incomplete_release(lib, layout, &rel)? {
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
    set(&mut user, "hostid", hostid.clone());
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

/// What createjail was asked for, and the host it runs on.
#[derive(Debug, Clone)]
pub struct NewJail {
    pub kind: CreateKind,
    /// The client's properties.
    pub props: PropList,
    /// Whether the configuration lets clients set host hooks.
    pub allow_host_hooks: bool,
    /// This host's hostid ([`names::host_id`]).
    pub hostid: String,
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
    jails: &[Arc<Jail>],
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
        release: source.stored().get("release").map(str::to_string),
        source: Some(source.uuid.clone()),
        user,
        native,
    };
    check_data_dataset(&plan)?;
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iocage::jails;

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
    fn tags_are_unique_and_never_a_uuid_of_another_jail() {
        let jails = vec![jails::test_jail("aaaa", &[("tag", "web")])];
        assert!(matches!(check_tag(&jails, "web"), Err(ActionError::TagInUse { .. })));
        assert!(matches!(check_tag(&jails, "aaaa"), Err(ActionError::TagInUse { .. })));
        assert!(check_tag(&jails, "db").is_ok());
    }
}
