//! Work that should run on spare CPU only (snapshot builds): a thread of its own under
//! `SCHED_IDLE`, which the kernel runs only when no other thread wants the core, raised
//! to nice 10 if it has not finished after a while, so a busy machine delays the work
//! but never starves it.
//!
//! Why idle and not merely a low nice value: at nice 10 a snapshot build still takes
//! a tenth of a core from Raft whenever both want it. Under `SCHED_IDLE` it fills the
//! moments Raft waits on a sync or a reply, and a core that is building a snapshot is
//! not halted, so waking Raft's threads on it costs no idle exit. Eight alternating
//! pairs at 64 clients against nice 10 (`bench/raft`'s load, fresh clusters): −2.2 %
//! to +8.1 % writes/s, median +2.5 %.

use std::io;
use std::time::Duration;

/// How long a job runs on idle CPU alone before it is raised to nice 10. A 65 MB
/// snapshot took 1.3–1.4 s under the 64-client benchmark at idle priority; a machine
/// busy for longer than this gets the job done at nice 10 instead.
pub(crate) const RAISE_AFTER: Duration = Duration::from_secs(5);

/// The nice value a job is raised to.
const RAISED_NICE: libc::c_int = 10;

/// Runs `job` on a thread named `name` under `SCHED_IDLE`; raises that thread to nice
/// 10 if the job has not finished after `raise_after`. Where `SCHED_IDLE` is refused,
/// the job runs at nice 10 from the start.
pub(crate) async fn run<T: Send + 'static>(
    name: &str,
    raise_after: Duration,
    job: impl FnOnce() -> T + Send + 'static,
) -> io::Result<T> {
    let (tid_tx, tid_rx) = tokio::sync::oneshot::channel();
    let (done_tx, mut done) = tokio::sync::oneshot::channel();
    std::thread::Builder::new().name(name.into()).spawn(move || {
        // SAFETY: gettid takes no arguments and cannot fail.
        let tid = unsafe { libc::gettid() };
        if !set_idle(tid) {
            raise(tid);
        }
        let _ = tid_tx.send(tid);
        let _ = done_tx.send(job());
    })?;
    let stopped = || io::Error::other("the background thread stopped before its job was done");
    let tid = tid_rx.await.map_err(|_| stopped())?;
    tokio::select! {
        biased;
        result = &mut done => return result.map_err(|_| stopped()),
        () = tokio::time::sleep(raise_after) => {}
    }
    // The thread is still running its job (it sends the result before it ends), so
    // `tid` still names it.
    tracing::info!(
        thread = name,
        after_ms = raise_after.as_millis() as u64,
        "background job raised to nice 10"
    );
    raise(tid);
    done.await.map_err(|_| stopped())
}

/// Puts thread `tid` under `SCHED_IDLE`; false if the kernel refused.
fn set_idle(tid: libc::pid_t) -> bool {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` is a valid sched_param for the call to read; `tid` names a thread
    // of this process (0 would mean the caller).
    unsafe { libc::sched_setscheduler(tid, libc::SCHED_IDLE, &param) == 0 }
}

/// Puts thread `tid` under the normal policy at nice [`RAISED_NICE`]. A failure leaves
/// it as it was, and is logged.
fn raise(tid: libc::pid_t) {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: as in `set_idle`. setpriority only reads its arguments; on Linux,
    // PRIO_PROCESS with a thread id sets that thread's nice value alone.
    let ok = unsafe {
        libc::sched_setscheduler(tid, libc::SCHED_OTHER, &param) == 0
            && libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, RAISED_NICE) == 0
    };
    if !ok {
        tracing::warn!(tid, error = %io::Error::last_os_error(), "could not raise a background thread's priority");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The policy and nice value of thread `tid`.
    fn scheduling(tid: libc::pid_t) -> (libc::c_int, libc::c_int) {
        // SAFETY: both calls only read their arguments.
        unsafe { (libc::sched_getscheduler(tid), libc::getpriority(libc::PRIO_PROCESS, tid as libc::id_t)) }
    }

    /// A job started with `run` that tells its thread id, then waits for the test's go
    /// before it returns `then()`.
    async fn held_job<T: Send + 'static>(
        raise_after: Duration,
        then: impl FnOnce() -> T + Send + 'static,
    ) -> (libc::pid_t, std::sync::mpsc::Sender<()>, tokio::task::JoinHandle<io::Result<T>>) {
        let (tid_tx, tid_rx) = std::sync::mpsc::channel();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let job = tokio::spawn(run("spare-cpu-test", raise_after, move || {
            // SAFETY: gettid takes no arguments and cannot fail.
            tid_tx.send(unsafe { libc::gettid() }).unwrap();
            go_rx.recv().unwrap();
            then()
        }));
        let tid = tokio::task::spawn_blocking(move || tid_rx.recv().unwrap()).await.unwrap();
        (tid, go_tx, job)
    }

    #[tokio::test]
    async fn a_job_runs_on_idle_cpu_and_is_raised_when_it_takes_too_long() {
        let (tid, go, job) = held_job(Duration::from_millis(300), || 42).await;
        assert_eq!(scheduling(tid).0, libc::SCHED_IDLE, "the job starts on idle CPU only");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while scheduling(tid).0 != libc::SCHED_OTHER {
            assert!(std::time::Instant::now() < deadline, "the job was never raised");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(scheduling(tid), (libc::SCHED_OTHER, RAISED_NICE));
        go.send(()).unwrap();
        assert_eq!(job.await.unwrap().unwrap(), 42);
    }

    #[tokio::test]
    async fn a_quick_job_is_never_raised() {
        // SAFETY: gettid takes no arguments and cannot fail.
        let (_, go, job) =
            held_job(Duration::from_secs(30), || scheduling(unsafe { libc::gettid() }).0).await;
        go.send(()).unwrap();
        assert_eq!(job.await.unwrap().unwrap(), libc::SCHED_IDLE);
    }

    #[tokio::test]
    async fn a_job_that_panics_is_an_error_not_a_hang() {
        let err =
            run("spare-cpu-test", Duration::from_secs(30), || -> u32 { panic!("boom") }).await.unwrap_err();
        assert!(err.to_string().contains("stopped before its job was done"), "{err}");
    }
}
