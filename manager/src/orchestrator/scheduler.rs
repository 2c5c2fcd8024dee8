//! The scheduler: pending tasks go to nodes. Filters first (node ready and active,
//! constraints, reserved CPU and memory, host-mode ports, replicas per node), then
//! spread: over the values of each placement preference in turn, then the fewest
//! tasks of the service, then the fewest tasks in all. A task nobody can take stays
//! pending with a message that says why.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use shoal_api::constraint::{Key, parse_spread};
use shoal_api::service::PublishMode;
use shoal_api::{Node, Service, Task, TaskState};

use super::global::satisfies;
use crate::store::queries::{nodes, takes_tasks};
use crate::store::{Change, Kind, Object, Store};

/// What the scheduler knows of a node while it places a batch.
struct Load<'a> {
    node: &'a Node,
    /// Active tasks per service.
    by_service: BTreeMap<String, u64>,
    total: u64,
    cpu: u64,
    memory: u64,
    /// Host-mode ports in use: (port, protocol).
    ports: BTreeSet<(u16, &'static str)>,
}

/// A task that holds resources on its node: placed there and not finished.
fn active(t: &Task) -> bool {
    t.node_id.is_some() && !t.status.state.is_terminal()
}

fn host_ports(store: &Store, t: &Task) -> Vec<(u16, &'static str)> {
    match store.get(Kind::Service, &t.service_id) {
        Some(Object::Service(s)) => s
            .endpoint
            .ports
            .iter()
            .filter(|p| p.publish_mode == PublishMode::Host)
            .filter_map(|p| p.published_port.map(|port| (port, p.protocol.as_str())))
            .collect(),
        _ => Vec::new(),
    }
}

fn label_value(node: &Node, key: &Key) -> String {
    match key {
        Key::NodeLabel(k) => node.spec.labels.get(k).cloned(),
        Key::EngineLabel(k) => node.description.engine_labels.get(k).cloned(),
        _ => None,
    }
    .unwrap_or_default()
}

/// Why nodes were passed over, counted for the pending message.
#[derive(Default)]
struct Refusals {
    unavailable: usize,
    constraints: usize,
    resources: usize,
    ports: usize,
    max_replicas: usize,
}

impl Refusals {
    fn message(&self, nodes: usize) -> String {
        if nodes == 0 {
            return "no suitable node (the cluster has no nodes)".into();
        }
        let parts: Vec<String> = [
            (self.unavailable, "not available (down, paused or drained)"),
            (self.constraints, "not satisfying the scheduling constraints"),
            (self.resources, "with too little CPU or memory unreserved"),
            (self.ports, "with the host port in use"),
            (self.max_replicas, "at the max replicas per node"),
        ]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, why)| format!("{n} node{} {why}", if *n == 1 { "" } else { "s" }))
        .collect();
        format!("no suitable node ({})", parts.join("; "))
    }
}

/// The changes that assign pending tasks to nodes, or say why they cannot be.
pub fn schedule(store: &Store, now: DateTime<Utc>) -> Vec<Change> {
    let all_nodes: Vec<&Node> = nodes(store).collect();
    let mut loads: Vec<Load> = all_nodes
        .iter()
        .map(|n| Load {
            node: n,
            by_service: BTreeMap::new(),
            total: 0,
            cpu: 0,
            memory: 0,
            ports: BTreeSet::new(),
        })
        .collect();
    // Loads by node id: a scan of the nodes per task made a round O(tasks × nodes).
    let by_node: HashMap<&str, usize> =
        all_nodes.iter().enumerate().map(|(i, n)| (n.id.as_str(), i)).collect();
    let mut pending: Vec<&Task> = Vec::new();
    for o in store.list(Kind::Task) {
        let Object::Task(t) = o else { continue };
        if t.status.state == TaskState::Pending && super::is_live(t) {
            pending.push(t);
        } else if active(t)
            && let Some(&i) = t.node_id.as_deref().and_then(|n| by_node.get(n))
        {
            add(&mut loads[i], store, t);
        }
    }
    // Oldest first, so a task waiting longest is placed first.
    pending.sort_by(|a, b| (a.meta.created_at, &a.id).cmp(&(b.meta.created_at, &b.id)));
    let mut changes = Vec::new();
    for t in pending {
        let Some(Object::Service(svc)) = store.get(Kind::Service, &t.service_id) else { continue };
        match place(store, svc, t, &loads) {
            Ok(i) => {
                add(&mut loads[i], store, t);
                let mut new = t.clone();
                new.node_id = Some(loads[i].node.id.clone());
                new.status = shoal_api::TaskStatus::new(TaskState::Assigned, now, "scheduled");
                new.meta.updated_at = now;
                changes.push(Change::Update { object: Object::Task(new), expected_version: t.meta.version });
            }
            Err(message) if message != t.status.message => {
                let mut new = t.clone();
                new.status.message = message;
                new.status.timestamp = now;
                changes.push(Change::Update { object: Object::Task(new), expected_version: t.meta.version });
            }
            Err(_) => {}
        }
    }
    changes
}

fn add(load: &mut Load, store: &Store, t: &Task) {
    match load.by_service.get_mut(&t.service_id) {
        Some(n) => *n += 1,
        None => {
            load.by_service.insert(t.service_id.clone(), 1);
        }
    }
    load.total += 1;
    load.cpu += t.spec.resources.reservations.nano_cpus;
    load.memory += t.spec.resources.reservations.memory_bytes;
    load.ports.extend(host_ports(store, t));
}

/// The index of the load of the node `t` goes to, or why there is none.
fn place(store: &Store, svc: &Service, t: &Task, loads: &[Load]) -> Result<usize, String> {
    let placement = &t.spec.placement;
    let want = &t.spec.resources.reservations;
    let ports = host_ports(store, t);
    let mut why = Refusals::default();
    let mut fit = Vec::new();
    for (i, l) in loads.iter().enumerate() {
        if t.node_id.as_ref().is_some_and(|n| n != &l.node.id) {
            continue;
        }
        let res = &l.node.description.resources;
        if !takes_tasks(l.node) {
            why.unavailable += 1;
        } else if !satisfies(&placement.constraints, l.node) {
            why.constraints += 1;
        } else if l.cpu + want.nano_cpus > res.nano_cpus || l.memory + want.memory_bytes > res.memory_bytes {
            why.resources += 1;
        } else if ports.iter().any(|p| l.ports.contains(p)) {
            why.ports += 1;
        } else if placement.max_replicas > 0
            && l.by_service.get(&t.service_id).copied().unwrap_or(0) >= placement.max_replicas
        {
            why.max_replicas += 1;
        } else {
            fit.push(i);
        }
    }
    if fit.is_empty() {
        let considered = if t.node_id.is_some() { 1 } else { loads.len() };
        return Err(why.message(considered));
    }
    // Spread: each preference's label value with the fewest tasks of the service
    // first, then the node with the fewest tasks of the service, then of all.
    let keys: Vec<Key> = placement.preferences.iter().filter_map(|p| parse_spread(&p.spread).ok()).collect();
    let per_value = |key: &Key, value: &str| -> u64 {
        loads
            .iter()
            .filter(|l| label_value(l.node, key) == value)
            .map(|l| l.by_service.get(&svc.id).copied().unwrap_or(0))
            .sum()
    };
    fit.into_iter()
        .min_by_key(|i| {
            let l = &loads[*i];
            let spread: Vec<u64> = keys.iter().map(|k| per_value(k, &label_value(l.node, k))).collect();
            (spread, l.by_service.get(&svc.id).copied().unwrap_or(0), l.total, l.node.id.as_str())
        })
        .ok_or_else(|| "no suitable node".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orchestrator::replicated;
    use crate::testing::*;

    fn placed(store: &Store) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for t in tasks(store) {
            if let Some(n) = t.node_id {
                *out.entry(n).or_default() += 1;
            }
        }
        out
    }

    fn run(store: &mut Store) {
        let changes = replicated::reconcile(store, t0());
        apply(store, changes);
        let changes = schedule(store, t0());
        apply(store, changes);
    }

    #[test]
    fn spreads_over_nodes_then_over_label_values() {
        let svc = service("web", |s| s.mode = shoal_api::ServiceMode::Replicated { replicas: 6 });
        let mut store = store_with(vec![node("n1", &[]), node("n2", &[]), node("n3", &[])], vec![svc]);
        run(&mut store);
        assert_eq!(placed(&store).values().copied().collect::<Vec<_>>(), [2, 2, 2]);

        let zoned = service("api", |s| {
            s.mode = shoal_api::ServiceMode::Replicated { replicas: 4 };
            s.task_template.placement.preferences =
                vec![shoal_api::task_spec::PlacementPreference { spread: "node.labels.zone".into() }];
        });
        let mut store = store_with(
            vec![node("a1", &[("zone", "a")]), node("a2", &[("zone", "a")]), node("b1", &[("zone", "b")])],
            vec![zoned],
        );
        run(&mut store);
        let p = placed(&store);
        assert_eq!(p.get("b1"), Some(&2), "half the tasks in zone b: {p:?}");
    }

    #[test]
    fn unschedulable_tasks_stay_pending_and_say_why() {
        let svc = service("web", |s| {
            s.task_template.placement.constraints = vec!["node.labels.zone==c".into()];
        });
        let mut store = store_with(vec![node("n1", &[("zone", "a")]), node("n2", &[])], vec![svc]);
        run(&mut store);
        let t = &tasks(&store)[0];
        assert_eq!(t.status.state, TaskState::Pending);
        assert_eq!(t.status.message, "no suitable node (2 nodes not satisfying the scheduling constraints)");
        assert!(schedule(&store, t0()).is_empty(), "the message is written once");
    }

    #[test]
    fn reservations_and_max_replicas_limit_a_node() {
        let svc = service("big", |s| {
            s.mode = shoal_api::ServiceMode::Replicated { replicas: 3 };
            s.task_template.resources.reservations.memory_bytes = 400 << 20;
            s.task_template.placement.max_replicas = 5;
        });
        let mut store = store_with(vec![node("n1", &[])], vec![svc]);
        run(&mut store);
        let states: Vec<TaskState> = tasks(&store).iter().map(|t| t.status.state).collect();
        assert_eq!(
            states.iter().filter(|s| **s == TaskState::Assigned).count(),
            2,
            "1 GiB holds two of 400 MiB"
        );
        let pending =
            tasks(&store).into_iter().find(|t| t.status.state == TaskState::Pending).expect("one pending");
        assert!(
            pending.status.message.contains("1 node with too little CPU or memory"),
            "{}",
            pending.status.message
        );
    }
}
