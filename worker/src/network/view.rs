//! From the managers' network map and this node's tasks to what the node should
//! wire ([`NodeNet`]) and what each sandbox's resolver answers ([`SandboxNames`]).
//! Pure functions: the data plane and the resolvers only ever act on their output,
//! so what a node does is decided here, and tested here without a kernel.
//!
//! TTLs: a service's VIP answers live 5 s (a VIP lasts as long as its service, but a
//! service removed and made again gets a new one, and a cache should not outlive
//! that by much); task answers (`tasks.<service>`, `dnsrr` services, task names) live
//! 1 s, so a client that asks again after a task moved never waits longer than the
//! 1 s the cluster promises. Both are cheap: the resolver is in the client's own
//! network namespace. Docker answers everything with 600 s.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr};

use ipnet::Ipv4Net;
use shoal_api::netmap::{Endpoint, NetInfo, NetItem, NodeRecord, ServiceRecord};
use shoal_api::network::{ENCRYPTED_OVERHEAD, VXLAN_OVERHEAD};
use shoal_api::service::{EndpointMode, Protocol, PublishMode};
use shoal_api::{Task, TaskState};

use super::desired::{
    Attachment, HostPort, Ingress, IngressPort, LbRule, NodeNet, OverlayNet, Proto, Sandbox,
};
use super::dns::{NameAnswer, SandboxNames};

/// TTL of VIP answers, in seconds.
pub const VIP_TTL: u32 = 5;
/// TTL of task answers, in seconds.
pub const TASK_TTL: u32 = 1;

/// What the agent knows: the network map and the tasks assigned to this node.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NetView {
    /// This node's id.
    pub node_id: String,
    /// The map, by item key.
    pub items: BTreeMap<String, NetItem>,
    /// Tasks assigned to this node.
    pub tasks: Vec<Task>,
}

/// The map, indexed for the questions below.
struct Map<'a> {
    networks: BTreeMap<&'a str, &'a NetInfo>,
    services: BTreeMap<&'a str, &'a ServiceRecord>,
    nodes: BTreeMap<&'a str, &'a NodeRecord>,
    /// Endpoints by network id.
    endpoints: BTreeMap<&'a str, Vec<&'a Endpoint>>,
}

impl<'a> Map<'a> {
    fn new(items: &'a BTreeMap<String, NetItem>) -> Map<'a> {
        let mut m = Map {
            networks: BTreeMap::new(),
            services: BTreeMap::new(),
            nodes: BTreeMap::new(),
            endpoints: BTreeMap::new(),
        };
        for item in items.values() {
            match item {
                NetItem::Network(n) => {
                    m.networks.insert(&n.id, n);
                }
                NetItem::Service(s) => {
                    m.services.insert(&s.id, s);
                }
                NetItem::Node(n) => {
                    m.nodes.insert(&n.id, n);
                }
                NetItem::Endpoint(e) => m.endpoints.entry(&e.network_id).or_default().push(e),
                NetItem::Cluster(_) => {}
            }
        }
        m
    }

    fn vtep(&self, node: Option<&str>) -> Option<Ipv4Addr> {
        match self.nodes.get(node?)?.addr {
            IpAddr::V4(a) => Some(a),
            IpAddr::V6(_) => None,
        }
    }

    /// Serving addresses of a service on a network.
    fn serving(&self, service_id: &str, network_id: &str) -> Vec<Ipv4Addr> {
        let mut ips: Vec<Ipv4Addr> = self
            .endpoints
            .get(network_id)
            .into_iter()
            .flatten()
            .filter(|e| e.service_id == service_id && e.serving)
            .map(|e| e.addr.addr())
            .collect();
        ips.sort();
        ips
    }

    fn ingress(&self) -> Option<&'a NetInfo> {
        self.networks.values().copied().find(|n| n.ingress)
    }
}

/// The VXLAN UDP port the cluster uses, once the map says.
pub fn data_path_port(view: &NetView) -> Option<u16> {
    match view.items.get("cluster") {
        Some(NetItem::Cluster(c)) => Some(c.data_path_port),
        _ => None,
    }
}

/// This node's underlay address (its VTEP), as the managers know it.
pub fn own_address(view: &NetView) -> Option<Ipv4Addr> {
    match view.items.get(&format!("node/{}", view.node_id)) {
        Some(NetItem::Node(NodeRecord { addr: IpAddr::V4(a), .. })) => Some(*a),
        _ => None,
    }
}

/// Whether a task has (or should keep) a sandbox: it has not stopped for good.
pub fn keeps_sandbox(task: &Task) -> bool {
    !task.status.state.is_terminal()
}

/// A sandbox this node keeps: a task's, or a standalone container's on attachable
/// networks.
#[derive(Debug, Clone, PartialEq)]
pub struct Local {
    /// The task id, or the standalone container's id.
    pub id: String,
    /// The task (none for a standalone container).
    pub task: Option<Task>,
    /// Its addresses, by network id, in order (`eth0` first).
    pub attachments: Vec<(String, Ipv4Net)>,
}

/// Every sandbox this node keeps: its tasks that have not stopped for good, and its
/// standalone containers.
pub fn locals(view: &NetView) -> Vec<Local> {
    let mut out: Vec<Local> = view
        .tasks
        .iter()
        .filter(|t| keeps_sandbox(t))
        .map(|t| Local {
            id: t.id.clone(),
            task: Some(t.clone()),
            attachments: t
                .networks
                .iter()
                .filter_map(|a| a.addresses.first().map(|addr| (a.network_id.clone(), *addr)))
                .collect(),
        })
        .collect();
    for item in view.items.values() {
        if let NetItem::Endpoint(e) = item
            && e.service_id.is_empty()
            && e.node_id.as_deref() == Some(view.node_id.as_str())
        {
            match out.iter_mut().find(|l| l.id == e.task_id && l.task.is_none()) {
                Some(l) => l.attachments.push((e.network_id.clone(), e.addr)),
                None => out.push(Local {
                    id: e.task_id.clone(),
                    task: None,
                    attachments: vec![(e.network_id.clone(), e.addr)],
                }),
            }
        }
    }
    out
}

/// Whether a sandbox gets the gateway bridge: unless every network it is on is
/// internal.
fn egress_in(local: &Local, map: &Map<'_>) -> bool {
    local.attachments.is_empty()
        || local.attachments.iter().any(|(n, _)| !map.networks.get(n.as_str()).is_some_and(|n| n.internal))
}

fn proto(p: Protocol) -> Option<Proto> {
    match p {
        Protocol::Tcp => Some(Proto::Tcp),
        Protocol::Udp => Some(Proto::Udp),
        Protocol::Sctp => None,
    }
}

/// What this node should wire. `dns_ports` are the resolvers' ports per task;
/// `underlay_mtu` the MTU of the interface the VTEP address is on.
pub fn node_net(view: &NetView, dns_ports: &HashMap<String, (u16, u16)>, underlay_mtu: u32) -> NodeNet {
    let map = Map::new(&view.items);
    let me = view.node_id.as_str();
    let mut out = NodeNet::default();
    let mut used: BTreeSet<&str> = BTreeSet::new();
    for local in locals(view) {
        let mut sandbox = Sandbox {
            task_id: local.id.clone(),
            attachments: Vec::new(),
            egress: egress_in(&local, &map),
            lb: Vec::new(),
            dns_ports: dns_ports.get(&local.id).copied(),
        };
        for (network_id, addr) in &local.attachments {
            let Some(net) = map.networks.get(network_id.as_str()) else { continue };
            used.insert(&net.id);
            sandbox.attachments.push(Attachment { network_id: net.id.clone(), addr: *addr });
            for svc in map.services.values() {
                let Some(vip) = svc.vips.get(&net.id) else { continue };
                sandbox.lb.push(LbRule {
                    vip: *vip,
                    protocol: Proto::Tcp,
                    port: 0,
                    backends: map.serving(&svc.id, &net.id),
                });
            }
        }
        sandbox.lb.sort_by_key(|r| r.vip);
        out.sandboxes.insert(local.id.clone(), sandbox);
        let Some(task) = &local.task else { continue };
        let Some(svc) = map.services.get(task.service_id.as_str()) else { continue };
        if task.status.state <= TaskState::Running {
            for p in svc.ports.iter().filter(|p| p.publish_mode == PublishMode::Host) {
                if let (Some(protocol), Some(published)) = (proto(p.protocol), p.published_port) {
                    out.host_ports.push(HostPort {
                        protocol,
                        published,
                        target: p.target_port,
                        task_id: task.id.clone(),
                    });
                }
            }
        }
    }
    let mine = map.nodes.get(me).and_then(|n| n.ingress.clone());
    if let (Some(net), Some(att)) =
        (map.ingress(), mine.filter(|a| map.networks.contains_key(a.network_id.as_str())))
    {
        used.insert(&net.id);
        let mut ports = Vec::new();
        for svc in map.services.values() {
            for p in svc.ports.iter().filter(|p| p.publish_mode == PublishMode::Ingress) {
                if let (Some(protocol), Some(published)) = (proto(p.protocol), p.published_port) {
                    ports.push(IngressPort {
                        protocol,
                        published,
                        target: p.target_port,
                        backends: map.serving(&svc.id, &net.id),
                    });
                }
            }
        }
        ports.sort_by_key(|p| (p.published, p.protocol.as_str()));
        out.ingress = Some(Ingress { network_id: net.id.clone(), addr: att.addr, ports });
    }
    if let Some(NetItem::Cluster(c)) = view.items.get("cluster")
        && used.iter().any(|id| map.networks[id].encrypted)
    {
        out.keys = c.keys.clone();
    }
    for id in used {
        let net = map.networks[id];
        let mut peers = BTreeMap::new();
        for e in map.endpoints.get(id).into_iter().flatten() {
            if e.node_id.as_deref() != Some(me)
                && let Some(vtep) = map.vtep(e.node_id.as_deref())
            {
                peers.insert(e.addr.addr(), vtep);
            }
        }
        if net.ingress {
            for n in map.nodes.values().filter(|n| n.id != me) {
                if let (Some(att), IpAddr::V4(vtep)) = (&n.ingress, n.addr)
                    && att.network_id == net.id
                {
                    peers.insert(att.addr.addr(), vtep);
                }
            }
        }
        out.networks.insert(
            net.id.clone(),
            OverlayNet {
                id: net.id.clone(),
                vni: net.vni,
                subnet: net.subnet,
                gateway: net.gateway,
                mtu: net.mtu.unwrap_or(underlay_mtu.saturating_sub(if net.encrypted {
                    ENCRYPTED_OVERHEAD
                } else {
                    VXLAN_OVERHEAD
                })),
                internal: net.internal,
                encrypted: net.encrypted,
                peers,
            },
        );
    }
    out
}

/// What one sandbox's resolver answers: names on the networks it is on only.
pub fn names(view: &NetView, local: &Local) -> SandboxNames {
    names_in(&Map::new(&view.items), local)
}

/// [`names`] of every sandbox in `locals`, indexing the map once.
pub fn names_of_all(view: &NetView, locals: &[Local]) -> Vec<SandboxNames> {
    let map = Map::new(&view.items);
    locals.iter().map(|l| names_in(&map, l)).collect()
}

fn names_in(map: &Map<'_>, local: &Local) -> SandboxNames {
    let mut out = SandboxNames { forward: egress_in(local, map), ..SandboxNames::default() };
    let mut add = |name: String, ips: Vec<Ipv4Addr>, ttl: u32| {
        out.names.entry(name.to_lowercase()).or_insert(NameAnswer { ips, ttl });
    };
    let mut reverse: HashMap<Ipv4Addr, String> = HashMap::new();
    for (network_id, _) in &local.attachments {
        let Some(net) = map.networks.get(network_id.as_str()) else { continue };
        let suffixes = ["".to_owned(), format!(".{}", net.name)];
        for svc in map.services.values() {
            let eps: Vec<&&Endpoint> = map
                .endpoints
                .get(net.id.as_str())
                .into_iter()
                .flatten()
                .filter(|e| e.service_id == svc.id)
                .collect();
            let vip = svc.vips.get(&net.id);
            if vip.is_none() && eps.is_empty() {
                continue;
            }
            let tasks = map.serving(&svc.id, &net.id);
            let (answer, ttl) = match (svc.mode, vip) {
                (EndpointMode::Vip, Some(v)) => (vec![*v], VIP_TTL),
                _ => (tasks.clone(), TASK_TTL),
            };
            let aliases = svc.aliases.get(&net.id).into_iter().flatten();
            for name in std::iter::once(&svc.name).chain(aliases) {
                for s in &suffixes {
                    add(format!("{name}{s}"), answer.clone(), ttl);
                    add(format!("tasks.{name}{s}"), tasks.clone(), TASK_TTL);
                }
            }
            if let Some(v) = vip {
                reverse.entry(*v).or_insert_with(|| format!("{}.{}", svc.name, net.name));
            }
            for e in eps {
                for s in &suffixes {
                    add(format!("{}{s}", e.name), vec![e.addr.addr()], TASK_TTL);
                    add(format!("{}.{}{s}", e.name, e.task_id), vec![e.addr.addr()], TASK_TTL);
                }
                reverse.entry(e.addr.addr()).or_insert_with(|| format!("{}.{}", e.name, net.name));
            }
        }
        // Standalone containers answer to their ids.
        for e in map.endpoints.get(net.id.as_str()).into_iter().flatten().filter(|e| e.service_id.is_empty())
        {
            for s in &suffixes {
                add(format!("{}{s}", e.name), vec![e.addr.addr()], TASK_TTL);
            }
            reverse.entry(e.addr.addr()).or_insert_with(|| format!("{}.{}", e.name, net.name));
        }
    }
    out.reverse = reverse;
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_api::netmap::ClusterNet;
    use shoal_api::node::NodeAttachment;
    use shoal_api::service::PortConfig;
    use shoal_api::task::NetworkAttachment;

    fn net(id: &str, third: u8, internal: bool, ingress: bool) -> NetItem {
        NetItem::Network(NetInfo {
            id: id.into(),
            name: format!("{id}-name"),
            subnet: format!("10.0.{third}.0/24").parse().unwrap(),
            gateway: Ipv4Addr::new(10, 0, third, 1),
            vni: 4096 + u32::from(third),
            internal,
            ingress,
            mtu: None,
            encrypted: false,
        })
    }

    fn ep(task: &str, svc: &str, net: &str, addr: &str, node: &str, serving: bool) -> NetItem {
        NetItem::Endpoint(Endpoint {
            task_id: task.into(),
            service_id: svc.into(),
            network_id: net.into(),
            addr: format!("{addr}/24").parse().unwrap(),
            node_id: Some(node.into()),
            serving,
            name: format!("{svc}.1"),
            aliases: vec![],
        })
    }

    fn node(id: &str, addr: &str, ingress: Option<&str>) -> NetItem {
        NetItem::Node(NodeRecord {
            id: id.into(),
            addr: addr.parse().unwrap(),
            ingress: ingress.map(|a| NodeAttachment {
                network_id: "ing".into(),
                addr: format!("{a}/24").parse().unwrap(),
            }),
        })
    }

    fn svc(id: &str, vips: &[(&str, &str)], mode: EndpointMode, ports: Vec<PortConfig>) -> NetItem {
        NetItem::Service(ServiceRecord {
            id: id.into(),
            name: id.into(),
            mode,
            vips: vips.iter().map(|(n, a)| ((*n).into(), a.parse().unwrap())).collect(),
            aliases: [("front".to_string(), vec![format!("{id}-alias")])].into(),
            ports,
        })
    }

    fn task(id: &str, svc: &str, nets: &[(&str, &str)]) -> Task {
        let mut t: Task = serde_json::from_value(serde_json::json!({
            "id": id, "version": 1, "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z",
            "service_id": svc, "slot": 1, "node_id": "me",
            "spec": {"container": {"image": "busybox"}}, "spec_version": 1, "desired_state": "running",
            "status": {"state": "running", "timestamp": "2026-01-01T00:00:00Z"}
        }))
        .unwrap();
        t.networks = nets
            .iter()
            .map(|(n, a)| NetworkAttachment {
                network_id: (*n).into(),
                addresses: vec![format!("{a}/24").parse().unwrap()],
                aliases: vec![],
            })
            .collect();
        t
    }

    /// "me" runs a client on front; web has two serving tasks on other nodes and one
    /// starting; db lives on the internal network back; web publishes 8080.
    fn view() -> NetView {
        let items = vec![
            NetItem::Cluster(ClusterNet { data_path_port: 4789, keys: Default::default() }),
            net("front", 1, false, false),
            net("back", 2, true, false),
            net("ing", 0, false, true),
            node("me", "192.0.2.1", Some("10.0.0.10")),
            node("n2", "192.0.2.2", Some("10.0.0.11")),
            node("n3", "192.0.2.3", None),
            svc(
                "web",
                &[("front", "10.0.1.2"), ("ing", "10.0.0.2")],
                EndpointMode::Vip,
                vec![PortConfig::ingress(80, Some(8080), Default::default())],
            ),
            svc("rr", &[], EndpointMode::Dnsrr, vec![]),
            svc("db", &[("back", "10.0.2.2")], EndpointMode::Vip, vec![]),
            svc("client", &[("front", "10.0.1.3")], EndpointMode::Vip, vec![]),
            ep("w1", "web", "front", "10.0.1.5", "n2", true),
            ep("w1", "web", "ing", "10.0.0.5", "n2", true),
            ep("w2", "web", "front", "10.0.1.6", "n3", true),
            ep("w2", "web", "ing", "10.0.0.6", "n3", true),
            ep("w3", "web", "front", "10.0.1.7", "n3", false),
            ep("r1", "rr", "front", "10.0.1.8", "n2", true),
            ep("d1", "db", "back", "10.0.2.5", "n2", true),
            ep("c1", "client", "front", "10.0.1.9", "me", true),
        ];
        NetView {
            node_id: "me".into(),
            items: items.into_iter().map(|i| (i.key(), i)).collect(),
            tasks: vec![task("c1", "client", &[("front", "10.0.1.9")])],
        }
    }

    #[test]
    fn an_encrypted_network_takes_the_keys_and_leaves_room_for_the_seal() {
        let keys = shoal_api::cluster::DataPathKeys {
            keys: vec![shoal_api::cluster::DataPathKey {
                id: 1,
                key: vec![7; 16],
                created_at: chrono::Utc::now(),
            }],
            primary: 1,
        };
        let mut v = view();
        v.items.insert(
            "cluster".into(),
            NetItem::Cluster(ClusterNet { data_path_port: 4789, keys: keys.clone() }),
        );
        let plain = node_net(&v, &HashMap::new(), 1500);
        assert!(plain.keys.keys.is_empty(), "no encrypted network here: no keys held");
        if let Some(NetItem::Network(n)) = v.items.get_mut("net/front") {
            n.encrypted = true;
        }
        let want = node_net(&v, &HashMap::new(), 1500);
        assert_eq!(want.keys, keys);
        let front = &want.networks["front"];
        assert!(front.encrypted);
        assert_eq!(front.mtu, 1500 - 78);
        assert!(!want.networks["ing"].encrypted);
        assert_eq!(want.networks["ing"].mtu, 1450);
    }

    #[test]
    fn the_node_wires_its_networks_with_remote_peers_and_serving_backends_only() {
        let v = view();
        let want = node_net(&v, &HashMap::from([("c1".to_string(), (1000, 1001))]), 1500);
        assert_eq!(want.networks.keys().collect::<Vec<_>>(), ["front", "ing"], "back has no local task");
        let front = &want.networks["front"];
        assert_eq!(front.mtu, 1450);
        assert!(!front.peers.contains_key(&"10.0.1.9".parse().unwrap()), "the local task is no peer");
        assert_eq!(
            front.peers[&"10.0.1.7".parse().unwrap()],
            "192.0.2.3".parse::<Ipv4Addr>().unwrap(),
            "starting tasks are peers"
        );
        assert_eq!(
            want.networks["ing"].peers.get(&"10.0.0.11".parse().unwrap()),
            Some(&"192.0.2.2".parse().unwrap()),
            "other nodes' ingress addresses"
        );
        let sb = &want.sandboxes["c1"];
        assert!(sb.egress);
        assert_eq!(sb.dns_ports, Some((1000, 1001)));
        let web = sb.lb.iter().find(|r| r.vip == "10.0.1.2".parse::<Ipv4Addr>().unwrap()).expect("web's VIP");
        assert_eq!(web.backends, ["10.0.1.5".parse::<Ipv4Addr>().unwrap(), "10.0.1.6".parse().unwrap()]);
        assert!(sb.lb.iter().all(|r| r.vip != "10.0.2.2".parse::<Ipv4Addr>().unwrap()), "db is not on front");
        let ingress = want.ingress.expect("the mesh");
        assert_eq!((ingress.addr.to_string(), ingress.ports.len()), ("10.0.0.10/24".into(), 1));
        assert_eq!(
            (ingress.ports[0].published, ingress.ports[0].target, ingress.ports[0].backends.len()),
            (8080, 80, 2)
        );
    }

    #[test]
    fn a_standalone_container_gets_a_sandbox_and_answers_to_its_id() {
        let mut v = view();
        let mut c = ep("box1", "", "front", "10.0.1.20", "me", false);
        if let NetItem::Endpoint(e) = &mut c {
            e.name = "box1".into();
        }
        v.items.insert(c.key(), c);
        let l = locals(&v).into_iter().find(|l| l.id == "box1").expect("a local sandbox for box1");
        assert_eq!((l.task.is_none(), l.attachments.len()), (true, 1));
        let want = node_net(&v, &HashMap::new(), 1500);
        assert_eq!(want.sandboxes["box1"].attachments[0].addr.to_string(), "10.0.1.20/24");
        assert!(
            want.sandboxes["box1"].lb.iter().any(|r| r.vip == "10.0.1.2".parse::<Ipv4Addr>().unwrap()),
            "VIPs balance for it too"
        );
        let client = locals(&v).into_iter().find(|l| l.id == "c1").expect("c1");
        assert_eq!(names(&v, &client).names["box1"].ips, ["10.0.1.20".parse::<Ipv4Addr>().unwrap()]);
    }

    #[test]
    fn a_sandbox_resolves_names_of_its_own_networks_only() {
        let v = view();
        let names = names(&v, &locals(&v)[0]);
        let ips =
            |n: &str| names.names.get(n).map(|a| a.ips.iter().map(ToString::to_string).collect::<Vec<_>>());
        assert_eq!(ips("web"), Some(vec!["10.0.1.2".into()]));
        assert_eq!(ips("web.front-name"), Some(vec!["10.0.1.2".into()]));
        assert_eq!(ips("web-alias"), Some(vec!["10.0.1.2".into()]));
        assert_eq!(ips("tasks.web"), Some(vec!["10.0.1.5".into(), "10.0.1.6".into()]));
        assert_eq!(ips("rr"), Some(vec!["10.0.1.8".into()]), "dnsrr answers its tasks");
        assert_eq!(names.names["web"].ttl, VIP_TTL);
        assert_eq!(names.names["tasks.web"].ttl, TASK_TTL);
        assert_eq!(ips("db"), None, "db is on back only");
        assert!(names.forward);
        assert_eq!(
            names.reverse.get(&"10.0.1.2".parse().unwrap()).map(String::as_str),
            Some("web.front-name")
        );
        let mut inside = v.clone();
        inside.tasks = vec![task("d1", "db", &[("back", "10.0.2.5")])];
        let internal = &locals(&inside)[0];
        assert!(!super::names(&inside, internal).forward, "an internal network forwards nothing");
        assert!(!node_net(&inside, &HashMap::new(), 1500).sandboxes["d1"].egress, "nor has it egress");
    }
}
