//! gRPC clients to other managers (the leader, mostly), over mutual TLS with this
//! node's credentials: channels made lazily, and a failure to make one reported
//! against the address.

use shoal_pki::Credentials;
use shoal_proto::raft as pb;
use tonic::transport::Channel;

use super::error::ManagerError;
use crate::raft::network::channel;

/// A client of the `Raft` service of the manager at `addr`.
pub(crate) fn raft(
    creds: &Credentials,
    addr: &str,
) -> Result<pb::raft_client::RaftClient<Channel>, ManagerError> {
    Ok(pb::raft_client::RaftClient::new(channel(addr, creds)?))
}

/// A client of the `Dispatcher` service of the manager at `addr`.
pub(crate) fn dispatcher(
    creds: &Credentials,
    addr: &str,
) -> Result<shoal_proto::dispatcher::dispatcher_client::DispatcherClient<Channel>, ManagerError> {
    Ok(shoal_proto::dispatcher::dispatcher_client::DispatcherClient::new(channel(addr, creds)?))
}

/// A client of the `Membership` service of the manager at `addr`.
pub(crate) fn membership(
    creds: &Credentials,
    addr: &str,
) -> Result<pb::membership_client::MembershipClient<Channel>, ManagerError> {
    Ok(pb::membership_client::MembershipClient::new(channel(addr, creds)?))
}
