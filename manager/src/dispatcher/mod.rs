//! The dispatcher: workers' sessions with the leader. A worker registers (its node
//! becomes READY), heartbeats (a node silent for `heartbeat period × grace
//! multiplier` becomes DOWN and its tasks move), receives its assignments as a
//! complete set then increments, and reports task status in batches that become
//! one store transaction each. Only the leader serves; a follower answers with the
//! leader's address so the worker reconnects there.

pub mod assignments;
pub mod exec;
#[cfg(test)]
mod fuzz;
pub mod logs;
mod monitor;
pub mod netmap;
mod status;
pub mod wakes;

use std::collections::{BTreeMap, HashMap};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::Stream;
use shoal_api::node::{NodeDescription, NodeState};
use shoal_proto::dispatcher as pb;
use tonic::{Request, Response, Status};

use crate::manager::lead::Lead;
use crate::manager::{Manager, ManagerError, Need};
use crate::store::{Change, Kind, Object, Transaction};

pub use monitor::NodeMonitor;

/// One worker's session.
#[derive(Debug, Clone)]
struct Session {
    id: String,
    last_seen: Instant,
    /// The heartbeat period this worker was last told: after a change to a shorter
    /// one, its next heartbeat may still come after the old period.
    told: Duration,
}

/// The open sessions, by node and by session id (a heartbeat names only its
/// session: with 1,000 nodes, a scan per heartbeat adds up).
#[derive(Debug, Default)]
struct Sessions {
    by_node: HashMap<String, Session>,
    node_of: HashMap<String, String>,
}

impl Sessions {
    /// Opens `node`'s session, replacing the one it had.
    fn open(&mut self, node: &str, session: Session) {
        self.node_of.insert(session.id.clone(), node.to_owned());
        if let Some(old) = self.by_node.insert(node.to_owned(), session) {
            self.node_of.remove(&old.id);
        }
    }

    /// Forgets `node`'s session.
    fn close(&mut self, node: &str) {
        if let Some(old) = self.by_node.remove(node) {
            self.node_of.remove(&old.id);
        }
    }

    /// The session `id`'s node, marked heard from now.
    fn touch(&mut self, id: &str) -> Option<String> {
        let node = self.node_of.get(id)?;
        let s = self.by_node.get_mut(node)?;
        s.last_seen = Instant::now();
        Some(node.clone())
    }
}

/// The dispatcher of one manager (it serves while the manager leads).
#[derive(Debug, Clone)]
pub struct Dispatcher {
    manager: Arc<Manager>,
    sessions: Arc<Mutex<Sessions>>,
    /// Wakes session and assignment streams when their session is replaced.
    replaced: Arc<tokio::sync::Notify>,
    /// Log subscriptions to the nodes and their lines back.
    logs: Arc<logs::LogBroker>,
    /// Exec requests to the nodes and their streams back.
    execs: Arc<exec::ExecBroker>,
    /// Task status reports of all nodes, applied together.
    statuses: status::Batcher,
    /// Wakes each node's assignment stream when a change concerns it.
    wakes: Arc<wakes::Wakes>,
}

/// A stream of gRPC replies.
pub type Streamed<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

impl Dispatcher {
    /// The dispatcher of `manager`.
    pub fn new(manager: Arc<Manager>) -> Dispatcher {
        Dispatcher {
            manager,
            sessions: Default::default(),
            replaced: Default::default(),
            logs: Default::default(),
            execs: Default::default(),
            statuses: Default::default(),
            wakes: Default::default(),
        }
    }

    /// The heartbeat period and the grace multiplier, from the cluster settings.
    fn heartbeat(&self) -> (Duration, u32) {
        self.manager
            .cluster()
            .map(|c| (c.spec.dispatcher.heartbeat_period, c.spec.dispatcher.node_down_grace_multiplier))
            .unwrap_or((Duration::from_secs(5), 3))
    }

    /// Refuses unless this manager leads, naming the leader for the worker.
    fn require_leader(&self) -> Result<(), Status> {
        if self.manager.leads_with_full_state() {
            return Ok(());
        }
        Err(to_the_leader(self.manager.leader_addr().ok()))
    }

    /// Like [`Self::require_leader`] for a session's start, but a manager that does not
    /// lead holds the request (at most [`LEADER_WAIT`]) until a live leader is known,
    /// one the worker could reach ([`crate::manager::lead`]):
    /// during an election every worker waits here once, instead of retrying with
    /// backoff or being sent to a leader that is gone.
    async fn await_leader(&self, unreachable: &[String]) -> Result<(), Status> {
        if self.manager.leads_with_full_state() {
            return Ok(());
        }
        match self.manager.lead_for_sessions(LEADER_WAIT, unreachable).await {
            Lead::Here => Ok(()),
            Lead::There(addr) => Err(to_the_leader(Some(addr))),
            Lead::Unknown => Err(to_the_leader(None)),
        }
    }

    /// The node of a live session, or `Unauthenticated` (the worker registers
    /// again); the caller's certificate must name that node.
    fn session_node<T>(&self, request: &Request<T>, session_id: &str) -> Result<String, Status> {
        self.require_leader()?;
        let node = self
            .sessions
            .lock()
            .expect("sessions lock")
            .touch(session_id)
            .ok_or_else(|| Status::unauthenticated("unknown session: register again"))?;
        self.caller_is(request, Need::Node(node.clone()))?;
        Ok(node)
    }

    /// Refuses a caller whose certificate does not meet `need`.
    fn caller_is<T>(&self, request: &Request<T>, need: Need) -> Result<(), Status> {
        self.manager.authorize(shoal_pki::Peer::of(request), need).map(drop).map_err(|e| e.to_status())
    }

    /// What the session tells the node about its certificate: its role in the
    /// store, the trusted roots and the signing CA's subject.
    fn certificate_news(&self, node_id: &str) -> (String, String, String) {
        let role = self.manager.read(|s| match s.get(Kind::Node, node_id) {
            Some(Object::Node(n)) => match n.spec.role {
                shoal_api::node::NodeRole::Manager => "manager",
                shoal_api::node::NodeRole::Worker => "worker",
            },
            _ => "",
        });
        (role.to_owned(), self.manager.roots_pem(), self.manager.ca_subject())
    }

    fn session_alive(&self, node: &str, session_id: &str) -> bool {
        self.manager.is_leader()
            && self
                .sessions
                .lock()
                .expect("sessions lock")
                .by_node
                .get(node)
                .is_some_and(|s| s.id == session_id)
    }

    /// Streams the logs of `task_ids` from their nodes (on the leader). Without
    /// `follow`, the stream ends once every node has sent what it has.
    pub fn stream_logs(&self, task_ids: &[String], opts: logs::LogOptions) -> Streamed<pb::LogsReply> {
        let mut by_node: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut unplaced = Vec::new();
        self.manager.read(|s| {
            for id in task_ids {
                match s.get(Kind::Task, id) {
                    Some(Object::Task(t)) => match &t.node_id {
                        Some(n) => by_node.entry(n.clone()).or_default().push(id.clone()),
                        None => unplaced.push(id.clone()),
                    },
                    _ => unplaced.push(id.clone()),
                }
            }
        });
        let (mut sub, mut waiting) = self.logs.subscribe(by_node, opts);
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            for task_id in unplaced {
                let error = "the task never ran on a node: it has no logs".to_owned();
                if tx.send(Ok(pb::LogsReply { task_id, lines: Vec::new(), error })).await.is_err() {
                    return;
                }
            }
            if waiting == 0 && !opts.follow {
                // Errors for unconnected nodes may be queued already: pass them on.
                while let Ok(reply) = sub.lines.try_recv() {
                    let _ = tx.send(Ok(reply)).await;
                }
                return;
            }
            loop {
                tokio::select! {
                    reply = sub.lines.recv() => match reply {
                        None => return,
                        Some(r) if r.task_id.is_empty() => {
                            waiting = waiting.saturating_sub(1);
                            if waiting == 0 && !opts.follow {
                                return;
                            }
                        }
                        Some(r) => {
                            if tx.send(Ok(r)).await.is_err() {
                                return;
                            }
                        }
                    },
                    _ = tx.closed() => return,
                }
            }
        });
        Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
    }

    /// Streams tasks' logs: through this dispatcher when its manager leads, or from
    /// the leader's.
    pub async fn logs(
        &self,
        task_ids: Vec<String>,
        opts: logs::LogOptions,
    ) -> Result<Streamed<pb::LogsReply>, ManagerError> {
        if self.manager.is_leader() {
            return Ok(self.stream_logs(&task_ids, opts));
        }
        let leader = self.manager.leader_addr()?;
        let req = pb::LogsRequest {
            task_ids,
            follow: opts.follow,
            tail: opts.tail,
            since_unix_nanos: opts.since_unix_nanos,
        };
        let stream = crate::manager::client::dispatcher(self.manager.credentials(), &leader)?
            .logs(req)
            .await
            .map_err(|s| ManagerError::rpc(&leader, s))?
            .into_inner();
        Ok(Box::pin(stream))
    }

    /// Runs a command in a task's container (`task exec`): on the node running it,
    /// through this dispatcher when its manager leads, or through the leader's.
    /// Errors after the start (node gone, command not found) arrive as error frames.
    pub async fn exec(&self, open: pb::ExecOpen) -> Result<exec::ExecChannels, ManagerError> {
        if self.manager.is_leader() {
            return Ok(self.exec_here(open));
        }
        let leader = self.manager.leader_addr()?;
        let (in_tx, in_rx) = tokio::sync::mpsc::channel(64);
        let _ = in_tx.send(exec::frame(pb::exec_frame::Item::Open(open))).await;
        let mut stream = crate::manager::client::dispatcher(self.manager.credentials(), &leader)?
            .task_exec(tokio_stream::wrappers::ReceiverStream::new(in_rx))
            .await
            .map_err(|s| ManagerError::rpc(&leader, s))?
            .into_inner();
        let (out_tx, out_rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let next = tokio::select! {
                    next = stream.message() => next,
                    _ = out_tx.closed() => return,
                };
                let f = match next {
                    Ok(Some(f)) => f,
                    Ok(None) => exec::error("the leader ended the exec without an exit code"),
                    Err(s) => exec::error(format!("the exec through the leader broke: {}", s.message())),
                };
                let last = exec::is_last(&f);
                if out_tx.send(f).await.is_err() || last {
                    return;
                }
            }
        });
        Ok(exec::ExecChannels { input: in_tx, output: out_rx })
    }

    /// An exec on the leader: asks the task's node, then relays.
    fn exec_here(&self, mut open: pb::ExecOpen) -> exec::ExecChannels {
        let (in_tx, mut in_rx) = tokio::sync::mpsc::channel::<pb::ExecFrame>(64);
        let (out_tx, out_rx) = tokio::sync::mpsc::channel(64);
        let me = self.clone();
        tokio::spawn(async move {
            let node = me.manager.read(|s| match s.get(Kind::Task, &open.task_id) {
                Some(Object::Task(t)) => Ok(t.node_id.clone()),
                _ => Err(()),
            });
            let node = match node {
                Ok(Some(n)) => n,
                Ok(None) => {
                    let _ = out_tx.send(exec::error(format!("task {} is on no node", open.task_id))).await;
                    return;
                }
                Err(()) => {
                    let _ = out_tx.send(exec::error(format!("no task {}", open.task_id))).await;
                    return;
                }
            };
            open.exec_id = shoal_api::object::new_id();
            let exec::WorkerEnd { mut from_worker, to_worker } = match me.execs.open(&node, open).await {
                Ok(end) => end,
                Err(why) => {
                    let _ = out_tx.send(exec::error(why)).await;
                    return;
                }
            };
            let up = tokio::spawn(async move {
                while let Some(f) = in_rx.recv().await {
                    if to_worker.send(Ok(f)).await.is_err() {
                        return;
                    }
                }
            });
            loop {
                let next = tokio::select! {
                    next = from_worker.message() => next,
                    // The client went away: dropping the node's stream hangs up.
                    _ = out_tx.closed() => break,
                };
                let f = match next {
                    Ok(Some(f)) => f,
                    Ok(None) => exec::error(format!("node {node} ended the exec without an exit code")),
                    Err(s) => exec::error(format!("the exec stream from node {node} broke: {}", s.message())),
                };
                let last = exec::is_last(&f);
                if out_tx.send(f).await.is_err() || last {
                    break;
                }
            }
            up.abort();
        });
        exec::ExecChannels { input: in_tx, output: out_rx }
    }

    /// The workers' sessions open now (for `/metrics`).
    pub fn sessions(&self) -> usize {
        self.sessions.lock().expect("sessions lock").by_node.len()
    }

    /// When each node was last heard from, and the period it was last told (for the
    /// monitor).
    fn last_seen(&self) -> HashMap<String, (Instant, Duration)> {
        let sessions = self.sessions.lock().expect("sessions lock");
        sessions.by_node.iter().map(|(n, s)| (n.clone(), (s.last_seen, s.told))).collect()
    }

    /// Marks a registering node ready with its description, if it is not already.
    async fn mark_ready(
        &self,
        node_id: &str,
        description: NodeDescription,
        addr: &str,
    ) -> Result<(), Status> {
        for _ in 0..5 {
            let node = match self.manager.read(|s| s.get(Kind::Node, node_id).cloned()) {
                Some(Object::Node(n)) => n,
                _ => {
                    return Err(Status::not_found(format!(
                        "node {node_id} is not part of the cluster: join it with a token first"
                    )));
                }
            };
            let mut new = node.clone();
            new.status.state = NodeState::Ready;
            new.status.message = String::new();
            if let Ok(ip) = addr.parse() {
                new.status.addr = ip;
            }
            new.description = description.clone();
            if new == node {
                return Ok(());
            }
            new.meta.updated_at = chrono::Utc::now();
            let change = Change::Update { object: Object::Node(new), expected_version: node.meta.version };
            match self.manager.propose(Transaction { changes: vec![change] }).await {
                Ok(_) => return Ok(()),
                Err(ManagerError::Store(crate::store::StoreError::Conflict { .. })) => {
                    continue;
                }
                Err(e) => return Err(Status::unavailable(shoal_api::report::chain(&e))),
            }
        }
        Err(Status::aborted("the node kept changing; register again"))
    }
}

/// How long a manager that does not lead holds a session request for a leader.
const LEADER_WAIT: Duration = Duration::from_secs(5);

/// The refusal of a manager that does not lead, naming the leader if known.
fn to_the_leader(addr: Option<String>) -> Status {
    let mut status = Status::unavailable("this manager does not lead: talk to the leader");
    if let Some(v) = addr.and_then(|a| a.parse().ok()) {
        status.metadata_mut().insert(shoal_proto::LEADER_KEY, v);
    }
    status
}

#[tonic::async_trait]
impl pb::dispatcher_server::Dispatcher for Dispatcher {
    type SessionStream = Streamed<pb::SessionMessage>;
    type AssignmentsStream = Streamed<pb::AssignmentsMessage>;
    type ListenLogSubscriptionsStream = Streamed<pb::LogSubscription>;
    type LogsStream = Streamed<pb::LogsReply>;
    type ListenExecsStream = Streamed<pb::ExecOpen>;
    type ExecStream = Streamed<pb::ExecFrame>;
    type TaskExecStream = Streamed<pb::ExecFrame>;

    async fn session(
        &self,
        request: Request<pb::SessionRequest>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        self.await_leader(&request.get_ref().unreachable).await?;
        let req = request.get_ref();
        self.caller_is(&request, Need::Node(req.node_id.clone()))?;
        let req = request.into_inner();
        let description: NodeDescription = serde_json::from_slice(&req.description_json)
            .map_err(|e| Status::invalid_argument(format!("malformed node description: {e}")))?;
        self.mark_ready(&req.node_id, description, &req.addr).await?;
        let session_id = shoal_api::object::new_id();
        let (period, _) = self.heartbeat();
        let session = Session { id: session_id.clone(), last_seen: Instant::now(), told: period };
        self.sessions.lock().expect("sessions lock").open(&req.node_id, session);
        self.replaced.notify_waiters();
        tracing::info!(node = %req.node_id, session = %session_id, "worker session opened");
        let managers: Vec<String> = {
            let mut m: Vec<String> = self.manager.managers().into_values().collect();
            let leader = self.manager.addr().to_owned();
            m.retain(|a| a != &leader);
            m.insert(0, leader);
            m
        };
        let (role, roots_pem, ca_subject) = self.certificate_news(&req.node_id);
        let first = pb::SessionMessage {
            session_id: session_id.clone(),
            node_id: req.node_id.clone(),
            managers,
            heartbeat_period_ms: period.as_millis() as u64,
            role,
            roots_pem,
            ca_subject,
        };
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let _ = tx.send(Ok(first.clone())).await;
        let me = self.clone();
        let node = req.node_id;
        tokio::spawn(async move {
            // The stream lives as long as the session: it ends when the session is
            // replaced, the leader steps down, or the worker goes away. It tells the
            // node again when its role or the cluster's CA changes.
            let mut leadership = me.manager.leadership();
            let mut told = first;
            while me.session_alive(&node, &session_id) {
                let (role, roots_pem, ca_subject) = me.certificate_news(&node);
                if (&role, &roots_pem, &ca_subject) != (&told.role, &told.roots_pem, &told.ca_subject) {
                    told = pb::SessionMessage { role, roots_pem, ca_subject, ..told };
                    if tx.send(Ok(told.clone())).await.is_err() {
                        return;
                    }
                }
                tokio::select! {
                    _ = me.replaced.notified() => {}
                    _ = leadership.changed() => {}
                    _ = tx.closed() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }

    async fn heartbeat(
        &self,
        request: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatReply>, Status> {
        let node = self.session_node(&request, &request.get_ref().session_id)?;
        self.manager.instruments().heartbeats.inc();
        let (period, _) = self.heartbeat();
        // ±10 % jitter, as Swarm: heartbeats of many nodes do not line up.
        let next = period.mul_f64(rand::random_range(0.9..1.1));
        if let Some(s) = self.sessions.lock().expect("sessions lock").by_node.get_mut(&node) {
            s.told = next;
        }
        Ok(Response::new(pb::HeartbeatReply { period_ms: next.as_millis() as u64 }))
    }

    async fn assignments(
        &self,
        request: Request<pb::AssignmentsRequest>,
    ) -> Result<Response<Self::AssignmentsStream>, Status> {
        let node = self.session_node(&request, &request.get_ref().session_id)?;
        let session_id = request.into_inner().session_id;
        let manager = Arc::clone(&self.manager);
        let users =
            move |kind, id: &str, name: &str| manager.read(|s| assignments::payload_users(s, kind, id, name));
        self.wakes
            .start(
                || {
                    let from = self.manager.read(|s| s.last_index());
                    self.manager.watch(from).map(|(_, live)| live)
                },
                users,
            )
            .map_err(|e| Status::unavailable(format!("cannot watch the store: {e}")))?;
        // Subscribed before the first read: a change after it wakes the stream.
        let mut wake = self.wakes.subscribe(&node);
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let me = self.clone();
        tokio::spawn(async move {
            let mut sent: BTreeMap<String, String> = BTreeMap::new();
            let mut generation = 0u64;
            let now = me.manager.read(|s| assignments::for_node(s, &node));
            let changes = assignments::diff(&mut sent, &now);
            generation += 1;
            let first = pb::AssignmentsMessage {
                kind: pb::assignments_message::Kind::Complete as i32,
                applies_to: 0,
                results_in: generation,
                changes,
            };
            if tx.send(Ok(first)).await.is_err() {
                return;
            }
            let mut leadership = me.manager.leadership();
            let mut last_sent = tokio::time::Instant::now();
            while me.session_alive(&node, &session_id) {
                tokio::select! {
                    woken = wake.changed() => {
                        if woken.is_err() {
                            return;
                        }
                        // The first change after a quiet spell goes out at once (a
                        // load balancer waits on it); a burst gathers into one
                        // message per 20 ms.
                        tokio::time::sleep_until(last_sent + Duration::from_millis(20)).await;
                        wake.borrow_and_update();
                    }
                    _ = leadership.changed() => continue,
                    _ = me.replaced.notified() => continue,
                    _ = tx.closed() => return,
                    // Only to see the session still holds: every change wakes.
                    _ = tokio::time::sleep(Duration::from_secs(5)) => continue,
                }
                let now = me.manager.read(|s| assignments::for_node(s, &node));
                let changes = assignments::diff(&mut sent, &now);
                last_sent = tokio::time::Instant::now();
                if changes.is_empty() {
                    continue;
                }
                let msg = pb::AssignmentsMessage {
                    kind: pb::assignments_message::Kind::Incremental as i32,
                    applies_to: generation,
                    results_in: generation + 1,
                    changes,
                };
                generation += 1;
                if tx.send(Ok(msg)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }

    async fn update_task_status(
        &self,
        request: Request<pb::UpdateTaskStatusRequest>,
    ) -> Result<Response<pb::UpdateTaskStatusReply>, Status> {
        let node = self.session_node(&request, &request.get_ref().session_id)?;
        let req = request.into_inner();
        self.statuses.apply(&self.manager, &node, &req.updates).await?;
        Ok(Response::new(pb::UpdateTaskStatusReply {}))
    }

    async fn listen_log_subscriptions(
        &self,
        request: Request<pb::ListenLogSubscriptionsRequest>,
    ) -> Result<Response<Self::ListenLogSubscriptionsStream>, Status> {
        let node = self.session_node(&request, &request.get_ref().session_id)?;
        let rx = self.logs.listen(&node);
        let stream = tokio_stream::StreamExt::map(tokio_stream::wrappers::ReceiverStream::new(rx), Ok);
        Ok(Response::new(Box::pin(stream)))
    }

    async fn publish_logs(
        &self,
        request: Request<tonic::Streaming<pb::PublishLogsMessage>>,
    ) -> Result<Response<pb::PublishLogsReply>, Status> {
        self.caller_is(&request, Need::AnyNode)?;
        let mut stream = request.into_inner();
        while let Some(msg) = stream.message().await? {
            self.logs.publish(msg).await;
        }
        Ok(Response::new(pb::PublishLogsReply {}))
    }

    async fn logs(&self, request: Request<pb::LogsRequest>) -> Result<Response<Self::LogsStream>, Status> {
        self.require_leader()?;
        self.caller_is(&request, Need::Manager)?;
        let req = request.into_inner();
        let opts =
            logs::LogOptions { follow: req.follow, tail: req.tail, since_unix_nanos: req.since_unix_nanos };
        Ok(Response::new(self.stream_logs(&req.task_ids, opts)))
    }

    async fn listen_execs(
        &self,
        request: Request<pb::ListenExecsRequest>,
    ) -> Result<Response<Self::ListenExecsStream>, Status> {
        let node = self.session_node(&request, &request.get_ref().session_id)?;
        let rx = self.execs.listen(&node);
        let stream = tokio_stream::StreamExt::map(tokio_stream::wrappers::ReceiverStream::new(rx), Ok);
        Ok(Response::new(Box::pin(stream)))
    }

    async fn exec(
        &self,
        mut request: Request<tonic::Streaming<pb::ExecFrame>>,
    ) -> Result<Response<Self::ExecStream>, Status> {
        self.require_leader()?;
        let first = request
            .get_mut()
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("an exec stream starts with its exec id"))?;
        let node = self
            .execs
            .node_of(&first.exec_id)
            .ok_or_else(|| Status::not_found(format!("no exec {} is waiting for its node", first.exec_id)))?;
        self.caller_is(&request, Need::Node(node))?;
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let end = exec::WorkerEnd { from_worker: request.into_inner(), to_worker: tx };
        self.execs.arrive(&first.exec_id, end)?;
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }

    async fn task_exec(
        &self,
        mut request: Request<tonic::Streaming<pb::ExecFrame>>,
    ) -> Result<Response<Self::TaskExecStream>, Status> {
        self.require_leader()?;
        self.caller_is(&request, Need::Manager)?;
        let open = match request.get_mut().message().await?.and_then(|f| f.item) {
            Some(pb::exec_frame::Item::Open(open)) => open,
            _ => return Err(Status::invalid_argument("a task exec starts with its open frame")),
        };
        let mut incoming = request.into_inner();
        let mut channels = self.exec_here(open);
        let input = channels.input;
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            let mut incoming_open = true;
            loop {
                tokio::select! {
                    f = incoming.message(), if incoming_open => match f {
                        Ok(Some(f)) => {
                            let _ = input.send(f).await;
                        }
                        _ => incoming_open = false,
                    },
                    f = channels.output.recv() => match f {
                        Some(f) => {
                            let last = exec::is_last(&f);
                            if tx.send(Ok(f)).await.is_err() || last {
                                return;
                            }
                        }
                        None => return,
                    },
                    // The forwarding manager went away: dropping the output hangs up.
                    _ = tx.closed() => return,
                }
            }
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }
}
