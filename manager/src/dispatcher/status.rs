//! Task status reports from workers, applied as one transaction per batch (split
//! when one would be too large): only the node's own tasks, only forward in the state
//! order, never a step back, never a state only the manager sets, never a time off
//! the calendar, and never text so long that the store would refuse it.

use std::collections::BTreeSet;

use shoal_api::{TaskState, TaskStatus};
use shoal_proto::dispatcher as pb;
use tonic::Status;

use crate::manager::{Manager, ManagerError};
use crate::store::{Change, Kind, MAX_TRANSACTION_BYTES, Object, Store, StoreError, Transaction};

/// The longest `message` or `error` kept from a worker's report; the rest is cut
/// (a worker may quote a whole process's output, and the store takes 1.5 MiB at once).
pub(super) const MAX_STATUS_TEXT: usize = 4096;

/// The longest container id a report may carry (the runtime's are 64 hex digits).
const MAX_CONTAINER_ID: usize = 128;

/// What one transaction of reports may hold, encoded, leaving room for the envelope.
const BATCH_BYTES: usize = MAX_TRANSACTION_BYTES / 2;

/// Reads a batch: every status must be JSON of a task status, with a sane container
/// id; long texts are cut to [`MAX_STATUS_TEXT`].
pub(super) fn parse(updates: &[pb::TaskStatusUpdate]) -> Result<Vec<(String, TaskStatus)>, Status> {
    updates
        .iter()
        .map(|u| {
            let mut s: TaskStatus = serde_json::from_slice(&u.status_json)
                .map_err(|e| Status::invalid_argument(format!("malformed task status: {e}")))?;
            if s.container_id.as_ref().is_some_and(|c| c.len() > MAX_CONTAINER_ID) {
                return Err(Status::invalid_argument(format!(
                    "a task status names a container id longer than {MAX_CONTAINER_ID} bytes"
                )));
            }
            if !sane_time(s.timestamp) {
                return Err(Status::invalid_argument(format!(
                    "a task status has the timestamp {}: check the worker's clock (years 1970 to 9999 are taken)",
                    s.timestamp
                )));
            }
            cut(&mut s.message);
            if let Some(e) = &mut s.error {
                cut(e);
            }
            Ok((u.task_id.clone(), s))
        })
        .collect()
}

/// Years 1970 to 9999: the controllers add delays to a report's time, and chrono
/// panics past its calendar's end (year 262143).
fn sane_time(t: chrono::DateTime<chrono::Utc>) -> bool {
    use chrono::Datelike as _;
    (1970..=9999).contains(&t.year())
}

/// Cuts `text` to at most [`MAX_STATUS_TEXT`] bytes, on a character boundary, saying so.
fn cut(text: &mut String) {
    if text.len() <= MAX_STATUS_TEXT {
        return;
    }
    const MORE: &str = " […]";
    let mut end = MAX_STATUS_TEXT - MORE.len();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push_str(MORE);
}

/// States only the manager sets: a worker reporting one is ignored.
fn manager_only(state: TaskState) -> bool {
    matches!(state, TaskState::New | TaskState::Pending | TaskState::Remove | TaskState::Orphaned)
}

/// The changes a batch of reports makes to the store as it is.
pub(super) fn changes(store: &Store, node: &str, updates: &[(String, TaskStatus)]) -> Vec<Change> {
    let mut out = Vec::new();
    for (task_id, status) in updates {
        let Some(Object::Task(t)) = store.get(Kind::Task, task_id) else { continue };
        if t.node_id.as_deref() != Some(node)
            || manager_only(status.state)
            || status.state < t.status.state
            || *status == t.status
        {
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

/// Splits `updates` into groups whose changes (as first computed, `first`) fit in
/// one transaction each; reports of one task stay in one group.
pub(super) fn groups(first: &[Change], updates: &[(String, TaskStatus)]) -> Vec<Vec<(String, TaskStatus)>> {
    let mut groups: Vec<BTreeSet<&str>> = Vec::new();
    let mut size = 0;
    for c in first {
        let bytes = serde_json::to_vec(c).map(|b| b.len()).unwrap_or(BATCH_BYTES);
        match groups.last_mut() {
            Some(g) if size + bytes <= BATCH_BYTES => {
                g.insert(c.target().1);
                size += bytes;
            }
            _ => {
                groups.push(BTreeSet::from([c.target().1]));
                size = bytes;
            }
        }
    }
    groups
        .into_iter()
        .map(|ids| updates.iter().filter(|(id, _)| ids.contains(id.as_str())).cloned().collect())
        .collect()
}

/// Applies a batch from `node`, retrying on a conflict with another writer.
pub(super) async fn apply(
    manager: &Manager,
    node: &str,
    updates: &[pb::TaskStatusUpdate],
) -> Result<(), Status> {
    let parsed = parse(updates)?;
    let first = manager.read(|s| changes(s, node, &parsed));
    for group in groups(&first, &parsed) {
        apply_group(manager, node, &group).await?;
    }
    Ok(())
}

async fn apply_group(manager: &Manager, node: &str, parsed: &[(String, TaskStatus)]) -> Result<(), Status> {
    for _ in 0..5 {
        let changes = manager.read(|s| changes(s, node, parsed));
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
