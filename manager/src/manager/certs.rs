//! The managers' side of node certificates: the CA made at `--init` (or given), the
//! certificates issued to joining nodes (admitted by their token) and renewed for
//! nodes that hold a valid one, CA rotation with a cross-signed bridge, and the check
//! every RPC makes of its caller ([`check`], pure).

use std::time::Duration;

use shoal_api::cluster::{Cluster, ClusterCa, JoinTokens};
use shoal_api::node::{Node, NodeRole, NodeState};
use shoal_pki::keys::{csr, generate_key};
use shoal_pki::{CaKeys, CertInfo, Credentials, JoinToken, Peer, Role, Subject};
use shoal_proto::raft as pb;

use super::error::ManagerError;
use super::nodes::{joined_worker_node, record_of};
use super::{Manager, client};
use crate::store::{Change, Kind, Object, StoreError, Transaction};

/// What a call needs of its caller's certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Need {
    /// A manager of this cluster (Raft, membership changes, forwarded calls).
    Manager,
    /// The node `0` itself (a worker acting for its own node id only).
    Node(String),
    /// Any node of this cluster.
    AnyNode,
}

/// Whether the certificate `peer` (verified during the handshake) may make a call
/// that needs `need`, given the cluster object and the caller's node as stored.
/// Revocation is here, not in the certificate: a removed node, or a demoted
/// manager, loses what its certificate allowed the moment the store says so.
pub fn check(
    peer: Option<&CertInfo>,
    cluster: Option<&Cluster>,
    node: Option<&Node>,
    need: &Need,
) -> Result<Subject, String> {
    let info = peer.ok_or("this call needs a node certificate: join the cluster first")?;
    let s = &info.subject;
    if let Some(c) = cluster {
        if s.cluster_id != c.id {
            return Err(format!("the certificate is for cluster {}, not this one ({})", s.cluster_id, c.id));
        }
        if c.ca.revoked_nodes.contains(&s.node_id) {
            return Err(format!(
                "node {} was removed from the cluster: its certificate is revoked",
                s.node_id
            ));
        }
    }
    match need {
        Need::Manager if s.role != Role::Manager => {
            Err(format!("node {} holds a worker certificate: only managers may make this call", s.node_id))
        }
        Need::Manager if node.is_some_and(|n| n.spec.role == NodeRole::Worker) => {
            Err(format!("node {} was demoted: its manager certificate no longer counts", s.node_id))
        }
        Need::Node(id) if *id != s.node_id => {
            Err(format!("the certificate names node {}, which may not act for node {id}", s.node_id))
        }
        _ => Ok(s.clone()),
    }
}

/// Whether a CA rotation can end: every node that is not down holds a
/// certificate from the new signer.
pub(super) fn rotation_done(ca: &ClusterCa, nodes: &[Node]) -> bool {
    let Ok(der) = shoal_pki::ca::first_cert(&ca.signer_cert, "the signing CA") else { return false };
    let Some(signer) = shoal_pki::subject::subject_text(&der) else { return false };
    !ca.cross_signed.is_empty()
        && nodes
            .iter()
            .filter(|n| n.status.state != NodeState::Down)
            .all(|n| n.certificate.as_ref().is_some_and(|c| c.issuer == signer))
}

fn role_of(role: NodeRole) -> Role {
    match role {
        NodeRole::Manager => Role::Manager,
        NodeRole::Worker => Role::Worker,
    }
}

/// The signing CA of `ca`.
fn signer(ca: &ClusterCa) -> CaKeys {
    CaKeys { cert_pem: ca.signer_cert.clone(), key_pem: ca.signer_key.clone() }
}

/// Join tokens pinning the root `ca`.
pub(super) fn new_tokens(ca: &CaKeys) -> Result<JoinTokens, ManagerError> {
    let digest = ca.digest()?;
    Ok(JoinTokens {
        worker: JoinToken::generate(Role::Worker, &digest).to_string(),
        manager: JoinToken::generate(Role::Manager, &digest).to_string(),
    })
}

/// The names a manager's certificate carries besides `shoal-manager`, so HTTPS
/// clients can check the API's address: the advertised host and loopback.
fn manager_names(advertise: &str) -> Vec<String> {
    let host = advertise.rsplit_once(':').map_or(advertise, |(h, _)| h).trim_matches(['[', ']']);
    let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    if !host.is_empty() && !names.iter().any(|n| n == host) && host != "0.0.0.0" {
        names.push(host.to_owned());
    }
    names
}

impl Manager {
    /// This node's TLS credentials (its agent and servers share them).
    pub fn credentials(&self) -> &Credentials {
        &self.creds
    }

    /// The node id this manager's certificate names.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// The roots the cluster trusts, PEM (what `GetRootCa` answers).
    pub fn roots_pem(&self) -> String {
        self.cluster().map(|c| c.ca.roots_pem).unwrap_or_else(|| self.creds.roots_pem())
    }

    /// The subject of the CA that signs now (nodes holding another's renew).
    pub fn ca_subject(&self) -> String {
        self.cluster()
            .and_then(|c| shoal_pki::ca::first_cert(&c.ca.signer_cert, "the signing CA").ok())
            .and_then(|der| shoal_pki::subject::subject_text(&der))
            .unwrap_or_default()
    }

    /// Checks the caller of an RPC against `need` (see [`check`]).
    pub fn authorize(&self, peer: Option<&Peer>, need: Need) -> Result<Subject, ManagerError> {
        let info = peer.and_then(|p| p.cert.as_ref());
        // Read in place: Raft calls this per request, so nothing is cloned.
        let verdict = self.read(|s| {
            let cluster = match s.list(Kind::Cluster).next() {
                Some(Object::Cluster(c)) => Some(c),
                _ => None,
            };
            let node = info.and_then(|i| match s.get(Kind::Node, &i.subject.node_id) {
                Some(Object::Node(n)) => Some(n),
                _ => None,
            });
            check(info, cluster, node, &need)
        });
        verdict.map_err(|why| {
            tracing::warn!(peer = ?peer.map(|p| p.addr), %why, "call refused");
            ManagerError::Forbidden(why)
        })
    }

    /// At `--init`: the cluster's CA (the external one given, or a new one), and
    /// this manager's own certificate from it, taken into use and saved.
    pub(super) fn make_ca(&self, cluster_id: &str) -> Result<(ClusterCa, CaKeys), ManagerError> {
        let ca = match &self.external_ca {
            Some(given) => given.clone(),
            None => CaKeys::generate(cluster_id)?,
        };
        let subject =
            Subject { node_id: self.node_id.clone(), role: Role::Manager, cluster_id: cluster_id.to_owned() };
        let key = generate_key()?;
        let expiry = shoal_api::cluster::NODE_CERT_EXPIRY;
        let cert = ca.issue(&csr(&key)?, &subject, expiry, &manager_names(&self.advertise))?;
        self.creds.set_roots(&ca.cert_pem)?;
        self.creds.set_identity(&cert, &key)?;
        self.creds.save(&self.certs_dir)?;
        let cluster_ca = ClusterCa {
            roots_pem: ca.cert_pem.clone(),
            signer_cert: ca.cert_pem.clone(),
            signer_key: ca.key_pem.clone(),
            ..ClusterCa::default()
        };
        Ok((cluster_ca, ca))
    }

    /// Gets this manager a certificate through the manager at `addr` with a manager
    /// join token (the CA is checked against the token first), takes it into use
    /// and saves it.
    pub(super) async fn enroll(&self, addr: &str, token: &str) -> Result<(), ManagerError> {
        let req = shoal_pki::enroll::JoinRequest {
            node_id: self.node_id.clone(),
            hostname: String::new(),
            advertise_addr: self.advertise.clone(),
            raft_id: self.id,
        };
        let enrolled = shoal_pki::enroll::enroll(addr, token, req).await.map_err(|e| match e {
            shoal_pki::enroll::EnrollError::Refused { code: tonic::Code::Unauthenticated, .. } => {
                ManagerError::BadToken
            }
            e => ManagerError::Enroll(e),
        })?;
        let fresh = enrolled.credentials;
        self.creds.set_roots(&fresh.roots_pem())?;
        let chain = fresh.chain_pem().unwrap_or_default();
        let key = fresh.key_pem().unwrap_or_default();
        self.creds.set_identity(&chain, &key)?;
        self.creds.save(&self.certs_dir)?;
        Ok(())
    }

    /// Issues a certificate to a node joining with a join token; a worker is stored
    /// as a node. Carried to the leader.
    pub async fn issue_certificate(&self, req: pb::IssueRequest) -> Result<pb::IssueReply, ManagerError> {
        if !self.is_leader() {
            let leader = self.leader_addr()?;
            return client::membership(&self.creds, &leader)?
                .issue_certificate(req)
                .await
                .map(|r| r.into_inner())
                .map_err(|s| ManagerError::from_status(&leader, s));
        }
        let cluster = self.cluster().ok_or(ManagerError::NotInitialized)?;
        let role = if !req.token.is_empty() && req.token == cluster.join_tokens.worker {
            Role::Worker
        } else if !req.token.is_empty() && req.token == cluster.join_tokens.manager {
            Role::Manager
        } else {
            tracing::warn!(addr = %req.advertise_addr, "refused a join with a wrong token");
            return Err(ManagerError::BadToken);
        };
        if !shoal_api::object::looks_like_id(&req.node_id) && req.node_id.parse::<u64>().is_err() {
            return Err(ManagerError::MalformedNodeId(req.node_id));
        }
        if cluster.ca.revoked_nodes.contains(&req.node_id) {
            return Err(ManagerError::Forbidden(format!(
                "node {} was removed from the cluster: join with a new identity (an empty data dir)",
                req.node_id
            )));
        }
        let subject = Subject { node_id: req.node_id.clone(), role, cluster_id: cluster.id.clone() };
        let names = if role == Role::Manager { manager_names(&req.advertise_addr) } else { Vec::new() };
        let chain = self.sign(&cluster, &req.csr_pem, &subject, &names)?;
        if role == Role::Worker {
            let exists = self.read(|s| s.get(Kind::Node, &req.node_id).is_some());
            if !exists {
                let node =
                    joined_worker_node(&req.node_id, &req.hostname, &req.advertise_addr, chrono::Utc::now());
                self.propose(Transaction { changes: vec![Change::Create { object: Object::Node(node) }] })
                    .await?;
                tracing::info!(node = %req.node_id, hostname = %req.hostname, "worker joined");
            }
        }
        self.record_certificate(&req.node_id, &chain).await;
        Ok(self.issued(cluster, chain, role))
    }

    /// Renews the certificate of the node `peer` names; the role is the one the
    /// store gives the node now.
    pub async fn renew_certificate(
        &self,
        peer: Option<&Peer>,
        req: pb::RenewRequest,
    ) -> Result<pb::IssueReply, ManagerError> {
        // Any manager can sign (the CA is in the replicated store); noting the new
        // certificate on the node goes through the leader like every write.
        let subject = self.authorize(peer, Need::AnyNode)?;
        self.renew_for(&subject.node_id, subject.role, &req.csr_pem).await
    }

    /// A renewal for a node already checked.
    async fn renew_for(
        &self,
        node_id: &str,
        cert_role: Role,
        csr_pem: &str,
    ) -> Result<pb::IssueReply, ManagerError> {
        let cluster = self.cluster().ok_or(ManagerError::NotInitialized)?;
        let stored = self.read(|s| match s.get(Kind::Node, node_id) {
            Some(Object::Node(n)) => Some(n.clone()),
            _ => None,
        });
        let role = stored.as_ref().map_or(cert_role, |n| role_of(n.spec.role));
        let names = match (&stored, role) {
            (Some(n), Role::Manager) => {
                n.manager_status.as_ref().map(|m| manager_names(&m.addr)).unwrap_or_default()
            }
            (None, Role::Manager) => manager_names(""),
            _ => Vec::new(),
        };
        let subject = Subject { node_id: node_id.to_owned(), role, cluster_id: cluster.id.clone() };
        let chain = self.sign(&cluster, csr_pem, &subject, &names)?;
        self.record_certificate(node_id, &chain).await;
        tracing::info!(node = %node_id, role = %role, "node certificate renewed");
        Ok(self.issued(cluster, chain, role))
    }

    /// The answer to a node that was issued `chain`: with the roots to trust and the
    /// managers to reach.
    fn issued(&self, cluster: Cluster, chain: String, role: Role) -> pb::IssueReply {
        pb::IssueReply {
            chain_pem: chain,
            roots_pem: cluster.ca.roots_pem,
            role: role.to_string(),
            managers: self.managers().into_values().collect(),
            cluster_id: cluster.id,
        }
    }

    /// A certificate for `subject` from the signing CA, with the cross-signed new
    /// root after it during a rotation.
    fn sign(
        &self,
        cluster: &Cluster,
        csr_pem: &str,
        subject: &Subject,
        names: &[String],
    ) -> Result<String, ManagerError> {
        let expiry = cluster.spec.ca_config.node_cert_expiry;
        let leaf = signer(&cluster.ca).issue(csr_pem, subject, expiry, names)?;
        Ok(format!("{leaf}{}", cluster.ca.cross_signed))
    }

    /// Notes on the node which certificate it now holds (for `node inspect` and to
    /// know when a CA rotation is done). Best effort: a node not stored yet (a
    /// manager before it registers) is skipped.
    async fn record_certificate(&self, node_id: &str, chain: &str) {
        let Ok(leaf) = shoal_pki::ca::first_cert(chain, "the node certificate") else { return };
        let Ok(info) = CertInfo::parse(&leaf) else { return };
        let record = record_of(&info);
        for _ in 0..5 {
            let Some(mut node) = self.read(|s| match s.get(Kind::Node, node_id) {
                Some(Object::Node(n)) => Some(n.clone()),
                _ => None,
            }) else {
                return;
            };
            let version = node.meta.version;
            node.certificate = Some(record.clone());
            node.meta.updated_at = chrono::Utc::now();
            let change = Change::Update { object: Object::Node(node), expected_version: version };
            match self.propose(Transaction { changes: vec![change] }).await {
                Err(ManagerError::Store(StoreError::Conflict { .. })) => continue,
                Err(e) => {
                    tracing::warn!(node = %node_id, error = %shoal_api::report::chain(&e), "could not note the node's certificate");
                    return;
                }
                Ok(_) => return,
            }
        }
    }

    /// Removes the node `id` and revokes its certificate, in one write.
    pub async fn remove_node(&self, id: &str) -> Result<(), ManagerError> {
        for _ in 0..5 {
            let mut cluster = self.cluster().ok_or(ManagerError::NotInitialized)?;
            let version = cluster.meta.version;
            cluster.ca.revoked_nodes.insert(id.to_owned());
            cluster.meta.updated_at = chrono::Utc::now();
            let changes = vec![
                Change::Delete { kind: Kind::Node, id: id.to_owned(), expected_version: None },
                Change::Update { object: Object::Cluster(cluster), expected_version: version },
            ];
            match self.propose(Transaction { changes }).await {
                Err(ManagerError::Store(StoreError::Conflict { .. })) => continue,
                other => return other.map(drop),
            }
        }
        Err(ManagerError::Refused("the cluster object kept changing; retry".into()))
    }

    /// Replaces the cluster's CA with `given` or a new one, without downtime: both
    /// roots are trusted, new certificates carry the new root cross-signed by the
    /// old, nodes renew as they hear of it, and once every node that is up holds a
    /// new certificate the old root is dropped ([`Manager::finish_ca_rotation`]).
    /// The join tokens keep their secrets and pin the new root.
    pub async fn rotate_ca(&self, given: Option<CaKeys>) -> Result<Cluster, ManagerError> {
        let cluster = self.cluster().ok_or(ManagerError::NotInitialized)?;
        let new = match given {
            Some(ca) => ca,
            None => CaKeys::generate(&cluster.id)?,
        };
        let old = signer(&cluster.ca);
        let cross = old.cross_sign(&new)?;
        let digest = new.digest()?;
        let repin = |t: &str| JoinToken::parse(t).map(|t| t.repinned(&digest).to_string());
        let tokens = JoinTokens {
            worker: repin(&cluster.join_tokens.worker)?,
            manager: repin(&cluster.join_tokens.manager)?,
        };
        let updated = self
            .update_cluster(|c| {
                c.ca.roots_pem = format!("{}{}", old.cert_pem, new.cert_pem);
                c.ca.signer_cert = new.cert_pem.clone();
                c.ca.signer_key = new.key_pem.clone();
                c.ca.cross_signed = cross.clone();
                c.join_tokens = tokens.clone();
            })
            .await?;
        tracing::info!("CA rotation started: nodes renew from the new CA");
        Ok(updated)
    }

    /// Ends a CA rotation once every node that is up holds a certificate from the
    /// new CA: the old root is no longer trusted. Returns whether it ended one.
    pub async fn finish_ca_rotation(&self) -> Result<bool, ManagerError> {
        let Some(cluster) = self.cluster() else { return Ok(false) };
        let nodes: Vec<Node> = self.read(|s| {
            s.list(Kind::Node)
                .filter_map(|o| match o {
                    Object::Node(n) => Some(n.clone()),
                    _ => None,
                })
                .collect()
        });
        if !rotation_done(&cluster.ca, &nodes) {
            return Ok(false);
        }
        self.update_cluster(|c| {
            c.ca.roots_pem = c.ca.signer_cert.clone();
            c.ca.cross_signed.clear();
        })
        .await?;
        tracing::info!("CA rotation done: only the new root is trusted");
        Ok(true)
    }

    /// While this manager leads, ends CA rotations when they are done.
    pub async fn watch_ca_rotation(self: std::sync::Arc<Self>) {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if self.is_leader()
                && self.cluster().is_some_and(|c| !c.ca.cross_signed.is_empty())
                && let Err(e) = self.finish_ca_rotation().await
            {
                tracing::warn!(error = %shoal_api::report::chain(&e), "could not end the CA rotation");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(node: &str, role: Role, cluster: &str) -> CertInfo {
        CertInfo {
            subject: Subject { node_id: node.into(), role, cluster_id: cluster.into() },
            not_before: 0,
            not_after: 1,
            issuer: String::new(),
            serial: String::new(),
        }
    }

    fn cluster() -> Cluster {
        let mut c = crate::testing::cluster("c1");
        c.ca.revoked_nodes.insert("gone".into());
        c
    }

    fn node(id: &str, role: NodeRole) -> Node {
        let mut n = joined_worker_node(id, "h", "127.0.0.1:1", chrono::Utc::now());
        n.spec.role = role;
        n
    }

    #[test]
    fn workers_cannot_call_what_only_managers_may() {
        let c = cluster();
        let w = info("w1", Role::Worker, "c1");
        let e = check(Some(&w), Some(&c), None, &Need::Manager).unwrap_err();
        assert!(e.contains("worker certificate"), "{e}");
        assert!(check(Some(&info("m1", Role::Manager, "c1")), Some(&c), None, &Need::Manager).is_ok());
    }

    #[test]
    fn a_node_acts_only_for_itself() {
        let c = cluster();
        let w = info("w1", Role::Worker, "c1");
        assert!(check(Some(&w), Some(&c), None, &Need::Node("w1".into())).is_ok());
        let e = check(Some(&w), Some(&c), None, &Need::Node("w2".into())).unwrap_err();
        assert!(e.contains("may not act for node w2"), "{e}");
    }

    #[test]
    fn removed_and_demoted_nodes_lose_their_rights_at_once() {
        let c = cluster();
        let e = check(Some(&info("gone", Role::Worker, "c1")), Some(&c), None, &Need::AnyNode).unwrap_err();
        assert!(e.contains("revoked"), "{e}");
        let m = info("m2", Role::Manager, "c1");
        let demoted = node("m2", NodeRole::Worker);
        let e = check(Some(&m), Some(&c), Some(&demoted), &Need::Manager).unwrap_err();
        assert!(e.contains("demoted"), "{e}");
        assert!(check(Some(&m), Some(&c), Some(&node("m2", NodeRole::Manager)), &Need::Manager).is_ok());
    }

    #[test]
    fn no_certificate_or_another_cluster_is_refused() {
        let c = cluster();
        assert!(check(None, Some(&c), None, &Need::AnyNode).unwrap_err().contains("join the cluster first"));
        let e = check(Some(&info("w1", Role::Worker, "c2")), Some(&c), None, &Need::AnyNode).unwrap_err();
        assert!(e.contains("cluster c2"), "{e}");
    }

    #[test]
    fn a_rotation_ends_when_every_node_up_holds_a_new_certificate() {
        let old = CaKeys::generate("c1").unwrap();
        let new = CaKeys::generate("c1").unwrap();
        let ca = ClusterCa {
            roots_pem: format!("{}{}", old.cert_pem, new.cert_pem),
            signer_cert: new.cert_pem.clone(),
            signer_key: new.key_pem.clone(),
            cross_signed: old.cross_sign(&new).unwrap(),
            ..ClusterCa::default()
        };
        let issuer = |ca: &CaKeys| shoal_pki::subject::subject_text(&ca.cert_der().unwrap()).unwrap();
        let with = |id: &str, from: &CaKeys, state: NodeState| {
            let mut n = node(id, NodeRole::Worker);
            n.status.state = state;
            n.certificate = Some(shoal_api::node::NodeCertificate {
                serial: "1".into(),
                issuer: issuer(from),
                role: NodeRole::Worker,
                not_after: chrono::Utc::now(),
            });
            n
        };
        let renewed = with("a", &new, NodeState::Ready);
        let behind = with("b", &old, NodeState::Ready);
        assert!(!rotation_done(&ca, &[renewed.clone(), behind]));
        assert!(
            rotation_done(&ca, &[renewed.clone(), with("c", &old, NodeState::Down)]),
            "down nodes are not waited for"
        );
        let idle = ClusterCa { cross_signed: String::new(), ..ca };
        assert!(!rotation_done(&idle, &[renewed]), "no rotation, nothing to end");
    }
}
