//! Real `shoal daemon` processes for the API and CLI tests: each with its own data
//! dir, loopback ports and API socket, stopped (and killed if need be) when dropped.

use std::future::Future;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use shoal_api::client::{Client, Endpoint};
use shoal_api::wire::ReadOptions;

use super::wait_for;

/// A task command that runs until SIGTERM, and exits 0 then.
pub fn serve_forever() -> Vec<String> {
    ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.2; done"].map(String::from).to_vec()
}

/// A free loopback `host:port`.
pub fn free_addr() -> String {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string()
}

/// Runs `f` to completion on a fresh runtime.
pub fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
}

/// One running daemon, on its own test node (data dir and cgroup parent, both
/// cleaned up with every container when it is dropped).
pub struct Daemon {
    child: Option<Child>,
    pub node: super::Node,
    pub name: String,
    pub dir: PathBuf,
    pub addr: String,
    pub api_addr: String,
    pub socket: PathBuf,
}

impl Daemon {
    fn spawn(name: &str, extra: &[&str]) -> Daemon {
        let node = super::Node::empty();
        let dir = node.data_dir().to_path_buf();
        let (addr, api_addr) = (free_addr(), free_addr());
        let socket = dir.join("api.sock");
        let mut d = Daemon { child: None, node, name: name.into(), dir, addr, api_addr, socket };
        d.start(extra);
        d
    }

    /// Starts (or restarts) the daemon process with the same dir and addresses.
    pub fn start(&mut self, extra: &[&str]) {
        let log =
            |ext| std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join(ext)).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_shoal"))
            .args(["daemon", "--data-dir", self.dir.to_str().unwrap(), "--listen-addr", &self.addr])
            .args(["--api-socket", self.socket.to_str().unwrap(), "--api-addr", &self.api_addr])
            .args(["--docker-socket", self.docker_socket().to_str().unwrap()])
            .args(["--hostname", &self.name, "--cgroup-parent", &self.node.cgroup_parent])
            // Tests never reach outside: images are imported (`import_busybox`).
            .args(["--pull", "never"])
            // Several daemons share the machine's network namespace here; overlays
            // are tested in cluster-tests, one namespace per host.
            .arg("--no-networking")
            .args(extra)
            .env("SHOAL_LOG", "info")
            .stdout(Stdio::from(log("out")))
            .stderr(Stdio::from(log("err")))
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    /// The Docker Engine API's socket (`DOCKER_HOST=unix://<this>`).
    pub fn docker_socket(&self) -> PathBuf {
        self.dir.join("docker.sock")
    }

    /// SIGKILL: the daemon dies at once (its containers keep running).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// A new cluster's first manager, once its API answers and it is registered.
    pub fn init(name: &str) -> Daemon {
        Daemon::spawn_registered(name, &["--init"], 1)
    }

    /// A new cluster's first manager started with `extra` flags beside `--init`, once
    /// its API answers and it is registered.
    pub fn init_with(name: &str, extra: &[&str]) -> Daemon {
        Daemon::spawn_registered(name, &[&["--init"], extra].concat(), 1)
    }

    /// A manager joining `through`'s cluster, once it is registered.
    pub fn join(name: &str, through: &Daemon) -> Daemon {
        let token = block_on(through.client().join_tokens()).unwrap().manager;
        let nodes = block_on(through.client().nodes(ReadOptions { consistent: true })).unwrap().len();
        Daemon::spawn_registered(name, &["--join", &through.addr, "--token", &token], nodes + 1)
    }

    /// Spawns a daemon and waits until the cluster has `nodes` nodes. The ports
    /// [`free_addr`] picked may be taken by another test's process before the daemon
    /// binds them: a daemon that exits at start for that is started again on fresh ones.
    fn spawn_registered(name: &str, extra: &[&str], nodes: usize) -> Daemon {
        let mut attempts = 0;
        loop {
            let mut d = Daemon::spawn(name, extra);
            match d.registered(nodes) {
                Ok(()) => return d,
                Err(log) if attempts < 2 && log.contains("in use") => attempts += 1,
                Err(log) => panic!("{name} did not register: {log}"),
            }
        }
    }

    /// Waits until this daemon's API answers and the cluster has `nodes` nodes.
    pub fn wait_registered(&mut self, nodes: usize) {
        if let Err(log) = self.registered(nodes) {
            panic!("{} did not register: {log}", self.name);
        }
    }

    /// Whether the cluster came to have `nodes` nodes within a minute; if not (or the
    /// daemon exited first), why, with the daemon's log.
    fn registered(&mut self, nodes: usize) -> Result<(), String> {
        let client = self.client();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            if block_on(client.nodes(ReadOptions::default())).is_ok_and(|n| n.len() >= nodes) {
                return Ok(());
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                return Err(format!("the daemon exited ({status}):\n{}", self.log()));
            }
            if std::time::Instant::now() > deadline {
                return Err(format!("timed out after 60 s:\n{}", self.log()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A worker joining `through`'s cluster, once its node is ready.
    pub fn worker(name: &str, through: &Daemon) -> Daemon {
        Daemon::worker_with(name, through, &[])
    }

    /// A worker started with `extra` flags, joining `through`'s cluster, once its
    /// node is ready.
    pub fn worker_with(name: &str, through: &Daemon, extra: &[&str]) -> Daemon {
        let token = block_on(through.client().join_tokens()).unwrap().worker;
        let d = Daemon::spawn(name, &[&["--join", &through.addr, "--token", &token], extra].concat());
        let client = through.client();
        wait_for(&format!("worker {name} to be ready ({})", d.log()), Duration::from_secs(60), || {
            block_on(client.node(name)).is_ok_and(|n| n.status.state == shoal_api::node::NodeState::Ready)
        });
        d
    }

    /// Imports the test image (shoal/busybox) into this node's image store.
    pub fn import_busybox(&self) {
        self.node.ok(&["image", "import", super::busybox_layout().to_str().unwrap()]);
    }

    /// A client of its unix socket.
    pub fn client(&self) -> Client {
        Client::new(Endpoint::Unix(self.socket.clone())).unwrap()
    }

    /// The cluster's CA as this node keeps it.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("certs/ca.pem")
    }

    /// A client of its TCP listener (HTTPS, checked against the cluster's CA).
    pub fn tcp_client(&self, token: Option<&str>) -> Client {
        let roots = std::fs::read_to_string(self.ca_file()).unwrap();
        let creds = shoal_pki::Credentials::trusting(&roots).unwrap();
        self.tls_client(token, &creds)
    }

    /// A client of its TCP listener presenting `creds`' certificate, if any.
    pub fn tls_client(&self, token: Option<&str>, creds: &shoal_pki::Credentials) -> Client {
        let tls = creds.client_config(&[b"http/1.1"]).unwrap().as_ref().clone();
        let endpoint = Endpoint::Tcp { addr: self.api_addr.clone(), token: token.map(str::to_owned) };
        Client::with_tls(endpoint, Some(tls)).unwrap()
    }

    /// Runs `shoal ARGS` against this daemon's socket.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_shoal"))
            .args(args)
            .env("SHOAL_HOST", format!("unix://{}", self.socket.display()))
            .env_remove("SHOAL_TOKEN")
            .output()
            .unwrap()
    }

    /// Runs `shoal ARGS` with `input` on its standard input.
    pub fn cli_input(&self, args: &[&str], input: &str) -> Output {
        use std::io::Write as _;
        let mut child = Command::new(env!("CARGO_BIN_EXE_shoal"))
            .args(args)
            .env("SHOAL_HOST", format!("unix://{}", self.socket.display()))
            .env_remove("SHOAL_TOKEN")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    }

    /// Runs `shoal ARGS`, asserting success; returns standard output.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "shoal {args:?} failed:\n{stdout}\n{stderr}");
        stdout.into_owned()
    }

    /// Runs `shoal ARGS`, asserting failure; returns standard error.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            !out.status.success(),
            "shoal {args:?} should fail:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
        stderr
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("err")).unwrap_or_default()
    }

    /// Waits until the daemon exits by itself; returns its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let what = format!("{} to exit ({})", self.name, self.log());
        let child = self.child.as_mut()?;
        let mut status = None;
        wait_for(&what, timeout, || {
            status = child.try_wait().unwrap();
            status.is_some()
        });
        self.child = None;
        status.and_then(|s| s.code())
    }

    /// SIGTERM, then wait; returns the exit code.
    pub fn stop(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        let _ =
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::SIGTERM);
        child.wait().ok().and_then(|s| s.code())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
