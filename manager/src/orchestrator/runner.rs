//! Runs the controllers while this manager leads: a round on every batch of store
//! events (at most one round per 50 ms), and timed rounds once a second for the
//! controllers that wait on time (restart delays and windows, rollouts, key rotation),
//! proposing what each controller decides. The replicated and global controllers say
//! when their decisions next change with time alone, and timed rounds skip them until
//! then: at 100,000 tasks each of their passes reads every task. Each round starts
//! from the whole state, so a new leader picks up where the old one stopped.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::broadcast::error::RecvError;

use super::{Plan, allocator, global, keys, reaper, replicated, scheduler, update};
use crate::manager::{Manager, ManagerError};
use crate::store::{Change, StoreError, Transaction};

/// Changes proposed in one transaction at most.
const CHUNK: usize = 256;

/// The running controllers of one manager.
#[derive(Debug)]
pub struct Controllers {
    handle: tokio::task::JoinHandle<()>,
}

impl Controllers {
    /// Starts following leadership: the controllers run whenever this manager leads.
    pub fn start(manager: Arc<Manager>) -> Controllers {
        Controllers { handle: tokio::spawn(follow(manager)) }
    }

    /// Stops them.
    pub async fn stop(self) {
        self.handle.abort();
        let _ = self.handle.await;
    }
}

async fn follow(manager: Arc<Manager>) {
    let mut leadership = manager.leadership();
    loop {
        while !*leadership.borrow_and_update() {
            if leadership.changed().await.is_err() {
                return;
            }
        }
        tracing::info!(manager = manager.id(), "controllers started");
        let why = lead(&manager, &mut leadership).await;
        tracing::info!(manager = manager.id(), why, "controllers stopped");
        // Also when the event watch failed: tried again shortly, never in a tight loop.
        Manager::back_off_while_the_watch_lags(&leadership).await;
    }
}

/// Runs the controllers while this manager leads; returns why it stopped.
async fn lead(manager: &Manager, leadership: &mut tokio::sync::watch::Receiver<bool>) -> &'static str {
    let from = manager.read(|s| s.last_index());
    let mut events = match manager.watch(from) {
        Ok((_, events)) => events,
        Err(e) => {
            tracing::warn!(manager = manager.id(), error = %e, "controllers cannot watch the store");
            return "the store's events cannot be watched";
        }
    };
    let mut tick = timer();
    // The first round, and every round after store events, runs every controller. A
    // tick runs only those with timers (restart delays, update delays, deadlines):
    // placing and reaping change only when the store does.
    let mut full = true;
    let mut due = DueTimes::new();
    loop {
        if !manager.is_leader() {
            return "Raft says this manager does not lead";
        }
        let (busy, refused) = round(manager, full, &mut due).await;
        let last_round = tokio::time::Instant::now();
        // A round's reading of the whole state grows with the cluster: rest at least
        // as long as it took, so the controllers take at most half of a core and
        // leave the rest to Raft and the nodes' sessions.
        let rest = busy.max(Duration::from_millis(50));
        full = true;
        tokio::select! {
            changed = leadership.changed() => {
                if changed.is_err() || !*leadership.borrow() {
                    return "leadership lost";
                }
            }
            event = events.recv() => {
                if matches!(event, Err(RecvError::Closed)) {
                    return "the store's events ended";
                }
                // At most one round per 50 ms (or per `rest`): the first change after a
                // quiet spell is acted on at once, the rest of a burst gathers into the
                // next round.
                tokio::time::sleep_until(last_round + rest).await;
                while !matches!(events.try_recv(), Err(tokio::sync::broadcast::error::TryRecvError::Empty | tokio::sync::broadcast::error::TryRecvError::Closed)) {}
            }
            _ = tick.tick() => {
                // Timed controllers walk the whole state too: the same rest applies.
                tokio::time::sleep_until(last_round + rest).await;
                // Changes refused for another reason than a conflict (which is a store
                // change, and wakes a round) are tried again by every controller.
                full = refused;
            }
        }
    }
}

/// The timed controllers' clock: once a second, and once a second after a long round
/// too. Ticks missed during a round are not made up in a burst: at 100,000 tasks the
/// placement round took 24 s, and the burst after it ran the timed controllers about
/// 2.5 times a second (0.46 of a core) until it caught up.
fn timer() -> tokio::time::Interval {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick
}

/// A controller: the store in, its plan out.
type Controller<'a> = dyn Fn(&crate::store::Store) -> Plan + Sync + 'a;

/// When each controller that plans its timed rounds wants the next one, from its
/// last pass (`None`: only after a store change). Absent until its first pass.
type DueTimes = std::collections::HashMap<&'static str, Option<DateTime<Utc>>>;

/// One pass of the controllers (all, or only the timed ones that are due), each on
/// the state its predecessor left; returns the time spent reading the state
/// (proposals aside), and whether some changes were refused for another reason than
/// a conflict.
async fn round(manager: &Manager, full: bool, due: &mut DueTimes) -> (Duration, bool) {
    let cluster = manager.cluster();
    let limit = cluster.as_ref().map_or(5, |c| c.spec.task_history_limit);
    let pool = cluster.map(|c| c.spec.default_address_pool).unwrap_or_default();
    let stages: [(&str, &Controller<'_>); 7] = [
        ("replicated", &|s| replicated::plan(s, Utc::now())),
        ("global", &|s| global::plan(s, Utc::now())),
        ("update", &|s| update::reconcile(s, Utc::now()).into()),
        ("allocator", &|s| allocator::allocate(s, &pool, Utc::now()).into()),
        ("scheduler", &|s| scheduler::schedule(s, Utc::now()).into()),
        ("reaper", &|s| reaper::reap(s, limit, Utc::now()).into()),
        ("keys", &|s| keys::rotate(s, Utc::now(), keys::random_key).into()),
    ];
    let (mut busy, mut refused) = (Duration::ZERO, false);
    for (name, stage) in stages {
        if !full && !timed(name, manager, due, Utc::now()) {
            continue;
        }
        let started = std::time::Instant::now();
        let plan = manager.read_long(stage);
        busy += started.elapsed();
        if PLANNED.contains(&name) {
            due.insert(name, plan.due);
        }
        let changes = plan.changes;
        if name == "scheduler" {
            count_decisions(manager, &changes);
        }
        if changes.is_empty() {
            manager.instruments().reconciled(name, started.elapsed());
            continue;
        }
        let count = changes.len();
        // The chunks of one controller touch different objects: their order does not
        // matter, and a conflict in one leaves the others good.
        // Moved, not copied: a placement of 100,000 tasks would clone each.
        let mut changes = changes.into_iter();
        let chunks = std::iter::from_fn(|| Some(changes.by_ref().take(CHUNK).collect::<Vec<_>>()))
            .take_while(|chunk| !chunk.is_empty());
        let proposals = crate::manager::in_flight(chunks.map(|changes| async move {
            (changes.len(), manager.propose_local(Transaction { changes }).await)
        }))
        .await;
        for (len, result) in proposals {
            match result {
                Ok(index) => tracing::debug!(controller = name, changes = len, index, "proposed"),
                // Someone wrote the same objects meanwhile: the next round sees it.
                Err(ManagerError::Store(
                    StoreError::Conflict { .. }
                    | StoreError::NotFound { .. }
                    | StoreError::AddressTaken { .. },
                )) => {
                    tracing::debug!(controller = name, "conflict; retrying next round");
                }
                Err(ManagerError::NotLeader { .. } | ManagerError::NoLeader) => return (busy, refused),
                Err(e) => {
                    refused = true;
                    tracing::warn!(controller = name, error = %shoal_api::report::chain(&e), "controller changes refused")
                }
            }
        }
        tracing::debug!(controller = name, changes = count, "round");
        manager.instruments().reconciled(name, started.elapsed());
    }
    (busy, refused)
}

/// The controllers that say when their next timed round is due.
const PLANNED: [&str; 2] = ["replicated", "global"];

/// Whether controller `name` runs in a timed round at `now`: only those that wait on
/// time. Placing, allocating and reaping change only when the store does; a rollout
/// waits on time only while it is under way; the planned controllers when their last
/// pass said so.
fn timed(name: &str, manager: &Manager, due: &DueTimes, now: DateTime<Utc>) -> bool {
    match name {
        "allocator" | "scheduler" | "reaper" => false,
        "update" => manager.read(update::under_way),
        _ if PLANNED.contains(&name) => is_due(due.get(name).copied(), now),
        _ => true,
    }
}

/// Whether a planned controller whose last pass asked for `due` runs at `now`: when it
/// has not run yet, or its time has come.
fn is_due(due: Option<Option<DateTime<Utc>>>, now: DateTime<Utc>) -> bool {
    match due {
        None => true,
        Some(at) => at.is_some_and(|at| at <= now),
    }
}

/// Counts the scheduler's decisions: a task assigned, or a pending task told why it
/// cannot be (a change of its message; an unchanged reason is not counted again).
fn count_decisions(manager: &Manager, changes: &[Change]) {
    use shoal_api::TaskState;
    let decisions = &manager.instruments().scheduler_decisions;
    for change in changes {
        if let Change::Update { object: crate::store::Object::Task(t), .. } = change {
            let result = if t.status.state == TaskState::Assigned { "placed" } else { "unschedulable" };
            decisions.get_or_create(&crate::instruments::DecisionLabel { result }).inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_planned_controller_runs_in_a_timed_round_only_when_due() {
        let now = crate::testing::t0();
        assert!(is_due(None, now), "before its first pass");
        assert!(!is_due(Some(None), now), "nothing waits on time");
        assert!(!is_due(Some(Some(now + chrono::Duration::seconds(1))), now), "not yet");
        assert!(is_due(Some(Some(now)), now));
        assert!(is_due(Some(Some(now - chrono::Duration::seconds(1))), now));
    }

    #[tokio::test(start_paused = true)]
    async fn after_a_long_round_the_timer_does_not_make_up_its_ticks() {
        let mut tick = timer();
        tick.tick().await;
        // A round of 24 s, as placing 100,000 tasks took.
        tokio::time::advance(Duration::from_secs(24)).await;
        let after_round = tokio::time::Instant::now();
        tick.tick().await;
        let mut ticks = Vec::new();
        for _ in 0..3 {
            tick.tick().await;
            ticks.push(after_round.elapsed());
        }
        let secs: Vec<u64> = ticks.iter().map(|d| d.as_secs()).collect();
        assert_eq!(secs, [1, 2, 3], "one tick a second after the round, not a burst");
    }
}
