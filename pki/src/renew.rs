//! Keeping a node's certificate current: renewed at a random point between 50 % and
//! 80 % of its life (as Swarm's), and at once when the cluster says the node's role
//! or the signing CA changed. The new credentials are saved before they are used.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use crate::enroll::renew;
use crate::{Credentials, Role};

/// Renews a node's certificate; clones share it.
#[derive(Debug, Clone)]
pub struct Renewer {
    creds: Credentials,
    dir: PathBuf,
    managers: Arc<Mutex<Vec<String>>>,
    now: Arc<Notify>,
}

impl Renewer {
    /// A renewer of `creds`, saving them in `dir`, asking `managers`.
    pub fn new(creds: Credentials, dir: PathBuf, managers: Vec<String>) -> Renewer {
        Renewer { creds, dir, managers: Arc::new(Mutex::new(managers)), now: Arc::new(Notify::new()) }
    }

    /// The credentials it keeps.
    pub fn credentials(&self) -> &Credentials {
        &self.creds
    }

    /// What the cluster says now: the node's role, the trusted roots and the
    /// subject of the CA that signs. New roots are taken (and saved) at once; a
    /// certificate of another role or from another CA is renewed now.
    pub fn observe(&self, role: &str, roots_pem: &str, ca_subject: &str, managers: &[String]) {
        if !managers.is_empty() {
            *self.managers.lock().expect("managers lock") = managers.to_vec();
        }
        if !roots_pem.is_empty() && roots_pem != self.creds.roots_pem() {
            match self.creds.set_roots(roots_pem).and_then(|()| self.creds.save(&self.dir)) {
                Ok(()) => tracing::info!("the cluster's trusted roots changed; taken"),
                Err(e) => tracing::warn!(error = %e, "the cluster's new roots are unusable"),
            }
        }
        let Some(info) = self.creds.info() else { return };
        let role_now = match role {
            "manager" => Some(Role::Manager),
            "worker" => Some(Role::Worker),
            _ => None,
        };
        let other_role = role_now.is_some_and(|r| r != info.subject.role);
        let other_ca = !ca_subject.is_empty() && ca_subject != info.issuer;
        if other_role || other_ca {
            tracing::info!(other_role, other_ca, "renewing the node certificate now");
            self.now.notify_one();
        }
    }

    /// Renews for as long as the process runs.
    pub async fn run(self) {
        let mut retry = Duration::from_secs(1);
        loop {
            let wait = match self.creds.info() {
                Some(info) => {
                    let at = info.renew_at(rand::random::<f64>());
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_secs() as i64)
                        .unwrap_or(0);
                    // At least a second between renewals, whatever the clock says.
                    Duration::from_secs(at.saturating_sub(now).max(1) as u64)
                }
                None => Duration::from_secs(3600),
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.now.notified() => {}
            }
            let managers = self.managers.lock().expect("managers lock").clone();
            let mut done = false;
            for addr in &managers {
                match renew(addr, &self.creds).await {
                    Ok(()) => {
                        done = true;
                        if let Err(e) = self.creds.save(&self.dir) {
                            tracing::error!(error = %e, "the renewed certificate could not be saved");
                        }
                        let until = self.creds.info().map(|i| i.not_after).unwrap_or_default();
                        tracing::info!(manager = %addr, valid_until = until, "node certificate renewed");
                        break;
                    }
                    Err(e) => tracing::warn!(manager = %addr, error = %e, "certificate renewal failed"),
                }
            }
            if done {
                retry = Duration::from_secs(1);
            } else {
                tokio::time::sleep(retry).await;
                retry = (retry * 2).min(Duration::from_secs(60));
                self.now.notify_one();
            }
        }
    }
}
