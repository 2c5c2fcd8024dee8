//! Join tokens and the API token: how they are made and rotated. A join token names
//! the cluster and the role it admits (`SHTKN-1-<cluster id>-<W|M><secret>`); the
//! API token is a bearer secret for the API's TCP listeners. The unlock key
//! (autolock's KEK, see [`super::lock`]) is kept beside them in the cluster object.

use shoal_api::cluster::Cluster;

use super::Manager;
use super::error::ManagerError;
use super::lock::UnlockKey;
use crate::store::{Change, Object, Transaction};

/// A role a join token admits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A worker: runs tasks.
    Worker,
    /// A manager: joins the Raft group.
    Manager,
}

impl std::str::FromStr for Role {
    type Err = ManagerError;

    fn from_str(s: &str) -> Result<Role, ManagerError> {
        match s {
            "worker" => Ok(Role::Worker),
            "manager" => Ok(Role::Manager),
            other => Err(ManagerError::NoSuchRole(other.to_owned())),
        }
    }
}

/// `n` random bytes in hex.
fn secret(n: usize) -> String {
    (0..n).map(|_| format!("{:02x}", rand::random::<u8>())).collect()
}

/// A new join token for `role` in the cluster `cluster_id`.
pub(super) fn join_token(role: Role, cluster_id: &str) -> String {
    let kind = match role {
        Role::Worker => "W",
        Role::Manager => "M",
    };
    format!("SHTKN-1-{cluster_id}-{kind}{}", secret(16))
}

/// A new bearer token for the API's TCP listeners.
pub(super) fn api_token() -> String {
    format!("SHAPI-1-{}", secret(24))
}

/// Makes the cluster's unlock key follow `spec.autolock`: a new key when autolock is
/// turned on, none when it is off, the same one otherwise.
pub(crate) fn apply_autolock(c: &mut Cluster) {
    match (c.spec.autolock, c.unlock_key.is_empty()) {
        (true, true) => c.unlock_key = UnlockKey::random().reveal(),
        (false, false) => c.unlock_key.clear(),
        _ => {}
    }
}

impl Manager {
    /// Turns autolock on (with a new unlock key) or off; every manager re-wraps its
    /// data key when it applies the change.
    pub async fn set_autolock(&self, on: bool) -> Result<Cluster, ManagerError> {
        self.update_cluster(|c| {
            c.spec.autolock = on;
            apply_autolock(c);
        })
        .await
    }

    /// Replaces the unlock key; every manager re-wraps its data key with the new one
    /// when it applies the change, and the old key stops opening it. Refused while
    /// autolock is off.
    pub async fn rotate_unlock_key(&self) -> Result<Cluster, ManagerError> {
        if !self.cluster().ok_or(ManagerError::NotInitialized)?.spec.autolock {
            return Err(ManagerError::AutolockOff);
        }
        self.update_cluster(|c| c.unlock_key = UnlockKey::random().reveal()).await
    }

    /// Replaces the join token of `role` ("worker" or "manager") with a new one; nodes
    /// that joined with the old token are not affected.
    pub async fn rotate_join_token(&self, role: &str) -> Result<Cluster, ManagerError> {
        let role: Role = role.parse()?;
        self.update_cluster(|c| match role {
            Role::Worker => c.join_tokens.worker = join_token(role, &c.id),
            Role::Manager => c.join_tokens.manager = join_token(role, &c.id),
        })
        .await
    }

    /// Replaces the API token; TCP clients with the old one are refused from now on.
    pub async fn rotate_api_token(&self) -> Result<Cluster, ManagerError> {
        self.update_cluster(|c| c.api_token = api_token()).await
    }

    /// Changes the cluster object with `f` and stores it.
    async fn update_cluster(&self, f: impl FnOnce(&mut Cluster)) -> Result<Cluster, ManagerError> {
        let mut cluster = self.cluster().ok_or(ManagerError::NotInitialized)?;
        let version = cluster.meta.version;
        f(&mut cluster);
        cluster.meta.updated_at = chrono::Utc::now();
        let change = Change::Update { object: Object::Cluster(cluster.clone()), expected_version: version };
        cluster.meta.version = self.propose(Transaction { changes: vec![change] }).await?;
        Ok(cluster)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_name_the_cluster_and_role_and_never_repeat() {
        let w = join_token(Role::Worker, "c1");
        let m = join_token(Role::Manager, "c1");
        assert!(w.starts_with("SHTKN-1-c1-W") && w.len() == "SHTKN-1-c1-W".len() + 32, "{w}");
        assert!(m.starts_with("SHTKN-1-c1-M"), "{m}");
        assert_ne!(w, join_token(Role::Worker, "c1"));
        let a = api_token();
        assert!(a.starts_with("SHAPI-1-") && a.len() == "SHAPI-1-".len() + 48, "{a}");
    }

    #[test]
    fn the_unlock_key_follows_autolock() {
        let mut c: Cluster = serde_json::from_value(serde_json::json!({
            "id": "c", "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z",
            "version": 1, "spec": {}, "join_tokens": {"worker": "", "manager": ""}
        }))
        .unwrap();
        apply_autolock(&mut c);
        assert!(c.unlock_key.is_empty(), "off by default");
        c.spec.autolock = true;
        apply_autolock(&mut c);
        let key = c.unlock_key.clone();
        assert!(UnlockKey::parse(&key).is_ok(), "{key}");
        apply_autolock(&mut c);
        assert_eq!(c.unlock_key, key, "kept while autolock stays on");
        c.spec.autolock = false;
        apply_autolock(&mut c);
        assert!(c.unlock_key.is_empty());
    }

    #[test]
    fn roles_parse_and_unknown_ones_are_named() {
        assert_eq!("worker".parse::<Role>().unwrap(), Role::Worker);
        assert_eq!("manager".parse::<Role>().unwrap(), Role::Manager);
        let e = "admin".parse::<Role>().unwrap_err();
        assert_eq!(e.to_string(), "no join token for role \"admin\": use worker or manager");
    }
}
