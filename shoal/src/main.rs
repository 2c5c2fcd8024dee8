//! The `shoal` binary. Every subcommand is in [`cli`]; this file parses the command
//! line, runs it, and turns an error into a message and exit status 1.
//!
//! Two hidden subcommands are handled before anything else: `runtime-shim`, the
//! per-container helper the runtime starts by re-executing this binary, and
//! `runtime-exec`, which runs a command (a health check) inside a container. Both
//! must run single-threaded, so they are dispatched before any other set-up.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let mut args = std::env::args_os();
    if args.nth(1).is_some_and(|a| a == shoal_worker::runtime::shim::SUBCOMMAND) {
        let Some(state_dir) = args.next() else { return ExitCode::FAILURE };
        let code = shoal_worker::runtime::shim::main(std::path::Path::new(&state_dir));
        return ExitCode::from(code as u8);
    }
    if std::env::args_os().nth(1).is_some_and(|a| a == shoal_worker::runtime::exec::SUBCOMMAND) {
        let mut rest = std::env::args_os().skip(2);
        let (Some(dir), Some(spec)) = (rest.next(), rest.next()) else { return ExitCode::from(126) };
        let code = shoal_worker::runtime::exec::main(std::path::Path::new(&dir), &spec.to_string_lossy());
        return ExitCode::from(code.clamp(0, 255) as u8);
    }
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", describe(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, outermost first, joined by `: ` (anyhow's `{:#}`). Every
/// error below the binary keeps its cause as a source and leaves it out of its own
/// message, so each cause appears once.
pub(crate) fn describe(e: &anyhow::Error) -> String {
    format!("{e:#}")
}
