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

/// Everything assigned to `node_id` now.
pub fn for_node(store: &Store, node_id: &str) -> BTreeMap<String, Item> {
    let mut out = BTreeMap::new();
    for o in store.tasks_on_node(node_id) {
        let Object::Task(t) = o else { continue };
        if t.status.state < TaskState::Assigned {
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
        out.insert(format!("task/{}", t.id), Item::Task(Box::new(t.clone())));
    }
    for item in super::netmap::for_node(store, node_id) {
        out.insert(item.key(), Item::Net(serde_json::to_string(&item).expect("network map items serialize")));
    }
    out
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
}
