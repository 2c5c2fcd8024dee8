//! Joining a cluster as a worker: one call to a manager's membership service, which
//! stores the node and answers with the managers' addresses.

use std::time::Duration;

use shoal_proto::raft as pb;

/// Why a join failed.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// The manager's address is not usable.
    #[error("{addr} is not a manager's address: give host:port of its cluster port")]
    BadAddress {
        /// The address given.
        addr: String,
        /// Why.
        #[source]
        source: tonic::transport::Error,
    },
    /// The token is not the cluster's.
    #[error(
        "the join token is not valid for this cluster: get a current one with `shoal cluster join-token worker`"
    )]
    BadToken,
    /// The manager could not be reached or refused the join.
    #[error("the manager at {addr} did not admit this node ({code:?}): {message}")]
    Refused {
        /// The manager.
        addr: String,
        /// The gRPC status code.
        code: tonic::Code,
        /// The manager's reason.
        message: String,
    },
}

/// Joins a cluster as a worker through the manager at `addr`: the node is stored
/// with `node_id`; returns the managers' addresses.
pub async fn join(
    addr: &str,
    token: &str,
    node_id: &str,
    hostname: &str,
    advertise_addr: &str,
) -> Result<Vec<String>, JoinError> {
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|source| JoinError::BadAddress { addr: addr.to_owned(), source })?
        .connect_timeout(Duration::from_secs(2))
        .tcp_nodelay(true);
    let mut client = pb::membership_client::MembershipClient::new(endpoint.connect_lazy());
    let req = pb::JoinRequest {
        token: token.to_owned(),
        node_id: node_id.to_owned(),
        hostname: hostname.to_owned(),
        advertise_addr: advertise_addr.to_owned(),
    };
    let reply = client.join(req).await.map_err(|s| match s.code() {
        tonic::Code::Unauthenticated => JoinError::BadToken,
        code => JoinError::Refused { addr: addr.to_owned(), code, message: s.message().to_owned() },
    })?;
    Ok(reply.into_inner().managers)
}
