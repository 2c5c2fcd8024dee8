//! Which manager takes a worker's session while leadership changes hands: this one
//! once it leads with the full state, another one only while it is heard from and the
//! worker could reach it. A leader that went silent (killed, cut off) is waited out,
//! not named, so a thousand workers wait on a follower for the election instead of
//! bouncing between it and a dead address. (A follower notices a killed leader's
//! silence only after an election timeout; the worker knows at once.)

use std::time::Duration;

use openraft::Instant as _;
use openraft::async_runtime::WatchReceiver;

use super::{Manager, leads_with_full_state, member_addr};

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

/// What Raft says of the leader, as [`verdict`] weighs it.
#[derive(Debug, Clone, Copy)]
struct Seen {
    /// This manager leads.
    me: bool,
    /// ... and has applied its own term's first entry.
    full_state: bool,
    /// Another manager leads and the worker could reach it.
    reached: bool,
    /// Since the leader last renewed this manager's vote (every append does).
    silent_for: Option<Duration>,
}

/// `Some(true)`: take the session here; `Some(false)`: send it to the other leader;
/// `None`: wait. The wait covers a leader that is this manager without its full state
/// yet, or another one not heard from within `silent_limit` or not reached by the
/// worker, or none.
fn verdict(seen: Seen, silent_limit: Duration) -> Option<bool> {
    if seen.me {
        return seen.full_state.then_some(true);
    }
    (seen.reached && seen.silent_for.is_some_and(|d| d < silent_limit)).then_some(false)
}

impl Manager {
    /// Waits at most `timeout` for a leader that can take a worker's session (see the
    /// module's doc), not one at an address in `unreachable`. Raft's metrics are
    /// watched, and polled every 100 ms for a leader going quiet, which changes no
    /// metric.
    pub async fn lead_for_sessions(&self, timeout: Duration, unreachable: &[String]) -> Lead {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut metrics = self.raft.metrics();
        loop {
            let m = metrics.borrow_watched().clone();
            let other = m.current_leader.filter(|l| *l != self.id).and_then(|id| member_addr(&m, id));
            let reached = other.as_ref().is_some_and(|a| !unreachable.contains(a));
            // Raft's core is asked only when the answer matters: another leader the
            // worker could reach (during an election, many requests wait here).
            let silent_for = if reached {
                match self.raft.with_raft_state(|s| s.vote_last_modified()).await {
                    Ok(t) => t.map(|t| t.elapsed()),
                    Err(_) => return Lead::Unknown,
                }
            } else {
                None
            };
            let seen = Seen {
                me: m.current_leader == Some(self.id),
                full_state: leads_with_full_state(&m),
                reached,
                silent_for,
            };
            match (verdict(seen, self.leader_silent_after), other) {
                (Some(true), _) => return Lead::Here,
                (Some(false), Some(addr)) => return Lead::There(addr),
                _ => {}
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

    fn other(reached: bool, silent_ms: Option<u64>) -> Seen {
        Seen { me: false, full_state: false, reached, silent_for: silent_ms.map(Duration::from_millis) }
    }

    #[test]
    fn this_manager_takes_sessions_once_it_has_applied_its_own_term() {
        let me = Seen { me: true, full_state: true, reached: false, silent_for: None };
        assert_eq!(verdict(me, LIMIT), Some(true));
        let early = Seen { full_state: false, ..me };
        assert_eq!(verdict(early, LIMIT), None, "not before: its state may lack entries");
    }

    #[test]
    fn another_leader_is_named_only_while_it_is_heard_from_and_reached() {
        assert_eq!(verdict(other(true, Some(300)), LIMIT), Some(false));
        assert_eq!(verdict(other(false, Some(300)), LIMIT), None, "the worker could not reach it");
        assert_eq!(verdict(other(true, Some(1500)), LIMIT), None, "a silent leader is waited out");
        assert_eq!(verdict(other(true, None), LIMIT), None);
    }

    #[test]
    fn without_a_leader_sessions_wait() {
        assert_eq!(verdict(other(false, Some(0)), LIMIT), None);
    }
}
