//! `shoal daemon`: runs this machine's node. A manager runs the cluster store (Raft
//! over gRPC), the controllers (while it leads), the cluster API (a unix socket,
//! optionally TCP) and an agent for its own tasks; a worker (joined with a worker
//! token) runs only the agent.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Args, ValueEnum};
use shoal_api::node::{NodeDescription, NodeResources, Platform};
use shoal_manager::docker::{DockerOptions, DockerServer};
use shoal_manager::http::{ApiOptions, ApiServer};
use shoal_manager::manager::{Manager, ManagerConfig};
use shoal_manager::orchestrator::runner::Controllers;
use shoal_manager::server;
use shoal_pki::renew::Renewer;
use shoal_pki::{CaKeys, Credentials};
use shoal_telemetry::process::ProcessCollector;
use shoal_telemetry::prom::collector::Collector;
use shoal_telemetry::prom::encoding::DescriptorEncoder;
use shoal_telemetry::prom::metrics::info::Info;
use shoal_telemetry::prom::registry::Registry;
use shoal_telemetry::serve::MetricsServer;
use shoal_worker::agent::{Agent, AgentConfig, Executor, PullPolicy};
use shoal_worker::metrics::containers::ContainerCollector;
use shoal_worker::network::dns::DnsConfig;
use shoal_worker::network::wiring::{Wiring, WiringConfig};

/// Swarm's cluster management port, kept for habit.
pub(super) const DEFAULT_LISTEN: &str = "0.0.0.0:2377";

#[derive(Debug, Args)]
pub(super) struct DaemonArgs {
    /// Start a new cluster with this node as its first manager.
    #[arg(long, conflicts_with_all = ["join", "force_new_cluster"])]
    init: bool,
    /// Join the cluster of the manager at ADDR (host:port); needs --token.
    #[arg(long, value_name = "ADDR", requires = "token")]
    join: Option<String>,
    /// The join token (`shoal cluster join-token manager` on a manager).
    #[arg(long, env = "SHOAL_JOIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// After losing a majority of managers for good: keep this manager's state and
    /// make it the only manager of a new cluster.
    #[arg(long)]
    force_new_cluster: bool,
    /// With --init: use this external CA certificate (PEM) for the cluster instead
    /// of making one; needs --ca-key.
    #[arg(long, value_name = "FILE", requires_all = ["init", "ca_key"])]
    ca_cert: Option<PathBuf>,
    /// The external CA's private key (PEM), with --ca-cert.
    #[arg(long, value_name = "FILE", requires = "ca_cert")]
    ca_key: Option<PathBuf>,
    /// With --init: turn autolock on, so a restarted manager needs the unlock key
    /// (`shoal cluster unlock-key` shows it; `shoal cluster unlock` gives it).
    #[arg(long, requires = "init")]
    autolock: bool,
    /// The node's data directory.
    #[arg(long, env = "SHOAL_DATA_DIR", default_value = "/var/lib/shoal")]
    data_dir: PathBuf,
    /// Address for cluster traffic between managers.
    #[arg(long, default_value = DEFAULT_LISTEN)]
    listen_addr: SocketAddr,
    /// Address other managers reach this one at (default: the listen address; give
    /// it when listening on 0.0.0.0).
    #[arg(long)]
    advertise_addr: Option<String>,
    /// The API's unix socket (mode 0660: its permissions decide who may use it).
    #[arg(long, value_name = "PATH", default_value = shoal_api::client::DEFAULT_SOCKET)]
    api_socket: PathBuf,
    /// Also serve the API on TCP at this address (callers need the cluster's API
    /// token, `shoal cluster api-token`).
    #[arg(long, value_name = "ADDR")]
    api_addr: Option<SocketAddr>,
    /// A manager's Docker Engine API socket (the swarm endpoints of API 1.41: point
    /// `DOCKER_HOST=unix://PATH` at it); an empty value turns it off.
    #[arg(long, value_name = "PATH", default_value = "/run/shoal/docker.sock",
          value_parser = clap::value_parser!(std::ffi::OsString))]
    docker_socket: std::ffi::OsString,
    /// Also serve the Docker Engine API on TCP at this address, as HTTPS under the
    /// same rules as `--api-addr` (the API token, or a certificate from the cluster's CA).
    #[arg(long, value_name = "ADDR")]
    docker_addr: Option<SocketAddr>,
    /// Serve Prometheus metrics at http://ADDR/metrics (plain HTTP, no authentication:
    /// meant for loopback or a private network, as dockerd's). A manager also serves
    /// them on its API listeners.
    #[arg(long, value_name = "ADDR")]
    metrics_addr: Option<SocketAddr>,
    /// Also export each task container's CPU, memory and OOM kills (cAdvisor's
    /// `container_*` names, labelled by container, service and slot): one series per
    /// container, so off by default.
    #[arg(long)]
    metrics_per_container: bool,
    /// A label of this node (`key=value`), for placement constraints
    /// (`node.labels` are set with `shoal node update`; these are `engine.labels`).
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
    labels: Vec<(String, String)>,
    /// The node's name in the cluster (default: the machine's hostname).
    #[arg(long)]
    hostname: Option<String>,
    /// Parent cgroup for the node's containers, in every cgroup hierarchy.
    #[arg(long, env = "SHOAL_CGROUP_PARENT", default_value = "shoal")]
    cgroup_parent: String,
    /// Pull images that are not on the node (`missing`, Docker's default) or never.
    #[arg(long, value_enum, default_value_t = Pull::Missing)]
    pull: Pull,
    /// A registry (host:port) to pull from over plain HTTP; loopback ones always
    /// are. Repeat for several.
    #[arg(long, value_name = "HOST:PORT")]
    insecure_registry: Vec<String>,
    /// Upstream resolver (IP or IP:PORT) the containers' DNS forwards names it does
    /// not know to; repeat for several, or `none` to forward nothing. Default: the
    /// nameservers of the host's /etc/resolv.conf. Queries are sent from the daemon's
    /// network namespace.
    #[arg(long, value_name = "ADDR")]
    dns_upstream: Vec<String>,
    /// The node-local subnet of the gateway bridge that gives containers egress.
    #[arg(long, value_name = "CIDR", default_value = "172.18.0.0/16")]
    gateway_pool: ipnet::Ipv4Net,
    /// Give tasks no networks: each container gets an empty network namespace of
    /// its own (loopback only), as before overlays. For tests that run several
    /// daemons in one network namespace.
    #[arg(long)]
    no_networking: bool,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

/// The resolvers the containers' DNS forwards to, from `--dns-upstream`.
fn dns_upstreams(given: &[String]) -> anyhow::Result<Vec<SocketAddr>> {
    if given.is_empty() {
        let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        return Ok(DnsConfig::upstreams_from_resolv_conf(&host));
    }
    // `none` forwards nothing, unless a resolver is given too (a later flag wins
    // over a default that a wrapper put first).
    given
        .iter()
        .filter(|g| *g != "none")
        .map(|g| {
            g.parse::<SocketAddr>()
                .or_else(|_| g.parse::<std::net::IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
                .map_err(|_| anyhow::anyhow!("--dns-upstream {g:?} is not an IP or IP:PORT (or `none`)"))
        })
        .collect()
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("{s:?} is not KEY=VALUE")),
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(super) enum Pull {
    Missing,
    Never,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(super) enum LogFormat {
    Text,
    Json,
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SHOAL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

pub(super) fn run(args: DaemonArgs) -> anyhow::Result<()> {
    crate::limits::cap_malloc_arenas();
    init_logging(args.log_format);
    crate::limits::raise_open_files();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(serve(args))
}

/// What a worker keeps to find its cluster again after a restart.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct WorkerState {
    managers: Vec<String>,
}

/// Whether a join token is a worker's (`SHTKN-1-<cluster>-W<secret>`).
fn is_worker_token(token: &str) -> bool {
    token.rsplit('-').next().is_some_and(|secret| secret.starts_with('W'))
}

async fn serve(args: DaemonArgs) -> anyhow::Result<()> {
    // First of all, so a SIGTERM during start-up is a clean stop, not a kill.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let worker_state = args.data_dir.join("worker.json");
    let token = args.token.as_deref().unwrap_or_default();
    let joining_as_worker = args.join.is_some() && is_worker_token(token);
    if joining_as_worker || (args.join.is_none() && !args.init && worker_state.exists()) {
        return serve_worker(args, term).await;
    }
    let advertise = match (&args.advertise_addr, args.listen_addr.ip().is_unspecified()) {
        (Some(a), _) => Some(a.clone()),
        (None, true) => bail!(
            "listening on {} needs --advertise-addr: the address other managers reach this one at",
            args.listen_addr
        ),
        (None, false) => None,
    };
    let mut cfg = ManagerConfig::new(args.data_dir.join("manager"), args.listen_addr);
    cfg.advertise = advertise;
    cfg.force_new_cluster = args.force_new_cluster;
    cfg.certs_dir = args.data_dir.join("certs");
    cfg.node_id = Some(node_id(&args.data_dir)?);
    cfg.external_ca = external_ca(&args)?;
    // Autolock: a locked manager waits here for `shoal cluster unlock`.
    match super::unlock::wait_until_unlocked(&cfg.data_dir, &args.api_socket, &mut term).await? {
        Some(key) => cfg.unlock_key = key,
        None => return Ok(()),
    }
    let served = server::start(cfg)
        .await
        .with_context(|| format!("start the manager (data in {})", args.data_dir.display()))?;
    let manager = served.manager.clone();
    tracing::info!(manager = manager.id(), addr = manager.addr(), "manager started");
    // A manager that belongs to a cluster starts from its state, so a service
    // manager may keep --init or --join in its flags.
    let member = manager.is_member().await.context("read the manager's state")?;
    if member && (args.init || args.join.is_some()) {
        tracing::info!("this manager already belongs to a cluster: --init and --join are ignored");
    } else if args.init {
        let cluster = manager.init().await.context("start a new cluster")?;
        println!("cluster {} started; this node is its first manager, at {}", cluster.id, manager.addr());
        println!(
            "to add a manager: shoal daemon --join {} --token {}",
            manager.addr(),
            cluster.join_tokens.manager
        );
        println!(
            "to add a worker:  shoal daemon --join {} --token {}",
            manager.addr(),
            cluster.join_tokens.worker
        );
        println!("API token for TCP clients (SHOAL_TOKEN): {}", cluster.api_token);
        if args.autolock {
            manager.set_autolock(true).await.context("turn autolock on")?;
            println!(
                "autolock is on: a restarted manager needs `shoal cluster unlock`; \
                 `shoal cluster unlock-key` shows the key (keep it safe)"
            );
        }
    } else if let Some(addr) = &args.join {
        manager.join(addr, token).await.with_context(|| format!("join the cluster through {addr}"))?;
        println!("joined the cluster through {addr} as a manager");
    }
    let (mut registry, containers) = node_registry(&args, &node_id(&args.data_dir)?, "manager");
    shoal_manager::metrics::register(&mut registry, &served);
    let registry = Arc::new(registry);
    let metrics = serve_metrics(&args, &registry).await?;
    let opts =
        ApiOptions { socket: Some(args.api_socket.clone()), tcp: args.api_addr, metrics: Some(registry) };
    let api = ApiServer::start(&served, &opts).await.context("start the cluster API")?;
    tracing::info!(socket = %args.api_socket.display(), tcp = ?api.tcp, "cluster API listening");
    let docker_opts = DockerOptions {
        socket: Some(PathBuf::from(&args.docker_socket)).filter(|p| !p.as_os_str().is_empty()),
        tcp: args.docker_addr,
    };
    let docker = DockerServer::start(&served, &docker_opts).await.context("start the Docker Engine API")?;
    tracing::info!(socket = ?docker.socket, tcp = ?docker.tcp, "Docker Engine API listening");
    let controllers = Controllers::start(manager.clone());
    let (description, addr) = describe_node(&args)?;
    let node = node_id(&args.data_dir)?;
    let registration = tokio::spawn(register(manager.clone(), (description.clone(), addr), node.clone()));
    let managers = vec![manager.addr().to_owned()];
    let renewer = Renewer::new(manager.credentials().clone(), args.data_dir.join("certs"), managers.clone());
    let renewing = tokio::spawn(renewer.clone().run());
    // Managers run tasks too, as in Swarm (drain a manager to keep it free of them).
    let executor = executor(&args, &node)?;
    containers.bind(&executor);
    let cfg = AgentConfig::for_node(node, managers, addr.to_string(), description, renewer);
    let agent = Agent::start(cfg, executor);
    let mut leave = super::node_leave::serve(&args.data_dir)?;
    let mut left = false;
    let mut leadership = manager.leadership();
    loop {
        tokio::select! {
            Some(ask) = leave.recv() => {
                let answer = leave_managers(&manager, ask.force).await;
                left = answer.is_ok();
                let _ = ask.reply.send(answer);
                if left { break; }
            }
            changed = leadership.changed() => {
                if changed.is_err() {
                    let why = manager.raft_stopped_because().unwrap_or_else(|| "no reason given".into());
                    tracing::error!(manager = manager.id(), error = %why, "Raft stopped");
                    break;
                }
                if *leadership.borrow() {
                    tracing::info!(manager = manager.id(), "this manager now leads the cluster");
                } else {
                    tracing::info!(manager = manager.id(), "this manager no longer leads");
                }
            }
            _ = term.recv() => { tracing::info!("SIGTERM received"); break }
            _ = tokio::signal::ctrl_c() => { tracing::info!("SIGINT received"); break }
        }
    }
    tracing::info!(manager = manager.id(), "shutting down");
    registration.abort();
    renewing.abort();
    agent.stop().await;
    controllers.stop().await;
    api.shutdown().await;
    docker.shutdown().await;
    if let Some(m) = metrics {
        m.stop();
    }
    manager.shutdown().await;
    if left {
        after_leave(&args).await?;
    }
    Ok(())
}

/// Takes this manager out of the Raft group for `node leave`. Without `force` it is
/// refused, saying what leaving would do to the managers' majority (as `docker swarm
/// leave`); with it, it leaves even if the rest lose their majority.
async fn leave_managers(manager: &Manager, force: bool) -> Result<(), String> {
    let voters = manager.managers().into_keys().filter(|id| manager.is_voter(*id)).count();
    let reachable = manager.reachable_anywhere().await.map(|r| r.len());
    if !force {
        let effect = if voters <= 1 {
            "it is the cluster's last manager: leaving erases the cluster's state".to_owned()
        } else {
            let rest = reachable.unwrap_or(0).saturating_sub(1);
            let needed = (voters - 1) / 2 + 1;
            if rest >= needed {
                format!(
                    "leaving leaves {} managers, {rest} of them reachable, which keep a majority",
                    voters - 1
                )
            } else {
                format!(
                    "leaving leaves {} managers with only {rest} reachable: they lose their majority and the cluster stops",
                    voters - 1
                )
            }
        };
        return Err(format!(
            "this node is a manager and {effect}; demote it first (`shoal node demote`), or leave with --force"
        ));
    }
    if voters > 1 {
        // Forced: without a majority the change cannot commit; leave regardless.
        let removal = manager.remove_manager(manager.id(), true);
        match tokio::time::timeout(Duration::from_secs(10), removal).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "leaving without taking this manager out of the Raft group")
            }
            Err(_) => tracing::warn!(
                "the Raft group did not confirm this manager's removal in time; leaving anyway"
            ),
        }
    }
    Ok(())
}

/// After a leave: the tasks' containers go, then the cluster's state and
/// certificate, so the next start is a fresh node.
async fn after_leave(args: &DaemonArgs) -> anyhow::Result<()> {
    use shoal_worker::agent::Node as _;
    let executor = Executor::new(&args.data_dir, &args.cgroup_parent, PullPolicy::Never)
        .context("set up the container runtime")?;
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        for task in executor.containers()? {
            executor.remove(&task).with_context(|| format!("remove task {task}'s container"))?;
        }
        Ok(())
    })
    .await??;
    super::node_leave::forget_cluster(&args.data_dir).context("forget the cluster")?;
    println!("this node left the cluster");
    Ok(())
}

/// A worker: joins (the first time) and runs the agent, with no store of its own.
async fn serve_worker(args: DaemonArgs, mut term: tokio::signal::unix::Signal) -> anyhow::Result<()> {
    let path = args.data_dir.join("worker.json");
    let node = node_id(&args.data_dir)?;
    let (description, addr) = describe_node(&args)?;
    // Joined before: start from the kept state (a service manager may keep --join).
    let join = args.join.as_ref().filter(|_| !path.exists());
    if args.join.is_some() && join.is_none() {
        tracing::info!(state = %path.display(), "already a worker of a cluster: --join ignored");
    }
    let certs = args.data_dir.join("certs");
    let (managers, creds) = match join {
        Some(through) => {
            let token = args.token.as_deref().unwrap_or_default();
            let enrolled = shoal_worker::agent::join::join(
                through,
                token,
                &node,
                &description.hostname,
                &addr.to_string(),
            )
            .await
            .with_context(|| format!("join the cluster through {through}"))?;
            enrolled.credentials.save(&certs).context("save the node's certificate")?;
            let managers = enrolled.managers;
            let managers = if managers.is_empty() { vec![through.clone()] } else { managers };
            let state = serde_json::to_vec(&WorkerState { managers: managers.clone() })?;
            std::fs::write(&path, state).with_context(|| format!("write {}", path.display()))?;
            println!("joined the cluster through {through} as a worker");
            (managers, enrolled.credentials)
        }
        None => {
            let text = std::fs::read(&path).with_context(|| format!("read {}", path.display()))?;
            let state: WorkerState = serde_json::from_slice(&text)
                .with_context(|| format!("{} is damaged: join the cluster again", path.display()))?;
            let creds = Credentials::load(&certs)
                .with_context(|| format!("read the node's certificate in {}", certs.display()))?
                .with_context(|| format!("no certificate in {}: join the cluster again", certs.display()))?;
            (state.managers, creds)
        }
    };
    tracing::info!(node = %node, managers = ?managers, "worker started");
    let (registry, containers) = node_registry(&args, &node, "worker");
    let metrics = serve_metrics(&args, &Arc::new(registry)).await?;
    let renewer = Renewer::new(creds, certs, managers.clone());
    let renewing = tokio::spawn(renewer.clone().run());
    let executor = executor(&args, &node)?;
    containers.bind(&executor);
    let cfg = AgentConfig::for_node(node.clone(), managers, addr.to_string(), description, renewer);
    let agent = Agent::start(cfg, executor);
    let mut leave = super::node_leave::serve(&args.data_dir)?;
    let left = tokio::select! {
        _ = term.recv() => false,
        _ = tokio::signal::ctrl_c() => false,
        Some(ask) = leave.recv() => ask.reply.send(Ok(())).is_ok(),
    };
    renewing.abort();
    if left {
        tracing::info!(node = %node, "leaving the cluster");
        agent.stop().await;
        if let Some(m) = metrics {
            m.stop();
        }
        return after_leave(&args).await;
    }
    tracing::info!(node = %node, "shutting down; the node's containers keep running");
    agent.stop().await;
    if let Some(m) = metrics {
        m.stop();
    }
    Ok(())
}

/// The per-container metrics (with --metrics-per-container), bound to the executor
/// once it exists: the registry is shared before the agent starts.
#[derive(Debug, Clone, Default)]
struct LateContainers(Arc<std::sync::OnceLock<ContainerCollector>>);

impl LateContainers {
    fn bind(&self, executor: &Executor) {
        let _ = self.0.set(executor.container_collector());
    }
}

impl Collector for LateContainers {
    fn encode(&self, encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        self.0.get().map_or(Ok(()), |c| c.encode(encoder))
    }
}

/// The node's metrics registry with what every node exports: build and node info,
/// the process, the worker's runtime, DNS and load-balancer counters, and (if asked
/// for) the per-container series, bound later through the second value.
fn node_registry(args: &DaemonArgs, node_id: &str, role: &str) -> (Registry, LateContainers) {
    let mut registry = Registry::default();
    let version = vec![("version".to_owned(), env!("CARGO_PKG_VERSION").to_owned())];
    registry.register("shoal_build", "The version of this shoal binary", Info::new(version));
    let node = vec![("node_id".to_owned(), node_id.to_owned()), ("role".to_owned(), role.to_owned())];
    registry.register("shoal_node", "This node's id and its role when the daemon started", Info::new(node));
    registry.register_collector(Box::new(ProcessCollector::default()));
    shoal_worker::metrics::register(&mut registry);
    let containers = LateContainers::default();
    if args.metrics_per_container {
        registry.register_collector(Box::new(containers.clone()));
    }
    (registry, containers)
}

/// Starts the `--metrics-addr` listener, if asked for.
async fn serve_metrics(args: &DaemonArgs, registry: &Arc<Registry>) -> anyhow::Result<Option<MetricsServer>> {
    let Some(addr) = args.metrics_addr else { return Ok(None) };
    let server = MetricsServer::start(addr, registry.clone()).await?;
    tracing::info!(addr = %server.addr, "metrics listening (GET /metrics)");
    Ok(Some(server))
}

/// The node's executor: the container runtime, the image store and (unless
/// --no-networking) the tasks' networking.
fn executor(args: &DaemonArgs, node_id: &str) -> anyhow::Result<Executor> {
    let pull = match args.pull {
        Pull::Missing => PullPolicy::Missing,
        Pull::Never => PullPolicy::Never,
    };
    let mut executor = Executor::new(&args.data_dir, &args.cgroup_parent, pull)
        .context("set up the container runtime")?
        .with_insecure_registries(args.insecure_registry.clone());
    if !args.no_networking {
        let dns = DnsConfig { upstreams: dns_upstreams(&args.dns_upstream)?, ..DnsConfig::default() };
        let wiring = Wiring::new(WiringConfig {
            node_id: node_id.to_owned(),
            run_dir: args.data_dir.join("net"),
            prefix: "sh".into(),
            gateway_pool: args.gateway_pool,
            dns,
        });
        executor = executor.with_network(Arc::new(wiring));
    }
    Ok(executor)
}

/// The external CA of `--ca-cert` and `--ca-key`, checked.
fn external_ca(args: &DaemonArgs) -> anyhow::Result<Option<CaKeys>> {
    let (Some(cert), Some(key)) = (&args.ca_cert, &args.ca_key) else { return Ok(None) };
    let read = |p: &PathBuf| std::fs::read_to_string(p).with_context(|| format!("read {}", p.display()));
    let ca = CaKeys::from_pem(&read(cert)?, &read(key)?)
        .with_context(|| format!("use {} and {} as the cluster's CA", cert.display(), key.display()))?;
    Ok(Some(ca))
}

/// The node's id, made on its first start and kept in its data dir.
fn node_id(data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join("node-id");
    match std::fs::read_to_string(&path) {
        Ok(s) if shoal_api::object::looks_like_id(s.trim()) => Ok(s.trim().to_owned()),
        Ok(_) => bail!("{} is damaged: it should hold the node's id", path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(data_dir).with_context(|| format!("create {}", data_dir.display()))?;
            let id = shoal_api::object::new_id();
            std::fs::write(&path, &id).with_context(|| format!("write {}", path.display()))?;
            Ok(id)
        }
        Err(e) => Err(e).with_context(|| format!("read {}", path.display())),
    }
}

/// What this machine is: name, platform, CPUs and memory, labels.
fn describe_node(args: &DaemonArgs) -> anyhow::Result<(NodeDescription, IpAddr)> {
    let hostname = match &args.hostname {
        Some(h) => h.clone(),
        None => nix::unistd::gethostname()?.to_string_lossy().into_owned(),
    };
    let cpus = std::thread::available_parallelism().map(|n| n.get() as u64).unwrap_or(1);
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 1024;
    let addr_text = args.advertise_addr.clone().unwrap_or_else(|| args.listen_addr.to_string());
    let addr = addr_text
        .parse::<SocketAddr>()
        .map(|a| a.ip())
        .or_else(|_| addr_text.parse::<IpAddr>())
        .unwrap_or(args.listen_addr.ip());
    let description = NodeDescription {
        hostname,
        platform: Platform { os: std::env::consts::OS.into(), arch: std::env::consts::ARCH.into() },
        resources: NodeResources { nano_cpus: cpus * 1_000_000_000, memory_bytes: memory },
        engine_labels: args.labels.iter().cloned().collect(),
        version: env!("CARGO_PKG_VERSION").into(),
    };
    Ok((description, addr))
}

/// Stores this node in the cluster once the cluster has a leader; retried until it
/// works (after a restart, quorum may take a while to come back).
async fn register(manager: Arc<Manager>, (description, addr): (NodeDescription, IpAddr), node_id: String) {
    let mut delay = Duration::from_millis(200);
    loop {
        if manager.cluster().is_some() {
            match manager.register_node(&node_id, description.clone(), addr).await {
                Ok(_) => {
                    tracing::info!(node = %node_id, "node registered");
                    return;
                }
                Err(e) => {
                    tracing::warn!(node = %node_id, error = %shoal_api::report::chain(&e), "node registration failed; retrying")
                }
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}
