//! What a node is given: its tasks (once scheduled there), the secrets and configs
//! they use, and its part of the network map; and the difference between two such
//! sets, for incremental updates.

use std::collections::BTreeMap;

use shoal_api::{Task, TaskState};
use shoal_proto::dispatcher as pb;

use crate::store::{Kind, Object, Store};

/// One thing assigned to a node, keyed by `task/<id>`, `secret/<id>`, `config/<id>`.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// A task scheduled on the node.
    Task(Box<Task>),
    /// A secret or config a task on the node uses.
    Payload(pb::Payload),
    /// A piece of the network map, with its JSON (which is also its version).
    Net(String),
}

impl Item {
    fn version_key(&self) -> String {
        match self {
            Item::Task(t) => format!("{}:{:?}", t.meta.version, t.desired_state),
            Item::Payload(p) => format!("{}:{}", p.name, p.data.len()),
            Item::Net(json) => json.clone(),
        }
    }

    fn change(&self, action: pb::assignment_change::Action) -> pb::AssignmentChange {
        let item = match self {
            Item::Task(t) => {
                pb::assignment_change::Item::TaskJson(serde_json::to_vec(t).expect("tasks serialize"))
            }
            Item::Payload(p) => pb::assignment_change::Item::Payload(p.clone()),
            Item::Net(json) => pb::assignment_change::Item::NetItemJson(json.clone().into_bytes()),
        };
        pb::AssignmentChange { action: action as i32, item: Some(item) }
    }
}

/// Whether a task on a node may still start its container, so the node needs its
/// secrets and configs: scheduled there and not yet past RUNNING, and still meant
/// to run. A task that ended, or is being stopped, needs none: the node is told to
/// forget payloads no other task there needs.
pub fn needs_payloads(t: &Task) -> bool {
    (TaskState::Assigned..=TaskState::Running).contains(&t.status.state)
        && t.desired_state <= TaskState::Running
}

/// Everything assigned to `node_id` now: its tasks once scheduled there, the
/// secrets and configs of those that [need them](needs_payloads), and its part of
/// the network map. A payload no task of the node needs is not here, so a node
/// gets only what its tasks use.
pub fn for_node(store: &Store, node_id: &str) -> BTreeMap<String, Item> {
    let mut out = BTreeMap::new();
    for o in store.tasks_on_node(node_id) {
        let Object::Task(t) = o else { continue };
        if t.status.state < TaskState::Assigned {
            continue;
        }
        out.insert(format!("task/{}", t.id), Item::Task(Box::new(t.clone())));
        if !needs_payloads(t) {
            continue;
        }
        let c = &t.spec.container;
        for (kind, refs) in [(Kind::Secret, &c.secrets), (Kind::Config, &c.configs)] {
            for r in refs {
                let found = store.get(kind, &r.source).or_else(|| store.by_name(kind, &r.source));
                let payload = match found {
                    Some(Object::Secret(s)) => Some((s.id.clone(), s.spec.clone())),
                    Some(Object::Config(c)) => Some((c.id.clone(), c.spec.clone())),
                    _ => None,
                };
                if let Some((id, spec)) = payload {
                    let item = pb::Payload {
                        kind: kind.as_str().into(),
                        id: id.clone(),
                        name: spec.name,
                        data: spec.data,
                    };
                    out.insert(format!("{kind}/{id}"), Item::Payload(item));
                }
            }
        }
    }
    for item in super::netmap::for_node(store, node_id) {
        out.insert(item.key(), Item::Net(serde_json::to_string(&item).expect("network map items serialize")));
    }
    out
}

/// The nodes whose sets hold the secret or config `id` (named `name`): those with a
/// task that [needs payloads](needs_payloads) and refers to it by id or by name, as
/// [`for_node`] resolves it. Sorted, each once.
pub fn payload_users(store: &Store, kind: Kind, id: &str, name: &str) -> Vec<String> {
    let mut nodes: Vec<String> = store
        .list(Kind::Task)
        .filter_map(|o| {
            let Object::Task(t) = o else { return None };
            let c = &t.spec.container;
            let refs = if kind == Kind::Secret { &c.secrets } else { &c.configs };
            let uses = needs_payloads(t) && refs.iter().any(|r| r.source == id || r.source == name);
            if uses { t.node_id.clone() } else { None }
        })
        .collect();
    nodes.sort_unstable();
    nodes.dedup();
    nodes
}

/// The changes from what was sent (`sent`: key → version key) to `now`; `sent` is
/// updated to match.
pub fn diff(sent: &mut BTreeMap<String, String>, now: &BTreeMap<String, Item>) -> Vec<pb::AssignmentChange> {
    use pb::assignment_change::Action;
    let mut changes = Vec::new();
    for (key, item) in now {
        let v = item.version_key();
        if sent.get(key) != Some(&v) {
            changes.push(item.change(Action::Update));
            sent.insert(key.clone(), v);
        }
    }
    let gone: Vec<String> = sent.keys().filter(|k| !now.contains_key(*k)).cloned().collect();
    for key in gone {
        sent.remove(&key);
        let (kind, id) = key.split_once('/').unwrap_or((key.as_str(), ""));
        let item = match kind {
            "net" | "ep" | "svc" | "node" | "cluster" => pb::assignment_change::Item::NetKey(key.clone()),
            "task" => {
                // A removal names the task only: the worker knows the rest.
                pb::assignment_change::Item::TaskJson(
                    serde_json::to_vec(&serde_json::json!({ "id": id })).expect("json"),
                )
            }
            _ => pb::assignment_change::Item::Payload(pb::Payload {
                kind: kind.into(),
                id: id.into(),
                name: String::new(),
                data: Vec::new(),
            }),
        };
        changes.push(pb::AssignmentChange { action: Action::Remove as i32, item: Some(item) });
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orchestrator::{create, new_task};
    use crate::testing::*;

    #[test]
    fn a_node_gets_its_scheduled_tasks_and_their_secrets_then_only_changes() {
        let svc = service("web", |s| {
            s.task_template.container.secrets.push(shoal_api::task_spec::FileReference {
                source: "pw".into(),
                target: None,
                uid: 0,
                gid: 0,
                mode: 0o444,
            });
        });
        let secret = shoal_api::Secret {
            id: "sec1".into(),
            meta: shoal_api::Meta::new(t0()),
            spec: shoal_api::PayloadSpec {
                name: "pw".into(),
                labels: Default::default(),
                data: b"x".to_vec(),
            },
        };
        let mut store = store_with(vec![node("n1", &[]), node("n2", &[])], vec![]);
        apply(&mut store, vec![crate::store::Change::Create { object: Object::Secret(secret) }]);
        apply(&mut store, vec![crate::store::Change::Create { object: Object::Service(svc.clone()) }]);
        let mut assigned = new_task(&svc, Some(1), Some("n1"), t0());
        assigned.status.state = TaskState::Assigned;
        let pending = new_task(&svc, Some(2), Some("n1"), t0());
        let elsewhere = {
            let mut t = new_task(&svc, Some(3), Some("n2"), t0());
            t.status.state = TaskState::Assigned;
            t
        };
        apply(&mut store, vec![create(assigned.clone()), create(pending), create(elsewhere)]);
        let now = for_node(&store, "n1");
        assert_eq!(
            now.keys().cloned().collect::<Vec<_>>(),
            ["cluster", "node/n1", "secret/sec1", format!("task/{}", assigned.id).as_str()]
        );
        let mut sent = BTreeMap::new();
        assert_eq!(diff(&mut sent, &now).len(), 4);
        assert!(diff(&mut sent, &now).is_empty());
        let changes = diff(&mut sent, &BTreeMap::new());
        assert_eq!(changes.len(), 4);
        assert!(changes.iter().all(|c| c.action == pb::assignment_change::Action::Remove as i32));
    }

    #[test]
    fn a_payload_is_used_by_the_nodes_whose_live_tasks_name_it() {
        let uses = |by: &str| {
            service(&format!("uses-{by}"), |s| {
                s.task_template.container.configs.push(shoal_api::task_spec::FileReference {
                    source: by.into(),
                    target: None,
                    uid: 0,
                    gid: 0,
                    mode: 0o444,
                });
            })
        };
        let (by_name, by_id, other) = (uses("motd"), uses("cfg1"), service("plain", |_| {}));
        let mut store = store_with(vec![node("n1", &[]), node("n2", &[]), node("n3", &[])], vec![]);
        let config = payload(Kind::Config, "cfg1", "motd", b"hi");
        apply(&mut store, vec![crate::store::Change::Create { object: config }]);
        let services = [&by_name, &by_id, &other]
            .map(|s| crate::store::Change::Create { object: Object::Service(s.clone()) });
        apply(&mut store, services.into());
        let task = |svc: &shoal_api::Service, slot: u64, node: &str, state: TaskState| {
            let mut t = new_task(svc, Some(slot), Some(node), t0());
            t.status.state = state;
            create(t)
        };
        apply(
            &mut store,
            vec![
                task(&by_name, 1, "n1", TaskState::Running),
                task(&by_name, 2, "n1", TaskState::Assigned),
                task(&by_id, 1, "n2", TaskState::Starting),
                task(&by_id, 2, "n3", TaskState::Complete),
                task(&other, 1, "n3", TaskState::Running),
            ],
        );
        assert_eq!(payload_users(&store, Kind::Config, "cfg1", "motd"), ["n1", "n2"]);
        assert_eq!(payload_users(&store, Kind::Config, "cfg2", "banner"), Vec::<String>::new());
        assert_eq!(payload_users(&store, Kind::Secret, "cfg1", "motd"), Vec::<String>::new(), "not a secret");
    }

    fn payload(kind: Kind, id: &str, name: &str, data: &[u8]) -> Object {
        let spec =
            shoal_api::PayloadSpec { name: name.into(), labels: Default::default(), data: data.to_vec() };
        let meta = shoal_api::Meta::new(t0());
        match kind {
            Kind::Secret => Object::Secret(shoal_api::Secret { id: id.into(), meta, spec }),
            _ => Object::Config(shoal_api::Config { id: id.into(), meta, spec }),
        }
    }

    fn keys(now: &BTreeMap<String, Item>, prefix: &str) -> Vec<String> {
        now.keys().filter(|k| k.starts_with(prefix)).cloned().collect()
    }

    fn set_state(store: &mut Store, task: &mut Task, state: TaskState, desired: TaskState) {
        let Some(Object::Task(stored)) = store.get(Kind::Task, &task.id) else {
            panic!("no task {}", task.id)
        };
        task.meta = stored.meta.clone();
        task.status.state = state;
        task.desired_state = desired;
        let object = Object::Task(task.clone());
        apply(store, vec![crate::store::Change::Update { object, expected_version: task.meta.version }]);
    }

    #[test]
    fn payloads_go_only_where_a_live_task_uses_them_and_are_forgotten_after() {
        use pb::assignment_change::{Action, Item as PbItem};
        // Two services: "db" uses secret pw (by name) and config conf (by id); "web"
        // uses pw too. n1 runs a db task, n2 a web task, n3 a task with none.
        let db = service("db", |s| {
            s.task_template.container.secrets.push(shoal_api::task_spec::FileReference::new("pw"));
            s.task_template.container.configs.push(shoal_api::task_spec::FileReference::new("cfg1"));
        });
        let web = service("web", |s| {
            s.task_template.container.secrets.push(shoal_api::task_spec::FileReference::new("sec1"));
        });
        let plain = service("plain", |_| {});
        let mut store = store_with(vec![node("n1", &[]), node("n2", &[]), node("n3", &[])], vec![]);
        apply(
            &mut store,
            vec![
                crate::store::Change::Create { object: payload(Kind::Secret, "sec1", "pw", b"hunter2") },
                crate::store::Change::Create { object: payload(Kind::Config, "cfg1", "conf", b"a=1") },
                crate::store::Change::Create { object: payload(Kind::Secret, "sec2", "unused", b"zzz") },
            ],
        );
        for s in [&db, &web, &plain] {
            apply(&mut store, vec![crate::store::Change::Create { object: Object::Service(s.clone()) }]);
        }
        let mut on_n1 = new_task(&db, Some(1), Some("n1"), t0());
        on_n1.status.state = TaskState::Assigned;
        let mut on_n2 = new_task(&web, Some(1), Some("n2"), t0());
        on_n2.status.state = TaskState::Assigned;
        let mut on_n3 = new_task(&plain, Some(1), Some("n3"), t0());
        on_n3.status.state = TaskState::Assigned;
        apply(&mut store, vec![create(on_n1.clone()), create(on_n2.clone()), create(on_n3.clone())]);

        assert_eq!(keys(&for_node(&store, "n1"), "secret/"), ["secret/sec1"]);
        assert_eq!(keys(&for_node(&store, "n1"), "config/"), ["config/cfg1"]);
        assert_eq!(keys(&for_node(&store, "n2"), "secret/"), ["secret/sec1"]);
        assert!(keys(&for_node(&store, "n2"), "config/").is_empty());
        assert!(
            keys(&for_node(&store, "n3"), "secret/").is_empty()
                && keys(&for_node(&store, "n3"), "config/").is_empty()
        );
        // What goes on the wire to n1 carries the data; nothing goes for sec2 anywhere.
        let mut sent = BTreeMap::new();
        let first = diff(&mut sent, &for_node(&store, "n1"));
        let data: Vec<&[u8]> = first
            .iter()
            .filter_map(|c| match &c.item {
                Some(PbItem::Payload(p)) => Some(p.data.as_slice()),
                _ => None,
            })
            .collect();
        assert_eq!(data, [&b"a=1"[..], &b"hunter2"[..]]);

        // Running still needs them: nothing changes for n1.
        set_state(&mut store, &mut on_n1, TaskState::Running, TaskState::Running);
        assert!(
            diff(&mut sent, &for_node(&store, "n1"))
                .iter()
                .all(|c| !matches!(c.item, Some(PbItem::Payload(_))))
        );

        // Being stopped (desired SHUTDOWN): the task stays, its payloads are forgotten.
        set_state(&mut store, &mut on_n1, TaskState::Running, TaskState::Shutdown);
        let changes = diff(&mut sent, &for_node(&store, "n1"));
        let removed: Vec<(String, String)> = changes
            .iter()
            .filter(|c| c.action == Action::Remove as i32)
            .filter_map(|c| match &c.item {
                Some(PbItem::Payload(p)) => {
                    assert!(p.data.is_empty(), "a removal carries no data");
                    Some((p.kind.clone(), p.id.clone()))
                }
                _ => None,
            })
            .collect();
        assert_eq!(
            removed,
            [("config".to_owned(), "cfg1".to_owned()), ("secret".to_owned(), "sec1".to_owned())]
        );
        assert!(sent.contains_key(&format!("task/{}", on_n1.id)), "the task itself is still assigned");

        // Ended tasks need none either, even if still meant to run.
        set_state(&mut store, &mut on_n2, TaskState::Failed, TaskState::Running);
        assert!(keys(&for_node(&store, "n2"), "secret/").is_empty());
        // A task not yet accepted by its node, or not scheduled, gets nothing.
        let pending = new_task(&db, Some(2), Some("n3"), t0());
        apply(&mut store, vec![create(pending)]);
        assert!(keys(&for_node(&store, "n3"), "secret/").is_empty());
    }
}
