//! The restart policy: whether a slot's stopped task is replaced, and when. The
//! history it counts is the slot's earlier tasks in the store (the reaper keeps
//! enough of them), so a new leader decides as the old one would have.

use chrono::{DateTime, Utc};
use shoal_api::task_spec::RestartCondition;
use shoal_api::{Task, TaskState};

/// What to do with the current task of a slot (or of a node, for global services).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// It runs, or is on its way: leave it.
    Keep,
    /// Stop it (if it still runs) and start a replacement now.
    Replace,
    /// Replace it once the restart delay has passed, at this time.
    ReplaceAt(DateTime<Utc>),
    /// It stopped and the policy says no more: the slot stays with it, for good
    /// (`None`), or until this time, when an attempt leaves the restart window.
    GiveUp(Option<DateTime<Utc>>),
}

impl Verdict {
    /// When this verdict may change with time alone (nothing else changing): the end
    /// of a restart delay, or an attempt leaving the window.
    pub fn due(self) -> Option<DateTime<Utc>> {
        match self {
            Verdict::ReplaceAt(at) | Verdict::GiveUp(Some(at)) => Some(at),
            Verdict::Keep | Verdict::Replace | Verdict::GiveUp(None) => None,
        }
    }
}

/// Decides about `task`, the newest live task of its slot; `earlier` are the slot's
/// other tasks; `node_lost` says its node is gone, down or drained.
pub fn decide(task: &Task, earlier: &[&Task], node_lost: bool, now: DateTime<Utc>) -> Verdict {
    let state = task.status.state;
    if node_lost && (!state.is_terminal() || state == TaskState::Complete && task.job_iteration.is_none()) {
        // Not a failure of the task: moved without delay and without counting.
        return Verdict::Replace;
    }
    if !state.is_terminal() {
        return Verdict::Keep;
    }
    let policy = &task.spec.restart_policy;
    let succeeded = state == TaskState::Complete;
    if task.job_iteration.is_some() && succeeded {
        return Verdict::Keep;
    }
    match policy.condition {
        RestartCondition::None => return Verdict::GiveUp(None),
        RestartCondition::OnFailure if succeeded => return Verdict::GiveUp(None),
        _ => {}
    }
    if policy.max_attempts > 0 {
        let window = (!policy.window.is_zero())
            .then(|| chrono::Duration::from_std(policy.window).unwrap_or(chrono::Duration::MAX));
        let window_start = window.map(|w| now.checked_sub_signed(w).unwrap_or(DateTime::<Utc>::MIN_UTC));
        // The attempts counted, and the oldest of them (one pass, nothing collected:
        // this runs for every slot in every controller pass).
        let (attempts, oldest) = earlier
            .iter()
            .filter(|t| t.spec_version == task.spec_version && t.status.state.is_terminal())
            .map(|t| t.status.timestamp)
            .filter(|at| window_start.is_none_or(|start| *at >= start))
            .fold((0u64, None::<DateTime<Utc>>), |(n, oldest), at| {
                (n + 1, Some(oldest.map_or(at, |o| o.min(at))))
            });
        if attempts >= policy.max_attempts {
            // The oldest attempt counted stops counting just after it is a window old.
            let until = window.zip(oldest).and_then(|(w, oldest)| {
                oldest.checked_add_signed(w)?.checked_add_signed(chrono::Duration::nanoseconds(1))
            });
            return Verdict::GiveUp(until);
        }
    }
    // Checked: the time is a worker's report, and a far one must not overflow.
    let at = chrono::Duration::from_std(policy.delay)
        .ok()
        .and_then(|d| task.status.timestamp.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC);
    if now >= at { Verdict::Replace } else { Verdict::ReplaceAt(at) }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::orchestrator::new_task;
    use crate::testing::{service, t0};

    fn stopped(state: TaskState, at_secs: i64, spec: impl FnOnce(&mut shoal_api::ServiceSpec)) -> Task {
        let svc = service("web", spec);
        let mut t = new_task(&svc, Some(1), Some("n1"), t0());
        t.status.state = state;
        t.status.timestamp = t0() + chrono::Duration::seconds(at_secs);
        t
    }

    #[test]
    fn running_tasks_stay_and_lost_nodes_move_them_at_once() {
        let t = stopped(TaskState::Running, 0, |_| {});
        assert_eq!(decide(&t, &[], false, t0()), Verdict::Keep);
        assert_eq!(decide(&t, &[], true, t0()), Verdict::Replace);
    }

    #[test]
    fn the_delay_and_the_condition_are_honoured() {
        let failed = stopped(TaskState::Failed, 0, |_| {});
        assert_eq!(
            decide(&failed, &[], false, t0()),
            Verdict::ReplaceAt(t0() + chrono::Duration::seconds(5))
        );
        assert_eq!(decide(&failed, &[], false, t0() + chrono::Duration::seconds(5)), Verdict::Replace);
        let done = stopped(TaskState::Complete, 0, |s| {
            s.task_template.restart_policy.condition = RestartCondition::OnFailure;
        });
        assert_eq!(decide(&done, &[], false, t0() + chrono::Duration::seconds(60)), Verdict::GiveUp(None));
        let never = stopped(TaskState::Failed, 0, |s| {
            s.task_template.restart_policy.condition = RestartCondition::None
        });
        assert_eq!(decide(&never, &[], false, t0() + chrono::Duration::seconds(60)), Verdict::GiveUp(None));
    }

    #[test]
    fn attempts_are_counted_from_the_history_within_the_window() {
        let spec = |s: &mut shoal_api::ServiceSpec| {
            s.task_template.restart_policy.max_attempts = 2;
            s.task_template.restart_policy.window = Duration::from_secs(60);
            s.task_template.restart_policy.delay = Duration::ZERO;
        };
        let now = t0() + chrono::Duration::seconds(100);
        let current = stopped(TaskState::Failed, 100, spec);
        let old1 = stopped(TaskState::Failed, 90, spec);
        let old2 = stopped(TaskState::Failed, 95, spec);
        let ancient = stopped(TaskState::Failed, 10, spec);
        assert_eq!(decide(&current, &[&old1], false, now), Verdict::Replace);
        let given_up = decide(&current, &[&old1, &old2], false, now);
        let old1_leaves = t0() + chrono::Duration::seconds(150) + chrono::Duration::nanoseconds(1);
        assert_eq!(
            given_up,
            Verdict::GiveUp(Some(old1_leaves)),
            "until the oldest attempt leaves the window"
        );
        assert_eq!(given_up.due(), Some(old1_leaves));
        assert_eq!(
            decide(&current, &[&old1, &old2], false, old1_leaves - chrono::Duration::nanoseconds(1)),
            given_up,
            "the last instant it counts"
        );
        assert_eq!(
            decide(&current, &[&old1, &old2], false, old1_leaves),
            Verdict::Replace,
            "one attempt left"
        );
        assert_eq!(decide(&current, &[&old1, &ancient], false, now), Verdict::Replace, "outside the window");
        let mut other_version = old2.clone();
        other_version.spec_version += 1;
        assert_eq!(
            decide(&current, &[&old1, &other_version], false, now),
            Verdict::Replace,
            "reset by an update"
        );
    }
}
