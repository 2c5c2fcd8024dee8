//! Overlay networks: a new network gets a subnet (the one asked for, or the first
//! free one cut from the cluster's address pool), a gateway, and a VXLAN id.

use std::net::Ipv4Addr;

use chrono::{DateTime, Utc};
use ipnet::Ipv4Net;
use shoal_api::cluster::AddressPool;
use shoal_api::node::ContainerAttachment;
use shoal_api::{Meta, Network, NetworkSpec, Node, Validate};

use super::PlanError;
use crate::store::{Kind, Object, Store};

/// The first VXLAN id given out (Swarm's).
pub const FIRST_VNI: u32 = 4096;

/// A new network from `spec`, allocated against the stored networks and `also` (the
/// networks created earlier in the same change).
pub fn create(
    store: &Store,
    spec: NetworkSpec,
    pool: &AddressPool,
    also: &[Network],
    now: DateTime<Utc>,
) -> Result<Network, PlanError> {
    spec.validate()?;
    if let Some(other) = store.by_name(Kind::Network, &spec.name) {
        return Err(PlanError::NameTaken { kind: Kind::Network, name: spec.name, id: other.id().to_owned() });
    }
    let existing: Vec<&Network> = store
        .list(Kind::Network)
        .filter_map(|o| match o {
            Object::Network(n) => Some(n),
            _ => None,
        })
        .chain(also.iter())
        .collect();
    let subnet = match spec.subnet {
        Some(asked) => {
            if let Some(clash) = existing.iter().find(|n| overlaps(&n.subnet, &asked)) {
                return Err(PlanError::SubnetOverlap {
                    asked,
                    subnet: clash.subnet,
                    network: clash.spec.name.clone(),
                });
            }
            asked
        }
        None => free_subnet(pool, &existing).ok_or_else(|| PlanError::PoolExhausted {
            mask: pool.mask_length,
            pools: pool.pools.iter().map(ToString::to_string).collect(),
        })?,
    };
    let gateway = spec.gateway.unwrap_or_else(|| first_host(&subnet));
    let mut vni = FIRST_VNI;
    while existing.iter().any(|n| n.vni == vni) {
        vni += 1;
    }
    Ok(Network { id: shoal_api::object::new_id(), meta: Meta::new(now), spec, subnet, gateway, vni })
}

/// `node` with standalone container `container_id` attached to the attachable network
/// `target` at a free address (the node as it is, if the container is on it already).
pub fn attach(
    store: &Store,
    node: &Node,
    target: &str,
    container_id: &str,
    now: DateTime<Utc>,
) -> Result<(Node, ContainerAttachment), PlanError> {
    let net = crate::store::queries::network(store, target)
        .ok_or_else(|| PlanError::NotFound { kind: Kind::Network, id: target.to_owned() })?;
    if !net.spec.attachable {
        return Err(PlanError::NotAttachable { network: net.spec.name.clone() });
    }
    if let Some(a) =
        node.attachments.iter().find(|a| a.container_id == container_id && a.network_id == net.id)
    {
        return Ok((node.clone(), a.clone()));
    }
    let addr = super::addresses::Round::new(store)
        .take(net)
        .ok_or_else(|| PlanError::NetworkFull { network: net.spec.name.clone(), subnet: net.subnet })?;
    let a = ContainerAttachment { container_id: container_id.to_owned(), network_id: net.id.clone(), addr };
    let mut n = node.clone();
    n.attachments.push(a.clone());
    n.meta.updated_at = now;
    Ok((n, a))
}

/// `node` without standalone container `container_id`'s attachments, if it had any.
pub fn detach(node: &Node, container_id: &str, now: DateTime<Utc>) -> Option<Node> {
    if !node.attachments.iter().any(|a| a.container_id == container_id) {
        return None;
    }
    let mut n = node.clone();
    n.attachments.retain(|a| a.container_id != container_id);
    n.meta.updated_at = now;
    Some(n)
}

fn overlaps(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

fn first_host(net: &Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(net.network()).saturating_add(1))
}

fn free_subnet(pool: &AddressPool, existing: &[&Network]) -> Option<Ipv4Net> {
    for range in &pool.pools {
        let Ok(mut subnets) = range.subnets(pool.mask_length) else { continue };
        if let Some(free) = subnets.find(|s| !existing.iter().any(|n| overlaps(&n.subnet, s))) {
            return Some(free);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Change, Transaction};

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).expect("valid time")
    }

    #[test]
    fn subnets_and_vnis_are_the_first_free_ones() {
        let mut store = Store::new();
        let pool = AddressPool::default();
        let a = create(&store, NetworkSpec::new("a"), &pool, &[], now()).expect("created");
        assert_eq!(
            (a.subnet.to_string(), a.gateway.to_string(), a.vni),
            ("10.0.0.0/24".into(), "10.0.0.1".into(), 4096)
        );
        let b =
            create(&store, NetworkSpec::new("b"), &pool, std::slice::from_ref(&a), now()).expect("created");
        assert_eq!((b.subnet.to_string(), b.vni), ("10.0.1.0/24".into(), 4097));
        let tx = Transaction { changes: vec![Change::Create { object: Object::Network(a.clone()) }] };
        store.apply(1, tx).expect("stored");
        let mut spec = NetworkSpec::new("c");
        spec.subnet = Some("10.0.0.128/25".parse().expect("net"));
        let err = create(&store, spec, &pool, &[], now()).expect_err("overlap");
        assert!(err.to_string().contains("overlaps 10.0.0.0/24 of network a"), "{err}");
        assert!(matches!(
            create(&store, NetworkSpec::new("a"), &pool, &[], now()),
            Err(PlanError::NameTaken { .. })
        ));
    }

    #[test]
    fn a_full_pool_is_a_clear_error() {
        let store = Store::new();
        let pool = AddressPool { pools: vec!["192.168.0.0/24".parse().expect("net")], mask_length: 24 };
        let a = create(&store, NetworkSpec::new("a"), &pool, &[], now()).expect("created");
        let err = create(&store, NetworkSpec::new("b"), &pool, &[a], now()).expect_err("full");
        assert!(matches!(err, PlanError::PoolExhausted { mask: 24, .. }), "{err:?}");
        assert!(err.to_string().contains("no free /24"), "{err}");
    }
}
