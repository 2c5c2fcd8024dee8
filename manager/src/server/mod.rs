//! A manager at work: its Raft node started, and the gRPC server that other managers
//! and the workers reach on its cluster address, with the Raft and membership
//! services, the dispatcher and the node monitor. Connections are accepted on the
//! manager's Raft thread; other managers' are served there, workers' on the shared
//! runtime. This is the one place that wires them together; each depends on
//! [`Manager`], never the reverse.
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

/// Connections a listener queues before it accepts them. Rust's std and tokio
/// listen with 128: a thousand workers reconnecting to a new leader that is busy for a
/// moment overflow that queue, and the dropped ones wait seconds to retry (measured
/// here: 871 overflows of 1,000 connects, the last accepted after 5.3 s; with 4,096,
/// all in 0.33 s). The kernel caps it at `net.core.somaxconn`.
const BACKLOG: u32 = 4096;

/// A listener on `addr` with a [`BACKLOG`]-deep accept queue.
fn listen(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket =
        if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    // As std's bind does: a restarted manager takes its port back at once.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// Starts a manager and serves it on `cfg.listen` until [`Manager::shutdown`]. The
/// cluster still has to be initialized ([`Manager::init`]) or joined.
pub async fn start(cfg: ManagerConfig) -> Result<Served, ManagerError> {
    let listener =
        listen(cfg.listen).map_err(|e| ManagerError::io(format!("listen on {}", cfg.listen), e))?;
    let bound = listener
        .local_addr()
        .map_err(|e| ManagerError::io(format!("read the address bound for {}", cfg.listen), e))?;
    let advertise = cfg.advertise.clone().unwrap_or_else(|| bound.to_string());
    // The server runs on the manager's Raft thread: its listener moves to that
    // thread's I/O driver.
    let listener =
        listener.into_std().map_err(|e| ManagerError::io(format!("hand over the listener on {bound}"), e))?;
    let manager = Manager::start(&cfg, advertise).await?;
    let listener = manager
        .raft_thread()
        .enter(|| tokio::net::TcpListener::from_std(listener))
        .map_err(|e| ManagerError::io(format!("hand over the listener on {bound}"), e))?;
    let dispatcher = Dispatcher::new(manager.clone());
    let service = RaftService::new(manager.clone());
    // Mutual TLS on every connection, with the node's credentials (read at each
    // handshake, so renewals and CA rotations need no restart). No Nagle on
    // accepted connections: a small reply held back for a delayed ACK costs ~40 ms.
    let tls = manager.credentials().server_config(&[b"h2"])?;
    let incoming = shoal_pki::transport::incoming(listener, tls);
    tokio::spawn(manager.clone().watch_ca_rotation());
    let router = || {
        tonic::transport::Server::builder()
            .add_service(
                pb::raft_server::RaftServer::new(service.clone())
                    .max_decoding_message_size(MAX_MESSAGE)
                    .max_encoding_message_size(MAX_MESSAGE),
            )
            .add_service(pb::membership_server::MembershipServer::new(service.clone()))
            .add_service(DispatcherServer::new(dispatcher.clone()))
    };
    // Connections are accepted on the Raft thread and sorted by who dialed: other
    // managers' (replication, votes, forwarded proposals) are served there, beside
    // Raft; workers' sessions on the shared runtime, where a thousand nodes' status
    // and assignments do not queue behind Raft or hold it up.
    let (to_raft, from_managers) = tokio::sync::mpsc::channel(CONNECTIONS_QUEUED);
    let (to_shared, from_others) = tokio::sync::mpsc::channel(CONNECTIONS_QUEUED);
    let thread = manager.raft_thread();
    manager.attach(thread.spawn(sort_connections(incoming, to_raft, to_shared)));
    manager.attach(thread.spawn(serve(router(), from_managers, false, manager.stopping())));
    let monitor = NodeMonitor::start(dispatcher.clone());
    let workers = serve(router(), from_others, true, manager.stopping());
    manager.attach(tokio::spawn(async move {
        // The monitor lives as long as the server.
        let _monitor = monitor;
        workers.await
    }));
    Ok(Served { manager, dispatcher })
}

/// Accepted connections waiting for their server.
const CONNECTIONS_QUEUED: usize = 1024;

/// Hands each accepted connection to the managers' server if its certificate names a
/// manager, else to the shared one. Ends when both servers have.
async fn sort_connections(
    mut incoming: shoal_pki::transport::Incoming,
    to_raft: Connections,
    to_shared: Connections,
) {
    use futures::StreamExt as _;
    while let Some(next) = incoming.next().await {
        let conn = match next {
            Ok(conn) => conn,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                continue;
            }
        };
        let manager = conn.peer().cert.as_ref().is_some_and(|c| c.subject.role == shoal_pki::Role::Manager);
        let to = if manager { &to_raft } else { &to_shared };
        if to.send(conn).await.is_err() && to_raft.is_closed() && to_shared.is_closed() {
            return;
        }
    }
}

type Connections = tokio::sync::mpsc::Sender<shoal_pki::transport::TlsConn>;

/// Serves `router` on the connections sorted to it until `stopping`. With `rebind`
/// (a server off the Raft thread, where they were accepted), each is first moved to
/// this runtime's I/O driver.
async fn serve(
    router: tonic::transport::server::Router,
    connections: tokio::sync::mpsc::Receiver<shoal_pki::transport::TlsConn>,
    rebind: bool,
    stopping: impl std::future::Future<Output = ()>,
) {
    use futures::StreamExt as _;
    let incoming =
        tokio_stream::wrappers::ReceiverStream::new(connections).filter_map(move |mut conn| async move {
            match if rebind { conn.rebind() } else { Ok(()) } {
                Ok(()) => Some(Ok::<_, std::io::Error>(conn)),
                Err(e) => {
                    tracing::warn!(peer = %conn.peer().addr, error = %e, "could not take over a connection");
                    None
                }
            }
        });
    if let Err(e) = router.serve_with_incoming_shutdown(incoming, stopping).await {
        tracing::error!(error = %e, "the manager's gRPC server stopped");
    }
}
