//! Requests of the cluster API turned into store transactions. Each function is pure:
//! it reads the current state (and the clock, passed in) and returns the changes to
//! propose, so it is tested without IO. Raft's compare-and-set on versions catches
//! any write that raced with the read.

pub mod addresses;
pub mod networks;
pub mod services;
pub mod stacks;

use shoal_api::ValidationErrors;
use shoal_api::compose::ComposeError;

use crate::store::{Kind, Object, Store};

/// Why a request cannot become a transaction.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlanError {
    /// The body is well formed but not valid; every problem names its field.
    #[error("{0}")]
    Invalid(ValidationErrors),
    /// No such object.
    #[error("no {kind} {id:?}: check the name or id (`shoal {kind} ls`)")]
    NotFound {
        /// Its kind.
        kind: Kind,
        /// The id or name asked for.
        id: String,
    },
    /// More than one object matches an id prefix.
    #[error("{id:?} matches more than one {kind}: give more of the id")]
    Ambiguous {
        /// Its kind.
        kind: Kind,
        /// The prefix.
        id: String,
    },
    /// An update based on a version someone else has changed since.
    #[error(
        "{what} was changed by someone else (version {version}, you read {read}): read it again and retry"
    )]
    Stale {
        /// The object, e.g. `node web-1` or `the cluster`.
        what: String,
        /// Its version now.
        version: u64,
        /// The version the request was based on.
        read: u64,
    },
    /// A name another object of the kind has.
    #[error("a {kind} named {name:?} exists already ({id}): choose another name{}", if *kind == Kind::Service { ", or update it" } else { "" })]
    NameTaken {
        /// The kind.
        kind: Kind,
        /// The name.
        name: String,
        /// The object that has it.
        id: String,
    },
    /// A published port another service has.
    #[error("port {port}/{protocol} is published by service {service} already: choose another")]
    PortTaken {
        /// The port.
        port: u16,
        /// `tcp`, `udp` or `sctp`.
        protocol: &'static str,
        /// The service that publishes it.
        service: String,
    },
    /// No port is left in the range given to services that ask for any.
    #[error("every port of {first}-{last} is published already")]
    PortsExhausted {
        /// The range's first port.
        first: u16,
        /// Its last.
        last: u16,
    },
    /// Removing a manager's node.
    #[error("node {hostname} is a manager: demote it first (`shoal node demote {hostname}`)")]
    NodeIsManager {
        /// The node's hostname.
        hostname: String,
    },
    /// Removing a node that is up, without force.
    #[error("node {hostname} is up: stop its daemon first, or force the removal")]
    NodeIsUp {
        /// The node's hostname.
        hostname: String,
    },
    /// A secret or config of a stack whose data changed (they cannot change).
    #[error(
        "{kind} {name} exists with other data, and {kind}s cannot change: create a new {kind} under another \
         name and update the services to use it"
    )]
    Immutable {
        /// Secret or config.
        kind: Kind,
        /// Its name.
        name: String,
    },
    /// A subnet that overlaps another network's.
    #[error("subnet {asked} overlaps {subnet} of network {network}: choose another subnet")]
    SubnetOverlap {
        /// The subnet asked for.
        asked: ipnet::Ipv4Net,
        /// The other network's subnet.
        subnet: ipnet::Ipv4Net,
        /// The other network.
        network: String,
    },
    /// The address pool has no free subnet of the size networks get.
    #[error("no free /{mask} is left in the address pool {pools:?}: remove networks or widen the pool")]
    PoolExhausted {
        /// The prefix length networks get.
        mask: u8,
        /// The pool's ranges.
        pools: Vec<String>,
    },
    /// Scaling a service that has no replica count.
    #[error("service {service} is {mode}: scale works on replicated services and jobs only")]
    NotScalable {
        /// The service.
        service: String,
        /// Its mode.
        mode: &'static str,
    },
    /// Rolling back a service that was never updated.
    #[error("service {service} has no previous spec to roll back to: it was never updated")]
    NoPreviousSpec {
        /// The service.
        service: String,
    },
    /// A stack naming an external network that does not exist.
    #[error("the stack uses the external network {name:?}, which does not exist: create it first")]
    NoExternalNetwork {
        /// The network's name.
        name: String,
    },
    /// A service name or network alias that another service already answers to on
    /// a network both are on (DNS could not tell them apart).
    #[error(
        "{name:?} is already a name of service {other} on network {network}: choose another name or alias"
    )]
    NameClash {
        /// The name or alias.
        name: String,
        /// The network both are on.
        network: String,
        /// The service that has it.
        other: String,
    },
    /// Attaching a standalone container to a network made without `--attachable`.
    #[error(
        "network {network} is not attachable: only services may join it (create networks for standalone containers with --attachable)"
    )]
    NotAttachable {
        /// The network.
        network: String,
    },
    /// A network with no free address left.
    #[error("no free address is left on network {network} ({subnet}): remove tasks or containers from it")]
    NetworkFull {
        /// The network.
        network: String,
        /// Its subnet.
        subnet: ipnet::Ipv4Net,
    },
    /// A Compose file that cannot become a stack.
    #[error("{0}")]
    Compose(ComposeError),
}

impl From<ValidationErrors> for PlanError {
    fn from(e: ValidationErrors) -> Self {
        PlanError::Invalid(e)
    }
}

/// Finds an object by id, by unique name, or by a unique id prefix (as Docker does).
/// Nodes are also found by hostname.
pub fn find<'a>(store: &'a Store, kind: Kind, key: &str) -> Result<&'a Object, PlanError> {
    if let Some(o) = store.get(kind, key).or_else(|| store.by_name(kind, key)) {
        return Ok(o);
    }
    let not_found = || PlanError::NotFound { kind, id: key.to_owned() };
    if key.is_empty() {
        return Err(not_found());
    }
    if kind == Kind::Node {
        let mut by_host =
            store.list(Kind::Node).filter(|o| matches!(o, Object::Node(n) if n.description.hostname == key));
        if let (Some(o), None) = (by_host.next(), by_host.next()) {
            return Ok(o);
        }
    }
    let mut by_prefix = store.list(kind).filter(|o| o.id().starts_with(key));
    match (by_prefix.next(), by_prefix.next()) {
        (Some(o), None) => Ok(o),
        (Some(_), Some(_)) => Err(PlanError::Ambiguous { kind, id: key.to_owned() }),
        _ => Err(not_found()),
    }
}

/// The stack an object's labels place it in.
pub fn stack_of(labels: &std::collections::BTreeMap<String, String>) -> Option<&str> {
    labels.get(shoal_api::compose::STACK_LABEL).map(String::as_str)
}
