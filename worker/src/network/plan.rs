//! The data plane's record of what it applied, and the decisions it takes from that
//! record and the desired state, without touching the kernel: which overlays to remake,
//! which peers to add or remove, whether a sandbox's interfaces must be remade, which
//! gateway address a task gets, which nftables services each table should hold, and
//! how to adopt what a resync found. [`super::dataplane`] executes them.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, TcpListener, UdpSocket};

use ipnet::Ipv4Net;
use shoal_api::network::ENCRYPTED_OVERHEAD;

use super::NetworkError;
use super::desired::{Ingress, NodeNet, OverlayNet, Proto, Sandbox};
use super::nft::{HostDnat, Services, SvcTarget};

/// VXLAN's overhead on an IPv4 underlay (outer IP, UDP, VXLAN and inner Ethernet headers).
pub(crate) const VXLAN_OVERHEAD: u32 = 50;
/// The smallest MTU IPv4 allows.
pub(crate) const MIN_MTU: u32 = 68;

/// A remote endpoint: its overlay address and its node's VTEP.
pub(crate) type Peer = (Ipv4Addr, Ipv4Addr);
/// A VXLAN FDB entry: a MAC and the VTEP it lives behind.
pub(crate) type FdbEntry = ([u8; 6], Ipv4Addr);

/// What was applied, as far as this process knows.
#[derive(Debug, Default)]
pub(crate) struct Applied {
    pub(crate) gw_bridge: bool,
    pub(crate) nets: BTreeMap<String, NetState>,
    pub(crate) sandboxes: BTreeMap<String, SbState>,
    /// The host NAT table's last text; `None` if unknown.
    pub(crate) nat: Option<String>,
    /// `Some` while an ingress link or table may exist.
    pub(crate) ingress: Option<IngressState>,
    /// Published ports held bound, so that no host process takes them.
    pub(crate) reserved: BTreeMap<(Proto, u16), Reservation>,
}

/// One overlay network as applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NetState {
    pub(crate) vni: u32,
    /// The gateway with the subnet's prefix, as on `br0`.
    pub(crate) gateway: Ipv4Net,
    pub(crate) mtu: u32,
    /// Carried by the forwarder over a TAP, not by a VXLAN device.
    pub(crate) encrypted: bool,
    pub(crate) peers: BTreeMap<Ipv4Addr, Ipv4Addr>,
}

impl NetState {
    /// A freshly made overlay: no peers yet.
    pub(crate) fn new(net: &OverlayNet) -> NetState {
        NetState {
            vni: net.vni,
            gateway: gateway_net(net),
            mtu: net.mtu,
            encrypted: net.encrypted,
            peers: BTreeMap::new(),
        }
    }
}

/// One sandbox as applied.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct SbState {
    /// (network id, address) of eth0, eth1, ...; an empty id is an interface to remake.
    pub(crate) links: Vec<(String, Ipv4Net)>,
    /// The gateway-bridge address (the last eth), if any.
    pub(crate) gw: Option<Ipv4Net>,
    /// The LB services in the sandbox; `None` if unknown.
    pub(crate) lb: Option<Services>,
    /// The DNS redirect; `None` if unknown.
    pub(crate) dns: Option<Option<(u16, u16)>>,
}

/// The routing mesh as applied.
#[derive(Debug, Default)]
pub(crate) struct IngressState {
    /// The node's address on the ingress link, if the link is there.
    pub(crate) addr: Option<Ipv4Net>,
    /// The ingress table's services; `None` if unknown.
    pub(crate) table: Option<Services>,
}

/// A published port held bound.
#[derive(Debug)]
#[allow(dead_code)] // held only to keep the port bound
pub(crate) enum Reservation {
    Tcp(TcpListener),
    Udp(UdpSocket),
}

/// Refuses a desired state the kernel cannot carry: MTUs without room for VXLAN, task
/// ids that cannot name a file.
pub(crate) fn check(want: &NodeNet, underlay_mtu: u32) -> Result<(), NetworkError> {
    for net in want.networks.values() {
        let (what, overhead) = if net.encrypted {
            ("an encrypted overlay", ENCRYPTED_OVERHEAD)
        } else {
            ("VXLAN", VXLAN_OVERHEAD)
        };
        let room = underlay_mtu.saturating_sub(overhead);
        let why = if net.mtu < MIN_MTU {
            format!(
                "IPv4 needs at least {MIN_MTU}; use at most {room} (the underlay's {underlay_mtu} less {what}'s {overhead})"
            )
        } else if net.mtu > room {
            format!("{what} needs {overhead} bytes of the underlay's {underlay_mtu}: use at most {room}")
        } else {
            continue;
        };
        return Err(NetworkError::Mtu { network: net.id.clone(), mtu: net.mtu, why });
    }
    for id in want.sandboxes.keys() {
        check_task_id(id)?;
    }
    Ok(())
}

/// Overlays applied that `want` no longer has, or wants with another VNI, gateway or MTU:
/// they are removed (and made again if still wanted).
pub(crate) fn stale_networks(applied: &Applied, want: &NodeNet) -> Vec<String> {
    applied
        .nets
        .iter()
        .filter(|(id, s)| {
            want.networks.get(*id).is_none_or(|n| {
                n.vni != s.vni || gateway_net(n) != s.gateway || n.mtu != s.mtu || n.encrypted != s.encrypted
            })
        })
        .map(|(id, _)| id.clone())
        .collect()
}

/// The peer entries to remove, then to add (or replace), turning `old` into `new`.
pub(crate) fn peer_changes(
    old: &BTreeMap<Ipv4Addr, Ipv4Addr>,
    new: &BTreeMap<Ipv4Addr, Ipv4Addr>,
) -> (Vec<Peer>, Vec<Peer>) {
    let remove = old.iter().filter(|(ip, vtep)| new.get(*ip) != Some(*vtep)).map(|(a, b)| (*a, *b)).collect();
    let add = new.iter().filter(|(ip, vtep)| old.get(*ip) != Some(*vtep)).map(|(a, b)| (*a, *b)).collect();
    (remove, add)
}

/// Whether a sandbox's interfaces must be remade: it is new, its attachments or egress
/// changed, or one of its overlays was just made again (its veths died with the old one).
pub(crate) fn needs_relink(cur: Option<&SbState>, sb: &Sandbox, remade: &BTreeSet<String>) -> bool {
    let want: Vec<(String, Ipv4Net)> =
        sb.attachments.iter().map(|a| (a.network_id.clone(), a.addr)).collect();
    cur.is_none_or(|c| {
        c.links != want || c.gw.is_some() != sb.egress || want.iter().any(|(n, _)| remade.contains(n))
    })
}

/// A gateway-bridge address for `task`: from a hash of its id, probing past `in_use`;
/// the pool's first address is the bridge's.
pub(crate) fn allocate_gw(
    pool: Ipv4Net,
    task: &str,
    in_use: &BTreeSet<Ipv4Addr>,
) -> Result<Ipv4Net, NetworkError> {
    let size = 1u64 << (32 - pool.prefix_len());
    let usable = size.saturating_sub(3); // network, bridge, broadcast
    let base = u64::from(u32::from(pool.network()));
    let start = u64::from(fnv(task)) % usable.max(1);
    for k in 0..usable {
        let off = 2 + (start + k) % usable;
        let addr = Ipv4Addr::from(((base + off) & 0xffff_ffff) as u32);
        if !in_use.contains(&addr) {
            return Ipv4Net::new(addr, pool.prefix_len()).map_err(|e| NetworkError::Config(e.to_string()));
        }
    }
    Err(NetworkError::PoolExhausted(pool))
}

/// The VIP services a sandbox's LB table should hold.
pub(crate) fn lb_services(sb: &Sandbox) -> Services {
    sb.lb
        .iter()
        .map(|r| {
            ((Some(r.vip), r.protocol, r.port), SvcTarget { backends: r.backends.clone(), port: r.port })
        })
        .collect()
}

/// The published ports: every ingress and host-mode one.
pub(crate) fn published_ports(want: &NodeNet) -> BTreeSet<(Proto, u16)> {
    let mut ports: BTreeSet<_> = want.host_ports.iter().map(|p| (p.protocol, p.published)).collect();
    if let Some(ing) = &want.ingress {
        ports.extend(ing.ports.iter().map(|p| (p.protocol, p.published)));
    }
    ports
}

/// The routing mesh's services, for the ports this node holds.
pub(crate) fn ingress_services(ing: &Ingress, held: &BTreeMap<(Proto, u16), Reservation>) -> Services {
    ing.ports
        .iter()
        .filter(|p| held.contains_key(&(p.protocol, p.published)))
        .map(|p| {
            ((None, p.protocol, p.published), SvcTarget { backends: p.backends.clone(), port: p.target })
        })
        .collect()
}

/// Host-mode ports resolved to their task's gateway-bridge address, for the ports this
/// node holds and the tasks that have one.
pub(crate) fn host_dnats(want: &NodeNet, applied: &Applied) -> Vec<HostDnat> {
    want.host_ports
        .iter()
        .filter(|p| applied.reserved.contains_key(&(p.protocol, p.published)))
        .filter_map(|p| {
            let gw = applied.sandboxes.get(&p.task_id)?.gw?;
            Some(HostDnat { protocol: p.protocol, published: p.published, to: gw.addr(), target: p.target })
        })
        .collect()
}

/// Adopts a sandbox's interfaces found by a resync, `(N of ethN, address)`: the last one
/// is the gateway attachment if its address is in `pool`; the others are adopted only
/// where `want` puts them, anything else gets an empty network id and is remade. Tables
/// are unknown, so they are remade.
pub(crate) fn adopt_sandbox(mut eths: Vec<(u32, Ipv4Net)>, sb: &Sandbox, pool: Ipv4Net) -> SbState {
    eths.sort();
    let mut s = SbState::default();
    if let Some((_, last)) = eths.last()
        && pool.contains(&last.addr())
    {
        s.gw = Some(*last);
        eths.pop();
    }
    for (i, (n, addr)) in eths.iter().enumerate() {
        let id = sb
            .attachments
            .get(i)
            .filter(|a| a.addr == *addr && *n as usize == i)
            .map_or_else(String::new, |a| a.network_id.clone());
        s.links.push((id, *addr));
    }
    s
}

/// Pairs a VXLAN device's permanent neighbours (IP -> MAC) with its FDB entries (MAC ->
/// VTEP) into peers; returns the peers, the neighbours without an FDB entry and the FDB
/// entries without a neighbour (both to delete).
pub(crate) fn adopt_peers(
    neighbours: &BTreeMap<Ipv4Addr, [u8; 6]>,
    fdb: &[FdbEntry],
) -> (BTreeMap<Ipv4Addr, Ipv4Addr>, Vec<Ipv4Addr>, Vec<FdbEntry>) {
    let mut peers = BTreeMap::new();
    let mut lone_neighbours = Vec::new();
    for (ip, mac) in neighbours {
        match fdb.iter().find(|(m, _)| m == mac) {
            Some((_, vtep)) => {
                peers.insert(*ip, *vtep);
            }
            None => lone_neighbours.push(*ip),
        }
    }
    let lone_fdb = fdb.iter().filter(|(mac, _)| !neighbours.values().any(|m| m == mac)).copied().collect();
    (peers, lone_neighbours, lone_fdb)
}

/// The largest MTU a veth device takes (the kernel's `ETH_MAX_MTU`).
const VETH_MAX_MTU: u32 = 65535;

/// The MTU of a task's link to the gateway bridge: the underlay's, but never more
/// than a veth takes (an underlay on loopback has 65536, which the kernel refuses).
pub(crate) fn gateway_mtu(underlay_mtu: u32) -> u32 {
    underlay_mtu.min(VETH_MAX_MTU)
}

/// The gateway with the subnet's prefix, as it sits on the overlay's bridge.
pub(crate) fn gateway_net(n: &OverlayNet) -> Ipv4Net {
    Ipv4Net::new(n.gateway, n.subnet.prefix_len()).unwrap_or_default()
}

/// Task ids name namespace files.
pub(crate) fn check_task_id(id: &str) -> Result<(), NetworkError> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id != "."
        && id != ".."
        && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok { Ok(()) } else { Err(NetworkError::BadTaskId(id.to_string())) }
}

/// FNV-1a: a stable hash for names and addresses derived from task ids.
pub(crate) fn fnv(s: &str) -> u32 {
    s.bytes().fold(0x811c_9dc5u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::desired::{Attachment, LbRule};

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().expect("ip")
    }

    fn cidr(s: &str) -> Ipv4Net {
        s.parse().expect("cidr")
    }

    fn overlay(id: &str, mtu: u32) -> OverlayNet {
        OverlayNet {
            id: id.into(),
            vni: 4097,
            subnet: cidr("10.9.0.0/24"),
            gateway: ip("10.9.0.1"),
            mtu,
            internal: false,
            encrypted: false,
            peers: BTreeMap::new(),
        }
    }

    fn sandbox(atts: &[(&str, &str)], egress: bool) -> Sandbox {
        Sandbox {
            task_id: "t".into(),
            attachments: atts
                .iter()
                .map(|(n, a)| Attachment { network_id: (*n).into(), addr: cidr(a) })
                .collect(),
            egress,
            ..Sandbox::default()
        }
    }

    #[test]
    fn mtus_need_room_for_vxlan_and_ipv4s_minimum() {
        let mut want = NodeNet::default();
        want.networks.insert("n".into(), overlay("n", 1450));
        assert!(check(&want, 1500).is_ok());
        let err = check(&want, 1400).expect_err("too large for the underlay").to_string();
        assert!(err.contains("MTU 1450") && err.contains("use at most 1350"), "{err}");
        want.networks.insert("n".into(), overlay("n", 60));
        assert!(check(&want, 1500).expect_err("too small").to_string().contains("at least 68"));
    }

    #[test]
    fn task_ids_must_be_file_names() {
        assert!(check_task_id("abc-1.x_2").is_ok());
        for bad in ["", "..", "a/b", "a b"] {
            assert!(matches!(check_task_id(bad), Err(NetworkError::BadTaskId(_))), "{bad:?}");
        }
    }

    #[test]
    fn an_overlay_is_remade_when_its_shape_changes_not_its_peers() {
        let mut applied = Applied::default();
        applied.nets.insert("n".into(), NetState::new(&overlay("n", 1450)));
        applied.nets.insert("gone".into(), NetState::new(&overlay("gone", 1450)));
        let mut want = NodeNet::default();
        let mut n = overlay("n", 1450);
        n.peers.insert(ip("10.9.0.3"), ip("192.0.2.2"));
        want.networks.insert("n".into(), n.clone());
        assert_eq!(stale_networks(&applied, &want), vec!["gone".to_string()]);
        n.mtu = 1400;
        want.networks.insert("n".into(), n);
        assert_eq!(stale_networks(&applied, &want), vec!["gone".to_string(), "n".to_string()]);
    }

    #[test]
    fn peers_change_entry_by_entry() {
        let old = BTreeMap::from([(ip("10.9.0.3"), ip("192.0.2.2")), (ip("10.9.0.4"), ip("192.0.2.2"))]);
        let new = BTreeMap::from([
            (ip("10.9.0.3"), ip("192.0.2.2")),
            (ip("10.9.0.4"), ip("192.0.2.3")),
            (ip("10.9.0.5"), ip("192.0.2.3")),
        ]);
        let (remove, add) = peer_changes(&old, &new);
        assert_eq!(remove, vec![(ip("10.9.0.4"), ip("192.0.2.2"))]);
        assert_eq!(add, vec![(ip("10.9.0.4"), ip("192.0.2.3")), (ip("10.9.0.5"), ip("192.0.2.3"))]);
        assert_eq!(peer_changes(&new, &new), (vec![], vec![]));
    }

    #[test]
    fn a_sandbox_is_relinked_when_new_changed_or_its_overlay_was_remade() {
        let sb = sandbox(&[("n", "10.9.0.2/24")], true);
        let remade = BTreeSet::new();
        assert!(needs_relink(None, &sb, &remade));
        let cur = SbState {
            links: vec![("n".into(), cidr("10.9.0.2/24"))],
            gw: Some(cidr("172.18.0.5/16")),
            ..SbState::default()
        };
        assert!(!needs_relink(Some(&cur), &sb, &remade));
        assert!(needs_relink(Some(&cur), &sb, &BTreeSet::from(["n".to_string()])));
        assert!(needs_relink(Some(&cur), &sandbox(&[("n", "10.9.0.2/24")], false), &remade));
        assert!(needs_relink(Some(&cur), &sandbox(&[("n", "10.9.0.7/24")], true), &remade));
    }

    #[test]
    fn gateway_links_take_the_underlays_mtu_up_to_what_a_veth_takes() {
        assert_eq!(gateway_mtu(1500), 1500);
        assert_eq!(gateway_mtu(65536), 65535, "loopback's MTU is one more than a veth takes");
    }

    #[test]
    fn gateway_addresses_are_stable_distinct_and_skip_the_bridge() {
        let pool = cidr("172.18.0.0/29"); // hosts .1 (bridge) to .6
        let a = allocate_gw(pool, "task-a", &BTreeSet::new()).expect("an address");
        assert_eq!(a, allocate_gw(pool, "task-a", &BTreeSet::new()).expect("the same"));
        let mut used = BTreeSet::new();
        for _ in 0..5 {
            let g = allocate_gw(pool, "task-a", &used).expect("room");
            assert!(
                g.addr() != ip("172.18.0.1") && g.addr() != ip("172.18.0.7") && g.addr() != ip("172.18.0.0")
            );
            assert!(used.insert(g.addr()), "{g} given twice");
        }
        assert!(matches!(allocate_gw(pool, "task-a", &used), Err(NetworkError::PoolExhausted(_))));
    }

    #[test]
    fn lb_and_published_ports_come_from_the_desired_state() {
        let mut sb = sandbox(&[], false);
        sb.lb = vec![LbRule {
            vip: ip("10.9.0.100"),
            protocol: Proto::Udp,
            port: 53,
            backends: vec![ip("10.9.0.3")],
        }];
        let lb = lb_services(&sb);
        assert_eq!(lb[&(Some(ip("10.9.0.100")), Proto::Udp, 53)].backends, vec![ip("10.9.0.3")]);
        let mut want = NodeNet::default();
        want.host_ports.push(crate::network::desired::HostPort {
            protocol: Proto::Tcp,
            published: 80,
            target: 8080,
            task_id: "t".into(),
        });
        want.ingress = Some(Ingress {
            network_id: "i".into(),
            addr: cidr("10.255.0.2/24"),
            ports: vec![crate::network::desired::IngressPort {
                protocol: Proto::Tcp,
                published: 81,
                target: 80,
                backends: vec![],
            }],
        });
        assert_eq!(published_ports(&want), BTreeSet::from([(Proto::Tcp, 80), (Proto::Tcp, 81)]));
        // Nothing is held yet, so nothing is routed.
        assert!(host_dnats(&want, &Applied::default()).is_empty());
        assert!(ingress_services(want.ingress.as_ref().expect("ingress"), &BTreeMap::new()).is_empty());
    }

    #[test]
    fn a_resync_adopts_interfaces_where_want_puts_them() {
        let pool = cidr("172.18.0.0/16");
        let sb = sandbox(&[("n", "10.9.0.2/24"), ("m", "10.10.0.2/24")], true);
        let found = vec![(2, cidr("172.18.3.4/16")), (0, cidr("10.9.0.2/24")), (1, cidr("10.10.0.9/24"))];
        let s = adopt_sandbox(found, &sb, pool);
        assert_eq!(s.gw, Some(cidr("172.18.3.4/16")));
        assert_eq!(s.links, vec![("n".into(), cidr("10.9.0.2/24")), (String::new(), cidr("10.10.0.9/24"))]);
        assert!(needs_relink(Some(&s), &sb, &BTreeSet::new()), "a misplaced interface is remade");
        assert_eq!((s.lb, s.dns), (None, None), "tables are unknown");
    }

    #[test]
    fn a_resync_pairs_neighbours_with_fdb_entries() {
        let m3 = [2, 0x42, 10, 9, 0, 3];
        let m4 = [2, 0x42, 10, 9, 0, 4];
        let m5 = [2, 0x42, 10, 9, 0, 5];
        let neighbours = BTreeMap::from([(ip("10.9.0.3"), m3), (ip("10.9.0.4"), m4)]);
        let fdb = vec![(m3, ip("192.0.2.2")), (m5, ip("192.0.2.3"))];
        let (peers, lone_n, lone_f) = adopt_peers(&neighbours, &fdb);
        assert_eq!(peers, BTreeMap::from([(ip("10.9.0.3"), ip("192.0.2.2"))]));
        assert_eq!(lone_n, vec![ip("10.9.0.4")]);
        assert_eq!(lone_f, vec![(m5, ip("192.0.2.3"))]);
    }

    #[test]
    fn the_hash_is_stable() {
        assert_eq!(fnv(""), 0x811c_9dc5);
        assert_eq!(fnv("a"), 0xe40c_292c);
    }
}
