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
use std::sync::Arc;

use shoal_api::netmap::{Endpoint, NetInfo, NetItem, NodeRecord, ServiceRecord};
use shoal_api::network::VXLAN_OVERHEAD;
use shoal_api::service::{EndpointMode, PublishMode, Protocol};
use shoal_api::{Task, TaskState};

use super::dns::{NameAnswer, SandboxNames};
use super::desired::{Attachment, HostPort, Ingress, IngressPort, LbRule, NodeNet, OverlayNet, Proto, Sandbox};

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

/// Whether a task's container gets the gateway bridge: unless every network it is on
/// is internal.
pub fn egress(task: &Task, view: &NetView) -> bool {
    let map = Map::new(&view.items);
    !(!task.networks.is_empty()
        && task.networks.iter().all(|a| map.networks.get(a.network_id.as_str()).is_some_and(|n| n.internal)))
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
    for task in view.tasks.iter().filter(|t| keeps_sandbox(t)) {
        let mut sandbox = Sandbox {
            task_id: task.id.clone(),
            attachments: Vec::new(),
            egress: egress(task, view),
            lb: Vec::new(),
            dns_ports: dns_ports.get(&task.id).copied(),
        };
        for a in &task.networks {
            let (Some(net), Some(addr)) = (map.networks.get(a.network_id.as_str()), a.addresses.first()) else {
                continue;
            };
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
        out.sandboxes.insert(task.id.clone(), sandbox);
        let Some(svc) = map.services.get(task.service_id.as_str()) else { continue };
        if task.status.state <= TaskState::Running {
            for p in svc.ports.iter().filter(|p| p.publish_mode == PublishMode::Host) {
                if let (Some(protocol), Some(published)) = (proto(p.protocol), p.published_port) {
                    out.host_ports.push(HostPort { protocol, published, target: p.target_port, task_id: task.id.clone() });
                }
            }
        }
    }
    let mine = map.nodes.get(me).and_then(|n| n.ingress.clone());
    if let (Some(net), Some(att)) = (map.ingress(), mine.filter(|a| map.networks.contains_key(a.network_id.as_str()))) {
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
                mtu: net.mtu.unwrap_or(underlay_mtu.saturating_sub(VXLAN_OVERHEAD)),
                internal: net.internal,
                peers,
            },
        );
    }
    out
}

/// What one task's resolver answers: names on the networks the task is on only.
pub fn names(view: &NetView, task: &Task) -> SandboxNames {
    let map = Map::new(&view.items);
    let mut out = SandboxNames { forward: egress(task, view), ..SandboxNames::default() };
    let mut add = |name: String, ips: Vec<Ipv4Addr>, ttl: u32| {
        out.names.entry(name.to_lowercase()).or_insert(NameAnswer { ips, ttl });
    };
    let mut reverse: HashMap<Ipv4Addr, String> = HashMap::new();
    for a in &task.networks {
        let Some(net) = map.networks.get(a.network_id.as_str()) else { continue };
        let suffixes = ["".to_owned(), format!(".{}", net.name)];
        for svc in map.services.values() {
            let eps: Vec<&&Endpoint> =
                map.endpoints.get(net.id.as_str()).into_iter().flatten().filter(|e| e.service_id == svc.id).collect();
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
    }
    out.reverse = reverse;
    out
}

/// The view as a shared value (what the agent hands its node).
pub type SharedView = Arc<NetView>;
