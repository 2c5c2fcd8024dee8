//! Node failure detection on the leader: a ready node whose worker has not been
//! heard from for `heartbeat period × grace multiplier` becomes DOWN, and the
//! orchestrators move its tasks. After a leader change every node gets a fresh
//! grace period (twice as long), so an election alone never marks nodes down, and so
//! does a node that registers later, from when the leader first sees it; after
//! a stall of the leader itself (its own clock tick came late), every node gets its
//! grace again from the stall's end, so heartbeats the leader could not read yet
//! never count as missed. A node that is DOWN in the store but has a session that
//! is heard from becomes READY again: its session may have opened while the write
//! marking it down was still in flight.

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
/// leader's last stall. A node never heard from counts from when this leader first
/// listed it READY (`listed`), if that is later: a manager that joins registers its
/// node before its worker finds the leader.
pub(super) fn silent(
    ready: &[(String, u64)],
    last_seen: &HashMap<String, (Instant, Duration)>,
    (grace_from, listed): (Instant, &HashMap<String, Instant>),
    (period, multiplier): (Duration, u32),
    now: Instant,
) -> Vec<(String, u64)> {
    ready
        .iter()
        .filter(|(node, _)| match last_seen.get(node) {
            Some((seen, told)) => {
                now.duration_since((*seen).max(grace_from)) > period.max(*told) * multiplier
            }
            // Never heard from since this manager leads: count from the election (or
            // from when the node appeared), with twice the grace.
            None => {
                let since = listed.get(node).map_or(grace_from, |&at| at.max(grace_from));
                now.duration_since(since) > period * multiplier * 2
            }
        })
        .cloned()
        .collect()
}

/// Nodes that are DOWN in the store but whose session is open and heard from
/// within its grace.
pub(super) fn heard(
    down: &[(String, u64)],
    last_seen: &HashMap<String, (Instant, Duration)>,
    grace_from: Instant,
    heartbeat: (Duration, u32),
    now: Instant,
) -> Vec<(String, u64)> {
    let open: Vec<(String, u64)> =
        down.iter().filter(|(node, _)| last_seen.contains_key(node)).cloned().collect();
    let silent = silent(&open, last_seen, (grace_from, &HashMap::new()), heartbeat, now);
    open.into_iter().filter(|n| !silent.contains(n)).collect()
}

/// The updates that set each of `nodes` (id, version read) to `state`.
fn set_state(d: &Dispatcher, nodes: &[(String, u64)], state: NodeState, message: &str) -> Vec<Change> {
    d.manager.read(|s| {
        nodes
            .iter()
            .filter_map(|(id, version)| match s.get(crate::store::Kind::Node, id) {
                Some(Object::Node(n)) if n.meta.version == *version => {
                    let mut new = n.clone();
                    new.status.state = state;
                    new.status.message = message.into();
                    new.meta.updated_at = chrono::Utc::now();
                    Some(Change::Update { object: Object::Node(new), expected_version: *version })
                }
                _ => None,
            })
            .collect()
    })
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
        let mut listed: HashMap<String, Instant> = HashMap::new();
        while d.manager.is_leader() && *leadership.borrow() {
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
            let (mut ready, mut down) = (Vec::new(), Vec::new());
            d.manager.read(|s| {
                for n in crate::store::queries::nodes(s) {
                    match n.status.state {
                        NodeState::Ready => ready.push((n.id.clone(), n.meta.version)),
                        NodeState::Down => down.push((n.id.clone(), n.meta.version)),
                        _ => {}
                    }
                }
            });
            let (last_seen, now) = (d.last_seen(), Instant::now());
            let ready_now: std::collections::HashSet<&str> =
                ready.iter().map(|(id, _)| id.as_str()).collect();
            listed.retain(|id, _| ready_now.contains(id.as_str()));
            for (id, _) in &ready {
                listed.entry(id.clone()).or_insert(now);
            }
            let silent = silent(&ready, &last_seen, (grace_from, &listed), d.heartbeat(), now);
            let back = heard(&down, &last_seen, grace_from, d.heartbeat(), now);
            if silent.is_empty() && back.is_empty() {
                continue;
            }
            let mut changes = set_state(&d, &silent, NodeState::Down, "heartbeat failure");
            changes.extend(set_state(&d, &back, NodeState::Ready, ""));
            for id in silent.iter().map(|(id, _)| id) {
                tracing::warn!(node = %id, "node missed its heartbeats: marking it down");
                d.sessions.lock().expect("sessions lock").close(id);
            }
            for id in back.iter().map(|(id, _)| id) {
                tracing::info!(node = %id, "node marked down while its session opened: marking it ready");
            }
            match d.manager.propose_local(Transaction { changes }).await {
                Ok(_) => {
                    d.manager.instruments().heartbeats_expired.inc_by(silent.len() as u64);
                }
                Err(e) => {
                    tracing::debug!(error = %shoal_api::report::chain(&e), "marking nodes down or up failed; retrying")
                }
            }
        }
        crate::manager::Manager::back_off_while_the_watch_lags(&leadership).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_longer_than_the_grace_marks_a_node() {
        let none = HashMap::new();
        let t0 = Instant::now();
        let five = Duration::from_secs(5);
        let ready = vec![("a".to_owned(), 1), ("b".to_owned(), 1), ("c".to_owned(), 1)];
        let seen = HashMap::from([
            ("a".to_owned(), (t0, five)),
            ("b".to_owned(), (t0 + Duration::from_secs(10), five)),
        ]);
        let now = t0 + Duration::from_secs(20);
        let down: Vec<String> =
            silent(&ready, &seen, (t0, &none), (five, 3), now).into_iter().map(|(n, _)| n).collect();
        assert_eq!(down, ["a"], "b spoke 10 s ago; c was never heard but gets 30 s after the election");
        let later = t0 + Duration::from_secs(31);
        assert_eq!(silent(&ready, &seen, (t0, &none), (five, 3), later).len(), 3);
    }

    #[test]
    fn after_a_stall_of_the_leader_silence_counts_from_its_end() {
        let none = HashMap::new();
        let t0 = Instant::now();
        let five = Duration::from_secs(5);
        let ready = vec![("a".to_owned(), 1)];
        let seen = HashMap::from([("a".to_owned(), (t0, five))]);
        let now = t0 + Duration::from_secs(20);
        assert_eq!(silent(&ready, &seen, (t0, &none), (five, 3), now).len(), 1, "silent for 20 s");
        let stall_end = t0 + Duration::from_secs(18);
        assert!(silent(&ready, &seen, (stall_end, &none), (five, 3), now).is_empty(), "2 s since the stall");
        assert_eq!(
            silent(&ready, &seen, (stall_end, &none), (five, 3), stall_end + Duration::from_secs(16)).len(),
            1
        );
    }

    #[test]
    fn a_node_that_appears_later_gets_its_whole_grace_from_then() {
        let t0 = Instant::now();
        let five = Duration::from_secs(5);
        let ready = vec![("early".to_owned(), 1), ("late".to_owned(), 1)];
        let listed =
            HashMap::from([("early".to_owned(), t0), ("late".to_owned(), t0 + Duration::from_secs(25))]);
        let seen = HashMap::new();
        let names = |now| -> Vec<String> {
            silent(&ready, &seen, (t0, &listed), (five, 3), now).into_iter().map(|(n, _)| n).collect()
        };
        assert_eq!(names(t0 + Duration::from_secs(31)), ["early"], "late appeared 6 s ago: 30 s of grace");
        assert_eq!(names(t0 + Duration::from_secs(56)), ["early", "late"]);
    }

    #[test]
    fn a_down_node_with_a_session_heard_from_is_ready_again() {
        let t0 = Instant::now();
        let five = Duration::from_secs(5);
        let down = vec![("raced".to_owned(), 3), ("gone".to_owned(), 4), ("stale".to_owned(), 5)];
        let seen = HashMap::from([
            ("raced".to_owned(), (t0 + Duration::from_secs(9), five)),
            ("stale".to_owned(), (t0, five)),
        ]);
        let now = t0 + Duration::from_secs(20);
        let back = heard(&down, &seen, t0, (five, 3), now);
        assert_eq!(
            back,
            [("raced".to_owned(), 3)],
            "gone has no session; stale's session is silent for longer than its grace"
        );
    }

    #[test]
    fn a_shorter_period_applies_once_the_node_was_told() {
        let t0 = Instant::now();
        let (one, five) = (Duration::from_secs(1), Duration::from_secs(5));
        let ready = vec![("old".to_owned(), 1), ("new".to_owned(), 1)];
        let seen = HashMap::from([("old".to_owned(), (t0, five)), ("new".to_owned(), (t0, one))]);
        let now = t0 + Duration::from_secs(4);
        let down: Vec<String> =
            silent(&ready, &seen, (t0, &HashMap::new()), (one, 3), now).into_iter().map(|(n, _)| n).collect();
        assert_eq!(down, ["new"], "a node last told 5 s keeps its 15 s until its next heartbeat");
    }
}
