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

/// A client of the `Dispatcher` service of the manager at `addr`.
pub(crate) fn dispatcher(
    addr: &str,
) -> Result<shoal_proto::dispatcher::dispatcher_client::DispatcherClient<Channel>, ManagerError> {
    let channel = channel(addr).map_err(|e| ManagerError::rpc(addr, e))?;
    Ok(shoal_proto::dispatcher::dispatcher_client::DispatcherClient::new(channel))
}

/// A client of the `Membership` service of the manager at `addr`.
pub(crate) fn membership(
    addr: &str,
) -> Result<pb::membership_client::MembershipClient<Channel>, ManagerError> {
    Ok(pb::membership_client::MembershipClient::new(channel(addr).map_err(|e| ManagerError::rpc(addr, e))?))
}
