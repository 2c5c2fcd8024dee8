//! `shoal node …`: list, inspect, update, promote, demote and remove nodes.

use clap::Subcommand;
use shoal_api::client::Client;
use shoal_api::node::{Availability, NodeRole, Reachability};
use shoal_api::wire::{NodeUpdate, ReadOptions, TaskFilter};

use super::remote::{Connection, Output, block_on, labels_from, print_json, short};

#[derive(Debug, Subcommand)]
pub(super) enum NodeCommand {
    /// List nodes.
    #[command(alias = "list")]
    Ls {
        #[command(flatten)]
        out: Output,
    },
    /// Show nodes as JSON.
    Inspect {
        /// Nodes, by hostname or id.
        #[arg(required = true)]
        nodes: Vec<String>,
    },
    /// List the tasks on a node.
    Ps {
        /// The node.
        node: String,
        #[command(flatten)]
        out: Output,
    },
    /// Change a node's availability or labels.
    Update {
        /// The node.
        node: String,
        /// active, pause or drain.
        #[arg(long, value_parser = ["active", "pause", "drain"])]
        availability: Option<String>,
        /// Add or change a label (KEY=VALUE).
        #[arg(long = "label-add")]
        label_add: Vec<String>,
        /// Remove a label.
        #[arg(long = "label-rm")]
        label_rm: Vec<String>,
        /// worker or manager.
        #[arg(long, value_parser = ["worker", "manager"])]
        role: Option<String>,
    },
    /// Make nodes managers.
    Promote {
        /// Nodes.
        #[arg(required = true)]
        nodes: Vec<String>,
    },
    /// Make managers workers (refused if the rest could not form a majority).
    Demote {
        /// Nodes.
        #[arg(required = true)]
        nodes: Vec<String>,
    },
    /// Remove nodes from the cluster.
    #[command(alias = "remove")]
    Rm {
        /// Nodes.
        #[arg(required = true)]
        nodes: Vec<String>,
        /// Remove a worker that is still up.
        #[arg(short, long)]
        force: bool,
    },
    /// Make this node leave the cluster (run on the node; `docker swarm leave`).
    Leave {
        /// A manager too, even if the other managers lose their majority.
        #[arg(short, long)]
        force: bool,
        /// The node's data directory.
        #[arg(long, env = "SHOAL_DATA_DIR", default_value = "/var/lib/shoal")]
        data_dir: std::path::PathBuf,
    },
}

async fn set_role(client: &Client, key: &str, role: NodeRole) -> anyhow::Result<()> {
    let node = client.node(key).await?;
    let mut spec = node.spec.clone();
    spec.role = role;
    client.update_node(&node.id, &NodeUpdate { version: node.meta.version, spec }).await?;
    Ok(())
}

pub(super) fn run(cmd: NodeCommand, conn: &Connection) -> anyhow::Result<()> {
    if let NodeCommand::Leave { force, data_dir } = &cmd {
        super::node_leave::ask(data_dir, *force)?;
        println!("this node left the cluster");
        return Ok(());
    }
    let client = conn.client()?;
    block_on(async move {
        match cmd {
            NodeCommand::Ls { out } => {
                let nodes = client.nodes(ReadOptions::default()).await?;
                out.print(
                    &nodes,
                    |n| n.id.clone(),
                    &["ID", "HOSTNAME", "STATUS", "AVAILABILITY", "MANAGER STATUS", "ENGINE VERSION"],
                    |n| {
                        let manager = match &n.manager_status {
                            Some(m) if m.leader => "Leader".to_owned(),
                            Some(m) if n.spec.role == NodeRole::Manager => match m.reachability {
                                Reachability::Reachable => "Reachable".into(),
                                Reachability::Unreachable => "Unreachable".into(),
                                Reachability::Unknown => "Unknown".into(),
                            },
                            _ => String::new(),
                        };
                        vec![
                            short(&n.id),
                            n.description.hostname.clone(),
                            format!("{:?}", n.status.state),
                            format!("{:?}", n.spec.availability),
                            manager,
                            n.description.version.clone(),
                        ]
                    },
                )?;
            }
            NodeCommand::Inspect { nodes } => {
                let mut out = Vec::new();
                for n in &nodes {
                    out.push(client.node(n).await?);
                }
                print_json(&out)?;
            }
            NodeCommand::Ps { node, out } => {
                let tasks = client.tasks(&TaskFilter { node: Some(node), ..Default::default() }).await?;
                super::service::print_tasks(
                    &client,
                    tasks,
                    &out,
                    &super::service::TaskFilters::default(),
                    false,
                )
                .await?;
            }
            NodeCommand::Update { node, availability, label_add, label_rm, role } => {
                let n = client.node(&node).await?;
                let mut spec = n.spec.clone();
                if let Some(a) = availability {
                    spec.availability = match a.as_str() {
                        "pause" => Availability::Pause,
                        "drain" => Availability::Drain,
                        _ => Availability::Active,
                    };
                }
                spec.labels.extend(labels_from(&label_add)?);
                for k in &label_rm {
                    spec.labels.remove(k);
                }
                if let Some(r) = role {
                    spec.role = if r == "manager" { NodeRole::Manager } else { NodeRole::Worker };
                }
                client.update_node(&n.id, &NodeUpdate { version: n.meta.version, spec }).await?;
                println!("{node}");
            }
            NodeCommand::Promote { nodes } => {
                for n in &nodes {
                    set_role(&client, n, NodeRole::Manager).await?;
                    println!("node {n} promoted to a manager in the cluster");
                }
            }
            NodeCommand::Demote { nodes } => {
                for n in &nodes {
                    set_role(&client, n, NodeRole::Worker).await?;
                    println!("manager {n} demoted in the cluster");
                }
            }
            NodeCommand::Rm { nodes, force } => {
                for n in &nodes {
                    client.remove_node(n, force).await?;
                    println!("{n}");
                }
            }
            NodeCommand::Leave { .. } => unreachable!("handled before the client"),
        }
        Ok(())
    })?
}
