//! The command line: one module per command group. Only commands that work are here;
//! the daemon and the commands that talk to it arrive with the manager and worker.

mod stack;

use clap::{CommandFactory, Parser, Subcommand};

/// Shoal: a multi-host container orchestrator in the spirit of Docker Swarm mode.
#[derive(Debug, Parser)]
#[command(name = "shoal", version, propagate_version = true)]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Work with stacks: services, networks, secrets and configs from a Compose file.
    #[command(subcommand)]
    Stack(stack::StackCommand),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
}

/// Runs the parsed command.
pub(crate) fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Stack(cmd) => stack::run(cmd),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "shoal", &mut std::io::stdout());
            Ok(())
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
