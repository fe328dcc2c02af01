//! Reading jails: every jail's properties in one pass over
//! `POOL/iocage/jails`, and finding the jail a client means.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::zfs::{Backend, DatasetProps, ErrorKind, NativeValue, ZfsError};

use super::error::ActionError;
use super::layout::Layout;
use super::props::{self, USER_PREFIX};
use super::stored::Stored;

/// One jail as stored: its UUID, its iocage properties (API names, as set
/// on its dataset) and its native ZFS properties.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jail {
    pub uuid: String,
    pub dataset: String,
    /// Still being created (or left behind by a create that crashed).
    pub incomplete: bool,
    user: Stored,
    native: BTreeMap<String, NativeValue>,
}

/// The user property that marks a jail whose creation has not finished.
/// Set on the jail's dataset in the first step of a create or clone and
/// removed in the last; start-up removes any jail that still has it.
pub const INCOMPLETE_PROP: &str = "org.freebsd.iocaged:incomplete";

impl Jail {
    fn from_dataset(d: DatasetProps) -> Jail {
        let uuid = d.name.rsplit('/').next().unwrap_or_default().to_string();
        let incomplete = d.user.contains_key(INCOMPLETE_PROP);
        let user = Stored::new(
            d.user.into_iter().filter_map(|(k, v)| Some((k.strip_prefix(USER_PREFIX)?.to_string(), v.value))),
        );
        Jail { uuid, dataset: d.name, incomplete, user, native: d.native }
    }

    /// The jail's tag; its UUID when it has none.
    pub fn tag(&self) -> &str {
        match self.user.get("tag") {
            Some(t) if t != "-" && !t.is_empty() => t,
            _ => &self.uuid,
        }
    }

    /// A property as the API shows it: the stored value, `-` when unset
    /// (iocage 1.7.x showed what the jail's dataset holds), native ones as
    /// ZFS prints them.
    pub fn get(&self, name: &str) -> String {
        match props::lookup(name) {
            Some(p) if p.kind.is_native() => {
                self.native.get(name).and_then(|v| v.printed.clone()).unwrap_or_else(|| "-".to_string())
            }
            _ => self.user.get(name).unwrap_or("-").to_string(),
        }
    }

    /// A copy of this jail with all its native properties read (for one jail found
    /// in the index: cheaper than scanning every jail for them).
    pub fn with_natives(&self, lib: &dyn Backend) -> Result<Jail, ZfsError> {
        let names: Vec<&str> = props::native_names().collect();
        let native = lib.native_props(&self.dataset, &names)?;
        Ok(Jail { native, ..self.clone() })
    }

    /// The iocage properties stored on the jail's dataset (API names).
    pub fn stored(&self) -> &Stored {
        &self.user
    }

    /// Every catalogued property with its value.
    pub fn all(&self) -> BTreeMap<String, String> {
        props::CATALOGUE.iter().map(|p| (p.name.to_string(), self.get(p.name))).collect()
    }
}

/// Which native ZFS properties a scan of every jail reads (they cost two
/// libzfs lookups per jail each; the index's are [`INDEXED_NATIVES`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Natives {
    /// available, compressratio, quota, reservation, used.
    Space,
    All,
}

impl Natives {
    fn names(self) -> Vec<&'static str> {
        match self {
            Natives::Space => vec!["available", "compressratio", "quota", "reservation", "used"],
            Natives::All => props::native_names().collect(),
        }
    }
}

/// Every complete jail on the pool, sorted by UUID, with the native
/// properties asked for (others read as `-`). No jails dataset: no jails.
pub fn read_all(lib: &dyn Backend, layout: &Layout, natives: Natives) -> Result<Vec<Arc<Jail>>, ZfsError> {
    Ok(read(lib, layout, &natives.names())?.into_iter().filter(|j| !j.incomplete).collect())
}

/// The native properties the index keeps with the iocage ones: those only
/// a write the pool's log records can change (a set, an inherit, a rename,
/// a receive, or one of a parent's, after which the index reads every jail
/// again), unlike `used` and its like, which data writes move. A lifecycle
/// plan takes the jail's directory from it: reading it afresh would open
/// the jail's dataset once more, and the kernel hands every property over
/// for that, the jail's hundred iocage ones with the rest.
pub const INDEXED_NATIVES: [&str; 1] = ["mountpoint"];

/// Every jail dataset, those still being created included, with its iocage
/// properties and [`INDEXED_NATIVES`]: what the writes check (tags in use,
/// running jails, dependents, unfinished creates) needs no other native
/// property, and reading those costs two libzfs lookups per property and
/// jail.
pub fn read_all_with_incomplete(lib: &dyn Backend, layout: &Layout) -> Result<Vec<Arc<Jail>>, ZfsError> {
    read(lib, layout, &INDEXED_NATIVES)
}

/// One jail dataset (complete or not) as [`read_all_with_incomplete`]
/// reads each; `None` when there is no such dataset.
pub fn read_one(lib: &dyn Backend, layout: &Layout, uuid: &str) -> Result<Option<Arc<Jail>>, ZfsError> {
    match lib.dataset_props(&layout.jail(uuid), &INDEXED_NATIVES) {
        Ok(d) => Ok(Some(Arc::new(Jail::from_dataset(d)))),
        Err(e) if e.kind == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn read(lib: &dyn Backend, layout: &Layout, natives: &[&str]) -> Result<Vec<Arc<Jail>>, ZfsError> {
    match lib.scan_children(&layout.jails(), natives) {
        Ok(ds) => Ok(ds.into_iter().map(|d| Arc::new(Jail::from_dataset(d))).collect()),
        Err(e) if e.kind == ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// The jail `query` names: an exact UUID, else an exact tag, else the one
/// jail whose UUID starts with it. Never a pattern or a substring.
pub fn resolve<'a>(jails: &'a [Arc<Jail>], query: &str) -> Result<&'a Arc<Jail>, ActionError> {
    if query.is_empty() {
        return Err(ActionError::BadArgument { key: "jail", reason: "it is empty".into() });
    }
    if let Some(j) = jails.iter().find(|j| j.uuid == query) {
        return Ok(j);
    }
    let tagged: Vec<&Arc<Jail>> = jails.iter().filter(|j| j.user.get("tag") == Some(query)).collect();
    let matches = if tagged.is_empty() { jails.iter().filter(|j| j.uuid.starts_with(query)).collect() } else { tagged };
    match matches.as_slice() {
        [one] => Ok(one),
        [] => Err(ActionError::JailNotFound(query.to_string())),
        many => Err(ActionError::AmbiguousJail {
            query: query.to_string(),
            candidates: many.iter().map(|j| format!("{} ({})", j.uuid, j.tag())).collect(),
        }),
    }
}

/// The jail with this UUID exactly (never a tag or a prefix).
pub fn by_uuid<'a>(jails: &'a [Arc<Jail>], uuid: &str) -> Result<&'a Arc<Jail>, ActionError> {
    jails.iter().find(|j| j.uuid == uuid).ok_or_else(|| ActionError::JailNotFound(uuid.to_string()))
}

#[cfg(test)]
pub(crate) fn test_jail(uuid: &str, user: &[(&str, &str)]) -> Arc<Jail> {
    Arc::new(Jail {
        uuid: uuid.into(),
        dataset: format!("tank/iocage/jails/{uuid}"),
        incomplete: false,
        user: Stored::new(
            user.iter()
                .filter(|(k, _)| !props::lookup(k).is_some_and(|p| p.kind.is_native()))
                .map(|(k, v)| (k.to_string(), v.to_string())),
        ),
        native: user
            .iter()
            .filter(|(k, _)| props::lookup(k).is_some_and(|p| p.kind.is_native()))
            .map(|(k, v)| {
                let value = NativeValue {
                    printed: Some(v.to_string()),
                    raw: Some(v.to_string()),
                    source: crate::zfs::PropSource::Local,
                };
                (k.to_string(), value)
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jails() -> Vec<Arc<Jail>> {
        vec![
            test_jail("0bf985de-ca0f-11e5-8d45-d05099728dbf", &[("tag", "test")]),
            test_jail("0bf9aaaa-ca0f-11e5-8d45-d05099728dbf", &[("tag", "foo")]),
            test_jail("9b8e1033-d065-11e5-8209-d05099728dbf", &[("tag", "foo-bar")]),
            test_jail("c0ffee00-0000-0000-0000-000000000000", &[]),
        ]
    }

    #[test]
    fn a_jail_answers_from_its_stored_properties() {
        let j = test_jail("u", &[("boot", "on"), ("tag", "web")]);
        assert_eq!((j.get("boot"), j.get("tag"), j.get("notes")), ("on".into(), "web".into(), "-".into()));
        assert_eq!(j.tag(), "web");
        assert_eq!(test_jail("u", &[("tag", "-")]).tag(), "u", "no tag: its UUID");
    }

    #[test]
    fn uuid_then_tag_then_unique_prefix() {
        let j = jails();
        assert_eq!(resolve(&j, "9b8e1033-d065-11e5-8209-d05099728dbf").unwrap().tag(), "foo-bar");
        assert_eq!(resolve(&j, "test").unwrap().uuid, "0bf985de-ca0f-11e5-8d45-d05099728dbf");
        assert_eq!(resolve(&j, "9b8e").unwrap().tag(), "foo-bar");
        assert_eq!(resolve(&j, "c0ffee").unwrap().tag(), "c0ffee00-0000-0000-0000-000000000000");
    }

    #[test]
    fn a_tag_never_matches_as_a_substring_or_prefix() {
        let j = jails();
        // `foo` is exactly one jail's tag; `foo-bar` must not be caught.
        assert_eq!(resolve(&j, "foo").unwrap().uuid, "0bf9aaaa-ca0f-11e5-8d45-d05099728dbf");
        assert_eq!(resolve(&j, "fo"), Err(ActionError::JailNotFound("fo".into())));
        assert_eq!(resolve(&j, "bar"), Err(ActionError::JailNotFound("bar".into())));
        assert_eq!(resolve(&j, ".*"), Err(ActionError::JailNotFound(".*".into())));
    }

    #[test]
    fn an_ambiguous_prefix_lists_the_candidates() {
        let err = resolve(&jails(), "0bf9").unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, ActionError::AmbiguousJail { ref candidates, .. } if candidates.len() == 2), "{msg}");
        assert!(msg.contains("0bf985de-ca0f-11e5-8d45-d05099728dbf (test)"), "{msg}");
        assert!(msg.contains("0bf9aaaa-ca0f-11e5-8d45-d05099728dbf (foo)"), "{msg}");
    }

    #[test]
    fn unset_properties_read_as_dash() {
        let j = test_jail("u", &[("vnet", "off")]);
        assert_eq!(j.get("vnet"), "off");
        assert_eq!(j.get("branch"), "-");
        assert_eq!(j.get("used"), "-");
        assert_eq!(j.all().len(), 115);
    }
}
