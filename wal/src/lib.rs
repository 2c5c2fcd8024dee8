//! Shoal's write-ahead log: one ordered stream of records (entries at indexes, values
//! of a few state slots, truncations and purges) in preallocated segment files, each
//! record with its own CRC32C. It knows nothing of Raft: the caller gives entries
//! their indexes and says what its slots mean.
//!
//! - [`frame`]: a record's bytes; [`segment`]: a segment file's header, name and
//!   creation; [`state`]: the replayed log in memory; [`recover`]: opening (replay,
//!   torn-tail repair); [`writer`]: the one thread that writes and syncs.
//! - Writes are jobs handed to the writer thread, applied in the order submitted. A
//!   job's callback runs once its records are written, and synced if any job in its
//!   batch asked for a sync. Truncations and purges are records too, so they land in
//!   order with everything else; a purged segment is deleted only once the purge
//!   record is synced.
//! - Reads go to the files with `pread`, through an index of where each live entry is.

mod error;
mod frame;
mod recover;
mod segment;
mod state;
mod writer;

use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, mpsc};
use std::time::{Duration, Instant};

pub use error::WalError;

use crate::frame::Record;
use crate::state::State;
use crate::writer::{Job, Writer};

/// How a log is kept.
#[derive(Debug, Clone)]
pub struct Options {
    /// Bytes each segment is preallocated to, and cut at (a larger record gets a
    /// segment of its own).
    pub segment_bytes: u64,
    /// Counts the syncs (`fdatasync`) the writer makes; shared so the caller's metrics
    /// can read it.
    pub syncs: Arc<AtomicU64>,
}

impl Default for Options {
    fn default() -> Options {
        Options { segment_bytes: 64 << 20, syncs: Arc::default() }
    }
}

/// One write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// The entry at `index`, replacing any entry there and after it.
    Append {
        /// Its index.
        index: u64,
        /// Its bytes.
        data: Vec<u8>,
    },
    /// A new value for a state slot (the caller's: a vote, a commit point, ...).
    SetState {
        /// Which slot.
        slot: u8,
        /// Its value.
        value: Vec<u8>,
    },
    /// Entries from this index on are gone.
    TruncateFrom(u64),
    /// Entries through this index are gone; segments holding only such entries are
    /// deleted once this is synced.
    PurgeThrough(u64),
}

impl Op {
    fn record(&self) -> Record<'_> {
        match self {
            Op::Append { index, data } => Record::Entry { index: *index, data },
            Op::SetState { slot, value } => Record::State { slot: *slot, value },
            Op::TruncateFrom(i) => Record::TruncateFrom(*i),
            Op::PurgeThrough(i) => Record::PurgeThrough(*i),
        }
    }
}

/// Told how a job went, on the writer thread: keep it short.
pub type Done = Box<dyn FnOnce(Result<(), WalError>) + Send>;

/// What the writer and the readers share.
#[derive(Debug)]
struct Shared {
    state: RwLock<State>,
    poisoned: Mutex<Option<String>>,
    syncs: Arc<AtomicU64>,
    dir: PathBuf,
    /// The writer thread waits for jobs (it is not writing or syncing).
    idle: AtomicBool,
}

impl Shared {
    fn poisoned(&self) -> Option<WalError> {
        self.poisoned.lock().expect("poison lock").clone().map(WalError::Poisoned)
    }

    fn poison(&self, e: &WalError) {
        let mut p = self.poisoned.lock().expect("poison lock");
        if p.is_none() {
            *p = Some(error_chain(e));
        }
    }
}

/// `e` and its sources, joined.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// A write-ahead log. Clones share it; the writer thread ends (syncing what it wrote
/// lazily) once every clone is gone.
#[derive(Debug, Clone)]
pub struct Wal {
    shared: Arc<Shared>,
    jobs: mpsc::Sender<Job>,
}

/// How long [`Wal::open`] waits for a previous writer of the same directory (one
/// closing in this process) to let go.
const LOCK_WAIT: Duration = Duration::from_secs(5);

impl Wal {
    /// Opens the log in `dir` (creating both if need be), replaying every segment.
    /// A torn last record is cut off; any other damage is an error naming the file
    /// and offset, and nothing is changed.
    pub fn open(dir: &Path, options: Options) -> Result<Wal, WalError> {
        std::fs::create_dir_all(dir).map_err(|e| WalError::io("create", dir, e))?;
        let lock = lock(dir)?;
        let r = recover::recover(dir, options.segment_bytes)?;
        let current = r.state.segments.get(&r.seq).expect("the last segment is open");
        let (file, path) = (current.file.clone(), current.path.clone());
        let shared = Arc::new(Shared {
            state: RwLock::new(r.state),
            poisoned: Mutex::new(None),
            syncs: options.syncs,
            dir: dir.to_owned(),
            idle: AtomicBool::new(true),
        });
        let writer = Writer {
            shared: shared.clone(),
            dir: dir.to_owned(),
            segment_bytes: options.segment_bytes,
            seq: r.seq,
            id: r.id,
            file,
            path,
            end: r.end,
            body_start: r.body_start,
            buf: Vec::new(),
            dirty: false,
            purge_pending: false,
            _lock: lock,
        };
        let (jobs, queue) = mpsc::channel();
        std::thread::Builder::new()
            .name("wal-writer".into())
            .spawn(move || writer.run(&queue))
            .map_err(|e| WalError::io("start the writer thread for", dir, e))?;
        Ok(Wal { shared, jobs })
    }

    /// Queues `ops`, to be written in order after everything queued before. `sync`:
    /// make them durable before `done` is told (otherwise they ride on the next sync).
    /// A refused job (the log is poisoned or closed) is refused both ways: `done` is
    /// told, and the error is returned.
    pub fn submit(&self, ops: Vec<Op>, sync: bool, done: Option<Done>) -> Result<(), WalError> {
        let refuse = |e: WalError, done: Option<Done>| {
            if let Some(done) = done {
                done(Err(e.clone()));
            }
            Err(e)
        };
        if let Some(e) = self.shared.poisoned() {
            return refuse(e, done);
        }
        match self.jobs.send(Job { ops, sync, done }) {
            Ok(()) => Ok(()),
            Err(mpsc::SendError(job)) => refuse(WalError::Closed, job.done),
        }
    }

    /// Submits `ops` and waits until they are written (and synced, if `sync`).
    pub fn write_blocking(&self, ops: Vec<Op>, sync: bool) -> Result<(), WalError> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.submit(ops, sync, Some(Box::new(move |r| drop(tx.send(r)))))?;
        rx.recv().map_err(|_| WalError::Closed)?
    }

    /// Whether the writer thread is waiting for work: a job submitted now starts a
    /// batch of its own (else it joins the batch after the one being written).
    pub fn writer_idle(&self) -> bool {
        self.shared.idle.load(Ordering::Relaxed)
    }

    /// The data of the entry at `index`, if the log holds it.
    pub fn read(&self, index: u64) -> Result<Option<Vec<u8>>, WalError> {
        Ok(self.read_range(index..index + 1)?.pop().map(|(_, d)| d))
    }

    /// The entries the log holds in `range`, in order: (index, data).
    pub fn read_range(&self, range: Range<u64>) -> Result<Vec<(u64, Vec<u8>)>, WalError> {
        if let Some(e) = self.shared.poisoned() {
            return Err(e);
        }
        let places: Vec<(u64, state::Loc, Arc<File>, PathBuf)> = {
            let st = self.shared.state.read().expect("log state lock");
            st.entries
                .range(range)
                .map(|(i, loc)| {
                    let seg = &st.segments[&loc.seg];
                    (*i, *loc, seg.file.clone(), seg.path.clone())
                })
                .collect()
        };
        places
            .into_iter()
            .map(|(i, loc, file, path)| {
                let mut data = vec![0; loc.len as usize];
                file.read_exact_at(&mut data, loc.data()).map_err(|e| WalError::io("read", path, e))?;
                Ok((i, data))
            })
            .collect()
    }

    /// The first and last index of the entries held, if any.
    pub fn entry_bounds(&self) -> Option<(u64, u64)> {
        let st = self.shared.state.read().expect("log state lock");
        Some((*st.entries.first_key_value()?.0, *st.entries.last_key_value()?.0))
    }

    /// The index entries were purged through, if any were.
    pub fn purged(&self) -> Option<u64> {
        self.shared.state.read().expect("log state lock").purged
    }

    /// The value of state slot `slot`, if one was written.
    pub fn state(&self, slot: u8) -> Option<Vec<u8>> {
        self.shared.state.read().expect("log state lock").slots.get(&slot).cloned()
    }

    /// The segment files, oldest first.
    pub fn segments(&self) -> Vec<PathBuf> {
        self.shared.state.read().expect("log state lock").segments.values().map(|s| s.path.clone()).collect()
    }

    /// Bytes the segment files take on disk (preallocated space included).
    pub fn disk_bytes(&self) -> u64 {
        self.segments().iter().filter_map(|p| std::fs::metadata(p).ok()).map(|m| m.len()).sum()
    }

    /// The file and byte range of the frame holding the entry at `index` (for tools
    /// and tests that inspect or damage the files).
    pub fn frame_span(&self, index: u64) -> Option<(PathBuf, Range<u64>)> {
        let st = self.shared.state.read().expect("log state lock");
        let loc = st.entries.get(&index)?;
        let len = frame::frame_len(frame::ENTRY_PREFIX + loc.len as usize) as u64;
        Some((st.segments[&loc.seg].path.clone(), loc.frame..loc.frame + len))
    }

    /// The log's directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }
}

/// Takes `dir/LOCK`, waiting a while for a writer closing in this process.
fn lock(dir: &Path) -> Result<nix::fcntl::Flock<File>, WalError> {
    use nix::fcntl::{Flock, FlockArg};
    let path = dir.join("LOCK");
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| WalError::io("open", &path, e))?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => return Ok(lock),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => return Err(WalError::Locked { dir: dir.to_owned() }),
            Err((_, e)) => return Err(WalError::io("lock", &path, e.into())),
        }
    }
}
