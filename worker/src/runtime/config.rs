//! What the shim needs to start one container, written by the daemon into the
//! container's state directory as `config.json`, and how it is built from a service's
//! `ContainerSpec` and the image's config (the spec's fields override the image's).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shoal_api::task_spec::{ContainerSpec, HealthCheck};

use crate::cgroups::{Cgroup, Limits};
use crate::image::ImageDefaults;

/// Everything the shim and the container's init need; no lookups happen after this.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerConfig {
    /// Container id (also the state directory's and the cgroup's name).
    pub id: String,
    /// The image's name as asked for (empty in configs written before it was kept).
    #[serde(default)]
    pub image: String,
    /// Image layer directories, topmost first; stacked read-only by overlayfs.
    pub layers: Vec<PathBuf>,
    /// The process to run.
    pub process: Process,
    /// Hostname inside the container.
    pub hostname: String,
    /// Mounts on top of the rootfs, after the standard ones.
    pub mounts: Vec<MountPoint>,
    /// Remount the root filesystem read-only.
    pub read_only_root: bool,
    /// Resource limits (also written to the cgroup by the daemon).
    pub limits: Limits,
    /// The container's cgroup, made by the daemon before the shim starts.
    pub cgroup: Cgroup,
    /// Join this network namespace (a path such as `/run/netns/x`) instead of a new
    /// empty one.
    pub netns: Option<PathBuf>,
    /// Run in a new user namespace with this mapping (container root is an
    /// unprivileged user on the host).
    #[serde(default)]
    pub userns: Option<IdMapping>,
    /// How big the log file may grow before it is rotated, and how many to keep.
    pub log: LogConfig,
}

/// A user namespace mapping: container ids `0..size` are host ids `host..host+size`,
/// for users and groups alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdMapping {
    /// First host uid and gid.
    pub host: u32,
    /// How many ids are mapped.
    pub size: u32,
}

/// The container's process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Process {
    /// Program and arguments; the program is looked up in `PATH` inside the container.
    pub args: Vec<String>,
    /// `NAME=VALUE` pairs.
    pub env: Vec<String>,
    /// Working directory; created if missing, as Docker does.
    pub cwd: String,
    /// `user`, `uid`, `user:group` or `uid:gid`, resolved against the image's
    /// `/etc/passwd` and `/etc/group`.
    pub user: String,
}

/// A mount into the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MountPoint {
    /// A host path (a bind mount or a volume's directory).
    Bind {
        /// Absolute host path; must exist.
        source: PathBuf,
        /// Absolute path in the container.
        target: String,
        /// Read-only.
        read_only: bool,
    },
    /// A named volume's directory on the host, bound like `Bind`. While it is empty,
    /// it is first filled with what the image has at `target` (Docker's copy-up),
    /// unless `no_copy`.
    Volume {
        /// Absolute host path of the volume's directory; must exist.
        source: PathBuf,
        /// Absolute path in the container.
        target: String,
        /// Read-only.
        read_only: bool,
        /// Leave an empty volume empty.
        no_copy: bool,
    },
    /// A fresh tmpfs.
    Tmpfs {
        /// Absolute path in the container.
        target: String,
        /// Size limit in bytes (0: the kernel's default).
        size_bytes: u64,
        /// Mode of the mount's root.
        mode: u32,
    },
}

/// Log file size limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogConfig {
    /// Rotate when the file reaches this size.
    pub max_bytes: u64,
    /// Rotated files kept besides the current one.
    pub max_files: u32,
}

impl Default for LogConfig {
    /// 10 MiB × (1 + 3) files, like Docker's `local` log driver defaults scaled down.
    fn default() -> Self {
        LogConfig { max_bytes: 10 << 20, max_files: 3 }
    }
}

/// The default `PATH` when neither the image nor the spec sets one (Docker's).
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Why a process could not be made from a spec and an image.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Neither the spec nor the image names a program.
    #[error("no command to run: the image has no ENTRYPOINT or CMD, so give one")]
    NoCommand,
}

/// Docker's rules: the spec's `command` replaces ENTRYPOINT and then CMD is dropped;
/// its `args` replace CMD; its env entries override the image's by name.
pub fn process(spec: &ContainerSpec, image: &ImageDefaults) -> Result<Process, ConfigError> {
    let (entrypoint, cmd) = if spec.command.is_empty() {
        let cmd = if spec.args.is_empty() { image.cmd.clone() } else { spec.args.clone() };
        (image.entrypoint.clone(), cmd)
    } else {
        (spec.command.clone(), spec.args.clone())
    };
    let args: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if args.is_empty() {
        return Err(ConfigError::NoCommand);
    }
    let mut env: Vec<String> = Vec::new();
    for kv in image.env.iter().chain(&spec.env) {
        let name = kv.split('=').next().unwrap_or(kv);
        env.retain(|e| e.split('=').next() != Some(name));
        env.push(kv.clone());
    }
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, DEFAULT_PATH.to_owned());
    }
    let cwd = spec.workdir.clone().unwrap_or_else(|| image.workdir.clone());
    let user = spec.user.clone().unwrap_or_else(|| image.user.clone());
    Ok(Process {
        args,
        env,
        cwd: if cwd.is_empty() { "/".to_owned() } else { cwd },
        user: if user.is_empty() { "0".to_owned() } else { user },
    })
}

/// The stop signal: the spec's, else the image's, else SIGTERM; and the grace period.
pub fn stop_signal(spec: &ContainerSpec, image: &ImageDefaults) -> (i32, Duration) {
    let name = spec.stop_signal.clone().or_else(|| image.stop_signal.clone());
    let sig = name.and_then(|n| shoal_api::validate::parse_signal(&n)).unwrap_or(libc::SIGTERM);
    (sig, spec.stop_grace_period)
}

/// The health check a container runs, as Docker decides it: the spec's test (none
/// for `["NONE"]`), else the image's HEALTHCHECK; with a spec that sets only timings,
/// the image's test with those timings (timings left at their defaults take the
/// image's).
pub fn health_check(spec: &ContainerSpec, image: &ImageDefaults) -> Option<HealthCheck> {
    let runs = |h: &HealthCheck| matches!(h.test.first().map(String::as_str), Some("CMD" | "CMD-SHELL"));
    let from_image = image.healthcheck.as_ref().filter(|h| runs(h));
    match &spec.healthcheck {
        None => from_image.cloned(),
        Some(h) if h.test.is_empty() => from_image.map(|i| {
            let d = HealthCheck::default();
            let pick = |mine: Duration, default: Duration, theirs: Duration| {
                if mine != default || theirs.is_zero() { mine } else { theirs }
            };
            HealthCheck {
                test: i.test.clone(),
                interval: pick(h.interval, d.interval, i.interval),
                timeout: pick(h.timeout, d.timeout, i.timeout),
                retries: if h.retries != d.retries || i.retries == 0 { h.retries } else { i.retries },
                start_period: pick(h.start_period, d.start_period, i.start_period),
                start_interval: pick(h.start_interval, d.start_interval, i.start_interval),
            }
        }),
        Some(h) => runs(h).then(|| h.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image() -> ImageDefaults {
        ImageDefaults {
            entrypoint: vec!["/entry".into()],
            cmd: vec!["serve".into()],
            env: vec!["PATH=/bin".into(), "MODE=image".into()],
            workdir: "/app".into(),
            user: "www".into(),
            stop_signal: Some("SIGQUIT".into()),
            healthcheck: None,
        }
    }

    #[test]
    fn the_spec_health_check_wins_then_the_images() {
        let cmd = |t: &str| vec!["CMD-SHELL".to_owned(), t.to_owned()];
        let mut img = image();
        img.healthcheck =
            Some(HealthCheck { interval: Duration::from_secs(7), ..HealthCheck::new(cmd("image")) });
        let mut spec = ContainerSpec::for_image("x");
        assert_eq!(health_check(&spec, &img).unwrap().test, cmd("image"), "the image's by default");
        spec.healthcheck = Some(HealthCheck::new(cmd("spec")));
        assert_eq!(health_check(&spec, &img).unwrap().test, cmd("spec"));
        spec.healthcheck = Some(HealthCheck::new(vec!["NONE".into()]));
        assert_eq!(health_check(&spec, &img), None, "NONE turns the image's off");
        spec.healthcheck = Some(HealthCheck { retries: 9, ..HealthCheck::default() });
        let merged = health_check(&spec, &img).unwrap();
        assert_eq!((merged.test, merged.interval, merged.retries), (cmd("image"), Duration::from_secs(7), 9));
        assert_eq!(health_check(&ContainerSpec::for_image("x"), &image()), None, "neither has one");
    }

    #[test]
    fn image_config_under_spec_overrides() {
        let mut spec = ContainerSpec::for_image("x");
        let p = process(&spec, &image()).unwrap();
        assert_eq!(p.args, ["/entry", "serve"]);
        assert_eq!((p.cwd.as_str(), p.user.as_str()), ("/app", "www"));
        assert_eq!(p.env, ["PATH=/bin", "MODE=image"]);

        spec.args = vec!["migrate".into()];
        assert_eq!(process(&spec, &image()).unwrap().args, ["/entry", "migrate"]);

        spec.command = vec!["/bin/sh".into(), "-c".into()];
        spec.args = vec![];
        assert_eq!(
            process(&spec, &image()).unwrap().args,
            ["/bin/sh", "-c"],
            "CMD is dropped with a new entrypoint"
        );

        spec.env = vec!["MODE=spec".into(), "EXTRA=1".into()];
        spec.workdir = Some("/srv".into());
        spec.user = Some("0:0".into());
        let p = process(&spec, &image()).unwrap();
        assert_eq!(p.env, ["PATH=/bin", "MODE=spec", "EXTRA=1"]);
        assert_eq!((p.cwd.as_str(), p.user.as_str()), ("/srv", "0:0"));
    }

    #[test]
    fn defaults_when_the_image_says_nothing() {
        let mut spec = ContainerSpec::for_image("x");
        assert_eq!(process(&spec, &ImageDefaults::default()), Err(ConfigError::NoCommand));
        spec.args = vec!["true".into()];
        let p = process(&spec, &ImageDefaults::default()).unwrap();
        assert_eq!(p.env, [DEFAULT_PATH]);
        assert_eq!((p.cwd.as_str(), p.user.as_str()), ("/", "0"));
        assert_eq!(stop_signal(&spec, &ImageDefaults::default()).0, libc::SIGTERM);
        assert_eq!(stop_signal(&spec, &image()).0, libc::SIGQUIT);
        spec.stop_signal = Some("SIGINT".into());
        assert_eq!(stop_signal(&spec, &image()).0, libc::SIGINT);
    }
}
