//! `shoal stack …`: stacks from Compose files.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::{Subcommand, ValueEnum};
use shoal_api::compose;

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
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(super) enum Format {
    Yaml,
    Json,
}

pub(super) fn run(cmd: StackCommand) -> anyhow::Result<()> {
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
    }
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
    let dir = std::path::absolute(path)
        .with_context(|| format!("cannot resolve {}", path.display()))?
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/"));
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
        read_file: &|p| std::fs::read(p).map_err(|e| e.to_string()),
    };
    compose::load(&src).with_context(|| format!("{} is not a usable stack", path.display()))
}
