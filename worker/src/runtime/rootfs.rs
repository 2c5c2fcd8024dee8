//! The container's filesystem, set up by its init inside its own mount namespace: the
//! overlay of image layers, `/proc`, `/sys`, `/dev` with its nodes, the spec's mounts,
//! masked and read-only paths (Docker's lists), then `pivot_root`. Every mount lives
//! only in the container's mount namespace, so none outlives the container.

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Component, Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sys::stat::{Mode, SFlag, makedev, mknod};

use super::config::{ContainerConfig, MountPoint};

/// Why the filesystem could not be set up; each names the path involved.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    /// A mount failed.
    #[error("mount {what} on {target}")]
    Mount {
        /// What was mounted.
        what: String,
        /// Where.
        target: PathBuf,
        /// The kernel's error.
        #[source]
        source: nix::Error,
    },
    /// Creating a directory, file, node or link failed.
    #[error("create {path}")]
    Create {
        /// The path.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A bind mount's source is missing on the host.
    #[error("mount source {0} does not exist on this node: create it or fix the mount")]
    MissingSource(PathBuf),
    /// A path in the image loops through symlinks.
    #[error("{0} has too many levels of symbolic links inside the image")]
    SymlinkLoop(String),
    /// `pivot_root` or detaching the old root failed.
    #[error("switch to the container's root")]
    Pivot(#[source] nix::Error),
}

/// Paths hidden from the container: directories get an empty read-only tmpfs, files
/// are covered by `/dev/null` (Docker's list, with /proc/interrupts and powercap).
pub const MASKED_PATHS: [&str; 13] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
    "/sys/devices/system/cpu/cpu0/thermal_throttle",
];

/// Paths made read-only (all runtimes agree on these).
pub const READONLY_PATHS: [&str; 5] =
    ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

fn do_mount(
    source: Option<&str>,
    target: &Path,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<(), RootfsError> {
    mount(source, target, fstype, flags, data).map_err(|source_err| RootfsError::Mount {
        what: fstype.or(source).unwrap_or("bind").to_owned(),
        target: target.to_owned(),
        source: source_err,
    })
}

/// The `nosuid`, `nodev` and `noexec` of the mount `source` is on, which a
/// read-only remount of its bind keeps (a remount sets every flag anew; a task's
/// secrets come from a `noexec,nosuid,nodev` tmpfs and stay so).
fn kept_flags(source: &Path) -> MsFlags {
    use nix::sys::statvfs::{FsFlags, statvfs};
    let Ok(st) = statvfs(source) else { return MsFlags::empty() };
    let mut flags = MsFlags::empty();
    for (fs, ms) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
    ] {
        if st.flags().contains(fs) {
            flags |= ms;
        }
    }
    flags
}

fn mkdir_all(path: &Path) -> Result<(), RootfsError> {
    fs::create_dir_all(path).map_err(|source| RootfsError::Create { path: path.to_owned(), source })
}

/// Resolves `path` (absolute, as the container sees it) to a host path under `root`,
/// following symlinks as if `root` were `/`, so no symlink in an image can point a
/// mount outside the container.
pub fn resolve_in_root(root: &Path, path: &str) -> Result<PathBuf, RootfsError> {
    let mut resolved = PathBuf::from("/");
    let mut pending: Vec<String> =
        Path::new(path).components().rev().filter_map(|c| c.as_os_str().to_str().map(String::from)).collect();
    let mut hops = 0;
    while let Some(part) = pending.pop() {
        match part.as_str() {
            "/" | "." => continue,
            ".." => {
                resolved.pop();
                continue;
            }
            _ => {}
        }
        let candidate = resolved.join(&part);
        let host = root.join(candidate.strip_prefix("/").unwrap_or(&candidate));
        match fs::read_link(&host) {
            Ok(target) => {
                hops += 1;
                if hops > 40 {
                    return Err(RootfsError::SymlinkLoop(path.to_owned()));
                }
                if target.is_absolute() {
                    resolved = PathBuf::from("/");
                }
                for c in target.components().rev() {
                    if let Component::Normal(n) = c {
                        pending.push(n.to_string_lossy().into_owned());
                    } else if c == Component::ParentDir {
                        pending.push("..".into());
                    }
                }
            }
            Err(_) => resolved = candidate,
        }
    }
    Ok(root.join(resolved.strip_prefix("/").unwrap_or(&resolved)))
}

/// Makes `target` exist as a directory (or, for a file source, an empty file).
fn ensure_mount_point(target: &Path, is_dir: bool) -> Result<(), RootfsError> {
    if target.exists() {
        return Ok(());
    }
    if is_dir {
        mkdir_all(target)
    } else {
        if let Some(parent) = target.parent() {
            mkdir_all(parent)?;
        }
        fs::File::create(target)
            .map(drop)
            .map_err(|source| RootfsError::Create { path: target.to_owned(), source })
    }
}

/// Mounts the overlay of `layers` with `upper`/`work` on `root`. In a user namespace
/// overlayfs reads `user.overlay.*` xattrs (`userxattr`); layers carry both kinds.
pub fn mount_overlay(
    layers: &[PathBuf],
    upper: &Path,
    work: &Path,
    root: &Path,
    in_userns: bool,
) -> Result<(), RootfsError> {
    mkdir_all(root)?;
    let lower: Vec<String> = layers.iter().map(|l| l.display().to_string()).collect();
    let mut data =
        format!("lowerdir={},upperdir={},workdir={}", lower.join(":"), upper.display(), work.display());
    if in_userns {
        data.push_str(",userxattr");
    }
    do_mount(Some("overlay"), root, Some("overlay"), MsFlags::empty(), Some(&data))
}

/// Sets up everything under `root` (already the mounted overlay) that the container
/// sees besides its image, before `pivot_root`.
pub fn prepare(cfg: &ContainerConfig, state_dir: &Path, root: &Path) -> Result<(), RootfsError> {
    let nosuid_noexec_nodev = MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC | MsFlags::MS_NODEV;
    let proc_dir = resolve_in_root(root, "/proc")?;
    mkdir_all(&proc_dir)?;
    do_mount(Some("proc"), &proc_dir, Some("proc"), nosuid_noexec_nodev, None)?;

    let dev = resolve_in_root(root, "/dev")?;
    mkdir_all(&dev)?;
    do_mount(
        Some("tmpfs"),
        &dev,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME,
        Some("mode=755,size=65536k"),
    )?;
    make_devices(&dev, cfg.userns.is_some())?;
    let pts = dev.join("pts");
    mkdir_all(&pts)?;
    do_mount(
        Some("devpts"),
        &pts,
        Some("devpts"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620,gid=5"),
    )?;
    let shm = dev.join("shm");
    mkdir_all(&shm)?;
    do_mount(Some("shm"), &shm, Some("tmpfs"), nosuid_noexec_nodev, Some("mode=1777,size=65536k"))?;
    let mqueue = dev.join("mqueue");
    mkdir_all(&mqueue)?;
    do_mount(Some("mqueue"), &mqueue, Some("mqueue"), nosuid_noexec_nodev, None)?;

    let sys = resolve_in_root(root, "/sys")?;
    mkdir_all(&sys)?;
    let sysfs = do_mount(Some("sysfs"), &sys, Some("sysfs"), nosuid_noexec_nodev | MsFlags::MS_RDONLY, None);
    if sysfs.is_err() && cfg.userns.is_some() {
        // A joined network namespace owned by the host: sysfs cannot be mounted from a
        // user namespace then, so show the host's, read-only.
        do_mount(Some("/sys"), &sys, None, MsFlags::MS_BIND | MsFlags::MS_REC, None)?;
        let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | nosuid_noexec_nodev;
        do_mount(None, &sys, None, flags, None)?;
    } else {
        sysfs?;
    }

    for file in ["hostname", "hosts", "resolv.conf"] {
        let source = state_dir.join(file);
        if source.exists() {
            let target = resolve_in_root(root, &format!("/etc/{file}"))?;
            ensure_mount_point(&target, false)?;
            do_mount(source.to_str(), &target, None, MsFlags::MS_BIND, None)?;
        }
    }

    for m in &cfg.mounts {
        match m {
            MountPoint::Bind { source, target, read_only } => bind(root, source, target, *read_only)?,
            MountPoint::Volume { source, target, read_only, no_copy } => {
                if !*no_copy {
                    copy_up(&resolve_in_root(root, target)?, source)?;
                }
                bind(root, source, target, *read_only)?;
            }
            MountPoint::Tmpfs { target, size_bytes, mode } => {
                let dest = resolve_in_root(root, target)?;
                mkdir_all(&dest)?;
                let mut data = format!("mode={mode:o}");
                if *size_bytes > 0 {
                    data.push_str(&format!(",size={size_bytes}"));
                }
                do_mount(
                    Some("tmpfs"),
                    &dest,
                    Some("tmpfs"),
                    MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                    Some(&data),
                )?;
            }
        }
    }

    for path in MASKED_PATHS {
        let dest = resolve_in_root(root, path)?;
        match fs::symlink_metadata(&dest) {
            Ok(m) if m.is_dir() => {
                do_mount(Some("tmpfs"), &dest, Some("tmpfs"), MsFlags::MS_RDONLY, Some("size=0"))?
            }
            Ok(_) => do_mount(dev.join("null").to_str(), &dest, None, MsFlags::MS_BIND, None)?,
            Err(_) => {}
        }
    }
    for path in READONLY_PATHS {
        let dest = resolve_in_root(root, path)?;
        if dest.exists() {
            do_mount(dest.to_str(), &dest, None, MsFlags::MS_BIND | MsFlags::MS_REC, None)?;
            let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | nosuid_noexec_nodev;
            do_mount(None, &dest, None, flags, None)?;
        }
    }
    Ok(())
}

/// The standard device nodes, all 0666, plus the usual symlinks. In a user namespace,
/// where `mknod` is refused, the host's nodes are bind-mounted instead.
fn make_devices(dev: &Path, in_userns: bool) -> Result<(), RootfsError> {
    for (name, major, minor) in
        [("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0)]
    {
        let path = dev.join(name);
        if in_userns {
            ensure_mount_point(&path, false)?;
            do_mount(Some(&format!("/dev/{name}")), &path, None, MsFlags::MS_BIND, None)?;
            continue;
        }
        mknod(&path, SFlag::S_IFCHR, Mode::from_bits_truncate(0o666), makedev(major, minor))
            .map_err(|e| RootfsError::Create { path: path.clone(), source: e.into() })?;
        // mknod obeys the umask; set the mode it was meant to have.
        fs::set_permissions(&path, fs::Permissions::from_mode(0o666))
            .map_err(|source| RootfsError::Create { path: path.clone(), source })?;
    }
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
    ] {
        let path = dev.join(link);
        symlink(target, &path).map_err(|source| RootfsError::Create { path, source })?;
    }
    Ok(())
}

/// Makes `root` the process's `/` and detaches the old root entirely.
pub fn pivot(root: &Path) -> Result<(), RootfsError> {
    nix::unistd::chdir(root).map_err(RootfsError::Pivot)?;
    nix::unistd::pivot_root(".", ".").map_err(RootfsError::Pivot)?;
    // The old root is now stacked on "."; detach it. Mounts are private here, so the
    // host sees nothing of this.
    umount2(".", MntFlags::MNT_DETACH).map_err(RootfsError::Pivot)?;
    nix::unistd::chdir("/").map_err(RootfsError::Pivot)
}

/// Remounts `/` read-only (after `pivot`).
pub fn make_root_read_only() -> Result<(), RootfsError> {
    let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
    do_mount(None, Path::new("/"), None, flags, None)
}

/// Binds the host's `source` at `target` in the container, read-only if asked.
fn bind(root: &Path, source: &Path, target: &str, read_only: bool) -> Result<(), RootfsError> {
    let meta = fs::metadata(source).map_err(|_| RootfsError::MissingSource(source.to_path_buf()))?;
    let dest = resolve_in_root(root, target)?;
    ensure_mount_point(&dest, meta.is_dir())?;
    do_mount(source.to_str(), &dest, None, MsFlags::MS_BIND | MsFlags::MS_REC, None)?;
    if read_only {
        let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
        do_mount(None, &dest, None, flags | kept_flags(source), None)?;
    }
    Ok(())
}

/// Docker's copy-up: an empty volume directory `volume` gets what the image has at
/// `image_dir` (a directory in the container's root, before the volume covers it):
/// files, directories and symlinks with their modes and owners. Nothing happens when
/// the volume already holds something or the image has no directory there.
pub(crate) fn copy_up(image_dir: &Path, volume: &Path) -> Result<(), RootfsError> {
    let is_dir = fs::symlink_metadata(image_dir).is_ok_and(|m| m.is_dir());
    let empty = fs::read_dir(volume).map(|mut d| d.next().is_none()).unwrap_or(false);
    if !is_dir || !empty {
        return Ok(());
    }
    copy_tree(image_dir, volume)?;
    // The volume's root takes the image directory's mode and owner too.
    copy_attributes(image_dir, volume)
}

fn copy_tree(from: &Path, to: &Path) -> Result<(), RootfsError> {
    fn create(path: &Path) -> impl FnOnce(std::io::Error) -> RootfsError + '_ {
        move |source| RootfsError::Create { path: path.to_path_buf(), source }
    }
    for entry in fs::read_dir(from).map_err(create(from))? {
        let entry = entry.map_err(create(from))?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type().map_err(create(&src))?;
        if kind.is_dir() {
            fs::create_dir(&dst).map_err(create(&dst))?;
            copy_tree(&src, &dst)?;
        } else if kind.is_symlink() {
            let link = fs::read_link(&src).map_err(create(&src))?;
            std::os::unix::fs::symlink(link, &dst).map_err(create(&dst))?;
        } else if kind.is_file() {
            fs::copy(&src, &dst).map_err(create(&dst))?;
        } else {
            // Device nodes, fifos and sockets in an image directory that becomes a
            // volume: Docker copies none of them either.
            continue;
        }
        copy_attributes(&src, &dst)?;
    }
    Ok(())
}

/// `to` takes `from`'s owner and (but for symlinks) permission bits.
fn copy_attributes(from: &Path, to: &Path) -> Result<(), RootfsError> {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    let create = |source| RootfsError::Create { path: to.to_path_buf(), source };
    let meta = fs::symlink_metadata(from).map_err(create)?;
    std::os::unix::fs::lchown(to, Some(meta.uid()), Some(meta.gid())).map_err(create)?;
    if !meta.file_type().is_symlink() {
        fs::set_permissions(to, fs::Permissions::from_mode(meta.mode() & 0o7777)).map_err(create)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_stay_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("usr/lib")).unwrap();
        symlink("/usr/lib", root.join("lib")).unwrap();
        symlink("../../../../etc", root.join("escape")).unwrap();
        symlink("/", root.join("top")).unwrap();
        symlink("loop2", root.join("loop1")).unwrap();
        symlink("loop1", root.join("loop2")).unwrap();
        assert_eq!(resolve_in_root(root, "/lib/x").unwrap(), root.join("usr/lib/x"));
        assert_eq!(resolve_in_root(root, "/escape/passwd").unwrap(), root.join("etc/passwd"));
        assert_eq!(resolve_in_root(root, "/top/../../etc").unwrap(), root.join("etc"));
        assert_eq!(resolve_in_root(root, "/new/dir").unwrap(), root.join("new/dir"));
        assert!(matches!(resolve_in_root(root, "/loop1/x"), Err(RootfsError::SymlinkLoop(_))));
    }

    #[test]
    fn an_empty_volume_takes_the_images_files_once() {
        let dir = tempfile::tempdir().unwrap();
        let (image, volume) = (dir.path().join("image/html"), dir.path().join("volume"));
        fs::create_dir_all(image.join("css")).unwrap();
        fs::write(image.join("index.html"), "hello").unwrap();
        fs::set_permissions(image.join("index.html"), fs::Permissions::from_mode(0o640)).unwrap();
        fs::write(image.join("css/site.css"), "body{}").unwrap();
        symlink("index.html", image.join("home.html")).unwrap();
        fs::set_permissions(&image, fs::Permissions::from_mode(0o750)).unwrap();
        fs::create_dir(&volume).unwrap();

        copy_up(&image, &volume).unwrap();
        assert_eq!(fs::read_to_string(volume.join("index.html")).unwrap(), "hello");
        assert_eq!(fs::read_to_string(volume.join("css/site.css")).unwrap(), "body{}");
        assert_eq!(fs::read_link(volume.join("home.html")).unwrap(), Path::new("index.html"));
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!((mode(&volume.join("index.html")), mode(&volume)), (0o640, 0o750));

        // A volume with data keeps it: the image's files never come back over it.
        fs::remove_file(volume.join("index.html")).unwrap();
        fs::write(volume.join("mine"), "kept").unwrap();
        copy_up(&image, &volume).unwrap();
        assert!(!volume.join("index.html").exists());
        // Nothing at the target in the image: nothing to copy.
        let other = dir.path().join("other");
        fs::create_dir(&other).unwrap();
        copy_up(&dir.path().join("image/none"), &other).unwrap();
        assert_eq!(fs::read_dir(&other).unwrap().count(), 0);
    }
}
