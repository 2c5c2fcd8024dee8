//! The seam between the agent and its node: what the agent asks of the machine it
//! runs on (look at task containers, prepare and start them, check their health,
//! stop and remove them, find their logs). The built-in runtime implements it
//! ([`Executor`](super::executor::Executor)); so does an in-memory fake
//! ([`FakeNode`](super::fake::FakeNode)) for tests and simulated agents. The node's
//! networking is behind it too: the agent hands over the network map and its tasks,
//! and the node wires them (its overlay data plane and resolvers for real).

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;

use chrono::Utc;
use shoal_api::netmap::NetItem;
use shoal_api::task_spec::HealthCheck;
use shoal_api::{Task, TaskState, TaskStatus};

use super::plan::Local;

/// A secret or config payload the manager sent for this node's tasks. Its Debug
/// leaves the data out.
#[derive(Clone, PartialEq, Eq)]
pub struct Payload {
    /// `secret` or `config`.
    pub kind: String,
    /// Its name.
    pub name: String,
    /// Its data.
    pub data: Vec<u8>,
}

impl std::fmt::Debug for Payload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Payload")
            .field("kind", &self.kind)
            .field("name", &self.name)
            .field("data", &format_args!("<{} bytes redacted>", self.data.len()))
            .finish()
    }
}

/// Payloads by `kind/id`, and by `kind/name` too (references use either).
pub type Payloads = BTreeMap<String, Payload>;

/// An error of a node that ends a task: it says how.
pub trait TaskError: std::error::Error + Send + Sync + 'static {
    /// `Rejected` when the task cannot run on this node as it is (image, spec,
    /// payloads), `Failed` when its container did not start or went wrong.
    fn task_state(&self) -> TaskState;
    /// A short status message ("image not found", "start failed").
    fn summary(&self) -> &'static str;
}

/// What the agent asks of its node. Every call but [`prepare`](Node::prepare) may
/// block; the agent runs them on tokio's blocking pool.
pub trait Node: Send + Sync + 'static {
    /// Why a call failed.
    type Error: TaskError;

    /// Ids of the tasks that have a container on this node (or what is left of
    /// one: its files).
    fn containers(&self) -> Result<Vec<String>, Self::Error>;

    /// What a task's container is doing (no container reads as `Absent`).
    fn inspect(&self, task_id: &str) -> Local;

    /// The health check the task's container runs, if any.
    fn health_check(&self, task: &Task) -> Option<HealthCheck>;

    /// Gets the task ready to start: finds its image, pulling it if allowed.
    fn prepare(&self, task: &Task) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Creates and starts the task's container, with the secrets and configs it uses.
    fn start(&self, task: &Task, payloads: &Payloads) -> Result<(), Self::Error>;

    /// Runs the task's health check once: `Ok(None)` when healthy, `Ok(Some(why))`
    /// when not, an error when it could not run (the container stopped).
    fn check_health(&self, task: &Task) -> Result<Option<String>, Self::Error>;

    /// Stops the task's container (its stop signal, then SIGKILL after the grace).
    fn stop(&self, task: &Task) -> Result<(), Self::Error>;

    /// Removes a task's container and files (stopping it first if it runs).
    fn remove(&self, task_id: &str) -> Result<(), Self::Error>;

    /// The log file of a task's container, if it has one here.
    fn log_path(&self, task_id: &str) -> Option<PathBuf>;

    /// Starts a command in a task's running container (`task exec`); the caller
    /// relays its stdio and waits for it. A node without containers has none.
    fn exec(
        &self,
        task_id: &str,
        spec: &crate::runtime::exec::ExecSpec,
        io: crate::runtime::exec::ExecIo,
    ) -> Result<crate::runtime::exec::ExecProcess, crate::runtime::RuntimeError> {
        let _ = (spec, io);
        Err(crate::runtime::RuntimeError::NotFound(task_id.to_owned()))
    }

    /// Takes the latest network map and the tasks assigned here. Cheap: the wiring
    /// happens in [`wire_network`](Node::wire_network), and for a task's own
    /// sandbox in [`prepare`](Node::prepare).
    fn set_network(&self, items: BTreeMap<String, NetItem>, tasks: Vec<Task>);

    /// Makes the node's networking match what it was last given; `full` re-reads
    /// the host first instead of trusting what it applied (the periodic resync).
    fn wire_network(&self, full: bool) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

/// The status a task gets from an error: its state and summary, and the error with
/// its sources as the status's error.
pub fn error_status(e: &impl TaskError) -> TaskStatus {
    let mut s = TaskStatus::new(e.task_state(), Utc::now(), e.summary());
    s.error = Some(error_chain(e));
    s
}

pub use shoal_api::report::chain as error_chain;
