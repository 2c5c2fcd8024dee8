//! Resolving `user`, `uid`, `user:group` or `uid:gid` against an image's `/etc/passwd`
//! and `/etc/group`, as Docker does: names must exist; numeric ids need not.

/// The ids a container process runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary groups (those listing the user in `/etc/group`).
    pub groups: Vec<u32>,
    /// Home directory, for `HOME` when the environment has none.
    pub home: String,
}

/// Why a user could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    /// A user name not in the image's `/etc/passwd`.
    #[error("user {0:?} is not in the image's /etc/passwd: add it to the image or give a numeric uid")]
    UnknownUser(String),
    /// A group name not in the image's `/etc/group`.
    #[error("group {0:?} is not in the image's /etc/group: add it to the image or give a numeric gid")]
    UnknownGroup(String),
}

struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

fn passwd_entries(passwd: &str) -> impl Iterator<Item = PasswdEntry<'_>> {
    passwd.lines().filter_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 7 {
            return None;
        }
        Some(PasswdEntry { name: f[0], uid: f[2].parse().ok()?, gid: f[3].parse().ok()?, home: f[5] })
    })
}

fn group_entries(group: &str) -> impl Iterator<Item = (&str, u32, Vec<&str>)> {
    group.lines().filter_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 4 {
            return None;
        }
        let members = f[3].split(',').filter(|m| !m.is_empty()).collect();
        Some((f[0], f[2].parse().ok()?, members))
    })
}

/// Resolves `spec` given the contents of the image's `/etc/passwd` and `/etc/group`
/// (empty when the image lacks them).
pub fn resolve(spec: &str, passwd: &str, group: &str) -> Result<Identity, UserError> {
    let (user, grp) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let entry = passwd_entries(passwd).find(|e| e.name == user || user.parse() == Ok(e.uid));
    let (uid, mut gid, name, home) = match (&entry, user.parse::<u32>()) {
        (Some(e), _) => (e.uid, e.gid, Some(e.name), e.home.to_owned()),
        (None, Ok(uid)) => (uid, uid, None, "/".to_owned()),
        (None, Err(_)) => return Err(UserError::UnknownUser(user.to_owned())),
    };
    if entry.is_none() && user.parse::<u32>().is_ok() {
        // A bare uid with no passwd entry gets gid 0, as in Docker.
        gid = 0;
    }
    if let Some(g) = grp {
        gid = match group_entries(group).find(|(n, id, _)| *n == g || g.parse() == Ok(*id)) {
            Some((_, id, _)) => id,
            None => g.parse().map_err(|_| UserError::UnknownGroup(g.to_owned()))?,
        };
    }
    let groups = match (name, grp) {
        (Some(n), None) => group_entries(group)
            .filter(|(_, id, m)| m.contains(&n) && *id != gid)
            .map(|(_, id, _)| id)
            .collect(),
        _ => Vec::new(),
    };
    Ok(Identity { uid, gid, groups, home })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nwww:x:33:33:www:/var/www:/bin/false\nbad line\n";
    const GROUP: &str = "root:x:0:\nwww:x:33:\nadm:x:4:www,root\nstaff:x:50:www\n";

    #[test]
    fn resolves_like_docker() {
        let id = |s| resolve(s, PASSWD, GROUP);
        assert_eq!(id("0").unwrap(), Identity { uid: 0, gid: 0, groups: vec![4], home: "/root".into() });
        assert_eq!(
            id("www").unwrap(),
            Identity { uid: 33, gid: 33, groups: vec![4, 50], home: "/var/www".into() }
        );
        assert_eq!(id("33:adm").unwrap().gid, 4);
        assert_eq!(id("www:50").unwrap().groups, Vec::<u32>::new());
        assert_eq!(id("1000").unwrap(), Identity { uid: 1000, gid: 0, groups: vec![], home: "/".into() });
        assert_eq!(id("1000:1000").unwrap().gid, 1000);
        assert_eq!(id("nobody"), Err(UserError::UnknownUser("nobody".into())));
        assert_eq!(id("www:wheel"), Err(UserError::UnknownGroup("wheel".into())));
        assert_eq!(resolve("0", "", "").unwrap().uid, 0);
    }
}
