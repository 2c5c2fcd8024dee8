//! The command line: one module per command group. `daemon` runs a node; `container`
//! and `image` work on this node directly; the rest talk to a manager's API
//! (`remote` holds what they share).

mod attach;
mod cluster;
mod container;
mod container_exec;
mod container_inspect;
mod daemon;
mod events;
mod format;
mod human;
mod image;
mod network;
mod node;
mod node_leave;
mod node_opts;
mod payload;
mod remote;
mod service;
mod stack;
mod task;
mod task_exec;
mod terminal;
mod unlock;

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use shoal_api::client::PayloadKind;

/// Shoal: a multi-host container orchestrator in the spirit of Docker Swarm mode.
#[derive(Debug, Parser)]
#[command(name = "shoal", version, propagate_version = true)]
pub(crate) struct Cli {
    #[command(flatten)]
    connection: remote::Connection,
    #[command(subcommand)]
    command: Command,
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
    /// Manage services.
    #[command(subcommand)]
    Service(service::ServiceCommand),
    /// Look at tasks.
    #[command(subcommand)]
    Task(task::TaskCommand),
    /// Manage nodes.
    #[command(subcommand)]
    Node(node::NodeCommand),
    /// Manage overlay networks.
    #[command(subcommand)]
    Network(network::NetworkCommand),
    /// Manage secrets (data given to tasks as files, never shown again).
    #[command(subcommand)]
    Secret(payload::PayloadCommand),
    /// Manage configs (data given to tasks as files).
    #[command(subcommand)]
    Config(payload::PayloadCommand),
    /// Show the cluster and its tokens.
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
    /// Follow the cluster's events.
    Events(events::EventsArgs),
    /// Run simulated nodes against real managers, for scale tests and benchmarks.
    #[command(hide = true)]
    BenchAgents(crate::bench_agents::BenchAgentsArgs),
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
        Command::Container(cmd) => container::run(*cmd, &cli.connection),
        Command::Image(cmd) => image::run(cmd).map(|()| ExitCode::SUCCESS),
        Command::Stack(cmd) => stack::run(cmd, &cli.connection).map(|()| ExitCode::SUCCESS),
        Command::Service(cmd) => service::run(cmd, &cli.connection).map(|()| ExitCode::SUCCESS),
        Command::Node(cmd) => node::run(cmd, &cli.connection).map(|()| ExitCode::SUCCESS),
        Command::Task(cmd) => task::run(cmd, &cli.connection),
        Command::Network(cmd) => network::run(cmd, &cli.connection).map(|()| ExitCode::SUCCESS),
        Command::Secret(cmd) => {
            payload::run(PayloadKind::Secret, cmd, &cli.connection).map(|()| ExitCode::SUCCESS)
        }
        Command::Config(cmd) => {
            payload::run(PayloadKind::Config, cmd, &cli.connection).map(|()| ExitCode::SUCCESS)
        }
        Command::Cluster(cmd) => cluster::run(cmd, &cli.connection).map(|()| ExitCode::SUCCESS),
        Command::Events(args) => events::run(args, &cli.connection).map(|()| ExitCode::SUCCESS),
        Command::BenchAgents(args) => crate::bench_agents::run(args).map(|()| ExitCode::SUCCESS),
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

    #[test]
    fn an_empty_docker_socket_is_taken_and_turns_the_docker_api_off() {
        let cli = Cli::try_parse_from(["shoal", "daemon", "--init", "--docker-socket", ""]);
        assert!(cli.is_ok(), "{:?}", cli.err().map(|e| e.to_string()));
    }
}
