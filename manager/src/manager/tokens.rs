//! Join tokens and the API tokens: how they are made and rotated. A join token pins
//! the cluster's CA and carries the role it admits (`SHTKN-1-<CA digest>-<W|M><secret>`,
//! see `shoal_pki::token`); the API tokens are bearer secrets for the API's TCP
//! listeners, one that may do everything and one that may only read. The unlock key
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

/// A new join token for `role` pinning the CA whose certificate is `ca_pem`.
fn join_token(role: Role, ca_pem: &str) -> Result<String, ManagerError> {
    let ca = shoal_pki::ca::first_cert(ca_pem, "the cluster CA")?;
    let role = match role {
        Role::Worker => shoal_pki::Role::Worker,
        Role::Manager => shoal_pki::Role::Manager,
    };
    Ok(shoal_pki::JoinToken::generate(role, &shoal_pki::token::digest(&ca)).to_string())
}

/// A new bearer token for the API's TCP listeners that may do everything.
pub(super) fn api_token() -> String {
    format!("SHAPI-1-{}", secret(24))
}

/// A new bearer token that may only read.
pub(super) fn read_only_api_token() -> String {
    format!("SHRO-1-{}", secret(24))
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
        let cluster = self.cluster().ok_or(ManagerError::NotInitialized)?;
        let token = join_token(role, &cluster.ca.signer_cert)?;
        self.update_cluster(|c| match role {
            Role::Worker => c.join_tokens.worker = token,
            Role::Manager => c.join_tokens.manager = token,
        })
        .await
    }

    /// Replaces the API token; TCP clients with the old one are refused from now on.
    pub async fn rotate_api_token(&self) -> Result<Cluster, ManagerError> {
        self.update_cluster(|c| c.api_token = api_token()).await
    }

    /// Replaces the read-only API token.
    pub async fn rotate_read_only_api_token(&self) -> Result<Cluster, ManagerError> {
        self.update_cluster(|c| c.read_only_api_token = read_only_api_token()).await
    }

    /// Changes the cluster object with `f` and stores it.
    pub(super) async fn update_cluster(&self, f: impl FnOnce(&mut Cluster)) -> Result<Cluster, ManagerError> {
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
    fn join_tokens_pin_the_ca_and_name_their_role_and_api_tokens_their_scope() {
        let ca = shoal_pki::CaKeys::generate("c1").unwrap();
        let w = join_token(Role::Worker, &ca.cert_pem).unwrap();
        let parsed = shoal_pki::JoinToken::parse(&w).unwrap();
        assert_eq!(parsed.ca_digest, ca.digest().unwrap());
        assert_eq!(parsed.role, shoal_pki::Role::Worker);
        let m = shoal_pki::JoinToken::parse(&join_token(Role::Manager, &ca.cert_pem).unwrap()).unwrap();
        assert_eq!(m.role, shoal_pki::Role::Manager);
        assert_ne!(w, join_token(Role::Worker, &ca.cert_pem).unwrap());
        let a = api_token();
        assert!(a.starts_with("SHAPI-1-") && a.len() == "SHAPI-1-".len() + 48, "{a}");
        assert!(read_only_api_token().starts_with("SHRO-1-"));
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
