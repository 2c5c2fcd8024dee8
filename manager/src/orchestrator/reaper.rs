//! The task reaper: deletes tasks told to go away once they stopped (or never
//! started), tasks whose service is gone, and history beyond the cluster's limit
//! (per slot, or per node for global services).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use shoal_api::{Task, TaskState};

use super::{is_live, set_desired};
use crate::store::queries::must_leave;
use crate::store::{Change, Kind, Object, Store};

/// The changes that prune tasks; `limit` is the cluster's task history limit
/// (negative keeps everything).
pub fn reap(store: &Store, limit: i64, now: DateTime<Utc>) -> Vec<Change> {
    let mut changes = Vec::new();
    let mut history: BTreeMap<(&str, String), Vec<&Task>> = BTreeMap::new();
    for o in store.list(Kind::Task) {
        let Object::Task(t) = o else { continue };
        let delete =
            || Change::Delete { kind: Kind::Task, id: t.id.clone(), expected_version: Some(t.meta.version) };
        let stopped = t.status.state.is_terminal()
            || t.status.state < TaskState::Assigned
            || t.node_id.as_deref().is_some_and(|n| must_leave(store, n));
        let service = store.get(Kind::Service, &t.service_id);
        if service.is_none() {
            // The service is gone: stop what runs, delete what stopped.
            if stopped {
                changes.push(delete());
            } else if t.desired_state != TaskState::Remove {
                changes.push(set_desired(t, TaskState::Remove, now));
            }
            continue;
        }
        if t.desired_state == TaskState::Remove {
            if stopped {
                changes.push(delete());
            }
            continue;
        }
        if !is_live(t) && stopped {
            let group = match (t.slot, &t.node_id) {
                (Some(slot), _) => slot.to_string(),
                (None, Some(node)) => node.clone(),
                (None, None) => t.id.clone(),
            };
            history.entry((&t.service_id, group)).or_default().push(t);
        }
    }
    if limit >= 0 {
        for ((service_id, _), mut old) in history {
            let keep = match store.get(Kind::Service, service_id) {
                Some(Object::Service(s)) => {
                    let attempts = s.spec.task_template.restart_policy.max_attempts;
                    (limit as u64).max(if attempts > 0 { attempts + 1 } else { 0 })
                }
                _ => limit as u64,
            };
            old.sort_by(|a, b| (b.meta.created_at, &b.id).cmp(&(a.meta.created_at, &a.id)));
            for t in old.into_iter().skip(keep as usize) {
                changes.push(Change::Delete {
                    kind: Kind::Task,
                    id: t.id.clone(),
                    expected_version: Some(t.meta.version),
                });
            }
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orchestrator::{create, new_task};
    use crate::testing::*;

    #[test]
    fn history_is_kept_to_the_limit_and_removed_tasks_go() {
        let svc = service("web", |_| {});
        let mut store = store_with(vec![node("n1", &[])], vec![svc.clone()]);
        let mut changes = Vec::new();
        for i in 0..8 {
            let mut t = new_task(&svc, Some(1), Some("n1"), t0() + chrono::Duration::seconds(i));
            t.status.state = TaskState::Failed;
            t.desired_state = TaskState::Shutdown;
            changes.push(create(t));
        }
        let mut gone = new_task(&svc, Some(2), None, t0());
        gone.desired_state = TaskState::Remove;
        changes.push(create(gone));
        apply(&mut store, changes);
        let changes = reap(&store, 5, t0());
        apply(&mut store, changes);
        let left = tasks(&store);
        assert_eq!(left.len(), 5, "five of slot 1's history, none of slot 2");
        assert!(
            left.iter()
                .all(|t| t.slot == Some(1) && t.meta.created_at >= t0() + chrono::Duration::seconds(3))
        );
        assert!(reap(&store, 5, t0()).is_empty());
        assert!(reap(&store, -1, t0()).is_empty());
    }
}
