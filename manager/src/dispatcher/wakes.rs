//! Which nodes a store change concerns. One task reads the store's events and wakes
//! the assignment streams of just those nodes, so a change to a task on one node
//! costs one node's assignment set, not every node's: at 1,000 nodes, recomputing
//! every node's set on every change starved the leader. A secret or config wakes
//! only the nodes whose tasks use it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use shoal_api::stored::{Event, Kind, Object};
use tokio::sync::{broadcast, watch};

/// Who a change wakes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wake {
    /// Only this node's stream: a change to a task there that no other node sees.
    Node(String),
    /// These nodes: those whose tasks use a secret or config that changed.
    Nodes(Vec<String>),
    /// Every node: a change to what every node's set may hold (services, nodes,
    /// networks, payloads, the cluster), or to a task with network endpoints,
    /// which appear in other nodes' network maps.
    All,
    /// Nobody: a task not yet on a node, with no endpoints.
    Nobody,
}

/// Who `event` wakes; see [`super::assignments::for_node`] for what a node's set is
/// made of. Pure but for `users`, which names the nodes whose tasks use a secret or
/// config (kind, id, name): [`super::assignments::payload_users`] on the store.
pub fn of(event: &Event, users: impl FnOnce(Kind, &str, &str) -> Vec<String>) -> Wake {
    let payload = |kind: Kind, id: &str, name: &str| match users(kind, id, name) {
        nodes if nodes.is_empty() => Wake::Nobody,
        nodes => Wake::Nodes(nodes),
    };
    match event.object.as_ref() {
        Object::Task(t) if !t.networks.is_empty() => Wake::All,
        Object::Task(t) => t.node_id.clone().map_or(Wake::Nobody, Wake::Node),
        Object::Secret(s) => payload(Kind::Secret, &s.id, &s.spec.name),
        Object::Config(c) => payload(Kind::Config, &c.id, &c.spec.name),
        _ => Wake::All,
    }
}

/// One waker per node with an assignment stream, fed by the store's events.
#[derive(Debug, Default)]
pub struct Wakes {
    nodes: Mutex<HashMap<String, watch::Sender<u64>>>,
    started: Mutex<bool>,
}

impl Wakes {
    /// A receiver that changes whenever a change concerns `node_id`. The caller
    /// subscribes before it reads the store, so no change falls in between.
    pub fn subscribe(&self, node_id: &str) -> watch::Receiver<u64> {
        let mut nodes = self.nodes.lock().expect("wakes lock");
        nodes.entry(node_id.to_owned()).or_insert_with(|| watch::channel(0).0).subscribe()
    }

    /// Starts reading the events `watch` subscribes to, on the first call, asking
    /// `users` who uses a changed secret or config (see [`of`]). The reader ends when
    /// the store's event log or these wakers go away.
    pub fn start<E>(
        self: &Arc<Self>,
        watch: impl FnOnce() -> Result<broadcast::Receiver<Event>, E>,
        users: impl Fn(Kind, &str, &str) -> Vec<String> + Send + 'static,
    ) -> Result<(), E> {
        let mut started = self.started.lock().expect("wakes start lock");
        if *started {
            return Ok(());
        }
        let mut events = watch()?;
        *started = true;
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let wake = match events.recv().await {
                    Ok(e) => of(&e, &users),
                    Err(broadcast::error::RecvError::Lagged(_)) => Wake::All,
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                let Some(me) = me.upgrade() else { return };
                me.wake(&wake);
            }
        });
        Ok(())
    }

    /// Wakes whom `wake` names; forgets nodes whose streams are all gone.
    pub fn wake(&self, wake: &Wake) {
        let mut nodes = self.nodes.lock().expect("wakes lock");
        match wake {
            Wake::Nobody => {}
            Wake::Node(n) => Self::wake_one(&mut nodes, n),
            Wake::Nodes(list) => {
                for n in list {
                    Self::wake_one(&mut nodes, n);
                }
            }
            Wake::All => {
                nodes.retain(|_, tx| {
                    tx.send_modify(|g| *g += 1);
                    !tx.is_closed()
                });
            }
        }
    }

    fn wake_one(nodes: &mut HashMap<String, watch::Sender<u64>>, node: &str) {
        if let Some(tx) = nodes.get(node) {
            tx.send_modify(|g| *g += 1);
            if tx.is_closed() {
                nodes.remove(node);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orchestrator::new_task;
    use crate::testing::*;
    use shoal_api::stored::Action;

    fn event(object: Object) -> Event {
        Event { index: 1, action: Action::Update, object: Arc::new(object) }
    }

    #[test]
    fn a_task_wakes_its_node_unless_other_nodes_see_it() {
        let of = |e: &Event| of(e, |_, _, _| panic!("only payloads ask who uses them"));
        let svc = service("web", |_| {});
        let placed = new_task(&svc, Some(1), Some("n1"), t0());
        assert_eq!(of(&event(Object::Task(placed.clone()))), Wake::Node("n1".into()));
        let unplaced = new_task(&svc, Some(2), None, t0());
        assert_eq!(of(&event(Object::Task(unplaced))), Wake::Nobody);
        let mut on_net = placed;
        on_net.networks.push(shoal_api::task::NetworkAttachment {
            network_id: "net1".into(),
            addresses: vec![],
            aliases: vec![],
        });
        assert_eq!(of(&event(Object::Task(on_net))), Wake::All, "its endpoint is in others' maps");
        assert_eq!(of(&event(Object::Service(svc))), Wake::All);
        assert_eq!(of(&event(Object::Node(node("n2", &[])))), Wake::All);
    }

    #[test]
    fn a_secret_or_config_wakes_only_the_nodes_that_use_it() {
        let spec = shoal_api::PayloadSpec { name: "motd".into(), labels: Default::default(), data: vec![] };
        let config =
            shoal_api::Config { id: "cfg1".into(), meta: shoal_api::Meta::new(t0()), spec: spec.clone() };
        let secret = shoal_api::Secret { id: "sec1".into(), meta: shoal_api::Meta::new(t0()), spec };
        let asked = std::cell::RefCell::new(Vec::new());
        let users = |kind: Kind, id: &str, name: &str| {
            asked.borrow_mut().push(format!("{kind:?} {id} {name}"));
            if kind == Kind::Config { vec!["n1".to_owned(), "n3".to_owned()] } else { vec![] }
        };
        assert_eq!(of(&event(Object::Config(config)), users), Wake::Nodes(vec!["n1".into(), "n3".into()]));
        assert_eq!(of(&event(Object::Secret(secret)), users), Wake::Nobody, "used by no task");
        assert_eq!(*asked.borrow(), ["Config cfg1 motd", "Secret sec1 motd"]);
    }

    #[tokio::test]
    async fn only_the_named_node_wakes_and_gone_streams_are_forgotten() {
        let wakes = Arc::new(Wakes::default());
        let (tx, rx) = broadcast::channel(16);
        wakes.start(|| Ok::<_, ()>(rx), |_, _, _| vec!["n1".to_owned()]).expect("started");
        let mut n1 = wakes.subscribe("n1");
        let mut n2 = wakes.subscribe("n2");
        let svc = service("web", |_| {});
        tx.send(event(Object::Task(new_task(&svc, Some(1), Some("n1"), t0())))).expect("send");
        tokio::time::timeout(std::time::Duration::from_secs(5), n1.changed())
            .await
            .expect("n1 woken")
            .expect("open");
        assert!(!n2.has_changed().expect("open"), "n2 runs nothing that changed");
        tx.send(event(Object::Service(svc))).expect("send");
        tokio::time::timeout(std::time::Duration::from_secs(5), n2.changed())
            .await
            .expect("n2 woken")
            .expect("open");
        let config = shoal_api::Config {
            id: "cfg1".into(),
            meta: shoal_api::Meta::new(t0()),
            spec: shoal_api::PayloadSpec { name: "motd".into(), labels: Default::default(), data: vec![] },
        };
        n1.borrow_and_update(); // the service's wake, seen
        tx.send(event(Object::Config(config))).expect("send");
        tokio::time::timeout(std::time::Duration::from_secs(5), n1.changed())
            .await
            .expect("n1 woken: its tasks use the config")
            .expect("open");
        assert!(!n2.has_changed().expect("open"), "n2 uses no config");
        drop(n1);
        wakes.wake(&Wake::All);
        assert_eq!(wakes.nodes.lock().expect("lock").keys().collect::<Vec<_>>(), ["n2"]);
    }
}
