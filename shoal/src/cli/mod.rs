//! The command line: one module per command group. Only commands that work are here;
//! the daemon and the commands that talk to it arrive with the manager.

mod container;
mod daemon;
mod image;
mod stack;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory, Parser, Subcommand};

/// Shoal: a multi-host container orchestrator in the spirit of Docker Swarm mode.
#[derive(Debug, Parser)]
#[command(name = "shoal", version, propagate_version = true)]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where this node keeps its state; shared by the commands that work on the node.
#[derive(Debug, Clone, Args)]
pub(crate) struct NodeOpts {
    /// The node's data directory (images, containers, volumes).
    #[arg(long, env = "SHOAL_DATA_DIR", default_value = "/var/lib/shoal")]
    data_dir: PathBuf,
    /// Parent cgroup for containers, in every cgroup hierarchy.
    #[arg(long, env = "SHOAL_CGROUP_PARENT", default_value = "shoal")]
    cgroup_parent: String,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run this machine's node (a manager of the cluster store, for now).
    Daemon(Box<daemon::DaemonArgs>),
    /// Run and manage containers on this node directly, without a cluster.
    #[command(subcommand)]
    Container(Box<container::ContainerCommand>),
    /// Manage this node's images: import, pull, list, remove.
    #[command(subcommand)]
    Image(image::ImageCommand),
    /// Work with stacks: services, networks, secrets and configs from a Compose file.
    #[command(subcommand)]
    Stack(stack::StackCommand),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
}

/// Runs the parsed command; the exit code is the command's (a container's, for `run`).
pub(crate) fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Daemon(args) => daemon::run(*args).map(|()| ExitCode::SUCCESS),
        Command::Container(cmd) => container::run(*cmd),
        Command::Image(cmd) => image::run(cmd).map(|()| ExitCode::SUCCESS),
        Command::Stack(cmd) => stack::run(cmd).map(|()| ExitCode::SUCCESS),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "shoal", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
    }
}
