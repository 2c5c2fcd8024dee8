//! A manager at work: its Raft node started, and the gRPC server that other managers
//! and the workers reach on its cluster address, with the Raft and membership
//! services, the dispatcher and the node monitor. This is the one place that wires
//! them together; each depends on [`Manager`], never the reverse.
//!
//! - [`raft`]: the `Raft` and `Membership` gRPC services, handed to the manager.

pub mod raft;

use std::sync::Arc;

use shoal_proto::dispatcher::dispatcher_server::DispatcherServer;
use shoal_proto::raft as pb;

use self::raft::RaftService;

use crate::dispatcher::{Dispatcher, NodeMonitor};
use crate::manager::{Manager, ManagerConfig, ManagerError};
use crate::raft::network::MAX_MESSAGE;

/// A started manager and the dispatcher serving its workers.
#[derive(Debug, Clone)]
pub struct Served {
    /// The manager.
    pub manager: Arc<Manager>,
    /// Its dispatcher (answers while the manager leads).
    pub dispatcher: Dispatcher,
}

/// Starts a manager and serves it on `cfg.listen` until [`Manager::shutdown`]. The
/// cluster still has to be initialized ([`Manager::init`]) or joined.
pub async fn start(cfg: ManagerConfig) -> Result<Served, ManagerError> {
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|e| ManagerError::io(format!("listen on {}", cfg.listen), e))?;
    let bound = listener
        .local_addr()
        .map_err(|e| ManagerError::io(format!("read the address bound for {}", cfg.listen), e))?;
    let advertise = cfg.advertise.clone().unwrap_or_else(|| bound.to_string());
    let manager = Manager::start(&cfg, advertise).await?;
    let dispatcher = Dispatcher::new(manager.clone());
    let service = RaftService::new(manager.clone());
    // Mutual TLS on every connection, with the node's credentials (read at each
    // handshake, so renewals and CA rotations need no restart). No Nagle on
    // accepted connections: a small reply held back for a delayed ACK costs ~40 ms.
    let tls = manager.credentials().server_config(&[b"h2"])?;
    let incoming = shoal_pki::transport::incoming(listener, tls);
    tokio::spawn(manager.clone().watch_ca_rotation());
    let router = tonic::transport::Server::builder()
        .add_service(
            pb::raft_server::RaftServer::new(service.clone())
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
        )
        .add_service(pb::membership_server::MembershipServer::new(service))
        .add_service(DispatcherServer::new(dispatcher.clone()));
    let stopping = manager.stopping();
    let monitor = NodeMonitor::start(dispatcher.clone());
    manager.attach(tokio::spawn(async move {
        // The monitor lives as long as the server.
        let _monitor = monitor;
        if let Err(e) = router.serve_with_incoming_shutdown(incoming, stopping).await {
            tracing::error!(error = %e, "the manager's gRPC server stopped");
        }
    }));
    Ok(Served { manager, dispatcher })
}
