//! The Engine API's listeners: a unix socket (`--docker-socket`), and optionally
//! TCP as HTTPS under the cluster API's access rules (`--docker-addr`).

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::http::{Api, Listeners, ServeError};
use crate::server::Served;

/// Where the Engine API listens.
#[derive(Debug, Clone, Default)]
pub struct DockerOptions {
    /// A unix socket, mode 0660 as the cluster API's (`DOCKER_HOST=unix://PATH`).
    pub socket: Option<PathBuf>,
    /// A TCP address, served as HTTPS; callers need the cluster's API token or a
    /// client certificate from its CA.
    pub tcp: Option<SocketAddr>,
}

/// The running Engine API listeners.
#[derive(Debug)]
pub struct DockerServer {
    /// The unix socket served.
    pub socket: Option<PathBuf>,
    /// The TCP address bound (with the port picked, if 0 was asked).
    pub tcp: Option<SocketAddr>,
    listeners: Listeners,
}

impl DockerServer {
    /// Starts the listeners of `opts` on the manager `served`.
    pub async fn start(served: &Served, opts: &DockerOptions) -> Result<DockerServer, ServeError> {
        let api = Api::new(served.manager.clone(), served.dispatcher.clone(), None);
        let mut listeners = Listeners::default();
        if let Some(path) = &opts.socket {
            listeners.unix(path, super::app(api.clone(), false))?;
        }
        let mut tcp = None;
        if let Some(addr) = opts.tcp {
            tcp = Some(listeners.https(served, addr, super::app(api, true)).await?);
        }
        Ok(DockerServer { socket: opts.socket.clone(), tcp, listeners })
    }

    /// Stops the listeners and removes the socket file.
    pub async fn shutdown(self) {
        self.listeners.shutdown().await;
    }
}
