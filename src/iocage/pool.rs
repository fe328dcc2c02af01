//! Which pool holds the jails, and marking it.
//!
//! iocage 1.7.x marks the active pool with the zpool property
//! `comment=iocage`; the later Python iocage with the user property
//! `org.freebsd.ioc:active=yes` on the pool's root dataset. Both are read;
//! activation writes the user property and deactivation clears both. More
//! than one active pool is an error, as is none: a pool is never picked
//! silently.

use crate::zfs::{Backend, ErrorKind, PoolInfo};

use super::error::ActionError;

/// The user property the Python iocage (and iocaged) marks a pool with.
pub const ACTIVE_PROP: &str = "org.freebsd.ioc:active";

/// Whether a pool carries either activation marker.
pub fn is_active(p: &PoolInfo) -> bool {
    p.active_prop.as_deref() == Some("yes") || p.comment.as_deref() == Some("iocage")
}

/// The one active pool among `pools`.
pub fn active(pools: &[PoolInfo]) -> Result<String, ActionError> {
    let active: Vec<&str> = pools.iter().filter(|p| is_active(p)).map(|p| p.name.as_str()).collect();
    match active.as_slice() {
        [one] => Ok(one.to_string()),
        [] => Err(ActionError::NoActivePool),
        many => Err(ActionError::SeveralActivePools(many.iter().map(|s| s.to_string()).collect())),
    }
}

/// Marks `pool` active. Refuses when another pool is active (deactivate it
/// first, as the API document says) or the pool does not exist.
pub fn activate(lib: &dyn Backend, pool: &str) -> Result<(), ActionError> {
    let pools = lib.pools()?;
    let target = pools.iter().find(|p| p.name == pool).ok_or_else(|| ActionError::PoolNotFound(pool.to_string()))?;
    let others: Vec<String> = pools.iter().filter(|p| p.name != pool && is_active(p)).map(|p| p.name.clone()).collect();
    if !others.is_empty() {
        return Err(ActionError::OtherPoolActive { pool: pool.to_string(), active: others });
    }
    if target.active_prop.as_deref() != Some("yes") {
        lib.set_props(pool, &[(ACTIVE_PROP, "yes")])?;
    }
    Ok(())
}

/// Clears both markers from `pool`. Refuses a pool that is not active.
pub fn deactivate(lib: &dyn Backend, pool: &str) -> Result<(), ActionError> {
    let pools = lib.pools()?;
    let target = pools.iter().find(|p| p.name == pool).ok_or_else(|| ActionError::PoolNotFound(pool.to_string()))?;
    if !is_active(target) {
        return Err(ActionError::PoolNotActive(pool.to_string()));
    }
    if target.active_prop.is_some() {
        lib.set_props(pool, &[(ACTIVE_PROP, "no")])?;
    }
    if target.comment.as_deref() == Some("iocage") {
        lib.set_pool_prop(pool, "comment", "").map_err(|e| match e.kind {
            ErrorKind::NotFound => ActionError::PoolNotFound(pool.to_string()),
            _ => e.into(),
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(name: &str, comment: Option<&str>, prop: Option<&str>) -> PoolInfo {
        PoolInfo {
            name: name.into(),
            comment: comment.map(Into::into),
            active_prop: prop.map(Into::into),
            health: "ONLINE".into(),
            capacity: 0,
        }
    }

    #[test]
    fn either_marker_makes_a_pool_active() {
        assert!(is_active(&pool("a", Some("iocage"), None)));
        assert!(is_active(&pool("a", None, Some("yes"))));
        assert!(!is_active(&pool("a", Some("other"), Some("no"))));
    }

    #[test]
    fn exactly_one_active_pool() {
        assert_eq!(active(&[pool("a", None, None), pool("b", None, Some("yes"))]), Ok("b".to_string()));
        assert_eq!(active(&[pool("a", None, None)]), Err(ActionError::NoActivePool));
        let err = active(&[pool("a", Some("iocage"), None), pool("b", None, Some("yes"))]).unwrap_err();
        assert_eq!(err, ActionError::SeveralActivePools(vec!["a".into(), "b".into()]));
        assert!(err.to_string().contains("a, b"), "{err}");
    }
}
