//! Shoal's per-container supervisor: once a container's program runs, the worker's shim
//! executes this small program in its place, which copies the container's output into
//! its log, counts OOM kills, reaps the init and writes the exit record. It uses the
//! standard library alone, so that the worker's build script can compile it with rustc
//! into a small static binary: each running container pays for one of these processes,
//! and the big shoal binary would cost each one its own relocated pages.
//!
//! The worker also links this crate, for the log writer and the command-line contract,
//! and to run the same watch in-process when the binary cannot be executed.

pub mod clock;
pub mod cri;
pub mod invocation;
pub mod memory;
mod sys;
pub mod watch;

use std::ffi::OsString;

use invocation::Invocation;

/// The program's name: also the name `ps` shows for every container's supervisor.
pub const PROGRAM: &str = "shoal-shim";

/// Runs the supervisor with the arguments after the program name; returns its exit code.
pub fn main_with(args: impl IntoIterator<Item = OsString>) -> i32 {
    let watch = Invocation::parse(args).and_then(|inv| {
        let (stdout, stderr, oom_event) = inv.take_fds()?;
        Ok(inv.into_watch(stdout, stderr, oom_event))
    });
    match watch {
        Ok(watch) => watch::run(watch),
        Err(e) => {
            eprintln!("{PROGRAM}: {e}");
            2
        }
    }
}
