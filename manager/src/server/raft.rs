//! The server side of the managers' gRPC: Raft RPCs handed to openraft, proposals
//! forwarded by followers, and joins with a manager token.

use std::sync::Arc;

use futures::StreamExt;
use openraft::raft::{AppendEntriesRequest, VoteRequest};
use openraft::type_config::alias::{SnapshotMetaOf, SnapshotOf, VoteOf};
use shoal_proto::raft as pb;
use tonic::{Request, Response, Status};

use crate::manager::{Manager, Need};
use crate::raft::proposal::Proposal;
use crate::raft::{TypeConfig, codec};

type C = TypeConfig;

/// Serves `shoal.raft.Raft` and `shoal.raft.Membership` for one manager.
#[derive(Debug, Clone)]
pub struct RaftService {
    manager: Arc<Manager>,
}

impl RaftService {
    /// The service of `manager`.
    pub fn new(manager: Arc<Manager>) -> RaftService {
        RaftService { manager }
    }

    /// Refuses a caller whose certificate is not a current manager's of this
    /// cluster.
    fn manager_only<T>(&self, request: &Request<T>) -> Result<(), Status> {
        self.manager
            .authorize(shoal_pki::Peer::of(request), Need::Manager)
            .map(drop)
            .map_err(|e| e.to_status())
    }

    fn check_target(&self, target: u64) -> Option<pb::RaftReply> {
        (target != self.manager.id())
            .then(|| refused(format!("this is manager {}, not {target}", self.manager.id())))
    }
}

fn refused(why: String) -> pb::RaftReply {
    pb::RaftReply { result: Some(pb::raft_reply::Result::Refused(why)) }
}

/// openraft's answer as a reply: its payload, or the error Raft gave.
fn reply_of<T: serde::Serialize, E: std::fmt::Display>(r: Result<T, E>) -> Result<pb::RaftReply, Status> {
    let result = match r {
        Ok(v) => pb::raft_reply::Result::Payload(
            serde_json::to_vec(&v).map_err(|e| Status::internal(e.to_string()))?,
        ),
        Err(e) => pb::raft_reply::Result::RaftError(e.to_string().into_bytes()),
    };
    Ok(pb::RaftReply { result: Some(result) })
}

fn payload<T: serde::Serialize, E: std::fmt::Display>(
    r: Result<T, E>,
) -> Result<Response<pb::RaftReply>, Status> {
    reply_of(r).map(Response::new)
}

fn decode<T: for<'de> serde::Deserialize<'de>>(bytes: &[u8]) -> Result<T, Status> {
    serde_json::from_slice(bytes)
        .map_err(|e| Status::invalid_argument(format!("malformed Raft payload: {e}")))
}

/// An AppendEntries request in its binary form ([`codec`]), or as JSON from a manager
/// of an earlier version (which starts with `{`).
fn decode_append(bytes: &[u8]) -> Result<AppendEntriesRequest<C>, Status> {
    if bytes.first() == Some(&b'{') {
        return decode(bytes);
    }
    codec::decode_append(bytes).map_err(|e| Status::invalid_argument(format!("malformed Raft payload: {e}")))
}

#[tonic::async_trait]
impl pb::raft_server::Raft for RaftService {
    async fn append_entries(
        &self,
        request: Request<pb::RaftRequest>,
    ) -> Result<Response<pb::RaftReply>, Status> {
        self.manager_only(&request)?;
        let req = request.into_inner();
        if let Some(r) = self.check_target(req.target) {
            return Ok(Response::new(r));
        }
        let rpc = decode_append(&req.payload)?;
        payload(self.manager.raft().append_entries(rpc).await)
    }

    type StreamAppendStream = futures::stream::BoxStream<'static, Result<pb::RaftReply, Status>>;

    async fn stream_append(
        &self,
        request: Request<tonic::Streaming<pb::RaftRequest>>,
    ) -> Result<Response<Self::StreamAppendStream>, Status> {
        // Checked once per stream: a revoked manager's stream is ended by the leader
        // it no longer is (a removed manager leaves the membership).
        self.manager_only(&request)?;
        // Requests up to the first that cannot be read or is meant for another manager:
        // the stream ends there, and the leader starts a new one.
        let service = self.clone();
        let requests = tokio_stream::StreamExt::map_while(request.into_inner(), move |r| {
            let r = r.map_err(|e| tracing::warn!(error = %e, "replication stream broken off")).ok()?;
            if let Some(refused) = service.check_target(r.target) {
                tracing::warn!(?refused, "replication stream refused");
                return None;
            }
            decode_append(&r.payload)
                .map_err(|e| tracing::warn!(error = %e.message(), "replication stream ended"))
                .ok()
        });
        let replies = self.manager.raft().stream_append(requests).map(reply_of);
        Ok(Response::new(replies.boxed()))
    }

    async fn vote(&self, request: Request<pb::RaftRequest>) -> Result<Response<pb::RaftReply>, Status> {
        self.manager_only(&request)?;
        let req = request.into_inner();
        if let Some(r) = self.check_target(req.target) {
            return Ok(Response::new(r));
        }
        let rpc: VoteRequest<C> = decode(&req.payload)?;
        payload(self.manager.raft().vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        request: Request<tonic::Streaming<pb::SnapshotChunk>>,
    ) -> Result<Response<pb::RaftReply>, Status> {
        self.manager_only(&request)?;
        let mut stream = request.into_inner();
        let first =
            stream.next().await.ok_or_else(|| Status::invalid_argument("empty snapshot stream"))??;
        let Some(pb::snapshot_chunk::Part::Meta(meta)) = first.part else {
            return Err(Status::invalid_argument("a snapshot stream starts with its metadata"));
        };
        if let Some(r) = self.check_target(meta.target) {
            return Ok(Response::new(r));
        }
        let (vote, snap_meta): (VoteOf<C>, SnapshotMetaOf<C>) = decode(&meta.payload)?;
        let mut data = Vec::with_capacity(meta.total_bytes.min(1 << 30) as usize);
        while let Some(chunk) = stream.next().await {
            if let Some(pb::snapshot_chunk::Part::Data(d)) = chunk?.part {
                data.extend_from_slice(&d);
            }
        }
        if data.len() as u64 != meta.total_bytes {
            return Ok(Response::new(refused(format!(
                "snapshot truncated: {} of {} bytes arrived",
                data.len(),
                meta.total_bytes
            ))));
        }
        let snapshot = SnapshotOf::<C, Vec<u8>> { meta: snap_meta, snapshot: data };
        payload(self.manager.raft().install_full_snapshot(vote, snapshot).await)
    }

    async fn transfer_leader(
        &self,
        request: Request<pb::RaftRequest>,
    ) -> Result<Response<pb::RaftReply>, Status> {
        self.manager_only(&request)?;
        Err(Status::unimplemented("leadership transfer is not offered by this manager yet"))
    }

    async fn propose(
        &self,
        request: Request<pb::ProposeRequest>,
    ) -> Result<Response<pb::ProposeReply>, Status> {
        self.manager_only(&request)?;
        let result = match Proposal::checked(request.into_inner().transaction) {
            Ok(p) => self.manager.propose_encoded(p).await,
            Err(e) => Err(e.into()),
        };
        let result = match result {
            Ok(index) => pb::propose_reply::Result::Index(index),
            Err(e) => pb::propose_reply::Result::Error(e.to_pb()),
        };
        Ok(Response::new(pb::ProposeReply { result: Some(result) }))
    }

    async fn read_index(
        &self,
        request: Request<pb::ReadIndexRequest>,
    ) -> Result<Response<pb::ReadIndexReply>, Status> {
        self.manager_only(&request)?;
        let result = match self.manager.read_index_local().await {
            Ok(index) => pb::read_index_reply::Result::Index(index),
            Err(e) => pb::read_index_reply::Result::Error(e.to_pb()),
        };
        let reachable = self.manager.reachable_managers().into_iter().collect();
        Ok(Response::new(pb::ReadIndexReply { result: Some(result), reachable }))
    }
}

#[tonic::async_trait]
impl pb::membership_server::Membership for RaftService {
    async fn get_root_ca(
        &self,
        _request: Request<pb::GetRootCaRequest>,
    ) -> Result<Response<pb::GetRootCaReply>, Status> {
        let roots_pem = self.manager.roots_pem();
        if roots_pem.is_empty() {
            return Err(Status::unavailable("this manager has no cluster yet"));
        }
        Ok(Response::new(pb::GetRootCaReply { roots_pem }))
    }

    async fn issue_certificate(
        &self,
        request: Request<pb::IssueRequest>,
    ) -> Result<Response<pb::IssueReply>, Status> {
        let req = request.into_inner();
        self.manager.issue_certificate(req).await.map(Response::new).map_err(|e| e.to_status())
    }

    async fn renew_certificate(
        &self,
        request: Request<pb::RenewRequest>,
    ) -> Result<Response<pb::IssueReply>, Status> {
        let peer = shoal_pki::Peer::of(&request).cloned();
        let req = request.into_inner();
        self.manager.renew_certificate(peer.as_ref(), req).await.map(Response::new).map_err(|e| e.to_status())
    }

    async fn join(&self, request: Request<pb::JoinRequest>) -> Result<Response<pb::JoinReply>, Status> {
        let peer = shoal_pki::Peer::of(&request).cloned();
        let req = request.into_inner();
        self.manager.admit(peer.as_ref(), req).await.map(Response::new).map_err(|e| e.to_status())
    }

    async fn leave(&self, request: Request<pb::LeaveRequest>) -> Result<Response<pb::LeaveReply>, Status> {
        self.manager_only(&request)?;
        let req = request.into_inner();
        let result = if req.promote {
            self.manager.promote_manager(req.raft_id).await
        } else if req.learner {
            self.manager.remove_learner(req.raft_id).await
        } else if req.keep_as_learner {
            self.manager.demote_manager(req.raft_id, req.force).await
        } else {
            self.manager.remove_manager(req.raft_id, req.force).await
        };
        result.map_err(|e| e.to_status())?;
        Ok(Response::new(pb::LeaveReply {}))
    }
}
