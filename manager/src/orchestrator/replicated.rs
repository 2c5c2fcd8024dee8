//! Replicated services keep slots 1..=replicas filled; replicated jobs run tasks to
//! completion, `max_concurrent` at a time, until `total_completions` succeeded.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use shoal_api::{Service, ServiceMode, Task, TaskState};

use super::restart::{Verdict, decide};
use super::{Plan, create, is_live, new_task, newest, set_desired};
use crate::store::queries::{must_leave, services, tasks_of};
use crate::store::{Change, Store};

/// The changes that bring every replicated service and job to its declared count.
pub fn reconcile(store: &Store, now: DateTime<Utc>) -> Vec<Change> {
    plan(store, now).changes
}

/// [`reconcile`]'s changes, and when its decisions may next change with time alone.
pub fn plan(store: &Store, now: DateTime<Utc>) -> Plan {
    let mut plan = Plan::default();
    for svc in services(store) {
        match svc.spec.mode {
            ServiceMode::Replicated { replicas } => replicated(store, svc, replicas, now, &mut plan),
            ServiceMode::ReplicatedJob { max_concurrent, total_completions } => {
                job(store, svc, max_concurrent, total_completions.unwrap_or(max_concurrent), now, &mut plan)
            }
            ServiceMode::Global | ServiceMode::GlobalJob => {}
        }
    }
    plan
}

/// Slot → the slot's tasks.
fn slots<'a>(tasks: &[&'a Task]) -> BTreeMap<u64, Vec<&'a Task>> {
    let mut out: BTreeMap<u64, Vec<&'a Task>> = BTreeMap::new();
    for t in tasks {
        if let Some(slot) = t.slot {
            out.entry(slot).or_default().push(t);
        }
    }
    out
}

/// The newest live task of each slot, with the slot's other tasks.
fn current<'a>(tasks: &[&'a Task]) -> BTreeMap<u64, (&'a Task, Vec<&'a Task>)> {
    let mut out = BTreeMap::new();
    for (slot, in_slot) in slots(tasks) {
        if let Some(cur) = newest(in_slot.iter().copied().filter(|t| is_live(t))) {
            let earlier = in_slot.into_iter().filter(|t| t.id != cur.id).collect();
            out.insert(slot, (cur, earlier));
        }
    }
    out
}

/// Applies the restart policy to a slot's current task; true when it was replaced.
fn restart(
    store: &Store,
    svc: &Service,
    slot: u64,
    (task, earlier): &(&Task, Vec<&Task>),
    now: DateTime<Utc>,
    plan: &mut Plan,
) -> bool {
    let lost = task.node_id.as_deref().is_some_and(|n| must_leave(store, n));
    let verdict = decide(task, earlier, lost, now);
    plan.due_at(verdict.due());
    match verdict {
        Verdict::Replace => {
            plan.changes.push(set_desired(task, TaskState::Shutdown, now));
            plan.changes.push(create(new_task(svc, Some(slot), None, now)));
            true
        }
        Verdict::Keep | Verdict::ReplaceAt(_) | Verdict::GiveUp(_) => false,
    }
}

fn replicated(store: &Store, svc: &Service, replicas: u64, now: DateTime<Utc>, plan: &mut Plan) {
    let tasks: Vec<&Task> = tasks_of(store, &svc.id).collect();
    let mut occupied = current(&tasks);
    let count = occupied.len() as u64;
    if count > replicas {
        // Scale down: tasks that are not running go first, then the highest slots.
        let mut victims: Vec<(u64, &Task)> = occupied.iter().map(|(slot, (t, _))| (*slot, *t)).collect();
        victims.sort_by_key(|(slot, t)| (t.status.state == TaskState::Running, std::cmp::Reverse(*slot)));
        for (slot, t) in victims.into_iter().take((count - replicas) as usize) {
            plan.changes.push(set_desired(t, TaskState::Remove, now));
            occupied.remove(&slot);
        }
    }
    for (slot, entry) in &occupied {
        restart(store, svc, *slot, entry, now, plan);
    }
    let mut free = (1..).filter(|s| !occupied.contains_key(s));
    for _ in (occupied.len() as u64)..replicas {
        let slot = free.next().expect("slots never run out");
        plan.changes.push(create(new_task(svc, Some(slot), None, now)));
    }
}

fn job(store: &Store, svc: &Service, max_concurrent: u64, total: u64, now: DateTime<Utc>, plan: &mut Plan) {
    let iteration = svc.meta.version;
    let all: Vec<&Task> = tasks_of(store, &svc.id).collect();
    // Tasks of an earlier run of the job stop.
    for t in all
        .iter()
        .filter(|t| t.job_iteration != Some(iteration) && is_live(t) && !t.status.state.is_terminal())
    {
        plan.changes.push(set_desired(t, TaskState::Shutdown, now));
    }
    let tasks: Vec<&Task> = all.iter().copied().filter(|t| t.job_iteration == Some(iteration)).collect();
    let occupied = current(&tasks);
    let mut replaced = 0;
    for (slot, entry) in &occupied {
        replaced += u64::from(restart(store, svc, *slot, entry, now, plan));
    }
    let done = occupied.values().filter(|(t, _)| t.status.state == TaskState::Complete).count() as u64;
    let active = occupied.values().filter(|(t, _)| !t.status.state.is_terminal()).count() as u64 + replaced;
    let wanted = max_concurrent.min(total.saturating_sub(done)).saturating_sub(active);
    // Each slot is one completion: slots already used count against the total.
    let first = occupied.keys().max().copied().unwrap_or(0) + 1;
    let new = wanted.min(total.saturating_sub(occupied.len() as u64));
    for slot in first..first + new {
        plan.changes.push(create(new_task(svc, Some(slot), None, now)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Object;
    use crate::testing::*;

    fn live(store: &Store) -> Vec<Task> {
        let mut t: Vec<Task> = tasks(store).into_iter().filter(is_live).collect();
        t.sort_by_key(|t| t.slot);
        t
    }

    fn set_state(store: &mut Store, slot: u64, state: TaskState, node: Option<&str>) {
        let t = live(store).into_iter().find(|t| t.slot == Some(slot)).expect("a task in the slot");
        let mut new = t.clone();
        new.status.state = state;
        new.node_id = node.map(str::to_owned);
        apply(store, vec![Change::Update { object: Object::Task(new), expected_version: t.meta.version }]);
    }

    #[test]
    fn fills_slots_then_scales_down_from_the_top_keeping_running_tasks() {
        let svc = service("web", |s| s.mode = ServiceMode::Replicated { replicas: 3 });
        let mut store = store_with(vec![node("n1", &[])], vec![svc.clone()]);
        let changes = reconcile(&store, t0());
        apply(&mut store, changes);
        assert_eq!(live(&store).iter().map(|t| t.slot).collect::<Vec<_>>(), [Some(1), Some(2), Some(3)]);
        assert!(reconcile(&store, t0()).is_empty(), "nothing more to do");

        set_state(&mut store, 1, TaskState::Running, Some("n1"));
        set_state(&mut store, 3, TaskState::Running, Some("n1"));
        let mut scaled = svc.clone();
        scaled.spec.mode = ServiceMode::Replicated { replicas: 2 };
        scaled.meta.version = store.get(crate::store::Kind::Service, &svc.id).expect("stored").meta().version;
        apply(
            &mut store,
            vec![Change::Update { expected_version: scaled.meta.version, object: Object::Service(scaled) }],
        );
        let changes = reconcile(&store, t0());
        apply(&mut store, changes);
        assert_eq!(
            live(&store).iter().map(|t| t.slot).collect::<Vec<_>>(),
            [Some(1), Some(3)],
            "slot 2 was not running"
        );
    }

    #[test]
    fn failed_tasks_are_replaced_in_their_slot_after_the_delay() {
        let svc = service("web", |_| {});
        let mut store = store_with(vec![node("n1", &[])], vec![svc]);
        let changes = reconcile(&store, t0());
        apply(&mut store, changes);
        assert_eq!(plan(&store, t0()).due, None, "a pending task waits on nothing");
        set_state(&mut store, 1, TaskState::Failed, Some("n1"));
        let waiting = plan(&store, t0());
        assert!(waiting.changes.is_empty(), "the 5s delay has not passed");
        assert_eq!(waiting.due, Some(t0() + chrono::Duration::seconds(5)), "looked at again when it ends");
        let changes = reconcile(&store, t0() + chrono::Duration::seconds(6));
        apply(&mut store, changes);
        assert_eq!(
            plan(&store, t0() + chrono::Duration::seconds(6)).due,
            None,
            "the replacement waits on nothing"
        );
        let all = tasks(&store);
        assert_eq!(all.len(), 2);
        let new = live(&store);
        assert_eq!((new.len(), new[0].slot, new[0].status.state), (1, Some(1), TaskState::Pending));
        assert!(
            all.iter().any(|t| t.desired_state == TaskState::Shutdown && t.status.state == TaskState::Failed)
        );
    }

    #[test]
    fn tasks_on_a_lost_node_move_at_once() {
        let svc = service("web", |_| {});
        let mut store = store_with(vec![node("n1", &[]), node("n2", &[])], vec![svc]);
        let changes = reconcile(&store, t0());
        apply(&mut store, changes);
        set_state(&mut store, 1, TaskState::Running, Some("n2"));
        apply(
            &mut store,
            vec![Change::Delete { kind: crate::store::Kind::Node, id: "n2".into(), expected_version: None }],
        );
        let changes = reconcile(&store, t0());
        apply(&mut store, changes);
        let new = live(&store);
        assert_eq!((new.len(), new[0].node_id.as_deref()), (1, None));
        assert!(
            tasks(&store)
                .iter()
                .any(|t| t.node_id.as_deref() == Some("n2") && t.desired_state == TaskState::Shutdown)
        );
    }

    #[test]
    fn jobs_run_to_their_completions_at_most_max_concurrent_at_once() {
        let svc = service("batch", |s| {
            s.mode = ServiceMode::ReplicatedJob { max_concurrent: 2, total_completions: Some(3) }
        });
        let mut store = store_with(vec![node("n1", &[])], vec![svc]);
        let changes = reconcile(&store, t0());
        apply(&mut store, changes);
        assert_eq!(live(&store).len(), 2);
        set_state(&mut store, 1, TaskState::Complete, Some("n1"));
        let changes = reconcile(&store, t0());
        apply(&mut store, changes);
        assert_eq!(live(&store).iter().map(|t| t.slot).collect::<Vec<_>>(), [Some(1), Some(2), Some(3)]);
        set_state(&mut store, 2, TaskState::Complete, Some("n1"));
        set_state(&mut store, 3, TaskState::Complete, Some("n1"));
        assert!(reconcile(&store, t0()).is_empty(), "three completions: done");
    }
}
