//! Leader-only controllers that turn declared services into tasks on nodes. Each is
//! a pure function from the store (and the clock) to the changes to propose:
//!
//! - [`replicated`]: slots 1..=N of replicated services and replicated jobs;
//! - [`global`]: one task per eligible node for global services and global jobs;
//! - [`restart`]: whether and when a stopped task is replaced (its policy, counted
//!   from the task history in the store, so a new leader honours it);
//! - [`update`]: rolling updates and rollbacks, a batch at a time;
//! - [`scheduler`]: pending tasks to nodes (filters, then spread);
//! - [`reaper`]: removed tasks deleted, history kept to the cluster's limit.
//!
//! [`runner`] runs them while this manager leads and proposes what they decide.

pub mod global;
pub mod reaper;
pub mod replicated;
pub mod restart;
pub mod runner;
pub mod scheduler;
pub mod update;

use chrono::{DateTime, Utc};
use shoal_api::node::{Availability, NodeState};
use shoal_api::{Meta, Node, Service, Task, TaskState, TaskStatus};

use crate::store::{Change, Kind, Object, Store};

/// Every service in the store.
pub(crate) fn services(store: &Store) -> impl Iterator<Item = &Service> {
    store.list(Kind::Service).filter_map(|o| match o {
        Object::Service(s) => Some(s),
        _ => None,
    })
}

/// Every node in the store.
pub(crate) fn nodes(store: &Store) -> impl Iterator<Item = &Node> {
    store.list(Kind::Node).filter_map(|o| match o {
        Object::Node(n) => Some(n),
        _ => None,
    })
}

/// The tasks of a service.
pub(crate) fn tasks_of<'a>(store: &'a Store, service_id: &str) -> impl Iterator<Item = &'a Task> {
    store.tasks_of_service(service_id).filter_map(|o| match o {
        Object::Task(t) => Some(t),
        _ => None,
    })
}

/// A task the orchestrator still wants (not told to shut down or go away).
pub(crate) fn is_live(t: &Task) -> bool {
    t.desired_state <= TaskState::Running
        || (t.desired_state == TaskState::Complete && t.job_iteration.is_some())
}

/// Whether a node can be given new tasks: ready and active.
pub(crate) fn takes_tasks(n: &Node) -> bool {
    n.status.state == NodeState::Ready && n.spec.availability == Availability::Active
}

/// Whether the tasks on a node must move away: the node is gone, down or drained.
pub(crate) fn must_leave(store: &Store, node_id: &str) -> bool {
    match store.get(Kind::Node, node_id) {
        Some(Object::Node(n)) => {
            n.status.state == NodeState::Down || n.spec.availability == Availability::Drain
        }
        _ => true,
    }
}

/// A new task of `service`: pending, for the scheduler (or preassigned to `node`).
pub(crate) fn new_task(service: &Service, slot: Option<u64>, node: Option<&str>, now: DateTime<Utc>) -> Task {
    let job = service.spec.mode.is_job();
    Task {
        id: shoal_api::object::new_id(),
        meta: Meta::new(now),
        service_id: service.id.clone(),
        slot,
        node_id: node.map(str::to_owned),
        spec: service.spec.task_template.clone(),
        spec_version: service.meta.version,
        desired_state: if job { TaskState::Complete } else { TaskState::Running },
        status: TaskStatus::new(TaskState::Pending, now, "waiting for a node"),
        networks: Vec::new(),
        job_iteration: job.then_some(service.meta.version),
    }
}

/// The change that creates `task`.
pub(crate) fn create(task: Task) -> Change {
    Change::Create { object: Object::Task(task) }
}

/// The change that sets a task's desired state (compare-and-set on its version).
pub(crate) fn set_desired(task: &Task, state: TaskState, now: DateTime<Utc>) -> Change {
    let mut t = task.clone();
    t.desired_state = state;
    t.meta.updated_at = now;
    Change::Update { object: Object::Task(t), expected_version: task.meta.version }
}

/// The newest of some tasks: by creation time, then by version (a task written
/// later was created no earlier), then by id, so every manager agrees.
pub(crate) fn newest<'a>(tasks: impl Iterator<Item = &'a Task>) -> Option<&'a Task> {
    tasks.max_by(|a, b| {
        (a.meta.created_at, a.meta.version, &a.id).cmp(&(b.meta.created_at, b.meta.version, &b.id))
    })
}

#[cfg(test)]
pub(crate) mod fixtures {
    //! Stores with nodes, services and tasks, for the controllers' tests.

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
        store.apply(index, &Transaction { changes }).expect("the changes apply");
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
}
