//! Node failure detection on the leader: a ready node whose worker has not been
//! heard from for `heartbeat period × grace multiplier` becomes DOWN, and the
//! orchestrators move its tasks. After a leader change every node gets a fresh
//! grace period (twice as long), so an election alone never marks nodes down; after
//! a stall of the leader itself (its own clock tick came late), every node gets its
//! grace again from the stall's end, so heartbeats the leader could not read yet
//! never count as missed.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use shoal_api::node::NodeState;

use super::Dispatcher;
use crate::store::{Change, Object, Transaction};

/// How often the monitor looks.
const TICK: Duration = Duration::from_secs(1);

/// The monitor task; stops when dropped.
#[derive(Debug)]
pub struct NodeMonitor {
    handle: tokio::task::JoinHandle<()>,
}

impl Drop for NodeMonitor {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

impl NodeMonitor {
    /// Starts watching the nodes of `dispatcher`'s cluster.
    pub fn start(dispatcher: Dispatcher) -> NodeMonitor {
        NodeMonitor { handle: tokio::spawn(run(dispatcher)) }
    }
}

/// Nodes that are READY in the store but silent for longer than their grace:
/// `multiplier` times the longer of the current `period` and the one the node was
/// last told (a node told 5 s before a change to 1 s may wait 5 s once more).
/// Silence counts from `grace_from` at the earliest: the election, or the end of the
/// leader's last stall.
pub(super) fn silent(
    ready: &[(String, u64)],
    last_seen: &HashMap<String, (Instant, Duration)>,
    grace_from: Instant,
    (period, multiplier): (Duration, u32),
    now: Instant,
) -> Vec<(String, u64)> {
    ready
        .iter()
        .filter(|(node, _)| match last_seen.get(node) {
            Some((seen, told)) => {
                now.duration_since((*seen).max(grace_from)) > period.max(*told) * multiplier
            }
            // Never heard from since this manager leads: count from the election,
            // with twice the grace.
            None => now.duration_since(grace_from) > period * multiplier * 2,
        })
        .cloned()
        .collect()
}

async fn run(d: Dispatcher) {
    let mut leadership = d.manager.leadership();
    loop {
        while !*leadership.borrow_and_update() {
            if leadership.changed().await.is_err() {
                return;
            }
        }
        let mut grace_from = Instant::now();
        while d.manager.is_leader() {
            let asked = Instant::now();
            tokio::time::sleep(TICK).await;
            let late = asked.elapsed().saturating_sub(TICK);
            if late > TICK {
                // This manager did not run for a while: what the nodes sent meanwhile
                // may not be read yet.
                tracing::warn!(late = ?late, "the node monitor ran late: every node gets its grace again");
                grace_from = Instant::now();
                continue;
            }
            let ready: Vec<(String, u64)> = d.manager.read(|s| {
                crate::store::queries::nodes(s)
                    .filter(|n| n.status.state == NodeState::Ready)
                    .map(|n| (n.id.clone(), n.meta.version))
                    .collect()
            });
            let down = silent(&ready, &d.last_seen(), grace_from, d.heartbeat(), Instant::now());
            if down.is_empty() {
                continue;
            }
            let changes: Vec<Change> = d.manager.read(|s| {
                down.iter()
                    .filter_map(|(id, version)| match s.get(crate::store::Kind::Node, id) {
                        Some(Object::Node(n)) if n.meta.version == *version => {
                            let mut new = n.clone();
                            new.status.state = NodeState::Down;
                            new.status.message = "heartbeat failure".into();
                            new.meta.updated_at = chrono::Utc::now();
                            Some(Change::Update { object: Object::Node(new), expected_version: *version })
                        }
                        _ => None,
                    })
                    .collect()
            });
            for id in down.iter().map(|(id, _)| id) {
                tracing::warn!(node = %id, "node missed its heartbeats: marking it down");
                d.sessions.lock().expect("sessions lock").close(id);
            }
            match d.manager.propose_local(Transaction { changes }).await {
                Ok(_) => {
                    d.manager.instruments().heartbeats_expired.inc_by(down.len() as u64);
                }
                Err(e) => {
                    tracing::debug!(error = %shoal_api::report::chain(&e), "marking nodes down failed; retrying")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_longer_than_the_grace_marks_a_node() {
        let t0 = Instant::now();
        let five = Duration::from_secs(5);
        let ready = vec![("a".to_owned(), 1), ("b".to_owned(), 1), ("c".to_owned(), 1)];
        let seen = HashMap::from([
            ("a".to_owned(), (t0, five)),
            ("b".to_owned(), (t0 + Duration::from_secs(10), five)),
        ]);
        let now = t0 + Duration::from_secs(20);
        let down: Vec<String> =
            silent(&ready, &seen, t0, (five, 3), now).into_iter().map(|(n, _)| n).collect();
        assert_eq!(down, ["a"], "b spoke 10 s ago; c was never heard but gets 30 s after the election");
        let later = t0 + Duration::from_secs(31);
        assert_eq!(silent(&ready, &seen, t0, (five, 3), later).len(), 3);
    }

    #[test]
    fn after_a_stall_of_the_leader_silence_counts_from_its_end() {
        let t0 = Instant::now();
        let five = Duration::from_secs(5);
        let ready = vec![("a".to_owned(), 1)];
        let seen = HashMap::from([("a".to_owned(), (t0, five))]);
        let now = t0 + Duration::from_secs(20);
        assert_eq!(silent(&ready, &seen, t0, (five, 3), now).len(), 1, "silent for 20 s");
        let stall_end = t0 + Duration::from_secs(18);
        assert!(silent(&ready, &seen, stall_end, (five, 3), now).is_empty(), "2 s since the stall");
        assert_eq!(silent(&ready, &seen, stall_end, (five, 3), stall_end + Duration::from_secs(16)).len(), 1);
    }

    #[test]
    fn a_shorter_period_applies_once_the_node_was_told() {
        let t0 = Instant::now();
        let (one, five) = (Duration::from_secs(1), Duration::from_secs(5));
        let ready = vec![("old".to_owned(), 1), ("new".to_owned(), 1)];
        let seen = HashMap::from([("old".to_owned(), (t0, five)), ("new".to_owned(), (t0, one))]);
        let now = t0 + Duration::from_secs(4);
        let down: Vec<String> =
            silent(&ready, &seen, t0, (one, 3), now).into_iter().map(|(n, _)| n).collect();
        assert_eq!(down, ["new"], "a node last told 5 s keeps its 15 s until its next heartbeat");
    }
}
