//! Test fixtures: stores with nodes, services and tasks, for the controllers'
//! and the dispatcher's tests.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use shoal_api::node::*;
use shoal_api::{Meta, Node, Service, ServiceSpec, Task};

use crate::store::{Change, Object, Store, Transaction};

pub(crate) fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000, 0).expect("valid time")
}

pub(crate) fn node(id: &str, labels: &[(&str, &str)]) -> Node {
    Node {
        id: id.into(),
        meta: Meta::new(t0()),
        spec: NodeSpec {
            labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            role: NodeRole::Worker,
            availability: Availability::Active,
        },
        description: NodeDescription {
            hostname: id.into(),
            platform: Platform { os: "linux".into(), arch: "x86_64".into() },
            resources: NodeResources { nano_cpus: 2_000_000_000, memory_bytes: 1 << 30 },
            engine_labels: BTreeMap::new(),
            version: "test".into(),
        },
        status: NodeStatus {
            state: NodeState::Ready,
            message: String::new(),
            addr: "10.0.0.1".parse().expect("ip"),
        },
        manager_status: None,
        ingress: None,
        attachments: Vec::new(),
        certificate: None,
    }
}

pub(crate) fn service(name: &str, spec: impl FnOnce(&mut ServiceSpec)) -> Service {
    let mut s = ServiceSpec::new(name, "busybox");
    spec(&mut s);
    Service {
        id: format!("svc-{name}"),
        meta: Meta::new(t0()),
        spec: s,
        previous_spec: None,
        update_status: None,
        endpoint: Default::default(),
    }
}

/// Applies changes to the store as Raft would.
pub(crate) fn apply(store: &mut Store, changes: Vec<Change>) {
    if changes.is_empty() {
        return;
    }
    let index = store.last_index() + 1;
    store.apply(index, Transaction { changes }).expect("the changes apply");
}

pub(crate) fn store_with(nodes: Vec<Node>, services: Vec<Service>) -> Store {
    let mut store = Store::new();
    let changes = nodes
        .into_iter()
        .map(|n| Change::Create { object: Object::Node(n) })
        .chain(services.into_iter().map(|s| Change::Create { object: Object::Service(s) }))
        .collect();
    apply(&mut store, changes);
    store
}

pub(crate) fn tasks(store: &Store) -> Vec<Task> {
    store
        .list(crate::store::Kind::Task)
        .filter_map(|o| match o {
            Object::Task(t) => Some(t.clone()),
            _ => None,
        })
        .collect()
}

/// The cluster object `id` with every default: no tokens, no CA, no keys.
pub(crate) fn cluster(id: &str) -> shoal_api::Cluster {
    shoal_api::Cluster {
        id: id.into(),
        meta: shoal_api::Meta::new(t0()),
        spec: Default::default(),
        join_tokens: shoal_api::cluster::JoinTokens { worker: String::new(), manager: String::new() },
        api_token: String::new(),
        read_only_api_token: String::new(),
        ca: Default::default(),
        data_path_keys: Default::default(),
        unlock_key: String::new(),
    }
}
