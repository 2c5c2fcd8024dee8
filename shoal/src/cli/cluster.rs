//! `shoal cluster …`: what the cluster is and who manages it; join and API tokens;
//! the CA; autolock's unlock key.

use clap::Subcommand;
use shoal_api::wire::ReadOptions;

use super::remote::{Connection, block_on, print_json, table};

#[derive(Debug, Subcommand)]
pub(super) enum ClusterCommand {
    /// Show the cluster: managers, leader, object counts.
    Info {
        /// Print JSON.
        #[arg(long, value_parser = ["json"])]
        format: Option<String>,
    },
    /// Change cluster-wide settings.
    Update {
        /// Time between a worker's heartbeats (e.g. 5s).
        #[arg(long, value_parser = |s: &str| shoal_api::duration::parse(s).map_err(|e| e.to_string()))]
        dispatcher_heartbeat: Option<std::time::Duration>,
        /// Ended tasks kept per slot (negative keeps all).
        #[arg(long, allow_negative_numbers = true)]
        task_history_limit: Option<i64>,
        /// UDP port of the overlays' VXLAN traffic (1024-49151; default 4789). Nodes
        /// take a new port when their overlays are next made.
        #[arg(long)]
        data_path_port: Option<u16>,
        /// How long node certificates are valid (e.g. 2160h; at least 1m). Nodes
        /// renew at 50-80 % of it.
        #[arg(long, value_parser = |s: &str| shoal_api::duration::parse(s).map_err(|e| e.to_string()))]
        cert_expiry: Option<std::time::Duration>,
        /// Whether restarted managers need the unlock key (`shoal cluster unlock`).
        #[arg(long, value_name = "true|false")]
        autolock: Option<bool>,
    },
    /// Show (or rotate) the command that adds a worker or a manager.
    JoinToken {
        /// worker or manager.
        #[arg(value_parser = ["worker", "manager"])]
        role: String,
        /// Replace the token (nodes already joined stay).
        #[arg(long)]
        rotate: bool,
        /// Print only the token.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Show (or rotate) the key that unlocks a restarted manager (autolock).
    UnlockKey {
        /// Replace the key; the old one no longer unlocks any manager.
        #[arg(long)]
        rotate: bool,
        /// Print only the key.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Give a locked manager the unlock key (read from stdin, or prompted for).
    Unlock,
    /// Have the manager you talk to build a snapshot of its state now (before a backup
    /// of its data dir); prints what it covers and how long it took.
    Snapshot {
        /// Print JSON.
        #[arg(long, value_parser = ["json"])]
        format: Option<String>,
    },
    /// Show (or rotate) a token TCP clients of the API use: the admin one, or the
    /// read-only one for dashboards.
    ApiToken {
        /// Replace the token; clients with the old one are refused.
        #[arg(long)]
        rotate: bool,
        /// The token that may only read.
        #[arg(long)]
        read_only: bool,
    },
    /// Print the cluster's CA certificates (what HTTPS clients of the API need as
    /// SHOAL_CA), or rotate the CA without downtime.
    Ca {
        /// Replace the CA: nodes renew from the new one, then the old is dropped.
        #[arg(long)]
        rotate: bool,
        /// With --rotate: use this CA certificate (PEM) instead of a new one.
        #[arg(long, value_name = "FILE", requires_all = ["rotate", "ca_key"])]
        ca_cert: Option<std::path::PathBuf>,
        /// Its private key.
        #[arg(long, value_name = "FILE", requires = "ca_cert")]
        ca_key: Option<std::path::PathBuf>,
    },
}

pub(super) fn run(cmd: ClusterCommand, conn: &Connection) -> anyhow::Result<()> {
    let client = conn.client()?;
    block_on(async move {
        match cmd {
            ClusterCommand::Info { format } => {
                let info = client.cluster(ReadOptions::default()).await?;
                if format.is_some() {
                    return print_json(&info);
                }
                println!("Cluster:    {} ({})", info.spec.name, info.id);
                println!(
                    "Raft:       term {}, last applied {}, answered by manager {} ({})",
                    info.raft.term, info.raft.last_applied, info.answered_by, info.raft.state
                );
                let c = info.counts;
                println!(
                    "Objects:    {} nodes, {} services, {} tasks, {} networks, {} secrets, {} configs",
                    c.nodes, c.services, c.tasks, c.networks, c.secrets, c.configs
                );
                println!("Managers:");
                table(
                    &["RAFT ID", "ADDRESS", "ROLE", "REACHABLE", "NODE"],
                    info.managers
                        .iter()
                        .map(|m| {
                            vec![
                                m.raft_id.to_string(),
                                m.addr.clone(),
                                if m.leader {
                                    "leader"
                                } else if m.voter {
                                    "follower"
                                } else {
                                    "learner"
                                }
                                .into(),
                                m.reachable
                                    .map_or_else(|| "?".into(), |r| if r { "yes" } else { "no" }.to_owned()),
                                m.node_id.clone().unwrap_or_default(),
                            ]
                        })
                        .collect(),
                );
            }
            ClusterCommand::Update {
                dispatcher_heartbeat,
                task_history_limit,
                data_path_port,
                cert_expiry,
                autolock,
            } => {
                let info = client.cluster(ReadOptions::default()).await?;
                let mut spec = info.spec.clone();
                if let Some(h) = dispatcher_heartbeat {
                    spec.dispatcher.heartbeat_period = h;
                }
                if let Some(p) = data_path_port {
                    spec.data_path_port = p;
                }
                if let Some(l) = task_history_limit {
                    spec.task_history_limit = l;
                }
                if let Some(e) = cert_expiry {
                    spec.ca_config.node_cert_expiry = e;
                }
                if let Some(a) = autolock {
                    spec.autolock = a;
                }
                let update = shoal_api::wire::ClusterUpdate { version: info.meta.version, spec };
                client.update_cluster(&update).await?;
                println!("cluster {} updated", info.spec.name);
                if autolock == Some(true) && !info.spec.autolock {
                    println!("autolock is on: `shoal cluster unlock-key` shows the key (keep it safe)");
                }
            }
            ClusterCommand::JoinToken { role, rotate, quiet } => {
                let tokens = if rotate {
                    client.rotate_join_token(&role).await?
                } else {
                    client.join_tokens().await?
                };
                let token = if role == "manager" { tokens.manager } else { tokens.worker };
                if quiet {
                    println!("{token}");
                } else {
                    let info = client.cluster(ReadOptions::default()).await?;
                    let leader = info.managers.iter().find(|m| m.leader).or(info.managers.first());
                    let addr = leader.map_or("MANAGER:2377", |m| m.addr.as_str());
                    println!(
                        "To add a {role} to this cluster, run on it:\n\n    shoal daemon --join {addr} --token {token}\n"
                    );
                }
            }
            ClusterCommand::UnlockKey { rotate, quiet } => {
                let k = if rotate { client.rotate_unlock_key().await? } else { client.unlock_key().await? };
                if quiet {
                    println!("{}", k.key);
                } else {
                    println!(
                        "To unlock a manager after it restarts, run `shoal cluster unlock` on it and give \
                         this key:\n\n    {}\n\nKeep it safe: without it a restarted manager cannot start.",
                        k.key
                    );
                }
            }
            ClusterCommand::Snapshot { format } => {
                let s = client.snapshot().await?;
                if format.is_some() {
                    println!("{}", serde_json::to_string_pretty(&s)?);
                } else {
                    println!(
                        "snapshot of manager {} up to log index {}: {} bytes, built in {:.2} s",
                        s.raft_id, s.index, s.bytes, s.seconds
                    );
                }
            }
            ClusterCommand::Unlock => {
                let key = super::unlock::read_key()?;
                client.unlock(&shoal_api::wire::UnlockKey { key }).await?;
                println!("unlocked: the manager is starting");
            }
            ClusterCommand::ApiToken { rotate, read_only } => {
                let t = match (rotate, read_only) {
                    (true, true) => client.rotate_read_only_api_token().await?,
                    (true, false) => client.rotate_api_token().await?,
                    (false, true) => client.read_only_api_token().await?,
                    (false, false) => client.api_token().await?,
                };
                println!("{}", t.token);
            }
            ClusterCommand::Ca { rotate, ca_cert, ca_key } => {
                if !rotate {
                    print!("{}", client.ca().await?.roots_pem);
                    return Ok(());
                }
                let read = |p: &std::path::Path| {
                    std::fs::read_to_string(p).map_err(|e| anyhow::anyhow!("read {}: {e}", p.display()))
                };
                let rotation = shoal_api::wire::CaRotation {
                    cert_pem: ca_cert.as_deref().map(read).transpose()?,
                    key_pem: ca_key.as_deref().map(read).transpose()?,
                };
                let ca = client.rotate_ca(&rotation).await?;
                println!(
                    "CA rotation started: nodes renew from {}; the old root is dropped once all have",
                    ca.signer_subject
                );
                println!("(the join tokens now pin the new CA: `shoal cluster join-token worker|manager`)");
            }
        }
        Ok(())
    })?
}
