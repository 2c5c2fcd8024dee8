//! Which nodes a store change concerns. One task reads the store's events and wakes
//! the assignment streams of just those nodes, so a change to a task on one node
//! costs one node's assignment set, not every node's: at 1,000 nodes, recomputing
//! every node's set on every change starved the leader.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use shoal_api::stored::{Event, Object};
use tokio::sync::{broadcast, watch};

/// Who a change wakes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wake {
    /// Only this node's stream: a change to a task there that no other node sees.
    Node(String),
    /// Every node: a change to what every node's set may hold (services, nodes,
    /// networks, payloads, the cluster), or to a task with network endpoints,
    /// which appear in other nodes' network maps.
    All,
    /// Nobody: a task not yet on a node, with no endpoints.
    Nobody,
}

/// Who `event` wakes. Pure; see [`super::assignments::for_node`] for what a node's
/// set is made of.
pub fn of(event: &Event) -> Wake {
    match event.object.as_ref() {
        Object::Task(t) if !t.networks.is_empty() => Wake::All,
        Object::Task(t) => t.node_id.clone().map_or(Wake::Nobody, Wake::Node),
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

    /// Starts reading the events `watch` subscribes to, on the first call. The
    /// reader ends when the store's event log or these wakers go away.
    pub fn start<E>(
        self: &Arc<Self>,
        watch: impl FnOnce() -> Result<broadcast::Receiver<Event>, E>,
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
                    Ok(e) => of(&e),
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
            Wake::Node(n) => {
                if let Some(tx) = nodes.get(n) {
                    tx.send_modify(|g| *g += 1);
                    if tx.is_closed() {
                        nodes.remove(n);
                    }
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

    #[tokio::test]
    async fn only_the_named_node_wakes_and_gone_streams_are_forgotten() {
        let wakes = Arc::new(Wakes::default());
        let (tx, rx) = broadcast::channel(16);
        wakes.start(|| Ok::<_, ()>(rx)).expect("started");
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
        drop(n1);
        wakes.wake(&Wake::All);
        assert_eq!(wakes.nodes.lock().expect("lock").keys().collect::<Vec<_>>(), ["n2"]);
    }
}
