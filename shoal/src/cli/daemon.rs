//! `shoal daemon`: runs this machine's node. Today that is a manager of the cluster
//! store (Raft over gRPC); the worker agent and the cluster API join it later.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::{Args, ValueEnum};
use shoal_manager::manager::{Manager, ManagerConfig};

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
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
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
    init_logging(args.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(serve(args))
}

async fn serve(args: DaemonArgs) -> anyhow::Result<()> {
    // First of all, so a SIGTERM during start-up is a clean stop, not a kill.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
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
    let manager = Manager::start(cfg)
        .await
        .with_context(|| format!("start the manager (data in {})", args.data_dir.display()))?;
    tracing::info!(manager = manager.id(), addr = manager.addr(), "manager started");
    if args.init {
        let cluster = manager.init().await.context("start a new cluster")?;
        println!("cluster {} started; this node is its first manager, at {}", cluster.id, manager.addr());
        println!(
            "to add a manager: shoal daemon --join {} --token {}",
            manager.addr(),
            cluster.join_tokens.manager
        );
    } else if let Some(addr) = &args.join {
        let token = args.token.as_deref().unwrap_or_default();
        manager.join(addr, token).await.with_context(|| format!("join the cluster through {addr}"))?;
        println!("joined the cluster through {addr} as a manager");
    }
    let mut leadership = manager.leadership();
    loop {
        tokio::select! {
            changed = leadership.changed() => {
                if changed.is_err() { break; }
                if *leadership.borrow() {
                    tracing::info!(manager = manager.id(), "this manager now leads the cluster");
                } else {
                    tracing::info!(manager = manager.id(), "this manager no longer leads");
                }
            }
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    tracing::info!(manager = manager.id(), "shutting down");
    manager.shutdown().await;
    Ok(())
}
