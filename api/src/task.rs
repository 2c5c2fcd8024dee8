//! Tasks: one run of a service's container on one node. A task is immutable in its
//! spec and runs once; a restart, an update or a reschedule makes a new task in the
//! same slot (replicated) or for the same node (global).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::object::Meta;
use crate::task_spec::TaskSpec;

/// A stored task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Task {
    /// Object id.
    pub id: String,
    /// Version and timestamps.
    #[serde(flatten)]
    pub meta: Meta,
    /// The service the task belongs to.
    pub service_id: String,
    /// Slot number 1..=replicas for replicated services; `None` for global ones.
    #[serde(default)]
    pub slot: Option<u64>,
    /// The node running it: chosen by the scheduler, or preset for global services.
    #[serde(default)]
    pub node_id: Option<String>,
    /// A copy of the service's task template when the task was made.
    pub spec: TaskSpec,
    /// The service version whose spec this is.
    pub spec_version: u64,
    /// The state the orchestrator wants: RUNNING normally, READY while held back,
    /// SHUTDOWN or REMOVE to stop it, COMPLETE for jobs.
    pub desired_state: TaskState,
    /// What the task is actually doing, as last reported.
    pub status: TaskStatus,
    /// Addresses on the networks the task joins.
    #[serde(default)]
    pub networks: Vec<NetworkAttachment>,
    /// For jobs: which run of the job this task belongs to.
    #[serde(default)]
    pub job_iteration: Option<u64>,
}

impl Task {
    /// The task's display name: `<service>.<slot>` or `<service>.<node id>`.
    pub fn display_name(&self, service_name: &str) -> String {
        match (self.slot, &self.node_id) {
            (Some(slot), _) => format!("{service_name}.{slot}"),
            (None, Some(node)) => format!("{service_name}.{node}"),
            (None, None) => format!("{service_name}.{}", self.id),
        }
    }
}

/// The 14 task states of SwarmKit, in order. States only move forward; the order of
/// the variants is that order, so `a < b` means `a` comes before `b`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Created by an orchestrator.
    New,
    /// Resources (IPs, ports) allocated; waiting for the scheduler.
    Pending,
    /// Placed on a node and sent to its agent.
    Assigned,
    /// The agent took it.
    Accepted,
    /// The agent is pulling the image and preparing networks and volumes.
    Preparing,
    /// Prepared; waits here while its desired state is READY.
    Ready,
    /// Starting, and waiting for its health check to pass.
    Starting,
    /// Running (and healthy, if it has a health check).
    Running,
    /// Exited 0.
    Complete,
    /// Stopped because the orchestrator asked.
    Shutdown,
    /// Exited non-zero, turned unhealthy, or failed to start.
    Failed,
    /// Could not run on its node (image pull error, host port in use…).
    Rejected,
    /// To be removed (service deleted or scaled down).
    Remove,
    /// Its node was down too long; its resources are freed.
    Orphaned,
}

impl TaskState {
    /// All states, in order.
    pub const ALL: [TaskState; 14] = [
        TaskState::New,
        TaskState::Pending,
        TaskState::Assigned,
        TaskState::Accepted,
        TaskState::Preparing,
        TaskState::Ready,
        TaskState::Starting,
        TaskState::Running,
        TaskState::Complete,
        TaskState::Shutdown,
        TaskState::Failed,
        TaskState::Rejected,
        TaskState::Remove,
        TaskState::Orphaned,
    ];

    /// SwarmKit's numeric value of the state (NEW 0 … ORPHANED 832), for interop.
    pub fn swarm_value(self) -> u32 {
        match self {
            TaskState::New => 0,
            TaskState::Pending => 64,
            TaskState::Assigned => 192,
            TaskState::Accepted => 256,
            TaskState::Preparing => 320,
            TaskState::Ready => 384,
            TaskState::Starting => 448,
            TaskState::Running => 512,
            TaskState::Complete => 576,
            TaskState::Shutdown => 640,
            TaskState::Failed => 704,
            TaskState::Rejected => 768,
            TaskState::Remove => 800,
            TaskState::Orphaned => 832,
        }
    }

    /// True once the task has stopped for good (COMPLETE and after).
    pub fn is_terminal(self) -> bool {
        self > TaskState::Running
    }

    /// The state's name in lower case, as the API and CLI show it.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::New => "new",
            TaskState::Pending => "pending",
            TaskState::Assigned => "assigned",
            TaskState::Accepted => "accepted",
            TaskState::Preparing => "preparing",
            TaskState::Ready => "ready",
            TaskState::Starting => "starting",
            TaskState::Running => "running",
            TaskState::Complete => "complete",
            TaskState::Shutdown => "shutdown",
            TaskState::Failed => "failed",
            TaskState::Rejected => "rejected",
            TaskState::Remove => "remove",
            TaskState::Orphaned => "orphaned",
        }
    }
}

impl std::fmt::Display for TaskState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a task is doing, as last reported by its agent (or set by a manager).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TaskStatus {
    /// The current state.
    pub state: TaskState,
    /// When the state was reached.
    pub timestamp: DateTime<Utc>,
    /// What is happening, in words ("pulling image", "started").
    #[serde(default)]
    pub message: String,
    /// Why the task failed or could not be placed; empty when it did not.
    #[serde(default)]
    pub error: Option<String>,
    /// The runtime's container id, once created.
    #[serde(default)]
    pub container_id: Option<String>,
    /// Exit code, once exited.
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// When the task was first seen running (kept in later statuses; set by the
    /// manager), so a rollout knows whether a failure came within its `monitor`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
}

impl TaskStatus {
    /// A status in `state` at `timestamp` with a message.
    pub fn new(state: TaskState, timestamp: DateTime<Utc>, message: impl Into<String>) -> Self {
        TaskStatus {
            state,
            timestamp,
            message: message.into(),
            error: None,
            container_id: None,
            exit_code: None,
            started_at: None,
        }
    }
}

/// A task's place on one overlay network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NetworkAttachment {
    /// Network id.
    pub network_id: String,
    /// The task's addresses with prefix length, e.g. `10.0.1.5/24`.
    #[schema(value_type = Vec<String>)]
    pub addresses: Vec<ipnet::Ipv4Net>,
    /// DNS names of the task on the network besides the service name.
    #[serde(default)]
    pub aliases: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_are_ordered_like_swarmkit() {
        let values: Vec<u32> = TaskState::ALL.iter().map(|s| s.swarm_value()).collect();
        assert!(values.windows(2).all(|w| w[0] < w[1]));
        assert!(TaskState::ALL.windows(2).all(|w| w[0] < w[1]));
        assert!(TaskState::Ready < TaskState::Starting);
        assert!(!TaskState::Running.is_terminal());
        assert!(TaskState::Failed.is_terminal());
    }

    #[test]
    fn state_names_match_serde() {
        for s in TaskState::ALL {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
    }
}
