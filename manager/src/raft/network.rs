//! Raft RPCs to other managers over tonic gRPC: openraft's messages travel as JSON in
//! the `payload` bytes of `shoal.raft` messages. One channel per peer, reused; a peer
//! that cannot be reached is `Unreachable`, so openraft backs off. Replication is
//! pipelined: AppendEntries requests go out on one stream without waiting for the
//! previous answer. The channel is the seam where mutual TLS goes.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use openraft::errors::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, StreamAppendResult, VoteRequest,
    VoteResponse,
};
use openraft::type_config::alias::{SnapshotOf, VoteOf};
use openraft::{BasicNode, OptionalSend, RaftNetworkV2};
use shoal_proto::raft as pb;
use tonic::transport::{Channel, Endpoint};

use super::types::TypeConfig;

type C = TypeConfig;

/// Bytes per snapshot chunk (under the 4 MiB gRPC message cap).
pub const SNAPSHOT_CHUNK: usize = 1 << 20;

/// A lazily connected channel to `addr` (`host:port`).
pub fn channel(addr: &str) -> Result<Channel, tonic::transport::Error> {
    Ok(Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(Duration::from_secs(2))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .connect_lazy())
}

/// Makes clients for peers, caching one channel per address.
#[derive(Debug, Clone)]
pub struct Network {
    me: u64,
    channels: Arc<Mutex<HashMap<String, Channel>>>,
}

impl Network {
    /// The network of manager `me`.
    pub fn new(me: u64) -> Network {
        Network { me, channels: Arc::default() }
    }

    fn channel(&self, addr: &str) -> Option<Channel> {
        let mut cache = self.channels.lock().expect("channel cache");
        if let Some(c) = cache.get(addr) {
            return Some(c.clone());
        }
        let c = channel(addr).ok()?;
        cache.insert(addr.to_owned(), c.clone());
        Some(c)
    }
}

/// The client for one peer.
#[derive(Debug, Clone)]
pub struct Client {
    me: u64,
    target: u64,
    addr: String,
    channel: Option<Channel>,
}

impl RaftNetworkFactory<C> for Network {
    type Network = Client;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> Client {
        Client { me: self.me, target, addr: node.addr.clone(), channel: self.channel(&node.addr) }
    }
}

fn unreachable(e: impl std::fmt::Display) -> RPCError<C> {
    RPCError::Unreachable(Unreachable::from_string(e.to_string()))
}

fn network(e: impl std::fmt::Display) -> RPCError<C> {
    RPCError::Network(NetworkError::from_string(e.to_string()))
}

/// A failed call: a peer that is down or slow is unreachable (openraft backs off).
fn status_error(s: tonic::Status) -> RPCError<C> {
    match s.code() {
        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => unreachable(&s),
        _ => network(&s),
    }
}

impl Client {
    fn client(&self) -> Result<pb::raft_client::RaftClient<Channel>, RPCError<C>> {
        let ch = self.channel.clone().ok_or_else(|| unreachable(format!("bad address {}", self.addr)))?;
        Ok(pb::raft_client::RaftClient::new(ch)
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20))
    }

    fn request<T: serde::Serialize>(&self, rpc: &T) -> Result<pb::RaftRequest, RPCError<C>> {
        Ok(pb::RaftRequest {
            target: self.target,
            from: self.me,
            payload: serde_json::to_vec(rpc).map_err(network)?,
        })
    }

    /// Turns a reply into openraft's response type.
    fn reply<T: for<'de> serde::Deserialize<'de>>(
        &self,
        reply: Result<tonic::Response<pb::RaftReply>, tonic::Status>,
    ) -> Result<T, RPCError<C>> {
        let reply = reply.map_err(status_error)?;
        match reply.into_inner().result {
            Some(pb::raft_reply::Result::Payload(p)) => serde_json::from_slice(&p).map_err(network),
            Some(pb::raft_reply::Result::RaftError(e)) => Err(network(String::from_utf8_lossy(&e))),
            Some(pb::raft_reply::Result::Refused(why)) => {
                Err(unreachable(format!("manager {} at {} refused: {why}", self.target, self.addr)))
            }
            None => Err(network("empty reply")),
        }
    }
}

impl RaftNetworkV2<C> for Client {
    type SnapshotData = Vec<u8>;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<C>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<C>, RPCError<C>> {
        let mut req = tonic::Request::new(self.request(&rpc)?);
        req.set_timeout(option.hard_ttl());
        let reply = self.client()?.append_entries(req).await;
        self.reply(reply)
    }

    fn stream_append<'s, S>(
        &'s mut self,
        input: S,
        option: RPCOption,
    ) -> BoxFuture<'s, Result<BoxStream<'s, Result<StreamAppendResult<C>, RPCError<C>>>, RPCError<C>>>
    where
        S: Stream<Item = AppendEntriesRequest<C>> + OptionalSend + Unpin + 'static,
    {
        let this = self.clone();
        Box::pin(async move {
            // Requests sent and not yet answered: while there are some, each answer must
            // come within the RPC timeout, or the peer counts as unreachable.
            let outstanding = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let sent = outstanding.clone();
            let (me, target) = (this.me, this.target);
            let requests = input
                .map(move |rpc| match serde_json::to_vec(&rpc) {
                    Ok(payload) => {
                        sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        Some(pb::RaftRequest { target, from: me, payload })
                    }
                    Err(e) => {
                        tracing::error!(target, error = %e, "cannot encode AppendEntries; the stream ends");
                        None
                    }
                })
                .take_while(|r| std::future::ready(r.is_some()))
                .filter_map(std::future::ready);
            let replies = this.client()?.stream_append(requests).await.map_err(status_error)?.into_inner();
            let ttl = option.hard_ttl();
            let answers = futures::stream::unfold(Some(replies), move |replies| {
                let (this, outstanding) = (this.clone(), outstanding.clone());
                async move {
                    let mut replies = replies?;
                    let next = if outstanding.load(std::sync::atomic::Ordering::Relaxed) > 0 {
                        match tokio::time::timeout(ttl, replies.next()).await {
                            Ok(next) => next,
                            Err(_) => {
                                let e = unreachable(format!(
                                    "no answer from manager {} within {ttl:?}",
                                    this.target
                                ));
                                return Some((Err(e), None));
                            }
                        }
                    } else {
                        replies.next().await
                    };
                    outstanding.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                    let answer = this.reply::<StreamAppendResult<C>>(next?.map(tonic::Response::new));
                    let go_on = answer.as_ref().is_ok_and(|r| r.is_ok());
                    Some((answer, go_on.then_some(replies)))
                }
            });
            Ok(answers.boxed())
        })
    }

    async fn vote(&mut self, rpc: VoteRequest<C>, option: RPCOption) -> Result<VoteResponse<C>, RPCError<C>> {
        let mut req = tonic::Request::new(self.request(&rpc)?);
        req.set_timeout(option.hard_ttl());
        let reply = self.client()?.vote(req).await;
        self.reply(reply)
    }

    async fn full_snapshot(
        &mut self,
        vote: VoteOf<C>,
        snapshot: SnapshotOf<C, Vec<u8>>,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<C>, StreamingError<C>> {
        let payload =
            serde_json::to_vec(&(vote, &snapshot.meta)).map_err(|e| StreamingError::from(network(e)))?;
        let mut chunks = vec![pb::SnapshotChunk {
            part: Some(pb::snapshot_chunk::Part::Meta(pb::SnapshotMeta {
                target: self.target,
                from: self.me,
                payload,
                total_bytes: snapshot.snapshot.len() as u64,
            })),
        }];
        chunks.extend(
            snapshot
                .snapshot
                .chunks(SNAPSHOT_CHUNK)
                .map(|c| pb::SnapshotChunk { part: Some(pb::snapshot_chunk::Part::Data(c.to_vec())) }),
        );
        let mut client = self.client()?;
        let send = client.install_snapshot(tokio_stream::iter(chunks));
        tokio::select! {
            reply = send => self.reply(reply).map_err(StreamingError::from),
            closed = cancel => Err(StreamingError::Closed(closed)),
        }
    }
}
