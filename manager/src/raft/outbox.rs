//! When the Raft log's writes reach the WAL's writer thread. Every write (appends, the
//! vote, the commit index, truncations, purges) is queued here in the order openraft
//! makes it. A leader's append of entries it made waits until the Raft thread has run
//! every task that was ready: openraft's replication streams, which send the entries
//! to the followers. Handed over at once, it woke the writer thread first, and the
//! followers got the entries that much later; a commit waits on a follower's sync, so
//! that sync should start first. The leader's own sync still runs alongside the
//! followers' (Raft lets a leader write its log in parallel with replication: Ongaro's
//! thesis, §10.2.1). It waits only while the writer thread is idle: a busy writer takes
//! its next batch when its sync ends, and an append that waited could miss that batch
//! and wait a whole sync more (at 64 clients that cost 1–4.5 % of the writes). A
//! follower's append, what its leader waits on, goes at once, with whatever waits
//! before it; so do the vote and truncations, which openraft waits on. The commit
//! index and purges wait like a leader's append.
//!
//! The order is kept: the queue is handed over whole, under its lock, so no write
//! overtakes one queued before it. Without a Tokio runtime (tools, tests), writes are
//! handed over at once.

use std::sync::{Arc, Mutex};

use shoal_wal::{Done, Op, Wal};

/// The log's writes waiting for the end of the Raft thread's pass. While the queue
/// is not empty, a task that hands it over is on its way.
pub(super) struct Outbox {
    wal: Wal,
    queue: Mutex<Vec<Job>>,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox").field("queued", &self.queue.lock().map_or(0, |q| q.len())).finish()
    }
}

struct Job {
    ops: Vec<Op>,
    sync: bool,
    done: Option<Done>,
}

impl Outbox {
    pub(super) fn new(wal: Wal) -> Arc<Outbox> {
        Arc::new(Outbox { wal, queue: Mutex::default() })
    }

    /// Queues `ops` behind every write queued before (see [`Wal::submit`] for `sync`
    /// and `done`), to be handed over once the ready tasks have run if `after_ready`
    /// and the writer thread is idle, else at once (with everything queued before). A
    /// write the WAL refuses is told so through `done`.
    pub(super) fn submit(self: &Arc<Self>, ops: Vec<Op>, sync: bool, done: Option<Done>, after_ready: bool) {
        let after_ready = after_ready && self.wal.writer_idle();
        let mut queue = self.queue.lock().expect("outbox lock");
        let flush_due = !queue.is_empty();
        queue.push(Job { ops, sync, done });
        if flush_due && after_ready {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) if after_ready => {
                drop(queue);
                // Weak: a store dropped meanwhile has flushed (see `Drop`), and lets its
                // WAL go at once (a reopen may wait for that on this very thread).
                let outbox = Arc::downgrade(self);
                runtime.spawn(async move {
                    // Woken again only once every task that was ready has run.
                    tokio::task::yield_now().await;
                    if let Some(outbox) = outbox.upgrade() {
                        outbox.flush();
                    }
                });
            }
            _ => {
                drop(queue);
                self.flush();
            }
        }
    }

    /// How many writes wait.
    #[cfg(test)]
    pub(super) fn queued(&self) -> usize {
        self.queue.lock().expect("outbox lock").len()
    }

    /// Hands every queued write to the WAL, in order.
    fn flush(&self) {
        let mut queue = self.queue.lock().expect("outbox lock");
        for job in std::mem::take(&mut *queue) {
            // A refused write's `done` is told by the WAL; one without is followed by
            // writes that have one (the WAL stays refused once it is).
            if let Err(e) = self.wal.submit(job.ops, job.sync, job.done) {
                tracing::warn!(error = %e, "the Raft log refused a write");
            }
        }
    }
}

impl Drop for Outbox {
    /// Writes still queued when the last handle goes (the runtime stopped before its
    /// task ran) go to the WAL, which writes them before its thread ends.
    fn drop(&mut self) {
        self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wal(dir: &std::path::Path) -> Wal {
        Wal::open(dir, shoal_wal::Options::default()).unwrap()
    }

    /// A fresh log, and an outbox in front of it.
    fn outbox() -> (tempfile::TempDir, Wal, Arc<Outbox>) {
        let dir = tempfile::tempdir().unwrap();
        let log = wal(dir.path());
        let outbox = Outbox::new(log.clone());
        (dir, log, outbox)
    }

    /// A `done` that tells the returned receiver.
    fn told() -> (Done, tokio::sync::oneshot::Receiver<Result<(), shoal_wal::WalError>>) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        (Box::new(move |r| drop(tx.send(r))), rx)
    }

    fn append(index: u64) -> Vec<Op> {
        vec![Op::Append { index, data: vec![index as u8; 10] }]
    }

    #[tokio::test]
    async fn writes_reach_the_wal_after_the_tasks_made_ready_meanwhile_and_in_order() {
        let (_dir, log, outbox) = outbox();
        let (done, written) = told();
        outbox.submit(append(1), false, None, true);
        outbox.submit(append(2), false, None, true);
        outbox.submit(vec![Op::TruncateFrom(2)], false, None, true);
        let again = vec![Op::Append { index: 2, data: vec![9; 10] }];
        outbox.submit(again, true, Some(done), true);
        // A task made ready after the writes were queued (a replication stream told
        // of new entries) runs while they are still queued.
        let replication = {
            let outbox = outbox.clone();
            tokio::spawn(async move { outbox.queued() })
        };
        assert_eq!(replication.await.unwrap(), 4);
        written.await.unwrap().unwrap();
        assert_eq!(outbox.queued(), 0);
        assert_eq!(log.entry_bounds(), Some((1, 2)));
        assert_eq!(log.read(2).unwrap(), Some(vec![9; 10]), "the truncation came before the second append");
    }

    #[tokio::test]
    async fn a_write_that_goes_at_once_takes_those_queued_before_it() {
        let (_dir, log, outbox) = outbox();
        let (done, written) = told();
        outbox.submit(append(1), false, None, true);
        assert_eq!(outbox.queued(), 1);
        outbox.submit(append(2), true, Some(done), false);
        assert_eq!(outbox.queued(), 0, "handed over before submit returned");
        written.await.unwrap().unwrap();
        assert_eq!(log.entry_bounds(), Some((1, 2)));
    }

    #[tokio::test]
    async fn a_store_dropped_with_a_flush_due_lets_its_wal_go_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::new(wal(dir.path()));
        outbox.submit(append(1), false, None, true);
        drop(outbox);
        // Reopened on this thread, which the task due to flush never gets back.
        let log = wal(dir.path());
        assert_eq!(log.entry_bounds(), Some((1, 1)), "written when the store went");
    }

    #[test]
    fn without_a_runtime_writes_go_at_once() {
        let (_dir, log, outbox) = outbox();
        let (done, written) = std::sync::mpsc::channel();
        outbox.submit(append(1), false, Some(Box::new(move |r| drop(done.send(r)))), true);
        // Handed over before `submit` returned: the writer thread needs nothing more.
        written.recv_timeout(std::time::Duration::from_secs(10)).unwrap().unwrap();
        assert_eq!(log.entry_bounds(), Some((1, 1)));
    }

    #[test]
    fn writes_queued_when_the_runtime_stops_are_written_when_the_last_handle_goes() {
        let (_dir, log, outbox) = outbox();
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let (done, written) = std::sync::mpsc::channel();
        runtime.block_on(async {
            outbox.submit(append(1), false, Some(Box::new(move |r| drop(done.send(r)))), true)
        });
        drop(runtime);
        assert!(written.try_recv().is_err(), "the runtime stopped before its task ran");
        drop(outbox);
        written.recv_timeout(std::time::Duration::from_secs(10)).unwrap().unwrap();
        assert_eq!(log.entry_bounds(), Some((1, 1)));
    }
}
