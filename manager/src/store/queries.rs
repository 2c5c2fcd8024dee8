//! Questions many rooms ask of the store: its services, nodes and a service's
//! tasks as typed objects, and whether a node takes or must give up tasks.

use shoal_api::node::{Availability, NodeState};
use shoal_api::{Node, Service, Task};

use super::{Kind, Object, Store};

/// Every service in the store.
pub fn services(store: &Store) -> impl Iterator<Item = &Service> {
    store.list(Kind::Service).filter_map(|o| match o {
        Object::Service(s) => Some(s),
        _ => None,
    })
}

/// Every node in the store.
pub fn nodes(store: &Store) -> impl Iterator<Item = &Node> {
    store.list(Kind::Node).filter_map(|o| match o {
        Object::Node(n) => Some(n),
        _ => None,
    })
}

/// The tasks of a service.
pub fn tasks_of<'a>(store: &'a Store, service_id: &str) -> impl Iterator<Item = &'a Task> {
    store.tasks_of_service(service_id).filter_map(|o| match o {
        Object::Task(t) => Some(t),
        _ => None,
    })
}

/// Whether a node can be given new tasks: ready and active.
pub fn takes_tasks(n: &Node) -> bool {
    n.status.state == NodeState::Ready && n.spec.availability == Availability::Active
}

/// Whether the tasks on a node must move away: the node is gone, down or drained.
pub fn must_leave(store: &Store, node_id: &str) -> bool {
    match store.get(Kind::Node, node_id) {
        Some(Object::Node(n)) => {
            n.status.state == NodeState::Down || n.spec.availability == Availability::Drain
        }
        _ => true,
    }
}
