//! The data plane: makes the kernel match a [`NodeNet`], remembering what it applied so
//! that the next [`Dataplane::apply`] changes only the differences, and reading the
//! kernel back on [`Dataplane::resync`].
//!
//! Objects are found again by name: overlay namespaces `ov-<vni hex>` and task
//! namespaces `t-<task id>` under `<run_dir>/netns`, links and tables in the daemon's
//! namespace prefixed with [`DataplaneConfig::prefix`]. A task's gateway-bridge address
//! is picked from a hash of the task id (probing past addresses in use) and read back
//! from its interface on resync, so it survives restarts.
//!
//! What a resync cannot read back cheaply (the nftables tables) it remakes atomically,
//! table by table, in one `nft` transaction each.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::PathBuf;

use ipnet::Ipv4Net;
use netlink_packet_route::link::{InfoData, InfoVeth};
use rtnetlink::{LinkBridge, LinkBridgePort, LinkUnspec, LinkVeth, LinkVxlan};
use tokio::sync::Mutex;

use super::NetworkError;
use super::desired::{NodeNet, OverlayNet, Proto, Sandbox, mac_for};
use super::netlink::{Link, Nl};
use super::netns::{self, Netns};
use super::nft::{self, LbTable};
use super::plan::{self, Applied, IngressState, NetState, Reservation, SbState};
use super::sealed::{self, Forwarder};

/// The overlay namespace's bridge.
const BRIDGE: &str = "br0";
/// The overlay-side end of the node's own ingress veth.
const INGRESS_PORT: &str = "ingp";

/// Where and how this node's data plane lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataplaneConfig {
    /// E.g. `<data>/net`: named namespace files live under `run_dir/netns`.
    pub run_dir: PathBuf,
    /// The VXLAN UDP port, the same on every node (default 4789).
    pub vxlan_port: u16,
    /// This node's underlay address: the VTEP.
    pub underlay: Ipv4Addr,
    /// The node-local gateway bridge's subnet (default 172.18.0.0/16).
    pub gateway_pool: Ipv4Net,
    /// A short (at most 5 characters) per-node name prefix for links and tables, so that
    /// several daemons in one test world never clash (default "sh").
    pub prefix: String,
}

impl DataplaneConfig {
    /// The defaults for a node with this run directory and underlay address.
    pub fn new(run_dir: PathBuf, underlay: Ipv4Addr) -> DataplaneConfig {
        DataplaneConfig {
            run_dir,
            vxlan_port: 4789,
            underlay,
            gateway_pool: Ipv4Net::new(Ipv4Addr::new(172, 18, 0, 0), 16).unwrap_or_default(),
            prefix: "sh".into(),
        }
    }
}

/// This node's overlay data plane; see the module doc.
#[derive(Debug)]
pub struct Dataplane {
    cfg: DataplaneConfig,
    /// The daemon's namespace: the one of the thread that called [`Dataplane::start`].
    host: Netns,
    underlay_mtu: u32,
    applied: Mutex<Applied>,
    /// The encrypted overlays' forwarder, started with the first of them.
    sealed: tokio::sync::OnceCell<Forwarder>,
}

impl Dataplane {
    /// Checks the node can carry overlays (the VXLAN port is free, the underlay address
    /// is here), turns on forwarding and raises the neighbour table's limits, all in the
    /// namespace of the calling thread, which becomes "the daemon's namespace". The port
    /// is not probed when overlay namespaces of ours exist already: their VXLAN devices
    /// hold it.
    pub async fn start(cfg: DataplaneConfig) -> Result<Dataplane, NetworkError> {
        if cfg.prefix.is_empty()
            || cfg.prefix.len() > 5
            || !cfg.prefix.chars().all(|c| c.is_ascii_alphanumeric())
        {
            return Err(NetworkError::Config(format!(
                "prefix {:?} must be 1 to 5 letters or digits (it starts link names of at most 15 characters)",
                cfg.prefix
            )));
        }
        if cfg.gateway_pool.prefix_len() > 29 {
            return Err(NetworkError::Config(format!(
                "gateway pool {} is too small: use a /29 or larger",
                cfg.gateway_pool
            )));
        }
        let host = Netns::current()?;
        let ours = netns::list(&cfg.run_dir.join("netns"))?.iter().any(|(n, _)| n.starts_with("ov-"));
        if !ours {
            // An existing overlay of ours holds the port (the kernel's VXLAN socket); only
            // check when there is none.
            let port = cfg.vxlan_port;
            host.run(move || UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port)).map(drop))
                .await?
                .map_err(|source| NetworkError::VxlanPortTaken { port, source })?;
        }
        host.run(tune_sysctls).await??;
        let nl = Nl::open(&host).await?;
        let mut underlay_mtu = None;
        for link in nl.links().await? {
            if nl.addrs(link.index).await?.iter().any(|a| a.addr() == cfg.underlay) {
                underlay_mtu = Some(link.mtu);
            }
        }
        let underlay_mtu = underlay_mtu.ok_or(NetworkError::NoUnderlay(cfg.underlay))?;
        Ok(Dataplane {
            cfg,
            host,
            underlay_mtu,
            applied: Mutex::new(Applied::default()),
            sealed: tokio::sync::OnceCell::new(),
        })
    }

    /// The MTU of the interface holding the underlay address.
    pub fn underlay_mtu(&self) -> u32 {
        self.underlay_mtu
    }

    /// Makes the named network namespace for a task (before its container starts; the
    /// runtime joins it by path), with `lo` up. Idempotent. A namespace made here but
    /// never named in a desired state is removed by the next [`Dataplane::resync`].
    pub async fn create_sandbox(&self, task_id: &str) -> Result<PathBuf, NetworkError> {
        plan::check_task_id(task_id)?;
        let path = self.sandbox_path(task_id);
        let ns = netns::create(&path).await?;
        // Up now, so that the embedded DNS server can bind 127.0.0.11 before any apply.
        Nl::open(&ns).await?.set("lo", LinkUnspec::new_with_name("lo").up().build()).await?;
        Ok(path)
    }

    /// The namespace file of a task's sandbox.
    pub fn sandbox_path(&self, task_id: &str) -> PathBuf {
        self.netns_dir().join(format!("t-{task_id}"))
    }

    /// Makes the kernel match `want`, changing only what differs from what was applied
    /// before. Sandboxes whose namespace does not exist yet are skipped. A failure in one
    /// sandbox or port does not stop the others; the first error is returned.
    pub async fn apply(&self, want: &NodeNet) -> Result<(), NetworkError> {
        let mut applied = self.applied.lock().await;
        self.apply_locked(&mut applied, want).await
    }

    /// As [`apply`](Dataplane::apply), for one sandbox only: its networks (made if
    /// missing, peers synced) and its own interfaces, balancer and DNS redirect. A task
    /// being started needs no more; the other sandboxes learn of it at the next full
    /// `apply`, which gathers every change that came meanwhile. (Every sandbox holds
    /// every VIP of its networks, so wiring all of them for each task that starts would
    /// cost sandboxes × tasks `nft` runs.)
    pub async fn apply_one(&self, want: &NodeNet, task: &str) -> Result<(), NetworkError> {
        let Some(sb) = want.sandboxes.get(task) else { return Ok(()) };
        plan::check(want, self.underlay_mtu)?;
        let mut st = self.applied.lock().await;
        self.sync_sealed(want).await?;
        if !st.gw_bridge {
            self.make_gw_bridge().await?;
            st.gw_bridge = true;
        }
        let stale = plan::stale_networks(&st, want);
        let mut remade = BTreeSet::new();
        for att in &sb.attachments {
            let Some(net) = want.networks.get(&att.network_id) else { continue };
            if stale.contains(&att.network_id) {
                // Remade with another shape: the full apply does it, with its sandboxes.
                return self.apply_locked(&mut st, want).await;
            }
            if !st.nets.contains_key(&att.network_id) {
                self.make_overlay(net).await?;
                st.nets.insert(att.network_id.clone(), NetState::new(net));
                remade.insert(att.network_id.clone());
            }
            if let Some(s) = st.nets.get_mut(&att.network_id) {
                self.sync_peers(net, s).await?;
            }
        }
        let Some(ns) = Netns::open(&self.sandbox_path(task))? else { return Ok(()) };
        self.sync_sandbox(&mut st, want, task, sb, &ns, &remade).await
    }

    /// As [`Dataplane::apply`], but first forgets what was applied and reads what is on
    /// the host: adopts what matches, deletes what is stale.
    pub async fn resync(&self, want: &NodeNet) -> Result<(), NetworkError> {
        let mut applied = self.applied.lock().await;
        let reserved = std::mem::take(&mut applied.reserved);
        *applied = self.observe(want).await?;
        applied.reserved = reserved;
        self.apply_locked(&mut applied, want).await
    }

    /// Removes everything this data plane made: namespaces, links and tables.
    pub async fn teardown(&self) -> Result<(), NetworkError> {
        let mut applied = self.applied.lock().await;
        *applied = Applied::default();
        if let Some(f) = self.sealed.get() {
            f.retain(&[]);
        }
        for (_, path) in netns::list(&self.netns_dir())? {
            netns::remove(&path)?;
        }
        let nl = Nl::open(&self.host).await?;
        for link in nl.links().await? {
            if self.is_host_link(&link.name) {
                nl.del(&link).await?;
            }
        }
        let text = nft::delete_table(&format!("{}-nat", self.cfg.prefix))
            + &nft::delete_table(&format!("{}-ingress", self.cfg.prefix));
        nft::run(&self.host, text).await
    }

    fn netns_dir(&self) -> PathBuf {
        self.cfg.run_dir.join("netns")
    }

    fn overlay_path(&self, vni: u32) -> PathBuf {
        self.netns_dir().join(format!("ov-{vni:06x}"))
    }

    fn vxlan_name(&self, vni: u32) -> String {
        format!("{}vx{vni}", self.cfg.prefix)
    }

    fn gw_bridge(&self) -> String {
        format!("{}gwbr", self.cfg.prefix)
    }

    fn ingress_link(&self) -> String {
        format!("{}ing", self.cfg.prefix)
    }

    fn gw_veth(&self, task_id: &str) -> String {
        format!("{}g{:08x}", self.cfg.prefix, plan::fnv(task_id))
    }

    /// Links of ours in the daemon's namespace.
    fn is_host_link(&self, name: &str) -> bool {
        let Some(rest) = name.strip_prefix(&self.cfg.prefix) else { return false };
        rest == "gwbr"
            || rest == "ing"
            || rest.strip_prefix("vx").is_some_and(|v| !v.is_empty() && v.chars().all(|c| c.is_ascii_digit()))
            || rest
                .strip_prefix('g')
                .is_some_and(|v| v.len() == 8 && v.chars().all(|c| c.is_ascii_hexdigit()))
    }

    /// The encrypted overlays' forwarder, started on first use.
    async fn forwarder(&self) -> Result<&Forwarder, NetworkError> {
        let port = sealed::port_for(self.cfg.vxlan_port);
        self.sealed.get_or_try_init(|| Forwarder::start(&self.host, self.cfg.underlay, port)).await
    }

    /// Hands the keys to the forwarder, and stops it carrying overlays that are gone.
    async fn sync_sealed(&self, want: &NodeNet) -> Result<(), NetworkError> {
        let wanted: Vec<u32> = want.networks.values().filter(|n| n.encrypted).map(|n| n.vni).collect();
        if wanted.is_empty() && self.sealed.get().is_none() {
            return Ok(());
        }
        let fwd = self.forwarder().await?;
        fwd.set_keys(&want.keys)?;
        fwd.retain(&wanted);
        Ok(())
    }

    async fn apply_locked(&self, st: &mut Applied, want: &NodeNet) -> Result<(), NetworkError> {
        plan::check(want, self.underlay_mtu)?;
        self.sync_sealed(want).await?;
        let mut first_err: Option<NetworkError> = None;
        if !st.gw_bridge {
            self.make_gw_bridge().await?;
            st.gw_bridge = true;
        }

        // Overlay networks: remake those that changed shape, then sync peers.
        let mut remade = BTreeSet::new();
        for id in plan::stale_networks(st, want) {
            if let Some(s) = st.nets.remove(&id) {
                netns::remove(&self.overlay_path(s.vni))?;
                remade.insert(id);
            }
        }
        for (id, net) in &want.networks {
            if !st.nets.contains_key(id) {
                self.make_overlay(net).await?;
                st.nets.insert(id.clone(), NetState::new(net));
                remade.insert(id.clone());
            }
            if let Some(s) = st.nets.get_mut(id)
                && let Err(e) = self.sync_peers(net, s).await
            {
                first_err.get_or_insert(e);
            }
        }

        // Sandboxes.
        let gone: Vec<String> =
            st.sandboxes.keys().filter(|t| !want.sandboxes.contains_key(*t)).cloned().collect();
        for task in gone {
            netns::remove(&self.sandbox_path(&task))?;
            st.sandboxes.remove(&task);
        }
        for (task, sb) in &want.sandboxes {
            let Some(ns) = Netns::open(&self.sandbox_path(task))? else {
                st.sandboxes.remove(task);
                continue;
            };
            if let Err(e) = self.sync_sandbox(st, want, task, sb, &ns, &remade).await {
                first_err.get_or_insert(e);
            }
        }

        // Published ports: hold them bound, then the routing mesh and host-mode DNATs.
        if let Err(e) = self.reserve_ports(st, want).await {
            first_err.get_or_insert(e);
        }
        if let Err(e) = self.sync_ingress(st, want, &remade).await {
            first_err.get_or_insert(e);
        }
        let dnats = plan::host_dnats(want, st);
        let text = nft::host_nat(&self.cfg.prefix, &self.gw_bridge(), self.cfg.gateway_pool, &dnats);
        if st.nat.as_ref() != Some(&text) {
            st.nat = None;
            nft::run(&self.host, text.clone()).await?;
            st.nat = Some(text);
        }
        first_err.map_or(Ok(()), Err)
    }

    /// The node's gateway bridge with the pool's first address.
    async fn make_gw_bridge(&self) -> Result<(), NetworkError> {
        let nl = Nl::open(&self.host).await?;
        let name = self.gw_bridge();
        if nl.link(&name).await?.is_none() {
            nl.add(&name, LinkBridge::new(&name).up().build()).await?;
        }
        let link = self.host_link(&nl, &name).await?;
        nl.add_addr(link.index, self.gw_bridge_addr()?).await?;
        nl.set(&name, LinkUnspec::new_with_index(link.index).up().build()).await
    }

    fn gw_bridge_addr(&self) -> Result<Ipv4Net, NetworkError> {
        let pool = self.cfg.gateway_pool;
        let first = pool.hosts().next().ok_or(NetworkError::PoolExhausted(pool))?;
        Ipv4Net::new(first, pool.prefix_len()).map_err(|e| NetworkError::Config(e.to_string()))
    }

    async fn host_link(&self, nl: &Nl, name: &str) -> Result<Link, NetworkError> {
        nl.link(name).await?.ok_or_else(|| NetworkError::Netlink {
            what: format!("find link {name} just made"),
            source: rtnetlink::Error::RequestFailed,
        })
    }

    /// A fresh overlay namespace: `br0` with the gateway, and the VXLAN device made in
    /// the daemon's namespace and moved in.
    async fn make_overlay(&self, net: &OverlayNet) -> Result<(), NetworkError> {
        let path = self.overlay_path(net.vni);
        netns::remove(&path)?;
        let ov = netns::create(&path).await?;
        let ovnl = Nl::open(&ov).await?;
        ovnl.set("lo", LinkUnspec::new_with_name("lo").up().build()).await?;
        ovnl.add(BRIDGE, LinkBridge::new(BRIDGE).mtu(net.mtu).build()).await?;
        let br = self.host_link(&ovnl, BRIDGE).await?;
        ovnl.add_addr(br.index, plan::gateway_net(net)).await?;
        ovnl.set(BRIDGE, LinkUnspec::new_with_index(br.index).up().build()).await?;

        if net.encrypted {
            // A TAP on the bridge; the forwarder seals what it reads from it.
            let fwd = self.forwarder().await?;
            let tap = ov.run(|| sealed::open_tap(sealed::TAP)).await?.map_err(|e| {
                NetworkError::io(format!("make the encrypted overlay's TAP device in {}", path.display()), e)
            })?;
            let link = self.host_link(&ovnl, sealed::TAP).await?;
            let msg = LinkUnspec::new_with_index(link.index).mtu(net.mtu).controller(br.index).up().build();
            ovnl.set(sealed::TAP, msg).await?;
            return fwd.add(net.vni, tap);
        }

        let vx = self.vxlan_name(net.vni);
        let nl = Nl::open(&self.host).await?;
        if let Some(old) = nl.link(&vx).await? {
            nl.del(&old).await?;
        }
        let msg = LinkVxlan::new(&vx, net.vni)
            .port(self.cfg.vxlan_port)
            .local(self.cfg.underlay)
            .learning(false)
            .proxy(true)
            .mtu(net.mtu)
            .build();
        nl.add(&vx, msg).await?;
        nl.set(&vx, LinkUnspec::new_with_name(&vx).setns_by_fd(ov.fd().as_raw_fd()).build()).await?;
        let link = self.host_link(&ovnl, &vx).await?;
        ovnl.set(&vx, LinkUnspec::new_with_index(link.index).controller(br.index).up().build()).await
    }

    /// Makes the overlay's remote peers match, entry by entry.
    async fn sync_peers(&self, net: &OverlayNet, s: &mut NetState) -> Result<(), NetworkError> {
        if s.peers == net.peers {
            return Ok(());
        }
        if net.encrypted {
            self.forwarder().await?.set_peers(net.vni, &net.peers);
            s.peers.clone_from(&net.peers);
            return Ok(());
        }
        let ov = Netns::open(&self.overlay_path(net.vni))?.ok_or_else(|| {
            NetworkError::netns(self.overlay_path(net.vni), "open", std::io::ErrorKind::NotFound.into())
        })?;
        let nl = Nl::open(&ov).await?;
        let vx = self.host_link(&nl, &self.vxlan_name(net.vni)).await?;
        let (remove, add) = plan::peer_changes(&s.peers, &net.peers);
        for (ip, vtep) in remove {
            nl.neigh_del(vx.index, ip).await?;
            nl.fdb_del(vx.index, mac_for(ip), vtep).await?;
            s.peers.remove(&ip);
        }
        for (ip, vtep) in add {
            nl.neigh_replace(vx.index, ip, mac_for(ip)).await?;
            nl.fdb_replace(vx.index, mac_for(ip), vtep).await?;
            s.peers.insert(ip, vtep);
        }
        Ok(())
    }

    async fn sync_sandbox(
        &self,
        st: &mut Applied,
        want: &NodeNet,
        task: &str,
        sb: &Sandbox,
        ns: &Netns,
        remade: &BTreeSet<String>,
    ) -> Result<(), NetworkError> {
        let want_links: Vec<(String, Ipv4Net)> =
            sb.attachments.iter().map(|a| (a.network_id.clone(), a.addr)).collect();
        let cur = st.sandboxes.get(task);
        if plan::needs_relink(cur, sb, remade) {
            let keep_gw = cur.and_then(|c| c.gw);
            let in_use: BTreeSet<Ipv4Addr> = st
                .sandboxes
                .iter()
                .filter(|(t, _)| t.as_str() != task)
                .filter_map(|(_, s)| s.gw.map(|g| g.addr()))
                .collect();
            let entry = st.sandboxes.entry(task.to_string()).or_default();
            entry.links.clear();
            entry.gw = None;
            let gw = if sb.egress {
                Some(keep_gw.map_or_else(|| plan::allocate_gw(self.cfg.gateway_pool, task, &in_use), Ok)?)
            } else {
                None
            };
            self.link_sandbox(want, task, sb, ns, gw).await?;
            entry.links = want_links;
            entry.gw = gw;
        }
        let Some(cur) = st.sandboxes.get_mut(task) else { return Ok(()) };
        let lb = plan::lb_services(sb);
        let mut text = String::new();
        let lb_changed = cur.lb.as_ref() != Some(&lb);
        if lb_changed {
            text += &LbTable::vips().update(cur.lb.as_ref(), &lb);
        }
        if cur.dns != Some(sb.dns_ports) {
            text += &nft::dns(sb.dns_ports);
        }
        if !text.is_empty() {
            cur.lb = None;
            cur.dns = None;
            nft::run(ns, text).await?;
            if lb_changed {
                crate::metrics::instruments().lb_updated("vips");
            }
            cur.lb = Some(lb);
            cur.dns = Some(sb.dns_ports);
        }
        Ok(())
    }

    /// Remakes a sandbox's interfaces: a veth per attachment, and one into the gateway
    /// bridge when `gw` is given.
    async fn link_sandbox(
        &self,
        want: &NodeNet,
        task: &str,
        sb: &Sandbox,
        ns: &Netns,
        gw: Option<Ipv4Net>,
    ) -> Result<(), NetworkError> {
        let nl = Nl::open(ns).await?;
        for link in nl.links().await? {
            if link.name.starts_with("eth") {
                nl.del(&link).await?;
            }
        }
        nl.set("lo", LinkUnspec::new_with_name("lo").up().build()).await?;
        let hash = plan::fnv(task);
        for (i, att) in sb.attachments.iter().enumerate() {
            let net = want.networks.get(&att.network_id).ok_or_else(|| {
                NetworkError::Config(format!(
                    "task {task} attaches to network {} that is not among the node's networks",
                    att.network_id
                ))
            })?;
            let ov = Netns::open(&self.overlay_path(net.vni))?.ok_or_else(|| {
                NetworkError::netns(self.overlay_path(net.vni), "open", std::io::ErrorKind::NotFound.into())
            })?;
            let ovnl = Nl::open(&ov).await?;
            let port = format!("p{hash:08x}{i}");
            let eth = format!("eth{i}");
            self.veth_into(&ovnl, &port, ns, &eth, net.mtu, att.addr.addr()).await?;
            let br = self.host_link(&ovnl, BRIDGE).await?;
            let p = self.host_link(&ovnl, &port).await?;
            ovnl.set(&port, LinkUnspec::new_with_index(p.index).controller(br.index).up().build()).await?;
            let e = self.host_link(&nl, &eth).await?;
            nl.add_addr(e.index, att.addr).await?;
            nl.set(&eth, LinkUnspec::new_with_index(e.index).up().build()).await?;
        }
        if let Some(gw) = gw {
            let host = Nl::open(&self.host).await?;
            let name = self.gw_veth(task);
            let eth = format!("eth{}", sb.attachments.len());
            self.veth_into(&host, &name, ns, &eth, plan::gateway_mtu(self.underlay_mtu), gw.addr()).await?;
            let br = self.host_link(&host, &self.gw_bridge()).await?;
            let h = self.host_link(&host, &name).await?;
            host.set(&name, LinkUnspec::new_with_index(h.index).controller(br.index).up().build()).await?;
            host.set_port(&name, LinkBridgePort::new(h.index).isolated(true).build()).await?;
            let e = self.host_link(&nl, &eth).await?;
            nl.add_addr(e.index, gw).await?;
            nl.set(&eth, LinkUnspec::new_with_index(e.index).up().build()).await?;
            nl.default_route(self.gw_bridge_addr()?.addr()).await?;
        }
        Ok(())
    }

    /// Makes veth `name` in `nl`'s namespace whose peer `peer` lands in `peer_ns` with the
    /// MAC derived from `ip`; both ends get `mtu`.
    async fn veth_into(
        &self,
        nl: &Nl,
        name: &str,
        peer_ns: &Netns,
        peer: &str,
        mtu: u32,
        ip: Ipv4Addr,
    ) -> Result<(), NetworkError> {
        if let Some(old) = nl.link(name).await? {
            nl.del(&old).await?;
        }
        let peer_msg = LinkUnspec::new_with_name(peer)
            .mtu(mtu)
            .address(mac_for(ip).to_vec())
            .setns_by_fd(peer_ns.fd().as_raw_fd())
            .build();
        let msg = LinkVeth::new(name, peer)
            .mtu(mtu)
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer_msg)))
            .build();
        nl.add(name, msg).await
    }

    /// Holds every published port (ingress and host mode) bound, so that a host process
    /// taking one fails instead of silently losing its traffic; a port a process holds
    /// already is an error.
    async fn reserve_ports(&self, st: &mut Applied, want: &NodeNet) -> Result<(), NetworkError> {
        let ports = plan::published_ports(want);
        st.reserved.retain(|k, _| ports.contains(k));
        let mut first_err = None;
        for (protocol, port) in ports {
            if st.reserved.contains_key(&(protocol, port)) {
                continue;
            }
            let r = self
                .host
                .run(move || match protocol {
                    Proto::Tcp => TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).map(Reservation::Tcp),
                    Proto::Udp => UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port)).map(Reservation::Udp),
                })
                .await?;
            match r {
                Ok(r) => {
                    st.reserved.insert((protocol, port), r);
                }
                Err(source) => {
                    first_err.get_or_insert(NetworkError::PublishedPortTaken {
                        port,
                        protocol: protocol.as_str(),
                        source,
                    });
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// The routing mesh: this node's veth into the ingress overlay and its DNAT table.
    async fn sync_ingress(
        &self,
        st: &mut Applied,
        want: &NodeNet,
        remade: &BTreeSet<String>,
    ) -> Result<(), NetworkError> {
        let link_name = self.ingress_link();
        let table = LbTable::ingress(&self.cfg.prefix, &link_name);
        let Some(ing) = &want.ingress else {
            if st.ingress.take().is_some() {
                let nl = Nl::open(&self.host).await?;
                if let Some(l) = nl.link(&link_name).await? {
                    nl.del(&l).await?;
                }
                nft::run(&self.host, nft::delete_table(&table.name)).await?;
            }
            return Ok(());
        };
        let net = want.networks.get(&ing.network_id).ok_or_else(|| {
            NetworkError::Config(format!(
                "the ingress network {} is not among the node's networks",
                ing.network_id
            ))
        })?;
        let cur = st.ingress.get_or_insert_with(IngressState::default);
        if cur.addr != Some(ing.addr) || remade.contains(&ing.network_id) {
            cur.addr = None;
            let ov = Netns::open(&self.overlay_path(net.vni))?.ok_or_else(|| {
                NetworkError::netns(self.overlay_path(net.vni), "open", std::io::ErrorKind::NotFound.into())
            })?;
            let host = Nl::open(&self.host).await?;
            let ovnl = Nl::open(&ov).await?;
            if let Some(old) = ovnl.link(INGRESS_PORT).await? {
                ovnl.del(&old).await?;
            }
            // The node's end stays here and carries the node's ingress address.
            self.veth_into(&ovnl, INGRESS_PORT, &self.host, &link_name, net.mtu, ing.addr.addr()).await?;
            let br = self.host_link(&ovnl, BRIDGE).await?;
            let p = self.host_link(&ovnl, INGRESS_PORT).await?;
            ovnl.set(INGRESS_PORT, LinkUnspec::new_with_index(p.index).controller(br.index).up().build())
                .await?;
            let l = self.host_link(&host, &link_name).await?;
            host.add_addr(l.index, ing.addr).await?;
            host.set(&link_name, LinkUnspec::new_with_index(l.index).up().build()).await?;
            cur.addr = Some(ing.addr);
        }
        let services = plan::ingress_services(ing, &st.reserved);
        let cur = st.ingress.get_or_insert_with(IngressState::default);
        if cur.table.as_ref() != Some(&services) {
            let text = table.update(cur.table.as_ref(), &services);
            cur.table = None;
            nft::run(&self.host, text).await?;
            crate::metrics::instruments().lb_updated("ingress");
            cur.table = Some(services);
        }
        Ok(())
    }

    /// What is on the host, as an [`Applied`]; deletes what `want` has no use for.
    async fn observe(&self, want: &NodeNet) -> Result<Applied, NetworkError> {
        let mut st = Applied { ingress: Some(IngressState::default()), ..Applied::default() };
        for (name, path) in netns::list(&self.netns_dir())? {
            if let Some(hex) = name.strip_prefix("ov-") {
                let net = u32::from_str_radix(hex, 16)
                    .ok()
                    .and_then(|vni| want.networks.values().find(|n| n.vni == vni));
                match (net, Netns::open(&path)?) {
                    (Some(net), Some(ns)) => match self.observe_overlay(net, &ns).await? {
                        Some(s) => {
                            st.nets.insert(net.id.clone(), s);
                        }
                        None => netns::remove(&path)?,
                    },
                    _ => netns::remove(&path)?,
                }
            } else if let Some(task) = name.strip_prefix("t-") {
                match (want.sandboxes.get(task), Netns::open(&path)?) {
                    (Some(sb), Some(ns)) => {
                        let s = self.observe_sandbox(sb, &ns).await?;
                        st.sandboxes.insert(task.to_string(), s);
                    }
                    (Some(_), None) => {} // a stale file: the agent makes it again
                    (None, _) => netns::remove(&path)?,
                }
            }
        }
        let nl = Nl::open(&self.host).await?;
        for link in nl.links().await? {
            if link.name == self.ingress_link() {
                let ing = st.ingress.get_or_insert_with(IngressState::default);
                ing.addr = nl.addrs(link.index).await?.first().copied();
            } else if link.name.starts_with(&format!("{}vx", self.cfg.prefix))
                && self.is_host_link(&link.name)
            {
                // Made but never moved into its overlay namespace: left by a crash.
                nl.del(&link).await?;
            }
        }
        Ok(st)
    }

    async fn observe_overlay(&self, net: &OverlayNet, ns: &Netns) -> Result<Option<NetState>, NetworkError> {
        let nl = Nl::open(ns).await?;
        let links = nl.links().await?;
        let br = links.iter().find(|l| l.name == BRIDGE);
        if net.encrypted {
            // Adopted only if this process still carries it: a TAP dies with its process.
            let tap = links.iter().find(|l| l.name == sealed::TAP);
            let (Some(br), Some(tap), Some(fwd)) = (br, tap, self.sealed.get()) else { return Ok(None) };
            if !fwd.has(net.vni) {
                return Ok(None);
            }
            let Some(gateway) = nl.addrs(br.index).await?.first().copied() else { return Ok(None) };
            let peers = fwd.peers(net.vni);
            return Ok(Some(NetState { vni: net.vni, gateway, mtu: tap.mtu, encrypted: true, peers }));
        }
        let vx = links.iter().find(|l| l.name == self.vxlan_name(net.vni) && l.vni == Some(net.vni));
        let (Some(br), Some(vx)) = (br, vx) else { return Ok(None) };
        let Some(gateway) = nl.addrs(br.index).await?.first().copied() else { return Ok(None) };
        let macs = nl.neighbours(vx.index).await?;
        let fdb = nl.fdb(vx.index).await?;
        let (peers, lone_neighbours, lone_fdb) = plan::adopt_peers(&macs, &fdb);
        for ip in lone_neighbours {
            nl.neigh_del(vx.index, ip).await?;
        }
        for (mac, vtep) in lone_fdb {
            nl.fdb_del(vx.index, mac, vtep).await?;
        }
        Ok(Some(NetState { vni: net.vni, gateway, mtu: vx.mtu, encrypted: false, peers }))
    }

    async fn observe_sandbox(&self, sb: &Sandbox, ns: &Netns) -> Result<SbState, NetworkError> {
        let nl = Nl::open(ns).await?;
        let mut eths: Vec<(u32, Ipv4Net)> = Vec::new();
        for link in nl.links().await? {
            if let Some(n) = link.name.strip_prefix("eth").and_then(|n| n.parse::<u32>().ok())
                && let Some(addr) = nl.addrs(link.index).await?.first().copied()
            {
                eths.push((n, addr));
            }
        }
        Ok(plan::adopt_sandbox(eths, sb, self.cfg.gateway_pool))
    }
}

/// Turns on forwarding in the calling thread's namespace and raises the neighbour
/// table's limits (every remote endpoint is a permanent entry); the limits are global
/// and writable only in the initial namespace, so failing to raise them is not an error.
fn tune_sysctls() -> Result<(), NetworkError> {
    std::fs::write("/proc/sys/net/ipv4/ip_forward", "1")
        .map_err(|e| NetworkError::io("turn on IPv4 forwarding (net.ipv4.ip_forward)", e))?;
    for (name, value) in [("gc_thresh1", "8192"), ("gc_thresh2", "49152"), ("gc_thresh3", "65536")] {
        let path = format!("/proc/sys/net/ipv4/neigh/default/{name}");
        if let Err(e) = std::fs::write(&path, value) {
            tracing::debug!(%path, error = %e, "could not raise the neighbour table limit");
        }
    }
    Ok(())
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn the_data_plane_can_be_shared_and_applied_from_spawned_tasks() {
        fn shared<T: Send + Sync>() {}
        fn sendable<T: Send>(_: &T) {}
        shared::<Dataplane>();
        let _ = |dp: &'static Dataplane, want: &'static NodeNet| {
            sendable(&dp.apply(want));
            sendable(&dp.resync(want));
        };
    }
}
