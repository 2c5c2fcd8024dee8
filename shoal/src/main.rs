//! The `shoal` binary. Every subcommand is in [`cli`]; this file parses the command
//! line, runs it, and turns an error into a message and exit status 1.
//!
//! Two hidden subcommands are handled before anything else: `runtime-shim`, the
//! per-container helper the runtime starts by re-executing this binary, and
//! `runtime-exec`, which runs a command (a health check) inside a container. Both
//! must run single-threaded, so they are dispatched before any other set-up.

mod bench_agents;
mod cli;
mod limits;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let mut args = std::env::args_os();
    if args.nth(1).is_some_and(|a| a == shoal_worker::runtime::shim::SUBCOMMAND) {
        let (Some(state_dir), Some(supervisor)) = (args.next(), args.next()) else {
            return ExitCode::FAILURE;
        };
        let code = shoal_worker::runtime::shim::main(
            std::path::Path::new(&state_dir),
            std::path::Path::new(&supervisor),
        );
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

#[cfg(test)]
mod tests {
    use std::io;
    use std::path::PathBuf;

    use shoal_manager::http::ServeError;
    use shoal_worker::cgroups::CgroupError;
    use shoal_worker::image::{ImageError, ImportError, LayerError};
    use shoal_worker::runtime::RuntimeError;
    use shoal_worker::runtime::rootfs::RootfsError;

    use super::describe;

    /// An error whose text is easy to count.
    fn cause() -> io::Error {
        io::Error::other("the disk said no")
    }

    /// Errors below the binary keep their cause as a source and out of their own
    /// message, so the printed chain tells each cause once.
    #[test]
    fn every_cause_is_printed_once() {
        let path = || PathBuf::from("/x");
        let cases: Vec<anyhow::Error> = vec![
            RuntimeError::Io { id: "c1".into(), what: "write state".into(), source: cause() }.into(),
            RuntimeError::Cgroup {
                id: "c1".into(),
                source: CgroupError::Io { op: "write", path: path(), source: cause() },
            }
            .into(),
            CgroupError::MemoryLimit { bytes: 1, path: path(), source: cause() }.into(),
            RootfsError::Create { path: path(), source: cause() }.into(),
            ImageError::Io { what: "create blob".into(), source: cause() }.into(),
            ImageError::Layer(LayerError::Io { entry: "a".into(), source: cause() }).into(),
            ImportError::Io { path: path(), source: cause() }.into(),
            ServeError::Listen { what: "/run/shoal.sock".into(), source: cause() }.into(),
        ];
        for e in cases {
            let text = describe(&e.context("do the thing"));
            assert_eq!(text.matches("the disk said no").count(), 1, "{text}");
            assert!(text.starts_with("do the thing: "), "{text}");
        }
    }

    #[test]
    fn the_chain_reads_outermost_first() {
        let e = anyhow::Error::new(RootfsError::Create { path: PathBuf::from("/etc/x"), source: cause() })
            .context("start container c1");
        assert_eq!(describe(&e), "start container c1: create /etc/x: the disk said no");
    }
}
