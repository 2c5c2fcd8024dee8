//! `shoal stack …`: stacks from Compose files: check one locally (`config`), deploy
//! it to the cluster, list, show its services and tasks, remove it.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::{Subcommand, ValueEnum};
use shoal_api::compose;
use shoal_api::wire::{Base64, ServiceFilter, StackDeploy, TaskFilter};

use super::remote::{Connection, Output, block_on};

#[derive(Debug, Subcommand)]
pub(super) enum StackCommand {
    /// Read a Compose file and print the specs a deploy would create, with warnings
    /// for every key Shoal does not use. Talks to no cluster.
    Config {
        /// The Compose file.
        #[arg(short = 'c', long = "compose-file", value_name = "FILE")]
        compose_file: PathBuf,
        /// Stack name; objects are named <stack>_<name>. Default: the file's folder name.
        #[arg(long)]
        name: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Yaml)]
        format: Format,
    },
    /// Deploy a Compose file as a stack: create, update, or remove (what the file no
    /// longer has) its services, networks, secrets and configs, in one change.
    #[command(alias = "up")]
    Deploy {
        /// The Compose file.
        #[arg(short = 'c', long = "compose-file", value_name = "FILE")]
        compose_file: PathBuf,
        /// The stack's name.
        name: String,
    },
    /// List stacks.
    #[command(alias = "list")]
    Ls {
        #[command(flatten)]
        out: Output,
    },
    /// List the tasks of a stack.
    Ps {
        /// The stack.
        name: String,
        #[command(flatten)]
        out: Output,
    },
    /// List the services of a stack.
    Services {
        /// The stack.
        name: String,
        #[command(flatten)]
        out: Output,
    },
    /// Remove stacks: their services, networks, secrets and configs.
    #[command(alias = "remove", alias = "down")]
    Rm {
        /// Stacks.
        #[arg(required = true)]
        names: Vec<String>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(super) enum Format {
    Yaml,
    Json,
}

pub(super) fn run(cmd: StackCommand, conn: &Connection) -> anyhow::Result<()> {
    match cmd {
        StackCommand::Config { compose_file, name, format } => {
            let stack = load(&compose_file, name.as_deref())?;
            for w in &stack.warnings {
                eprintln!("warning: {w}");
            }
            let shown = redact_payloads(serde_json::to_value(&stack)?);
            let text = match format {
                Format::Yaml => serde_yaml_ng::to_string(&shown)?,
                Format::Json => serde_json::to_string_pretty(&shown)? + "\n",
            };
            print!("{text}");
            Ok(())
        }
        StackCommand::Deploy { compose_file, name } => {
            // Read here first: errors and warnings show before anything is sent, and
            // the variables and files the file uses go along with it.
            let (stack, deploy) = load_for_deploy(&compose_file, &name)?;
            for w in &stack.warnings {
                eprintln!("warning: {w}");
            }
            let client = conn.client()?;
            let done = block_on(async move { client.deploy_stack(&name, &deploy).await })??;
            for (what, list) in
                [("created", &done.created), ("updated", &done.updated), ("removed", &done.removed)]
            {
                for item in list {
                    println!("{what} {item}");
                }
            }
            if done.created.is_empty() && done.updated.is_empty() && done.removed.is_empty() {
                println!("stack {} is up to date", done.name);
            }
            Ok(())
        }
        StackCommand::Ls { out } => {
            let client = conn.client()?;
            let stacks = block_on(async move { client.stacks().await })??;
            out.print(
                &stacks,
                |s| s.name.clone(),
                &["NAME", "SERVICES", "NETWORKS", "SECRETS", "CONFIGS"],
                |s| {
                    vec![
                        s.name.clone(),
                        s.services.to_string(),
                        s.networks.to_string(),
                        s.secrets.to_string(),
                        s.configs.to_string(),
                    ]
                },
            )
        }
        StackCommand::Ps { name, out } => {
            let client = conn.client()?;
            block_on(async move {
                let tasks = client.tasks(&TaskFilter { stack: Some(name), ..Default::default() }).await?;
                super::service::print_tasks(
                    &client,
                    tasks,
                    &out,
                    &super::service::TaskFilters::default(),
                    false,
                )
                .await
            })?
        }
        StackCommand::Services { name, out } => {
            let client = conn.client()?;
            block_on(async move {
                let services =
                    client.services(&ServiceFilter { stack: Some(name), ..Default::default() }).await?;
                super::service::print_services(&client, &services, &out).await
            })?
        }
        StackCommand::Rm { names } => {
            let client = conn.client()?;
            block_on(async move {
                for n in &names {
                    let done = client.remove_stack(n).await?;
                    for item in &done.removed {
                        println!("removed {item}");
                    }
                }
                Ok::<_, anyhow::Error>(())
            })?
        }
    }
}

/// Reads a Compose file for a deploy, noting the variables it uses and the files it
/// reads, so the manager can read it the same way.
fn load_for_deploy(path: &Path, name: &str) -> anyhow::Result<(compose::Stack, StackDeploy)> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the Compose file {}", path.display()))?;
    let dir = compose_dir(path)?;
    let env = RefCell::new(BTreeMap::new());
    let files = RefCell::new(BTreeMap::new());
    let src = compose::Source {
        stack: name,
        text: &text,
        dir: &dir,
        env: &|var| {
            let value = std::env::var(var).ok();
            if let Some(v) = &value {
                env.borrow_mut().insert(var.to_owned(), v.clone());
            }
            value
        },
        read_file: &|p| {
            let data = std::fs::read(p)?;
            files.borrow_mut().insert(p.display().to_string(), Base64(data.clone()));
            Ok(data)
        },
    };
    let stack = compose::load(&src).with_context(|| format!("{} is not a usable stack", path.display()))?;
    let deploy = StackDeploy {
        compose: text.clone(),
        dir: dir.display().to_string(),
        env: env.into_inner(),
        files: files.into_inner(),
    };
    Ok((stack, deploy))
}

fn compose_dir(path: &Path) -> anyhow::Result<PathBuf> {
    Ok(std::path::absolute(path)
        .with_context(|| format!("cannot resolve {}", path.display()))?
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/")))
}

/// Secret contents do not belong in terminals and CI logs: show their size instead.
fn redact_payloads(mut stack: serde_json::Value) -> serde_json::Value {
    if let Some(secrets) = stack.get_mut("secrets").and_then(|s| s.as_array_mut()) {
        for secret in secrets {
            let len = secret["data"].as_str().map_or(0, |d| d.len() / 4 * 3);
            secret["data"] = format!("<{len} bytes, not shown>").into();
        }
    }
    stack
}

/// Reads a Compose file into a stack, resolving variables from the environment.
pub(super) fn load(path: &Path, name: Option<&str>) -> anyhow::Result<compose::Stack> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the Compose file {}", path.display()))?;
    let dir = compose_dir(path)?;
    let stack_name = match name {
        Some(n) => n.to_owned(),
        None => dir
            .file_name()
            .map(|n| {
                let name =
                    n.to_string_lossy().to_lowercase().replace(|c: char| !c.is_ascii_alphanumeric(), "-");
                name.trim_matches('-').to_owned()
            })
            .filter(|n| !n.is_empty())
            .context("cannot name the stack after the file's folder: give --name")?,
    };
    let src = compose::Source {
        stack: &stack_name,
        text: &text,
        dir: &dir,
        env: &|var| std::env::var(var).ok(),
        read_file: &|p| std::fs::read(p),
    };
    compose::load(&src).with_context(|| format!("{} is not a usable stack", path.display()))
}
