//! What the agent does about one task, given what the manager wants and what the
//! container is doing: a pure function, tested without containers.

use chrono::{DateTime, Utc};
use shoal_api::{Task, TaskState, TaskStatus};

/// What a task's container is doing on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Local {
    /// There is none.
    Absent,
    /// Its program runs.
    Running,
    /// It ended.
    Exited {
        /// Exit code, if it exited by itself.
        code: Option<i32>,
        /// Signal, if one killed it.
        signal: Option<i32>,
        /// The kernel OOM-killed a process of it.
        oom_killed: bool,
        /// When.
        at: DateTime<Utc>,
    },
    /// Its shim vanished without recording an exit.
    Lost,
}

/// One step for the executor.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Prepare (find or pull the image) and start the task's container.
    Start,
    /// Stop the container (stop signal, grace period, then SIGKILL).
    Stop,
    /// Tell the manager.
    Report(TaskStatus),
}

/// Whether the manager wants the task to run (or to run to completion).
pub fn wants_run(t: &Task) -> bool {
    t.desired_state == TaskState::Running
        || (t.desired_state == TaskState::Complete && t.job_iteration.is_some())
}

/// The status an ended container gives its task.
pub fn exit_status(local: &Local) -> Option<TaskStatus> {
    let Local::Exited { code, signal, oom_killed, at } = local else { return None };
    let mut s = match (code, signal, oom_killed) {
        (Some(0), _, false) => TaskStatus::new(TaskState::Complete, *at, "finished"),
        (_, _, true) => {
            let mut s = TaskStatus::new(TaskState::Failed, *at, "ran out of memory");
            s.error = Some("the container was OOM killed: raise its memory limit".into());
            s
        }
        (Some(c), _, _) => {
            let mut s = TaskStatus::new(TaskState::Failed, *at, "exited");
            s.error = Some(format!("task: non-zero exit ({c})"));
            s
        }
        (None, Some(sig), _) => {
            let mut s = TaskStatus::new(TaskState::Failed, *at, "killed");
            s.error = Some(format!("task: killed by signal {sig}"));
            s
        }
        (None, None, _) => TaskStatus::new(TaskState::Failed, *at, "exited"),
    };
    s.exit_code = *code;
    Some(s)
}

/// The steps for an assigned task; `reported` is the furthest state already told;
/// `gated`: the task has a health check, so it reports RUNNING only once healthy.
pub fn plan(task: &Task, local: &Local, reported: TaskState, gated: bool, now: DateTime<Utc>) -> Vec<Action> {
    let told = reported.max(task.status.state);
    if told.is_terminal() {
        // Nothing more to say; a stop may still be due if it runs anyway.
        return if *local == Local::Running && !wants_run(task) { vec![Action::Stop] } else { Vec::new() };
    }
    let report = |state, message: &str| Action::Report(TaskStatus::new(state, now, message));
    if wants_run(task) {
        match local {
            Local::Absent if told < TaskState::Starting => vec![Action::Start],
            Local::Absent => {
                let mut s = TaskStatus::new(TaskState::Failed, now, "container gone");
                s.error = Some("the task's container disappeared from this node".into());
                vec![Action::Report(s)]
            }
            // With a health check, the health watch says when it runs (healthy).
            Local::Running if told < TaskState::Running && !gated => {
                vec![report(TaskState::Running, "started")]
            }
            Local::Running if told < TaskState::Starting => vec![report(TaskState::Starting, "starting")],
            Local::Running => Vec::new(),
            Local::Exited { .. } => exit_status(local).map(Action::Report).into_iter().collect(),
            Local::Lost => {
                let mut s = TaskStatus::new(TaskState::Failed, now, "lost");
                s.error = Some("the container's shim was killed; its exit status is unknown".into());
                vec![Action::Report(s)]
            }
        }
    } else {
        match local {
            Local::Running => vec![Action::Stop],
            // Stopped because it was asked to: SHUTDOWN, whatever the exit.
            Local::Exited { code, at, .. } => {
                let mut s = TaskStatus::new(TaskState::Shutdown, *at, "shut down");
                s.exit_code = *code;
                vec![Action::Report(s)]
            }
            Local::Absent | Local::Lost => vec![report(TaskState::Shutdown, "shut down")],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(desired: TaskState, state: TaskState) -> Task {
        let mut t = crate::agent::tests::task("t1", desired);
        t.status = TaskStatus::new(state, t.status.timestamp, "");
        t
    }

    fn exited(code: i32) -> Local {
        Local::Exited { code: Some(code), signal: None, oom_killed: false, at: Utc::now() }
    }

    fn states(actions: &[Action]) -> Vec<String> {
        actions
            .iter()
            .map(|a| match a {
                Action::Report(s) => format!("report {}", s.state),
                other => format!("{other:?}").to_lowercase(),
            })
            .collect()
    }

    #[test]
    fn an_assigned_task_starts_and_its_exit_is_reported_once() {
        let t = task(TaskState::Running, TaskState::Assigned);
        let now = Utc::now();
        assert_eq!(states(&plan(&t, &Local::Absent, TaskState::Assigned, false, now)), ["start"]);
        assert_eq!(states(&plan(&t, &Local::Running, TaskState::Starting, false, now)), ["report running"]);
        assert!(plan(&t, &Local::Running, TaskState::Running, false, now).is_empty());
        let failed = plan(&t, &exited(3), TaskState::Running, false, now);
        let Action::Report(s) = &failed[0] else { panic!("a report") };
        assert_eq!(
            (s.state, s.exit_code, s.error.as_deref()),
            (TaskState::Failed, Some(3), Some("task: non-zero exit (3)"))
        );
        assert!(plan(&t, &exited(3), TaskState::Failed, false, now).is_empty(), "told already");
        assert_eq!(states(&plan(&t, &exited(0), TaskState::Running, false, now)), ["report complete"]);
    }

    #[test]
    fn shutdown_stops_a_running_container_and_settles_the_rest() {
        let t = task(TaskState::Shutdown, TaskState::Running);
        let now = Utc::now();
        assert_eq!(states(&plan(&t, &Local::Running, TaskState::Running, false, now)), ["stop"]);
        assert_eq!(states(&plan(&t, &Local::Absent, TaskState::Assigned, false, now)), ["report shutdown"]);
        let killed = Local::Exited { code: None, signal: Some(15), oom_killed: false, at: now };
        assert_eq!(states(&plan(&t, &killed, TaskState::Running, false, now)), ["report shutdown"]);
        let vanished = task(TaskState::Running, TaskState::Running);
        assert_eq!(
            states(&plan(&vanished, &Local::Absent, TaskState::Running, false, now)),
            ["report failed"]
        );
        let oom = Local::Exited { code: Some(137), signal: None, oom_killed: true, at: now };
        let Action::Report(s) = &plan(&vanished, &oom, TaskState::Running, false, now)[0] else {
            panic!("a report")
        };
        assert_eq!(s.message, "ran out of memory");
    }
}
