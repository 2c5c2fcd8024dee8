//! Running a command inside a running container (health checks): a fresh,
//! single-threaded process (`shoal runtime-exec`) joins the container's cgroup and
//! namespaces, then forks the command in them as the container's user, with its
//! capabilities and seccomp filter, and exits with the command's status.

use std::fs::File;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sched::{CloneFlags, setns};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, fork};
use serde::{Deserialize, Serialize};
use shoal_api::report::chain;

use super::config::ContainerConfig;
use super::init::{become_and_exec, find_program};
use super::state::{Started, StateDir};
use super::{sys, user};
use crate::json_file::read_json;

/// The hidden subcommand of the shoal binary that runs [`main`].
pub const SUBCOMMAND: &str = "runtime-exec";

/// Exit status when the command could not be set up or found, as `docker exec`.
pub const CANNOT_RUN: i32 = 126;

/// What to run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecSpec {
    /// Program and arguments (looked up in the container's `PATH`).
    pub args: Vec<String>,
}

/// How an exec ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecResult {
    /// The command's exit code (128 + signal when killed); `None` when it timed out.
    pub code: Option<i32>,
    /// The start of its output (stdout then stderr), at most 4 KiB.
    pub output: String,
}

/// Largest output kept.
const OUTPUT_LIMIT: usize = 4096;

/// Runs `spec` in the container whose state is in `state_dir`, through `program`
/// (this binary, or a sealed copy of it), killing it after `timeout`.
pub fn run_in(
    program: &Path,
    state_dir: &Path,
    spec: &ExecSpec,
    timeout: Duration,
) -> std::io::Result<ExecResult> {
    use std::io::Read as _;
    let json = serde_json::to_string(spec).map_err(std::io::Error::other)?;
    let mut child = std::process::Command::new(program)
        .arg(SUBCOMMAND)
        .arg(state_dir)
        .arg(json)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let mut out = Vec::new();
    if let Some(mut o) = child.stdout.take() {
        let _ = o.read_to_end(&mut out);
    }
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_end(&mut out);
    }
    out.truncate(OUTPUT_LIMIT);
    let code = status.map(|s| {
        use std::os::unix::process::ExitStatusExt as _;
        s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(0))
    });
    Ok(ExecResult { code, output: String::from_utf8_lossy(&out).into_owned() })
}

/// Entry point of `shoal runtime-exec STATE_DIR SPEC_JSON`; must run in a fresh,
/// single-threaded process. Returns the exit code.
pub fn main(state_dir: &Path, spec_json: &str) -> i32 {
    match run(state_dir, spec_json) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("exec: {message}");
            CANNOT_RUN
        }
    }
}

fn run(state_dir: &Path, spec_json: &str) -> Result<i32, String> {
    let spec: ExecSpec = serde_json::from_str(spec_json).map_err(|e| format!("malformed exec spec: {e}"))?;
    if spec.args.is_empty() {
        return Err("nothing to run".into());
    }
    let dir = StateDir(state_dir.to_owned());
    let cfg: ContainerConfig =
        read_json(&dir.config()).map_err(|e| e.to_string())?.ok_or("the container has no config")?;
    let started: Started =
        read_json(&dir.started()).map_err(|e| e.to_string())?.ok_or("the container has not started")?;
    let pid = started.init_pid;
    let mut kinds = vec![("ipc", CloneFlags::CLONE_NEWIPC), ("uts", CloneFlags::CLONE_NEWUTS)];
    kinds.push(("net", CloneFlags::CLONE_NEWNET));
    kinds.push(("pid", CloneFlags::CLONE_NEWPID));
    kinds.push(("mnt", CloneFlags::CLONE_NEWNS));
    if cfg.userns.is_some() {
        kinds.insert(0, ("user", CloneFlags::CLONE_NEWUSER));
    }
    let files: Vec<(File, CloneFlags)> = kinds
        .iter()
        .map(|(name, flag)| {
            File::open(format!("/proc/{pid}/ns/{name}"))
                .map(|f| (f, *flag))
                .map_err(|e| format!("open the container's {name} namespace: {e}"))
        })
        .collect::<Result<_, _>>()?;
    // Opened, then checked: the files pin the namespaces of this very process.
    if sys::process_start_time(pid).ok() != Some(started.init_start) {
        return Err("the container is not running".into());
    }
    cfg.cgroup.join_self().map_err(|e| format!("join the container's cgroup: {}", chain(&e)))?;
    for (f, flag) in files {
        setns(f, flag).map_err(|e| format!("join a namespace of the container: {e}"))?;
    }
    // SAFETY: this process is single-threaded (a fresh exec), so the child may do
    // anything before it execs.
    match unsafe { fork() }.map_err(|e| format!("fork: {e}"))? {
        ForkResult::Child => {
            let message = match exec_command(&cfg, &spec) {
                Ok(never) => match never {},
                Err(e) => e,
            };
            eprintln!("exec: {message}");
            let code = if message.starts_with("command not found") { 127 } else { CANNOT_RUN };
            // SAFETY: leaving the child without running the parent's exit handlers.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => loop {
            match waitpid(child, None) {
                Ok(WaitStatus::Exited(_, code)) => return Ok(code),
                Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(128 + sig as i32),
                Ok(_) => continue,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(format!("wait for the command: {e}")),
            }
        },
    }
}

/// In the container's namespaces (the root is its root): become its user and exec.
fn exec_command(cfg: &ContainerConfig, spec: &ExecSpec) -> Result<std::convert::Infallible, String> {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let id = user::resolve(&cfg.process.user, &read("/etc/passwd"), &read("/etc/group"))
        .map_err(|e| e.to_string())?;
    let _ = nix::unistd::chdir(Path::new(&cfg.process.cwd));
    let mut env = cfg.process.env.clone();
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", id.home));
    }
    let program = find_program(&spec.args[0], &env)?;
    become_and_exec(&id, &program, &spec.args, &env)
}
