//! Global services and global jobs: one task on every node that is ready, active and
//! satisfies the constraints. A drained or removed node, or one that stops matching,
//! has its task shut down; a node that is down keeps it until it comes back.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use shoal_api::constraint::Constraint;
use shoal_api::node::Availability;
use shoal_api::{Node, Service, ServiceMode, Task, TaskState};

use super::restart::{Verdict, decide};
use super::{Plan, create, is_live, new_task, newest, set_desired};
use crate::store::queries::{nodes, services, takes_tasks, tasks_of};
use crate::store::{Change, Kind, Object, Store};

/// Whether `node` satisfies every placement constraint of `svc` (a constraint that
/// does not parse matches no node; validation keeps those out of the store).
pub(crate) fn satisfies(svc_constraints: &[String], node: &Node) -> bool {
    svc_constraints.iter().all(|c| c.parse::<Constraint>().is_ok_and(|c| c.matches(node)))
}

/// The changes that give every eligible node its task of each global service.
pub fn reconcile(store: &Store, now: DateTime<Utc>) -> Vec<Change> {
    plan(store, now).changes
}

/// [`reconcile`]'s changes, and when its decisions may next change with time alone.
pub fn plan(store: &Store, now: DateTime<Utc>) -> Plan {
    let mut plan = Plan::default();
    for svc in services(store).filter(|s| s.spec.mode.is_global()) {
        one_service(store, svc, now, &mut plan);
    }
    plan
}

fn one_service(store: &Store, svc: &Service, now: DateTime<Utc>, plan: &mut Plan) {
    let job = svc.spec.mode == ServiceMode::GlobalJob;
    let iteration = svc.meta.version;
    let constraints = &svc.spec.task_template.placement.constraints;
    let mut by_node: BTreeMap<&str, Vec<&Task>> = BTreeMap::new();
    for t in tasks_of(store, &svc.id) {
        if let Some(n) = &t.node_id {
            by_node.entry(n).or_default().push(t);
        }
    }
    for (node_id, tasks) in &by_node {
        let Some(cur) = newest(tasks.iter().copied().filter(|t| is_live(t))) else { continue };
        let node = match store.get(Kind::Node, node_id) {
            Some(Object::Node(n)) => Some(n),
            _ => None,
        };
        let stale_job = job && cur.job_iteration != Some(iteration);
        let keep =
            node.is_some_and(|n| n.spec.availability != Availability::Drain && satisfies(constraints, n));
        if !keep || stale_job {
            if !cur.status.state.is_terminal() {
                plan.changes.push(set_desired(cur, TaskState::Shutdown, now));
            }
            continue;
        }
        let earlier: Vec<&Task> = tasks.iter().copied().filter(|t| t.id != cur.id).collect();
        let verdict = decide(cur, &earlier, false, now);
        plan.due_at(verdict.due());
        if verdict == Verdict::Replace && node.is_some_and(takes_tasks) {
            plan.changes.push(set_desired(cur, TaskState::Shutdown, now));
            plan.changes.push(create(new_task(svc, None, Some(node_id), now)));
        }
    }
    for node in nodes(store).filter(|n| takes_tasks(n) && satisfies(constraints, n)) {
        let tasks = by_node.get(node.id.as_str());
        let has_current = tasks.is_some_and(|ts| {
            ts.iter().any(|t| {
                (is_live(t) && !(job && t.job_iteration != Some(iteration)))
                    || (job && t.job_iteration == Some(iteration) && t.status.state == TaskState::Complete)
            })
        });
        if !has_current {
            plan.changes.push(create(new_task(svc, None, Some(&node.id), now)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;

    fn live_nodes(store: &Store) -> Vec<String> {
        let mut v: Vec<String> = tasks(store).into_iter().filter(is_live).filter_map(|t| t.node_id).collect();
        v.sort();
        v
    }

    #[test]
    fn a_failed_task_is_looked_at_again_when_its_delay_ends() {
        let svc = service("agent", |s| s.mode = ServiceMode::Global);
        let mut store = store_with(vec![node("n1", &[])], vec![svc]);
        let changes = reconcile(&store, t0());
        apply(&mut store, changes);
        assert_eq!(plan(&store, t0()).due, None, "a pending task waits on nothing");
        let t = tasks(&store).pop().expect("the node's task");
        let mut failed = t.clone();
        failed.status.state = TaskState::Failed;
        apply(
            &mut store,
            vec![Change::Update { object: Object::Task(failed), expected_version: t.meta.version }],
        );
        let waiting = plan(&store, t0());
        assert!(waiting.changes.is_empty(), "the 5s delay has not passed");
        assert_eq!(waiting.due, Some(t0() + chrono::Duration::seconds(5)), "looked at again when it ends");
        assert_eq!(plan(&store, t0() + chrono::Duration::seconds(5)).changes.len(), 2, "replaced when due");
    }

    #[test]
    fn one_task_per_eligible_node_following_drains_and_labels() {
        let svc = service("agent", |s| {
            s.mode = ServiceMode::Global;
            s.task_template.placement.constraints = vec!["node.labels.zone!=c".into()];
        });
        let mut store = store_with(
            vec![node("n1", &[("zone", "a")]), node("n2", &[("zone", "b")]), node("n3", &[("zone", "c")])],
            vec![svc],
        );
        let changes = reconcile(&store, t0());
        apply(&mut store, changes);
        assert_eq!(live_nodes(&store), ["n1", "n2"]);
        assert!(reconcile(&store, t0()).is_empty());

        let Some(Object::Node(n2)) = store.get(Kind::Node, "n2").cloned() else { panic!("n2") };
        let mut drained = n2.clone();
        drained.spec.availability = Availability::Drain;
        apply(
            &mut store,
            vec![Change::Update { object: Object::Node(drained), expected_version: n2.meta.version }],
        );
        let changes = reconcile(&store, t0());
        apply(&mut store, changes);
        assert_eq!(live_nodes(&store), ["n1"]);

        let Some(Object::Node(n3)) = store.get(Kind::Node, "n3").cloned() else { panic!("n3") };
        let mut relabelled = n3.clone();
        relabelled.spec.labels.insert("zone".into(), "a".into());
        apply(
            &mut store,
            vec![Change::Update { object: Object::Node(relabelled), expected_version: n3.meta.version }],
        );
        let changes = reconcile(&store, t0());
        apply(&mut store, changes);
        assert_eq!(live_nodes(&store), ["n1", "n3"]);
    }
}
