//! A [`Node`] that takes time: the in-memory [`FakeNode`] behind jittered delays, so
//! simulated agents report PREPARING, STARTING and RUNNING the way a real node
//! would, fail a share of their starts, and end their jobs after a while.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use shoal_api::Task;
use shoal_api::netmap::NetItem;
use shoal_api::task_spec::HealthCheck;

use crate::agent::fake::{FakeError, FakeNode};
use crate::agent::node::{Node, Payloads};
use crate::agent::plan::Local;

/// How long a simulated node takes, and how often it fails.
#[derive(Debug, Clone, Copy)]
pub struct Timings {
    /// PREPARING lasts a uniform random time up to this.
    pub prepare: Duration,
    /// STARTING lasts this, ±20 %.
    pub start: Duration,
    /// A job's task runs this long (±20 %), then exits 0.
    pub job_run: Duration,
    /// The share of starts that fail (0 to 1).
    pub fail_starts: f64,
}

impl Default for Timings {
    /// About what a container on this machine takes (issue 20's plan: PREPARING up to
    /// 50 ms, STARTING 200 ms ± 20 %), jobs of a second, no failures.
    fn default() -> Timings {
        Timings {
            prepare: Duration::from_millis(50),
            start: Duration::from_millis(200),
            job_run: Duration::from_secs(1),
            fail_starts: 0.0,
        }
    }
}

/// `d` ± 20 %.
fn jitter(d: Duration) -> Duration {
    d.mul_f64(rand::random_range(0.8..1.2))
}

/// A fake node with timings; clones share it (the agent has one, its watcher another).
#[derive(Debug, Clone)]
pub struct TimedNode {
    fake: Arc<FakeNode>,
    timings: Timings,
    /// When each running job's task exits.
    jobs: Arc<Mutex<Exits>>,
}

/// When each running job's task exits: on the monotonic clock, and as reported.
type Exits = HashMap<String, (Instant, DateTime<Utc>)>;

impl TimedNode {
    /// A node with no containers.
    pub fn new(timings: Timings) -> TimedNode {
        TimedNode { fake: Arc::new(FakeNode::untraced()), timings, jobs: Arc::default() }
    }

    fn jobs(&self) -> std::sync::MutexGuard<'_, Exits> {
        self.jobs.lock().expect("jobs lock")
    }

    /// How many of its containers run now.
    pub fn running(&self) -> usize {
        let ids = self.fake.containers().unwrap_or_default();
        ids.iter().filter(|id| self.inspect(id) == Local::Running).count()
    }
}

impl Node for TimedNode {
    type Error = FakeError;

    fn containers(&self) -> Result<Vec<String>, FakeError> {
        self.fake.containers()
    }

    /// A job whose time is up has exited 0.
    fn inspect(&self, task_id: &str) -> Local {
        let ended = {
            let mut jobs = self.jobs();
            match jobs.get(task_id) {
                Some(&(due, at)) if due <= Instant::now() => {
                    jobs.remove(task_id);
                    Some(at)
                }
                _ => None,
            }
        };
        if let Some(at) = ended {
            self.fake.set(task_id, Local::Exited { code: Some(0), signal: None, oom_killed: false, at });
        }
        self.fake.inspect(task_id)
    }

    fn health_check(&self, task: &Task) -> Option<HealthCheck> {
        self.fake.health_check(task)
    }

    async fn prepare(&self, task: &Task) -> Result<(), FakeError> {
        let max = self.timings.prepare.as_secs_f64();
        if max > 0.0 {
            tokio::time::sleep(Duration::from_secs_f64(rand::random_range(0.0..max))).await;
        }
        self.fake.prepare(task).await
    }

    /// Runs on the blocking pool, as a real start does: it blocks for the start time.
    fn start(&self, task: &Task, payloads: &Payloads) -> Result<(), FakeError> {
        std::thread::sleep(jitter(self.timings.start));
        if rand::random::<f64>() < self.timings.fail_starts {
            let reason = "a simulated start failure".to_owned();
            return Err(FakeError::StartRefused { task: task.id.clone(), reason });
        }
        self.fake.start(task, payloads)?;
        if task.job_iteration.is_some() {
            let run = jitter(self.timings.job_run);
            let at = Utc::now() + chrono::Duration::from_std(run).unwrap_or_default();
            self.jobs().insert(task.id.clone(), (Instant::now() + run, at));
        }
        Ok(())
    }

    fn check_health(&self, task: &Task) -> Result<Option<String>, FakeError> {
        self.fake.check_health(task)
    }

    fn stop(&self, task: &Task) -> Result<(), FakeError> {
        self.jobs().remove(&task.id);
        self.fake.stop(task)
    }

    fn remove(&self, task_id: &str) -> Result<(), FakeError> {
        self.jobs().remove(task_id);
        self.fake.remove(task_id)
    }

    fn log_path(&self, task_id: &str) -> Option<PathBuf> {
        self.fake.log_path(task_id)
    }

    fn set_network(&self, items: std::collections::BTreeMap<String, NetItem>, tasks: Vec<Task>) {
        self.fake.set_network(items, tasks);
    }

    async fn wire_network(&self, full: bool) -> Result<(), FakeError> {
        self.fake.wire_network(full).await
    }
}

#[cfg(test)]
mod tests {
    use shoal_api::TaskState;

    use super::*;

    fn task(id: &str, job: bool) -> Task {
        Task { job_iteration: job.then_some(1), ..crate::agent::tests::task(id, TaskState::Running) }
    }

    #[tokio::test]
    async fn a_job_exits_after_its_run_and_failures_follow_the_share() {
        let fast = Timings {
            prepare: Duration::ZERO,
            start: Duration::from_millis(1),
            job_run: Duration::from_millis(20),
            fail_starts: 0.0,
        };
        let node = TimedNode::new(fast);
        let (job, svc) = (task("j1", true), task("t1", false));
        node.prepare(&job).await.unwrap();
        node.start(&job, &Payloads::new()).unwrap();
        node.start(&svc, &Payloads::new()).unwrap();
        assert_eq!(node.inspect("j1"), Local::Running);
        assert_eq!(node.running(), 2);
        let deadline = Instant::now() + Duration::from_secs(5);
        while node.inspect("j1") == Local::Running {
            assert!(Instant::now() < deadline, "the job never exited");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(matches!(node.inspect("j1"), Local::Exited { code: Some(0), .. }));
        assert_eq!(node.inspect("t1"), Local::Running);

        let failing = TimedNode::new(Timings { fail_starts: 1.0, ..fast });
        let e = failing.start(&svc, &Payloads::new()).unwrap_err();
        assert_eq!(crate::agent::node::TaskError::task_state(&e), TaskState::Failed);
        assert_eq!(failing.inspect("t1"), Local::Absent);
    }
}
