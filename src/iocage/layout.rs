//! Where iocage keeps things on a pool, as dataset names.
//!
//! ```text
//! POOL/iocage                    the root (mountpoint /iocage)
//! POOL/iocage/.defaults          user properties here are the defaults
//! POOL/iocage/jails/<UUID>       one jail; its properties live here
//! POOL/iocage/jails/<UUID>/root  the jail's /
//! POOL/iocage/releases/<REL>/root
//! POOL/iocage/base/<REL>/root/<dir>
//! POOL/iocage/templates/<...>
//! ```
//! Every dataset name iocaged writes is built here, from the pool name and
//! validated components, and checked with [`Layout::contains`] before a
//! destructive operation: nothing outside `POOL/iocage` is ever touched.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pool: String,
}

impl Layout {
    pub fn new(pool: impl Into<String>) -> Self {
        Layout { pool: pool.into() }
    }

    pub fn pool(&self) -> &str {
        &self.pool
    }

    /// `POOL/iocage`
    pub fn root(&self) -> String {
        format!("{}/iocage", self.pool)
    }

    /// `POOL/iocage/.defaults`
    pub fn defaults(&self) -> String {
        format!("{}/iocage/.defaults", self.pool)
    }

    /// `POOL/iocage/jails`
    pub fn jails(&self) -> String {
        format!("{}/iocage/jails", self.pool)
    }

    /// `POOL/iocage/jails/<uuid>`
    pub fn jail(&self, uuid: &str) -> String {
        format!("{}/iocage/jails/{uuid}", self.pool)
    }

    /// `POOL/iocage/releases`
    pub fn releases(&self) -> String {
        format!("{}/iocage/releases", self.pool)
    }

    /// `POOL/iocage/base` (the pieces basejails share)
    pub fn base(&self) -> String {
        format!("{}/iocage/base", self.pool)
    }

    /// `POOL/iocage/templates`
    pub fn templates(&self) -> String {
        format!("{}/iocage/templates", self.pool)
    }

    /// `POOL/iocage/download`
    pub fn download(&self) -> String {
        format!("{}/iocage/download", self.pool)
    }

    /// Whether `dataset` (or `dataset@snap`) lies strictly inside `POOL/iocage`.
    pub fn contains(&self, dataset: &str) -> bool {
        let root = self.root();
        dataset.strip_prefix(&root).is_some_and(|rest| {
            let rest = rest.strip_prefix('/').unwrap_or("");
            !rest.is_empty() && !rest.split(['/', '@']).any(|c| c.is_empty() || c == "." || c == "..")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let l = Layout::new("tank");
        assert_eq!(l.root(), "tank/iocage");
        assert_eq!(l.defaults(), "tank/iocage/.defaults");
        assert_eq!(l.jail("abc"), "tank/iocage/jails/abc");
    }

    #[test]
    fn contains_only_what_is_strictly_inside() {
        let l = Layout::new("tank");
        assert!(l.contains("tank/iocage/jails/abc"));
        assert!(l.contains("tank/iocage/jails/abc@ioc-1"));
        assert!(!l.contains("tank/iocage"), "the root itself");
        assert!(!l.contains("tank/iocagex/jails"));
        assert!(!l.contains("tank/other"));
        assert!(!l.contains("tank"));
        assert!(!l.contains("tank/iocage/jails/../../x"));
        assert!(!l.contains("tank/iocage//x"));
        assert!(!l.contains("other/iocage/jails/x"));
    }
}
