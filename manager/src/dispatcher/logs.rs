//! Logs through the leader: a client asks for tasks' logs; the leader sends a
//! subscription to each node running them (over the node's log-subscription stream)
//! and relays what the nodes publish back, line batches as they come. Nothing is
//! stored on the managers; the lines stay in the workers' log files.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use shoal_proto::dispatcher as pb;
use tokio::sync::mpsc;

/// Routes subscriptions to nodes and published lines back to the subscribers.
#[derive(Debug, Default)]
pub struct LogBroker {
    /// Each connected node's subscription channel.
    nodes: Mutex<HashMap<String, mpsc::Sender<pb::LogSubscription>>>,
    /// Each open subscription's channel back to its client.
    subs: Mutex<HashMap<String, mpsc::Sender<pb::LogsReply>>>,
}

/// What a client asked for.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogOptions {
    /// Keep streaming new lines.
    pub follow: bool,
    /// Only the last N lines per task (0: all).
    pub tail: u64,
    /// Only lines at or after this time (Unix nanoseconds; 0: all).
    pub since_unix_nanos: i64,
}

/// An open subscription; dropping it tells the nodes to stop.
#[derive(Debug)]
pub struct Subscription {
    broker: Arc<LogBroker>,
    id: String,
    nodes: Vec<String>,
    /// Lines, per task, as nodes publish them; ends when every node is done.
    pub lines: mpsc::Receiver<pb::LogsReply>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.broker.subs.lock().expect("subs lock").remove(&self.id);
        let close =
            pb::LogSubscription { subscription_id: self.id.clone(), close: true, ..Default::default() };
        let nodes = self.broker.nodes.lock().expect("nodes lock");
        for n in &self.nodes {
            if let Some(tx) = nodes.get(n) {
                let _ = tx.try_send(close.clone());
            }
        }
    }
}

impl LogBroker {
    /// A node listens for subscriptions (replacing its earlier stream).
    pub fn listen(&self, node: &str) -> mpsc::Receiver<pb::LogSubscription> {
        let (tx, rx) = mpsc::channel(64);
        self.nodes.lock().expect("nodes lock").insert(node.to_owned(), tx);
        rx
    }

    /// Lines a node publishes for a subscription.
    pub async fn publish(&self, msg: pb::PublishLogsMessage) {
        let tx = self.subs.lock().expect("subs lock").get(&msg.subscription_id).cloned();
        if let Some(tx) = tx {
            let done = msg.done;
            let reply = pb::LogsReply { task_id: msg.task_id, lines: msg.lines, error: msg.error };
            if !reply.lines.is_empty() || !reply.error.is_empty() {
                let _ = tx.send(reply).await;
            }
            if done {
                // An empty reply with no task marks one node done.
                let _ = tx.send(pb::LogsReply::default()).await;
            }
        }
    }

    /// Asks every node in `by_node` (node → its task ids) for logs. Tasks on nodes
    /// that are not connected get an error line at once.
    pub fn subscribe(
        self: &Arc<Self>,
        by_node: BTreeMap<String, Vec<String>>,
        opts: LogOptions,
    ) -> (Subscription, usize) {
        let id = shoal_api::object::new_id();
        let (tx, rx) = mpsc::channel(256);
        self.subs.lock().expect("subs lock").insert(id.clone(), tx.clone());
        let nodes = self.nodes.lock().expect("nodes lock");
        let mut asked = Vec::new();
        for (node, task_ids) in by_node {
            let sub = pb::LogSubscription {
                subscription_id: id.clone(),
                task_ids: task_ids.clone(),
                follow: opts.follow,
                tail: opts.tail,
                since_unix_nanos: opts.since_unix_nanos,
                close: false,
            };
            match nodes.get(&node).map(|n| n.try_send(sub)) {
                Some(Ok(())) => asked.push(node),
                _ => {
                    for task_id in task_ids {
                        let error = format!("the logs are on node {node}, which is not connected");
                        let _ = tx.try_send(pb::LogsReply { task_id, lines: Vec::new(), error });
                    }
                }
            }
        }
        let waiting = asked.len();
        drop(nodes);
        (Subscription { broker: self.clone(), id, nodes: asked, lines: rx }, waiting)
    }
}
