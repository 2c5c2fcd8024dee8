//! Links, addresses, routes, neighbours and FDB entries of one namespace, over an
//! rtnetlink socket made inside that namespace (see [`super::netns`]).
//!
//! A thin layer: each call is one request, named for what it does, and errors carry
//! what was being done. The connection task is aborted when the [`Nl`] is dropped.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd};

use futures::TryStreamExt;
use ipnet::Ipv4Net;
use netlink_packet_route::AddressFamily;
use netlink_packet_route::address::AddressAttribute;
use netlink_packet_route::link::{InfoData, InfoKind, InfoVxlan, LinkAttribute, LinkInfo, LinkMessage};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use rtnetlink::sys::{Socket, TokioSocket, protocols::NETLINK_ROUTE};
use rtnetlink::{Handle, RouteMessageBuilder};
use tokio::task::JoinHandle;

use super::NetworkError;
use super::netns::Netns;

/// `EEXIST`, as netlink reports it (negated).
const EEXIST: i32 = -libc::EEXIST;
/// `ENOENT`, and `ESRCH` (what the kernel says when an FDB entry is missing).
const MISSING: [i32; 3] = [-libc::ENOENT, -libc::ESRCH, -libc::ENODEV];

/// One link as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Link {
    pub(crate) index: u32,
    pub(crate) name: String,
    pub(crate) kind: Option<InfoKind>,
    pub(crate) mtu: u32,
    pub(crate) controller: Option<u32>,
    /// The VXLAN id, for VXLAN links.
    pub(crate) vni: Option<u32>,
    /// The VXLAN UDP port, for VXLAN links.
    pub(crate) vxlan_port: Option<u16>,
}

impl Link {
    fn parse(m: &LinkMessage) -> Link {
        let mut link = Link {
            index: m.header.index,
            name: String::new(),
            kind: None,
            mtu: 0,
            controller: None,
            vni: None,
            vxlan_port: None,
        };
        for a in &m.attributes {
            match a {
                LinkAttribute::IfName(n) => link.name = n.clone(),
                LinkAttribute::Mtu(m) => link.mtu = *m,
                LinkAttribute::Controller(c) => link.controller = Some(*c),
                LinkAttribute::LinkInfo(infos) => {
                    for i in infos {
                        match i {
                            LinkInfo::Kind(k) => link.kind = Some(k.clone()),
                            LinkInfo::Data(InfoData::Vxlan(v)) => {
                                for x in v {
                                    match x {
                                        InfoVxlan::Id(id) => link.vni = Some(*id),
                                        InfoVxlan::Port(p) => link.vxlan_port = Some(*p),
                                        _ => {}
                                    }
                                }
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        link
    }
}

/// An rtnetlink connection bound to one namespace.
#[derive(Debug)]
pub(crate) struct Nl {
    handle: Handle,
    task: JoinHandle<()>,
    ns: String,
}

impl Drop for Nl {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Nl {
    /// Opens a connection whose socket lives in `ns`.
    pub(crate) async fn open(ns: &Netns) -> Result<Nl, NetworkError> {
        let fd: OwnedFd = ns
            .run(|| {
                Socket::new(NETLINK_ROUTE).map(|s| {
                    // SAFETY: into_raw_fd gives up the socket's ownership of the descriptor,
                    // which the OwnedFd then owns alone.
                    unsafe { OwnedFd::from_raw_fd(s.into_raw_fd()) }
                })
            })
            .await?
            .map_err(|e| NetworkError::io("make a netlink socket", e))?;
        // SAFETY: the descriptor is a netlink socket nothing else owns; TokioSocket takes
        // it over (and makes it non-blocking).
        let socket = unsafe { TokioSocket::from_raw_fd(fd.into_raw_fd()) };
        let (conn, handle, _) = rtnetlink::from_socket(socket);
        let task = tokio::spawn(conn);
        Ok(Nl { handle, task, ns: ns.name().to_string() })
    }

    fn err(&self, what: impl std::fmt::Display, source: rtnetlink::Error) -> NetworkError {
        NetworkError::Netlink { what: format!("{what} in {}", self.ns), source }
    }

    /// All links.
    pub(crate) async fn links(&self) -> Result<Vec<Link>, NetworkError> {
        let msgs: Vec<LinkMessage> =
            self.handle.link().get().execute().try_collect().await.map_err(|e| self.err("list links", e))?;
        Ok(msgs.iter().map(Link::parse).collect())
    }

    /// The link called `name`, if any.
    pub(crate) async fn link(&self, name: &str) -> Result<Option<Link>, NetworkError> {
        Ok(self.links().await?.into_iter().find(|l| l.name == name))
    }

    /// Creates a link from a built message.
    pub(crate) async fn add(&self, what: &str, msg: LinkMessage) -> Result<(), NetworkError> {
        self.handle.link().add(msg).execute().await.map_err(|e| self.err(format!("create {what}"), e))
    }

    /// Changes a link from a built message.
    pub(crate) async fn set(&self, what: &str, msg: LinkMessage) -> Result<(), NetworkError> {
        self.handle.link().set(msg).execute().await.map_err(|e| self.err(format!("change {what}"), e))
    }

    /// Changes a bridge port's settings.
    pub(crate) async fn set_port(&self, what: &str, msg: LinkMessage) -> Result<(), NetworkError> {
        self.handle
            .link()
            .set_port(msg)
            .execute()
            .await
            .map_err(|e| self.err(format!("change bridge port {what}"), e))
    }

    /// Deletes a link; nothing if it is gone already.
    pub(crate) async fn del(&self, link: &Link) -> Result<(), NetworkError> {
        match self.handle.link().del(link.index).execute().await {
            Err(e) if is_code(&e, &MISSING) => Ok(()),
            r => r.map_err(|e| self.err(format!("delete link {}", link.name), e)),
        }
    }

    /// The IPv4 addresses on a link.
    pub(crate) async fn addrs(&self, index: u32) -> Result<Vec<Ipv4Net>, NetworkError> {
        let msgs: Vec<_> = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute()
            .try_collect()
            .await
            .map_err(|e| self.err("list addresses", e))?;
        let mut out = Vec::new();
        for m in msgs {
            for a in &m.attributes {
                if let AddressAttribute::Address(IpAddr::V4(ip)) = a
                    && let Ok(net) = Ipv4Net::new(*ip, m.header.prefix_len)
                {
                    out.push(net);
                }
            }
        }
        Ok(out)
    }

    /// Puts an address on a link; nothing if it is there already.
    pub(crate) async fn add_addr(&self, index: u32, addr: Ipv4Net) -> Result<(), NetworkError> {
        match self.handle.address().add(index, IpAddr::V4(addr.addr()), addr.prefix_len()).execute().await {
            Err(e) if is_code(&e, &[EEXIST]) => Ok(()),
            r => r.map_err(|e| self.err(format!("add address {addr}"), e)),
        }
    }

    /// Sets the default route via `gateway`, replacing any.
    pub(crate) async fn default_route(&self, gateway: Ipv4Addr) -> Result<(), NetworkError> {
        let msg = RouteMessageBuilder::<Ipv4Addr>::new().gateway(gateway).build();
        self.handle
            .route()
            .add(msg)
            .replace()
            .execute()
            .await
            .map_err(|e| self.err(format!("set the default route via {gateway}"), e))
    }

    /// `ip neigh replace <ip> lladdr <mac> dev <index> nud permanent`.
    pub(crate) async fn neigh_replace(
        &self,
        index: u32,
        ip: Ipv4Addr,
        mac: [u8; 6],
    ) -> Result<(), NetworkError> {
        self.handle
            .neighbours()
            .add(index, IpAddr::V4(ip))
            .link_layer_address(&mac)
            .replace()
            .execute()
            .await
            .map_err(|e| self.err(format!("add neighbour {ip}"), e))
    }

    /// `ip neigh del <ip> dev <index>`; nothing if it is gone.
    pub(crate) async fn neigh_del(&self, index: u32, ip: Ipv4Addr) -> Result<(), NetworkError> {
        let mut msg = NeighbourMessage::default();
        msg.header.family = AddressFamily::Inet;
        msg.header.ifindex = index;
        msg.attributes.push(NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)));
        match self.handle.neighbours().del(msg).execute().await {
            Err(e) if is_code(&e, &MISSING) => Ok(()),
            r => r.map_err(|e| self.err(format!("delete neighbour {ip}"), e)),
        }
    }

    /// `bridge fdb replace <mac> dev <index> dst <vtep> self permanent`.
    pub(crate) async fn fdb_replace(
        &self,
        index: u32,
        mac: [u8; 6],
        vtep: Ipv4Addr,
    ) -> Result<(), NetworkError> {
        let mut req = self.handle.neighbours().add_bridge(index, &mac).replace();
        let m = req.message_mut();
        m.header.flags = NeighbourFlags::Own;
        m.attributes.push(NeighbourAttribute::Destination(NeighbourAddress::Inet(vtep)));
        req.execute().await.map_err(|e| self.err(format!("add FDB entry for VTEP {vtep}"), e))
    }

    /// `bridge fdb del <mac> dev <index> dst <vtep> self`; nothing if it is gone.
    pub(crate) async fn fdb_del(&self, index: u32, mac: [u8; 6], vtep: Ipv4Addr) -> Result<(), NetworkError> {
        let mut msg = NeighbourMessage::default();
        msg.header.family = AddressFamily::Bridge;
        msg.header.ifindex = index;
        msg.header.flags = NeighbourFlags::Own;
        msg.attributes.push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
        msg.attributes.push(NeighbourAttribute::Destination(NeighbourAddress::Inet(vtep)));
        match self.handle.neighbours().del(msg).execute().await {
            Err(e) if is_code(&e, &MISSING) => Ok(()),
            r => r.map_err(|e| self.err(format!("delete FDB entry for VTEP {vtep}"), e)),
        }
    }

    /// The permanent IPv4 neighbours of a link: IP -> MAC.
    pub(crate) async fn neighbours(&self, index: u32) -> Result<BTreeMap<Ipv4Addr, [u8; 6]>, NetworkError> {
        let msgs: Vec<NeighbourMessage> = self
            .handle
            .neighbours()
            .get()
            .set_address_family(AddressFamily::Inet)
            .execute()
            .try_collect()
            .await
            .map_err(|e| self.err("list neighbours", e))?;
        let mut out = BTreeMap::new();
        for m in
            msgs.iter().filter(|m| m.header.ifindex == index && m.header.state == NeighbourState::Permanent)
        {
            let ip = m.attributes.iter().find_map(|a| match a {
                NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => Some(*ip),
                _ => None,
            });
            let mac = m.attributes.iter().find_map(|a| match a {
                NeighbourAttribute::LinkLayerAddress(l) => <[u8; 6]>::try_from(l.as_slice()).ok(),
                _ => None,
            });
            if let (Some(ip), Some(mac)) = (ip, mac) {
                out.insert(ip, mac);
            }
        }
        Ok(out)
    }

    /// The `self` FDB entries of a link that have a remote destination: (MAC, VTEP).
    pub(crate) async fn fdb(&self, index: u32) -> Result<Vec<([u8; 6], Ipv4Addr)>, NetworkError> {
        let msgs: Vec<NeighbourMessage> = self
            .handle
            .neighbours()
            .get()
            .set_address_family(AddressFamily::Bridge)
            .execute()
            .try_collect()
            .await
            .map_err(|e| self.err("list FDB entries", e))?;
        let mut out = Vec::new();
        for m in msgs.iter().filter(|m| m.header.ifindex == index) {
            let dst = m.attributes.iter().find_map(|a| match a {
                NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => Some(*ip),
                _ => None,
            });
            let mac = m.attributes.iter().find_map(|a| match a {
                NeighbourAttribute::LinkLayerAddress(l) => <[u8; 6]>::try_from(l.as_slice()).ok(),
                _ => None,
            });
            if let (Some(dst), Some(mac)) = (dst, mac) {
                out.push((mac, dst));
            }
        }
        Ok(out)
    }
}

/// Whether a netlink error carries one of `codes` (negated errnos).
fn is_code(e: &rtnetlink::Error, codes: &[i32]) -> bool {
    matches!(e, rtnetlink::Error::NetlinkError(m) if codes.contains(&m.raw_code()))
}
