//! Running a command inside a running container (health checks, `container exec`,
//! `task exec`): a fresh, single-threaded process (`shoal runtime-exec`) joins the
//! container's cgroup and namespaces, then forks the command in them as the
//! container's user (or the one asked for), with its capabilities and seccomp filter,
//! and exits with the command's status. Its stdio is the command's: pipes, the
//! caller's own, or the slave of a terminal opened in the container's devpts.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sched::{CloneFlags, setns};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, fork};
use serde::{Deserialize, Serialize};
use shoal_api::report::chain;

use super::config::ContainerConfig;
use super::init::{become_and_exec, find_program};
use super::pty::{self, WinSize};
use super::state::{Started, StateDir};
use super::{sys, user};
use crate::json_file::read_json;

/// The hidden subcommand of the shoal binary that runs [`main`].
pub const SUBCOMMAND: &str = "runtime-exec";

/// Exit status when the command could not be set up or found, as `docker exec`.
pub const CANNOT_RUN: i32 = 126;

/// What to run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecSpec {
    /// Program and arguments (looked up in the container's `PATH`).
    pub args: Vec<String>,
    /// Run as this user (`user`, `uid`, `user:group`, `uid:gid`) instead of the
    /// container's.
    #[serde(default)]
    pub user: Option<String>,
    /// Working directory instead of the container's.
    #[serde(default)]
    pub workdir: Option<String>,
    /// `NAME=VALUE` pairs added to (or replacing) the container's environment.
    #[serde(default)]
    pub env: Vec<String>,
    /// Stdin is a terminal: the command gets it as its controlling terminal.
    #[serde(default)]
    pub tty: bool,
}

/// Where a spawned exec's stdio goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecIo {
    /// The caller's own stdout and stderr; its stdin too when `stdin`.
    Inherit {
        /// Pass stdin on (otherwise the command reads /dev/null).
        stdin: bool,
    },
    /// Pipes the caller reads and writes.
    Pipes {
        /// A pipe to the command's stdin (otherwise /dev/null).
        stdin: bool,
    },
    /// A terminal opened in the container, this size.
    Tty(WinSize),
}

/// A running exec.
#[derive(Debug)]
pub struct ExecProcess {
    /// The `runtime-exec` process; its exit status is the command's.
    pub child: std::process::Child,
    /// The terminal's master side, with [`ExecIo::Tty`].
    pub pty: Option<OwnedFd>,
}

/// Starts `spec` in the container whose state is in `state_dir` and whose init is
/// `init_pid`, through `program`, with stdio as `io` says.
pub fn spawn(
    program: &Path,
    state_dir: &Path,
    init_pid: i32,
    spec: &ExecSpec,
    io: ExecIo,
) -> std::io::Result<ExecProcess> {
    use std::process::Stdio;
    let mut spec = spec.clone();
    spec.tty = matches!(io, ExecIo::Tty(_));
    let json = serde_json::to_string(&spec).map_err(std::io::Error::other)?;
    let mut cmd = std::process::Command::new(program);
    cmd.arg(SUBCOMMAND).arg(state_dir).arg(json);
    let null_or = |on: bool, other: fn() -> Stdio| if on { other() } else { Stdio::null() };
    let mut pty = None;
    match io {
        ExecIo::Inherit { stdin } => {
            cmd.stdin(null_or(stdin, Stdio::inherit)).stdout(Stdio::inherit()).stderr(Stdio::inherit());
        }
        ExecIo::Pipes { stdin } => {
            cmd.stdin(null_or(stdin, Stdio::piped)).stdout(Stdio::piped()).stderr(Stdio::piped());
        }
        ExecIo::Tty(size) => {
            let pair = pty::open_in(init_pid, size)?;
            cmd.stdin(pair.slave.try_clone()?).stdout(pair.slave.try_clone()?).stderr(pair.slave);
            pty = Some(pair.master);
        }
    }
    // The command's stdio are dups in the child; the parent's copies of the slave
    // close when `cmd` goes, so the master sees EOF once the command is done.
    let child = cmd.spawn()?;
    drop(cmd);
    Ok(ExecProcess { child, pty })
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
            forward_signals_to(child.as_raw());
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

/// The command, for [`pass_on`].
static COMMAND: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

extern "C" fn pass_on(sig: libc::c_int) {
    let pid = COMMAND.load(std::sync::atomic::Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe; `pid` is our own child, not yet reaped.
        unsafe { libc::kill(pid, sig) };
    }
}

/// From now on a hang-up, interrupt or termination of this process goes to the
/// command (the agent hangs up when the client of a `task exec` went away).
fn forward_signals_to(pid: i32) {
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
    if COMMAND.swap(pid, std::sync::atomic::Ordering::SeqCst) == pid {
        return;
    }
    let action = SigAction::new(SigHandler::Handler(pass_on), SaFlags::SA_RESTART, SigSet::empty());
    for sig in [Signal::SIGHUP, Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only reads an atomic and calls kill, both async-signal-safe.
        let _ = unsafe { sigaction(sig, &action) };
    }
}

/// In the container's namespaces (the root is its root): become its user and exec.
fn exec_command(cfg: &ContainerConfig, spec: &ExecSpec) -> Result<std::convert::Infallible, String> {
    if spec.tty {
        pty::take_stdin_as_controlling()?;
    }
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let user = spec.user.as_deref().unwrap_or(&cfg.process.user);
    let id = user::resolve(user, &read("/etc/passwd"), &read("/etc/group")).map_err(|e| e.to_string())?;
    match &spec.workdir {
        Some(dir) => nix::unistd::chdir(Path::new(dir))
            .map_err(|e| format!("cannot change to the working directory {dir}: {e}"))?,
        None => {
            let _ = nix::unistd::chdir(Path::new(&cfg.process.cwd));
        }
    }
    let mut env = cfg.process.env.clone();
    for pair in &spec.env {
        let name = pair.split_once('=').map_or(pair.as_str(), |(n, _)| n);
        env.retain(|e| e.split_once('=').map_or(e.as_str(), |(n, _)| n) != name);
        env.push(pair.clone());
    }
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", id.home));
    }
    let program = find_program(&spec.args[0], &env)?;
    become_and_exec(&id, &program, &spec.args, &env)
}
