//! Overlay networks: the spec a user declares and the allocation the managers make
//! (subnet, gateway, VXLAN id).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use crate::object::Meta;

/// VXLAN's overhead on an IPv4 underlay: outer IP, UDP, VXLAN and inner Ethernet headers.
pub const VXLAN_OVERHEAD: u32 = 50;
/// An encrypted overlay's overhead: outer IP, UDP, Shoal's sealed header (20 bytes),
/// the AEAD tag (16) and the inner Ethernet header.
pub const ENCRYPTED_OVERHEAD: u32 = 20 + 8 + 20 + 16 + 14;
/// The smallest MTU an IPv4 interface may have (RFC 791).
pub const MIN_MTU: u32 = 68;
/// The name of the routing mesh's network.
pub const INGRESS_NAME: &str = "ingress";

/// The first VXLAN id handed out, as in Docker.
pub const FIRST_VNI: u32 = 4096;
/// The largest VXLAN id (24 bits).
pub const MAX_VNI: u32 = (1 << 24) - 1;

/// What a user declares for a network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NetworkSpec {
    /// Unique name, with the same rules as service names.
    pub name: String,
    /// Labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Only `overlay`.
    #[serde(default)]
    pub driver: NetworkDriver,
    /// Subnet; `None` takes the next free one from the cluster's default pool.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub subnet: Option<Ipv4Net>,
    /// Gateway address inside the subnet; default: its first address.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub gateway: Option<Ipv4Addr>,
    /// Standalone containers may join it.
    #[serde(default)]
    pub attachable: bool,
    /// No traffic leaves the overlay: no gateway bridge, no forwarding of DNS queries.
    #[serde(default)]
    pub internal: bool,
    /// The routing mesh's network: every node joins it, published ports reach tasks
    /// over it. One at most; the managers make it when a service first publishes a
    /// port, as Swarm's `ingress`.
    #[serde(default)]
    pub ingress: bool,
    /// MTU of the overlay's interfaces; default: the underlay's minus VXLAN's 50 bytes.
    #[serde(default)]
    pub mtu: Option<u32>,
    /// Driver options (`--opt k=v`). `encrypted` (any value) seals the network's
    /// traffic between nodes with the cluster's data-path keys.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

impl NetworkSpec {
    /// Whether traffic between nodes is sealed (`--opt encrypted`).
    pub fn encrypted(&self) -> bool {
        self.options.contains_key("encrypted")
    }

    /// An overlay network named `name` with every other field at its default.
    pub fn new(name: impl Into<String>) -> Self {
        NetworkSpec {
            name: name.into(),
            labels: BTreeMap::new(),
            driver: NetworkDriver::Overlay,
            subnet: None,
            gateway: None,
            attachable: false,
            internal: false,
            ingress: false,
            mtu: None,
            options: BTreeMap::new(),
        }
    }
}

/// Network drivers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NetworkDriver {
    /// VXLAN across the cluster's nodes.
    #[default]
    Overlay,
}

/// A stored network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Network {
    /// Object id.
    pub id: String,
    /// Version and timestamps.
    #[serde(flatten)]
    pub meta: Meta,
    /// The user's spec.
    pub spec: NetworkSpec,
    /// The subnet in use (given, or allocated from the pool).
    #[schema(value_type = String)]
    pub subnet: Ipv4Net,
    /// The gateway address in use.
    #[schema(value_type = String)]
    pub gateway: Ipv4Addr,
    /// VXLAN network id, from 4096 up.
    pub vni: u32,
}
