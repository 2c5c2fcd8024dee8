//! Runs the controllers while this manager leads: a round on every batch of store
//! events (at most one round per 50 ms) and at least once a second (restart delays, node timeouts),
//! proposing what each controller decides. Each round starts from the whole state,
//! so a new leader picks up where the old one stopped.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::broadcast::error::RecvError;

use super::{allocator, global, keys, reaper, replicated, scheduler, update};
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
        if *leadership.borrow() {
            // Raft's own view says no while the leadership watch (a moment behind it)
            // still says yes, or the event watch failed: try again shortly, never in
            // a tight loop (a loaded leader once spun here millions of times).
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
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
    loop {
        if !manager.is_leader() {
            return "Raft says this manager does not lead";
        }
        let (busy, refused) = round(manager, full).await;
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

/// A controller: the store in, the changes it wants out.
type Controller<'a> = dyn Fn(&crate::store::Store) -> Vec<Change> + Sync + 'a;

/// One pass of the controllers (all, or only the timed ones), each on the state its
/// predecessor left; returns the time spent reading the state (proposals aside), and
/// whether some changes were refused for another reason than a conflict.
async fn round(manager: &Manager, full: bool) -> (Duration, bool) {
    let cluster = manager.cluster();
    let limit = cluster.as_ref().map_or(5, |c| c.spec.task_history_limit);
    let pool = cluster.map(|c| c.spec.default_address_pool).unwrap_or_default();
    let stages: [(&str, &Controller<'_>); 7] = [
        ("replicated", &|s| replicated::reconcile(s, Utc::now())),
        ("global", &|s| global::reconcile(s, Utc::now())),
        ("update", &|s| update::reconcile(s, Utc::now())),
        ("allocator", &|s| allocator::allocate(s, &pool, Utc::now())),
        ("scheduler", &|s| scheduler::schedule(s, Utc::now())),
        ("reaper", &|s| reaper::reap(s, limit, Utc::now())),
        ("keys", &|s| keys::rotate(s, Utc::now(), keys::random_key)),
    ];
    let (mut busy, mut refused) = (Duration::ZERO, false);
    for (name, stage) in stages {
        if !full && !timed(name, manager) {
            continue;
        }
        let started = std::time::Instant::now();
        let changes = manager.read_long(stage);
        busy += started.elapsed();
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

/// Whether controller `name` runs in a timed round: only those that wait on time.
/// Placing, allocating and reaping change only when the store does; a rollout waits
/// on time only while it is under way.
fn timed(name: &str, manager: &Manager) -> bool {
    match name {
        "allocator" | "scheduler" | "reaper" => false,
        "update" => manager.read(update::under_way),
        _ => true,
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
