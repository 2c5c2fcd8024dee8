//! `shoal secret …` and `shoal config …`: create from a file or stdin, list,
//! inspect (never the data) and remove.

use std::io::Read as _;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Subcommand;
use shoal_api::PayloadSpec;
use shoal_api::client::PayloadKind;

use super::remote::{Connection, Output, ago, block_on, labels_from, print_json, short};

#[derive(Debug, Subcommand)]
pub(super) enum PayloadCommand {
    /// Create one from a file, or from standard input with `-`.
    Create {
        /// Its name.
        name: String,
        /// The file with the data, or `-` for standard input.
        file: PathBuf,
        /// Label (KEY=VALUE).
        #[arg(short = 'l', long = "label")]
        labels: Vec<String>,
    },
    /// List them.
    #[command(alias = "list")]
    Ls {
        #[command(flatten)]
        out: Output,
    },
    /// Show them as JSON (without the data).
    Inspect {
        /// Names or ids.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove ones no service uses.
    #[command(alias = "remove")]
    Rm {
        /// Names or ids.
        #[arg(required = true)]
        names: Vec<String>,
    },
}

pub(super) fn run(kind: PayloadKind, cmd: PayloadCommand, conn: &Connection) -> anyhow::Result<()> {
    let client = conn.client()?;
    block_on(async move {
        match cmd {
            PayloadCommand::Create { name, file, labels } => {
                let data = if file.as_os_str() == "-" {
                    let mut buf = Vec::new();
                    std::io::stdin().read_to_end(&mut buf).context("read standard input")?;
                    buf
                } else {
                    std::fs::read(&file).with_context(|| format!("read {}", file.display()))?
                };
                let labels = labels_from(&labels)?;
                println!("{}", client.create_payload(kind, &PayloadSpec { name, labels, data }).await?.id);
            }
            PayloadCommand::Ls { out } => {
                let items = client.payloads(kind).await?;
                out.print(
                    &items,
                    |p| p.id.clone(),
                    &["ID", "NAME", "SIZE", "CREATED", "UPDATED"],
                    |p| {
                        vec![
                            short(&p.id),
                            p.name.clone(),
                            p.size.to_string(),
                            ago(p.meta.created_at),
                            ago(p.meta.updated_at),
                        ]
                    },
                )?;
            }
            PayloadCommand::Inspect { names } => {
                let mut out = Vec::new();
                for n in &names {
                    out.push(client.payload(kind, n).await?);
                }
                print_json(&out)?;
            }
            PayloadCommand::Rm { names } => {
                for n in &names {
                    client.remove_payload(kind, n).await?;
                    println!("{n}");
                }
            }
        }
        Ok(())
    })?
}
