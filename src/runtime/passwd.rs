//! Users of a jail, read from the jail's own `/etc/passwd` and
//! `/etc/group` by a helper that has already entered the jail.
//!
//! Parsed here rather than with getpwnam(3): inside a jail, the C library
//! would follow the *jail's* nsswitch.conf and could load a shared library
//! the jail provides into a process that is still root.

/// What `exec` needs to become a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
    pub shell: String,
    /// Supplementary groups (the primary one included).
    pub groups: Vec<u32>,
}

/// Finds `user` (a name, or a numeric uid) in passwd and group text.
pub fn lookup(user: &str, passwd: &str, group: &str) -> Option<Account> {
    let entry = passwd.lines().filter(|l| !l.starts_with('#')).find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 7 {
            return None;
        }
        let uid = f[2].parse::<u32>().ok()?;
        (f[0] == user || user.parse::<u32>() == Ok(uid)).then_some(f)
    })?;
    let (uid, gid) = (entry[2].parse().ok()?, entry[3].parse().ok()?);
    let name = entry[0].to_string();
    let mut groups = vec![gid];
    for line in group.lines().filter(|l| !l.starts_with('#')) {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() >= 4 && f[3].split(',').any(|m| m == name) {
            if let Ok(g) = f[2].parse::<u32>() {
                if !groups.contains(&g) {
                    groups.push(g);
                }
            }
        }
    }
    Some(Account { name, uid, gid, home: entry[5].to_string(), shell: entry[6].to_string(), groups })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str =
        "# comment\nroot:x:0:0:root:/root:/bin/sh\nalice:*:1001:1001:Alice:/home/alice:/bin/sh\nbroken:x\n";
    const GROUP: &str = "wheel:*:0:root\nstaff:*:20:alice,bob\nalice:*:1001:\n";

    #[test]
    fn users_are_found_by_name_or_uid_with_their_groups() {
        let a = lookup("alice", PASSWD, GROUP).unwrap();
        assert_eq!((a.uid, a.gid, a.home.as_str()), (1001, 1001, "/home/alice"));
        assert_eq!(a.groups, vec![1001, 20]);
        assert_eq!(lookup("0", PASSWD, GROUP).unwrap().name, "root");
        assert_eq!(lookup("bob", PASSWD, GROUP), None);
        assert_eq!(lookup("broken", PASSWD, GROUP), None);
        assert_eq!(lookup("x", PASSWD, GROUP), None);
    }
}
