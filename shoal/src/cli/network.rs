//! `shoal network …`: create, list, inspect and remove overlay networks.

use clap::Subcommand;
use shoal_api::NetworkSpec;

use super::remote::{Connection, Output, block_on, labels_from, print_json, short};

#[derive(Debug, Subcommand)]
pub(super) enum NetworkCommand {
    /// Create an overlay network.
    Create {
        /// Its name.
        name: String,
        /// Driver (only overlay).
        #[arg(short, long, default_value = "overlay", value_parser = ["overlay"])]
        driver: String,
        /// Subnet (default: the next free /24 of the cluster's address pool).
        #[arg(long)]
        subnet: Option<ipnet::Ipv4Net>,
        /// Gateway (default: the subnet's first address).
        #[arg(long)]
        gateway: Option<std::net::Ipv4Addr>,
        /// Let standalone containers attach.
        #[arg(long)]
        attachable: bool,
        /// No traffic to outside the network (no gateway bridge, no DNS forwarding).
        #[arg(long)]
        internal: bool,
        /// MTU of the overlay's interfaces (default: the underlay's minus 50).
        #[arg(long)]
        mtu: Option<u32>,
        /// Driver option (KEY=VALUE, or KEY alone); `encrypted` seals the traffic between nodes.
        #[arg(short = 'o', long = "opt")]
        opts: Vec<String>,
        /// Label (KEY=VALUE).
        #[arg(short = 'l', long = "label")]
        labels: Vec<String>,
    },
    /// List networks.
    #[command(alias = "list")]
    Ls {
        #[command(flatten)]
        out: Output,
    },
    /// Show networks as JSON.
    Inspect {
        /// Networks, by name or id.
        #[arg(required = true)]
        networks: Vec<String>,
    },
    /// Remove networks no service uses.
    #[command(alias = "remove")]
    Rm {
        /// Networks, by name or id.
        #[arg(required = true)]
        networks: Vec<String>,
    },
}

pub(super) fn run(cmd: NetworkCommand, conn: &Connection) -> anyhow::Result<()> {
    let client = conn.client()?;
    block_on(async move {
        match cmd {
            NetworkCommand::Create {
                name,
                driver: _,
                subnet,
                gateway,
                attachable,
                internal,
                mtu,
                opts,
                labels,
            } => {
                let mut spec = NetworkSpec::new(&name);
                spec.subnet = subnet;
                spec.gateway = gateway;
                spec.attachable = attachable;
                spec.internal = internal;
                spec.mtu = mtu;
                spec.options = opts
                    .iter()
                    .map(|o| match o.split_once('=') {
                        Some((k, v)) => (k.to_owned(), v.to_owned()),
                        None => (o.clone(), String::new()),
                    })
                    .collect();
                spec.labels = labels_from(&labels)?;
                println!("{}", client.create_network(&spec).await?.id);
            }
            NetworkCommand::Ls { out } => {
                let networks = client.networks().await?;
                out.print(
                    &networks,
                    |n| n.id.clone(),
                    &["NETWORK ID", "NAME", "DRIVER", "SUBNET", "VNI"],
                    |n| {
                        vec![
                            short(&n.id),
                            n.spec.name.clone(),
                            "overlay".into(),
                            n.subnet.to_string(),
                            n.vni.to_string(),
                        ]
                    },
                )?;
            }
            NetworkCommand::Inspect { networks } => {
                let mut out = Vec::new();
                for n in &networks {
                    out.push(client.network_inspect(n).await?);
                }
                print_json(&out)?;
            }
            NetworkCommand::Rm { networks } => {
                for n in &networks {
                    client.remove_network(n).await?;
                    println!("{n}");
                }
            }
        }
        Ok(())
    })?
}
