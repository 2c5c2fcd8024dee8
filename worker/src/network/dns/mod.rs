//! The embedded DNS resolver of this node's sandboxes: Docker's scheme (reference
//! networking.md §2.1) on hickory-server.
//!
//! Each sandbox gets its own hickory `Server` listening on `127.0.0.11:<random port>`
//! (UDP and TCP) inside the sandbox's network namespace; an nftables DNAT in that
//! namespace (another module's) sends `127.0.0.11:53` there, and the container's
//! resolv.conf ([`container_resolv_conf`]) names `127.0.0.11`. The sockets are bound by
//! a short-lived thread inside the namespace ([`netns`]) and served by the daemon's
//! runtime, so unknown names are forwarded from the daemon's own namespace, where the
//! host's nameservers are reachable.
//!
//! - [`table`]: the names of each sandbox and what one query gets from them (pure);
//! - [`server`]: the request handler of one sandbox;
//! - [`forward`]: forwarding to the upstreams;
//! - [`resolv`]: resolv.conf, the upstreams from the host's and the container's (pure);
//! - [`netns`]: binding inside a sandbox's namespace.
//!
//! A server's sockets keep the sandbox's namespace alive: [`Dns::stop`] it when the
//! sandbox goes.

mod forward;
mod netns;
mod resolv;
mod server;
mod table;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use hickory_server::server::Server;
use tracing::{debug, warn};

pub use resolv::{RESOLVER_IP, container_resolv_conf, upstreams_from_resolv_conf};
pub use table::{DnsTable, Lookup, NameAnswer, PTR_TTL, SandboxNames};

use forward::Forwarder;
use server::SandboxResolver;

/// How long a TCP client may stay idle between queries before its connection is
/// closed.
const TCP_IDLE: Duration = Duration::from_secs(10);

/// Replies queued per TCP connection.
const TCP_BUFFER: usize = 32;

/// Errors of the resolver; each says which sandbox and what to do.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// The namespace file could not be opened.
    #[error("open the sandbox's network namespace {path}: check that the sandbox still exists")]
    OpenNetns {
        /// The namespace file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// setns refused.
    #[error(
        "enter the sandbox's network namespace {path}: the daemon needs CAP_SYS_ADMIN, and the file must be a network namespace"
    )]
    EnterNetns {
        /// The namespace file.
        path: PathBuf,
        /// Why.
        source: nix::Error,
    },
    /// `lo` could not be brought up.
    #[error("bring up lo in the sandbox's network namespace {path}: the daemon needs CAP_NET_ADMIN")]
    LoopbackUp {
        /// The namespace file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A socket could not be bound on 127.0.0.11.
    #[error(
        "bind the resolver's {proto} socket on 127.0.0.11 in {path}: check that lo in the sandbox is up and holds 127.0.0.0/8"
    )]
    Bind {
        /// The namespace file.
        path: PathBuf,
        /// `UDP` or `TCP`.
        proto: &'static str,
        /// Why.
        source: io::Error,
    },
    /// No thread could be started to enter the namespace.
    #[error("start a thread to bind the resolver's sockets: the daemon is out of threads or memory")]
    Thread(#[source] io::Error),
    /// The binding thread ended without a word.
    #[error("the thread binding the resolver's sockets in {0} died; this is a bug, see the daemon's log")]
    ThreadLost(PathBuf),
    /// The runtime did not take the sockets.
    #[error(
        "register the resolver's sockets with the runtime: serve must be called from within the daemon's runtime"
    )]
    Register(#[source] io::Error),
}

/// How the resolvers forward.
#[derive(Debug, Clone)]
pub struct DnsConfig {
    /// Where unknown names go, in order. Empty: nothing is forwarded and unknown names
    /// get NXDOMAIN.
    pub upstreams: Vec<SocketAddr>,
    /// How long to wait for one upstream (Docker: 4 s).
    pub timeout: Duration,
    /// Forwards in flight at once per sandbox (Docker: 1024); more are REFUSED. Per
    /// sandbox, as in Docker, so that one busy container cannot starve the others.
    pub max_inflight: usize,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig { upstreams: Vec::new(), timeout: Duration::from_secs(4), max_inflight: 1024 }
    }
}

impl DnsConfig {
    /// Docker's settings with the upstreams of a resolv.conf text (the host's
    /// `/etc/resolv.conf` by default).
    pub fn from_resolv_conf(text: &str) -> DnsConfig {
        DnsConfig { upstreams: upstreams_from_resolv_conf(text), ..DnsConfig::default() }
    }

    /// Upstreams from a resolv.conf text: see [`upstreams_from_resolv_conf`].
    pub fn upstreams_from_resolv_conf(text: &str) -> Vec<SocketAddr> {
        upstreams_from_resolv_conf(text)
    }
}

/// One sandbox's running server.
struct Running {
    ports: (u16, u16),
    server: Server<SandboxResolver>,
}

/// The resolvers of this node's sandboxes.
pub struct Dns {
    table: DnsTable,
    cfg: DnsConfig,
    servers: Mutex<HashMap<String, Running>>,
}

impl fmt::Debug for Dns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dns").field("cfg", &self.cfg).field("running", &self.running()).finish()
    }
}

impl Dns {
    /// Resolvers answering from `table`, forwarding as `cfg` says.
    pub fn new(table: DnsTable, cfg: DnsConfig) -> Dns {
        Dns { table, cfg, servers: Mutex::new(HashMap::new()) }
    }

    /// Serves `task_id`'s sandbox: binds UDP and TCP on `127.0.0.11:0` inside the
    /// network namespace at `netns` (bringing its `lo` up first), and returns
    /// `(udp_port, tcp_port)`. A sandbox already served keeps its server and ports.
    /// Must be called within a tokio runtime, whose threads are in the namespace
    /// forwarded queries should leave from.
    pub async fn serve(&self, task_id: &str, netns: &Path) -> Result<(u16, u16), DnsError> {
        if let Some(running) = self.lock().get(task_id) {
            return Ok(running.ports);
        }
        let bound = netns::bind(netns).await?;
        let port = |a: io::Result<SocketAddr>| a.map(|a| a.port()).map_err(DnsError::Register);
        let ports = (port(bound.udp.local_addr())?, port(bound.tcp.local_addr())?);
        let resolver = SandboxResolver {
            task_id: task_id.into(),
            table: self.table.clone(),
            forwarder: Forwarder::new(self.cfg.upstreams.clone(), self.cfg.timeout, self.cfg.max_inflight),
        };
        let mut server = Server::new(resolver);
        server.register_socket(bound.udp);
        server.register_listener(bound.tcp, TCP_IDLE, TCP_BUFFER);

        let mut servers = self.lock();
        if let Some(running) = servers.get(task_id) {
            // Another call served it meanwhile: keep that one; dropping ours stops it.
            return Ok(running.ports);
        }
        servers.insert(task_id.to_owned(), Running { ports, server });
        debug!(task = task_id, udp = ports.0, tcp = ports.1, netns = %netns.display(), "resolver serving");
        Ok(ports)
    }

    /// Stops `task_id`'s server, if any, and closes its sockets.
    pub async fn stop(&self, task_id: &str) {
        let Some(mut running) = self.lock().remove(task_id) else {
            return;
        };
        if let Err(error) = running.server.shutdown_gracefully().await {
            warn!(task = task_id, %error, "resolver had failed before it was stopped");
        }
    }

    /// The task ids of the sandboxes served.
    pub fn running(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.lock().keys().cloned().collect();
        ids.sort();
        ids
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Running>> {
        // Every change is one insert or remove: a panic cannot leave it half-made.
        self.servers.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
