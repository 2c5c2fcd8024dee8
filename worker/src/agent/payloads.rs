//! A task's secrets and configs as files that never touch the node's disk: a tmpfs
//! of the task's own, mounted on the host at `<task dir>/payloads` (mode 0700,
//! `noexec,nosuid,nodev`, capped at what its files need), the files written into it
//! with the spec's mode and owner, the tmpfs made read-only, and its files
//! bind-mounted read-only into the container: every file whose target is under
//! `/run/secrets` (a secret's bare name) through the one directory `/run/secrets`,
//! the others each at its target. The tmpfs goes with the task's container
//! ([`unmount`]); on a restart of the daemon, [`sweep`] takes those whose container
//! went while it was down, and a running task keeps its own.
//!
//! [`layout`] decides where every file goes (pure); [`mount`] makes it so.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Component, Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};
use shoal_api::task_spec::{ContainerSpec, FileReference};

use super::node::Payloads;
use crate::runtime::config::MountPoint;

/// The tmpfs's directory under a task's directory.
pub const DIR: &str = "payloads";
/// Where a secret with a bare name as its target goes in the container.
pub const SECRETS_DIR: &str = "/run/secrets";
/// The tmpfs's subdirectory bound at [`SECRETS_DIR`] (0755, so any user of the
/// container reaches the files their modes let them read).
const SECRETS_SUBDIR: &str = "secrets";
/// The tmpfs's subdirectory of files bound one by one elsewhere (0700).
const FILES_SUBDIR: &str = "files";
const PAGE: u64 = 4096;

/// Why a task's secrets and configs could not be given to it.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    /// The manager did not send a secret or config the task uses.
    #[error(
        "the {kind} {name} was not sent to this node: the manager will send it with the task's next assignment"
    )]
    Missing {
        /// `secret` or `config`.
        kind: &'static str,
        /// Its name or id, as the task refers to it.
        name: String,
    },
    /// A target the file cannot be put at.
    #[error("the {kind} {name} has target {target:?}: give a file name or an absolute path without '..'")]
    BadTarget {
        /// `secret` or `config`.
        kind: &'static str,
        /// Its name.
        name: String,
        /// The target.
        target: String,
    },
    /// The tmpfs could not be mounted or made read-only.
    #[error("mount a tmpfs for the task's secrets and configs at {path}")]
    Mount {
        /// Its mount point.
        path: PathBuf,
        /// Why.
        #[source]
        source: nix::Error,
    },
    /// A file or directory in the tmpfs could not be made.
    #[error("write the {kind} {name} into the task's tmpfs")]
    Write {
        /// `secret` or `config`.
        kind: &'static str,
        /// Its name.
        name: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The tmpfs could not be unmounted or its directory removed.
    #[error("remove the tmpfs of the task's secrets and configs at {path}")]
    Unmount {
        /// Its mount point.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// One file of the tmpfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    /// `secret` or `config`.
    pub kind: &'static str,
    /// The key of its payload in [`Payloads`].
    pub key: String,
    /// Its path inside the tmpfs.
    pub path: PathBuf,
    /// Permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
}

/// Where the files of a task go.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Layout {
    /// Every file, in the order of the references (secrets, then configs).
    pub files: Vec<File>,
    /// Bind mounts into the container: a path inside the tmpfs and its target.
    pub binds: Vec<(PathBuf, String)>,
    /// The tmpfs's size: each file's pages, plus room for the directories.
    pub size_bytes: u64,
}

/// Where every secret and config of `c` goes: secrets with a bare target into
/// `/run/secrets/<target>`, configs with one into `/<target>`; absolute targets
/// as they are. A target under `/run/secrets` is a file of that directory.
pub fn layout(c: &ContainerSpec, payloads: &Payloads) -> Result<Layout, PayloadError> {
    let mut out = Layout::default();
    let mut in_secrets_dir = false;
    let mut pages = 0;
    for (kind, refs, default_dir) in [("secret", &c.secrets, SECRETS_DIR), ("config", &c.configs, "")] {
        for (i, r) in refs.iter().enumerate() {
            let key = format!("{kind}/{}", r.source);
            let p =
                payloads.get(&key).ok_or_else(|| PayloadError::Missing { kind, name: r.source.clone() })?;
            let bad =
                || PayloadError::BadTarget { kind, name: p.name.clone(), target: target_of(r, &p.name) };
            let target = match &r.target {
                Some(t) if t.starts_with('/') => t.clone(),
                Some(t) => format!("{default_dir}/{t}"),
                None => format!("{default_dir}/{}", p.name),
            };
            let path = match Path::new(&target).strip_prefix(SECRETS_DIR) {
                Ok(rel) => {
                    in_secrets_dir = true;
                    Path::new(SECRETS_SUBDIR).join(rel)
                }
                Err(_) => {
                    let path = Path::new(FILES_SUBDIR).join(format!("{kind}-{i}"));
                    out.binds.push((path.clone(), target.clone()));
                    path
                }
            };
            // Only plain names: the file stays in its directory of the tmpfs, and the
            // container's path is where the runtime expects one.
            let plain = |p: &Path| p.components().skip(1).all(|c| matches!(c, Component::Normal(_)));
            let target_path = Path::new(&target);
            if path.components().count() < 2
                || !plain(&path)
                || target_path.components().count() < 2
                || !plain(target_path)
            {
                return Err(bad());
            }
            pages += (p.data.len() as u64).div_ceil(PAGE);
            out.files.push(File { kind, key, path, mode: r.mode, uid: r.uid, gid: r.gid });
        }
    }
    if in_secrets_dir {
        out.binds.insert(0, (PathBuf::from(SECRETS_SUBDIR), SECRETS_DIR.to_owned()));
    }
    // tmpfs counts data pages; directories take one each at most.
    out.size_bytes = (pages + out.files.len() as u64 + 8) * PAGE;
    Ok(out)
}

fn target_of(r: &FileReference, name: &str) -> String {
    r.target.clone().unwrap_or_else(|| name.to_owned())
}

/// Mounts the task's tmpfs under `task_dir`, writes its files and returns the
/// container's bind mounts; nothing when the task has no secrets or configs. On an
/// error, the tmpfs is gone again.
pub fn mount(
    task_dir: &Path,
    c: &ContainerSpec,
    payloads: &Payloads,
) -> Result<Vec<MountPoint>, PayloadError> {
    let layout = layout(c, payloads)?;
    if layout.files.is_empty() {
        return Ok(Vec::new());
    }
    let root = task_dir.join(DIR);
    // A tmpfs left by an earlier attempt at this task goes first.
    unmount(task_dir)?;
    let result = fill(&root, &layout, payloads);
    if result.is_err() {
        let _ = unmount(task_dir);
    }
    result?;
    Ok(layout
        .binds
        .into_iter()
        .map(|(path, target)| MountPoint::Bind { source: root.join(path), target, read_only: true })
        .collect())
}

fn fill(root: &Path, layout: &Layout, payloads: &Payloads) -> Result<(), PayloadError> {
    let mount_err = |source| PayloadError::Mount { path: root.to_owned(), source };
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(root)
        .map_err(|e| mount_err(nix::Error::from_raw(e.raw_os_error().unwrap_or(libc::EIO))))?;
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let data = format!("mode=0700,size={},uid=0,gid=0", layout.size_bytes);
    nix::mount::mount(Some("tmpfs"), root, Some("tmpfs"), flags, Some(data.as_str())).map_err(mount_err)?;
    for f in &layout.files {
        let p = &payloads[&f.key];
        let io = |source| PayloadError::Write { kind: f.kind, name: p.name.clone(), source };
        let path = root.join(&f.path);
        let mut dirs = path.ancestors().skip(1).take_while(|d| *d != root).collect::<Vec<_>>();
        dirs.reverse();
        for d in dirs {
            let mode = if d.starts_with(root.join(FILES_SUBDIR)) { 0o700 } else { 0o755 };
            match fs::DirBuilder::new().mode(mode).create(d) {
                Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(io(e)),
                _ => fs::set_permissions(d, fs::Permissions::from_mode(mode)).map_err(io)?,
            }
        }
        let mut file =
            fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path).map_err(io)?;
        file.write_all(&p.data).map_err(io)?;
        // The owner first: a chown clears the set-id bits a mode may have.
        std::os::unix::fs::fchown(&file, Some(f.uid), Some(f.gid)).map_err(io)?;
        file.set_permissions(fs::Permissions::from_mode(f.mode)).map_err(io)?;
    }
    let ro = flags | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
    nix::mount::mount(None::<&str>, root, None::<&str>, ro, None::<&str>).map_err(mount_err)
}

/// Unmounts the task's tmpfs, if it has one, and removes its mount point.
pub fn unmount(task_dir: &Path) -> Result<(), PayloadError> {
    let root = task_dir.join(DIR);
    let err = |source| PayloadError::Unmount { path: root.clone(), source };
    // Detached: a container still holding it keeps its own view until it goes.
    match nix::mount::umount2(&root, MntFlags::MNT_DETACH) {
        // Not mounted, or no such directory.
        Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => {}
        Err(e) => return Err(err(e.into())),
    }
    match fs::remove_dir_all(&root) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(err(e)),
        _ => Ok(()),
    }
}

/// After a restart of the daemon: removes the directory (and its tmpfs) of every
/// task under `tasks_dir` whose container is not among `containers` (task ids).
/// A task that still has its container keeps them. Returns the task ids swept.
pub fn sweep(tasks_dir: &Path, containers: &[String]) -> Vec<String> {
    let mut swept = Vec::new();
    let Ok(entries) = fs::read_dir(tasks_dir) else { return swept };
    for e in entries.flatten() {
        let Ok(id) = e.file_name().into_string() else { continue };
        if containers.contains(&id) {
            continue;
        }
        match unmount(&e.path()).map(|()| fs::remove_dir_all(e.path())) {
            Ok(Ok(())) => swept.push(id),
            Ok(Err(err)) => tracing::warn!(task = %id, error = %err, "cannot remove a gone task's files"),
            Err(err) => tracing::warn!(
                task = %id,
                error = %super::node::error_chain(&err),
                "cannot remove a gone task's secrets and configs"
            ),
        }
    }
    swept
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::node::Payload;

    fn payloads(items: &[(&str, &str, &[u8])]) -> Payloads {
        let mut out = Payloads::new();
        for (kind, name, data) in items {
            let p = Payload { kind: (*kind).into(), name: (*name).into(), data: data.to_vec() };
            out.insert(format!("{kind}/{name}"), p.clone());
            out.insert(format!("{kind}/id-{name}"), p);
        }
        out
    }

    fn reference(source: &str, target: Option<&str>) -> FileReference {
        FileReference { target: target.map(str::to_owned), ..FileReference::new(source) }
    }

    #[test]
    fn secrets_go_under_run_secrets_and_the_rest_one_by_one() {
        let mut c = ContainerSpec::for_image("busybox");
        c.secrets = vec![
            reference("pw", None),
            reference("id-pw", Some("nested/pw2")),
            reference("pw", Some("/etc/pw")),
            reference("pw", Some("/run/secrets/abs")),
        ];
        c.configs = vec![reference("conf", None), reference("conf", Some("/etc/app/app.conf"))];
        c.configs[1].mode = 0o640;
        c.configs[1].uid = 33;
        let p = payloads(&[("secret", "pw", &[1; 5000]), ("config", "conf", b"x")]);
        let l = layout(&c, &p).unwrap();
        let paths: Vec<&str> = l.files.iter().map(|f| f.path.to_str().unwrap()).collect();
        assert_eq!(
            paths,
            [
                "secrets/pw",
                "secrets/nested/pw2",
                "files/secret-2",
                "secrets/abs",
                "files/config-0",
                "files/config-1"
            ]
        );
        assert_eq!(l.files[3].key, "secret/pw");
        assert_eq!((l.files[5].mode, l.files[5].uid, l.files[5].gid), (0o640, 33, 0));
        let binds: Vec<(&str, &str)> =
            l.binds.iter().map(|(p, t)| (p.to_str().unwrap(), t.as_str())).collect();
        assert_eq!(
            binds,
            [
                ("secrets", "/run/secrets"),
                ("files/secret-2", "/etc/pw"),
                ("files/config-0", "/conf"),
                ("files/config-1", "/etc/app/app.conf"),
            ]
        );
        // 5000 bytes take 2 pages (×4 references), 1 byte 1 (×2), plus 6 files and 8.
        assert_eq!(l.size_bytes, (4 * 2 + 2 + 6 + 8) * PAGE);
    }

    #[test]
    fn no_secrets_no_run_secrets() {
        let mut c = ContainerSpec::for_image("busybox");
        c.configs = vec![reference("conf", None)];
        let l = layout(&c, &payloads(&[("config", "conf", b"x")])).unwrap();
        assert_eq!(l.binds, [(PathBuf::from("files/config-0"), "/conf".to_owned())]);
        assert!(layout(&ContainerSpec::for_image("busybox"), &Payloads::new()).unwrap().files.is_empty());
    }

    #[test]
    fn a_missing_payload_or_a_target_that_escapes_is_refused() {
        let mut c = ContainerSpec::for_image("busybox");
        c.secrets = vec![reference("nope", None)];
        let e = layout(&c, &Payloads::new()).unwrap_err();
        assert!(matches!(e, PayloadError::Missing { kind: "secret", .. }), "{e}");
        let p = payloads(&[("secret", "pw", b"hunter2")]);
        for bad in ["../x", "/run/secrets/../../etc/x", "a/../../b", "/run/secrets", "/run/secrets/", "/"] {
            c.secrets = vec![reference("pw", Some(bad))];
            let e = layout(&c, &p).unwrap_err();
            assert!(matches!(e, PayloadError::BadTarget { .. }), "{bad}: {e}");
            assert!(!e.to_string().contains("hunter2"));
        }
    }
}
