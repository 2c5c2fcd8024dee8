//! The Raft log, vote and commit index in redb, under the manager's data dir. One
//! writer thread owns every write: it takes all writes queued while its last commit
//! was syncing and commits them as one transaction (group commit), in the order they
//! were made, and only then tells openraft they are durable. Entries committed
//! together are stored as one value (a run of consecutive entries keyed by its first
//! index), so a commit inserts one key, not one per entry. Appended entries are
//! readable at once, from memory.
//!
//! Every entry is sealed on its own (see [`super::seal`]) with this manager's data
//! key, bound to its index: runs are cut and rewritten by purges and truncations
//! without opening what they hold, and a read opens only the entries it returns.
//! Sealing a whole run would save 40 bytes per entry but make every cut re-seal up to
//! 4 MiB. The META values (vote, commit index, purge point) hold only terms, indexes
//! and node ids, and stay plain. A log written before sealing (plain entries) is
//! sealed in place the first time it is opened; after that a plain entry is refused.

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{OptionalSend, RaftTypeConfig};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::seal::{self, Sealer};
use super::types::TypeConfig;

type C = TypeConfig;
type Entry = <C as RaftTypeConfig>::Entry;
type LogId = openraft::type_config::alias::LogIdOf<C>;
type Vote = openraft::type_config::alias::VoteOf<C>;

/// Runs of consecutive entries, keyed by the first one's index; each run holds exactly
/// the live entries `key..key + count` (a purge or truncation rewrites the run it cuts).
const RUNS: TableDefinition<u64, &[u8]> = TableDefinition::new("log_runs");
/// The log as Shoal 0.1 kept it, one value per entry: moved into [`RUNS`] at open.
const OLD_LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// Format of every stored entry and META value: one version byte, then JSON.
/// openraft's serde forms are not a stable format across versions, so the envelope is
/// ours.
const FORMAT_V1: u8 = 1;

/// Format of a sealed entry: this byte, then its [`FORMAT_V1`] JSON sealed for its
/// index ([`entry_aad`]).
const FORMAT_SEALED: u8 = 3;

/// The META key of a value sealed at the log's creation (or its first sealing): it
/// tells a wrong key at open, before any entry is read.
const SEAL_CHECK: &str = "seal_check";
const SEAL_CHECK_TEXT: &[u8] = b"shoal raft log";

/// What an entry's sealing is bound to: its index.
fn entry_aad(index: u64) -> [u8; 18] {
    let mut aad = [0u8; 18];
    aad[..10].copy_from_slice(b"raft entry");
    aad[10..].copy_from_slice(&index.to_le_bytes());
    aad
}

/// The stored form of `entry` at `index`: sealed JSON.
fn seal_entry(sealer: &Sealer, index: u64, entry: &Entry) -> io::Result<Vec<u8>> {
    let json = serde_json::to_vec(entry).map_err(io::Error::other)?;
    let mut out = Vec::with_capacity(1 + seal::OVERHEAD + json.len());
    out.push(FORMAT_SEALED);
    sealer.seal_into(&entry_aad(index), &json, &mut out);
    Ok(out)
}

/// The entry stored at `index` as `bytes` (sealed; a plain one is refused).
fn open_entry(sealer: &Sealer, index: u64, bytes: &[u8]) -> io::Result<Entry> {
    let what = || format!("log entry {index}");
    match bytes.split_first() {
        Some((&FORMAT_SEALED, sealed)) => {
            let json = sealer.open(&entry_aad(index), sealed).map_err(|e| {
                io::Error::new(io::ErrorKind::InvalidData, format!("{} cannot be opened: {e}", what()))
            })?;
            serde_json::from_slice(&json)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("corrupt {}: {e}", what())))
        }
        Some((&FORMAT_V1, _)) => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is stored unsealed in a sealed log: the file was changed", what()),
        )),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} has an unknown format version", what()),
        )),
    }
}

/// Format of a run: this byte, the entry count (u32 LE), then each entry as its length
/// (u32 LE) and its [`FORMAT_V1`] encoding.
const FORMAT_RUN: u8 = 2;

/// A run stops growing past this size (a transaction of 1.5 MiB still fits whole).
const RUN_BYTES: usize = 4 << 20;

/// A run being built from consecutive entries.
struct RunBuilder {
    first: u64,
    count: u32,
    value: Vec<u8>,
}

impl RunBuilder {
    fn new(first: u64) -> RunBuilder {
        let mut value = Vec::new();
        value.push(FORMAT_RUN);
        value.extend_from_slice(&0u32.to_le_bytes());
        RunBuilder { first, count: 0, value }
    }

    /// The index the next entry must have.
    fn next(&self) -> u64 {
        self.first + u64::from(self.count)
    }

    fn push(&mut self, entry: &[u8]) {
        self.value.extend_from_slice(&(entry.len() as u32).to_le_bytes());
        self.value.extend_from_slice(entry);
        self.count += 1;
    }

    fn finish(mut self) -> (u64, Vec<u8>) {
        self.value[1..5].copy_from_slice(&self.count.to_le_bytes());
        (self.first, self.value)
    }
}

/// The entries of the run stored at `first`: (index, encoded entry), in order.
fn run_entries(first: u64, value: &[u8]) -> io::Result<Vec<(u64, &[u8])>> {
    let damaged = || io::Error::new(io::ErrorKind::InvalidData, format!("log run at {first} is damaged"));
    let (&format, rest) = value.split_first().ok_or_else(damaged)?;
    if format != FORMAT_RUN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("log run at {first} has an unknown format version"),
        ));
    }
    let (count, mut rest) = rest.split_first_chunk::<4>().ok_or_else(damaged)?;
    let count = u32::from_le_bytes(*count);
    let mut out = Vec::with_capacity(count as usize);
    for i in 0..u64::from(count) {
        let (len, after) = rest.split_first_chunk::<4>().ok_or_else(damaged)?;
        let len = u32::from_le_bytes(*len) as usize;
        let entry = after.get(..len).ok_or_else(damaged)?;
        out.push((first + i, entry));
        rest = &after[len..];
    }
    if !rest.is_empty() {
        return Err(damaged());
    }
    Ok(out)
}

/// The run of `entries` (consecutive, from `first`).
fn run_of<'a>(first: u64, entries: impl IntoIterator<Item = &'a [u8]>) -> (u64, Vec<u8>) {
    let mut run = RunBuilder::new(first);
    for e in entries {
        run.push(e);
    }
    run.finish()
}

fn encode<T: serde::Serialize>(v: &T) -> io::Result<Vec<u8>> {
    let mut out = vec![FORMAT_V1];
    serde_json::to_writer(&mut out, v).map_err(io::Error::other)?;
    Ok(out)
}

fn decode<T: for<'de> serde::Deserialize<'de>>(bytes: &[u8], what: &str) -> io::Result<T> {
    match bytes.split_first() {
        Some((&FORMAT_V1, rest)) => serde_json::from_slice(rest)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("corrupt {what}: {e}"))),
        _ => Err(io::Error::new(io::ErrorKind::InvalidData, format!("{what} has an unknown format version"))),
    }
}

fn other(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

/// Why the log could not be opened.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot open the Raft log {path} (if the file is damaged, restore this manager's data dir \
     from a backup, or remove it and join the manager again: its state comes back from the others)"
)]
pub struct OpenError {
    /// The file.
    pub path: PathBuf,
    /// What redb or the file system said.
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

/// The redb-backed log store. Clones share the database, the writer and the tail.
#[derive(Debug, Clone)]
pub struct LogStore {
    db: Arc<Database>,
    sealer: Arc<Sealer>,
    stats: Arc<LogStats>,
    tail: Arc<std::sync::Mutex<Tail>>,
    writer: std::sync::mpsc::Sender<Write>,
}

/// The newest entries, decoded: replication reads them here, not from the file
/// (decoding them again for every follower cost the leader most of its time), and
/// entries appended but not yet synced are read only here.
#[derive(Debug, Default)]
struct Tail {
    entries: std::collections::BTreeMap<u64, (Entry, usize)>,
    bytes: usize,
    /// The newest index on disk; newer entries are never dropped from the tail.
    synced: u64,
    /// Counts truncations: a sync of appends made before the latest one says nothing
    /// about the entries now at those indexes.
    generation: u64,
}

/// One write for the writer thread.
enum Write {
    /// Entries (index, encoded); `flushed` is told once they are synced.
    Append { entries: Vec<(u64, Vec<u8>)>, last: u64, generation: u64, flushed: IOFlushed<C> },
    /// Remove entries from `from` on.
    Truncate { from: u64, done: Done },
    /// Remove entries through `last`, recording the purge point.
    Purge { last: u64, purged: Vec<u8>, done: Done },
    /// Set a META key.
    Meta { key: &'static str, value: Vec<u8>, done: Done },
    /// Record the commit index (encoded), lazily: see [`Writer::run`].
    Committed { value: Vec<u8> },
    /// Commit now, with any commit index still waiting.
    Flush { done: Done },
}

type Done = tokio::sync::oneshot::Sender<io::Result<()>>;

/// The most writes one transaction takes.
const WRITES_PER_COMMIT: usize = 4096;

/// How long a commit index waits before it is written (see [`Writer::run`]).
const COMMITTED_LAG: std::time::Duration = std::time::Duration::from_millis(100);

/// The most the tail cache holds (encoded size); older entries come from the file.
const TAIL_BYTES: usize = 32 << 20;

impl Tail {
    fn push(&mut self, index: u64, entry: Entry, size: usize) {
        if let Some((_, old)) = self.entries.insert(index, (entry, size)) {
            self.bytes -= old;
        }
        self.bytes += size;
        self.trim();
    }

    /// Drops the oldest synced entries while over [`TAIL_BYTES`].
    fn trim(&mut self) {
        while self.bytes > TAIL_BYTES {
            let Some(entry) = self.entries.first_entry() else { break };
            if *entry.key() > self.synced {
                break;
            }
            self.bytes -= entry.remove().1;
        }
    }

    /// Drops the entries in `range`.
    fn remove(&mut self, range: impl RangeBounds<u64>) {
        let gone: Vec<u64> = self.entries.range(range).map(|(i, _)| *i).collect();
        for i in gone {
            if let Some((_, size)) = self.entries.remove(&i) {
                self.bytes -= size;
            }
        }
    }

    /// The first index held, if any.
    fn first(&self) -> Option<u64> {
        self.entries.keys().next().copied()
    }

    /// The entries held within `start..=end` (`None`: no end).
    fn range(&self, start: u64, end: Option<u64>) -> Vec<Entry> {
        let end = end.unwrap_or(u64::MAX);
        if start > end {
            return Vec::new();
        }
        self.entries.range(start..=end).map(|(_, (e, _))| e.clone()).collect()
    }
}

/// Counters of log writes: entries appended, and the disk syncs that made them durable.
/// openraft hands concurrent proposals to `append` together, so syncs < entries under load.
#[derive(Debug, Default)]
pub struct LogStats {
    /// Entries appended.
    pub entries: std::sync::atomic::AtomicU64,
    /// Commits (each an fsync) that appended them.
    pub syncs: std::sync::atomic::AtomicU64,
}

impl LogStore {
    /// Opens (creating) `dir/raft.redb`, whose entries `sealer` seals and opens. A log
    /// kept unsealed is sealed first; a log sealed with another key is refused.
    pub fn open(dir: &Path, sealer: Sealer) -> Result<LogStore, OpenError> {
        let path = dir.join("raft.redb");
        let err = |e: Box<dyn std::error::Error + Send + Sync>| OpenError { path: path.clone(), source: e };
        std::fs::create_dir_all(dir).map_err(|e| err(e.into()))?;
        // redb would start an empty file afresh: a log truncated to nothing is lost
        // data, not a new manager.
        if std::fs::metadata(&path).is_ok_and(|m| m.len() == 0) {
            return Err(err("the file is empty (truncated?)".into()));
        }
        // A manager restarted in the same process may find its previous instance's
        // tasks still closing the file: give them a moment.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let db = loop {
            match Database::create(&path) {
                Ok(db) => break db,
                Err(redb::DatabaseError::DatabaseAlreadyOpen) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) => return Err(err(e.into())),
            }
        };
        let tx = db.begin_write().map_err(|e| err(e.into()))?;
        tx.open_table(RUNS).map_err(|e| err(e.into()))?;
        tx.open_table(META).map_err(|e| err(e.into()))?;
        migrate_old_log(&tx).map_err(|e| err(e.into()))?;
        seal_log(&tx, &sealer).map_err(|e| err(e.into()))?;
        tx.commit().map_err(|e| err(e.into()))?;
        let db = Arc::new(db);
        let (stats, tail) = (Arc::<LogStats>::default(), Arc::<std::sync::Mutex<Tail>>::default());
        let (writer, queue) = std::sync::mpsc::channel();
        // The thread holds the database weakly: it closes when the last store is dropped.
        let thread = Writer { db: Arc::downgrade(&db), stats: stats.clone(), tail: tail.clone() };
        std::thread::Builder::new()
            .name("raft-log-writer".into())
            .spawn(move || thread.run(&queue))
            .map_err(|e| err(e.into()))?;
        Ok(LogStore { db, sealer: Arc::new(sealer), stats, tail, writer })
    }

    /// Write counters, shared by clones.
    pub fn stats(&self) -> Arc<LogStats> {
        self.stats.clone()
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> io::Result<T> + Send + 'static,
    ) -> io::Result<T> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db)).await.map_err(other)?
    }

    async fn get_meta<T: for<'de> serde::Deserialize<'de> + Send + 'static>(
        &self,
        key: &'static str,
    ) -> io::Result<Option<T>> {
        self.blocking(move |db| {
            let tx = db.begin_read().map_err(other)?;
            let table = tx.open_table(META).map_err(other)?;
            match table.get(key).map_err(other)? {
                Some(v) => decode(v.value(), key).map(Some),
                None => Ok(None),
            }
        })
        .await
    }

    /// Queues `write` for the writer thread and waits until it is synced.
    async fn write(&self, write: impl FnOnce(Done) -> Write) -> io::Result<()> {
        let (done, synced) = tokio::sync::oneshot::channel();
        self.queue(write(done))?;
        synced.await.map_err(|_| io::Error::other("the Raft log writer stopped"))?
    }

    fn queue(&self, write: Write) -> io::Result<()> {
        self.writer.send(write).map_err(|_| io::Error::other("the Raft log writer stopped"))
    }

    async fn put_meta<T: serde::Serialize>(&self, key: &'static str, value: &T) -> io::Result<()> {
        let value = encode(value)?;
        self.write(|done| Write::Meta { key, value, done }).await
    }
}

/// The writer thread's state.
struct Writer {
    db: std::sync::Weak<Database>,
    stats: Arc<LogStats>,
    tail: Arc<std::sync::Mutex<Tail>>,
}

impl Writer {
    /// Every write queued while the last commit synced goes into the next transaction,
    /// in order; then each is answered. Ends when every store is gone. After a failed
    /// commit every later write fails too: a later batch must not land past a hole.
    ///
    /// The commit index is written at most once per [`COMMITTED_LAG`]: with the first
    /// transaction after it has waited that long, or alone if none comes. It never
    /// costs a sync of its own while writes flow, and most transactions leave the META
    /// table alone. openraft asks for no more (`save_committed` is optional); a restart
    /// re-applies what is on disk and learns the rest from the cluster
    /// (`Raft::wait_for_recovery`).
    fn run(&self, queue: &std::sync::mpsc::Receiver<Write>) {
        use std::sync::atomic::Ordering::Relaxed;
        use std::sync::mpsc::RecvTimeoutError;
        let mut broken: Option<(io::ErrorKind, String)> = None;
        // The newest commit index not yet written, and since when one has waited.
        let mut committed: Option<(Vec<u8>, std::time::Instant)> = None;
        loop {
            let (first, closing) = match &committed {
                None => match queue.recv() {
                    Ok(write) => (Some(write), false),
                    Err(_) => return,
                },
                Some((_, since)) => match queue.recv_timeout(COMMITTED_LAG.saturating_sub(since.elapsed())) {
                    Ok(write) => (Some(write), false),
                    Err(RecvTimeoutError::Timeout) => (None, false),
                    Err(RecvTimeoutError::Disconnected) => (None, true),
                },
            };
            let mut batch = Vec::new();
            let queued = std::iter::from_fn(|| queue.try_recv().ok());
            for write in first.into_iter().chain(queued).take(WRITES_PER_COMMIT) {
                match write {
                    Write::Committed { value } => {
                        let since = committed.take().map_or_else(std::time::Instant::now, |(_, t)| t);
                        committed = Some((value, since));
                    }
                    write => batch.push(write),
                }
            }
            let flush = closing || batch.iter().any(|w| matches!(w, Write::Flush { .. }));
            let due = committed.as_ref().is_some_and(|(_, since)| flush || since.elapsed() >= COMMITTED_LAG);
            if batch.is_empty() && !due {
                continue;
            }
            let index = if due { committed.take().map(|(value, _)| value) } else { None };
            let result = match (&broken, self.db.upgrade()) {
                (Some((kind, message)), _) => Err(io::Error::new(*kind, message.clone())),
                (None, Some(db)) => commit(&db, &batch, index.as_deref()),
                (None, None) => Err(io::Error::other("the Raft log is closed")),
            };
            if let Err(e) = &result {
                broken.get_or_insert_with(|| {
                    (e.kind(), format!("an earlier write of the Raft log failed: {e}"))
                });
            }
            if result.is_ok() {
                self.stats.syncs.fetch_add(1, Relaxed);
            }
            self.answer(batch, &result);
            if closing {
                return;
            }
        }
    }

    /// Tells each write of a committed (or failed) batch how it went.
    fn answer(&self, batch: Vec<Write>, result: &io::Result<()>) {
        use std::sync::atomic::Ordering::Relaxed;
        let answer = || result.as_ref().map(|_| ()).map_err(|e| io::Error::new(e.kind(), e.to_string()));
        for write in batch {
            match write {
                Write::Append { entries, last, generation, flushed } => {
                    let mut t = self.tail.lock().expect("tail lock");
                    if result.is_ok() && t.generation == generation {
                        t.synced = t.synced.max(last);
                        t.trim();
                    }
                    drop(t);
                    if result.is_ok() {
                        self.stats.entries.fetch_add(entries.len() as u64, Relaxed);
                    }
                    flushed.io_completed(answer());
                }
                Write::Truncate { done, .. }
                | Write::Purge { done, .. }
                | Write::Meta { done, .. }
                | Write::Flush { done } => {
                    let _ = done.send(answer());
                }
                // Held by the writer, never batched.
                Write::Committed { .. } => {}
            }
        }
    }
}

/// Applies `batch`, then the commit index if one is given, in one transaction and
/// commits it (an fsync: redb's default durability). Consecutive appended entries go
/// into one run.
fn commit(db: &Database, batch: &[Write], committed: Option<&[u8]>) -> io::Result<()> {
    let tx = db.begin_write().map_err(other)?;
    {
        let mut log = tx.open_table(RUNS).map_err(other)?;
        let mut meta = tx.open_table(META).map_err(other)?;
        // Entries go into the open run, which is stored before anything else changes
        // the log table (META writes leave it open).
        let mut run: Option<RunBuilder> = None;
        for write in batch {
            match write {
                Write::Append { entries, .. } => {
                    for (index, bytes) in entries {
                        add_to_run(&mut log, &mut run, *index, bytes)?;
                    }
                }
                Write::Truncate { from, .. } => {
                    put_run(&mut log, run.take())?;
                    truncate_runs(&mut log, *from)?;
                }
                Write::Purge { last, purged, .. } => {
                    put_run(&mut log, run.take())?;
                    // The purge point and the deletion in one transaction: no hole shows.
                    meta.insert("last_purged", purged.as_slice()).map_err(other)?;
                    purge_runs(&mut log, *last)?;
                }
                Write::Meta { key, value, .. } => {
                    meta.insert(*key, value.as_slice()).map_err(other)?;
                }
                Write::Committed { .. } | Write::Flush { .. } => {}
            }
        }
        put_run(&mut log, run)?;
        if let Some(value) = committed {
            meta.insert("committed", value).map_err(other)?;
        }
    }
    tx.commit().map_err(other)
}

type RunTable<'t> = redb::Table<'t, u64, &'static [u8]>;

/// Adds the entry at `index` to the open run; a run that `index` does not follow, or
/// that is full, is stored first and a new one opened.
fn add_to_run(
    log: &mut RunTable<'_>,
    run: &mut Option<RunBuilder>,
    index: u64,
    entry: &[u8],
) -> io::Result<()> {
    if run.as_ref().is_some_and(|r| r.next() != index || r.value.len() >= RUN_BYTES) {
        put_run(log, run.take())?;
    }
    run.get_or_insert_with(|| RunBuilder::new(index)).push(entry);
    Ok(())
}

/// Stores `run`, replacing any entries at or after its first index.
fn put_run(log: &mut RunTable<'_>, run: Option<RunBuilder>) -> io::Result<()> {
    let Some(run) = run else { return Ok(()) };
    // Appends follow the log's end, after any truncation; an overlap is replaced, as
    // an overwritten entry would be.
    let end = log.last().map_err(other)?.map(|(k, v)| run_end(k.value(), v.value()));
    if end.is_some_and(|end| end > run.first) {
        truncate_runs(log, run.first)?;
    }
    let (first, value) = run.finish();
    log.insert(first, value.as_slice()).map_err(other)?;
    Ok(())
}

/// The index after the last entry of the run stored at `first`.
fn run_end(first: u64, value: &[u8]) -> u64 {
    let count = value.get(1..5).and_then(|c| c.try_into().ok()).map_or(0, u32::from_le_bytes);
    first + u64::from(count)
}

/// A run copied out of the table: its first index and its entries (index, encoding).
type OwnedRun = (u64, Vec<(u64, Vec<u8>)>);

/// The run whose first index is the greatest in `range`, copied out of the table.
fn last_run_in(log: &RunTable<'_>, range: impl RangeBounds<u64>) -> io::Result<Option<OwnedRun>> {
    let Some(item) = log.range(range).map_err(other)?.next_back() else { return Ok(None) };
    let (k, v) = item.map_err(other)?;
    let entries = run_entries(k.value(), v.value())?.into_iter().map(|(i, e)| (i, e.to_vec())).collect();
    Ok(Some((k.value(), entries)))
}

/// Removes the entries from `from` on; the run that holds `from` keeps what precedes it.
fn truncate_runs(log: &mut RunTable<'_>, from: u64) -> io::Result<()> {
    if let Some((first, entries)) = last_run_in(log, ..from)?
        && entries.last().is_some_and(|(i, _)| *i >= from)
    {
        let (k, v) = run_of(first, entries.iter().filter(|(i, _)| *i < from).map(|(_, e)| e.as_slice()));
        log.insert(k, v.as_slice()).map_err(other)?;
    }
    log.retain_in(from.., |_, _| false).map_err(other)
}

/// Removes the entries through `last`; the run that holds `last + 1` keeps the rest,
/// stored again from `last + 1`.
fn purge_runs(log: &mut RunTable<'_>, last: u64) -> io::Result<()> {
    let rest = last_run_in(log, ..=last)?.and_then(|(_, entries)| {
        let rest: Vec<&[u8]> = entries.iter().filter(|(i, _)| *i > last).map(|(_, e)| e.as_slice()).collect();
        (!rest.is_empty()).then(|| run_of(last + 1, rest))
    });
    log.retain_in(..=last, |_, _| false).map_err(other)?;
    if let Some((k, v)) = rest {
        log.insert(k, v.as_slice()).map_err(other)?;
    }
    Ok(())
}

/// Moves a log kept one value per entry (Shoal 0.1) into runs, in `tx`.
fn migrate_old_log(tx: &redb::WriteTransaction) -> io::Result<()> {
    use redb::TableHandle;
    if !tx.list_tables().map_err(other)?.any(|t| t.name() == OLD_LOG.name()) {
        return Ok(());
    }
    {
        let old = tx.open_table(OLD_LOG).map_err(other)?;
        let mut runs = tx.open_table(RUNS).map_err(other)?;
        let mut run: Option<RunBuilder> = None;
        for item in old.iter().map_err(other)? {
            let (k, v) = item.map_err(other)?;
            add_to_run(&mut runs, &mut run, k.value(), v.value())?;
        }
        put_run(&mut runs, run)?;
    }
    tx.delete_table(OLD_LOG).map_err(other)?;
    Ok(())
}

/// Checks that `sealer` has the log's key, or seals a log kept unsealed (every entry,
/// in `tx`) and records the check value.
fn seal_log(tx: &redb::WriteTransaction, sealer: &Sealer) -> io::Result<()> {
    let mut meta = tx.open_table(META).map_err(other)?;
    if let Some(check) = meta.get(SEAL_CHECK).map_err(other)? {
        return match sealer.open(SEAL_CHECK.as_bytes(), check.value()) {
            Ok(text) if text == SEAL_CHECK_TEXT => Ok(()),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the log was sealed with another data key (was this manager's raft-dek file replaced?)",
            )),
        };
    }
    let mut runs = tx.open_table(RUNS).map_err(other)?;
    let mut sealed = Vec::new();
    for item in runs.iter().map_err(other)? {
        let (k, v) = item.map_err(other)?;
        let mut entries = Vec::new();
        for (i, bytes) in run_entries(k.value(), v.value())? {
            let entry: Entry = decode(bytes, &format!("log entry {i}"))?;
            entries.push(seal_entry(sealer, i, &entry)?);
        }
        sealed.push(run_of(k.value(), entries.iter().map(Vec::as_slice)));
    }
    for (k, v) in sealed {
        runs.insert(k, v.as_slice()).map_err(other)?;
    }
    meta.insert(SEAL_CHECK, sealer.seal(SEAL_CHECK.as_bytes(), SEAL_CHECK_TEXT).as_slice()).map_err(other)?;
    Ok(())
}

fn bounds(range: &impl RangeBounds<u64>) -> (u64, Option<u64>) {
    let start = match range.start_bound() {
        Bound::Included(&s) => s,
        Bound::Excluded(&s) => s + 1,
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(&e) => Some(e),
        Bound::Excluded(&e) => e.checked_sub(1),
        Bound::Unbounded => None,
    };
    (start, end)
}

impl RaftLogReader<C> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        let (start, end) = bounds(&range);
        if end.is_some_and(|e| e < start) || (matches!(range.end_bound(), Bound::Excluded(&0))) {
            return Ok(Vec::new());
        }
        // The tail first: what it dropped is on disk by then.
        let (first_in_tail, newest) = {
            let tail = self.tail.lock().expect("tail lock");
            (tail.first(), tail.range(start, end))
        };
        let disk_end = match first_in_tail {
            Some(f) if f <= start => return Ok(newest),
            Some(f) => Some(end.map_or(f - 1, |e| e.min(f - 1))),
            None => end,
        };
        let sealer = self.sealer.clone();
        let mut out = self
            .blocking(move |db| {
                let tx = db.begin_read().map_err(other)?;
                let table = tx.open_table(RUNS).map_err(other)?;
                // From the run holding `start`, or the first after it.
                let from = match table.range(..=start).map_err(other)?.next_back() {
                    Some(item) => item.map_err(other)?.0.value(),
                    None => start,
                };
                let end = disk_end.unwrap_or(u64::MAX);
                let mut out = Vec::new();
                'runs: for item in table.range(from..).map_err(other)? {
                    let (k, v) = item.map_err(other)?;
                    for (i, bytes) in run_entries(k.value(), v.value())? {
                        if i > end {
                            break 'runs;
                        }
                        if i >= start {
                            out.push(open_entry(&sealer, i, bytes)?);
                        }
                    }
                }
                Ok(out)
            })
            .await?;
        out.extend(newest);
        Ok(out)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        self.get_meta("vote").await
    }
}

impl RaftLogStorage<C> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<C>, io::Error> {
        let last_purged: Option<LogId> = self.get_meta("last_purged").await?;
        // The newest entry is in the tail (appended, maybe not synced yet), else on disk.
        let newest =
            self.tail.lock().expect("tail lock").entries.last_key_value().map(|(_, (e, _))| e.clone());
        let last_entry = match newest {
            Some(e) => Some(e),
            None => {
                let sealer = self.sealer.clone();
                self.blocking(move |db| {
                    let tx = db.begin_read().map_err(other)?;
                    let table = tx.open_table(RUNS).map_err(other)?;
                    match table.last().map_err(other)? {
                        Some((k, v)) => match run_entries(k.value(), v.value())?.last() {
                            Some((i, bytes)) => open_entry(&sealer, *i, bytes).map(Some),
                            None => Ok(None),
                        },
                        None => Ok(None),
                    }
                })
                .await?
            }
        };
        let last_log_id = match last_entry {
            Some(e) => Some(openraft::entry::RaftEntry::log_id(&e)),
            None => last_purged,
        };
        Ok(LogState { last_purged_log_id: last_purged, last_log_id })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        self.put_meta("vote", vote).await
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        // Written lazily, with the next transaction (see `Writer::run`), and not waited
        // for: openraft applies as soon as this returns.
        self.queue(Write::Committed { value: encode(&committed)? })
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        // An index still waiting in the writer is written first.
        self.write(|done| Write::Flush { done }).await?;
        Ok(self.get_meta::<Option<LogId>>("committed").await?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<C>) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let Some(last) = entries.last().map(openraft::entry::RaftEntry::index) else {
            callback.io_completed(Ok(()));
            return Ok(());
        };
        let encoded: Vec<(u64, Vec<u8>)> = entries
            .iter()
            .map(|e| {
                let index = openraft::entry::RaftEntry::index(e);
                Ok((index, seal_entry(&self.sealer, index, e)?))
            })
            .collect::<io::Result<_>>()?;
        let generation = {
            // Readable from now on, synced or not.
            let mut tail = self.tail.lock().expect("tail lock");
            for (e, (_, bytes)) in entries.into_iter().zip(&encoded) {
                tail.push(openraft::entry::RaftEntry::index(&e), e, bytes.len());
            }
            tail.generation
        };
        self.queue(Write::Append { entries: encoded, last, generation, flushed: callback })
    }

    async fn truncate_after(&mut self, last: Option<LogId>) -> Result<(), io::Error> {
        let from = last.map_or(0, |l| l.index() + 1);
        {
            let mut tail = self.tail.lock().expect("tail lock");
            tail.remove(from..);
            tail.synced = tail.synced.min(from.saturating_sub(1));
            tail.generation += 1;
        }
        self.write(|done| Write::Truncate { from, done }).await
    }

    async fn purge(&mut self, upto: LogId) -> Result<(), io::Error> {
        let purged = encode(&upto)?;
        let last = upto.index();
        self.tail.lock().expect("tail lock").remove(..=last);
        self.write(|done| Write::Purge { last, purged, done }).await
    }
}

#[cfg(test)]
mod tests {
    use openraft::entry::RaftEntry;
    use openraft::testing::blank_ent;
    use redb::ReadableTableMetadata;

    use super::*;
    use crate::raft::seal::Key;

    /// The sealer of these tests' logs: one fixed key.
    fn sealer() -> Sealer {
        Sealer::new(&Key::from_bytes([7; 32]))
    }

    /// Appends blank entries `from..=to` (term 1) as one call, and waits for the sync.
    async fn append(log: &mut LogStore, from: u64, to: u64) {
        use openraft::type_config::TypeConfigExt;
        let (tx, synced) = C::oneshot();
        log.append((from..=to).map(|i| blank_ent::<C>(1, 1, i)), IOFlushed::signal(tx)).await.unwrap();
        synced.await.unwrap().unwrap();
    }

    /// The indexes of every entry in `range`, as read from the disk (a fresh store).
    async fn on_disk(dir: &Path, range: std::ops::RangeInclusive<u64>) -> Vec<u64> {
        let mut log = LogStore::open(dir, sealer()).unwrap();
        log.try_get_log_entries(range).await.unwrap().iter().map(RaftEntry::index).collect()
    }

    #[tokio::test]
    async fn runs_are_cut_by_purges_and_truncations_and_read_back_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut log = LogStore::open(dir.path(), sealer()).unwrap();
            append(&mut log, 1, 10).await;
            append(&mut log, 11, 12).await;
            log.purge(openraft::testing::log_id::<C>(1, 1, 3)).await.unwrap();
            log.truncate_after(Some(openraft::testing::log_id::<C>(1, 1, 6))).await.unwrap();
            append(&mut log, 7, 8).await;
        }
        assert_eq!(on_disk(dir.path(), 0..=100).await, (4..=8).collect::<Vec<_>>());
        assert_eq!(on_disk(dir.path(), 5..=6).await, vec![5, 6], "a range inside a run");
        let mut log = LogStore::open(dir.path(), sealer()).unwrap();
        let state = log.get_log_state().await.unwrap();
        assert_eq!(state.last_log_id.map(|l| l.index()), Some(8));
        assert_eq!(state.last_purged_log_id.map(|l| l.index()), Some(3));
        // An append over entries still stored replaces them (and what follows).
        append(&mut log, 6, 6).await;
        drop(log);
        assert_eq!(on_disk(dir.path(), 0..=100).await, (4..=6).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn a_log_kept_one_value_per_entry_is_moved_into_runs() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = Database::create(dir.path().join("raft.redb")).unwrap();
            let tx = db.begin_write().unwrap();
            {
                let mut old = tx.open_table(OLD_LOG).unwrap();
                for i in (5..=9).chain(12..=13) {
                    old.insert(i, encode(&blank_ent::<C>(2, 1, i)).unwrap().as_slice()).unwrap();
                }
                tx.open_table(META).unwrap();
            }
            tx.commit().unwrap();
        }
        assert_eq!(on_disk(dir.path(), 0..=100).await, vec![5, 6, 7, 8, 9, 12, 13]);
        let db = Database::create(dir.path().join("raft.redb")).unwrap();
        let tx = db.begin_read().unwrap();
        assert!(tx.open_table(OLD_LOG).is_err(), "the old table is gone");
        assert_eq!(tx.open_table(RUNS).unwrap().len().unwrap(), 2, "one run per stretch of indexes");
    }

    #[tokio::test]
    async fn the_commit_index_costs_no_sync_of_its_own_while_writes_flow() {
        use std::sync::atomic::Ordering::Relaxed;
        let dir = tempfile::tempdir().unwrap();
        let mut log = LogStore::open(dir.path(), sealer()).unwrap();
        let stats = log.stats();
        append(&mut log, 1, 3).await;
        let before = stats.syncs.load(Relaxed);
        log.save_committed(Some(openraft::testing::log_id::<C>(1, 1, 3))).await.unwrap();
        append(&mut log, 4, 5).await;
        assert_eq!(stats.syncs.load(Relaxed), before + 1, "the index cost no sync of its own");
        let committed_on_disk = |log: LogStore| async move {
            log.get_meta::<Option<LogId>>("committed").await.unwrap().flatten()
        };
        // With no write after it, the index is written alone, soon.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while committed_on_disk(log.clone()).await.map(|l| l.index()) != Some(3) {
            assert!(std::time::Instant::now() < deadline, "the idle commit index was never written");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(stats.syncs.load(Relaxed), before + 2);
        // read_committed sees an index still waiting.
        log.save_committed(Some(openraft::testing::log_id::<C>(1, 1, 4))).await.unwrap();
        assert_eq!(log.read_committed().await.unwrap().map(|l| l.index()), Some(4));
        drop(log);
        assert_eq!(
            LogStore::open(dir.path(), sealer()).unwrap().read_committed().await.unwrap().map(|l| l.index()),
            Some(4)
        );
    }

    #[tokio::test]
    async fn a_plain_log_is_sealed_at_open_and_then_refuses_plain_entries_and_other_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("raft.redb");
        let entries: Vec<Entry> = (1..=4).map(|i| blank_ent::<C>(1, 1, i)).collect();
        {
            // A log as Shoal kept it before sealing: runs of plain entries, no check value.
            let db = Database::create(&path).unwrap();
            let tx = db.begin_write().unwrap();
            {
                let mut runs = tx.open_table(RUNS).unwrap();
                let plain: Vec<Vec<u8>> = entries.iter().map(|e| encode(e).unwrap()).collect();
                let (k, v) = run_of(1, plain.iter().map(Vec::as_slice));
                runs.insert(k, v.as_slice()).unwrap();
                tx.open_table(META).unwrap();
            }
            tx.commit().unwrap();
        }
        assert_eq!(on_disk(dir.path(), 0..=100).await, vec![1, 2, 3, 4], "read back after sealing");
        {
            let db = Database::create(&path).unwrap();
            let tx = db.begin_read().unwrap();
            let runs = tx.open_table(RUNS).unwrap();
            let (k, v) = runs.first().unwrap().unwrap();
            for (_, e) in run_entries(k.value(), v.value()).unwrap() {
                assert_eq!(e[0], FORMAT_SEALED, "every entry is sealed");
            }
        }
        let err = LogStore::open(dir.path(), Sealer::new(&Key::from_bytes([8; 32]))).unwrap_err();
        assert!(shoal_api::report::chain(&err).contains("another data key"), "{err}");
        {
            // A plain entry slipped into the sealed log is refused.
            let db = Database::create(&path).unwrap();
            let tx = db.begin_write().unwrap();
            {
                let mut runs = tx.open_table(RUNS).unwrap();
                let plain = encode(&blank_ent::<C>(1, 1, 5)).unwrap();
                let (k, v) = run_of(5, [plain.as_slice()]);
                runs.insert(k, v.as_slice()).unwrap();
            }
            tx.commit().unwrap();
        }
        let mut log = LogStore::open(dir.path(), sealer()).unwrap();
        let err = log.try_get_log_entries(5..=5).await.unwrap_err();
        assert!(err.to_string().contains("stored unsealed"), "{err}");
    }

    #[test]
    fn a_damaged_file_is_named_and_never_reset() {
        let dir = tempfile::tempdir().unwrap();
        LogStore::open(dir.path(), sealer()).unwrap();
        let path = dir.path().join("raft.redb");
        let len = std::fs::metadata(&path).unwrap().len();
        std::fs::write(&path, vec![0xAB; len as usize]).unwrap();
        let err = LogStore::open(dir.path(), sealer()).unwrap_err();
        let text = shoal_api::report::chain(&err);
        assert!(text.contains(&path.display().to_string()) && text.contains("restore"), "{text}");
        assert_eq!(std::fs::read(&path).unwrap(), vec![0xAB; len as usize], "the file is left as it was");
        std::fs::write(&path, b"").unwrap();
        let err = LogStore::open(dir.path(), sealer()).unwrap_err();
        assert!(err.source.to_string().contains("empty"), "{err}");
    }
}
