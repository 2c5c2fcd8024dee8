//! The shim: a small single-threaded process per container, started by re-executing the
//! shoal binary (through a read-only view of it), so nothing is ever forked from the daemon's
//! multi-threaded runtime. It detaches from the daemon (a restarted daemon finds it
//! again), makes the container's pid namespace and forks the init into it (which
//! joins its cgroup itself), and reports the init's pid (or the reason it failed) to the
//! daemon over a socketpair. Then it executes the supervisor (`super::supervisor`) in
//! its place, which copies the container's output into the log file, watches for OOM
//! kills, and records the exit status: a small static binary, where the shoal binary
//! would cost every running container its own relocated pages.

use std::fs;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use chrono::{SecondsFormat, Utc};
use nix::fcntl::OFlag;
use nix::sched::{CloneFlags, unshare};
use nix::sys::wait::waitpid;
use nix::unistd::{ForkResult, Pid, fork, pipe2, setsid};
use serde::{Deserialize, Serialize};
use shoal_api::report::chain;
use shoal_supervisor::invocation::{Invocation, OOM_EVENT_FD, STDERR_FD, STDOUT_FD};

use super::config::ContainerConfig;
use super::init::{self, InitPipes};
use super::state::{Started, StateDir};
use super::sys;
use crate::cgroups::Cgroup;
use crate::json_file::{read_json, write_json};

/// The hidden subcommand of the shoal binary that runs [`main`].
pub const SUBCOMMAND: &str = "runtime-shim";

/// The fd number the daemon hands the report socket on.
pub const REPORT_FD: RawFd = 3;

/// The shim's one message to the daemon.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Report {
    /// The program runs.
    Started(Started),
    /// It could not be started, and why.
    Failed(String),
}

/// Entry point of the shim process. `state_dir` holds `config.json`; the report
/// socket is fd [`REPORT_FD`]; `supervisor` is the program to hand the running
/// container to. Returns the process exit code.
pub fn main(state_dir: &Path, supervisor: &Path) -> i32 {
    // SAFETY: the daemon passes fd 3 as the shim's end of a socketpair, owned by
    // nobody else in this fresh process.
    let report = unsafe { UnixStream::from_raw_fd(REPORT_FD) };
    run(state_dir, supervisor, report)
}

/// Closes every descriptor but stdio and `keep`: ones the daemon (or the CLI) was
/// started with and did not mark close-on-exec, a launcher's pipe say, would otherwise
/// stay open in the shim for as long as its container runs.
fn close_inherited(keep: RawFd) {
    let keep = keep as u32;
    let ranges = [(3, keep.checked_sub(1)), (keep + 1, Some(u32::MAX))];
    let closed = ranges.iter().all(|&(first, last)| match last {
        Some(last) if first <= last => {
            // SAFETY: close_range only closes descriptors; the shim owns none but
            // stdio and `keep` at this point (it has read its config, opened nothing
            // since).
            let rc = unsafe { libc::close_range(first, last, 0) };
            rc == 0
        }
        _ => true,
    });
    if closed {
        return;
    }
    // Kernels before 5.9: close what /proc lists.
    let open: Vec<RawFd> = fs::read_dir("/proc/self/fd")
        .map(|dir| dir.flatten().filter_map(|e| e.file_name().to_str()?.parse().ok()).collect())
        .unwrap_or_default();
    for fd in open.into_iter().filter(|&fd| fd > 2 && fd as u32 != keep) {
        let _ = nix::unistd::close(fd);
    }
}

/// The shim's work, reporting on `report`; the process must be single-threaded (a
/// fresh exec, or a fork of a single-threaded process). Returns the exit code.
pub fn run(state_dir: &Path, supervisor: &Path, report: UnixStream) -> i32 {
    let dir = StateDir(state_dir.to_owned());
    let cfg: ContainerConfig = match read_json(&dir.config()) {
        Ok(Some(cfg)) => cfg,
        Ok(None) => return fail(report, format!("{} is missing", dir.config().display())),
        Err(e) => return fail(report, format!("cannot read the container config: {e}")),
    };
    // Detach: a new session, and a second fork so the daemon is not our parent and a
    // restart of it does not touch us. The daemon reaps the first child at once.
    if let Err(e) = setsid() {
        return fail(report, format!("setsid: {e}"));
    }
    // SAFETY: this process is single-threaded (see `run`), so fork cannot deadlock.
    match unsafe { fork() } {
        Ok(ForkResult::Parent { .. }) => return 0,
        Ok(ForkResult::Child) => {}
        Err(e) => return fail(report, format!("fork: {e}")),
    }
    close_inherited(report.as_raw_fd());
    // Name the process and stand in the state directory, so `ps` and /proc show
    // whose shim it is (forked shims would otherwise look like their parent).
    let _ = nix::sys::prctl::set_name(c"shoal-shim");
    let _ = nix::unistd::chdir(state_dir);
    // SAFETY: setting SIGPIPE to ignored installs no handler code; a daemon that went
    // away must not kill the shim when it writes the report.
    let _ = unsafe {
        nix::sys::signal::signal(nix::sys::signal::Signal::SIGPIPE, nix::sys::signal::SigHandler::SigIgn)
    };
    match start(&cfg, &dir) {
        Ok((started, running)) => {
            let _ = send(&report, &Report::Started(started.clone()));
            drop(report);
            hand_over(&cfg, &dir, supervisor, &started, running)
        }
        Err(e) => fail(report, e),
    }
}

fn fail(report: UnixStream, message: String) -> i32 {
    let _ = send(&report, &Report::Failed(message));
    1
}

fn send(mut sock: &UnixStream, report: &Report) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(report).map_err(std::io::Error::other)?;
    line.push(b'\n');
    sock.write_all(&line)
}

/// The parent ends of the container's pipes, kept by the shim.
struct Running {
    init: Pid,
    stdout: OwnedFd,
    stderr: OwnedFd,
}

fn pipe() -> Result<(OwnedFd, OwnedFd), String> {
    pipe2(OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))
}

/// Forks the init into a new pid namespace and waits until it has exec'd its program.
fn start(cfg: &ContainerConfig, dir: &StateDir) -> Result<(Started, Running), String> {
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let (fail_r, fail_w) = pipe()?;
    let pipes = InitPipes { error: fail_w, stdout: out_w, stderr: err_w };
    let child = match cfg.userns {
        None => fork_init(cfg, dir, pipes)?,
        Some(map) => fork_init_in_userns(cfg, dir, pipes, map)?,
    };
    let mut why = String::new();
    let _ = fs::File::from(fail_r).read_to_string(&mut why);
    if !why.is_empty() {
        let _ = waitpid(child, None);
        return Err(why);
    }
    let started = Started {
        shim_pid: std::process::id() as i32,
        shim_start: sys::process_start_time(std::process::id() as i32).map_err(|e| e.to_string())?,
        init_pid: child.as_raw(),
        init_start: sys::child_start_time(child.as_raw()).map_err(|e| e.to_string())?,
        started_at: Utc::now(),
    };
    write_json(&dir.started(), &started).map_err(|e| format!("record the start: {e}"))?;
    Ok((started, Running { init: child, stdout: out_r, stderr: err_r }))
}

/// The init as the shim's child, pid 1 of a new pid namespace; it joins its cgroup.
fn fork_init(cfg: &ContainerConfig, dir: &StateDir, pipes: InitPipes) -> Result<Pid, String> {
    unshare(CloneFlags::CLONE_NEWPID).map_err(|e| format!("create pid namespace: {e}"))?;
    // SAFETY: single-threaded process (see `run`); the child only runs `init::run`.
    match unsafe { fork() }.map_err(|e| format!("fork: {e}"))? {
        ForkResult::Child => init::run(cfg, &dir.0, pipes, true),
        ForkResult::Parent { child } => Ok(child),
    }
}

/// With a user namespace, which must own the pid namespace (or `/proc` cannot be
/// mounted): a helper child joins the cgroup (still host root), unshares the user
/// namespace, waits while the shim writes its id maps, unshares the pid namespace,
/// forks the init, reports its pid and exits. The shim is a child subreaper, so the
/// init becomes its child.
fn fork_init_in_userns(
    cfg: &ContainerConfig,
    dir: &StateDir,
    pipes: InitPipes,
    map: super::config::IdMapping,
) -> Result<Pid, String> {
    nix::sys::prctl::set_child_subreaper(true).map_err(|e| format!("become a subreaper: {e}"))?;
    let (ready_r, ready_w) = pipe()?;
    let (mapped_r, mapped_w) = pipe()?;
    let (pid_r, pid_w) = pipe()?;
    // SAFETY: single-threaded process (see `run`); the child runs the steps below
    // and `init::run` in its own child.
    let helper = match unsafe { fork() }.map_err(|e| format!("fork: {e}"))? {
        ForkResult::Child => {
            drop((ready_r, mapped_w, pid_r));
            let result = (|| -> Result<Pid, String> {
                cfg.cgroup.join_self().map_err(|e| format!("join the container's cgroup: {}", chain(&e)))?;
                unshare(CloneFlags::CLONE_NEWUSER).map_err(|e| format!("create user namespace: {e}"))?;
                nix::unistd::write(&ready_w, b"u").map_err(|e| format!("sync: {e}"))?;
                let mut b = [0u8; 1];
                if nix::unistd::read(&mapped_r, &mut b) != Ok(1) {
                    return Err("the shim did not map the user namespace".into());
                }
                let root = nix::unistd::Uid::from_raw(0);
                let gid = nix::unistd::Gid::from_raw(0);
                nix::unistd::setresgid(gid, gid, gid)
                    .map_err(|e| format!("become root in the user namespace: {e}"))?;
                nix::unistd::setresuid(root, root, root)
                    .map_err(|e| format!("become root in the user namespace: {e}"))?;
                unshare(CloneFlags::CLONE_NEWPID).map_err(|e| format!("create pid namespace: {e}"))?;
                // SAFETY: still single-threaded.
                match unsafe { fork() }.map_err(|e| format!("fork: {e}"))? {
                    ForkResult::Child => init::run(cfg, &dir.0, pipes, false),
                    ForkResult::Parent { child } => Ok(child),
                }
            })();
            let message = match result {
                Ok(init) => format!("{}", init.as_raw()),
                Err(e) => format!("error: {e}"),
            };
            let _ = nix::unistd::write(&pid_w, message.as_bytes());
            // SAFETY: leave at once, without running anything inherited from the shim.
            unsafe { libc::_exit(0) }
        }
        ForkResult::Parent { child } => child,
    };
    drop((ready_w, mapped_r, pid_w));
    drop(pipes);
    let mut b = [0u8; 1];
    if nix::unistd::read(&ready_r, &mut b) == Ok(1) {
        let line = format!("0 {} {}\n", map.host, map.size);
        for file in ["uid_map", "gid_map"] {
            let path = format!("/proc/{}/{file}", helper.as_raw());
            if let Err(e) = fs::write(&path, &line) {
                let _ = nix::sys::signal::kill(helper, nix::sys::signal::SIGKILL);
                let _ = waitpid(helper, None);
                return Err(format!("write {path} ({line:?}): {e}"));
            }
        }
        let _ = nix::unistd::write(&mapped_w, b"m");
    }
    drop(mapped_w);
    let mut answer = String::new();
    let _ = fs::File::from(pid_r).read_to_string(&mut answer);
    let _ = waitpid(helper, None);
    match answer.strip_prefix("error: ") {
        Some(e) => Err(e.to_owned()),
        None => answer
            .trim()
            .parse()
            .map(Pid::from_raw)
            .map_err(|_| format!("the user namespace helper failed: {answer:?}")),
    }
}

/// Executes the supervisor in this process's place, with the container's pipes (and
/// on cgroup v1 its OOM eventfd) on the descriptors it expects. Should that fail, the
/// same watch runs here, in the shoal binary. Returns the process exit code.
fn hand_over(
    cfg: &ContainerConfig,
    dir: &StateDir,
    supervisor: &Path,
    started: &Started,
    run: Running,
) -> i32 {
    let oom_event = register_oom_event(&cfg.cgroup).map(above_fixed);
    let (stdout, stderr) = (above_fixed(run.stdout), above_fixed(run.stderr));
    let invocation = Invocation {
        state_dir: dir.0.clone(),
        init: run.init.as_raw(),
        started_at: started.started_at.to_rfc3339_opts(SecondsFormat::Nanos, true),
        log_max_bytes: cfg.log.max_bytes,
        log_max_files: cfg.log.max_files,
        oom_file: cfg.cgroup.oom_file(),
        oom_event: oom_event.is_some(),
    };
    let mut placed = vec![(&stdout, STDOUT_FD), (&stderr, STDERR_FD)];
    placed.extend(oom_event.as_ref().map(|fd| (fd, OOM_EVENT_FD)));
    let err = exec_supervisor(supervisor, &invocation, &placed);
    eprintln!(
        "cannot execute the supervisor {}: {err}; watching the container in the shim",
        supervisor.display()
    );
    shoal_supervisor::watch::run(invocation.into_watch(stdout, stderr, oom_event))
}

/// `fd` moved above the supervisor's fixed descriptor numbers, so that putting one
/// descriptor in place never replaces another (kept where it is if that fails).
fn above_fixed(fd: OwnedFd) -> OwnedFd {
    sys::above_low_fds(&fd).map(OwnedFd::from).unwrap_or(fd)
}

/// Puts each descriptor on its number and executes `program`. Returns only on failure,
/// with the numbers it filled closed again.
fn exec_supervisor(program: &Path, inv: &Invocation, placed: &[(&OwnedFd, RawFd)]) -> std::io::Error {
    use std::os::unix::ffi::OsStrExt as _;

    if let Some((fd, _)) = placed.iter().find(|(fd, _)| fd.as_raw_fd() < sys::HIGH_FD) {
        return std::io::Error::other(format!("descriptor {} is among the supervisor's", fd.as_raw_fd()));
    }
    let argv: Result<Vec<_>, _> = std::iter::once(program.as_os_str().to_owned())
        .chain(inv.to_args())
        .map(|a| std::ffi::CString::new(a.as_bytes()))
        .collect();
    let argv = match argv {
        Ok(argv) => argv,
        Err(e) => return std::io::Error::other(e),
    };
    let close_placed = || {
        for &(_, target) in placed {
            let _ = nix::unistd::close(target);
        }
    };
    for &(fd, target) in placed {
        // SAFETY: dup2 makes `target` a copy of `fd` (without close-on-exec). The
        // targets are the supervisor's fixed numbers, below every source, and nothing
        // in this single-threaded shim holds them now that the report socket is closed.
        if unsafe { libc::dup2(fd.as_raw_fd(), target) } < 0 {
            let e = std::io::Error::last_os_error();
            close_placed();
            return e;
        }
    }
    let Err(e) = nix::unistd::execv(&argv[0], &argv);
    close_placed();
    e.into()
}

/// cgroup v1 OOM notifications: an eventfd registered through `cgroup.event_control`
/// against `memory.oom_control`; each read of it counts OOM events.
fn register_oom_event(cgroup: &Cgroup) -> Option<OwnedFd> {
    let Cgroup::V1(v1) = cgroup else { return None };
    let mem = v1.memory_dir()?;
    // SAFETY: eventfd returns a new fd or -1; we take ownership of it.
    let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if efd < 0 {
        return None;
    }
    // SAFETY: efd was just created and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(efd) };
    let control = fs::File::open(mem.join("memory.oom_control")).ok()?;
    let line = format!("{} {}", fd.as_raw_fd(), control.as_raw_fd());
    fs::write(mem.join("cgroup.event_control"), line).ok()?;
    Some(fd)
}
