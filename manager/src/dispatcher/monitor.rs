//! Node failure detection on the leader: a ready node whose worker has not been
//! heard from for `heartbeat period × grace multiplier` becomes DOWN, and the
//! orchestrators move its tasks. After a leader change every node gets a fresh
//! grace period (twice as long), so an election alone never marks nodes down.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use shoal_api::node::NodeState;

use super::Dispatcher;
use crate::store::{Change, Object, Transaction};

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
pub(super) fn silent(
    ready: &[(String, u64)],
    last_seen: &HashMap<String, (Instant, Duration)>,
    leading_since: Instant,
    (period, multiplier): (Duration, u32),
    now: Instant,
) -> Vec<(String, u64)> {
    ready
        .iter()
        .filter(|(node, _)| match last_seen.get(node) {
            Some((seen, told)) => now.duration_since(*seen) > period.max(*told) * multiplier,
            // Never heard from since this manager leads: count from the election,
            // with twice the grace.
            None => now.duration_since(leading_since) > period * multiplier * 2,
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
        let leading_since = Instant::now();
        while d.manager.is_leader() {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let ready: Vec<(String, u64)> = d.manager.read(|s| {
                crate::store::queries::nodes(s)
                    .filter(|n| n.status.state == NodeState::Ready)
                    .map(|n| (n.id.clone(), n.meta.version))
                    .collect()
            });
            let down = silent(&ready, &d.last_seen(), leading_since, d.heartbeat(), Instant::now());
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
