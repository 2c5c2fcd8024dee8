//! An in-memory [`Node`]: containers are entries in a map, starts and stops are
//! instant, and every call is recorded. Tests drive the agent with it without root.
//! Failures are set up per image or per task.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Mutex;

use chrono::Utc;
use shoal_api::netmap::NetItem;
use shoal_api::task_spec::HealthCheck;
use shoal_api::{Task, TaskState};

use super::node::{Node, Payloads, TaskError};
use super::plan::Local;
use crate::image::ImageDefaults;
use crate::runtime::config;

/// One call the agent made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// [`Node::prepare`] for a task.
    Prepare(String),
    /// [`Node::start`] for a task.
    Start(String),
    /// [`Node::check_health`] for a task.
    CheckHealth(String),
    /// [`Node::stop`] for a task.
    Stop(String),
    /// [`Node::remove`] for a task.
    Remove(String),
}

/// Why a fake call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FakeError {
    /// The image was set up as missing.
    #[error("image {0} is not on this fake node")]
    NoImage(String),
    /// The task's start was set up to fail.
    #[error("the fake node refused to start task {task}: {reason}")]
    StartRefused {
        /// The task.
        task: String,
        /// The reason set up.
        reason: String,
    },
    /// The call needs a running container.
    #[error("task {0} has no running container on this fake node")]
    NotRunning(String),
}

impl TaskError for FakeError {
    fn task_state(&self) -> TaskState {
        match self {
            FakeError::NoImage(_) => TaskState::Rejected,
            FakeError::StartRefused { .. } | FakeError::NotRunning(_) => TaskState::Failed,
        }
    }

    fn summary(&self) -> &'static str {
        match self {
            FakeError::NoImage(_) => "image not found",
            FakeError::StartRefused { .. } => "start failed",
            FakeError::NotRunning(_) => "not running",
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    containers: BTreeMap<String, Local>,
    calls: Vec<Call>,
    missing_images: HashSet<String>,
    refused_starts: HashMap<String, String>,
    unhealthy: HashMap<String, String>,
    started_with: HashMap<String, Payloads>,
    network: BTreeMap<String, NetItem>,
    network_tasks: Vec<String>,
    wirings: Vec<bool>,
    /// Calls are not recorded (a long-running simulated node would grow without end).
    untraced: bool,
}

impl Inner {
    fn record(&mut self, call: Call) {
        if !self.untraced {
            self.calls.push(call);
        }
    }
}

/// A node that keeps its containers in memory.
#[derive(Debug, Default)]
pub struct FakeNode(Mutex<Inner>);

impl FakeNode {
    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0.lock().expect("fake node lock")
    }

    /// A node that records no calls and no wirings (for simulated agents that run for
    /// hours).
    pub fn untraced() -> FakeNode {
        FakeNode(Mutex::new(Inner { untraced: true, ..Inner::default() }))
    }

    /// Sets what a task's container is doing (a container left from before, or one
    /// that exited).
    pub fn set(&self, task_id: &str, local: Local) {
        self.inner().containers.insert(task_id.to_owned(), local);
    }

    /// What a task's container is doing.
    pub fn container(&self, task_id: &str) -> Local {
        self.inner().containers.get(task_id).cloned().unwrap_or(Local::Absent)
    }

    /// Makes `prepare` fail for tasks of this image.
    pub fn missing_image(&self, image: &str) {
        self.inner().missing_images.insert(image.to_owned());
    }

    /// Makes `start` fail for this task.
    pub fn refuse_start(&self, task_id: &str, reason: &str) {
        self.inner().refused_starts.insert(task_id.to_owned(), reason.to_owned());
    }

    /// Makes this task's health check fail (or pass again, with `None`).
    pub fn set_unhealthy(&self, task_id: &str, why: Option<&str>) {
        match why {
            Some(w) => self.inner().unhealthy.insert(task_id.to_owned(), w.to_owned()),
            None => self.inner().unhealthy.remove(task_id),
        };
    }

    /// The calls made so far, oldest first.
    pub fn calls(&self) -> Vec<Call> {
        self.inner().calls.clone()
    }

    /// The network map last handed over, and the ids of the tasks with it.
    pub fn network(&self) -> (BTreeMap<String, NetItem>, Vec<String>) {
        let inner = self.inner();
        (inner.network.clone(), inner.network_tasks.clone())
    }

    /// The wirings asked for, oldest first (`true`: a full resync).
    pub fn wirings(&self) -> Vec<bool> {
        self.inner().wirings.clone()
    }

    /// The payloads a task's container was started with.
    pub fn started_with(&self, task_id: &str) -> Option<Payloads> {
        self.inner().started_with.get(task_id).cloned()
    }
}

impl Node for FakeNode {
    type Error = FakeError;

    fn containers(&self) -> Result<Vec<String>, FakeError> {
        Ok(self.inner().containers.keys().cloned().collect())
    }

    fn inspect(&self, task_id: &str) -> Local {
        self.container(task_id)
    }

    /// The spec's health check (a fake image has none).
    fn health_check(&self, task: &Task) -> Option<HealthCheck> {
        config::health_check(&task.spec.container, &ImageDefaults::default())
    }

    async fn prepare(&self, task: &Task) -> Result<(), FakeError> {
        let mut inner = self.inner();
        inner.record(Call::Prepare(task.id.clone()));
        let image = &task.spec.container.image;
        if inner.missing_images.contains(image) {
            return Err(FakeError::NoImage(image.clone()));
        }
        Ok(())
    }

    fn start(&self, task: &Task, payloads: &Payloads) -> Result<(), FakeError> {
        let mut inner = self.inner();
        inner.record(Call::Start(task.id.clone()));
        if let Some(reason) = inner.refused_starts.get(&task.id) {
            return Err(FakeError::StartRefused { task: task.id.clone(), reason: reason.clone() });
        }
        inner.containers.insert(task.id.clone(), Local::Running);
        if !inner.untraced {
            inner.started_with.insert(task.id.clone(), payloads.clone());
        }
        Ok(())
    }

    fn check_health(&self, task: &Task) -> Result<Option<String>, FakeError> {
        let mut inner = self.inner();
        inner.record(Call::CheckHealth(task.id.clone()));
        if inner.containers.get(&task.id) != Some(&Local::Running) {
            return Err(FakeError::NotRunning(task.id.clone()));
        }
        Ok(inner.unhealthy.get(&task.id).cloned())
    }

    fn stop(&self, task: &Task) -> Result<(), FakeError> {
        let mut inner = self.inner();
        inner.record(Call::Stop(task.id.clone()));
        if let Some(local @ Local::Running) = inner.containers.get_mut(&task.id) {
            *local =
                Local::Exited { code: None, signal: Some(libc::SIGTERM), oom_killed: false, at: Utc::now() };
        }
        Ok(())
    }

    fn remove(&self, task_id: &str) -> Result<(), FakeError> {
        let mut inner = self.inner();
        inner.record(Call::Remove(task_id.to_owned()));
        inner.containers.remove(task_id);
        Ok(())
    }

    fn log_path(&self, _task_id: &str) -> Option<PathBuf> {
        None
    }

    fn set_network(&self, items: BTreeMap<String, NetItem>, tasks: Vec<Task>) {
        let mut inner = self.inner();
        inner.network = items;
        inner.network_tasks = tasks.into_iter().map(|t| t.id).collect();
    }

    async fn wire_network(&self, full: bool) -> Result<(), FakeError> {
        let mut inner = self.inner();
        if !inner.untraced {
            inner.wirings.push(full);
        }
        Ok(())
    }
}
