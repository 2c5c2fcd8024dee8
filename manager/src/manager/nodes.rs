//! Node objects for the cluster's members: a manager's own node (stored at its
//! start, refreshed after a restart) and a worker's node when it joins. Building
//! them is pure ([`manager_node`], [`joined_worker_node`]); registering one is a
//! proposal retried on conflict.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use shoal_api::node::{
    ManagerStatus, NodeDescription, NodeResources, NodeRole, NodeSpec, NodeState, NodeStatus, Platform,
    Reachability,
};
use shoal_api::{Meta, Node};

use super::Manager;
use super::error::ManagerError;
use crate::store::{Change, Kind, Object, StoreError, Transaction};

/// Who a manager is, for its node object.
#[derive(Debug, Clone)]
pub(super) struct ManagerIdentity<'a> {
    /// The node id (the daemon's, kept in its data dir).
    pub node_id: &'a str,
    /// The Raft id.
    pub raft_id: u64,
    /// The address other managers reach it at.
    pub advertise: &'a str,
    /// The certificate it holds, noted on its node.
    pub certificate: Option<shoal_api::node::NodeCertificate>,
}

/// The change that stores a manager's node: `existing` refreshed (a restart), or a
/// new node. Either way it is a ready manager with `description` at `addr`; its
/// spec's labels and availability, set by users, are kept.
pub(super) fn manager_node(
    existing: Option<&Node>,
    me: &ManagerIdentity<'_>,
    description: &NodeDescription,
    addr: IpAddr,
    now: DateTime<Utc>,
) -> (Change, Node) {
    let status = NodeStatus { state: NodeState::Ready, message: String::new(), addr };
    let manager_status = Some(ManagerStatus {
        raft_id: me.raft_id,
        addr: me.advertise.to_owned(),
        leader: false,
        reachability: Reachability::Reachable,
    });
    match existing {
        Some(n) => {
            let mut n = n.clone();
            let version = n.meta.version;
            n.description = description.clone();
            n.status = status;
            n.manager_status = manager_status;
            n.spec.role = NodeRole::Manager;
            if me.certificate.is_some() {
                n.certificate = me.certificate.clone();
            }
            n.meta.updated_at = now;
            (Change::Update { object: Object::Node(n.clone()), expected_version: version }, n)
        }
        None => {
            let n = Node {
                id: me.node_id.to_owned(),
                meta: Meta::new(now),
                spec: NodeSpec { role: NodeRole::Manager, ..NodeSpec::default() },
                description: description.clone(),
                status,
                manager_status,
                ingress: None,
                attachments: Vec::new(),
                certificate: me.certificate.clone(),
            };
            (Change::Create { object: Object::Node(n.clone()) }, n)
        }
    }
}

/// The address a joining worker gave (an IP, or `ip:port`), or unspecified.
fn worker_addr(advertise: &str) -> IpAddr {
    advertise
        .parse::<IpAddr>()
        .or_else(|_| advertise.parse::<SocketAddr>().map(|a| a.ip()))
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

/// A worker's node as it joins: role worker, state unknown until its first session
/// What the store notes of a node's certificate.
pub(super) fn record_of(info: &shoal_pki::CertInfo) -> shoal_api::node::NodeCertificate {
    shoal_api::node::NodeCertificate {
        serial: info.serial.clone(),
        issuer: info.issuer.clone(),
        role: match info.subject.role {
            shoal_pki::Role::Manager => NodeRole::Manager,
            shoal_pki::Role::Worker => NodeRole::Worker,
        },
        not_after: chrono::DateTime::from_timestamp(info.not_after, 0).unwrap_or_default(),
    }
}

/// tells what it runs on.
pub(super) fn joined_worker_node(node_id: &str, hostname: &str, advertise: &str, now: DateTime<Utc>) -> Node {
    Node {
        id: node_id.to_owned(),
        meta: Meta::new(now),
        spec: NodeSpec { role: NodeRole::Worker, ..NodeSpec::default() },
        description: NodeDescription {
            hostname: hostname.to_owned(),
            platform: Platform { os: String::new(), arch: String::new() },
            resources: NodeResources::default(),
            engine_labels: BTreeMap::new(),
            version: String::new(),
        },
        status: NodeStatus {
            state: NodeState::Unknown,
            message: "joined; waiting for its first session".into(),
            addr: worker_addr(advertise),
        },
        manager_status: None,
        ingress: None,
        attachments: Vec::new(),
        certificate: None,
    }
}

impl Manager {
    /// Stores this manager's node object (or refreshes it after a restart): what it
    /// runs on, its labels, and that it is a ready manager. The node id is the
    /// daemon's, kept in its data dir.
    pub async fn register_node(
        &self,
        node_id: &str,
        description: NodeDescription,
        addr: IpAddr,
    ) -> Result<Node, ManagerError> {
        let certificate = self.creds.info().map(|i| record_of(&i));
        let me = ManagerIdentity { node_id, raft_id: self.id(), advertise: self.addr(), certificate };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let existing = self.read_linearizable(|s| s.get(Kind::Node, node_id).cloned()).await?;
            let existing = match &existing {
                Some(Object::Node(n)) => Some(n),
                _ => None,
            };
            let (change, mut node) = manager_node(existing, &me, &description, addr, Utc::now());
            match self.propose(Transaction { changes: vec![change] }).await {
                Ok(index) => {
                    node.meta.version = index;
                    return Ok(node);
                }
                // Someone else wrote the node meanwhile (a leader marking it down):
                // read it again.
                Err(ManagerError::Store(StoreError::Conflict { .. } | StoreError::Exists { .. }))
                    if Instant::now() < deadline => {}
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use shoal_api::node::Availability;

    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + s, 0).expect("valid time")
    }

    fn description(hostname: &str) -> NodeDescription {
        NodeDescription {
            hostname: hostname.into(),
            platform: Platform { os: "linux".into(), arch: "x86_64".into() },
            resources: NodeResources { nano_cpus: 2_000_000_000, memory_bytes: 1 << 30 },
            engine_labels: BTreeMap::new(),
            version: "test".into(),
        }
    }

    const ME: ManagerIdentity<'static> =
        ManagerIdentity { node_id: "n1", raft_id: 7, advertise: "10.0.0.1:2377", certificate: None };

    #[test]
    fn a_new_manager_node_is_created_ready_with_its_raft_identity() {
        let addr: IpAddr = "10.0.0.1".parse().unwrap();
        let (change, node) = manager_node(None, &ME, &description("m1"), addr, t(0));
        assert!(matches!(&change, Change::Create { object: Object::Node(n) } if *n == node));
        assert_eq!(node.id, "n1");
        assert_eq!(node.spec.role, NodeRole::Manager);
        assert_eq!(node.status.state, NodeState::Ready);
        assert_eq!(node.status.addr, addr);
        let ms = node.manager_status.expect("manager status");
        assert_eq!((ms.raft_id, ms.addr.as_str(), ms.leader), (7, "10.0.0.1:2377", false));
    }

    #[test]
    fn a_restarted_manager_refreshes_its_node_and_keeps_what_users_set() {
        let (_, mut old) =
            manager_node(None, &ME, &description("old-name"), "10.0.0.9".parse().unwrap(), t(0));
        old.meta.version = 41;
        old.spec.labels.insert("zone".into(), "a".into());
        old.spec.availability = Availability::Drain;
        old.spec.role = NodeRole::Worker;
        old.status.state = NodeState::Down;
        let addr: IpAddr = "10.0.0.1".parse().unwrap();
        let (change, node) = manager_node(Some(&old), &ME, &description("m1"), addr, t(60));
        let Change::Update { expected_version, .. } = change else { panic!("an update: {change:?}") };
        assert_eq!(expected_version, 41, "compare-and-set on the version read");
        assert_eq!(node.description.hostname, "m1");
        assert_eq!((node.status.state, node.status.addr), (NodeState::Ready, addr));
        assert_eq!(node.spec.role, NodeRole::Manager);
        assert_eq!(node.spec.labels.get("zone").map(String::as_str), Some("a"), "labels kept");
        assert_eq!(node.spec.availability, Availability::Drain, "availability kept");
        assert_eq!((node.meta.created_at, node.meta.updated_at), (t(0), t(60)));
    }

    #[test]
    fn a_joining_worker_waits_for_its_first_session_at_the_address_it_gave() {
        let cases = [
            ("10.0.0.5", "10.0.0.5"),
            ("10.0.0.5:4000", "10.0.0.5"),
            ("[fd00::5]:4000", "fd00::5"),
            ("not an address", "0.0.0.0"),
            ("", "0.0.0.0"),
        ];
        for (given, want) in cases {
            let node = joined_worker_node("w1", "host-w1", given, t(0));
            assert_eq!(node.status.addr, want.parse::<IpAddr>().unwrap(), "{given:?}");
            assert_eq!(node.status.state, NodeState::Unknown);
            assert_eq!(node.spec.role, NodeRole::Worker);
            assert_eq!(node.description.hostname, "host-w1");
            assert!(node.manager_status.is_none());
        }
    }
}
