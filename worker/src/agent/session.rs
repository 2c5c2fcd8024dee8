//! The agent's session with the leader's dispatcher: registration, heartbeats,
//! assignments passed on to the reconciler, its reports sent in batches, log
//! subscriptions answered from the node's log files, and execs started. Follows redirects to the
//! leader and tries the known managers in turn, backing off.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use shoal_proto::dispatcher as pb;
use shoal_proto::dispatcher::dispatcher_client::DispatcherClient;

use super::AgentConfig;
use super::node::Node;
use super::reconciler::Handle;

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

/// Sessions with the managers, one after the other, for good.
pub async fn sessions<N: Node>(cfg: AgentConfig, mut handle: Handle, node: Arc<N>) {
    let mut managers = cfg.managers.clone();
    let mut backoff = Duration::from_millis(100);
    let mut next: Option<String> = None;
    loop {
        // The managers that gave no session in this round.
        let mut failed: Vec<String> = Vec::new();
        for addr in candidates(next.take(), &managers) {
            let began = std::time::Instant::now();
            let ended = session(&cfg, &addr, &failed, &mut handle, &node).await;
            if began.elapsed() > Duration::from_secs(1) {
                // A session that held for a while ended (the leader went away): start
                // over quickly, not from where failures at start-up left the backoff.
                backoff = Duration::from_millis(100);
            }
            if let Some(open) = &cfg.session_open {
                open.store(false, std::sync::atomic::Ordering::Relaxed);
            }
            match ended {
                Ended::Redirect(leader) if !follows(&leader, &addr, &failed) => {
                    tracing::debug!(manager = %addr, leader = %leader, "redirected to a manager that gave no session: trying the next");
                    failed.push(addr);
                }
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
                    failed.push(addr);
                }
            }
        }
        if next.is_none() {
            // Half to all of the backoff: a thousand nodes that lost the same leader
            // do not all come back in the same instant.
            tokio::time::sleep(backoff.mul_f64(rand::random_range(0.5..1.0))).await;
            backoff = (backoff * 2).min(Duration::from_secs(8));
        }
    }
}

/// The managers to try in a round, in order, each once: the leader a redirect named
/// first, then the known managers.
fn candidates(named: Option<String>, managers: &[String]) -> Vec<String> {
    let mut out: Vec<String> = named.into_iter().collect();
    for m in managers {
        if !out.contains(m) {
            out.push(m.clone());
        }
    }
    out
}

/// Whether a redirect from `from` to `leader` is followed at once. Not back to `from`
/// (it leads but cannot take sessions yet), nor to a manager that gave no session in
/// this round (a follower names a killed leader until it notices): the round goes on,
/// and ends in a backoff, rather than bouncing between the two.
fn follows(leader: &str, from: &str, failed: &[String]) -> bool {
    leader != from && !failed.iter().any(|f| f == leader)
}

fn ended(status: tonic::Status) -> Ended {
    match status.metadata().get(shoal_proto::LEADER_KEY).and_then(|v| v.to_str().ok()) {
        Some(leader) => Ended::Redirect(leader.to_owned()),
        None => Ended::Broken(status.message().to_owned()),
    }
}

/// One session with the manager at `addr`, until it breaks. `failed` are the managers
/// that gave none just before: `addr` does not send the node back to them.
async fn session<N: Node>(
    cfg: &AgentConfig,
    addr: &str,
    failed: &[String],
    handle: &mut Handle,
    node: &Arc<N>,
) -> Ended {
    // Mutual TLS with the node's certificate: the dispatcher checks it names this
    // node.
    let channel = match shoal_pki::enroll::channel_from(addr, cfg.renewer.credentials(), cfg.dial_from) {
        Ok(c) => c,
        Err(e) => return Ended::Broken(e.to_string()),
    };
    let mut client = DispatcherClient::new(channel);
    let request = pb::SessionRequest {
        node_id: cfg.node_id.clone(),
        description_json: serde_json::to_vec(&cfg.description).expect("descriptions serialize"),
        addr: cfg.addr.clone(),
        unreachable: failed.to_vec(),
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
    cfg.renewer.observe(&first.role, &first.roots_pem, &first.ca_subject, &first.managers);
    let mut period = Duration::from_millis(first.heartbeat_period_ms.max(100));
    tracing::info!(manager = %addr, session = %session_id, node = %cfg.node_id, "session with the dispatcher");
    if let Some(open) = &cfg.session_open {
        open.store(true, std::sync::atomic::Ordering::Relaxed);
    }
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
    let mut execs = match client.listen_execs(pb::ListenExecsRequest { session_id: session_id.clone() }).await
    {
        Ok(s) => s.into_inner(),
        Err(s) => return ended(s),
    };
    // Publishers of the open log subscriptions, by id; aborted when the session ends.
    let mut publishers = Publishers::default();
    let mut heartbeat = tokio::time::interval(period);
    heartbeat.reset();
    // The report in flight, sent beside the loop: heartbeats go on while the
    // manager takes its time (1,000 nodes waiting on their reports once all missed
    // their heartbeats together, and were marked down at once).
    let mut reporting: Option<Reporting> = None;
    let outcome = loop {
        tokio::select! {
            m = stream.message() => match m {
                Ok(Some(news)) => cfg.renewer.observe(&news.role, &news.roots_pem, &news.ca_subject, &news.managers),
                Ok(None) => break Ended::Closed(first.managers.clone()),
                Err(s) => break ended(s),
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
                        let h = tokio::spawn(publish_logs(client.clone(), node.clone(), sub));
                        publishers.0.insert(id, h.abort_handle());
                    }
                }
                Ok(None) => break Ended::Closed(first.managers.clone()),
                Err(s) => break ended(s),
            },
            open = execs.message() => match open {
                Ok(Some(open)) => {
                    tokio::spawn(super::exec::serve(client.clone(), node.clone(), open));
                }
                Ok(None) => break Ended::Closed(first.managers.clone()),
                Err(s) => break ended(s),
            },
            a = assignments.message() => match a {
                Ok(Some(msg)) => handle.assignments(msg),
                Ok(None) => break Ended::Closed(first.managers.clone()),
                Err(s) => break ended(s),
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
                    Err(s) => break ended(s),
                }
            }
            _ = handle.reports_queued(), if reporting.is_none() => {
                // Let a burst of reports gather into one batch.
                tokio::time::sleep(Duration::from_millis(20)).await;
                let batch = handle.take_reports().await;
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
                let mut client = client.clone();
                let rpc = tokio::spawn(async move {
                    let sent = std::time::Instant::now();
                    let result = client.update_task_status(req).await.map(drop);
                    tracing::debug!(took = ?sent.elapsed(), ok = result.is_ok(), "task statuses reported");
                    result
                });
                reporting = Some(Reporting { batch, rpc });
            }
            done = async { (&mut reporting.as_mut().expect("guarded").rpc).await }, if reporting.is_some() => {
                let batch = reporting.take().map(|r| r.batch).unwrap_or_default();
                match done {
                    Ok(Ok(())) => {}
                    Ok(Err(s)) => {
                        // Keep them (newer reports win) for the next session.
                        handle.unsent(batch);
                        break ended(s);
                    }
                    Err(e) => {
                        handle.unsent(batch);
                        break Ended::Broken(format!("the status report stopped: {e}"));
                    }
                }
            }
        }
    };
    if let Some(r) = reporting {
        // The session ended with a report unanswered: it goes again in the next one
        // (a report the manager took already changes nothing the second time).
        r.rpc.abort();
        handle.unsent(r.batch);
    }
    outcome
}

/// A batch of task status reports on its way to the manager.
struct Reporting {
    batch: BTreeMap<String, shoal_api::TaskStatus>,
    rpc: tokio::task::JoinHandle<Result<(), tonic::Status>>,
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
async fn publish_logs<N: Node>(
    mut client: DispatcherClient<tonic::transport::Channel>,
    node: Arc<N>,
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
        let Some(path) = node.log_path(task_id) else {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_round_tries_the_named_leader_first_and_every_manager_once() {
        let managers = strings(&["m1", "m2", "m3"]);
        assert_eq!(candidates(Some("m2".into()), &managers), strings(&["m2", "m1", "m3"]));
        assert_eq!(candidates(None, &managers), managers);
    }

    #[test]
    fn a_redirect_to_a_manager_that_just_failed_or_to_itself_is_not_followed() {
        let failed = strings(&["m1"]);
        assert!(follows("m3", "m2", &failed));
        assert!(!follows("m1", "m2", &failed), "m1 refused this round: a follower still names it");
        assert!(!follows("m2", "m2", &failed), "the leader itself is not ready yet");
    }
}
