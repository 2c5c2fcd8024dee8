//! Questions many rooms ask of the store: its services, nodes and a service's
//! tasks as typed objects, whether a node takes or must give up tasks, and its
//! networks.

use shoal_api::node::{Availability, NodeState};
use shoal_api::service::{EndpointMode, PublishMode};
use shoal_api::{Network, Node, Service, Task};

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

/// Whether a service publishes a port through the routing mesh.
pub fn publishes_ingress(service: &Service) -> bool {
    service.spec.endpoint_spec.mode == EndpointMode::Vip
        && service.spec.endpoint_spec.ports.iter().any(|p| p.publish_mode == PublishMode::Ingress)
}

/// The ingress network, if there is one.
pub fn ingress_network(store: &Store) -> Option<&Network> {
    store.list(Kind::Network).find_map(|o| match o {
        Object::Network(n) if n.spec.ingress => Some(n),
        _ => None,
    })
}

/// A network by id or name.
pub fn network<'a>(store: &'a Store, target: &str) -> Option<&'a Network> {
    match store.get(Kind::Network, target).or_else(|| store.by_name(Kind::Network, target)) {
        Some(Object::Network(n)) => Some(n),
        _ => None,
    }
}
