//! Rolling updates and rollbacks. When a service's task template changes, its tasks
//! are replaced a batch (`parallelism`) at a time, stop-first or start-first, with
//! `delay` between batches once a batch runs. Tasks of the new spec that fail while
//! the rollout goes on count against `max_failure_ratio`; past it, the rollout
//! pauses, continues, or rolls back to the previous spec (`failure_action`). A new
//! task that does not run within `progress_deadline` counts as failed: Swarm waits
//! forever. Progress is kept in the service's `update_status`, so a new leader
//! resumes where the old one was.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use shoal_api::service::{FailureAction, UpdateConfig, UpdateOrder, UpdateState, UpdateStatus};
use shoal_api::{Service, ServiceMode, Task, TaskSpec, TaskState};

use super::{create, is_live, new_task, newest, set_desired};
use crate::store::queries::{services, tasks_of};
use crate::store::{Change, Object};

/// Whether a task runs what the template asks (placement aside: a change of where
/// tasks may go does not restart them).
pub fn up_to_date(task: &TaskSpec, template: &TaskSpec) -> bool {
    task.container == template.container
        && task.resources == template.resources
        && task.restart_policy == template.restart_policy
        && task.networks == template.networks
        && task.force_update == template.force_update
}

/// The changes that move every rollout on.
pub fn reconcile(store: &crate::store::Store, now: DateTime<Utc>) -> Vec<Change> {
    let mut changes = Vec::new();
    for svc in services(store) {
        if matches!(svc.spec.mode, ServiceMode::Replicated { .. } | ServiceMode::Global) {
            rollout(store, svc, now, &mut changes);
        }
    }
    changes
}

/// Whether a rollout is under way. Only then does this controller wait on time
/// (the delay between batches, the monitor period, the progress deadline); whatever
/// else it does follows a change of the store. A timed round runs it only then: at
/// 100,000 tasks each pass walks every task (about 80 ms).
pub fn under_way(store: &crate::store::Store) -> bool {
    services(store).any(|s| {
        matches!(
            s.update_status.as_ref().map(|u| u.state),
            Some(UpdateState::Updating | UpdateState::RollbackStarted)
        )
    })
}

fn put_status(svc: &Service, status: UpdateStatus, now: DateTime<Utc>, spec_swap: bool) -> Change {
    let mut new = svc.clone();
    if spec_swap && let Some(previous) = new.previous_spec.take() {
        new.previous_spec = Some(std::mem::replace(&mut new.spec, previous));
    }
    new.update_status = Some(status);
    new.meta.updated_at = now;
    Change::Update { object: Object::Service(new), expected_version: svc.meta.version }
}

fn rollout(store: &crate::store::Store, svc: &Service, now: DateTime<Utc>, changes: &mut Vec<Change>) {
    let template = &svc.spec.task_template;
    let status = svc.update_status.clone();
    let state = status.as_ref().map(|s| s.state);
    let rolling_back = matches!(state, Some(UpdateState::RollbackStarted | UpdateState::RollbackPaused));
    let cfg: &UpdateConfig = if rolling_back { &svc.spec.rollback_config } else { &svc.spec.update_config };
    let rolling = matches!(state, Some(UpdateState::Updating | UpdateState::RollbackStarted));
    let started_at = status.as_ref().and_then(|s| s.started_at);
    // Tasks this rollout made: of the new spec, created since it began.
    let since = started_at.unwrap_or(now);
    let of_rollout = |t: &&Task| up_to_date(&t.spec, template) && t.meta.created_at >= since;

    // Live tasks by slot (or node, for global services).
    let mut groups: BTreeMap<(Option<u64>, Option<&str>), Vec<&Task>> = BTreeMap::new();
    for t in tasks_of(store, &svc.id).filter(|t| is_live(t)) {
        let key = match (t.slot, &t.node_id) {
            (Some(s), _) => (Some(s), None),
            (None, Some(n)) => (None, Some(n.as_str())),
            (None, None) => continue,
        };
        groups.entry(key).or_default().push(t);
    }
    let mut dirty = Vec::new();
    let mut in_flight = Vec::new();
    let mut last_ran: Option<DateTime<Utc>> = None;
    for live in groups.values() {
        let Some(current) = newest(live.iter().copied()) else { continue };
        // Start-first leaves the old task running until the new one does (not when
        // the new one failed: then the old one keeps serving).
        if live.len() > 1
            && (current.status.state == TaskState::Running || current.desired_state > TaskState::Running)
        {
            for old in live.iter().filter(|t| t.id != current.id) {
                changes.push(set_desired(old, TaskState::Shutdown, now));
            }
        }
        if !up_to_date(&current.spec, template) {
            dirty.push(current);
        } else if current.status.state < TaskState::Running {
            in_flight.push(current);
        } else if current.status.state == TaskState::Running {
            last_ran = last_ran.max(Some(current.status.timestamp));
        }
    }

    // A rollout under way first answers for its failures.
    if rolling {
        // Failures of this rollout: its tasks that ended badly while watched, and new
        // tasks that missed the progress deadline.
        let failed: Vec<&Task> = tasks_of(store, &svc.id)
            .filter(of_rollout)
            .filter(|t| matches!(t.status.state, TaskState::Failed | TaskState::Rejected))
            .filter(|t| failed_while_watched(t, cfg.monitor))
            .chain(in_flight.iter().copied().filter(|t| {
                !cfg.progress_deadline.is_zero() && now - t.meta.created_at > duration(cfg.progress_deadline)
            }))
            .collect();
        let total = groups.len().max(1) as f64;
        if let Some(first) = failed.first()
            && failed.len() as f64 / total > cfg.max_failure_ratio
        {
            let why = format!("task {} failed or did not run in time", first.id);
            let action = if rolling_back && cfg.failure_action == FailureAction::Rollback {
                FailureAction::Pause
            } else {
                cfg.failure_action
            };
            match action {
                FailureAction::Pause => {
                    let state = if rolling_back { UpdateState::RollbackPaused } else { UpdateState::Paused };
                    let message =
                        format!("{} paused: {why}", if rolling_back { "rollback" } else { "update" });
                    changes.push(put_status(
                        svc,
                        UpdateStatus { state, started_at, completed_at: None, message },
                        now,
                        false,
                    ));
                    return;
                }
                FailureAction::Rollback if svc.previous_spec.is_some() => {
                    let message = format!("update rolled back: {why}");
                    let back = UpdateStatus {
                        state: UpdateState::RollbackStarted,
                        started_at: Some(now),
                        completed_at: None,
                        message,
                    };
                    changes.push(put_status(svc, back, now, true));
                    return;
                }
                FailureAction::Rollback | FailureAction::Continue => {}
            }
        }
    }

    if dirty.is_empty() && in_flight.is_empty() {
        // The last tasks are watched for `monitor` before the rollout ends.
        let watched_until = || {
            tasks_of(store, &svc.id)
                .filter(of_rollout)
                .filter(|t| t.status.state == TaskState::Running)
                .map(|t| later(t.status.started_at.unwrap_or(t.status.timestamp), cfg.monitor))
                .max()
        };
        if rolling && watched_until().is_some_and(|until| now < until) {
            return;
        }
        let done = match state {
            Some(UpdateState::Updating) => Some((UpdateState::Completed, "update completed")),
            Some(UpdateState::RollbackStarted) => {
                Some((UpdateState::RollbackCompleted, "rollback completed"))
            }
            _ => None,
        };
        if let Some((state, message)) = done {
            let done = UpdateStatus { state, started_at, completed_at: Some(now), message: message.into() };
            changes.push(put_status(svc, done, now, false));
        }
        return;
    }
    if dirty.is_empty() && state.is_none() {
        return;
    }
    if matches!(state, Some(UpdateState::Paused | UpdateState::RollbackPaused)) {
        return;
    }
    if !rolling {
        // A new rollout begins.
        let begun = UpdateStatus {
            state: UpdateState::Updating,
            started_at: Some(now),
            completed_at: None,
            message: "update in progress".into(),
        };
        changes.push(put_status(svc, begun, now, false));
        return;
    }

    // The next batch, once the last one runs and the delay has passed.
    if !in_flight.is_empty() || dirty.is_empty() {
        return;
    }
    if let Some(ran) = last_ran
        && now < later(ran, cfg.delay)
    {
        return;
    }
    let batch = if cfg.parallelism == 0 { dirty.len() } else { (cfg.parallelism as usize).min(dirty.len()) };
    for old in dirty.into_iter().take(batch) {
        let node = if old.slot.is_none() { old.node_id.as_deref() } else { None };
        let new = new_task(svc, old.slot, node, now);
        if cfg.order == UpdateOrder::StopFirst {
            changes.push(set_desired(old, TaskState::Shutdown, now));
        }
        changes.push(create(new));
    }
}

/// Whether a failed task of the new spec counts against the rollout: it never ran,
/// or it stopped within `monitor` of starting. A later failure is the restart
/// policy's business, as in Swarm.
fn failed_while_watched(t: &Task, monitor: std::time::Duration) -> bool {
    t.status.started_at.is_none_or(|started| t.status.timestamp <= later(started, monitor))
}

/// `t + d`, or the end of time where that overflows (times come from workers' reports).
fn later(t: chrono::DateTime<chrono::Utc>, d: std::time::Duration) -> chrono::DateTime<chrono::Utc> {
    t.checked_add_signed(duration(d)).unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC)
}

fn duration(d: std::time::Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orchestrator::replicated;
    use crate::store::{Kind, Store};
    use crate::testing::*;

    fn svc_of(store: &Store, id: &str) -> Service {
        match store.get(Kind::Service, id) {
            Some(Object::Service(s)) => s.clone(),
            _ => panic!("no service {id}"),
        }
    }

    fn run_all(store: &mut Store, now: DateTime<Utc>) {
        let c = replicated::reconcile(store, now);
        apply(store, c);
        let c = reconcile(store, now);
        apply(store, c);
    }

    /// Every pending or assigned task of the service starts running.
    fn all_run(store: &mut Store, now: DateTime<Utc>) {
        let changes: Vec<Change> = tasks(store)
            .into_iter()
            .filter(|t| is_live(t) && t.status.state < TaskState::Running)
            .map(|t| {
                let mut n = t.clone();
                n.status.state = TaskState::Running;
                n.status.timestamp = now;
                Change::Update { object: Object::Task(n), expected_version: t.meta.version }
            })
            .collect();
        apply(store, changes);
    }

    fn update_image(store: &mut Store, id: &str, image: &str, cfg: impl FnOnce(&mut UpdateConfig)) {
        let s = svc_of(store, id);
        let mut new = s.clone();
        new.previous_spec = Some(s.spec.clone());
        new.spec.task_template.container.image = image.into();
        cfg(&mut new.spec.update_config);
        new.update_status = None;
        apply(store, vec![Change::Update { object: Object::Service(new), expected_version: s.meta.version }]);
    }

    fn images(store: &Store) -> Vec<String> {
        let mut v: Vec<String> = tasks(store)
            .into_iter()
            .filter(|t| t.desired_state == TaskState::Running)
            .map(|t| t.spec.container.image)
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_rolling_update_goes_a_batch_at_a_time_and_completes() {
        let s = service("web", |s| s.mode = ServiceMode::Replicated { replicas: 3 });
        let mut store = store_with(vec![node("n1", &[])], vec![s.clone()]);
        let t = t0();
        run_all(&mut store, t);
        all_run(&mut store, t);
        assert!(!under_way(&store), "no rollout");
        update_image(&mut store, &s.id, "busybox:2", |c| {
            c.parallelism = 1;
            c.delay = std::time::Duration::from_secs(10);
        });
        assert!(!under_way(&store), "a new spec starts a rollout as a change of the store");
        run_all(&mut store, t); // the rollout begins
        assert_eq!(svc_of(&store, &s.id).update_status.map(|u| u.state), Some(UpdateState::Updating));
        assert!(under_way(&store), "the rollout waits on its delay");
        run_all(&mut store, t); // the first batch
        assert_eq!(images(&store), ["busybox", "busybox", "busybox:2"]);
        run_all(&mut store, t);
        assert_eq!(images(&store), ["busybox", "busybox", "busybox:2"], "waits for the batch to run");
        all_run(&mut store, t);
        run_all(&mut store, t + chrono::Duration::seconds(5));
        assert_eq!(images(&store).len(), 3, "and for the delay");
        for i in 1..=4 {
            run_all(&mut store, t + chrono::Duration::seconds(11 * i));
            all_run(&mut store, t + chrono::Duration::seconds(11 * i));
        }
        assert_eq!(images(&store), ["busybox:2", "busybox:2", "busybox:2"]);
        run_all(&mut store, t + chrono::Duration::seconds(100));
        assert_eq!(svc_of(&store, &s.id).update_status.map(|u| u.state), Some(UpdateState::Completed));
        assert!(!under_way(&store), "a completed rollout waits on nothing");
    }

    #[test]
    fn the_last_batch_is_watched_for_monitor_and_only_early_failures_count() {
        let s = service("web", |s| s.mode = ServiceMode::Replicated { replicas: 1 });
        let mut store = store_with(vec![node("n1", &[])], vec![s.clone()]);
        let t = t0();
        run_all(&mut store, t);
        all_run(&mut store, t);
        update_image(&mut store, &s.id, "busybox:2", |c| c.monitor = std::time::Duration::from_secs(5));
        run_all(&mut store, t);
        run_all(&mut store, t);
        all_run(&mut store, t + chrono::Duration::seconds(1));
        run_all(&mut store, t + chrono::Duration::seconds(3));
        let state = |store: &Store| svc_of(store, &s.id).update_status.map(|u| u.state);
        assert_eq!(state(&store), Some(UpdateState::Updating), "watched until 1 s + 5 s");
        run_all(&mut store, t + chrono::Duration::seconds(7));
        assert_eq!(state(&store), Some(UpdateState::Completed));

        let monitor = std::time::Duration::from_secs(5);
        let mut task = new_task(&s, Some(1), Some("n1"), t);
        task.status.state = TaskState::Failed;
        task.status.timestamp = t + chrono::Duration::seconds(4);
        assert!(failed_while_watched(&task, monitor), "never ran");
        task.status.started_at = Some(t);
        assert!(failed_while_watched(&task, monitor), "failed 4 s after it started");
        task.status.timestamp = t + chrono::Duration::seconds(6);
        assert!(!failed_while_watched(&task, monitor), "ran past the monitor window");
    }

    #[test]
    fn a_failing_update_rolls_back_when_asked() {
        let s = service("web", |s| s.mode = ServiceMode::Replicated { replicas: 2 });
        let mut store = store_with(vec![node("n1", &[])], vec![s.clone()]);
        let t = t0();
        run_all(&mut store, t);
        all_run(&mut store, t);
        update_image(&mut store, &s.id, "broken", |c| {
            c.parallelism = 1;
            c.failure_action = FailureAction::Rollback;
        });
        run_all(&mut store, t);
        run_all(&mut store, t);
        // The new task fails.
        let bad = tasks(&store).into_iter().find(|t| t.spec.container.image == "broken").expect("a new task");
        let mut failed = bad.clone();
        failed.status.state = TaskState::Failed;
        apply(
            &mut store,
            vec![Change::Update { object: Object::Task(failed), expected_version: bad.meta.version }],
        );
        run_all(&mut store, t + chrono::Duration::seconds(1));
        let after = svc_of(&store, &s.id);
        assert_eq!(after.update_status.as_ref().map(|u| u.state), Some(UpdateState::RollbackStarted));
        assert_eq!(after.spec.task_template.container.image, "busybox");
        for i in 2..10 {
            run_all(&mut store, t + chrono::Duration::seconds(10 * i));
            all_run(&mut store, t + chrono::Duration::seconds(10 * i));
        }
        assert_eq!(images(&store), ["busybox", "busybox"]);
        assert_eq!(
            svc_of(&store, &s.id).update_status.map(|u| u.state),
            Some(UpdateState::RollbackCompleted)
        );
    }

    #[test]
    fn start_first_keeps_the_old_task_until_the_new_one_runs_and_pause_stops() {
        let s = service("web", |s| s.mode = ServiceMode::Replicated { replicas: 1 });
        let mut store = store_with(vec![node("n1", &[])], vec![s.clone()]);
        let t = t0();
        run_all(&mut store, t);
        all_run(&mut store, t);
        update_image(&mut store, &s.id, "busybox:2", |c| c.order = UpdateOrder::StartFirst);
        run_all(&mut store, t);
        run_all(&mut store, t);
        assert_eq!(images(&store), ["busybox", "busybox:2"], "both run for a while");
        all_run(&mut store, t);
        run_all(&mut store, t);
        assert_eq!(images(&store), ["busybox:2"]);

        update_image(&mut store, &s.id, "broken", |c| c.failure_action = FailureAction::Pause);
        run_all(&mut store, t);
        run_all(&mut store, t);
        let bad = tasks(&store).into_iter().find(|t| t.spec.container.image == "broken").expect("a new task");
        let mut failed = bad.clone();
        failed.status.state = TaskState::Rejected;
        apply(
            &mut store,
            vec![Change::Update { object: Object::Task(failed), expected_version: bad.meta.version }],
        );
        run_all(&mut store, t);
        let after = svc_of(&store, &s.id).update_status.expect("a status");
        assert_eq!(after.state, UpdateState::Paused);
        assert!(after.message.contains(&bad.id), "{}", after.message);
    }
}
