//! `shoal task inspect`: tasks as JSON, with their addresses on each network;
//! `shoal task exec` (in `task_exec`).

use std::process::ExitCode;

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
    /// Run a command in a running task's container, on whatever node it runs
    /// (through the managers); exits with the command's code.
    Exec {
        #[command(flatten)]
        opts: super::container_exec::ExecOpts,
        /// A task id (or unique prefix), SERVICE.SLOT, or SERVICE (its first
        /// running task).
        task: String,
        /// Command and arguments.
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        cmd: Vec<String>,
    },
}

pub(super) fn run(cmd: TaskCommand, conn: &Connection) -> anyhow::Result<ExitCode> {
    if let TaskCommand::Exec { opts, task, cmd } = cmd {
        return super::task_exec::run(conn, &task, &opts, cmd);
    }
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
            TaskCommand::Exec { .. } => unreachable!("handled before the client"),
        }
        Ok(ExitCode::SUCCESS)
    })?
}
