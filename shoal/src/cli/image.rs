//! `shoal image …`: this node's image store.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Subcommand;
use shoal_worker::image::ImageStore;
use shoal_worker::image::registry::{self, RegistryOptions};
use shoal_worker::runtime::Runtime;

use super::format::Column;
use super::human;
use super::node_opts::NodeOpts;
use super::remote::Output;

#[derive(Debug, Subcommand)]
pub(super) enum ImageCommand {
    /// Import a `docker save` archive or an OCI image layout (directory or tar).
    Import {
        /// The archive or layout directory.
        path: PathBuf,
        /// Name for the image (required when the archive does not name it).
        name: Option<String>,
        #[command(flatten)]
        node: NodeOpts,
    },
    /// Pull an image from a registry (HTTP for loopback registries, HTTPS otherwise).
    Pull {
        /// Image reference, e.g. 127.0.0.1:5000/shoal/busybox:latest.
        name: String,
        #[command(flatten)]
        registry: RegistryArgs,
        #[command(flatten)]
        node: NodeOpts,
    },
    /// Push an image to a registry.
    Push {
        /// The image to push.
        name: String,
        /// Push under this reference instead of the image's name.
        #[arg(long)]
        to: Option<String>,
        #[command(flatten)]
        registry: RegistryArgs,
        #[command(flatten)]
        node: NodeOpts,
    },
    /// List images.
    #[command(alias = "list")]
    Ls {
        #[command(flatten)]
        out: Output,
        #[command(flatten)]
        node: NodeOpts,
    },
    /// Remove an image (or one of its names), then delete layers nothing uses.
    #[command(alias = "remove")]
    Rm {
        /// Image names or ids.
        #[arg(required = true)]
        images: Vec<String>,
        #[command(flatten)]
        node: NodeOpts,
    },
}

/// One line of `image ls`: an image under one of its names.
#[derive(Debug, serde::Serialize)]
struct Listed {
    name: String,
    #[serde(flatten)]
    record: shoal_worker::image::ImageRecord,
}

/// How to reach a registry.
#[derive(Debug, Clone, clap::Args)]
pub(super) struct RegistryArgs {
    /// Credentials as USER:PASSWORD (or the SHOAL_REGISTRY_AUTH variable).
    #[arg(long, env = "SHOAL_REGISTRY_AUTH", hide_env_values = true)]
    auth: Option<String>,
    /// A registry (host:port) to reach over plain HTTP; loopback ones always are.
    #[arg(long)]
    insecure_registry: Vec<String>,
}

impl RegistryArgs {
    fn options(&self) -> anyhow::Result<RegistryOptions> {
        let credentials = match &self.auth {
            None => None,
            Some(a) => {
                let (u, p) = a.split_once(':').context("--auth wants USER:PASSWORD")?;
                Some((u.to_owned(), p.to_owned()))
            }
        };
        Ok(RegistryOptions { credentials, insecure: self.insecure_registry.clone() })
    }
}

fn block_on<F: std::future::Future>(f: F) -> anyhow::Result<F::Output> {
    Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(f))
}

pub(super) fn run(cmd: ImageCommand) -> anyhow::Result<()> {
    match cmd {
        ImageCommand::Pull { name, registry, node } => {
            let store = ImageStore::open(&node.data_dir)?;
            let record = block_on(registry::pull(&store, &name, &registry.options()?))?
                .with_context(|| format!("pull {name}"))?;
            println!("{}", record.id);
            Ok(())
        }
        ImageCommand::Push { name, to, registry, node } => {
            let store = ImageStore::open(&node.data_dir)?;
            let url = block_on(registry::push(&store, &name, to.as_deref(), &registry.options()?))?
                .with_context(|| format!("push {name}"))?;
            println!("{url}");
            Ok(())
        }
        ImageCommand::Import { path, name, node } => {
            let store = ImageStore::open(&node.data_dir)?;
            let records =
                store.import(&path, name.as_deref()).with_context(|| format!("import {}", path.display()))?;
            for r in records {
                println!("{}", r.id);
            }
            Ok(())
        }
        ImageCommand::Ls { out, node } => {
            let store = ImageStore::open(&node.data_dir)?;
            let mut listed = Vec::new();
            for (record, names) in store.list()? {
                if out.quiet {
                    listed.push(Listed { name: String::new(), record });
                    continue;
                }
                let names = if names.is_empty() { vec!["<none>".to_owned()] } else { names };
                listed.extend(names.into_iter().map(|name| Listed { name, record: record.clone() }));
            }
            let columns = [
                Column::from_header("NAME"),
                Column::named("IMAGE ID", "ID"),
                Column::from_header("SIZE"),
                Column::named("CREATED", "CreatedAt"),
            ];
            out.print_columns(
                &listed,
                |l| l.record.id.clone(),
                &columns,
                |l| {
                    vec![
                        l.name.clone(),
                        l.record.id.trim_start_matches("sha256:").chars().take(12).collect(),
                        human::decimal_size(l.record.size),
                        l.record.created.format("%Y-%m-%d %H:%M:%S").to_string(),
                    ]
                },
            )
        }
        ImageCommand::Rm { images, node } => {
            let store = ImageStore::open(&node.data_dir)?;
            let in_use = layers_in_use(&node)?;
            for image in images {
                store.remove(&image, &in_use).with_context(|| format!("remove {image}"))?;
                println!("{image}");
            }
            let freed = store.gc(&in_use)?;
            eprintln!("freed {}", shoal_api::units::format_bytes(freed));
            Ok(())
        }
    }
}

/// Layer directories used by containers that exist on this node.
pub(super) fn layers_in_use(node: &NodeOpts) -> anyhow::Result<Vec<PathBuf>> {
    let containers = node.data_dir.join("containers");
    if !containers.exists() {
        return Ok(Vec::new());
    }
    let rt = Runtime::new(&node.data_dir, &node.cgroup_parent, shoal_worker::runtime::Helper::Fork)?;
    let mut layers = Vec::new();
    for id in rt.list()? {
        if let Ok(cfg) = rt.config(&id) {
            layers.extend(cfg.layers);
        }
    }
    Ok(layers)
}
