//! Debian's `docker` CLI (20.10, API 1.41) pointed at a Shoal daemon's Docker Engine
//! API socket. `scripts/test` sets `SHOAL_DOCKER_CLI` (taking the binary out of the
//! docker.io package when it is not installed); by hand, `/usr/bin/docker` is used.

use std::process::{Command, Output};

use super::daemons::Daemon;

/// The docker CLI binary the tests drive.
pub fn docker_cli() -> String {
    let cli = std::env::var("SHOAL_DOCKER_CLI").unwrap_or_else(|_| "/usr/bin/docker".into());
    let version = Command::new(&cli).arg("--version").output();
    match version {
        Ok(out) if String::from_utf8_lossy(&out.stdout).starts_with("Docker version 20.10") => cli,
        _ => panic!(
            "these tests need Debian's docker CLI 20.10 (package docker.io) at {cli}: run scripts/test, which \
             fetches it, or set SHOAL_DOCKER_CLI"
        ),
    }
}

/// `docker ARGS` with `env` (`DOCKER_HOST`, `DOCKER_CONFIG`, TLS settings) and
/// `input` on its stdin, under a 90 s deadline (exit code 124 past it), so a CLI
/// that never returns fails its test instead of hanging it.
pub fn docker_with(env: &[(&str, &str)], args: &[&str], input: Option<&str>) -> Output {
    use std::io::Write as _;
    let mut child = Command::new("timeout")
        .arg("90")
        .arg(docker_cli())
        .args(args)
        .envs(env.iter().copied())
        .env_remove("DOCKER_API_VERSION")
        .env_remove("DOCKER_CONTEXT")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the docker CLI runs");
    let mut stdin = child.stdin.take().unwrap();
    if let Some(input) = input {
        stdin.write_all(input.as_bytes()).unwrap();
    }
    drop(stdin);
    child.wait_with_output().unwrap()
}

impl Daemon {
    /// `docker ARGS` against this daemon's Engine API, with a config dir of its own.
    pub fn docker(&self, args: &[&str]) -> Output {
        self.docker_input(args, None)
    }

    /// `docker ARGS` with `input` on its stdin.
    pub fn docker_input(&self, args: &[&str], input: Option<&str>) -> Output {
        let config = self.dir.join("docker-config");
        std::fs::create_dir_all(&config).unwrap();
        let host = format!("unix://{}", self.docker_socket().display());
        docker_with(&[("DOCKER_HOST", &host), ("DOCKER_CONFIG", config.to_str().unwrap())], args, input)
    }

    /// `docker ARGS`, which must succeed: its stdout.
    pub fn docker_ok(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(
            out.status.success(),
            "docker {args:?} failed ({:?}): {}{}\n--- daemon log ---\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// `docker ARGS`, which must fail (not time out): its stderr.
    pub fn docker_fails(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(!out.status.success(), "docker {args:?} succeeded: {}", String::from_utf8_lossy(&out.stdout));
        assert_ne!(out.status.code(), Some(124), "docker {args:?} timed out");
        String::from_utf8(out.stderr).unwrap()
    }
}
