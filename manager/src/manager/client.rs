//! gRPC clients to other managers (the leader, mostly): channels made lazily, and
//! a failure to make one reported against the address.

use shoal_proto::raft as pb;
use tonic::transport::Channel;

use super::error::ManagerError;
use crate::raft::network::channel;

/// A client of the `Raft` service of the manager at `addr`.
pub(crate) fn raft(addr: &str) -> Result<pb::raft_client::RaftClient<Channel>, ManagerError> {
    Ok(pb::raft_client::RaftClient::new(channel(addr).map_err(|e| ManagerError::rpc(addr, e))?))
}

/// A client of the `Membership` service of the manager at `addr`.
pub(crate) fn membership(
    addr: &str,
) -> Result<pb::membership_client::MembershipClient<Channel>, ManagerError> {
    Ok(pb::membership_client::MembershipClient::new(channel(addr).map_err(|e| ManagerError::rpc(addr, e))?))
}

/// Joins a cluster as a worker through the manager at `addr`: the node is stored
/// with `node_id`; returns the managers' addresses.
pub async fn join_as_worker(
    addr: &str,
    token: &str,
    node_id: &str,
    hostname: &str,
    advertise_addr: &str,
) -> Result<Vec<String>, ManagerError> {
    let req = pb::JoinRequest {
        token: token.to_owned(),
        node_id: node_id.to_owned(),
        hostname: hostname.to_owned(),
        advertise_addr: advertise_addr.to_owned(),
    };
    let reply = membership(addr)?.join(req).await.map_err(|s| ManagerError::from_status(addr, s))?;
    Ok(reply.into_inner().managers)
}
