//! Which manager takes a worker's session while leadership changes hands: this one
//! once it leads with the full state, another one only while it is heard from. A
//! leader that went silent (killed, cut off) is waited out, not named, so a thousand
//! workers wait on a follower for the election instead of bouncing between it and a
//! dead address.

use std::time::Duration;

use openraft::Instant as _;
use openraft::async_runtime::WatchReceiver;

use super::{Manager, leads_with_full_state};

/// Where sessions go now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lead {
    /// This manager leads with the full state: take the session.
    Here,
    /// The manager at this address leads and was heard from lately.
    There(String),
    /// No live leader became known in time.
    Unknown,
}

/// The verdict from what Raft says now, or `None` to wait: the leader is this manager
/// but has not applied its own term yet, is another one not heard from within
/// `silent_limit`, or is not known.
fn verdict(
    me: u64,
    leader: Option<u64>,
    full_state: bool,
    silent_for: Option<Duration>,
    silent_limit: Duration,
) -> Option<Option<u64>> {
    match leader {
        Some(l) if l == me => full_state.then_some(None),
        Some(l) => silent_for.is_some_and(|d| d < silent_limit).then_some(Some(l)),
        None => None,
    }
}

impl Manager {
    /// Waits at most `timeout` for a leader that can take a worker's session (see the
    /// module's doc). Raft's metrics are watched, and polled every 100 ms for a leader
    /// going quiet, which changes no metric.
    pub async fn lead_for_sessions(&self, timeout: Duration) -> Lead {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut metrics = self.raft.metrics();
        loop {
            let m = metrics.borrow_watched().clone();
            // The last time the vote was granted or renewed: a follower renews it
            // with every append, heartbeats included.
            let silent_for = match self.raft.with_raft_state(|s| s.vote_last_modified()).await {
                Ok(t) => t.map(|t| t.elapsed()),
                Err(_) => return Lead::Unknown,
            };
            match verdict(
                self.id,
                m.current_leader,
                leads_with_full_state(&m),
                silent_for,
                self.leader_silent_after,
            ) {
                Some(None) => return Lead::Here,
                Some(Some(id)) => {
                    if let Some((_, n)) = m.membership_config.membership().nodes().find(|(i, _)| **i == id) {
                        return Lead::There(n.addr.clone());
                    }
                }
                None => {}
            }
            let wake = tokio::time::sleep(Duration::from_millis(100));
            let done = tokio::time::timeout_at(deadline, async {
                tokio::select! {
                    _ = metrics.changed() => {}
                    _ = wake => {}
                }
            });
            if done.await.is_err() {
                return Lead::Unknown;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: Duration = Duration::from_secs(1);

    #[test]
    fn this_manager_takes_sessions_once_it_has_applied_its_own_term() {
        assert_eq!(verdict(1, Some(1), true, None, LIMIT), Some(None));
        assert_eq!(verdict(1, Some(1), false, None, LIMIT), None, "not before: its state may lack entries");
    }

    #[test]
    fn another_leader_is_named_only_while_it_is_heard_from() {
        assert_eq!(verdict(1, Some(2), false, Some(Duration::from_millis(300)), LIMIT), Some(Some(2)));
        assert_eq!(
            verdict(1, Some(2), false, Some(Duration::from_millis(1500)), LIMIT),
            None,
            "a silent leader is waited out"
        );
        assert_eq!(verdict(1, Some(2), false, None, LIMIT), None);
    }

    #[test]
    fn without_a_leader_sessions_wait() {
        assert_eq!(verdict(1, None, false, Some(Duration::ZERO), LIMIT), None);
    }
}
