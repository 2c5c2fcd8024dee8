//! The built-in container runtime: namespaces, cgroups and an overlay root per
//! container, started through a per-container shim so that the daemon never forks.
//!
//! Life of a container: [`Runtime::run`] writes `config.json` into the container's
//! state directory, makes its cgroup, and starts the shim (a re-exec of the shoal
//! binary through a read-only view of it). The shim reports the init's pid once the
//! program has been exec'd, or the reason it could not be, then executes the small
//! supervisor ([`supervisor`]), which writes the program's output to a log file and
//! records its exit. [`Runtime::wait`], [`Runtime::signal`] and [`Runtime::stop`] reach
//! the shim and the init through pidfds; [`Runtime::delete`] removes the cgroup and the
//! state. Everything is on disk, so a restarted daemon picks up where it left off.

pub mod config;
pub mod exec;
mod init;
pub mod logs;
pub mod pty;
pub mod rootfs;
pub mod seccomp;
pub mod shim;
pub mod state;
pub mod supervisor;
pub mod sys;
pub mod user;

use std::fs::{self, File};
use std::io::{BufRead, BufReader};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use config::{ContainerConfig, LogConfig, MountPoint, Process};
pub use state::{Exited, Started};

use crate::cgroups::{CgroupError, Driver, Limits};
use state::StateDir;

use crate::json_file::{read_json, write_json};

/// Errors of the runtime; each says which container and what to do.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The id is not usable as a directory and cgroup name.
    #[error("invalid container id {0:?}: use letters, digits, '-', '_' and '.', at most 128 characters")]
    BadId(String),
    /// A container with this id exists already.
    #[error("container {0} already exists: delete it first")]
    Exists(String),
    /// No container with this id.
    #[error("no container {0}")]
    NotFound(String),
    /// The call needs a running container.
    #[error("container {0} is not running")]
    NotRunning(String),
    /// The container still runs and `force` was not given.
    #[error("container {0} is running: stop it first, or delete with force")]
    Running(String),
    /// A bind mount's source is missing.
    #[error("mount source {0} does not exist on this node")]
    MissingMountSource(PathBuf),
    /// The cgroup could not be made or changed.
    #[error("container {id}'s cgroup")]
    Cgroup {
        /// The container.
        id: String,
        /// What went wrong.
        #[source]
        source: CgroupError,
    },
    /// The shim or the container's init reported a failure before the program ran.
    #[error("container {id} did not start: {message}")]
    StartFailed {
        /// The container.
        id: String,
        /// The reason, from inside the container's setup.
        message: String,
    },
    /// Reading or writing the container's state failed.
    #[error("container {id}: {what}")]
    Io {
        /// The container.
        id: String,
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// How the runtime starts its shims. Either way nothing is forked from a
/// multi-threaded process.
#[derive(Debug)]
pub enum Helper {
    /// Fork the shim from this process, which must be single-threaded (the CLI, or
    /// the daemon's zygote forked before its async runtime starts). Nothing is
    /// re-executed, so there is no binary to seal. Checked before every fork.
    Fork,
    /// Re-execute the running binary from a read-only view of it, or a sealed in-memory
    /// copy (for callers that have threads).
    Sealed(File),
    /// Execute a binary on disk that has the shim subcommand.
    Path(PathBuf),
}

impl Helper {
    /// The running binary as no container can write it: a read-only view of it where
    /// the kernel can make one (Linux 5.12), else a sealed in-memory copy.
    pub fn sealed_self() -> std::io::Result<Helper> {
        match sys::read_only_view_of_self() {
            Ok(view) => Ok(Helper::Sealed(view)),
            Err(e) => {
                tracing::info!(error = %e, "no read-only view of the binary; the runtime uses a sealed copy");
                sys::sealed_copy_of_self().map(Helper::Sealed)
            }
        }
    }

    fn program(&self) -> Option<PathBuf> {
        match self {
            Helper::Fork => None,
            Helper::Sealed(f) => Some(PathBuf::from(format!("/proc/self/fd/{}", f.as_raw_fd()))),
            Helper::Path(p) => Some(p.clone()),
        }
    }
}

/// A new container: everything but the cgroup, which the runtime makes.
#[derive(Debug, Clone)]
pub struct NewContainer {
    /// Container id.
    pub id: String,
    /// The image's name as asked for (shown by `inspect`).
    pub image: String,
    /// Image layer directories, topmost first.
    pub layers: Vec<PathBuf>,
    /// The program.
    pub process: Process,
    /// Hostname (default: the first 12 characters of the id).
    pub hostname: Option<String>,
    /// Mounts on top of the image.
    pub mounts: Vec<MountPoint>,
    /// Read-only root filesystem.
    pub read_only_root: bool,
    /// Resource limits.
    pub limits: Limits,
    /// Join this network namespace instead of a new one.
    pub netns: Option<PathBuf>,
    /// Run in a user namespace with this mapping.
    pub userns: Option<config::IdMapping>,
    /// Log rotation.
    pub log: LogConfig,
}

/// What a container is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Its program runs.
    Running(Started),
    /// It ended.
    Exited(Exited),
    /// Its shim is gone without recording an exit (killed); the exit status is lost.
    Lost,
}

/// The runtime of one node.
#[derive(Debug)]
pub struct Runtime {
    dir: PathBuf,
    cgroups: Driver,
    helper: Helper,
    /// The installed supervisor binary the shims hand running containers to.
    supervisor: PathBuf,
}

/// How long the shim may take to report: image setup is quick, but a loaded machine
/// or a slow disk should not turn into a false failure.
const REPORT_TIMEOUT: Duration = Duration::from_secs(60);

impl Runtime {
    /// A runtime keeping state under `data_dir/containers` and cgroups under `cgroup_parent`.
    pub fn new(data_dir: &Path, cgroup_parent: &str, helper: Helper) -> Result<Runtime, RuntimeError> {
        let dir = data_dir.join("containers");
        fs::create_dir_all(&dir).map_err(|source| RuntimeError::Io {
            id: String::new(),
            what: format!("create {}", dir.display()),
            source,
        })?;
        let cgroups = Driver::detect(cgroup_parent)
            .map_err(|source| RuntimeError::Cgroup { id: String::new(), source })?;
        let supervisor = supervisor::install(data_dir).map_err(|source| RuntimeError::Io {
            id: String::new(),
            what: format!("install the container supervisor under {}", data_dir.join("bin").display()),
            source,
        })?;
        Ok(Runtime { dir, cgroups, helper, supervisor })
    }

    fn state(&self, id: &str) -> StateDir {
        StateDir(self.dir.join(id))
    }

    fn io(id: &str, what: impl Into<String>) -> impl FnOnce(std::io::Error) -> RuntimeError {
        let (id, what) = (id.to_owned(), what.into());
        move |source| RuntimeError::Io { id, what, source }
    }

    /// Creates and starts a container; returns once its program runs (or with the
    /// reason it could not start, leaving nothing behind).
    pub fn run(&self, new: NewContainer) -> Result<Started, RuntimeError> {
        let id = new.id.clone();
        let valid = !id.is_empty()
            && id.len() <= 128
            && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            && !id.starts_with('.');
        if !valid {
            return Err(RuntimeError::BadId(id));
        }
        let dir = self.state(&id);
        if dir.0.exists() {
            return Err(RuntimeError::Exists(id));
        }
        for m in &new.mounts {
            if let MountPoint::Bind { source, .. } | MountPoint::Volume { source, .. } = m
                && !source.exists()
            {
                return Err(RuntimeError::MissingMountSource(source.clone()));
            }
        }
        let result = self.start(&dir, new);
        if result.is_err() {
            self.remove_leftovers(&id);
        }
        result
    }

    fn start(&self, dir: &StateDir, new: NewContainer) -> Result<Started, RuntimeError> {
        let id = new.id.clone();
        for sub in ["upper", "work", "rootfs"] {
            let path = dir.0.join(sub);
            fs::create_dir_all(&path).map_err(Self::io(&id, format!("create {sub}")))?;
            // The container's root owns its writable layer.
            if let Some(map) = new.userns {
                std::os::unix::fs::chown(&path, Some(map.host), Some(map.host))
                    .map_err(Self::io(&id, format!("chown {sub}")))?;
            }
        }
        let hostname = new.hostname.unwrap_or_else(|| id.chars().take(12).collect());
        fs::write(dir.0.join("hostname"), format!("{hostname}\n"))
            .map_err(Self::io(&id, "write hostname"))?;
        let hosts = format!(
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{hostname}\n"
        );
        fs::write(dir.0.join("hosts"), hosts).map_err(Self::io(&id, "write hosts"))?;
        let cgroup = self
            .cgroups
            .create(&id, &new.limits)
            .map_err(|source| RuntimeError::Cgroup { id: id.clone(), source })?;
        let layers = match new.userns {
            None => new.layers,
            Some(map) => new
                .layers
                .iter()
                .map(|l| crate::image::shift::shifted_copy(l, map.host, map.size))
                .collect::<Result<_, _>>()
                .map_err(Self::io(&id, "copy the image's layers for the user namespace"))?,
        };
        let cfg = ContainerConfig {
            id: id.clone(),
            image: new.image,
            layers,
            process: new.process,
            hostname,
            mounts: new.mounts,
            read_only_root: new.read_only_root,
            limits: new.limits,
            cgroup,
            netns: new.netns,
            userns: new.userns,
            log: new.log,
        };
        write_json(&dir.config(), &cfg).map_err(Self::io(&id, "write config.json"))?;

        let (ours, theirs) = UnixStream::pair().map_err(Self::io(&id, "socketpair"))?;
        let shim_log = File::create(dir.0.join("shim.log")).map_err(Self::io(&id, "create shim.log"))?;
        match self.helper.program() {
            None => fork_shim(&dir.0, &self.supervisor, theirs, shim_log)
                .map_err(Self::io(&id, "start the runtime shim"))?,
            Some(program) => exec_shim(&program, &dir.0, &self.supervisor, theirs, shim_log)
                .map_err(Self::io(&id, "start the runtime shim"))?,
        }
        ours.set_read_timeout(Some(REPORT_TIMEOUT)).map_err(Self::io(&id, "socket timeout"))?;
        let mut line = String::new();
        BufReader::new(&ours).read_line(&mut line).map_err(Self::io(&id, "read the shim's report"))?;
        let shim_log_text = || fs::read_to_string(dir.0.join("shim.log")).unwrap_or_default();
        match serde_json::from_str::<shim::Report>(&line) {
            Ok(shim::Report::Started(s)) => Ok(s),
            Ok(shim::Report::Failed(message)) => Err(RuntimeError::StartFailed { id, message }),
            Err(_) => Err(RuntimeError::StartFailed {
                id,
                message: format!("the shim ended without a report: {}", shim_log_text().trim()),
            }),
        }
    }

    /// Best-effort removal after a failed start.
    fn remove_leftovers(&self, id: &str) {
        let _ = self.cgroups.cgroup(id).remove();
        let _ = fs::remove_dir_all(self.state(id).0);
    }

    /// Ids of every container with state on this node.
    pub fn list(&self) -> Result<Vec<String>, RuntimeError> {
        let mut ids: Vec<String> = fs::read_dir(&self.dir)
            .map_err(Self::io("", "list containers"))?
            .filter_map(|e| e.ok())
            .filter(|e| e.path().join("config.json").exists())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// The container's config, as it was started.
    pub fn config(&self, id: &str) -> Result<ContainerConfig, RuntimeError> {
        read_json(&self.state(id).config())
            .map_err(Self::io(id, "read config.json"))?
            .ok_or_else(|| RuntimeError::NotFound(id.to_owned()))
    }

    /// What the container is doing now.
    pub fn status(&self, id: &str) -> Result<Status, RuntimeError> {
        let dir = self.state(id);
        if !dir.config().exists() {
            return Err(RuntimeError::NotFound(id.to_owned()));
        }
        if let Some(exited) = read_json::<Exited>(&dir.exited()).map_err(Self::io(id, "read exited.json"))? {
            return Ok(Status::Exited(exited));
        }
        match read_json::<Started>(&dir.started()).map_err(Self::io(id, "read started.json"))? {
            Some(s) if alive(s.shim_pid, s.shim_start) => Ok(Status::Running(s)),
            // Re-check: the shim may have written its record and exited just now.
            Some(_) => match read_json::<Exited>(&dir.exited()).map_err(Self::io(id, "read exited.json"))? {
                Some(e) => Ok(Status::Exited(e)),
                None => Ok(Status::Lost),
            },
            None => Ok(Status::Lost),
        }
    }

    /// Waits until the container exits, at most `timeout` (None: forever). Returns its
    /// exit record, or `None` if it still runs.
    pub fn wait(&self, id: &str, timeout: Option<Duration>) -> Result<Option<Exited>, RuntimeError> {
        let started = match self.status(id)? {
            Status::Exited(e) => return Ok(Some(e)),
            Status::Lost => return Ok(None),
            Status::Running(s) => s,
        };
        if let Some(fd) = open_checked(started.shim_pid, started.shim_start) {
            let ms = timeout.map_or(-1, |t| t.as_millis().min(i32::MAX as u128) as i32);
            if !sys::pidfd_wait_exit(&fd, ms).map_err(Self::io(id, "wait for the shim"))? {
                return Ok(None);
            }
        }
        match self.status(id)? {
            Status::Exited(e) => Ok(Some(e)),
            _ => Ok(None),
        }
    }

    /// Runs a command inside the running container (as its user, in its namespaces
    /// and cgroup), killing it after `timeout`.
    pub fn exec(
        &self,
        id: &str,
        spec: &exec::ExecSpec,
        timeout: Duration,
    ) -> Result<exec::ExecResult, RuntimeError> {
        match self.status(id)? {
            Status::Running(_) => {}
            _ => return Err(RuntimeError::NotRunning(id.to_owned())),
        }
        let program = match self.helper.program() {
            Some(p) => p,
            None => std::env::current_exe().map_err(Self::io(id, "find this binary"))?,
        };
        exec::run_in(&program, &self.state(id).0, spec, timeout)
            .map_err(Self::io(id, "run a command in the container"))
    }

    /// Starts a command inside the running container (as [`Runtime::exec`] does), its
    /// stdio as `io` says; the caller relays and waits.
    pub fn spawn_exec(
        &self,
        id: &str,
        spec: &exec::ExecSpec,
        io: exec::ExecIo,
    ) -> Result<exec::ExecProcess, RuntimeError> {
        let started = match self.status(id)? {
            Status::Running(s) => s,
            _ => return Err(RuntimeError::NotRunning(id.to_owned())),
        };
        let program = match self.helper.program() {
            Some(p) => p,
            None => std::env::current_exe().map_err(Self::io(id, "find this binary"))?,
        };
        exec::spawn(&program, &self.state(id).0, started.init_pid, spec, io)
            .map_err(Self::io(id, "start a command in the container"))
    }

    /// Sends `signal` to the container's init.
    pub fn signal(&self, id: &str, signal: i32) -> Result<(), RuntimeError> {
        let started = match self.status(id)? {
            Status::Running(s) => s,
            _ => return Ok(()),
        };
        if let Some(fd) = open_checked(started.init_pid, started.init_start) {
            match sys::pidfd_send_signal(&fd, signal) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
                Err(e) => {
                    return Err(RuntimeError::Io {
                        id: id.to_owned(),
                        what: format!("signal {signal}"),
                        source: e,
                    });
                }
            }
        }
        Ok(())
    }

    /// Sends the stop signal, waits `grace`, then SIGKILL; returns the exit record.
    pub fn stop(&self, id: &str, signal: i32, grace: Duration) -> Result<Option<Exited>, RuntimeError> {
        self.signal(id, signal)?;
        if let Some(e) = self.wait(id, Some(grace))? {
            return Ok(Some(e));
        }
        self.signal(id, libc::SIGKILL)?;
        self.wait(id, Some(Duration::from_secs(10)))
    }

    /// Removes the container: its cgroup and all its state. A running container is
    /// killed first with `force`, refused without it.
    pub fn delete(&self, id: &str, force: bool) -> Result<(), RuntimeError> {
        match self.status(id)? {
            Status::Running(_) if !force => return Err(RuntimeError::Running(id.to_owned())),
            Status::Running(_) => {
                self.signal(id, libc::SIGKILL)?;
                self.wait(id, Some(Duration::from_secs(10)))?;
            }
            _ => {}
        }
        self.cgroups
            .cgroup(id)
            .remove()
            .map_err(|source| RuntimeError::Cgroup { id: id.to_owned(), source })?;
        let dir = self.state(id).0;
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match fs::remove_dir_all(&dir) {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                // The overlay's workdir can stay busy for a moment after the mount
                // namespace goes away.
                Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => {
                    return Err(RuntimeError::Io {
                        id: id.to_owned(),
                        what: "remove state".into(),
                        source: e,
                    });
                }
            }
        }
    }

    /// Resource usage of a running container.
    pub fn stats(&self, id: &str) -> Result<crate::cgroups::Stats, RuntimeError> {
        self.config(id)?.cgroup.stats().map_err(|source| RuntimeError::Cgroup { id: id.to_owned(), source })
    }

    /// The container's log file.
    pub fn log_path(&self, id: &str) -> PathBuf {
        self.state(id).log()
    }
}

/// Starts the shim by re-executing `program` with the report socket on fd 3; it hands
/// the running container to `supervisor`.
///
/// Through `posix_spawn` (a vfork-style clone in glibc): forking the daemon instead
/// would copy its page tables for every container, which made a burst of starts
/// spend most of its time in the kernel.
fn exec_shim(
    program: &Path,
    dir: &Path,
    supervisor: &Path,
    theirs: UnixStream,
    shim_log: File,
) -> std::io::Result<()> {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    use nix::spawn::{PosixSpawnAttr, PosixSpawnFileActions, posix_spawn};
    use nix::sys::stat::Mode;
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt as _;

    let cstring = |b: &[u8]| CString::new(b).map_err(std::io::Error::other);
    let args = [
        cstring(program.as_os_str().as_bytes())?,
        cstring(shim::SUBCOMMAND.as_bytes())?,
        cstring(dir.as_os_str().as_bytes())?,
        cstring(supervisor.as_os_str().as_bytes())?,
    ];
    let env: Vec<CString> = std::env::vars_os()
        .filter_map(|(k, v)| CString::new([k.as_bytes(), b"=", v.as_bytes()].concat()).ok())
        .collect();
    // A copy above the standard descriptors, so the dup2 below never maps a
    // descriptor onto itself (which would leave close-on-exec set).
    // SAFETY: F_DUPFD_CLOEXEC returned a new descriptor that nothing else owns.
    let socket = unsafe { OwnedFd::from_raw_fd(fcntl(&theirs, FcntlArg::F_DUPFD_CLOEXEC(10))?) };
    let mut actions = PosixSpawnFileActions::init()?;
    actions.add_open(0, "/dev/null", OFlag::O_RDONLY, Mode::empty())?;
    actions.add_open(1, "/dev/null", OFlag::O_WRONLY, Mode::empty())?;
    actions.add_dup2(shim_log.as_raw_fd(), 2)?;
    actions.add_dup2(socket.as_raw_fd(), shim::REPORT_FD)?;
    let spawned = posix_spawn(program, &actions, &PosixSpawnAttr::init()?, &args, &env);
    drop((socket, theirs));
    // The shim forks itself away at once; reap the first process.
    nix::sys::wait::waitpid(spawned?, None).map(drop).map_err(std::io::Error::from)
}

/// Starts the shim by forking this (single-threaded) process.
fn fork_shim(dir: &Path, supervisor: &Path, theirs: UnixStream, shim_log: File) -> std::io::Result<()> {
    let threads = fs::read_to_string("/proc/self/status")?
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse::<u32>().ok());
    if threads != Some(1) {
        return Err(std::io::Error::other(format!(
            "refusing to fork the shim from a process with {threads:?} threads: use Helper::Sealed"
        )));
    }
    // SAFETY: the process is single-threaded (checked above), so the child may run
    // ordinary code after fork.
    match unsafe { nix::unistd::fork() }.map_err(std::io::Error::from)? {
        nix::unistd::ForkResult::Child => {
            let devnull = File::open("/dev/null").ok();
            if let Some(n) = &devnull {
                let _ = nix::unistd::dup2_stdin(n);
                let _ = nix::unistd::dup2_stdout(n);
            }
            let _ = nix::unistd::dup2_stderr(&shim_log);
            let code = shim::run(dir, supervisor, theirs);
            // SAFETY: leave without running the parent's exit handlers or flushing
            // its buffers a second time.
            unsafe { libc::_exit(code) }
        }
        nix::unistd::ForkResult::Parent { child } => {
            drop(theirs);
            nix::sys::wait::waitpid(child, None).map(drop).map_err(std::io::Error::from)
        }
    }
}

/// True when `pid` is alive and is the process that started at `start`.
fn alive(pid: i32, start: u64) -> bool {
    sys::process_start_time(pid).is_ok_and(|s| s == start)
}

/// A pidfd for `pid`, if it is still the process that started at `start`.
fn open_checked(pid: i32, start: u64) -> Option<OwnedFd> {
    let fd = sys::pidfd_open(pid).ok()?;
    // Checked after opening: the pidfd now pins this process, so a match is for sure.
    alive(pid, start).then_some(fd)
}
