//! The network map: what a node needs to know of the cluster to wire its tasks
//! (networks, every task address on them, services' VIPs and names), cut by the
//! managers from their state and sent over the dispatcher session as keyed items.
//! Workers rebuild their whole data plane and DNS from it, level-triggered: there
//! is no gossip to lose or reorder.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use crate::service::{EndpointMode, PortConfig};

/// One keyed piece of the map.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum NetItem {
    /// A network some task of the node uses (or the ingress network).
    Network(NetInfo),
    /// A task's address on one of those networks, on any node.
    Endpoint(Endpoint),
    /// A service attached to one of those networks.
    Service(ServiceRecord),
    /// Another node's VTEP and its own ingress address.
    Node(NodeRecord),
    /// Cluster-wide data-path settings.
    Cluster(ClusterNet),
}

/// Cluster-wide data-path settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterNet {
    /// VXLAN UDP port. Encrypted overlays use the next one.
    pub data_path_port: u16,
    /// The data-path keyring; empty unless the node is on an encrypted network.
    #[serde(default)]
    pub keys: crate::cluster::DataPathKeys,
}

impl NetItem {
    /// The item's key in the session: `net/<id>`, `ep/<task>/<network>`, `svc/<id>`,
    /// `node/<id>`.
    pub fn key(&self) -> String {
        match self {
            NetItem::Network(n) => format!("net/{}", n.id),
            NetItem::Endpoint(e) => format!("ep/{}/{}", e.task_id, e.network_id),
            NetItem::Service(s) => format!("svc/{}", s.id),
            NetItem::Node(n) => format!("node/{}", n.id),
            NetItem::Cluster(_) => "cluster".to_owned(),
        }
    }
}

/// A network, as a worker wires it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetInfo {
    /// Network id.
    pub id: String,
    /// Its name (DNS names may end in `.<name>`).
    pub name: String,
    /// Subnet.
    pub subnet: Ipv4Net,
    /// Gateway address (on the network's bridge on every node).
    pub gateway: Ipv4Addr,
    /// VXLAN id.
    pub vni: u32,
    /// No egress and no DNS forwarding.
    pub internal: bool,
    /// The routing mesh's network.
    pub ingress: bool,
    /// MTU override.
    pub mtu: Option<u32>,
    /// Traffic between nodes is sealed with the cluster's data-path keys.
    #[serde(default)]
    pub encrypted: bool,
}

/// A task's address on a network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// The task.
    pub task_id: String,
    /// Its service.
    pub service_id: String,
    /// The network.
    pub network_id: String,
    /// The address, with the network's prefix length.
    pub addr: Ipv4Net,
    /// The node running the task, once scheduled.
    pub node_id: Option<String>,
    /// The task is RUNNING (past its health check) and meant to run: it gets
    /// traffic and is in `tasks.<service>`.
    pub serving: bool,
    /// The task's name, `<service>.<slot>` (DNS answers it too).
    pub name: String,
    /// Network aliases the task's service has on this network.
    pub aliases: Vec<String>,
}

/// A service's names and addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceRecord {
    /// Service id.
    pub id: String,
    /// Service name.
    pub name: String,
    /// `vip` or `dnsrr`.
    pub mode: EndpointMode,
    /// VIP per network id.
    pub vips: BTreeMap<String, Ipv4Addr>,
    /// Extra names per network id (network aliases, and the Compose service name
    /// inside a stack).
    pub aliases: BTreeMap<String, Vec<String>>,
    /// Published ports.
    pub ports: Vec<PortConfig>,
}

/// A node as other nodes see it on the overlay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// Node id.
    pub id: String,
    /// Its underlay address: the VTEP of its VXLAN devices.
    pub addr: IpAddr,
    /// Its address on the ingress network.
    pub ingress: Option<crate::node::NodeAttachment>,
}

/// The MAC of an overlay address: `02:42` and the four address bytes, as Docker
/// makes them, so every node derives the same one.
pub fn mac_of(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x02, 0x42, o[0], o[1], o[2], o[3]]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_follow_addresses() {
        assert_eq!(mac_of(Ipv4Addr::new(10, 0, 1, 7)), [0x02, 0x42, 10, 0, 1, 7]);
    }

    #[test]
    fn items_round_trip_with_their_kind() {
        let item =
            NetItem::Node(NodeRecord { id: "n1".into(), addr: "192.0.2.1".parse().unwrap(), ingress: None });
        let json = serde_json::to_string(&item).unwrap();
        assert!(json.contains(r#""kind":"node""#), "{json}");
        assert_eq!(serde_json::from_str::<NetItem>(&json).unwrap(), item);
        assert_eq!(item.key(), "node/n1");
    }
}
