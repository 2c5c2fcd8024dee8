//! The manager's own thread for Raft: a single-threaded async runtime where
//! openraft's core, its replication streams, the log's hand-offs, the cluster port's
//! accept loop and the connections of other managers are served ([`crate::server`]
//! serves workers' connections on the shared runtime).
//!
//! On the process's shared runtime, a write's dozen hand-offs (request, core, log,
//! replication, answers, apply, reply) hopped between its worker threads, each hop
//! waking a parked thread: one client's writes settled for seconds at about 0.45 ms
//! or about 0.85 ms. On one thread they stay in one place. The thread also keeps
//! heartbeats and votes going while the API and the controllers keep the other
//! workers busy (a controller's pass over 100,000 tasks takes a worker for a while).
//! The cost: Raft uses one core at most (docs/architecture.md, "Where a write's time
//! goes").

use std::future::Future;
use std::sync::Mutex;

use crate::manager::ManagerError;

/// The name of the thread, as `ps -L` and `top -H` show it.
pub const NAME: &str = "shoal-raft";

/// The thread and a way to run work on it. Dropping it (or [`stop`](Self::stop))
/// ends the thread, and so does the end of the runtime that started it, as that
/// ended a manager's tasks when they ran there; tasks still on the thread are dropped.
#[derive(Debug)]
pub struct RaftThread {
    handle: tokio::runtime::Handle,
    stop: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
}

impl RaftThread {
    /// Starts the thread and its runtime.
    pub fn start() -> Result<RaftThread, ManagerError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| ManagerError::io("start the Raft thread's runtime".into(), e))?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        // A task on the starting runtime holds this sender: it is dropped with that
        // runtime.
        let (starter_alive, starter_gone) = tokio::sync::oneshot::channel::<()>();
        if let Ok(starter) = tokio::runtime::Handle::try_current() {
            starter.spawn(async move {
                let _alive = starter_alive;
                std::future::pending::<()>().await
            });
        }
        std::thread::Builder::new()
            .name(NAME.to_owned())
            .spawn(move || {
                // Told to stop, or a sender dropped (with the manager, or with the
                // starting runtime).
                runtime.block_on(async {
                    tokio::select! {
                        _ = stopped => {}
                        _ = starter_gone => {}
                    }
                });
            })
            .map_err(|e| ManagerError::io("start the Raft thread".into(), e))?;
        Ok(RaftThread { handle, stop: Mutex::new(Some(stop)) })
    }

    /// Runs `work` on the thread and waits for its result. Tasks it spawns (openraft's
    /// core, a server's connections) stay on the thread.
    pub async fn run<F>(&self, work: F) -> Result<F::Output, ManagerError>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle.spawn(work).await.map_err(|e| ManagerError::io("run work on the Raft thread".into(), e))
    }

    /// Spawns `task` on the thread.
    pub fn spawn<F>(&self, task: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle.spawn(task)
    }

    /// Runs `f` where the thread's runtime is current: sockets made in it are
    /// registered with the thread's I/O driver.
    pub fn enter<T>(&self, f: impl FnOnce() -> T) -> T {
        let _guard = self.handle.enter();
        f()
    }

    /// Ends the thread: tasks still on it are dropped.
    pub fn stop(&self) {
        self.stop.lock().expect("raft thread stop").take();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn work_runs_on_the_named_thread_until_stopped() {
        let thread = RaftThread::start().unwrap();
        let name = thread.run(async { std::thread::current().name().map(str::to_owned) }).await.unwrap();
        assert_eq!(name.as_deref(), Some(NAME));
        // A task spawned by the work stays on the thread.
        let spawned = thread
            .run(async {
                let task = tokio::spawn(async { std::thread::current().name().map(str::to_owned) });
                task.await.unwrap()
            })
            .await
            .unwrap();
        assert_eq!(spawned.as_deref(), Some(NAME));
        let pending = thread.spawn(std::future::pending::<()>());
        thread.stop();
        assert!(pending.await.unwrap_err().is_cancelled(), "tasks on it are dropped");
        assert!(thread.run(async {}).await.is_err(), "nothing runs after it stopped");
    }

    #[test]
    fn the_thread_ends_with_the_runtime_that_started_it() {
        let starter = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let thread = starter.block_on(async { RaftThread::start() }).unwrap();
        let pending = thread.spawn(std::future::pending::<()>());
        drop(starter);
        let waiter = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let ended = waiter.block_on(async { tokio::time::timeout(Duration::from_secs(10), pending).await });
        assert!(ended.expect("ended in time").unwrap_err().is_cancelled());
    }
}
