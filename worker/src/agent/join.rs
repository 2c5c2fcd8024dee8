//! Joining a cluster as a worker: the managers' CA is fetched and checked against
//! the join token's digest, then the token and a certificate signing request go to
//! a manager, which stores the node and answers with its certificate and the
//! managers' addresses.

use shoal_pki::enroll::{EnrollError, Enrolled, JoinRequest, enroll};

/// Why a join failed.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// The token is not the cluster's.
    #[error(
        "the join token is not valid for this cluster: get a current one with `shoal cluster join-token worker`"
    )]
    BadToken,
    /// Anything else: a wrong CA, a refusal, an unreachable manager.
    #[error(transparent)]
    Enroll(EnrollError),
}

/// Joins a cluster as a worker through the manager at `addr`: the node is stored
/// with `node_id`; returns its credentials and the managers' addresses.
pub async fn join(
    addr: &str,
    token: &str,
    node_id: &str,
    hostname: &str,
    advertise_addr: &str,
) -> Result<Enrolled, JoinError> {
    let req = JoinRequest {
        node_id: node_id.to_owned(),
        hostname: hostname.to_owned(),
        advertise_addr: advertise_addr.to_owned(),
        raft_id: 0,
    };
    enroll(addr, token, req).await.map_err(|e| match e {
        EnrollError::Refused { code: tonic::Code::Unauthenticated, .. } => JoinError::BadToken,
        e => JoinError::Enroll(e),
    })
}
