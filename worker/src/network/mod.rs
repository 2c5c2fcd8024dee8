//! This node's overlay data plane, driven level-triggered: the agent computes the
//! desired [`NodeNet`] from the managers' state and calls [`Dataplane::apply`] (cheap
//! when little changed) or, after a restart, [`Dataplane::resync`].
//!
//! It is Docker's swarm data plane with static peers instead of gossip
//! (docs: shared/reference/networking.md §0, §1):
//! - per overlay network, a namespace `<run_dir>/netns/ov-<vni hex>` holding bridge
//!   `br0` (the gateway address) and a VXLAN device made in the daemon's namespace as
//!   `<prefix>vx<vni>` and moved in, so its UDP socket stays on the underlay; remote
//!   endpoints are a permanent neighbour entry plus a `self` FDB entry each, with MACs
//!   derived from the IPs ([`desired::mac_for`]);
//! - per task, a namespace `<run_dir>/netns/t-<task id>` with a veth per attachment
//!   (`eth0`, `eth1`, ...) and, for egress, one more into the node's gateway bridge
//!   `<prefix>gwbr` (isolated ports, masquerade, default route);
//! - VIP load balancing and the embedded DNS redirect are nftables tables inside each
//!   task's namespace (`ip shoal-lb`, `ip shoal-dns`); the routing mesh and host-mode
//!   ports are tables in the daemon's namespace (`ip <prefix>-ingress`, `ip <prefix>-nat`).
//!
//! The routing mesh DNATs a published port to a serving task's ingress address and
//! masquerades to this node's ingress address, so the task sees this node, not the
//! client: **the client address is lost on ingress ports** (as in Docker, moby#25526);
//! host-mode ports keep it. Ingress ports answer on this node's non-loopback
//! addresses, from other hosts and from this host; `127.0.0.1:<port>` is not handled.
//!
//! Namespaces are entered only on short-lived threads (`netns`); "the daemon's
//! namespace" is the one of the thread that called [`Dataplane::start`].
//!
//! Files: [`view`] (the managers' network map and this node's tasks to a desired
//! [`NodeNet`] and each sandbox's names, no IO), [`desired`] (that input), `plan` (the
//! record of what was applied and the decisions taken from it, no IO), `netns`
//! (namespaces off-thread), `netlink` (links, addresses, neighbours, FDB), `nft`
//! (nftables transactions), [`sealed`] (the encrypted overlays' userspace forwarder:
//! TAP devices, AES-128-GCM over UDP), [`dataplane`] (executes the plan), [`dns`] (the embedded
//! resolvers at 127.0.0.11), [`files`] (a container's resolv.conf and hosts), [`wiring`] (all of it for the agent's node: the latest
//! map, the data plane and the resolvers).

pub mod dataplane;
pub mod desired;
pub mod dns;
pub mod files;
mod netlink;
mod netns;
mod nft;
mod plan;
pub mod sealed;
#[cfg(test)]
mod tests;
pub mod view;
pub mod wiring;

use std::io;
use std::net::Ipv4Addr;
use std::path::Path;

/// Errors of the data plane; each says what went wrong and what to do.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// The managers have not yet said where this node is or which VXLAN port to use.
    #[error(
        "the network map has not arrived from the managers yet (this node's address, the VXLAN port): wait for the node to be ready"
    )]
    NoMap,
    /// A container's resolv.conf or hosts file could not be written.
    #[error("write the container's {file}")]
    ContainerFile {
        /// `resolv.conf` or `hosts`.
        file: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A sandbox's resolver could not start.
    #[error("start the task's DNS resolver")]
    Dns(#[from] dns::DnsError),
    /// The VXLAN UDP port is held by something else on this node.
    #[error(
        "the VXLAN UDP port {port} is already in use on this node: stop what holds it, or give the cluster another one with `shoal cluster update --data-path-port PORT`"
    )]
    VxlanPortTaken {
        /// The port.
        port: u16,
        /// The bind error.
        #[source]
        source: io::Error,
    },
    /// A published port is bound by a process on this node.
    #[error(
        "published port {port}/{protocol} is already bound by a process on this node: stop that process or publish another port"
    )]
    PublishedPortTaken {
        /// The port.
        port: u16,
        /// tcp or udp.
        protocol: &'static str,
        /// The bind error.
        #[source]
        source: io::Error,
    },
    /// A network's MTU is unusable.
    #[error("network {network}: MTU {mtu} is unusable: {why}")]
    Mtu {
        /// The network.
        network: String,
        /// Its MTU.
        mtu: u32,
        /// Why, and what to change.
        why: String,
    },
    /// No interface holds the configured underlay address.
    #[error(
        "no interface in this node's network namespace has the address {0}: advertise an address of this node"
    )]
    NoUnderlay(Ipv4Addr),
    /// The configuration is unusable.
    #[error("data plane configuration: {0}")]
    Config(String),
    /// A task id cannot name a namespace file.
    #[error("task id {0:?} cannot name a network namespace: use letters, digits, '-', '_' and '.'")]
    BadTaskId(String),
    /// The gateway pool has no free address.
    #[error("the gateway address pool {0} is exhausted: choose a larger pool")]
    PoolExhausted(ipnet::Ipv4Net),
    /// A namespace operation failed.
    #[error("network namespace {path}: {what} failed")]
    Netns {
        /// The namespace (file).
        path: String,
        /// What was being done.
        what: &'static str,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// A netlink request failed.
    #[error("netlink: {what} failed")]
    Netlink {
        /// What was being done, and where.
        what: String,
        /// The error.
        #[source]
        source: rtnetlink::Error,
    },
    /// `nft` refused a transaction.
    #[error(
        "nft in {ns} refused the ruleset ({stderr}); is the nftables package installed and the kernel's nf_tables available?"
    )]
    Nft {
        /// The namespace.
        ns: String,
        /// What nft said.
        stderr: String,
    },
    /// Some other system call failed.
    #[error("{what} failed")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: io::Error,
    },
}

impl NetworkError {
    fn io(what: impl Into<String>, source: io::Error) -> NetworkError {
        NetworkError::Io { what: what.into(), source }
    }

    fn netns(path: impl AsRef<Path>, what: &'static str, source: io::Error) -> NetworkError {
        NetworkError::Netns { path: path.as_ref().display().to_string(), what, source }
    }
}
