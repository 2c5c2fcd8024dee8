//! Task status reports from workers, applied as one transaction per batch (split
//! when one would be too large): only the node's own tasks, only forward in the state
//! order, never a step back, never a state only the manager sets, never a time off
//! the calendar, and never text so long that the store would refuse it.

use std::collections::BTreeSet;
use std::sync::{Arc, OnceLock};

use tokio::sync::{mpsc, oneshot};

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
/// one transaction each; reports of one task stay in one group. (The dispatcher packs
/// [`sized_groups`]; the fuzz model applies these one by one.)
#[cfg(test)]
pub(super) fn groups(first: &[Change], updates: &[(String, TaskStatus)]) -> Vec<Vec<(String, TaskStatus)>> {
    sized_groups(first, updates).into_iter().map(|(_, g)| g).collect()
}

/// [`groups`], each with the encoded size of its changes.
fn sized_groups(
    first: &[Change],
    updates: &[(String, TaskStatus)],
) -> Vec<(usize, Vec<(String, TaskStatus)>)> {
    let mut groups: Vec<(usize, BTreeSet<&str>)> = Vec::new();
    for c in first {
        let bytes = serde_json::to_vec(c).map(|b| b.len()).unwrap_or(BATCH_BYTES);
        match groups.last_mut() {
            Some((size, g)) if *size + bytes <= BATCH_BYTES => {
                g.insert(c.target().1);
                *size += bytes;
            }
            _ => groups.push((bytes, BTreeSet::from([c.target().1]))),
        }
    }
    groups
        .into_iter()
        .map(|(size, ids)| {
            (size, updates.iter().filter(|(id, _)| ids.contains(id.as_str())).cloned().collect())
        })
        .collect()
}

/// One node's reports waiting for the next transaction, and its caller.
struct Queued {
    node: String,
    updates: Vec<(String, TaskStatus)>,
    done: oneshot::Sender<Result<(), Status>>,
}

/// Reports of every node go into shared transactions: one Raft write per batch of
/// all the nodes' reports that came in while the last write was under way, not one
/// per node's batch (with 50 nodes reporting at once, 50 writes queued in Raft and
/// each waited for all before it: 1 to 2 s a report). No timer: a lone report goes
/// out at once.
#[derive(Debug, Clone, Default)]
pub(super) struct Batcher(Arc<OnceLock<mpsc::UnboundedSender<Queued>>>);

impl Batcher {
    /// Applies a batch from `node` with the others queued now; returns once it is
    /// committed (or refused).
    pub(super) async fn apply(
        &self,
        manager: &Arc<Manager>,
        node: &str,
        updates: &[pb::TaskStatusUpdate],
    ) -> Result<(), Status> {
        let updates = parse(updates)?;
        let queue = self.0.get_or_init(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(flush(manager.clone(), rx));
            tx
        });
        let (done, answer) = oneshot::channel();
        let stopping = || Status::unavailable("the dispatcher is stopping; report again");
        queue.send(Queued { node: node.to_owned(), updates, done }).map_err(|_| stopping())?;
        answer.await.unwrap_or_else(|_| Err(stopping()))
    }
}

/// Applies what is queued, all of it at once, until the dispatcher goes.
async fn flush(manager: Arc<Manager>, mut queue: mpsc::UnboundedReceiver<Queued>) {
    while let Some(first) = queue.recv().await {
        let mut batch = vec![first];
        while let Ok(q) = queue.try_recv() {
            batch.push(q);
        }
        let result = apply(&manager, &batch).await;
        for q in batch {
            let _ = q.done.send(result.clone());
        }
    }
}

/// Applies queued batches: each node's groups, packed into as few transactions as
/// fit, each retried on a conflict with another writer.
async fn apply(manager: &Manager, batch: &[Queued]) -> Result<(), Status> {
    let sized: Vec<(usize, Group<'_>)> = manager.read(|s| {
        batch
            .iter()
            .flat_map(|q| {
                let first = changes(s, &q.node, &q.updates);
                sized_groups(&first, &q.updates).into_iter().map(|(size, g)| (size, (q.node.as_str(), g)))
            })
            .collect()
    });
    let mut packs: Vec<(usize, Vec<Group<'_>>)> = Vec::new();
    for (size, group) in sized {
        match packs.last_mut() {
            Some((total, pack)) if *total + size <= BATCH_BYTES => {
                *total += size;
                pack.push(group);
            }
            _ => packs.push((size, vec![group])),
        }
    }
    // Packs hold different tasks: several go to Raft at once, which carries them
    // together (one at a time, a burst of 1,000 nodes' reports took tens of commits
    // in a row, and every report waited for all of them).
    // Made first: a stream over a borrowing closure would not be `Send` for every lifetime.
    let proposals: Vec<_> = packs.iter().map(|(_, pack)| apply_pack(manager, pack)).collect();
    crate::manager::in_flight(proposals).await.into_iter().collect()
}

/// One node's reports that fit in a transaction.
type Group<'a> = (&'a str, Vec<(String, TaskStatus)>);

async fn apply_pack(manager: &Manager, pack: &[Group<'_>]) -> Result<(), Status> {
    for _ in 0..5 {
        let changes: Vec<Change> =
            manager.read(|s| pack.iter().flat_map(|(node, group)| changes(s, node, group)).collect());
        if changes.is_empty() {
            return Ok(());
        }
        let (n, proposed) = (changes.len(), std::time::Instant::now());
        let result = manager.propose(Transaction { changes }).await;
        tracing::debug!(nodes = pack.len(), changes = n, took = ?proposed.elapsed(), ok = result.is_ok(), "task statuses applied");
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
