//! Task status reports from workers, applied as one transaction per batch: only the
//! node's own tasks, only forward in the state order, never a step back.

use shoal_api::{TaskState, TaskStatus};
use shoal_proto::dispatcher as pb;
use tonic::Status;

use crate::manager::{Manager, ManagerError};
use crate::store::{Change, Kind, Object, Store, StoreError, Transaction};

/// The changes a batch of reports makes to the store as it is.
pub(super) fn changes(store: &Store, node: &str, updates: &[(String, TaskStatus)]) -> Vec<Change> {
    let mut out = Vec::new();
    for (task_id, status) in updates {
        let Some(Object::Task(t)) = store.get(Kind::Task, task_id) else { continue };
        if t.node_id.as_deref() != Some(node) || status.state < t.status.state || *status == t.status {
            continue;
        }
        let mut new = t.clone();
        new.status = status.clone();
        new.status.started_at = t.status.started_at.or_else(|| {
            [&t.status, status].into_iter().find(|s| s.state == TaskState::Running).map(|s| s.timestamp)
        });
        // Several reports of one task in a batch: the last one wins.
        out.retain(|c: &Change| c.target().1 != task_id);
        out.push(Change::Update { object: Object::Task(new), expected_version: t.meta.version });
    }
    out
}

/// Applies a batch from `node`, retrying on a conflict with another writer.
pub(super) async fn apply(
    manager: &Manager,
    node: &str,
    updates: &[pb::TaskStatusUpdate],
) -> Result<(), Status> {
    let parsed: Vec<(String, TaskStatus)> = updates
        .iter()
        .map(|u| {
            serde_json::from_slice(&u.status_json)
                .map(|s| (u.task_id.clone(), s))
                .map_err(|e| Status::invalid_argument(format!("malformed task status: {e}")))
        })
        .collect::<Result<_, _>>()?;
    for _ in 0..5 {
        let changes = manager.read(|s| changes(s, node, &parsed));
        if changes.is_empty() {
            return Ok(());
        }
        let (n, proposed) = (changes.len(), std::time::Instant::now());
        let result = manager.propose(Transaction { changes }).await;
        tracing::debug!(node, changes = n, took = ?proposed.elapsed(), ok = result.is_ok(), "task statuses applied");
        match result {
            Ok(_) => return Ok(()),
            Err(ManagerError::Store(StoreError::Conflict { .. })) => continue,
            Err(e) => return Err(Status::unavailable(shoal_api::report::chain(&e))),
        }
    }
    Err(Status::aborted("the tasks kept changing; report again"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orchestrator::{create, new_task};
    use crate::testing::*;

    #[test]
    fn only_the_nodes_own_tasks_and_only_forward() {
        let svc = service("web", |_| {});
        let mut store = store_with(vec![node("n1", &[]), node("n2", &[])], vec![svc.clone()]);
        let mut t = new_task(&svc, Some(1), Some("n1"), t0());
        t.status.state = TaskState::Running;
        crate::testing::apply(&mut store, vec![create(t.clone())]);
        let report = |state| (t.id.clone(), TaskStatus::new(state, t0(), "x"));
        assert!(changes(&store, "n2", &[report(TaskState::Failed)]).is_empty(), "not n2's task");
        assert!(changes(&store, "n1", &[report(TaskState::Starting)]).is_empty(), "no step back");
        let c = changes(&store, "n1", &[report(TaskState::Running), report(TaskState::Failed)]);
        assert_eq!(c.len(), 1);
        let Change::Update { object: Object::Task(new), .. } = &c[0] else { panic!("an update") };
        assert_eq!(new.status.state, TaskState::Failed);
        assert_eq!(new.status.started_at, Some(t0()), "when it ran is kept");
    }
}
