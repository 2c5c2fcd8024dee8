//! The container's first process, from fork to `execve`. It runs in a single-threaded
//! shim's child, already pid 1 of a new pid namespace, and does, in order: join the
//! container's cgroup, new mount/uts/ipc/net namespaces, the root filesystem
//! and `pivot_root`, hostname, user lookup in the image, rlimits, working directory,
//! `no_new_privs`, capabilities (Docker's default set), uid/gid, seccomp, fds closed on
//! exec, signals reset, and finally `execve`. Any failure is reported to the shim as
//! text and the process exits 127.

use std::ffi::CString;
use std::fs;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use caps::{CapSet, Capability, CapsHashSet};
use nix::sched::{CloneFlags, setns, unshare};
use nix::sys::resource::{Resource, setrlimit};
use nix::sys::signal::{SigHandler, SigSet, SigmaskHow, Signal, signal, sigprocmask};
use nix::unistd::{
    Gid, Uid, dup2_stderr, dup2_stdin, dup2_stdout, sethostname, setresgid, setresuid, setsid,
};

use shoal_api::report::chain;

use super::config::ContainerConfig;
use super::{rootfs, seccomp, sys, user};

/// Docker's default capabilities (also containerd's).
pub(super) const DEFAULT_CAPS: [Capability; 14] = [
    Capability::CAP_CHOWN,
    Capability::CAP_DAC_OVERRIDE,
    Capability::CAP_FSETID,
    Capability::CAP_FOWNER,
    Capability::CAP_MKNOD,
    Capability::CAP_NET_RAW,
    Capability::CAP_SETGID,
    Capability::CAP_SETUID,
    Capability::CAP_SETFCAP,
    Capability::CAP_SETPCAP,
    Capability::CAP_NET_BIND_SERVICE,
    Capability::CAP_SYS_CHROOT,
    Capability::CAP_KILL,
    Capability::CAP_AUDIT_WRITE,
];

/// File descriptor limits, as Docker's daemon under systemd gives containers.
const NOFILE_LIMIT: u64 = 1_048_576;

/// Pipes the shim made for the init.
#[derive(Debug)]
pub(super) struct InitPipes {
    /// Errors go here as text; closed on a successful exec.
    pub(super) error: OwnedFd,
    /// The write ends of the stdout and stderr pipes.
    pub(super) stdout: OwnedFd,
    /// See `stdout`.
    pub(super) stderr: OwnedFd,
}

/// Runs the init. Never returns: it becomes the container's program or exits 127.
/// `join_cgroup` is false when a helper joined before entering a user namespace.
pub(super) fn run(cfg: &ContainerConfig, state_dir: &Path, pipes: InitPipes, join_cgroup: bool) -> ! {
    let InitPipes { error, stdout, stderr } = pipes;
    let message = match setup_and_exec(cfg, state_dir, stdout, stderr, join_cgroup) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    // SAFETY: `error` is the pipe's write end, still open; the buffer is valid.
    unsafe {
        libc::write(error.as_raw_fd(), message.as_ptr().cast(), message.len());
        libc::_exit(127)
    }
}

fn setup_and_exec(
    cfg: &ContainerConfig,
    state_dir: &Path,
    stdout: OwnedFd,
    stderr: OwnedFd,
    join_cgroup: bool,
) -> Result<std::convert::Infallible, String> {
    // First, before anything that allocates much: into the container's cgroup.
    if join_cgroup {
        cfg.cgroup.join_self().map_err(|e| format!("join the container's cgroup: {}", chain(&e)))?;
    }

    let devnull = fs::File::open("/dev/null").map_err(|e| format!("open /dev/null: {e}"))?;
    dup2_stdin(&devnull).map_err(|e| format!("stdin: {e}"))?;
    dup2_stdout(&stdout).map_err(|e| format!("stdout: {e}"))?;
    dup2_stderr(&stderr).map_err(|e| format!("stderr: {e}"))?;
    drop((devnull, stdout, stderr));
    setsid().map_err(|e| format!("setsid: {e}"))?;

    let mut flags = CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWUTS | CloneFlags::CLONE_NEWIPC;
    if cfg.netns.is_none() {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    unshare(flags).map_err(|e| format!("create namespaces: {e}"))?;
    if cfg.netns.is_none() {
        sys::loopback_up().map_err(|e| format!("bring up the loopback interface: {e}"))?;
    }
    if let Some(ns) = &cfg.netns {
        let f = fs::File::open(ns).map_err(|e| format!("open network namespace {}: {e}", ns.display()))?;
        setns(f, CloneFlags::CLONE_NEWNET)
            .map_err(|e| format!("join network namespace {}: {e}", ns.display()))?;
    }

    // Nothing mounted from here on may propagate back to the host.
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| format!("make mounts private: {e}"))?;
    let root = state_dir.join("rootfs");
    let in_userns = cfg.userns.is_some();
    rootfs::mount_overlay(&cfg.layers, &state_dir.join("upper"), &state_dir.join("work"), &root, in_userns)
        .map_err(|e| chain(&e))?;
    rootfs::prepare(cfg, state_dir, &root).map_err(|e| chain(&e))?;
    sethostname(&cfg.hostname).map_err(|e| format!("set hostname {:?}: {e}", cfg.hostname))?;
    rootfs::pivot(&root).map_err(|e| chain(&e))?;

    let read = |p: &str| fs::read_to_string(p).unwrap_or_default();
    let id = user::resolve(&cfg.process.user, &read("/etc/passwd"), &read("/etc/group"))
        .map_err(|e| e.to_string())?;

    let cwd = Path::new(&cfg.process.cwd);
    if !cwd.exists() {
        fs::create_dir_all(cwd).map_err(|e| format!("create working directory {}: {e}", cwd.display()))?;
    }
    if cfg.read_only_root {
        rootfs::make_root_read_only().map_err(|e| chain(&e))?;
    }
    nix::unistd::chdir(cwd).map_err(|e| format!("enter working directory {}: {e}", cwd.display()))?;
    // The kernel refuses more than fs.nr_open.
    let nr_open = fs::read_to_string("/proc/sys/fs/nr_open").ok().and_then(|s| s.trim().parse().ok());
    let nofile = nr_open.map_or(NOFILE_LIMIT, |n: u64| n.min(NOFILE_LIMIT));
    if setrlimit(Resource::RLIMIT_NOFILE, nofile, nofile).is_err() {
        // Without CAP_SYS_RESOURCE the hard limit cannot rise: use what the node has.
        let (_, hard) = nix::sys::resource::getrlimit(Resource::RLIMIT_NOFILE)
            .map_err(|e| format!("read RLIMIT_NOFILE: {e}"))?;
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)
            .map_err(|e| format!("set RLIMIT_NOFILE to {hard}: {e}"))?;
    }

    let mut env = cfg.process.env.clone();
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", id.home));
    }
    if !env.iter().any(|e| e.starts_with("HOSTNAME=")) {
        env.push(format!("HOSTNAME={}", cfg.hostname));
    }
    let program = find_program(&cfg.process.args[0], &env)?;

    become_and_exec(&id, &program, &cfg.process.args, &env)
}

/// The last steps into a container's process, shared by its init and by commands run
/// in it: no new privileges, Docker's capabilities, the user's ids and groups,
/// default signals, no inherited descriptors, the seccomp filter, then `execve`.
pub(super) fn become_and_exec(
    id: &user::Identity,
    program: &Path,
    args: &[String],
    env: &[String],
) -> Result<std::convert::Infallible, String> {
    // SAFETY: prctl(PR_SET_NO_NEW_PRIVS) only sets a flag on this process.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(format!("set no_new_privs: {}", std::io::Error::last_os_error()));
    }
    drop_capabilities().map_err(|e| format!("drop capabilities: {e}"))?;
    let groups: Vec<Gid> = id.groups.iter().map(|&g| Gid::from_raw(g)).collect();
    nix::unistd::setgroups(&groups).map_err(|e| format!("set groups: {e}"))?;
    let (gid, uid) = (Gid::from_raw(id.gid), Uid::from_raw(id.uid));
    setresgid(gid, gid, gid).map_err(|e| format!("set gid {}: {e}", id.gid))?;
    setresuid(uid, uid, uid).map_err(|e| format!("set uid {}: {e}", id.uid))?;

    reset_signals();
    sys::cloexec_from(3).map_err(|e| format!("close descriptors: {e}"))?;
    let filters = seccomp::default_filters().map_err(|e| chain(&e))?;
    for f in &filters {
        seccompiler::apply_filter(f).map_err(|e| format!("install seccomp filter: {e}"))?;
    }

    let argv: Vec<CString> = args.iter().map(|a| cstring(a)).collect::<Result<_, _>>()?;
    let envp: Vec<CString> = env.iter().map(|e| cstring(e)).collect::<Result<_, _>>()?;
    let path = cstring(&program.to_string_lossy())?;
    let err = nix::unistd::execve(&path, &argv, &envp).unwrap_err();
    Err(format!("cannot run {}: {err}", program.display()))
}

fn cstring(s: &str) -> Result<CString, String> {
    CString::new(s).map_err(|_| format!("{s:?} contains a NUL byte"))
}

/// Finds `name` as the kernel's `execvp` would, in the container's `PATH`.
pub(super) fn find_program(name: &str, env: &[String]) -> Result<PathBuf, String> {
    let is_executable = |p: &Path| {
        fs::metadata(p).map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false)
    };
    if name.contains('/') {
        let p = PathBuf::from(name);
        return if is_executable(&p) {
            Ok(p)
        } else {
            Err(format!("command not found in the image: {name} (no such executable file)"))
        };
    }
    let path = env.iter().find_map(|e| e.strip_prefix("PATH=")).unwrap_or("/usr/bin:/bin");
    path.split(':')
        .map(|dir| Path::new(dir).join(name))
        .find(|p| is_executable(p))
        .ok_or_else(|| format!("command not found in the image: {name} (not in PATH={path})"))
}

/// Keeps only Docker's default capabilities: drops the rest from the bounding set and
/// sets effective and permitted to the defaults; inheritable and ambient stay empty.
/// A non-root user then loses them all at setresuid, as in Docker.
fn drop_capabilities() -> Result<(), caps::errors::CapsError> {
    let keep: CapsHashSet = DEFAULT_CAPS.into_iter().collect();
    for cap in caps::all() {
        if !keep.contains(&cap) {
            caps::drop(None, CapSet::Bounding, cap)?;
        }
    }
    caps::clear(None, CapSet::Inheritable)?;
    caps::clear(None, CapSet::Ambient)?;
    caps::set(None, CapSet::Effective, &keep)?;
    caps::set(None, CapSet::Permitted, &keep)
}

/// Signal dispositions and the mask survive `execve`; give the program the defaults.
fn reset_signals() {
    for sig in Signal::iterator() {
        if sig != Signal::SIGKILL && sig != Signal::SIGSTOP {
            // SAFETY: setting a default disposition installs no handler code.
            let _ = unsafe { signal(sig, SigHandler::SigDfl) };
        }
    }
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
}
