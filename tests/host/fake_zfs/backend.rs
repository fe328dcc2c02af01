//! The fake's `zfs::Backend`: each method, as `Libzfs`'s, over [`State`].

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::MutexGuard;

use iocaged::zfs::{Backend, DatasetProps, ErrorKind, HistoryTail, NativeValue, PoolInfo, Result, UserProp, Versions};

use super::{FakeZfs, State, err};

/// The backend the owner thread holds.
pub struct Backed(pub(super) FakeZfs);

impl Backed {
    fn s(&self, op: &'static str, name: &str) -> Result<MutexGuard<'_, State>> {
        let held =
            self.0.state().held.iter().find(|(o, p, _)| *o == op && name.starts_with(p.as_str())).map(|h| h.2.clone());
        if let Some(gate) = held {
            gate.pass();
        }
        let mut s = self.0.state();
        s.take_failure(op, name)?;
        Ok(s)
    }
}

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type()?;
        if kind.is_dir() {
            copy_tree(&src, &dst)?;
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&src)?, &dst)?;
        } else {
            std::fs::copy(&src, &dst)?;
        }
    }
    Ok(())
}

impl Backend for Backed {
    fn versions(&self) -> Versions {
        Versions { userland: "zfs-fake".into(), kernel: "zfs-kmod-fake".into() }
    }

    fn exists(&self, name: &str) -> bool {
        self.0.state().datasets.contains_key(name)
    }

    fn children(&self, parent: &str) -> Result<Vec<String>> {
        let s = self.s("children", parent)?;
        s.get("list children of", parent)?;
        Ok(s.children(parent))
    }

    fn descendants(&self, name: &str) -> Result<Vec<String>> {
        let s = self.s("descendants", name)?;
        Ok(s.tree(name)?.into_iter().filter(|n| !n.contains('@')).collect())
    }

    fn snapshots(&self, name: &str) -> Result<Vec<String>> {
        let s = self.s("snapshots", name)?;
        s.get("list snapshots of", name)?;
        Ok(s.snapshots(name))
    }

    fn pools(&self) -> Result<Vec<PoolInfo>> {
        let s = self.s("pools", "")?;
        let mut out = Vec::new();
        for (name, comment) in &s.pools {
            let active_prop = s.user(name)?.remove("org.freebsd.ioc:active").map(|p| p.value);
            out.push(PoolInfo {
                name: name.clone(),
                comment: comment.clone(),
                active_prop,
                health: "ONLINE".into(),
                capacity: 3,
            });
        }
        Ok(out)
    }

    fn forget_pools(&self) {}

    fn set_pool_prop(&self, pool: &str, prop: &str, value: &str) -> Result<()> {
        let mut s = self.s("set_pool_prop", pool)?;
        if prop != "comment" {
            return Err(err(
                "set pool property on",
                pool,
                ErrorKind::InvalidProperty,
                format!("invalid property '{prop}'"),
            ));
        }
        let comment = s
            .pools
            .get_mut(pool)
            .ok_or_else(|| err("set pool property on", pool, ErrorKind::NotFound, "no such pool"))?;
        *comment = Some(value.to_string()).filter(|v| !v.is_empty());
        // A pool's own record names no dataset.
        s.history.entry(pool.to_string()).or_default().push((None, false));
        Ok(())
    }

    fn history_end(&self, pool: &str, from: u64) -> Result<u64> {
        Ok(self.history_since(pool, from, false)?.end)
    }

    fn history_since(&self, pool: &str, from: u64, names: bool) -> Result<HistoryTail> {
        let s = self.s("history_since", pool)?;
        if !s.pools.contains_key(pool) {
            return Err(err("read the history of", pool, ErrorKind::NotFound, "no such pool"));
        }
        let log = s.history.get(pool).map(Vec::as_slice).unwrap_or_default();
        // As ZFS: a read from an overwritten offset starts at the oldest
        // record kept, and says nothing of it.
        let asked = usize::try_from(from).unwrap_or(usize::MAX);
        let start = asked.max(s.overwritten.get(pool).copied().unwrap_or(0));
        let new = log.get(start..).unwrap_or_default();
        Ok(HistoryTail {
            end: log.len() as u64,
            datasets: if names { new.iter().filter_map(|(n, _)| n.clone()).collect() } else { Vec::new() },
            renamed: names && new.iter().any(|(_, r)| *r),
            complete: names && start == asked,
        })
    }

    fn native_props(&self, name: &str, props: &[&str]) -> Result<BTreeMap<String, NativeValue>> {
        let s = self.s("native_props", name)?;
        props.iter().map(|p| Ok((p.to_string(), s.native(name, p)?))).collect()
    }

    fn user_props(&self, name: &str) -> Result<BTreeMap<String, UserProp>> {
        self.s("user_props", name)?.user(name)
    }

    fn dataset_props(&self, name: &str, native: &[&str]) -> Result<DatasetProps> {
        self.s("dataset_props", name)?.props(name, native)
    }

    fn scan_children(&self, parent: &str, native: &[&str]) -> Result<Vec<DatasetProps>> {
        let s = self.s("scan_children", parent)?;
        s.get("list children of", parent)?;
        s.children(parent).into_iter().map(|name| s.props(&name, native)).collect()
    }

    fn set_props(&self, name: &str, props: &[(&str, &str)]) -> Result<()> {
        let mut s = self.s("set_props", name)?;
        s.set("set properties on", name, props)?;
        s.log(name, false);
        Ok(())
    }

    fn inherit(&self, name: &str, prop: &str) -> Result<()> {
        let mut s = self.s("inherit", name)?;
        let d = s
            .datasets
            .get_mut(name)
            .ok_or_else(|| err("inherit property on", name, ErrorKind::NotFound, "dataset does not exist"))?;
        d.user.remove(prop);
        d.native.remove(prop);
        s.log(name, false);
        Ok(())
    }

    fn create_filesystem(&self, name: &str, props: &[(&str, &str)]) -> Result<()> {
        let mut s = self.s("create_filesystem", name)?;
        if name.contains('@') {
            return Err(err("create", name, ErrorKind::InvalidName, "a filesystem name has no '@'"));
        }
        s.insert("create", name, None, props)
    }

    fn snapshot(&self, snapshot: &str, props: &[(&str, &str)]) -> Result<()> {
        let mut s = self.s("snapshot", snapshot)?;
        if !snapshot.contains('@') {
            return Err(err("snapshot", snapshot, ErrorKind::InvalidName, "a snapshot name has an '@'"));
        }
        s.insert("snapshot", snapshot, None, props)
    }

    fn snapshot_recursive(&self, snapshot: &str) -> Result<()> {
        let mut s = self.s("snapshot_recursive", snapshot)?;
        let (fs, snap) = snapshot
            .split_once('@')
            .ok_or_else(|| err("snapshot", snapshot, ErrorKind::InvalidName, "a snapshot name has an '@'"))?;
        let all: Vec<String> = s.tree(fs)?.into_iter().filter(|n| !n.contains('@')).collect();
        if let Some(taken) = all.iter().find(|n| s.datasets.contains_key(&format!("{n}@{snap}"))) {
            return Err(err("snapshot", &format!("{taken}@{snap}"), ErrorKind::Exists, "dataset already exists"));
        }
        for n in all {
            s.insert("snapshot", &format!("{n}@{snap}"), None, &[])?;
        }
        Ok(())
    }

    fn clone_snapshot(&self, snapshot: &str, target: &str, props: &[(&str, &str)]) -> Result<()> {
        let mut s = self.s("clone_snapshot", target)?;
        s.get("clone", snapshot)?;
        s.insert("clone", target, Some(snapshot.to_string()), props)?;
        // The clone shows its origin's files (the fake keeps no snapshot
        // contents: the origin's as they are when it is mounted).
        s.seed(target, snapshot);
        Ok(())
    }

    fn mount(&self, name: &str) -> Result<()> {
        let mut s = self.s("mount", name)?;
        s.get("mount", name)?;
        // As zfs_mount: `none`, `legacy` and canmount=off mount nothing.
        let dir = s.mountpoint(name).filter(|m| m.starts_with('/'));
        let Some(dir) = dir else { return Ok(()) };
        if s.native(name, "canmount")?.printed.as_deref() == Some("off") {
            return Ok(());
        }
        if s.hollow.iter().any(|p| name.starts_with(p.as_str())) {
            if let Some(d) = s.datasets.get_mut(name) {
                d.mounted = true;
            }
            return Ok(());
        }
        let failed = |e: std::io::Error| err("mount", name, ErrorKind::Other, e.to_string());
        std::fs::create_dir_all(&dir).map_err(failed)?;
        if let Some(d) = s.datasets.get_mut(name) {
            d.mounted = true;
            if let Some(seed) = d.seed.take() {
                copy_tree(&seed, Path::new(&dir)).map_err(failed)?;
            }
        }
        Ok(())
    }

    fn unmount(&self, name: &str) -> Result<()> {
        let mut s = self.s("unmount", name)?;
        s.get("unmount", name)?;
        if let Some(d) = s.datasets.get_mut(name) {
            d.mounted = false;
        }
        Ok(())
    }

    fn is_mounted(&self, name: &str) -> Result<bool> {
        let s = self.s("is_mounted", name)?;
        Ok(s.get("check mount of", name)?.mounted)
    }

    fn rename(&self, from: &str, to: &str) -> Result<()> {
        let mut s = self.s("rename", from)?;
        s.get("rename", from)?;
        if s.datasets.contains_key(to) {
            return Err(err("rename", from, ErrorKind::Exists, "dataset already exists"));
        }
        for n in s.tree(from)? {
            if let Some(d) = s.datasets.remove(&n) {
                s.datasets.insert(format!("{to}{}", &n[from.len()..]), d);
            }
        }
        s.log(from, true);
        Ok(())
    }

    fn destroy(&self, name: &str) -> Result<()> {
        self.s("destroy", name)?.destroy(name)
    }

    fn destroy_recursive(&self, name: &str) -> Result<()> {
        self.destroy_together(&[name.to_string()])
    }

    fn destroy_together(&self, names: &[String]) -> Result<()> {
        let label = names.join(", ");
        let mut s = self.s("destroy_together", &label)?;
        let mut pending = Vec::new();
        for n in names {
            pending.extend(s.tree(n)?);
        }
        let outside = s.outside_clones(&pending, names);
        if !outside.is_empty() {
            let list: Vec<String> = outside.iter().map(|(c, o)| format!("{c} (clone of {o})")).collect();
            return Err(err(
                "destroy recursively",
                &label,
                ErrorKind::HasDependents,
                format!("datasets outside it depend on it: {}", list.join(", ")),
            ));
        }
        // Whatever has no dependents left goes, until all have gone.
        while !pending.is_empty() {
            let before = pending.len();
            let mut i = 0;
            while i < pending.len() {
                match s.destroy(&pending[i]) {
                    Ok(()) => {
                        pending.remove(i);
                    }
                    Err(e) if e.kind == ErrorKind::HasDependents => i += 1,
                    Err(e) => return Err(e),
                }
            }
            if pending.len() == before {
                return Err(err("destroy recursively", &label, ErrorKind::Other, "no progress"));
            }
        }
        Ok(())
    }

    fn outside_dependents(&self, name: &str) -> Result<Vec<String>> {
        let clones = self.outside_clones(name)?;
        Ok(clones.into_iter().map(|(c, o)| format!("{c} (clone of {o})")).collect())
    }

    fn outside_clones(&self, name: &str) -> Result<Vec<(String, String)>> {
        let s = self.s("outside_clones", name)?;
        let tree = s.tree(name)?;
        Ok(s.outside_clones(&tree, &[name.to_string()]))
    }
}
