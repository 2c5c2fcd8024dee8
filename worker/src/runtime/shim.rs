//! The shim: a small single-threaded process per container, started by re-executing the
//! shoal binary (from a sealed copy), so nothing is ever forked from the daemon's
//! multi-threaded runtime. It detaches from the daemon (a restarted daemon finds it
//! again), makes the container's pid namespace and forks the init into it (which
//! joins its cgroup itself), reports the init's pid (or the reason it failed) to the daemon
//! over a socketpair, then stays to copy the container's output into the log file,
//! watch for OOM kills, and record the exit status.

use std::fs;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::Utc;
use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sched::{CloneFlags, unshare};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork, pipe2, setsid};
use serde::{Deserialize, Serialize};
use shoal_api::report::chain;

use super::config::ContainerConfig;
use super::init::{self, InitPipes};
use super::logs::{LogWriter, Stream};
use super::state::{Exited, Started, StateDir};
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
/// socket is fd [`REPORT_FD`]. Returns the process exit code.
pub fn main(state_dir: &Path) -> i32 {
    // SAFETY: the daemon passes fd 3 as the shim's end of a socketpair, owned by
    // nobody else in this fresh process.
    let report = unsafe { UnixStream::from_raw_fd(REPORT_FD) };
    run(state_dir, report)
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
pub fn run(state_dir: &Path, report: UnixStream) -> i32 {
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
            supervise(&cfg, &dir, started, running)
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

/// Gives back what only the start needed, before the shim settles down to watch the
/// container for as long as it runs (one shim per container, so this is paid per
/// container). Two kinds of pages go:
/// - free heap pages (the config, the init's set-up), through `malloc_trim`;
/// - the page-table entries of every read-only, file-backed mapping that has no page of
///   its own (the binary's code and read-only data, libc's code): those pages are the
///   file's, shared with every other shim through the page cache, and a page the loop
///   touches again is mapped back from there on first use. Mappings holding private
///   pages (the relocated `.data.rel.ro` of the binary) and writable ones are left alone:
///   dropping them would lose their contents.
///
/// Best effort: whatever fails leaves the shim as it was.
fn release_start_up_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only returns free memory of the allocator to the kernel; the
    // process is single-threaded.
    unsafe {
        libc::malloc_trim(0);
    }
    for (start, len) in shared_read_only_mappings() {
        // SAFETY: [start, start + len) is a whole read-only, private, file-backed mapping
        // of this process without a single private (anonymous) page, read from
        // /proc/self/smaps just now in this single-threaded process: dropping its
        // page-table entries loses nothing, as every page reads back from the file.
        unsafe {
            libc::madvise(start as *mut libc::c_void, len, libc::MADV_DONTNEED);
        }
    }
}

/// `(start, length)` of this process's mappings that are read-only, private,
/// backed by a file and hold no anonymous page, from `/proc/self/smaps`.
fn shared_read_only_mappings() -> Vec<(usize, usize)> {
    use std::io::BufRead as _;
    let Ok(smaps) = fs::File::open("/proc/self/smaps") else { return Vec::new() };
    let mut found = Vec::new();
    let mut current: Option<(usize, usize)> = None;
    for line in std::io::BufReader::new(smaps).lines() {
        let Ok(line) = line else { return Vec::new() };
        if let Some(anon) = line.strip_prefix("Anonymous:") {
            if anon.trim() != "0 kB" {
                current = None;
            }
            continue;
        }
        let mut fields = line.split_ascii_whitespace();
        let (Some(range), Some(perms)) = (fields.next(), fields.next()) else { continue };
        let Some((start, end)) = range.split_once('-') else { continue };
        let (Ok(start), Ok(end)) = (usize::from_str_radix(start, 16), usize::from_str_radix(end, 16)) else {
            continue;
        };
        // A mapping's header line: the previous one is complete.
        found.extend(current.take());
        let path = fields.nth(3).unwrap_or("");
        if perms.starts_with('r')
            && perms.as_bytes().get(1) == Some(&b'-')
            && perms.ends_with('p')
            && path.starts_with('/')
        {
            current = Some((start, end - start));
        }
    }
    found.extend(current);
    found
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

/// Copies output into the log until the init exits, then records how it ended.
fn supervise(cfg: &ContainerConfig, dir: &StateDir, started: Started, run: Running) -> i32 {
    let mut log = LogWriter::open(&dir.log(), cfg.log.max_bytes, cfg.log.max_files).ok();
    let oom_event = OomEvents::register(&cfg.cgroup);
    let mut open = [Some(run.stdout), Some(run.stderr)];
    let mut exited: Option<WaitStatus> = None;
    let mut exited_at: Option<Instant> = None;
    let mut buf = vec![0u8; 64 * 1024];
    let pidfd = sys::pidfd_open(run.init.as_raw()).ok();
    release_start_up_memory();
    loop {
        // Stop once the init has exited and both pipes are drained (or after a grace
        // period, in case something outside kept a pipe open).
        if exited.is_some()
            && (open.iter().all(Option::is_none)
                || exited_at.is_some_and(|t| t.elapsed() > Duration::from_secs(2)))
        {
            break;
        }
        let mut fds: Vec<PollFd<'_>> = Vec::new();
        let mut which = Vec::new();
        for (i, fd) in open.iter().enumerate() {
            if let Some(fd) = fd {
                fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
                which.push(i);
            }
        }
        if exited.is_none()
            && let Some(p) = &pidfd
        {
            fds.push(PollFd::new(p.as_fd(), PollFlags::POLLIN));
            which.push(2);
        }
        if let Some(ev) = &oom_event {
            fds.push(PollFd::new(ev.fd.as_fd(), PollFlags::POLLIN));
            which.push(3);
        }
        let timeout =
            if pidfd.is_none() || exited.is_some() { PollTimeout::from(200u16) } else { PollTimeout::NONE };
        match poll(&mut fds, timeout) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => break,
        }
        let ready: Vec<(usize, PollFlags)> =
            fds.iter().zip(&which).map(|(f, &w)| (w, f.revents().unwrap_or(PollFlags::empty()))).collect();
        drop(fds);
        for (w, rev) in ready {
            if rev.is_empty() {
                continue;
            }
            match w {
                0 | 1 => {
                    let fd = open[w].as_ref().expect("polled fds are open");
                    match nix::unistd::read(fd, &mut buf) {
                        Ok(0) | Err(_) => open[w] = None,
                        Ok(n) => {
                            let stream = if w == 0 { Stream::Stdout } else { Stream::Stderr };
                            if let Some(l) = log.as_mut() {
                                let _ = l.write(stream, &buf[..n], Utc::now());
                            }
                        }
                    }
                }
                2 => {}
                _ => {
                    if let Some(ev) = &oom_event {
                        ev.drain();
                    }
                }
            }
        }
        if exited.is_none() {
            match waitpid(run.init, Some(nix::sys::wait::WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => {}
                Ok(status) => {
                    exited = Some(status);
                    exited_at = Some(Instant::now());
                }
                Err(_) => {
                    exited = Some(WaitStatus::StillAlive);
                    exited_at = Some(Instant::now());
                }
            }
        }
    }
    if let Some(l) = log.as_mut() {
        let _ = l.flush_pending(Utc::now());
    }
    let (exit_code, signal) = match exited {
        Some(WaitStatus::Exited(_, code)) => (Some(code), None),
        Some(WaitStatus::Signaled(_, sig, _)) => (None, Some(sig as i32)),
        _ => (None, None),
    };
    let record = Exited {
        exit_code,
        signal,
        oom_killed: cfg.cgroup.oom_kills() > 0 || oom_event.is_some_and(|e| e.seen()),
        started_at: started.started_at,
        finished_at: Utc::now(),
    };
    match write_json(&dir.exited(), &record) {
        Ok(()) => 0,
        Err(_) => 1,
    }
}

/// cgroup v1 OOM notifications: an eventfd registered through `cgroup.event_control`
/// against `memory.oom_control`; each read counts OOM events.
struct OomEvents {
    fd: OwnedFd,
    count: std::cell::Cell<u64>,
}

impl OomEvents {
    fn register(cgroup: &Cgroup) -> Option<OomEvents> {
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
        Some(OomEvents { fd, count: std::cell::Cell::new(0) })
    }

    fn drain(&self) {
        let mut b = [0u8; 8];
        if let Ok(8) = nix::unistd::read(&self.fd, &mut b) {
            self.count.set(self.count.get() + u64::from_ne_bytes(b));
        }
    }

    fn seen(&self) -> bool {
        self.count.get() > 0
    }
}
