//! Execs through the leader (`task exec`): a client's exec becomes an
//! [`pb::ExecOpen`] on the exec stream of the node running the task; the node
//! answers by opening an `Exec` stream named by the exec's id, and the leader
//! relays frames between that stream and the client until the command's exit code
//! (or an error) has gone by. Nothing is kept once the exec ends.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use shoal_proto::dispatcher as pb;
use tokio::sync::{mpsc, oneshot};
use tonic::Status;

/// How long a node may take to answer an exec with its stream.
const ANSWER_WAIT: Duration = Duration::from_secs(15);

/// The node's side of an open exec.
#[derive(Debug)]
pub struct WorkerEnd {
    /// Output and the exit code, from the node.
    pub from_worker: tonic::Streaming<pb::ExecFrame>,
    /// Input and resizes, to the node.
    pub to_worker: mpsc::Sender<Result<pb::ExecFrame, Status>>,
}

/// An exec as its client sees it: frames in, frames out. The output ends after an
/// exit code or an error frame.
#[derive(Debug)]
pub struct ExecChannels {
    /// Input, `stdin_closed` and resizes.
    pub input: mpsc::Sender<pb::ExecFrame>,
    /// Output, then the exit code or an error.
    pub output: mpsc::Receiver<pb::ExecFrame>,
}

/// A frame with only `item`.
pub fn frame(item: pb::exec_frame::Item) -> pb::ExecFrame {
    pb::ExecFrame { exec_id: String::new(), item: Some(item) }
}

/// An error frame.
pub fn error(message: impl Into<String>) -> pb::ExecFrame {
    frame(pb::exec_frame::Item::Error(message.into()))
}

/// Whether `f` is the last frame of an exec.
pub fn is_last(f: &pb::ExecFrame) -> bool {
    matches!(f.item, Some(pb::exec_frame::Item::ExitCode(_) | pb::exec_frame::Item::Error(_)))
}

/// Routes exec requests to nodes and their streams back.
#[derive(Debug, Default)]
pub struct ExecBroker {
    /// Each connected node's exec-request channel.
    nodes: Mutex<HashMap<String, mpsc::Sender<pb::ExecOpen>>>,
    /// Execs sent to a node whose stream has not arrived: exec id → (node, waiter).
    pending: Mutex<HashMap<String, (String, oneshot::Sender<WorkerEnd>)>>,
}

impl ExecBroker {
    /// A node listens for exec requests (replacing its earlier stream).
    pub fn listen(&self, node: &str) -> mpsc::Receiver<pb::ExecOpen> {
        let (tx, rx) = mpsc::channel(16);
        self.nodes.lock().expect("nodes lock").insert(node.to_owned(), tx);
        rx
    }

    /// The node expected to open the stream of exec `id`.
    pub fn node_of(&self, id: &str) -> Option<String> {
        self.pending.lock().expect("pending lock").get(id).map(|(n, _)| n.clone())
    }

    /// Sends `open` to `node` and waits for the node's stream.
    pub async fn open(&self, node: &str, open: pb::ExecOpen) -> Result<WorkerEnd, String> {
        let id = open.exec_id.clone();
        let sender = self.nodes.lock().expect("nodes lock").get(node).cloned();
        let Some(sender) = sender else {
            return Err(format!("the task's node {node} is not connected to the leader: is it down?"));
        };
        let (tx, rx) = oneshot::channel();
        self.pending.lock().expect("pending lock").insert(id.clone(), (node.to_owned(), tx));
        let answer = async {
            sender.send(open).await.map_err(|_| format!("node {node} has left its session"))?;
            match tokio::time::timeout(ANSWER_WAIT, rx).await {
                Ok(Ok(end)) => Ok(end),
                Ok(Err(_)) => Err(format!("node {node} dropped the exec")),
                Err(_) => {
                    Err(format!("node {node} did not answer the exec within {}s", ANSWER_WAIT.as_secs()))
                }
            }
        }
        .await;
        self.pending.lock().expect("pending lock").remove(&id);
        answer
    }

    /// A node's stream for exec `id` arrived.
    pub fn arrive(&self, id: &str, end: WorkerEnd) -> Result<(), Status> {
        match self.pending.lock().expect("pending lock").remove(id) {
            Some((_, waiter)) => waiter.send(end).map_err(|_| Status::cancelled("the client went away")),
            None => Err(Status::not_found(format!("no exec {id} is waiting for its node"))),
        }
    }
}
