//! The part of the network map a node needs: the networks its tasks use (and the
//! ingress network, which every node serves), every task address on them wherever
//! the task runs, the services on them, the nodes (their VTEPs), and standalone
//! containers on attachable networks. Cut from the
//! store on every change and diffed per item by the session, so a worker's copy is
//! the managers' state, not a stream of events it might have missed.

use std::collections::BTreeSet;

use shoal_api::netmap::{ClusterNet, Endpoint, NetInfo, NetItem, NodeRecord, ServiceRecord};
use shoal_api::service::EndpointMode;
use shoal_api::{Network, Node, TaskState};

use crate::store::queries::{ingress_network, network, nodes, publishes_ingress, services};
use crate::store::{Kind, Object, Store};

/// The network map for `node_id`.
pub fn for_node(store: &Store, node_id: &str) -> Vec<NetItem> {
    let mut nets: BTreeSet<&str> = BTreeSet::new();
    for o in store.tasks_on_node(node_id) {
        let Object::Task(t) = o else { continue };
        if t.status.state.is_terminal() {
            continue;
        }
        nets.extend(t.networks.iter().map(|n| n.network_id.as_str()));
    }
    if let Some(Object::Node(me)) = store.get(Kind::Node, node_id) {
        nets.extend(me.attachments.iter().map(|a| a.network_id.as_str()));
    }
    let ingress = ingress_network(store);
    if let Some(n) = ingress {
        nets.insert(n.id.as_str());
    }
    let cluster = store.list(Kind::Cluster).find_map(|o| match o {
        Object::Cluster(c) => Some(c),
        _ => None,
    });
    let port = cluster.map_or(shoal_api::cluster::DATA_PATH_PORT, |c| c.spec.data_path_port);
    // The data-path keys go only to nodes on an encrypted network.
    let sealed = nets
        .iter()
        .any(|id| matches!(store.get(Kind::Network, id), Some(Object::Network(n)) if n.spec.encrypted()));
    let keys = match cluster {
        Some(c) if sealed => c.data_path_keys.clone(),
        _ => Default::default(),
    };
    let mut items = vec![NetItem::Cluster(ClusterNet { data_path_port: port, keys })];
    if nets.is_empty() {
        // Its own record still: a task on no network gets a sandbox with egress, and
        // the node's data plane starts from its address.
        if let Some(Object::Node(n)) = store.get(Kind::Node, node_id) {
            items.push(NetItem::Node(NodeRecord {
                id: n.id.clone(),
                addr: n.status.addr,
                ingress: n.ingress.clone(),
            }));
        }
        return items;
    }
    for id in &nets {
        if let Some(Object::Network(n)) = store.get(Kind::Network, id) {
            items.push(NetItem::Network(info(n)));
        }
    }
    for svc in services(store) {
        let mut record = ServiceRecord {
            id: svc.id.clone(),
            name: svc.spec.name.clone(),
            mode: svc.spec.endpoint_spec.mode,
            vips: svc
                .endpoint
                .virtual_ips
                .iter()
                .filter(|v| nets.contains(v.network_id.as_str()))
                .map(|v| (v.network_id.clone(), v.addr.addr()))
                .collect(),
            aliases: Default::default(),
            ports: svc.endpoint.ports.clone(),
        };
        let mut on_ours = !record.vips.is_empty();
        for n in &svc.spec.task_template.networks {
            if let Some(net) = network(store, &n.target)
                && nets.contains(net.id.as_str())
            {
                on_ours = true;
                if !n.aliases.is_empty() {
                    record.aliases.insert(net.id.clone(), n.aliases.clone());
                }
            }
        }
        on_ours |= ingress.is_some() && publishes_ingress(svc);
        if !on_ours {
            continue;
        }
        for o in store.tasks_of_service(&svc.id) {
            let Object::Task(t) = o else { continue };
            if t.status.state.is_terminal() {
                continue;
            }
            for a in t.networks.iter().filter(|a| nets.contains(a.network_id.as_str())) {
                let Some(addr) = a.addresses.first() else { continue };
                items.push(NetItem::Endpoint(Endpoint {
                    task_id: t.id.clone(),
                    service_id: svc.id.clone(),
                    network_id: a.network_id.clone(),
                    addr: *addr,
                    node_id: t.node_id.clone(),
                    serving: t.status.state == TaskState::Running && t.desired_state == TaskState::Running,
                    name: t.display_name(&svc.spec.name),
                    aliases: a.aliases.clone(),
                }));
            }
        }
        if record.mode == EndpointMode::Dnsrr {
            record.vips.clear();
        }
        items.push(NetItem::Service(record));
    }
    for n in nodes(store) {
        // Standalone containers on attachable networks: reachable and named like tasks,
        // never behind a VIP.
        for a in n.attachments.iter().filter(|a| nets.contains(a.network_id.as_str())) {
            items.push(NetItem::Endpoint(Endpoint {
                task_id: a.container_id.clone(),
                service_id: String::new(),
                network_id: a.network_id.clone(),
                addr: a.addr,
                node_id: Some(n.id.clone()),
                serving: false,
                name: a.container_id.clone(),
                aliases: Vec::new(),
            }));
        }
        items.push(record(n));
    }
    items
}

/// A node as the others see it on the overlay.
fn record(n: &Node) -> NetItem {
    NetItem::Node(NodeRecord { id: n.id.clone(), addr: n.status.addr, ingress: n.ingress.clone() })
}

fn info(n: &Network) -> NetInfo {
    NetInfo {
        id: n.id.clone(),
        name: n.spec.name.clone(),
        subnet: n.subnet,
        gateway: n.gateway,
        vni: n.vni,
        internal: n.spec.internal,
        ingress: n.spec.ingress,
        mtu: n.spec.mtu,
        encrypted: n.spec.encrypted(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orchestrator::allocator::allocate;
    use crate::orchestrator::{create, new_task};
    use crate::store::Change;
    use crate::testing::*;
    use shoal_api::cluster::AddressPool;
    use shoal_api::task_spec::NetworkAttachmentConfig;

    #[test]
    fn a_node_sees_the_networks_of_its_tasks_and_every_endpoint_on_them() {
        let mut store = store_with(vec![node("n1", &[]), node("n2", &[]), node("n3", &[])], vec![]);
        for name in ["front", "back"] {
            let n = crate::plan::networks::create(
                &store,
                shoal_api::NetworkSpec::new(name),
                &AddressPool::default(),
                &[],
                t0(),
            )
            .expect("net");
            apply(&mut store, vec![Change::Create { object: Object::Network(n) }]);
        }
        let on = |net: &str| {
            let net = net.to_owned();
            move |s: &mut shoal_api::ServiceSpec| {
                s.task_template
                    .networks
                    .push(NetworkAttachmentConfig { target: net, aliases: vec!["w".into()] })
            }
        };
        let web = service("web", on("front"));
        let db = service("db", on("back"));
        apply(&mut store, vec![Change::Create { object: Object::Service(web.clone()) }]);
        apply(&mut store, vec![Change::Create { object: Object::Service(db.clone()) }]);
        apply(
            &mut store,
            vec![
                create(new_task(&web, Some(1), Some("n1"), t0())),
                create(new_task(&web, Some(2), Some("n2"), t0())),
                create(new_task(&db, Some(1), Some("n3"), t0())),
            ],
        );
        let changes = allocate(&store, &AddressPool::default(), t0());
        apply(&mut store, changes);
        let items = for_node(&store, "n1");
        let nets: Vec<&str> = items
            .iter()
            .filter_map(|i| match i {
                NetItem::Network(n) => Some(n.name.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(nets, ["front"], "n1 runs nothing on back");
        let eps = items.iter().filter(|i| matches!(i, NetItem::Endpoint(_))).count();
        assert_eq!(eps, 2, "both web tasks, the one on n2 too");
        let svc = items
            .iter()
            .find_map(|i| match i {
                NetItem::Service(s) => Some(s),
                _ => None,
            })
            .expect("web's record");
        assert_eq!(
            (svc.name.as_str(), svc.vips.len(), svc.aliases.values().next().map(Vec::len)),
            ("web", 1, Some(1))
        );
        assert!(items.iter().all(|i| !matches!(i, NetItem::Service(s) if s.name == "db")));
        assert_eq!(items.iter().filter(|i| matches!(i, NetItem::Node(_))).count(), 3);
        assert_eq!(for_node(&store, "n2").len(), items.len(), "n2 sees the same network");
    }

    #[test]
    fn only_nodes_on_an_encrypted_network_get_the_data_path_keys() {
        let mut store = store_with(vec![node("n1", &[]), node("n2", &[])], vec![]);
        let cluster = crate::testing::cluster("c");
        apply(&mut store, vec![Change::Create { object: Object::Cluster(cluster) }]);
        let changes = crate::orchestrator::keys::rotate(&store, t0(), || vec![9; 16]);
        apply(&mut store, changes);
        for (name, encrypted) in [("sealed", true), ("plain", false)] {
            let mut spec = shoal_api::NetworkSpec::new(name);
            if encrypted {
                spec.options.insert("encrypted".into(), String::new());
            }
            let n =
                crate::plan::networks::create(&store, spec, &AddressPool::default(), &[], t0()).expect("net");
            apply(&mut store, vec![Change::Create { object: Object::Network(n) }]);
        }
        let on = |net: &str| {
            let net = net.to_owned();
            move |s: &mut shoal_api::ServiceSpec| {
                s.task_template.networks.push(NetworkAttachmentConfig { target: net, aliases: vec![] })
            }
        };
        let a = service("a", on("sealed"));
        let b = service("b", on("plain"));
        apply(&mut store, vec![Change::Create { object: Object::Service(a.clone()) }]);
        apply(&mut store, vec![Change::Create { object: Object::Service(b.clone()) }]);
        apply(
            &mut store,
            vec![
                create(new_task(&a, Some(1), Some("n1"), t0())),
                create(new_task(&b, Some(1), Some("n2"), t0())),
            ],
        );
        let changes = allocate(&store, &AddressPool::default(), t0());
        apply(&mut store, changes);
        let keys_of = |node: &str| {
            for_node(&store, node)
                .into_iter()
                .find_map(|i| match i {
                    NetItem::Cluster(c) => Some(c.keys),
                    _ => None,
                })
                .expect("the cluster item")
        };
        assert_eq!(keys_of("n1").keys.len(), 1, "n1 runs a task on the encrypted network");
        assert!(keys_of("n2").keys.is_empty(), "n2 does not");
        let sealed =
            for_node(&store, "n1").into_iter().any(|i| matches!(i, NetItem::Network(n) if n.encrypted));
        assert!(sealed, "the network says it is encrypted");
    }
}
