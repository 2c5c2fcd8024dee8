//! `shoal task inspect`: tasks as JSON, with their addresses on each network.

use clap::Subcommand;

use super::remote::{Connection, block_on, print_json};

#[derive(Debug, Subcommand)]
pub(super) enum TaskCommand {
    /// Show tasks as JSON: spec, status, node and addresses (`networks`).
    Inspect {
        /// Task ids (or unique prefixes).
        #[arg(required = true)]
        tasks: Vec<String>,
    },
}

pub(super) fn run(cmd: TaskCommand, conn: &Connection) -> anyhow::Result<()> {
    let client = conn.client()?;
    block_on(async move {
        match cmd {
            TaskCommand::Inspect { tasks } => {
                let mut out = Vec::new();
                for t in &tasks {
                    out.push(client.task(t).await?);
                }
                print_json(&out)?;
            }
        }
        Ok(())
    })?
}
