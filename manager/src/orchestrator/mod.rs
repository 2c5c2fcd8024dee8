//! Leader-only controllers that turn declared services into tasks on nodes. Each is
//! a pure function from the store (and the clock) to the changes to propose:
//!
//! - [`replicated`]: slots 1..=N of replicated services and replicated jobs;
//! - [`global`]: one task per eligible node for global services and global jobs;
//! - [`restart`]: whether and when a stopped task is replaced (its policy, counted
//!   from the task history in the store, so a new leader honours it);
//! - [`update`]: rolling updates and rollbacks, a batch at a time;
//! - [`allocator`]: overlay addresses for services, new tasks and nodes;
//! - [`scheduler`]: pending tasks to nodes (filters, then spread);
//! - [`reaper`]: removed tasks deleted, history kept to the cluster's limit;
//! - [`keys`]: the data-path keys of encrypted overlays, made and rotated.
//!
//! [`runner`] runs them while this manager leads and proposes what they decide.

pub mod allocator;
pub mod global;
pub mod keys;
pub mod reaper;
pub mod replicated;
pub mod restart;
pub mod runner;
pub mod scheduler;
pub mod update;

use chrono::{DateTime, Utc};
use shoal_api::{Meta, Service, Task, TaskState, TaskStatus};

use crate::store::{Change, Object};

/// What a controller decided: the changes to propose now, and the earliest time its
/// decisions may change with time alone, while the store stays as it is (a restart
/// delay ending, an attempt leaving the restart window). The runner's timed rounds
/// skip a controller until then.
#[derive(Debug, Default)]
pub struct Plan {
    /// The changes to propose.
    pub changes: Vec<Change>,
    /// When to look again without a store change; `None`: only after one.
    pub due: Option<DateTime<Utc>>,
}

impl Plan {
    /// Notes a time the decisions may change at (keeping the earliest).
    pub(crate) fn due_at(&mut self, at: Option<DateTime<Utc>>) {
        if let Some(at) = at {
            self.due = Some(self.due.map_or(at, |d| d.min(at)));
        }
    }
}

/// A controller that never waits on time: its changes, nothing due.
impl From<Vec<Change>> for Plan {
    fn from(changes: Vec<Change>) -> Plan {
        Plan { changes, due: None }
    }
}

/// A task the orchestrator still wants (not told to shut down or go away).
pub(crate) fn is_live(t: &Task) -> bool {
    t.desired_state <= TaskState::Running
        || (t.desired_state == TaskState::Complete && t.job_iteration.is_some())
}

/// A new task of `service`: pending, for the scheduler (or preassigned to `node`);
/// NEW first if it needs overlay addresses, which the allocator gives it.
pub(crate) fn new_task(service: &Service, slot: Option<u64>, node: Option<&str>, now: DateTime<Utc>) -> Task {
    let job = service.spec.mode.is_job();
    Task {
        id: shoal_api::object::new_id(),
        meta: Meta::new(now),
        service_id: service.id.clone(),
        slot,
        node_id: node.map(str::to_owned),
        spec: service.spec.task_template.clone(),
        spec_version: service.meta.version,
        desired_state: if job { TaskState::Complete } else { TaskState::Running },
        status: if allocator::needs_addresses(service) {
            TaskStatus::new(TaskState::New, now, "waiting for network addresses")
        } else {
            TaskStatus::new(TaskState::Pending, now, "waiting for a node")
        },
        networks: Vec::new(),
        job_iteration: job.then_some(service.meta.version),
    }
}

/// The change that creates `task`.
pub(crate) fn create(task: Task) -> Change {
    Change::Create { object: Object::Task(task) }
}

/// The change that sets a task's desired state (compare-and-set on its version).
pub(crate) fn set_desired(task: &Task, state: TaskState, now: DateTime<Utc>) -> Change {
    let mut t = task.clone();
    t.desired_state = state;
    t.meta.updated_at = now;
    Change::Update { object: Object::Task(t), expected_version: task.meta.version }
}

/// The newest of some tasks: by creation time, then by version (a task written
/// later was created no earlier), then by id, so every manager agrees.
pub(crate) fn newest<'a>(tasks: impl Iterator<Item = &'a Task>) -> Option<&'a Task> {
    tasks.max_by(|a, b| {
        (a.meta.created_at, a.meta.version, &a.id).cmp(&(b.meta.created_at, b.meta.version, &b.id))
    })
}
