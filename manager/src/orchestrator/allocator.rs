//! Overlay addresses, given out by the leader in the same Raft transactions as the
//! objects that hold them: a VIP for each service on each of its networks (and on
//! the ingress network when it publishes a port through the routing mesh), an address
//! for each new task on each of its networks, and one for each node on the ingress
//! network. The ingress network itself is made here when a service first needs it,
//! as Swarm's `ingress`.
//!
//! Addresses are the lowest free host addresses of the subnet (never the network,
//! broadcast or gateway address). The store refuses an address that someone else
//! holds ([`crate::store::StoreError::AddressTaken`]), so two writers that raced,
//! or a new leader working from an old read, can never hand one out twice; and a task
//! that stopped for good holds none, so its address is free again.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use ipnet::Ipv4Net;
use shoal_api::cluster::AddressPool;
use shoal_api::network::INGRESS_NAME;
use shoal_api::node::NodeAttachment;
use shoal_api::service::{EndpointMode, VirtualIp};
use shoal_api::task::NetworkAttachment;
use shoal_api::{Network, NetworkSpec, Service, Task, TaskState};

use super::is_live;
use crate::plan::addresses::Round;
use crate::store::queries::{ingress_network, network, nodes, publishes_ingress, services};
use crate::store::{Change, Kind, Object, Store};

/// Whether a service's tasks need addresses before they can be scheduled.
pub fn needs_addresses(service: &Service) -> bool {
    !service.spec.task_template.networks.is_empty() || publishes_ingress(service)
}

/// The networks (ids, in order, no repeats) a service's tasks and VIPs live on, with
/// the aliases asked for on each; the ingress network last when it publishes a port
/// through the routing mesh. `None` if a network it names does not exist.
fn service_networks<'a>(
    store: &'a Store,
    service: &Service,
    ingress: Option<&'a Network>,
) -> Option<Vec<(&'a Network, Vec<String>)>> {
    let mut out: Vec<(&Network, Vec<String>)> = Vec::new();
    for n in &service.spec.task_template.networks {
        let net = network(store, &n.target)?;
        if !out.iter().any(|(o, _)| o.id == net.id) {
            out.push((net, n.aliases.clone()));
        }
    }
    if publishes_ingress(service) {
        let net = ingress?;
        if !out.iter().any(|(o, _)| o.id == net.id) {
            out.push((net, Vec::new()));
        }
    }
    Some(out)
}

/// The changes that give out what is missing: the ingress network, VIPs, node
/// ingress addresses, and addresses of new tasks (which then become PENDING).
pub fn allocate(store: &Store, pool: &AddressPool, now: DateTime<Utc>) -> Vec<Change> {
    let mut changes = Vec::new();
    let mut round = Round::new(store);
    let made;
    let ingress = match ingress_network(store) {
        Some(n) => Some(n),
        None if services(store).any(publishes_ingress) => {
            let mut spec = NetworkSpec::new(INGRESS_NAME);
            spec.ingress = true;
            match crate::plan::networks::create(store, spec, pool, &[], now) {
                Ok(n) => {
                    made = n;
                    changes.push(Change::Create { object: Object::Network(made.clone()) });
                    Some(&made)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot make the ingress network");
                    None
                }
            }
        }
        None => None,
    };

    for svc in services(store) {
        let Some(nets) = service_networks(store, svc, ingress) else { continue };
        let want: Vec<&Network> = match svc.spec.endpoint_spec.mode {
            EndpointMode::Vip => nets.iter().map(|(n, _)| *n).collect(),
            EndpointMode::Dnsrr => Vec::new(),
        };
        let mut vips: Vec<VirtualIp> = Vec::with_capacity(want.len());
        for net in &want {
            match svc.endpoint.virtual_ips.iter().find(|v| v.network_id == net.id) {
                Some(v) => vips.push(v.clone()),
                None => match round.take(net) {
                    Some(addr) => vips.push(VirtualIp { network_id: net.id.clone(), addr }),
                    None => {
                        tracing::warn!(service = %svc.spec.name, network = %net.spec.name, "no free address for a VIP")
                    }
                },
            }
        }
        if vips != svc.endpoint.virtual_ips {
            let mut s = svc.clone();
            s.endpoint.virtual_ips = vips;
            changes.push(Change::Update { object: Object::Service(s), expected_version: svc.meta.version });
        }
        if !needs_addresses(svc) {
            continue;
        }
        for o in store.tasks_of_service(&svc.id) {
            let Object::Task(t) = o else { continue };
            if t.status.state != TaskState::New || !is_live(t) {
                continue;
            }
            if let Some(task) = attach(&mut round, t, &nets, now) {
                changes.push(Change::Update { object: Object::Task(task), expected_version: t.meta.version });
            }
        }
    }

    for node in nodes(store) {
        let want = ingress.map(|n| n.id.as_str());
        let has = node.ingress.as_ref().map(|a| a.network_id.as_str());
        // Standalone containers' attachments to networks that are gone go too.
        let kept: Vec<_> = node
            .attachments
            .iter()
            .filter(|a| store.get(Kind::Network, &a.network_id).is_some())
            .cloned()
            .collect();
        if want == has && kept.len() == node.attachments.len() {
            continue;
        }
        let mut n = node.clone();
        n.attachments = kept;
        if want != has {
            n.ingress = match ingress {
                Some(net) => round.take(net).map(|addr| NodeAttachment { network_id: net.id.clone(), addr }),
                None => None,
            };
        }
        if n != *node {
            changes.push(Change::Update { object: Object::Node(n), expected_version: node.meta.version });
        }
    }
    changes
}

/// `task` with an address on each of `nets` and PENDING, or `None` if a subnet is full
/// (the task stays NEW, and says so, until addresses free up).
fn attach(
    round: &mut Round<'_>,
    task: &Task,
    nets: &[(&Network, Vec<String>)],
    now: DateTime<Utc>,
) -> Option<Task> {
    let mut t = task.clone();
    t.networks.clear();
    for (net, aliases) in nets {
        match round.take(net) {
            Some(addr) => t.networks.push(NetworkAttachment {
                network_id: net.id.clone(),
                addresses: vec![addr],
                aliases: aliases.clone(),
            }),
            None => {
                let message = format!("no free address on network {} ({})", net.spec.name, net.subnet);
                if task.status.message == message {
                    return None;
                }
                t.networks.clear();
                t.status.message = message;
                t.meta.updated_at = now;
                return Some(t);
            }
        }
    }
    t.status = shoal_api::TaskStatus::new(TaskState::Pending, now, "waiting for a node");
    t.meta.updated_at = now;
    Some(t)
}

/// Tasks attached to each network, by network id, then node id (`""` before
/// scheduling): what `network inspect` shows.
pub fn attached(store: &Store, network_id: &str) -> BTreeMap<String, Vec<(String, Ipv4Net)>> {
    let mut out: BTreeMap<String, Vec<(String, Ipv4Net)>> = BTreeMap::new();
    for o in store.list(Kind::Task) {
        let Object::Task(t) = o else { continue };
        if t.status.state.is_terminal() {
            continue;
        }
        for n in t.networks.iter().filter(|n| n.network_id == network_id) {
            for a in &n.addresses {
                out.entry(t.node_id.clone().unwrap_or_default()).or_default().push((t.id.clone(), *a));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orchestrator::new_task;
    use crate::store::Transaction;
    use crate::testing::{apply, tasks};
    use shoal_api::ServiceSpec;
    use shoal_api::task_spec::NetworkAttachmentConfig;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).expect("valid time")
    }

    fn service_on(store: &mut Store, name: &str, nets: &[&str], publish: bool) -> Service {
        let mut spec = ServiceSpec::new(name, "busybox");
        for n in nets {
            spec.task_template
                .networks
                .push(NetworkAttachmentConfig { target: (*n).into(), aliases: vec![] });
        }
        if publish {
            spec.endpoint_spec.ports.push(shoal_api::service::PortConfig::ingress(
                80,
                None,
                Default::default(),
            ));
        }
        let svc = crate::plan::services::create(store, spec, now()).expect("service");
        apply(store, vec![Change::Create { object: Object::Service(svc.clone()) }]);
        svc
    }

    fn net(store: &mut Store, name: &str) -> Network {
        let n =
            crate::plan::networks::create(store, NetworkSpec::new(name), &AddressPool::default(), &[], now())
                .expect("network");
        apply(store, vec![Change::Create { object: Object::Network(n.clone()) }]);
        n
    }

    #[test]
    fn services_get_vips_and_new_tasks_addresses_then_pend() {
        let mut store = Store::new();
        let front = net(&mut store, "front");
        let svc = service_on(&mut store, "web", &["front"], false);
        let mut t = new_task(&svc, Some(1), None, now());
        assert_eq!(t.status.state, TaskState::New, "a task with networks waits for addresses");
        let t2 = new_task(&svc, Some(2), None, now());
        t.networks.clear();
        apply(&mut store, vec![super::super::create(t), super::super::create(t2)]);
        let changes = allocate(&store, &AddressPool::default(), now());
        apply(&mut store, changes);
        let Some(Object::Service(s)) = store.get(Kind::Service, &svc.id) else { panic!("service") };
        assert_eq!(s.endpoint.virtual_ips.len(), 1);
        assert_eq!(s.endpoint.virtual_ips[0].addr.to_string(), "10.0.0.2/24", "gateway .1 skipped");
        let mut addrs: Vec<String> =
            tasks(&store).iter().map(|t| t.networks[0].addresses[0].to_string()).collect();
        addrs.sort();
        assert_eq!(addrs, ["10.0.0.3/24", "10.0.0.4/24"]);
        assert!(tasks(&store).iter().all(|t| t.status.state == TaskState::Pending));
        assert!(tasks(&store).iter().all(|t| t.networks[0].network_id == front.id));
        assert!(allocate(&store, &AddressPool::default(), now()).is_empty(), "nothing more to do");
    }

    #[test]
    fn publishing_makes_the_ingress_network_and_gives_every_node_an_address() {
        let mut store = Store::new();
        apply(&mut store, vec![Change::Create { object: Object::Node(crate::testing::node("n1", &[])) }]);
        let svc = service_on(&mut store, "web", &[], true);
        let changes = allocate(&store, &AddressPool::default(), now());
        apply(&mut store, changes);
        let ingress = ingress_network(&store).expect("made").clone();
        assert_eq!(
            (ingress.spec.name.as_str(), ingress.subnet.to_string()),
            ("ingress", "10.0.0.0/24".into())
        );
        let changes = allocate(&store, &AddressPool::default(), now());
        apply(&mut store, changes);
        let Some(Object::Service(s)) = store.get(Kind::Service, &svc.id) else { panic!("service") };
        assert_eq!(s.endpoint.virtual_ips[0].network_id, ingress.id);
        let Some(Object::Node(n)) = store.get(Kind::Node, "n1") else { panic!("node") };
        assert!(n.ingress.is_some(), "{n:?}");
        assert_ne!(n.ingress.as_ref().map(|a| a.addr), Some(s.endpoint.virtual_ips[0].addr));
    }

    #[test]
    fn a_stopped_task_frees_its_address_and_no_address_is_held_twice() {
        let mut store = Store::new();
        net(&mut store, "front");
        let svc = service_on(&mut store, "web", &["front"], false);
        apply(&mut store, vec![super::super::create(new_task(&svc, Some(1), None, now()))]);
        let changes = allocate(&store, &AddressPool::default(), now());
        apply(&mut store, changes);
        let t = tasks(&store).remove(0);
        let addr = t.networks[0].addresses[0];
        // Someone else writing the same address is refused by the store.
        let mut other = new_task(&svc, Some(2), None, now());
        other.networks = t.networks.clone();
        other.status.state = TaskState::Pending;
        let err = store
            .apply(store.last_index() + 1, Transaction { changes: vec![super::super::create(other)] })
            .expect_err("taken");
        assert!(err.to_string().contains(&addr.addr().to_string()), "{err}");
        // Once the task fails, the address is free for the next task.
        let mut failed = t.clone();
        failed.status.state = TaskState::Failed;
        apply(
            &mut store,
            vec![Change::Update { object: Object::Task(failed), expected_version: t.meta.version }],
        );
        assert_eq!(store.address_holder(&t.networks[0].network_id, addr.addr()), None);
        apply(&mut store, vec![super::super::create(new_task(&svc, Some(1), None, now()))]);
        let changes = allocate(&store, &AddressPool::default(), now());
        apply(&mut store, changes);
        let fresh = tasks(&store).into_iter().find(|x| x.status.state == TaskState::Pending).expect("fresh");
        assert_eq!(fresh.networks[0].addresses[0], addr);
    }

    #[test]
    fn a_full_subnet_leaves_the_task_new_with_a_reason() {
        let mut store = Store::new();
        let mut spec = NetworkSpec::new("tiny");
        spec.subnet = Some("192.168.9.0/29".parse().expect("net"));
        let n =
            crate::plan::networks::create(&store, spec, &AddressPool::default(), &[], now()).expect("net");
        apply(&mut store, vec![Change::Create { object: Object::Network(n) }]);
        let svc = service_on(&mut store, "web", &["tiny"], false);
        // /29: 6 hosts, minus the gateway and the VIP leaves 4 for tasks.
        let new: Vec<Change> =
            (1..=5).map(|i| super::super::create(new_task(&svc, Some(i), None, now()))).collect();
        apply(&mut store, new);
        let changes = allocate(&store, &AddressPool::default(), now());
        apply(&mut store, changes);
        let all = tasks(&store);
        assert_eq!(all.iter().filter(|t| t.status.state == TaskState::Pending).count(), 4);
        let stuck = all.iter().find(|t| t.status.state == TaskState::New).expect("one left");
        assert!(stuck.status.message.contains("no free address on network tiny"), "{}", stuck.status.message);
    }

    #[test]
    fn a_network_in_use_is_not_removed() {
        let mut store = Store::new();
        let front = net(&mut store, "front");
        let svc = service_on(&mut store, "web", &["front"], false);
        apply(&mut store, vec![super::super::create(new_task(&svc, Some(1), None, now()))]);
        let changes = allocate(&store, &AddressPool::default(), now());
        apply(&mut store, changes);
        // Even with its service gone (the task still runs until it is stopped).
        apply(
            &mut store,
            vec![Change::Delete { kind: Kind::Service, id: svc.id.clone(), expected_version: None }],
        );
        let delete = Change::Delete { kind: Kind::Network, id: front.id.clone(), expected_version: None };
        let err = store
            .apply(store.last_index() + 1, Transaction { changes: vec![delete.clone()] })
            .expect_err("in use");
        assert!(err.to_string().contains("network front is in use by task"), "{err}");
        let t = tasks(&store).remove(0);
        let mut done = t.clone();
        done.status.state = TaskState::Shutdown;
        apply(
            &mut store,
            vec![Change::Update { object: Object::Task(done), expected_version: t.meta.version }],
        );
        apply(&mut store, vec![delete]);
    }
}
