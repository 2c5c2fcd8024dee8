//! The worker agent: keeps a session with the leader's dispatcher, runs the tasks
//! assigned to this node through the [`executor`], and reports their status. Tasks
//! keep running while the agent is disconnected; on reconnection the manager's
//! complete list of assignments replaces what the agent had.
//!
//! - [`plan`]: what to do about one task (pure);
//! - [`executor`]: containers, images and task files;
//! - this module: the session (registration, heartbeats, assignments, reports) and
//!   the reconcile loop.

pub mod executor;
pub mod plan;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use shoal_api::node::NodeDescription;
use shoal_api::{Task, TaskState, TaskStatus};
use shoal_proto::dispatcher as pb;
use shoal_proto::dispatcher::dispatcher_client::DispatcherClient;
use tokio::sync::Notify;

pub use executor::{Executor, PullPolicy};
use executor::{Payload, Payloads};
use plan::{Action, Local, plan};

/// The metadata key under which a follower names the leader (the dispatcher's).
const LEADER_KEY: &str = "shoal-leader";

/// What the agent needs to know about its node.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The node's id in the cluster.
    pub node_id: String,
    /// Managers to reach (`host:port` of their cluster port), tried in order.
    pub managers: Vec<String>,
    /// The address the node advertises.
    pub addr: String,
    /// What the node is.
    pub description: NodeDescription,
}

/// State shared by the session and the reconcile loop.
#[derive(Debug, Default)]
struct Shared {
    /// Tasks assigned to this node, by id.
    tasks: Mutex<BTreeMap<String, Task>>,
    /// Secrets and configs for them.
    payloads: Mutex<Payloads>,
    /// Whether a complete list has arrived since the agent started (before that,
    /// containers without an assignment are not touched).
    synced: Mutex<bool>,
    /// The furthest state reported (or queued) per task.
    reported: Mutex<HashMap<String, TaskState>>,
    /// Reports not yet accepted by a manager, by task.
    outbox: Mutex<BTreeMap<String, TaskStatus>>,
    /// Tasks an action is under way for.
    busy: Mutex<HashSet<String>>,
    /// Tasks whose health is being watched.
    watched: Mutex<HashSet<String>>,
    /// Wakes the reconcile loop.
    wake: Notify,
    /// Wakes the session to send reports.
    report: Notify,
    /// Bounds the container starts under way at once.
    starts: StartSlots,
}

/// Container starts under way at once: two per core. Each start is mostly kernel
/// work that serializes (mounts, namespaces, inode allocation); two per core keep
/// the cores busy, and more only slow every start down, the status reports and the
/// manager with them (measured with 100 replicas: 4 and 8 at once start them in
/// about 1.0 s on 2 cores, 32 in 1.3 s, no bound in 1.1 to 1.5 s).
#[derive(Debug)]
struct StartSlots(tokio::sync::Semaphore);

impl Default for StartSlots {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        StartSlots(tokio::sync::Semaphore::new(2 * cores))
    }
}

impl Shared {
    fn queue(&self, task_id: &str, status: TaskStatus) {
        let mut reported = self.reported.lock().expect("reported lock");
        let before = reported.get(task_id).copied();
        if before.is_some_and(|s| s >= status.state && status.state != TaskState::Running) {
            return;
        }
        reported.insert(task_id.to_owned(), status.state.max(before.unwrap_or(status.state)));
        self.outbox.lock().expect("outbox lock").insert(task_id.to_owned(), status);
        self.report.notify_one();
    }
}

/// A running agent.
#[derive(Debug)]
pub struct Agent {
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Agent {
    /// Starts the agent: the session with the managers and the reconcile loop.
    pub fn start(cfg: AgentConfig, executor: Executor) -> Agent {
        let shared = Arc::new(Shared::default());
        let executor = Arc::new(executor);
        let session = tokio::spawn(sessions(cfg, shared.clone(), executor.clone()));
        let reconcile = tokio::spawn(reconcile_loop(executor, shared));
        Agent { tasks: vec![session, reconcile] }
    }

    /// Stops the agent; the containers keep running.
    pub async fn stop(self) {
        for t in self.tasks {
            t.abort();
            let _ = t.await;
        }
    }
}

/// Why a session ended.
#[derive(Debug)]
enum Ended {
    /// Talk to this manager instead.
    Redirect(String),
    /// The session broke; try again later.
    Broken(String),
    /// The managers now known.
    Closed(Vec<String>),
}

async fn sessions(cfg: AgentConfig, shared: Arc<Shared>, executor: Arc<Executor>) {
    let mut managers = cfg.managers.clone();
    let mut backoff = Duration::from_millis(100);
    let mut next: Option<String> = None;
    loop {
        let candidates: Vec<String> = next.take().into_iter().chain(managers.iter().cloned()).collect();
        for addr in candidates {
            match session(&cfg, &addr, &shared, &executor).await {
                Ended::Redirect(leader) => {
                    tracing::debug!(manager = %addr, leader = %leader, "redirected to the leader");
                    next = Some(leader);
                    backoff = Duration::from_millis(100);
                    break;
                }
                Ended::Closed(known) => {
                    if !known.is_empty() {
                        managers = known;
                    }
                    backoff = Duration::from_millis(100);
                    break;
                }
                Ended::Broken(why) => {
                    tracing::debug!(manager = %addr, error = %why, "no session with this manager");
                }
            }
        }
        if next.is_none() {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(8));
        }
    }
}

fn ended(status: tonic::Status) -> Ended {
    match status.metadata().get(LEADER_KEY).and_then(|v| v.to_str().ok()) {
        Some(leader) => Ended::Redirect(leader.to_owned()),
        None => Ended::Broken(status.message().to_owned()),
    }
}

/// One session with the manager at `addr`, until it breaks.
async fn session(cfg: &AgentConfig, addr: &str, shared: &Shared, executor: &Arc<Executor>) -> Ended {
    let endpoint = match tonic::transport::Endpoint::from_shared(format!("http://{addr}")) {
        Ok(e) => e.connect_timeout(Duration::from_secs(5)).tcp_nodelay(true),
        Err(e) => return Ended::Broken(e.to_string()),
    };
    let channel = match endpoint.connect().await {
        Ok(c) => c,
        Err(e) => return Ended::Broken(e.to_string()),
    };
    let mut client = DispatcherClient::new(channel);
    let request = pb::SessionRequest {
        node_id: cfg.node_id.clone(),
        description_json: serde_json::to_vec(&cfg.description).expect("descriptions serialize"),
        addr: cfg.addr.clone(),
    };
    let mut stream = match client.session(request).await {
        Ok(s) => s.into_inner(),
        Err(s) => return ended(s),
    };
    let first = match stream.message().await {
        Ok(Some(m)) => m,
        Ok(None) => return Ended::Broken("the session ended at once".into()),
        Err(s) => return ended(s),
    };
    let session_id = first.session_id.clone();
    let mut period = Duration::from_millis(first.heartbeat_period_ms.max(100));
    tracing::info!(manager = %addr, session = %session_id, node = %cfg.node_id, "session with the dispatcher");
    let mut assignments =
        match client.assignments(pb::AssignmentsRequest { session_id: session_id.clone() }).await {
            Ok(s) => s.into_inner(),
            Err(s) => return ended(s),
        };
    let mut subscriptions = match client
        .listen_log_subscriptions(pb::ListenLogSubscriptionsRequest { session_id: session_id.clone() })
        .await
    {
        Ok(s) => s.into_inner(),
        Err(s) => return ended(s),
    };
    // Publishers of the open log subscriptions, by id; aborted when the session ends.
    let mut publishers = Publishers::default();
    let mut heartbeat = tokio::time::interval(period);
    heartbeat.reset();
    loop {
        tokio::select! {
            m = stream.message() => match m {
                Ok(Some(_)) => {}
                Ok(None) => return Ended::Closed(first.managers.clone()),
                Err(s) => return ended(s),
            },
            sub = subscriptions.message() => match sub {
                Ok(Some(sub)) => {
                    publishers.0.retain(|_, h| !h.is_finished());
                    if sub.close {
                        if let Some(h) = publishers.0.remove(&sub.subscription_id) {
                            h.abort();
                        }
                    } else {
                        let id = sub.subscription_id.clone();
                        let h = tokio::spawn(publish_logs(client.clone(), executor.clone(), sub));
                        publishers.0.insert(id, h.abort_handle());
                    }
                }
                Ok(None) => return Ended::Closed(first.managers.clone()),
                Err(s) => return ended(s),
            },
            a = assignments.message() => match a {
                Ok(Some(msg)) => apply_assignments(shared, msg),
                Ok(None) => return Ended::Closed(first.managers.clone()),
                Err(s) => return ended(s),
            },
            _ = heartbeat.tick() => {
                match client.heartbeat(pb::HeartbeatRequest { session_id: session_id.clone() }).await {
                    Ok(r) => {
                        let p = Duration::from_millis(r.into_inner().period_ms.max(100));
                        if p != period {
                            period = p;
                            heartbeat = tokio::time::interval(period);
                            heartbeat.reset();
                        }
                    }
                    Err(s) => return ended(s),
                }
            }
            _ = shared.report.notified() => {
                // Let a burst of reports gather into one batch.
                tokio::time::sleep(Duration::from_millis(20)).await;
                let batch = std::mem::take(&mut *shared.outbox.lock().expect("outbox lock"));
                if batch.is_empty() {
                    continue;
                }
                let updates = batch
                    .iter()
                    .map(|(id, s)| pb::TaskStatusUpdate {
                        task_id: id.clone(),
                        status_json: serde_json::to_vec(s).expect("statuses serialize"),
                    })
                    .collect();
                let req = pb::UpdateTaskStatusRequest { session_id: session_id.clone(), updates };
                let sent = std::time::Instant::now();
                let result = client.update_task_status(req).await;
                tracing::debug!(statuses = batch.len(), took = ?sent.elapsed(), ok = result.is_ok(), "task statuses reported");
                if let Err(s) = result {
                    // Keep them (newer reports win) for the next session.
                    let mut outbox = shared.outbox.lock().expect("outbox lock");
                    for (id, st) in batch {
                        outbox.entry(id).or_insert(st);
                    }
                    return ended(s);
                }
            }
        }
    }
}

/// The log publishers of a session, by subscription; aborted when it ends.
#[derive(Debug, Default)]
struct Publishers(HashMap<String, tokio::task::AbortHandle>);

impl Drop for Publishers {
    fn drop(&mut self) {
        for (_, h) in self.0.drain() {
            h.abort();
        }
    }
}

/// Lines of one batch at most.
const LOG_BATCH: usize = 200;

fn log_line(e: &crate::runtime::logs::LogEntry) -> pb::LogLine {
    use crate::runtime::logs::Stream;
    let stream = match e.stream {
        Stream::Stdout => pb::log_line::Stream::Stdout,
        Stream::Stderr => pb::log_line::Stream::Stderr,
    };
    pb::LogLine {
        timestamp_unix_nanos: e.time.timestamp_nanos_opt().unwrap_or(0),
        stream: stream as i32,
        line: e.text.clone(),
    }
}

/// Answers one log subscription: the lines asked for from each task's log file,
/// then (with `follow`) new ones as they are written, until the manager closes it.
async fn publish_logs(
    mut client: DispatcherClient<tonic::transport::Channel>,
    executor: Arc<Executor>,
    sub: pb::LogSubscription,
) {
    let (tx, rx) = tokio::sync::mpsc::channel::<pb::PublishLogsMessage>(16);
    let id = sub.subscription_id.clone();
    let sender = tokio::spawn(async move {
        let _ = client.publish_logs(tokio_stream::wrappers::ReceiverStream::new(rx)).await;
    });
    let message = |task_id: &str, lines: Vec<pb::LogLine>, error: String| pb::PublishLogsMessage {
        subscription_id: id.clone(),
        task_id: task_id.to_owned(),
        lines,
        done: false,
        error,
    };
    let since =
        (sub.since_unix_nanos > 0).then(|| chrono::DateTime::from_timestamp_nanos(sub.since_unix_nanos));
    let mut followers = Vec::new();
    for task_id in &sub.task_ids {
        let Some(path) = executor.log_path(task_id) else {
            let _ = tx
                .send(message(task_id, Vec::new(), "the task's container is no longer on its node".into()))
                .await;
            continue;
        };
        let opts =
            crate::runtime::logs::ReadOptions { tail: (sub.tail > 0).then_some(sub.tail as usize), since };
        let (p, t) = (path.clone(), task_id.clone());
        // Read on the blocking pool, in batches: never the whole file in memory.
        let (btx, mut brx) = tokio::sync::mpsc::channel::<Vec<pb::LogLine>>(4);
        let reader = tokio::task::spawn_blocking(move || {
            let mut batch = Vec::with_capacity(LOG_BATCH);
            let result = crate::runtime::logs::read(&p, opts, |e| {
                batch.push(log_line(&e));
                if batch.len() == LOG_BATCH {
                    let _ = btx.blocking_send(std::mem::take(&mut batch));
                }
            });
            if !batch.is_empty() {
                let _ = btx.blocking_send(batch);
            }
            result
        });
        while let Some(lines) = brx.recv().await {
            if tx.send(message(&t, lines, String::new())).await.is_err() {
                return;
            }
        }
        if let Ok(Err(e)) = reader.await {
            let _ = tx.send(message(task_id, Vec::new(), format!("read the log: {e}"))).await;
        }
        if sub.follow {
            followers.push((task_id.clone(), crate::runtime::logs::Follower::new(&path, false)));
        }
    }
    if sub.follow {
        // Until the manager closes the subscription (which aborts this task).
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            for (task_id, f) in &mut followers {
                let lines: Vec<pb::LogLine> = f.poll().unwrap_or_default().iter().map(log_line).collect();
                if !lines.is_empty() && tx.send(message(task_id, lines, String::new())).await.is_err() {
                    return;
                }
            }
        }
    }
    let mut done = message("", Vec::new(), String::new());
    done.done = true;
    let _ = tx.send(done).await;
    drop(tx);
    let _ = sender.await;
}

fn apply_assignments(shared: &Shared, msg: pb::AssignmentsMessage) {
    use pb::assignment_change::{Action as A, Item};
    let complete = msg.kind == pb::assignments_message::Kind::Complete as i32;
    {
        let mut tasks = shared.tasks.lock().expect("tasks lock");
        let mut payloads = shared.payloads.lock().expect("payloads lock");
        if complete {
            tasks.clear();
            payloads.clear();
        }
        for change in msg.changes {
            let remove = change.action == A::Remove as i32;
            match change.item {
                Some(Item::TaskJson(json)) => {
                    if remove {
                        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&json)
                            && let Some(id) = v.get("id").and_then(|i| i.as_str())
                        {
                            tasks.remove(id);
                        }
                    } else if let Ok(t) = serde_json::from_slice::<Task>(&json) {
                        tasks.insert(t.id.clone(), t);
                    }
                }
                Some(Item::Payload(p)) => {
                    let key = format!("{}/{}", p.kind, p.id);
                    if remove {
                        if let Some(old) = payloads.remove(&key) {
                            payloads.remove(&format!("{}/{}", old.kind, old.name));
                        }
                    } else {
                        let payload = Payload { kind: p.kind.clone(), name: p.name.clone(), data: p.data };
                        payloads.insert(format!("{}/{}", p.kind, p.name), payload.clone());
                        payloads.insert(key, payload);
                    }
                }
                Some(Item::NetworkJson(_)) | None => {}
            }
        }
    }
    if complete {
        *shared.synced.lock().expect("synced lock") = true;
    }
    shared.wake.notify_one();
}

async fn reconcile_loop(executor: Arc<Executor>, shared: Arc<Shared>) {
    loop {
        reconcile(&executor, &shared).await;
        tokio::select! {
            _ = shared.wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

/// One pass: every assigned task and every task container, compared.
async fn reconcile(executor: &Arc<Executor>, shared: &Arc<Shared>) {
    let tasks: Vec<Task> = shared.tasks.lock().expect("tasks lock").values().cloned().collect();
    let synced = *shared.synced.lock().expect("synced lock");
    // Taken before the containers are looked at: a task whose start or stop was
    // under way then may show a half-made container, and is left to that action
    // even if it has finished by the time the plan is made.
    let busy_before: HashSet<String> = shared.busy.lock().expect("busy lock").clone();
    let ex = executor.clone();
    let Ok(locals) = tokio::task::spawn_blocking(move || {
        let with_containers = ex.tasks_with_containers();
        let states: HashMap<String, Local> =
            with_containers.iter().map(|id| (id.clone(), ex.local(id))).collect();
        states
    })
    .await
    else {
        return;
    };
    let now = Utc::now();
    for task in &tasks {
        let local = locals.get(&task.id).cloned().unwrap_or(Local::Absent);
        let gated = executor.health_check(task).is_some();
        // A running container with a health check is watched.
        if gated
            && plan::wants_run(task)
            && local == Local::Running
            && shared.watched.lock().expect("watched lock").insert(task.id.clone())
        {
            tokio::spawn(watch_health(executor.clone(), shared.clone(), task.clone()));
        }
        // An action under way (now, or when the containers were read) reports for
        // itself; the next pass sees its result.
        if busy_before.contains(&task.id) || shared.busy.lock().expect("busy lock").contains(&task.id) {
            continue;
        }
        let reported =
            shared.reported.lock().expect("reported lock").get(&task.id).copied().unwrap_or(TaskState::New);
        for action in plan(task, &local, reported, gated, now) {
            match action {
                Action::Report(status) => shared.queue(&task.id, status),
                Action::Start => spawn_action(executor, shared, task.clone(), Work::Start),
                Action::Stop => spawn_action(executor, shared, task.clone(), Work::Stop),
                Action::Delete => spawn_action(executor, shared, task.clone(), Work::Delete),
            }
        }
    }
    // Containers of tasks no longer assigned go (once the manager's list is known).
    if synced {
        let assigned: HashSet<&str> = tasks.iter().map(|t| t.id.as_str()).collect();
        for id in
            locals.keys().filter(|id| !assigned.contains(id.as_str()) && !busy_before.contains(id.as_str()))
        {
            let ex = executor.clone();
            let id = id.clone();
            if !shared.busy.lock().expect("busy lock").insert(id.clone()) {
                continue;
            }
            let shared = shared.clone();
            tokio::spawn(async move {
                let done = tokio::task::spawn_blocking({
                    let id = id.clone();
                    move || ex.delete(&id)
                })
                .await;
                if let Ok(Err(e)) = done {
                    tracing::warn!(task = %id, error = %e, "could not remove the container of an unassigned task");
                }
                shared.busy.lock().expect("busy lock").remove(&id);
                shared.reported.lock().expect("reported lock").remove(&id);
            });
        }
    }
}

/// Runs a task's health check on its schedule while the task runs: reports RUNNING
/// once healthy, and FAILED (stopping the container) after `retries` failures in a
/// row. Failures during the start period do not count, as in Docker.
async fn watch_health(executor: Arc<Executor>, shared: Arc<Shared>, task: Task) {
    let Some(h) = executor.health_check(&task) else { return };
    let started = std::time::Instant::now();
    let interval = if h.interval.is_zero() { Duration::from_secs(30) } else { h.interval };
    let start_interval = if h.start_interval.is_zero() { Duration::from_secs(5) } else { h.start_interval };
    let mut failures = 0u32;
    let mut healthy = false;
    loop {
        let in_start_period = started.elapsed() < h.start_period;
        tokio::time::sleep(if in_start_period && !healthy { start_interval.min(interval) } else { interval })
            .await;
        let still = shared.tasks.lock().expect("tasks lock").get(&task.id).is_some_and(plan::wants_run);
        if !still {
            break;
        }
        let (ex, t) = (executor.clone(), task.clone());
        let result = match tokio::task::spawn_blocking(move || ex.check_health(&t)).await {
            Ok(r) => r,
            Err(e) => Err(e.to_string()),
        };
        match result {
            Ok(None) => {
                failures = 0;
                if !healthy {
                    healthy = true;
                    tracing::info!(task = %task.id, "task is healthy");
                    shared.queue(&task.id, TaskStatus::new(TaskState::Running, Utc::now(), "healthy"));
                }
            }
            // The container stopped under the check: the reconcile loop reports that.
            Err(_) => break,
            Ok(Some(why)) => {
                if in_start_period && !healthy {
                    continue;
                }
                failures += 1;
                if failures >= h.retries.max(1) {
                    tracing::warn!(task = %task.id, reason = %why, "task is unhealthy; stopping it");
                    let mut s = TaskStatus::new(TaskState::Failed, Utc::now(), "unhealthy");
                    s.error = Some(format!("task: unhealthy container: {why}"));
                    shared.queue(&task.id, s);
                    let (ex, t) = (executor.clone(), task.clone());
                    let _ = tokio::task::spawn_blocking(move || ex.stop(&t)).await;
                    break;
                }
            }
        }
    }
    shared.watched.lock().expect("watched lock").remove(&task.id);
}

#[derive(Debug, Clone, Copy)]
enum Work {
    Start,
    Stop,
    Delete,
}

/// Runs one action for a task, unless one is under way for it already.
fn spawn_action(executor: &Arc<Executor>, shared: &Arc<Shared>, task: Task, work: Work) {
    if !shared.busy.lock().expect("busy lock").insert(task.id.clone()) {
        return;
    }
    let (ex, shared) = (executor.clone(), shared.clone());
    tokio::spawn(async move {
        let id = task.id.clone();
        match work {
            Work::Start => {
                let _slot = shared.starts.0.acquire().await.expect("never closed");
                shared.queue(&id, TaskStatus::new(TaskState::Preparing, Utc::now(), "preparing"));
                match ex.prepare(&task).await {
                    Err(status) => shared.queue(&id, status),
                    Ok(()) => {
                        shared.queue(&id, TaskStatus::new(TaskState::Starting, Utc::now(), "starting"));
                        let payloads = shared.payloads.lock().expect("payloads lock").clone();
                        let ex2 = ex.clone();
                        let t2 = task.clone();
                        match tokio::task::spawn_blocking(move || ex2.start(&t2, &payloads)).await {
                            Ok(Ok(())) if ex.health_check(&task).is_some() => {
                                tracing::info!(task = %id, service = %task.service_id, "task started; waiting until healthy");
                            }
                            Ok(Ok(())) => {
                                tracing::info!(task = %id, service = %task.service_id, "task started");
                                shared.queue(&id, TaskStatus::new(TaskState::Running, Utc::now(), "started"));
                            }
                            Ok(Err(status)) => {
                                tracing::warn!(task = %id, error = ?status.error, "task did not start");
                                shared.queue(&id, status);
                            }
                            Err(e) => shared
                                .queue(&id, TaskStatus::new(TaskState::Failed, Utc::now(), e.to_string())),
                        }
                    }
                }
            }
            Work::Stop => {
                let t2 = task.clone();
                let ex2 = ex.clone();
                if let Ok(Err(e)) = tokio::task::spawn_blocking(move || ex2.stop(&t2)).await {
                    tracing::warn!(task = %id, error = %e, "could not stop the task's container");
                }
            }
            Work::Delete => {
                let ex2 = ex.clone();
                let id2 = id.clone();
                let _ = tokio::task::spawn_blocking(move || ex2.delete(&id2)).await;
            }
        }
        shared.busy.lock().expect("busy lock").remove(&id);
        shared.wake.notify_one();
    });
}
