//! Network namespaces without forking and without `setns` on the caller's thread.
//!
//! Everything that must happen *inside* a namespace (making a netlink socket, running
//! `nft`, writing a sysctl, binding a probe socket) runs on a fresh, short-lived
//! `std::thread` that joins the namespace and exits afterwards ([`run_in`]), so neither
//! a tokio worker thread nor the daemon process ever changes namespace. Sockets keep the
//! namespace they were made in, and children inherit the namespace of the thread that
//! spawned them. Named namespaces are files bind-mounted over `/proc/thread-self/ns/net`
//! of such a thread after it `unshare`d, as `ip netns add` does.

use std::fs::{self, File};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, setns, unshare};

use super::NetworkError;

/// `statfs` type of the nsfs filesystem, which namespace files live on.
const NSFS_MAGIC: i64 = 0x6e73_6673;

/// An open network namespace, with a name for error messages.
#[derive(Debug, Clone)]
pub(crate) struct Netns {
    fd: Arc<OwnedFd>,
    name: String,
}

impl Netns {
    /// The namespace of the calling thread (not the process's).
    pub(crate) fn current() -> Result<Netns, NetworkError> {
        let fd = File::open("/proc/thread-self/ns/net")
            .map_err(|e| NetworkError::io("open this thread's network namespace", e))?;
        Ok(Netns { fd: Arc::new(fd.into()), name: "the daemon's namespace".into() })
    }

    /// Opens a named namespace file; `None` if it does not exist or is not mounted.
    pub(crate) fn open(path: &Path) -> Result<Option<Netns>, NetworkError> {
        if !is_netns_mount(path) {
            return Ok(None);
        }
        match File::open(path) {
            Ok(f) => Ok(Some(Netns { fd: Arc::new(f.into()), name: path.display().to_string() })),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(NetworkError::netns(path, "open", e)),
        }
    }

    /// The namespace's descriptor.
    pub(crate) fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    /// The name used in messages.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Runs `f` on a new thread inside this namespace; see the module doc.
    pub(crate) async fn run<T, F>(&self, f: F) -> Result<T, NetworkError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let ns = self.clone();
        spawn_thread(move || {
            setns(ns.fd.as_fd(), CloneFlags::CLONE_NEWNET)
                .map_err(|e| NetworkError::netns(&ns.name, "join", e.into()))?;
            Ok(f())
        })
        .await?
    }
}

/// Runs `f` on a fresh thread and waits for it without blocking the runtime.
async fn spawn_thread<T, F>(f: F) -> Result<T, NetworkError>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("shoal-netns".into())
        .spawn(move || {
            let _ = tx.send(f());
        })
        .map_err(|e| NetworkError::io("start a namespace thread", e))?;
    rx.await.map_err(|_| NetworkError::io("a namespace thread", io::Error::other("it panicked; see the log")))
}

/// Whether `path` is a mounted namespace file.
#[allow(clippy::unnecessary_cast)] // the statfs type's width differs by architecture
pub(crate) fn is_netns_mount(path: &Path) -> bool {
    nix::sys::statfs::statfs(path).is_ok_and(|s| s.filesystem_type().0 as i64 == NSFS_MAGIC)
}

/// Makes the named namespace `path` unless it is already there; idempotent.
pub(crate) async fn create(path: &Path) -> Result<Netns, NetworkError> {
    if let Some(ns) = Netns::open(path)? {
        return Ok(ns);
    }
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(|e| NetworkError::netns(dir, "make the directory", e))?;
    }
    let target = path.to_path_buf();
    spawn_thread(move || -> Result<(), NetworkError> {
        unshare(CloneFlags::CLONE_NEWNET).map_err(|e| NetworkError::netns(&target, "unshare", e.into()))?;
        File::create(&target).map_err(|e| NetworkError::netns(&target, "create the file", e))?;
        mount(Some("/proc/thread-self/ns/net"), &target, None::<&str>, MsFlags::MS_BIND, None::<&str>)
            .map_err(|e| NetworkError::netns(&target, "bind-mount", e.into()))
    })
    .await??;
    Netns::open(path)?
        .ok_or_else(|| NetworkError::netns(path, "open after making it", io::ErrorKind::NotFound.into()))
}

/// Removes the named namespace `path` (the kernel frees it, and the links inside it, once
/// nothing else holds it); nothing if it is not there.
pub(crate) fn remove(path: &Path) -> Result<(), NetworkError> {
    match umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOENT) => {}
        Err(e) => return Err(NetworkError::netns(path, "unmount", e.into())),
    }
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(NetworkError::netns(path, "remove the file", e)),
    }
}

/// The namespace files directly in `dir` (mounted or stale), sorted by name.
pub(crate) fn list(dir: &Path) -> Result<Vec<(String, PathBuf)>, NetworkError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(NetworkError::netns(dir, "list", e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| NetworkError::netns(dir, "list", e))?;
        if let Some(name) = entry.file_name().to_str() {
            out.push((name.to_string(), entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_file_is_not_a_namespace() {
        assert!(!is_netns_mount(Path::new("/nonexistent/ns")));
        assert!(Netns::open(Path::new("/nonexistent/ns")).unwrap().is_none());
    }
}
