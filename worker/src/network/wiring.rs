//! The node's networking as the agent's node uses it: the latest network map, the
//! data plane that wires it (started once the map names this node's address and the
//! cluster's VXLAN port), and the resolvers of the sandboxes. One wiring runs at a
//! time; each makes the whole node match the map (see [`super::view`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use ipnet::Ipv4Net;
use shoal_api::Task;
use shoal_api::netmap::NetItem;

use super::NetworkError;
use super::dataplane::{Dataplane, DataplaneConfig};
use super::dns::{Dns, DnsConfig, DnsTable};
use super::view::{self, NetView};

/// How a node's networking is set up.
#[derive(Debug, Clone)]
pub struct WiringConfig {
    /// This node's id (the map names nodes by id).
    pub node_id: String,
    /// Where named network namespaces and the data plane's state live.
    pub run_dir: PathBuf,
    /// Prefix of the links and nftables tables this node makes.
    pub prefix: String,
    /// The node-local subnet of the gateway bridge.
    pub gateway_pool: Ipv4Net,
    /// Upstream resolvers and limits of the embedded DNS.
    pub dns: DnsConfig,
}

/// The node's networking; see the module docs.
#[derive(Debug)]
pub struct Wiring {
    cfg: WiringConfig,
    dns: Dns,
    table: DnsTable,
    view: Mutex<Arc<NetView>>,
    dataplane: tokio::sync::OnceCell<Dataplane>,
    /// Resolver ports per task.
    ports: Mutex<HashMap<String, (u16, u16)>>,
    /// One wiring at a time; holds whether one has read the host since the start
    /// (the first always does: a restarted daemon adopts what it finds).
    busy: tokio::sync::Mutex<bool>,
}

impl Wiring {
    /// The networking of node `cfg.node_id`; nothing is made until it is used.
    pub fn new(cfg: WiringConfig) -> Wiring {
        let table = DnsTable::default();
        let dns = Dns::new(table.clone(), cfg.dns.clone());
        let view = NetView { node_id: cfg.node_id.clone(), ..NetView::default() };
        Wiring {
            cfg,
            dns,
            table,
            view: Mutex::new(Arc::new(view)),
            dataplane: tokio::sync::OnceCell::new(),
            ports: Mutex::new(HashMap::new()),
            busy: tokio::sync::Mutex::new(false),
        }
    }

    /// Takes the latest map and tasks.
    pub fn set_view(&self, items: BTreeMap<String, NetItem>, tasks: Vec<Task>) {
        let view = NetView { node_id: self.cfg.node_id.clone(), items, tasks };
        *self.view.lock().unwrap_or_else(|p| p.into_inner()) = Arc::new(view);
    }

    fn current(&self) -> Arc<NetView> {
        self.view.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The data plane, started on first use.
    async fn dataplane(&self, view: &NetView) -> Result<&Dataplane, NetworkError> {
        self.dataplane
            .get_or_try_init(|| async {
                let (Some(port), Some(underlay)) = (view::data_path_port(view), view::own_address(view))
                else {
                    return Err(NetworkError::NoMap);
                };
                Dataplane::start(DataplaneConfig {
                    run_dir: self.cfg.run_dir.clone(),
                    vxlan_port: port,
                    underlay,
                    gateway_pool: self.cfg.gateway_pool,
                    prefix: self.cfg.prefix.clone(),
                })
                .await
            })
            .await
    }

    /// Makes a task's sandbox, with its resolver and its interfaces, before its
    /// container starts in it; returns the namespace's path.
    pub async fn prepare(&self, task: &Task) -> Result<PathBuf, NetworkError> {
        let t0 = std::time::Instant::now();
        // A daemon that just started reads the host back first: remaking an overlay
        // that already exists would cut the containers already in it off.
        if !*self.busy.lock().await {
            self.wire(false).await?;
        }
        let mut view = (*self.current()).clone();
        if !view.tasks.iter().any(|t| t.id == task.id) {
            view.tasks.push(task.clone());
        }
        let dp = self.dataplane(&view).await?;
        let path = dp.create_sandbox(&task.id).await?;
        let sandbox = t0.elapsed();
        let local = view::locals(&view).into_iter().find(|l| l.id == task.id);
        if let Some(local) = &local {
            self.table.set(&task.id, view::names(&view, local));
        }
        let ports = self.dns.serve(&task.id, &path).await?;
        let ports = {
            let mut all = self.ports.lock().unwrap_or_else(|p| p.into_inner());
            all.insert(task.id.clone(), ports);
            all.clone()
        };
        // Only this sandbox: the others learn of the task from the next wiring, which
        // gathers every change that came meanwhile.
        let want = view::node_net(&view, &ports, dp.underlay_mtu());
        dp.apply_one(&want, &task.id).await?;
        // Timings for benchmarks (bench/orchestration): where a task's start goes.
        tracing::debug!(task = %task.id, sandbox_us = sandbox.as_micros() as u64,
            wire_us = (t0.elapsed() - sandbox).as_micros() as u64, "sandbox prepared");
        Ok(path)
    }

    /// The sandbox of a task, if it has one on this node.
    pub fn sandbox(&self, task_id: &str) -> Option<PathBuf> {
        let dp = self.dataplane.get()?;
        let path = dp.sandbox_path(task_id);
        path.exists().then_some(path)
    }

    /// Makes the node match the last map: resolvers for every sandbox (started again
    /// after a restart, stopped for tasks gone), their names, then the data plane
    /// (`full`: re-read from the host first).
    pub async fn wire(&self, full: bool) -> Result<(), NetworkError> {
        let t0 = std::time::Instant::now();
        let mut synced = self.busy.lock().await;
        let t_lock = t0.elapsed();
        let view = self.current();
        let dp = match self.dataplane(&view).await {
            Ok(dp) => dp,
            // Nothing to wire before the managers said where this node is.
            Err(NetworkError::NoMap) if view::locals(&view).is_empty() => return Ok(()),
            Err(e) => return Err(e),
        };
        let locals = view::locals(&view);
        let keep: HashSet<&str> = locals.iter().map(|l| l.id.as_str()).collect();
        for id in self.dns.running() {
            if !keep.contains(id.as_str()) {
                self.dns.stop(&id).await;
                self.table.remove(&id);
                self.ports.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
            }
        }
        let names = view::names_of_all(&view, &locals);
        for (local, names) in locals.iter().zip(names) {
            let mut path = dp.sandbox_path(&local.id);
            if !path.exists() {
                // A task's sandbox is made when it is prepared; a standalone
                // container's as soon as the managers gave it an address.
                if local.task.is_some() {
                    continue;
                }
                path = dp.create_sandbox(&local.id).await?;
            }
            self.table.set(&local.id, names);
            // One sandbox's resolver failing must not keep the others unwired: it is
            // tried again at the next wiring.
            match self.dns.serve(&local.id, &path).await {
                Ok(ports) => {
                    self.ports.lock().unwrap_or_else(|p| p.into_inner()).insert(local.id.clone(), ports);
                }
                Err(e) => {
                    tracing::warn!(task = %local.id, error = %shoal_api::report::chain(&e), "resolver not started; retrying at the next wiring")
                }
            }
        }
        let t_dns = t0.elapsed();
        let ports = self.ports.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let want = view::node_net(&view, &ports, dp.underlay_mtu());
        let t_view = t0.elapsed();
        let r = if full || !*synced {
            dp.resync(&want).await.map(|()| *synced = true)
        } else {
            dp.apply(&want).await
        };
        // Timings for benchmarks: waiting for the previous wiring, the resolvers, the
        // desired state, the data plane.
        tracing::debug!(
            full,
            sandboxes = want.sandboxes.len(),
            lock_us = t_lock.as_micros() as u64,
            dns_us = (t_dns - t_lock).as_micros() as u64,
            view_us = (t_view - t_dns).as_micros() as u64,
            apply_us = (t0.elapsed() - t_view).as_micros() as u64,
            "wired"
        );
        r
    }
}
