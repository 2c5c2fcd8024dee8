//! Gauges computed from the store at scrape time, from one read: nodes by state,
//! availability and role; tasks by state; objects by kind; each service's desired,
//! running and up-to-date replicas and its rollout state; pending tasks by the
//! scheduler's reason. Nothing is kept in sync by hand, so a deleted service's
//! series are gone at the next scrape. Label values known in advance are all
//! exported, at 0 when nothing has them.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric as _};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use shoal_api::TaskState;
use shoal_api::node::{Availability, NodeRole, NodeState};
use shoal_api::service::{ServiceMode, UpdateState};

use crate::manager::Manager;
use crate::orchestrator::update::up_to_date;
use crate::store::queries::{nodes, services, tasks_of};
use crate::store::{Kind, Object, Store};

/// Node states, as labelled.
const NODE_STATES: [(NodeState, &str); 4] = [
    (NodeState::Unknown, "unknown"),
    (NodeState::Down, "down"),
    (NodeState::Ready, "ready"),
    (NodeState::Disconnected, "disconnected"),
];

/// Node availabilities, as labelled.
const AVAILABILITIES: [(Availability, &str); 3] =
    [(Availability::Active, "active"), (Availability::Pause, "pause"), (Availability::Drain, "drain")];

/// Rollout states, as labelled.
const UPDATE_STATES: [(UpdateState, &str); 6] = [
    (UpdateState::Updating, "updating"),
    (UpdateState::Paused, "paused"),
    (UpdateState::Completed, "completed"),
    (UpdateState::RollbackStarted, "rollback_started"),
    (UpdateState::RollbackPaused, "rollback_paused"),
    (UpdateState::RollbackCompleted, "rollback_completed"),
];

/// Why a task is pending, from the scheduler's message, in the order it lists them;
/// `waiting` for a task not yet tried (or no reason given).
pub const PENDING_REASONS: [(&str, &str); 7] = [
    ("the cluster has no nodes", "no_nodes"),
    ("not available", "unavailable"),
    ("scheduling constraints", "constraints"),
    ("too little CPU or memory", "resources"),
    ("host port in use", "ports"),
    ("max replicas per node", "max_replicas"),
    ("", "waiting"),
];

/// One service's figures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceFigures {
    /// The service's name.
    pub name: String,
    /// Tasks it should have running (replicas, or for global services the tasks
    /// the orchestrator keeps live: one per eligible node).
    pub desired: u64,
    /// Tasks running that should run.
    pub running: u64,
    /// Of those, the ones running the current spec.
    pub updated: u64,
    /// Its rollout's state, if it ever had one.
    pub update_state: Option<&'static str>,
}

/// What a scrape shows of a store.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Figures {
    /// Nodes by (state, availability, role), every combination present.
    pub nodes: Vec<((&'static str, &'static str, &'static str), u64)>,
    /// Tasks by state, every state present.
    pub tasks: Vec<(&'static str, u64)>,
    /// Objects by kind, every kind present.
    pub objects: Vec<(&'static str, u64)>,
    /// Live pending tasks by reason, every reason present.
    pub pending: Vec<(&'static str, u64)>,
    /// Services, by name.
    pub services: Vec<ServiceFigures>,
}

/// The reason label of a pending task's message.
pub fn pending_reason(message: &str) -> &'static str {
    PENDING_REASONS.iter().find(|(text, _)| message.contains(text)).map_or("waiting", |(_, r)| r)
}

/// The figures of `store`.
pub fn figures(store: &Store) -> Figures {
    let mut f = Figures::default();
    for (state, s) in NODE_STATES {
        for (availability, a) in AVAILABILITIES {
            for role in [NodeRole::Manager, NodeRole::Worker] {
                let n = nodes(store)
                    .filter(|n| {
                        n.status.state == state && n.spec.availability == availability && n.spec.role == role
                    })
                    .count();
                f.nodes.push(((s, a, role.as_str()), n as u64));
            }
        }
    }
    let mut by_state = [0u64; TaskState::ALL.len()];
    let mut pending = [0u64; PENDING_REASONS.len()];
    for o in store.list(Kind::Task) {
        let Object::Task(t) = o else { continue };
        if let Some(i) = TaskState::ALL.iter().position(|s| *s == t.status.state) {
            by_state[i] += 1;
        }
        if t.status.state == TaskState::Pending && crate::orchestrator::is_live(t) {
            let reason = pending_reason(&t.status.message);
            if let Some(i) = PENDING_REASONS.iter().position(|(_, r)| *r == reason) {
                pending[i] += 1;
            }
        }
    }
    f.tasks = TaskState::ALL.iter().zip(by_state).map(|(s, n)| (s.as_str(), n)).collect();
    f.pending = PENDING_REASONS.iter().zip(pending).map(|((_, r), n)| (*r, n)).collect();
    f.objects = Kind::ALL.iter().map(|k| (k.as_str(), store.count(*k) as u64)).collect();
    for svc in services(store) {
        let tasks: Vec<_> = tasks_of(store, &svc.id).collect();
        let live = tasks.iter().filter(|t| crate::orchestrator::is_live(t)).count() as u64;
        let desired = match &svc.spec.mode {
            ServiceMode::Replicated { replicas } => *replicas,
            ServiceMode::ReplicatedJob { max_concurrent, .. } => *max_concurrent,
            ServiceMode::Global | ServiceMode::GlobalJob => live,
        };
        let running: Vec<_> = tasks
            .iter()
            .filter(|t| t.status.state == TaskState::Running && t.desired_state == TaskState::Running)
            .collect();
        let updated = running.iter().filter(|t| up_to_date(&t.spec, &svc.spec.task_template)).count();
        let update_state = svc
            .update_status
            .as_ref()
            .and_then(|u| UPDATE_STATES.iter().find(|(s, _)| *s == u.state).map(|(_, name)| *name));
        f.services.push(ServiceFigures {
            name: svc.spec.name.clone(),
            desired,
            running: running.len() as u64,
            updated: updated as u64,
            update_state,
        });
    }
    f
}

/// Encodes one gauge family of `series` (label sets and values).
fn family<L>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = (L, u64)>,
) -> Result<(), std::fmt::Error>
where
    L: prometheus_client::encoding::EncodeLabelSet
        + Clone
        + Eq
        + std::hash::Hash
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let f: Family<L, Gauge> = Family::default();
    for (labels, value) in series {
        f.get_or_create(&labels).set(value as i64);
    }
    let m = encoder.encode_descriptor(name, help, None, f.metric_type())?;
    f.encode(m)
}

/// The collector of a manager's store figures.
#[derive(Debug)]
pub struct StoreCollector(pub Arc<Manager>);

impl Collector for StoreCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let f = self.0.read(figures);
        let l = |pairs: &[(&'static str, &'static str)]| pairs.to_vec();
        family(
            &mut e,
            "shoal_nodes",
            "Nodes in this manager's store, by state, availability and role",
            f.nodes.iter().map(|((s, a, r), n)| (l(&[("state", s), ("availability", a), ("role", r)]), *n)),
        )?;
        family(&mut e, "shoal_tasks", "Tasks in the store (history included), by state", {
            f.tasks.iter().map(|(s, n)| (l(&[("state", s)]), *n))
        })?;
        family(&mut e, "shoal_objects", "Objects in the store, by kind", {
            f.objects.iter().map(|(k, n)| (l(&[("kind", k)]), *n))
        })?;
        family(
            &mut e,
            "shoal_scheduler_pending_tasks",
            "Tasks waiting for a node, by the scheduler's reason",
            f.pending.iter().map(|(r, n)| (l(&[("reason", r)]), *n)),
        )?;
        let svc = |pick: fn(&ServiceFigures) -> u64| {
            f.services.iter().map(move |s| (vec![("service", s.name.clone())], pick(s))).collect::<Vec<_>>()
        };
        family(
            &mut e,
            "shoal_service_replicas_desired",
            "Tasks a service should have running",
            svc(|s| s.desired),
        )?;
        family(
            &mut e,
            "shoal_service_replicas_running",
            "A service's tasks running that should run",
            svc(|s| s.running),
        )?;
        family(
            &mut e,
            "shoal_service_replicas_updated",
            "A service's running tasks that run its current spec",
            svc(|s| s.updated),
        )?;
        let states = f.services.iter().flat_map(|s| {
            UPDATE_STATES.iter().map(move |(_, state)| {
                (
                    vec![("service", s.name.clone()), ("state", state.to_string())],
                    u64::from(s.update_state == Some(*state)),
                )
            })
        });
        family(
            &mut e,
            "shoal_service_update_state",
            "A service's rollout state: 1 on the current one (all 0 if it never had a rollout)",
            states,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Change;
    use crate::testing::{node, service, store_with};
    use shoal_api::service::UpdateStatus;

    fn value<L: PartialEq + ?Sized>(series: &[(&L, u64)], key: &L) -> u64 {
        series.iter().find(|(k, _)| *k == key).map(|(_, n)| *n).unwrap()
    }

    #[test]
    fn figures_count_every_known_value_and_follow_the_store() {
        let mut down = node("n2", &[]);
        down.status.state = NodeState::Down;
        down.spec.availability = Availability::Drain;
        let mut web = service("web", |s| s.mode = ServiceMode::Replicated { replicas: 3 });
        web.update_status = Some(UpdateStatus {
            state: UpdateState::Paused,
            started_at: None,
            completed_at: None,
            message: String::new(),
        });
        let mut store = store_with(vec![node("n1", &[]), down], vec![web, service("api", |_| {})]);
        let f = figures(&store);
        assert_eq!(f.nodes.len(), 4 * 3 * 2, "every combination, at 0 if none");
        let nodes: Vec<_> = f.nodes.iter().map(|(k, n)| (k, *n)).collect();
        assert_eq!(value(&nodes, &("ready", "active", "worker")), 1);
        assert_eq!(value(&nodes, &("down", "drain", "worker")), 1);
        assert_eq!(value(&nodes, &("ready", "active", "manager")), 0);
        assert_eq!(f.tasks.len(), TaskState::ALL.len());
        assert!(f.tasks.iter().all(|(_, n)| *n == 0));
        let objects: Vec<_> = f.objects.iter().map(|(k, n)| (*k, *n)).collect();
        assert_eq!(objects.iter().find(|(k, _)| *k == "service").unwrap().1, 2);
        assert_eq!(objects.iter().find(|(k, _)| *k == "node").unwrap().1, 2);
        let web = f.services.iter().find(|s| s.name == "web").unwrap();
        assert_eq!((web.desired, web.running, web.updated, web.update_state), (3, 0, 0, Some("paused")));

        // The orchestrator and the scheduler run: tasks appear, one stays pending.
        let now = crate::testing::t0();
        let changes = crate::orchestrator::replicated::reconcile(&store, now);
        crate::testing::apply(&mut store, changes);
        let f = figures(&store);
        let tasks: Vec<_> = f.tasks.iter().map(|(k, n)| (*k, *n)).collect();
        assert_eq!(tasks.iter().map(|(_, n)| n).sum::<u64>(), 4, "{tasks:?}");
        let pending: Vec<_> = f.pending.iter().map(|(k, n)| (*k, *n)).collect();
        assert_eq!(pending.len(), PENDING_REASONS.len());
        assert_eq!(pending.iter().map(|(_, n)| n).sum::<u64>(), 4, "not tried yet: {pending:?}");
        assert_eq!(pending.iter().find(|(k, _)| *k == "waiting").unwrap().1, 4);

        // A task runs; then the service goes, and its figures with it.
        let mut t = crate::testing::tasks(&store).into_iter().find(|t| t.service_id == "svc-web").unwrap();
        let version = t.meta.version;
        t.status = shoal_api::TaskStatus::new(TaskState::Running, now, "started");
        crate::testing::apply(
            &mut store,
            vec![Change::Update { object: Object::Task(t), expected_version: version }],
        );
        let web = figures(&store).services.into_iter().find(|s| s.name == "web").unwrap();
        assert_eq!((web.running, web.updated), (1, 1));
        crate::testing::apply(
            &mut store,
            vec![Change::Delete { kind: Kind::Service, id: "svc-web".into(), expected_version: None }],
        );
        assert!(figures(&store).services.iter().all(|s| s.name != "web"));
    }

    #[test]
    fn pending_reasons_come_from_the_scheduler_message() {
        assert_eq!(pending_reason("no suitable node (the cluster has no nodes)"), "no_nodes");
        assert_eq!(
            pending_reason("no suitable node (2 nodes not satisfying the scheduling constraints)"),
            "constraints"
        );
        assert_eq!(
            pending_reason("no suitable node (1 node with too little CPU or memory unreserved)"),
            "resources"
        );
        assert_eq!(pending_reason("pending"), "waiting");
    }
}
