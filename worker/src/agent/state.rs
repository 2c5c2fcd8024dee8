//! The agent's state, owned by the reconciler alone: the assigned tasks and their
//! payloads, what has been reported, the reports not yet sent, and which tasks have
//! an action or a health watch under way. Applying assignments and planning a pass
//! are plain functions over it.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use shoal_api::netmap::NetItem;
use shoal_api::{Task, TaskState, TaskStatus};
use shoal_proto::dispatcher as pb;

use super::node::{Payload, Payloads, TaskError, error_chain, error_status};
use super::plan::{self, Action, Local};

/// Why an assignment could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum AssignmentError {
    /// The task's JSON does not decode into a task.
    #[error(
        "the task sent by the manager cannot be read by this worker: \
         upgrade the worker to the managers' version"
    )]
    Undecodable(#[source] serde_json::Error),
}

impl TaskError for AssignmentError {
    fn task_state(&self) -> TaskState {
        TaskState::Rejected
    }

    fn summary(&self) -> &'static str {
        "undecodable task"
    }
}

/// What the reconciler is to do after a pass.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Prepare and start the task's container.
    Start(Task),
    /// Stop the task's container.
    Stop(Task),
    /// Remove the container of a task no longer assigned.
    Sweep(String),
    /// Watch the running task's health.
    Watch(Task),
}

/// Everything the agent knows; see the module docs.
#[derive(Debug, Default)]
pub struct State {
    /// Tasks assigned to this node, by id.
    pub tasks: BTreeMap<String, Task>,
    /// Secrets and configs for them.
    pub payloads: Payloads,
    /// Whether a complete list has arrived since the agent started (before that,
    /// containers without an assignment are not touched).
    pub synced: bool,
    /// The furthest state reported (or queued) per task.
    pub reported: HashMap<String, TaskState>,
    /// Reports not yet accepted by a manager, by task.
    pub outbox: BTreeMap<String, TaskStatus>,
    /// Tasks an action is under way for.
    pub busy: HashSet<String>,
    /// Tasks whose health is being watched.
    pub watched: HashSet<String>,
    /// The network map, by item key.
    pub netmap: BTreeMap<String, NetItem>,
    /// The map or the tasks changed since the node's networking was last told.
    pub net_dirty: bool,
}

impl State {
    /// Queues a report unless a state as far along was told already (RUNNING may
    /// be told again: "healthy" after "started"). Returns whether it was queued.
    pub fn queue(&mut self, task_id: &str, status: TaskStatus) -> bool {
        let before = self.reported.get(task_id).copied();
        if before.is_some_and(|s| s >= status.state && status.state != TaskState::Running) {
            return false;
        }
        self.reported.insert(task_id.to_owned(), status.state.max(before.unwrap_or(status.state)));
        self.outbox.insert(task_id.to_owned(), status);
        true
    }

    /// Takes in a message of assignments: a complete list replaces what was
    /// assigned. A task that cannot be decoded is reported REJECTED with the
    /// reason. Returns whether a report was queued.
    pub fn apply(&mut self, msg: pb::AssignmentsMessage) -> bool {
        use pb::assignment_change::{Action as A, Item};
        let complete = msg.kind == pb::assignments_message::Kind::Complete as i32;
        if complete {
            self.tasks.clear();
            self.payloads.clear();
            self.netmap.clear();
        }
        self.net_dirty = true;
        let mut queued = false;
        for change in msg.changes {
            let remove = change.action == A::Remove as i32;
            match change.item {
                Some(Item::TaskJson(json)) if remove => {
                    if let Some(id) = task_id(&json) {
                        self.tasks.remove(&id);
                    }
                }
                Some(Item::TaskJson(json)) => match serde_json::from_slice::<Task>(&json) {
                    Ok(t) => {
                        self.tasks.insert(t.id.clone(), t);
                    }
                    Err(e) => {
                        let e = AssignmentError::Undecodable(e);
                        match task_id(&json) {
                            Some(id) => {
                                tracing::warn!(task = %id, error = %error_chain(&e), "task rejected");
                                queued |= self.queue(&id, error_status(&e));
                            }
                            // Nothing names the task, so there is no one to tell.
                            None => {
                                tracing::error!(error = %error_chain(&e), "an assigned task without an id")
                            }
                        }
                    }
                },
                Some(Item::Payload(p)) => {
                    let key = format!("{}/{}", p.kind, p.id);
                    // Names only: the data is never logged.
                    if remove {
                        if let Some(old) = self.payloads.remove(&key) {
                            tracing::info!(kind = %old.kind, name = %old.name, "forgot a payload no task here needs");
                            self.payloads.remove(&format!("{}/{}", old.kind, old.name));
                        }
                    } else {
                        if !self.payloads.contains_key(&key) {
                            tracing::info!(kind = %p.kind, name = %p.name, "received a payload for a task here");
                        }
                        let payload = Payload { kind: p.kind.clone(), name: p.name.clone(), data: p.data };
                        self.payloads.insert(format!("{}/{}", p.kind, p.name), payload.clone());
                        self.payloads.insert(key, payload);
                    }
                }
                Some(Item::NetItemJson(json)) => match serde_json::from_slice::<NetItem>(&json) {
                    Ok(item) => {
                        self.netmap.insert(item.key(), item);
                    }
                    Err(e) => tracing::error!(
                        error = %e,
                        "a network map item this worker cannot read: upgrade the worker to the managers' version"
                    ),
                },
                Some(Item::NetKey(key)) => {
                    self.netmap.remove(&key);
                }
                None => {}
            }
        }
        if complete {
            self.synced = true;
        }
        queued
    }

    /// One pass: every assigned task and every task container (`locals`),
    /// compared. Reports are queued here; the actions to take are returned, and
    /// their tasks marked busy (or watched) until the reconciler hears back.
    /// `gated` says whether a task has a health check.
    pub fn pass(
        &mut self,
        locals: &HashMap<String, Local>,
        gated: impl Fn(&Task) -> bool,
        now: DateTime<Utc>,
    ) -> (Vec<Effect>, bool) {
        let mut effects = Vec::new();
        let mut queued = false;
        let tasks: Vec<Task> = self.tasks.values().cloned().collect();
        for task in tasks {
            let local = locals.get(&task.id).cloned().unwrap_or(Local::Absent);
            let gated = gated(&task);
            // A running container with a health check is watched.
            if gated
                && plan::wants_run(&task)
                && local == Local::Running
                && self.watched.insert(task.id.clone())
            {
                effects.push(Effect::Watch(task.clone()));
            }
            // An action under way reports for itself; the next pass sees its result.
            if self.busy.contains(&task.id) {
                continue;
            }
            let reported = self.reported.get(&task.id).copied().unwrap_or(TaskState::New);
            for action in plan::plan(&task, &local, reported, gated, now) {
                let effect = match action {
                    Action::Report(status) => {
                        queued |= self.queue(&task.id, status);
                        continue;
                    }
                    Action::Start => Effect::Start(task.clone()),
                    Action::Stop => Effect::Stop(task.clone()),
                };
                if self.busy.insert(task.id.clone()) {
                    effects.push(effect);
                }
            }
        }
        // Containers of tasks no longer assigned go (once the manager's list is known).
        if self.synced {
            let mut unassigned: Vec<&String> =
                locals.keys().filter(|id| !self.tasks.contains_key(*id)).collect();
            unassigned.sort();
            for id in unassigned {
                if self.busy.insert(id.clone()) {
                    effects.push(Effect::Sweep(id.clone()));
                }
            }
        }
        (effects, queued)
    }
}

/// The `id` field of a task's JSON, if it has one.
fn task_id(json: &[u8]) -> Option<String> {
    let v = serde_json::from_slice::<serde_json::Value>(json).ok()?;
    v.get("id").and_then(|i| i.as_str()).map(str::to_owned)
}
