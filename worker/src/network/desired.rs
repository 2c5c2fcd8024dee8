//! The desired state of this node's networking: plain data the agent computes from the
//! managers' state and hands to [`Dataplane::apply`](super::dataplane::Dataplane::apply).
//! Nothing here touches the kernel.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

/// What this node's networking should be; computed by the agent from the managers' state.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeNet {
    /// Overlay networks that have at least one local sandbox, or the ingress network when
    /// `ingress` is Some; keyed by network id.
    pub networks: BTreeMap<String, OverlayNet>,
    /// One per local task container that has networking; keyed by task id.
    pub sandboxes: BTreeMap<String, Sandbox>,
    /// The routing mesh on this node (published ingress ports), if any service publishes one.
    pub ingress: Option<Ingress>,
    /// Host-mode published ports of local tasks.
    pub host_ports: Vec<HostPort>,
    /// The data-path keys that seal encrypted overlays (empty unless this node is on
    /// one); their `Debug` shows no key.
    pub keys: shoal_api::cluster::DataPathKeys,
}

/// One overlay network as this node needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverlayNet {
    /// The network's id.
    pub id: String,
    /// Its VXLAN id.
    pub vni: u32,
    /// Its subnet.
    pub subnet: Ipv4Net,
    /// The gateway address (on the overlay namespace's bridge).
    pub gateway: Ipv4Addr,
    /// Already derived: underlay - 50, or the network's override.
    pub mtu: u32,
    /// No egress for sandboxes only on internal networks (the agent decides `egress`).
    pub internal: bool,
    /// Carried sealed by the userspace forwarder over a TAP device instead of by a
    /// kernel VXLAN device (`--opt encrypted`).
    pub encrypted: bool,
    /// Remote endpoints: overlay IP -> the VTEP (underlay address of the node that has
    /// it). Never local ones.
    pub peers: BTreeMap<Ipv4Addr, Ipv4Addr>,
}

/// The network namespace of one task container.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Sandbox {
    /// The task.
    pub task_id: String,
    /// Overlay attachments, in order: the first is eth0, the next eth1, ...
    pub attachments: Vec<Attachment>,
    /// Also attach to the node's gateway bridge (egress with masquerade; default route via it).
    pub egress: bool,
    /// VIP load balancing inside this sandbox.
    pub lb: Vec<LbRule>,
    /// The embedded DNS resolver's listening ports inside the sandbox (udp, tcp), once the
    /// DNS server bound them; the data plane installs the 127.0.0.11:53 DNAT for them.
    pub dns_ports: Option<(u16, u16)>,
}

/// One overlay attachment of a sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// The network.
    pub network_id: String,
    /// The sandbox's address and prefix on it.
    pub addr: Ipv4Net,
}

/// One virtual IP's port, balanced over backends inside a sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LbRule {
    /// The service's virtual IP.
    pub vip: Ipv4Addr,
    /// The protocol.
    pub protocol: Proto,
    /// The port, the same on the VIP and the backends (VIP:port -> backend:port).
    pub port: u16,
    /// The serving tasks' addresses; none makes the VIP reject.
    pub backends: Vec<Ipv4Addr>,
}

/// A transport protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Proto {
    /// TCP.
    #[default]
    Tcp,
    /// UDP.
    Udp,
}

impl Proto {
    /// The name nftables and iproute2 use.
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// The routing mesh: this node's published ingress ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ingress {
    /// The ingress network's id (also in [`NodeNet::networks`]).
    pub network_id: String,
    /// This node's own address on the ingress network (allocated by the managers).
    pub addr: Ipv4Net,
    /// The published ports.
    pub ports: Vec<IngressPort>,
}

/// One published port of the routing mesh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngressPort {
    /// The protocol.
    pub protocol: Proto,
    /// The port on every node.
    pub published: u16,
    /// The port in the tasks.
    pub target: u16,
    /// Serving tasks' ingress-network IPs, anywhere in the cluster.
    pub backends: Vec<Ipv4Addr>,
}

/// A host-mode published port of a local task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    /// The protocol.
    pub protocol: Proto,
    /// The port on this node.
    pub published: u16,
    /// The port in the task.
    pub target: u16,
    /// The local task.
    pub task_id: String,
}

/// The MAC address of an overlay endpoint, derived from its IP as Docker does
/// (`02:42` and the 4 address bytes), so that every node computes the same one.
pub fn mac_for(ip: Ipv4Addr) -> [u8; 6] {
    let [a, b, c, d] = ip.octets();
    [0x02, 0x42, a, b, c, d]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mac_is_02_42_and_the_address() {
        assert_eq!(mac_for(Ipv4Addr::new(10, 9, 0, 3)), [2, 0x42, 10, 9, 0, 3]);
    }

    #[test]
    fn protocols_have_nft_names() {
        assert_eq!(Proto::Tcp.as_str(), "tcp");
        assert_eq!(Proto::Udp.as_str(), "udp");
    }
}
