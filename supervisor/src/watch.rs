//! The watch over a running container: copy its output into the log until its init
//! exits, count OOM kills, then write the exit record.

use std::fs::{self, File};
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use crate::clock::rfc3339;
use crate::cri::{LogWriter, Stream};
use crate::sys::{self, Child, POLLIN, PollFd};

/// The log file in a container's state directory.
pub const LOG_FILE: &str = "container.log";
/// The exit record in a container's state directory.
pub const EXITED_FILE: &str = "exited.json";

/// How long output may still arrive after the init has exited (something outside the
/// container may hold a pipe open).
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// One container to watch.
#[derive(Debug)]
pub struct Watch {
    /// The container's init, a child of this process.
    pub init: i32,
    /// Read ends of its stdout and stderr.
    pub stdout: OwnedFd,
    /// See `stdout`.
    pub stderr: OwnedFd,
    /// cgroup v1: an eventfd the kernel counts OOM events on.
    pub oom_event: Option<OwnedFd>,
    /// The cgroup file with the `oom_kill N` line.
    pub oom_file: Option<PathBuf>,
    /// The container's state directory.
    pub state_dir: PathBuf,
    /// Log rotation: size, and how many rotated files are kept.
    pub log_max_bytes: u64,
    /// See `log_max_bytes`.
    pub log_max_files: u32,
    /// When the program started, RFC 3339.
    pub started_at: String,
}

/// The exit record, as the worker's `runtime::state::Exited` reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitRecord {
    /// Exit code, when the init exited by itself.
    pub exit_code: Option<i32>,
    /// Signal number, when a signal killed it.
    pub signal: Option<i32>,
    /// The kernel OOM-killed a process of the container.
    pub oom_killed: bool,
    /// When the program started, RFC 3339.
    pub started_at: String,
    /// When the init exited, RFC 3339.
    pub finished_at: String,
}

impl ExitRecord {
    /// The record as JSON.
    pub fn to_json(&self) -> String {
        let opt = |v: Option<i32>| v.map_or_else(|| "null".to_owned(), |v| v.to_string());
        format!(
            "{{\"exit_code\":{},\"signal\":{},\"oom_killed\":{},\"started_at\":\"{}\",\"finished_at\":\"{}\"}}\n",
            opt(self.exit_code),
            opt(self.signal),
            self.oom_killed,
            self.started_at,
            self.finished_at
        )
    }

    /// Writes the record into `state_dir` atomically (a temporary file renamed over it).
    pub fn write(&self, state_dir: &Path) -> std::io::Result<()> {
        let path = state_dir.join(EXITED_FILE);
        let tmp = path.with_extension("tmp");
        fs::write(&tmp, self.to_json())?;
        fs::rename(&tmp, &path)
    }
}

/// Watches until the init has exited and its output is drained; returns the process
/// exit code (0 once the exit record is written). Frees what the start-up needed
/// before it settles down to wait.
pub fn run(w: Watch) -> i32 {
    let mut log = LogWriter::open(&w.state_dir.join(LOG_FILE), w.log_max_bytes, w.log_max_files).ok();
    let mut outputs = [Some(File::from(w.stdout)), Some(File::from(w.stderr))];
    let mut oom_event = w.oom_event.map(File::from);
    let mut oom_events = 0u64;
    let pidfd = sys::pidfd_open(w.init).ok();
    let mut ended: Option<(Child, Instant)> = None;
    // A quarter of a pipe's default capacity: the pages a read fills stay with the
    // process, one supervisor per container.
    let mut buf = vec![0u8; 16 * 1024];
    crate::memory::release_start_up();
    loop {
        if let Some((_, at)) = ended
            && (outputs.iter().all(Option::is_none) || at.elapsed() > DRAIN_GRACE)
        {
            break;
        }
        let mut fds = Vec::with_capacity(4);
        let mut which = Vec::with_capacity(4);
        for (i, out) in outputs.iter().enumerate() {
            if let Some(out) = out {
                fds.push(PollFd { fd: out.as_raw_fd(), events: POLLIN, revents: 0 });
                which.push(Ready::Output(i));
            }
        }
        if ended.is_none()
            && let Some(p) = &pidfd
        {
            fds.push(PollFd { fd: p.as_raw_fd(), events: POLLIN, revents: 0 });
            which.push(Ready::Init);
        }
        if let Some(ev) = &oom_event {
            fds.push(PollFd { fd: ev.as_raw_fd(), events: POLLIN, revents: 0 });
            which.push(Ready::Oom);
        }
        // Without a pidfd (kernels before 5.3), or while draining, look again every 200 ms.
        let timeout = if pidfd.is_none() || ended.is_some() { 200 } else { -1 };
        match sys::poll_fds(&mut fds, timeout) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
        for (fd, ready) in fds.iter().zip(which) {
            if fd.revents == 0 {
                continue;
            }
            match ready {
                Ready::Output(i) => {
                    let Some(out) = outputs[i].as_mut() else { continue };
                    match out.read(&mut buf) {
                        Ok(0) | Err(_) => outputs[i] = None,
                        Ok(n) => {
                            let stream = if i == 0 { Stream::Stdout } else { Stream::Stderr };
                            if let Some(l) = log.as_mut() {
                                let _ = l.write(stream, &buf[..n], SystemTime::now());
                            }
                        }
                    }
                }
                Ready::Init => {}
                Ready::Oom => {
                    let mut count = [0u8; 8];
                    if let Some(Ok(8)) = oom_event.as_mut().map(|ev| ev.read(&mut count)) {
                        oom_events += u64::from_ne_bytes(count);
                    }
                }
            }
        }
        if ended.is_none() {
            match sys::try_wait(w.init) {
                Child::Running => {}
                how => ended = Some((how, Instant::now())),
            }
        }
    }
    if let Some(l) = log.as_mut() {
        let _ = l.flush_pending(SystemTime::now());
    }
    let (exit_code, signal) = match ended {
        Some((Child::Exited(code), _)) => (Some(code), None),
        Some((Child::Signaled(sig), _)) => (None, Some(sig)),
        _ => (None, None),
    };
    let oom_kills = w.oom_file.as_deref().map_or(0, oom_kills);
    let record = ExitRecord {
        exit_code,
        signal,
        oom_killed: oom_kills > 0 || oom_events > 0,
        started_at: w.started_at,
        finished_at: rfc3339(SystemTime::now()),
    };
    match record.write(&w.state_dir) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("shoal-shim: write the exit record in {}: {e}", w.state_dir.display());
            1
        }
    }
}

/// What a polled descriptor stands for.
#[derive(Debug, Clone, Copy)]
enum Ready {
    Output(usize),
    Init,
    Oom,
}

/// The `oom_kill N` count of a cgroup's `memory.events` (v2) or `memory.oom_control` (v1).
pub fn oom_kills(file: &Path) -> u64 {
    fs::read_to_string(file)
        .ok()
        .and_then(|text| text.lines().find_map(|l| l.strip_prefix("oom_kill ")?.trim().parse().ok()))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exit_record_is_json() {
        let r = ExitRecord {
            exit_code: None,
            signal: Some(9),
            oom_killed: true,
            started_at: "2026-12-07T09:40:00.000000001Z".into(),
            finished_at: "2026-12-07T09:41:00.000000002Z".into(),
        };
        assert_eq!(
            r.to_json(),
            "{\"exit_code\":null,\"signal\":9,\"oom_killed\":true,\
             \"started_at\":\"2026-12-07T09:40:00.000000001Z\",\"finished_at\":\"2026-12-07T09:41:00.000000002Z\"}\n"
        );
    }

    #[test]
    fn oom_kills_are_read_from_either_cgroup_file() {
        let dir = tempfile::tempdir().unwrap();
        let v2 = dir.path().join("memory.events");
        fs::write(&v2, "low 0\nhigh 0\nmax 4\noom 2\noom_kill 2\noom_group_kill 0\n").unwrap();
        let v1 = dir.path().join("memory.oom_control");
        fs::write(&v1, "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n").unwrap();
        assert_eq!((oom_kills(&v2), oom_kills(&v1)), (2, 0));
        assert_eq!(oom_kills(&dir.path().join("gone")), 0);
    }
}
