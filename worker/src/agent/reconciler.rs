//! The reconciler: the one owner of the agent's [`State`]. It runs a pass when told
//! something changed (and every 500 ms), carries out the pass's effects on the
//! [`Node`] in tasks of their own, and hears back from them, from health watches and
//! from the session through messages. The session reaches it through a [`Handle`].

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use shoal_api::{Task, TaskState, TaskStatus};
use shoal_proto::dispatcher as pb;
use tokio::sync::{Semaphore, mpsc, oneshot, watch};

use super::node::{Node, Payloads, error_chain, error_status};
use super::plan::{self, Local};
use super::state::{Effect, State};

/// How often a pass runs when nothing asks for one.
const PERIOD: Duration = Duration::from_millis(500);
/// How often the node's networking is checked against the host in full, besides
/// every change of the network map.
const RESYNC: Duration = Duration::from_secs(30);

/// What the reconciler hears.
#[derive(Debug)]
enum Msg {
    /// From the session: assignments.
    Assignments(pb::AssignmentsMessage),
    /// From an action or a health watch: a task's status.
    Report(String, TaskStatus),
    /// An action for an assigned task ended.
    Done(String),
    /// The container of an unassigned task is gone (or could not be removed).
    Swept(String),
    /// A start asks for the payloads.
    Payloads(oneshot::Sender<Payloads>),
    /// A health watch asks whether its task should still run.
    Wanted(String, oneshot::Sender<bool>),
    /// A health watch ended.
    Unwatched(String),
    /// The session takes the reports to send.
    TakeReports(oneshot::Sender<BTreeMap<String, TaskStatus>>),
    /// The session could not send these reports; newer ones win.
    Unsent(BTreeMap<String, TaskStatus>),
}

/// The session's side of the reconciler.
#[derive(Debug, Clone)]
pub struct Handle {
    tx: mpsc::UnboundedSender<Msg>,
    reports: watch::Receiver<u64>,
}

impl Handle {
    /// Passes on a message of assignments.
    pub fn assignments(&self, msg: pb::AssignmentsMessage) {
        let _ = self.tx.send(Msg::Assignments(msg));
    }

    /// Waits until there may be reports to send.
    pub async fn reports_queued(&mut self) {
        if self.reports.changed().await.is_err() {
            // The reconciler is gone: nothing will be queued any more.
            std::future::pending::<()>().await;
        }
    }

    /// Takes the reports to send (empty if the reconciler is gone).
    pub async fn take_reports(&self) -> BTreeMap<String, TaskStatus> {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::TakeReports(tx)).is_err() {
            return BTreeMap::new();
        }
        rx.await.unwrap_or_default()
    }

    /// Gives back reports that could not be sent, for the next session.
    pub fn unsent(&self, batch: BTreeMap<String, TaskStatus>) {
        let _ = self.tx.send(Msg::Unsent(batch));
    }
}

/// Container starts under way at once: two per core. Each start is mostly kernel
/// work that serializes (mounts, namespaces, inode allocation); two per core keep
/// the cores busy, and more only slow every start down, the status reports and the
/// manager with them (measured with 100 replicas: 4 and 8 at once start them in
/// about 1.0 s on 2 cores, 32 in 1.3 s, no bound in 1.1 to 1.5 s).
fn start_slots() -> Arc<Semaphore> {
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    Arc::new(Semaphore::new(2 * cores))
}

/// The reconcile loop and the state it owns.
#[derive(Debug)]
pub struct Reconciler<N: Node> {
    node: Arc<N>,
    state: State,
    tx: mpsc::UnboundedSender<Msg>,
    rx: mpsc::UnboundedReceiver<Msg>,
    /// Bumped when reports are queued.
    reports: watch::Sender<u64>,
    starts: Arc<Semaphore>,
    /// Bumped when the network map or the tasks changed: the wiring loop follows.
    wire: watch::Sender<u64>,
}

impl<N: Node> Reconciler<N> {
    /// A reconciler for `node`, knowing nothing yet, and the session's handle.
    pub fn new(node: Arc<N>) -> (Reconciler<N>, Handle) {
        let (tx, rx) = mpsc::unbounded_channel();
        let (reports, reports_rx) = watch::channel(0);
        let handle = Handle { tx: tx.clone(), reports: reports_rx };
        let r = Reconciler {
            node,
            state: State::default(),
            tx,
            rx,
            reports,
            starts: start_slots(),
            wire: watch::channel(0).0,
        };
        (r, handle)
    }

    /// The state, to look at.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// Runs passes until aborted: after each message that may change the plan, and
    /// every 500 ms.
    pub async fn run(mut self) {
        let wiring = tokio::spawn(wire_loop(self.node.clone(), self.wire.subscribe()));
        let _stop_wiring = AbortOnDrop(wiring);
        loop {
            self.pass().await;
            let period = tokio::time::sleep(PERIOD);
            tokio::pin!(period);
            loop {
                tokio::select! {
                    m = self.rx.recv() => {
                        // Never `None`: the reconciler holds a sender itself.
                        if m.is_some_and(|m| self.handle(m)) {
                            // What else has arrived goes into the same pass (a burst
                            // of starts ending asks for one pass, not one each).
                            while let Ok(m) = self.rx.try_recv() {
                                self.handle(m);
                            }
                            break;
                        }
                    }
                    _ = &mut period => break,
                }
            }
        }
    }

    /// Takes in assignments, as a message from the session would.
    pub fn apply(&mut self, msg: pb::AssignmentsMessage) {
        self.handle(Msg::Assignments(msg));
    }

    /// One pass: looks at the node's containers, plans, and starts the actions.
    pub async fn pass(&mut self) {
        let node = self.node.clone();
        let listed = tokio::task::spawn_blocking(move || {
            node.containers().map(|ids| ids.into_iter().map(|id| (node.inspect(&id), id)).collect::<Vec<_>>())
        })
        .await;
        let locals: HashMap<String, Local> = match listed {
            Ok(Ok(l)) => l.into_iter().map(|(local, id)| (id, local)).collect(),
            Ok(Err(e)) => {
                tracing::warn!(error = %error_chain(&e), "cannot see the node's containers; pass skipped");
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "listing the containers panicked; pass skipped");
                return;
            }
        };
        if std::mem::take(&mut self.state.net_dirty) {
            let tasks = self.state.tasks.values().cloned().collect();
            self.node.set_network(self.state.netmap.clone(), tasks);
            self.wire.send_modify(|n| *n += 1);
        }
        let node = self.node.clone();
        let (effects, queued) = self.state.pass(&locals, |t| node.health_check(t).is_some(), Utc::now());
        if queued {
            self.reports.send_modify(|n| *n += 1);
        }
        for effect in effects {
            self.spawn(effect);
        }
    }

    /// Handles messages until every action started has been heard back from (for
    /// tests: a pass and its consequences, without timing).
    pub async fn settle(&mut self) {
        // Every action spawned holds its task in `busy` until it is heard back from.
        while !self.state.busy.is_empty() {
            let m = self.rx.recv().await.expect("the reconciler holds a sender");
            self.handle(m);
        }
        while let Ok(m) = self.rx.try_recv() {
            self.handle(m);
        }
    }

    /// Handles one message; returns whether a pass is due.
    fn handle(&mut self, m: Msg) -> bool {
        let (queued, due) = match m {
            Msg::Assignments(msg) => (self.state.apply(msg), true),
            Msg::Report(id, status) => (self.state.queue(&id, status), false),
            Msg::Done(id) => {
                self.state.busy.remove(&id);
                (false, true)
            }
            Msg::Swept(id) => {
                self.state.busy.remove(&id);
                self.state.reported.remove(&id);
                (false, false)
            }
            Msg::Payloads(reply) => {
                let _ = reply.send(self.state.payloads.clone());
                (false, false)
            }
            Msg::Wanted(id, reply) => {
                let _ = reply.send(self.state.tasks.get(&id).is_some_and(plan::wants_run));
                (false, false)
            }
            Msg::Unwatched(id) => {
                self.state.watched.remove(&id);
                (false, false)
            }
            Msg::TakeReports(reply) => {
                let _ = reply.send(std::mem::take(&mut self.state.outbox));
                (false, false)
            }
            Msg::Unsent(batch) => {
                for (id, st) in batch {
                    self.state.outbox.entry(id).or_insert(st);
                }
                (true, false)
            }
        };
        if queued {
            self.reports.send_modify(|n| *n += 1);
        }
        due
    }

    fn spawn(&mut self, effect: Effect) {
        let (node, tx) = (self.node.clone(), self.tx.clone());
        match effect {
            Effect::Watch(task) => {
                tokio::spawn(watch_health(node, tx, task));
            }
            Effect::Start(task) => {
                tokio::spawn(start(node, tx, self.starts.clone(), task));
            }
            Effect::Stop(task) => {
                tokio::spawn(async move {
                    let id = task.id.clone();
                    let stopped = tokio::task::spawn_blocking(move || node.stop(&task)).await;
                    if let Ok(Err(e)) = stopped {
                        tracing::warn!(task = %id, error = %error_chain(&e), "could not stop the task's container");
                    }
                    let _ = tx.send(Msg::Done(id));
                });
            }
            Effect::Sweep(id) => {
                tokio::spawn(async move {
                    let id2 = id.clone();
                    if let Ok(Err(e)) = tokio::task::spawn_blocking(move || node.remove(&id2)).await {
                        tracing::warn!(task = %id, error = %error_chain(&e), "could not remove the container of an unassigned task");
                    }
                    let _ = tx.send(Msg::Swept(id));
                });
            }
        }
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Wires the node's networking after every change of the map (changes that arrive
/// while it works gather into the next round), and in full every [`RESYNC`].
async fn wire_loop<N: Node>(node: Arc<N>, mut changed: watch::Receiver<u64>) {
    let mut resync = tokio::time::interval(RESYNC);
    resync.tick().await;
    loop {
        let full = tokio::select! {
            c = changed.changed() => {
                if c.is_err() {
                    return;
                }
                false
            }
            _ = resync.tick() => true,
        };
        if let Err(e) = node.wire_network(full).await {
            tracing::warn!(error = %error_chain(&e), full, "could not wire the node's networking; retrying at the next change or resync");
        }
    }
}

/// Prepares and starts a task's container, within a start slot, reporting each
/// step.
async fn start<N: Node>(node: Arc<N>, tx: mpsc::UnboundedSender<Msg>, slots: Arc<Semaphore>, task: Task) {
    let id = task.id.clone();
    let report = |status: TaskStatus| {
        let _ = tx.send(Msg::Report(id.clone(), status));
    };
    let _slot = slots.acquire().await.expect("never closed");
    report(TaskStatus::new(TaskState::Preparing, Utc::now(), "preparing"));
    let t0 = std::time::Instant::now();
    let prepared = node.prepare(&task).await;
    // Timings for benchmarks (bench/orchestration): preparing (image, network) and
    // starting the container.
    tracing::debug!(task = %id, prepare_us = t0.elapsed().as_micros() as u64, "task prepared");
    match prepared {
        Err(e) => {
            tracing::warn!(task = %id, error = %error_chain(&e), "task not prepared");
            report(error_status(&e));
        }
        Ok(()) => {
            report(TaskStatus::new(TaskState::Starting, Utc::now(), "starting"));
            let (ptx, prx) = oneshot::channel();
            let _ = tx.send(Msg::Payloads(ptx));
            let payloads = prx.await.unwrap_or_default();
            let (n, t) = (node.clone(), task.clone());
            let t1 = std::time::Instant::now();
            let started = tokio::task::spawn_blocking(move || n.start(&t, &payloads)).await;
            tracing::debug!(task = %id, start_us = t1.elapsed().as_micros() as u64, "container start returned");
            match started {
                Ok(Ok(())) if node.health_check(&task).is_some() => {
                    tracing::info!(task = %id, service = %task.service_id, "task started; waiting until healthy");
                }
                Ok(Ok(())) => {
                    tracing::info!(task = %id, service = %task.service_id, "task started");
                    report(TaskStatus::new(TaskState::Running, Utc::now(), "started"));
                }
                Ok(Err(e)) => {
                    tracing::warn!(task = %id, error = %error_chain(&e), "task did not start");
                    report(error_status(&e));
                }
                Err(e) => report(TaskStatus::new(TaskState::Failed, Utc::now(), e.to_string())),
            }
        }
    }
    let _ = tx.send(Msg::Done(id));
}

/// Runs a task's health check on its schedule while the task runs: reports RUNNING
/// once healthy, and FAILED (stopping the container) after `retries` failures in a
/// row. Failures during the start period do not count, as in Docker.
async fn watch_health<N: Node>(node: Arc<N>, tx: mpsc::UnboundedSender<Msg>, task: Task) {
    watch_until_done(&node, &tx, &task).await;
    let _ = tx.send(Msg::Unwatched(task.id.clone()));
}

async fn watch_until_done<N: Node>(node: &Arc<N>, tx: &mpsc::UnboundedSender<Msg>, task: &Task) {
    let Some(h) = node.health_check(task) else { return };
    let started = std::time::Instant::now();
    let interval = if h.interval.is_zero() { Duration::from_secs(30) } else { h.interval };
    let start_interval = if h.start_interval.is_zero() { Duration::from_secs(5) } else { h.start_interval };
    let mut failures = 0u32;
    let mut healthy = false;
    loop {
        let in_start_period = started.elapsed() < h.start_period;
        tokio::time::sleep(if in_start_period && !healthy { start_interval.min(interval) } else { interval })
            .await;
        let (wtx, wrx) = oneshot::channel();
        if tx.send(Msg::Wanted(task.id.clone(), wtx)).is_err() || !wrx.await.unwrap_or(false) {
            return;
        }
        let (n, t) = (node.clone(), task.clone());
        let result = match tokio::task::spawn_blocking(move || n.check_health(&t)).await {
            Ok(Ok(r)) => r,
            // The container stopped under the check: the reconcile loop reports that.
            Ok(Err(_)) | Err(_) => return,
        };
        match result {
            None => {
                failures = 0;
                if !healthy {
                    healthy = true;
                    tracing::info!(task = %task.id, "task is healthy");
                    let s = TaskStatus::new(TaskState::Running, Utc::now(), "healthy");
                    let _ = tx.send(Msg::Report(task.id.clone(), s));
                }
            }
            Some(why) => {
                if in_start_period && !healthy {
                    continue;
                }
                failures += 1;
                if failures >= h.retries.max(1) {
                    tracing::warn!(task = %task.id, reason = %why, "task is unhealthy; stopping it");
                    let mut s = TaskStatus::new(TaskState::Failed, Utc::now(), "unhealthy");
                    s.error = Some(format!("task: unhealthy container: {why}"));
                    let _ = tx.send(Msg::Report(task.id.clone(), s));
                    let (n, t) = (node.clone(), task.clone());
                    let _ = tokio::task::spawn_blocking(move || n.stop(&t)).await;
                    return;
                }
            }
        }
    }
}
