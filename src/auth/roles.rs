//! Who may do what: root and members of `wheel` read and write; members of
//! `operator` only read; nobody else gets in. The same rule as the
//! original sysadm server.

use nix::unistd::{Group, User, getgrouplist};

/// What an authenticated caller may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// listjails, getjailsettings, df, getdefaultsettings.
    Read,
    /// Everything.
    ReadWrite,
}

impl Role {
    /// As `rpc/query` reports it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::ReadWrite => "read/write",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "read" => Some(Role::Read),
            "write" | "read/write" => Some(Role::ReadWrite),
            _ => None,
        }
    }
}

/// The role of a system user, from its uid and groups; `None`: no access.
pub fn role_of(user: &str) -> Option<Role> {
    let u = User::from_name(user).ok()??;
    if u.uid.is_root() {
        return Some(Role::ReadWrite);
    }
    let name = std::ffi::CString::new(user).ok()?;
    let groups = getgrouplist(&name, u.gid).ok()?;
    let names: Vec<String> =
        groups.into_iter().filter_map(|g| Group::from_gid(g).ok().flatten()).map(|g| g.name).collect();
    if names.iter().any(|n| n == "wheel") {
        Some(Role::ReadWrite)
    } else if names.iter().any(|n| n == "operator") {
        Some(Role::Read)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_reads_and_writes_and_unknown_users_get_nothing() {
        assert_eq!(role_of("root"), Some(Role::ReadWrite));
        assert_eq!(role_of("no-such-user-iocaged"), None);
        assert_eq!(Role::parse("write"), Some(Role::ReadWrite));
        assert_eq!(Role::parse("admin"), None);
    }
}
