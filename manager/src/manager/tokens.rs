//! Join tokens and the API token: how they are made and rotated. A join token names
//! the cluster and the role it admits (`SHTKN-1-<cluster id>-<W|M><secret>`); the
//! API token is a bearer secret for the API's TCP listeners.

use shoal_api::cluster::Cluster;

use super::Manager;
use super::error::ManagerError;
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

impl Manager {
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
    fn roles_parse_and_unknown_ones_are_named() {
        assert_eq!("worker".parse::<Role>().unwrap(), Role::Worker);
        assert_eq!("manager".parse::<Role>().unwrap(), Role::Manager);
        let e = "admin".parse::<Role>().unwrap_err();
        assert_eq!(e.to_string(), "no join token for role \"admin\": use worker or manager");
    }
}
