//! The Raft log, vote, commit index and purge point in Shoal's write-ahead log
//! ([`shoal_wal`]), in `<data dir>/raft-wal/`: one ordered stream of records, written
//! by one thread that takes every write queued while its last sync ran (group commit).
//! A leader's own appends (and the commit index and purges) reach that thread at the
//! end of the Raft thread's pass, after the new entries went to the followers
//! ([`super::outbox`]). Appended entries are readable at once, from memory (the tail);
//! openraft is told
//! they are durable once their `fdatasync` returns. A vote is synced before
//! `save_vote` returns. The commit index, truncations and purges are written in order
//! with everything else and ride on the next sync: a crash may lose them, never
//! reorder them (openraft's storage rules).
//!
//! Every entry is sealed on its own (see [`super::seal`]) with this manager's data
//! key, bound to its index, so a read opens only the entries it returns. The state
//! slots (vote, commit index, purge point) hold only terms, indexes and node ids, and
//! stay plain. A log kept in redb (`raft.redb`, by earlier Shoal versions) is copied
//! into a new WAL at open, which is then renamed into place; the old file is renamed
//! `raft.redb.migrated` and never read again.

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{OptionalSend, RaftTypeConfig};
use shoal_wal::{Op, Wal};

use super::outbox::Outbox;
use super::seal::{self, Sealer};
use super::types::TypeConfig;

type C = TypeConfig;
type Entry = <C as RaftTypeConfig>::Entry;
type LogId = openraft::type_config::alias::LogIdOf<C>;
type Vote = openraft::type_config::alias::VoteOf<C>;

/// The WAL's directory under the data dir.
const WAL_DIR: &str = "raft-wal";
/// Where a new or migrated WAL is built before it is renamed into place.
const WAL_TMP: &str = "raft-wal.tmp";
/// The log as Shoal kept it in redb; renamed to [`OLD_DONE`] once migrated.
const OLD_FILE: &str = "raft.redb";
const OLD_DONE: &str = "raft.redb.migrated";

/// The WAL's state slots.
const VOTE: u8 = 1;
const COMMITTED: u8 = 2;
const PURGED: u8 = 3;
const SEAL_CHECK_SLOT: u8 = 4;

/// Format of the state slots' values (and of redb's META values): one version byte,
/// then JSON. openraft's serde forms are not a stable format across versions, so the
/// envelope is ours.
const FORMAT_V1: u8 = 1;

/// Format of an entry sealed as JSON (redb logs, and WALs written before the binary
/// form): this byte, then its JSON sealed for its index ([`entry_aad`]).
const FORMAT_SEALED: u8 = 3;

/// Format of an entry sealed in its binary form ([`super::codec`]): this byte, then
/// that form sealed for its index.
const FORMAT_SEALED_BINARY: u8 = 4;

/// The value sealed at the log's creation: it tells a wrong key at open, before any
/// entry is read. (Its sealing is bound to [`SEAL_CHECK`].)
const SEAL_CHECK: &str = "seal_check";
const SEAL_CHECK_TEXT: &[u8] = b"shoal raft log";

/// What an entry's sealing is bound to: its index.
fn entry_aad(index: u64) -> [u8; 18] {
    let mut aad = [0u8; 18];
    aad[..10].copy_from_slice(b"raft entry");
    aad[10..].copy_from_slice(&index.to_le_bytes());
    aad
}

/// The stored form of `entry` at `index`: its binary form, sealed.
fn seal_entry(sealer: &Sealer, index: u64, entry: &Entry) -> Vec<u8> {
    let mut plain = Vec::new();
    super::codec::encode_entry(entry, &mut plain);
    let mut out = Vec::with_capacity(1 + seal::OVERHEAD + plain.len());
    out.push(FORMAT_SEALED_BINARY);
    sealer.seal_into(&entry_aad(index), &plain, &mut out);
    out
}

/// The entry stored at `index` as `bytes` (sealed; a plain one is refused).
fn open_entry(sealer: &Sealer, index: u64, bytes: &[u8]) -> io::Result<Entry> {
    let what = || format!("log entry {index}");
    let invalid = |m: String| io::Error::new(io::ErrorKind::InvalidData, m);
    let (&format, sealed) = bytes.split_first().ok_or_else(|| invalid(format!("{} is empty", what())))?;
    let plain = || {
        sealer
            .open(&entry_aad(index), sealed)
            .map_err(|e| invalid(format!("{} cannot be opened: {e}", what())))
    };
    let entry: Entry = match format {
        FORMAT_SEALED_BINARY => {
            super::codec::decode_entry(&plain()?).map_err(|e| invalid(format!("corrupt {}: {e}", what())))?
        }
        FORMAT_SEALED => {
            serde_json::from_slice(&plain()?).map_err(|e| invalid(format!("corrupt {}: {e}", what())))?
        }
        FORMAT_V1 => {
            return Err(invalid(format!(
                "{} is stored unsealed in a sealed log: the file was changed",
                what()
            )));
        }
        _ => return Err(invalid(format!("{} has an unknown format version", what()))),
    };
    if entry.index() != index {
        return Err(invalid(format!("{} holds entry {}", what(), entry.index())));
    }
    Ok(entry)
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
    "cannot open the Raft log {path} (if it is damaged, restore this manager's data dir \
     from a backup, or remove it and join the manager again: its state comes back from the others)"
)]
pub struct OpenError {
    /// The file or directory.
    pub path: PathBuf,
    /// What the WAL, redb or the file system said.
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

/// The log store. Clones share the WAL, the tail and the in-memory state.
#[derive(Debug, Clone)]
pub struct LogStore {
    wal: Wal,
    /// Where writes wait for the end of the Raft thread's pass ([`super::outbox`]).
    outbox: Arc<Outbox>,
    /// The manager whose log this is: entries it made (as leader) are written after
    /// they went to the followers.
    me: Option<u64>,
    sealer: Arc<Sealer>,
    stats: Arc<LogStats>,
    tail: Arc<std::sync::Mutex<Tail>>,
    meta: Arc<std::sync::Mutex<Meta>>,
}

/// The vote, commit index and purge point as last set (the WAL writes them in order).
#[derive(Debug, Default)]
struct Meta {
    vote: Option<Vote>,
    committed: Option<LogId>,
    purged: Option<LogId>,
}

/// The newest entries, decoded: replication reads them here, not from the files, and
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

/// The most the tail cache holds (encoded size); older entries come from the files.
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
    pub entries: AtomicU64,
    /// Syncs (`fdatasync`) of the log.
    pub syncs: Arc<AtomicU64>,
}

impl LogStore {
    /// Opens (creating) the log in `dir/raft-wal`, whose entries `sealer` seals and
    /// opens. A log kept in `dir/raft.redb` is migrated first; a log sealed with
    /// another key is refused.
    pub fn open(dir: &Path, sealer: Sealer) -> Result<LogStore, OpenError> {
        let wal_dir = dir.join(WAL_DIR);
        std::fs::create_dir_all(dir).map_err(err(dir))?;
        let stats = Arc::<LogStats>::default();
        let options = shoal_wal::Options { segment_bytes: segment_bytes(dir), syncs: stats.syncs.clone() };
        if !wal_dir.exists() {
            let old = dir.join(OLD_FILE);
            if old.exists() {
                migrate::from_redb(dir, &sealer, &options).map_err(err(&old))?;
            } else {
                create(dir, &sealer, &options).map_err(err(&wal_dir))?;
            }
        }
        // A crash after the WAL was put in place, before the old file was renamed.
        if dir.join(OLD_FILE).exists() {
            retire_old_file(dir).map_err(|e| err(&dir.join(OLD_FILE))(e))?;
        }
        let has_segments = std::fs::read_dir(&wal_dir)
            .map_err(err(&wal_dir))?
            .any(|e| e.is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".wal")));
        if !has_segments {
            // A log emptied by hand is lost data, not a new manager.
            return Err(err(&wal_dir)("the log directory holds no segments (were they deleted?)"));
        }
        // A manager stopped in this process may still be letting go of the log (its
        // Raft tasks end a moment after shutdown): wait a little for the lock.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let wal = loop {
            match Wal::open(&wal_dir, options.clone()) {
                Err(shoal_wal::WalError::Locked { .. }) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                opened => break opened.map_err(err(&wal_dir))?,
            }
        };
        check_key(&wal, &sealer).map_err(err(&wal_dir))?;
        let meta = Meta {
            vote: slot(&wal, VOTE, "vote").map_err(err(&wal_dir))?,
            committed: slot::<Option<LogId>>(&wal, COMMITTED, "commit index")
                .map_err(err(&wal_dir))?
                .flatten(),
            purged: slot(&wal, PURGED, "purge point").map_err(err(&wal_dir))?,
        };
        Ok(LogStore {
            outbox: Outbox::new(wal.clone()),
            me: None,
            wal,
            sealer: Arc::new(sealer),
            stats,
            tail: Arc::default(),
            meta: Arc::new(std::sync::Mutex::new(meta)),
        })
    }

    /// Write counters, shared by clones.
    pub fn stats(&self) -> Arc<LogStats> {
        self.stats.clone()
    }

    /// Bytes the log's segment files under the manager's data dir `dir` take (they
    /// are preallocated), read from the directory: no handle on the log needed.
    pub fn disk_bytes_at(dir: &Path) -> u64 {
        std::fs::read_dir(dir.join(WAL_DIR))
            .map(|entries| {
                entries
                    .flatten()
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".wal"))
                    .filter_map(|e| e.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0)
    }

    /// The log of manager `id`: entries it makes as leader go to the followers before
    /// its own writer thread is woken ([`super::outbox`]).
    pub fn of_manager(mut self, id: u64) -> LogStore {
        self.me = Some(id);
        self
    }

    /// Bytes the log's files take on disk (segments are preallocated).
    pub fn disk_bytes(&self) -> u64 {
        self.wal.disk_bytes()
    }

    fn meta(&self) -> std::sync::MutexGuard<'_, Meta> {
        self.meta.lock().expect("log meta lock")
    }

    /// Queues `ops` and waits until they are written (and synced, if `sync`).
    async fn write(&self, ops: Vec<Op>, sync: bool) -> io::Result<()> {
        let (done, written) = tokio::sync::oneshot::channel();
        self.outbox.submit(ops, sync, Some(Box::new(move |r| drop(done.send(r)))), false);
        written.await.map_err(|_| io::Error::other("the Raft log writer stopped"))?.map_err(io::Error::other)
    }
}

/// The value in `slot`, if one was written.
fn slot<T: for<'de> serde::Deserialize<'de>>(wal: &Wal, slot: u8, what: &str) -> io::Result<Option<T>> {
    wal.state(slot).map(|v| decode(&v, what)).transpose()
}

/// The size of the log's segments: 64 MiB (as etcd's), or a sixteenth of the free
/// space on a small disk, at least 1 MiB: preallocating a segment must not itself fill
/// the disk.
fn segment_bytes(dir: &Path) -> u64 {
    const MIB: u64 = 1 << 20;
    let free = nix::sys::statvfs::statvfs(dir).map_or(u64::MAX, |s| s.blocks_available() * s.fragment_size());
    ((free / 16) / MIB * MIB).clamp(MIB, shoal_wal::Options::default().segment_bytes)
}

/// Makes an [`OpenError`] about `path`.
fn err<E: Into<Box<dyn std::error::Error + Send + Sync>>>(path: &Path) -> impl FnOnce(E) -> OpenError {
    let path = path.to_owned();
    move |e| OpenError { path, source: e.into() }
}

/// Checks that `sealer` has the log's key.
fn check_key(wal: &Wal, sealer: &Sealer) -> io::Result<()> {
    let check = wal.state(SEAL_CHECK_SLOT).ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidData, "the log has no key check value: the files were changed")
    })?;
    match sealer.open(SEAL_CHECK.as_bytes(), &check) {
        Ok(text) if text == SEAL_CHECK_TEXT => Ok(()),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the log was sealed with another data key (was this manager's raft-dek file replaced?)",
        )),
    }
}

/// Makes a new, empty log: built in [`WAL_TMP`], synced, then renamed into place.
fn create(dir: &Path, sealer: &Sealer, options: &shoal_wal::Options) -> io::Result<()> {
    let check = sealer.seal(SEAL_CHECK.as_bytes(), SEAL_CHECK_TEXT);
    build(dir, options, vec![Op::SetState { slot: SEAL_CHECK_SLOT, value: check }])
}

/// Writes `ops` into a fresh WAL in [`WAL_TMP`], syncs it, and renames it to
/// [`WAL_DIR`] (then syncs `dir`): a crash midway leaves no log, and the next open
/// starts over.
fn build(dir: &Path, options: &shoal_wal::Options, ops: Vec<Op>) -> io::Result<()> {
    let tmp = dir.join(WAL_TMP);
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)?;
    }
    let options = shoal_wal::Options { syncs: Arc::default(), ..options.clone() };
    let wal = Wal::open(&tmp, options).map_err(other)?;
    wal.write_blocking(ops, true).map_err(other)?;
    drop(wal);
    std::fs::rename(&tmp, dir.join(WAL_DIR))?;
    std::fs::File::open(dir)?.sync_all()
}

/// Renames the migrated redb log out of the way, so it is never read again.
fn retire_old_file(dir: &Path) -> io::Result<()> {
    std::fs::rename(dir.join(OLD_FILE), dir.join(OLD_DONE))?;
    std::fs::File::open(dir)?.sync_all()
}

mod migrate {
    //! Reading a log kept in redb (runs of entries in `log_runs`, or one value per
    //! entry in the older `log` table, plain or sealed; the vote, commit index, purge
    //! point and key check in `meta`) into a new WAL.

    use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, TableHandle};

    use super::*;

    pub(super) const RUNS: TableDefinition<u64, &[u8]> = TableDefinition::new("log_runs");
    pub(super) const OLD_LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
    pub(super) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

    /// Format of a run: this byte, the entry count (u32 LE), then each entry as its
    /// length (u32 LE) and its encoding.
    pub(super) const FORMAT_RUN: u8 = 2;

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

    /// Copies the redb log in `dir` into a new WAL, puts it in place, and renames the
    /// redb file. Sealed entries are copied as they are (their sealing is bound to
    /// their index, not to the file); plain ones are sealed.
    pub(super) fn from_redb(
        dir: &Path,
        sealer: &Sealer,
        options: &shoal_wal::Options,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let path = dir.join(OLD_FILE);
        // redb would start an empty file afresh: a log truncated to nothing is lost
        // data, not a new manager.
        if std::fs::metadata(&path)?.len() == 0 {
            return Err("the file is empty (truncated?)".into());
        }
        let db = Database::open(&path)?;
        let tx = db.begin_read()?;
        let tables: Vec<String> = tx.list_tables()?.map(|t| t.name().to_owned()).collect();
        let has = |t: &str| tables.iter().any(|n| n == t);
        let meta_value = |key: &str| -> Result<Option<Vec<u8>>, Box<dyn std::error::Error + Send + Sync>> {
            if !has(META.name()) {
                return Ok(None);
            }
            Ok(tx.open_table(META)?.get(key)?.map(|v| v.value().to_vec()))
        };
        let sealed = meta_value(SEAL_CHECK)?.is_some();
        let check = match meta_value(SEAL_CHECK)? {
            Some(check) => {
                match sealer.open(SEAL_CHECK.as_bytes(), &check) {
                    Ok(text) if text == SEAL_CHECK_TEXT => {}
                    _ => {
                        return Err("the log was sealed with another data key \
                                    (was this manager's raft-dek file replaced?)"
                            .into());
                    }
                }
                check
            }
            None => sealer.seal(SEAL_CHECK.as_bytes(), SEAL_CHECK_TEXT),
        };
        let purged: Option<LogId> =
            meta_value("last_purged")?.map(|v| decode(&v, "last_purged")).transpose()?;
        let mut ops = vec![Op::SetState { slot: SEAL_CHECK_SLOT, value: check }];
        for (key, slot) in [("vote", VOTE), ("committed", COMMITTED), ("last_purged", PURGED)] {
            if let Some(value) = meta_value(key)? {
                ops.push(Op::SetState { slot, value });
            }
        }
        if let Some(p) = purged {
            ops.push(Op::PurgeThrough(p.index()));
        }
        let after_purge = |i: u64| purged.is_none_or(|p| i > p.index());
        // One entry's stored form in the WAL: sealed as it was, or sealed now.
        let store = |index: u64, bytes: &[u8]| -> io::Result<Op> {
            let data = match bytes.first() {
                Some(&FORMAT_V1) if !sealed => {
                    let entry: Entry = decode(bytes, &format!("log entry {index}"))?;
                    seal_entry(sealer, index, &entry)
                }
                // Opened once here, so a damaged entry stops the migration.
                _ => {
                    open_entry(sealer, index, bytes)?;
                    bytes.to_vec()
                }
            };
            Ok(Op::Append { index, data })
        };
        if has(OLD_LOG.name()) {
            for item in tx.open_table(OLD_LOG)?.iter()? {
                let (k, v) = item?;
                if after_purge(k.value()) {
                    ops.push(store(k.value(), v.value())?);
                }
            }
        }
        if has(RUNS.name()) {
            for item in tx.open_table(RUNS)?.iter()? {
                let (k, v) = item?;
                for (i, bytes) in run_entries(k.value(), v.value())? {
                    if after_purge(i) {
                        ops.push(store(i, bytes)?);
                    }
                }
            }
        }
        drop(tx);
        drop(db);
        build(dir, options, ops)?;
        retire_old_file(dir)?;
        Ok(())
    }
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

impl LogStore {
    /// The entries stored in `start..=end` (`None`: no end), read from the files.
    async fn read_disk(&self, start: u64, end: Option<u64>) -> io::Result<Vec<Entry>> {
        let (wal, sealer) = (self.wal.clone(), self.sealer.clone());
        tokio::task::spawn_blocking(move || {
            let end = end.map_or(u64::MAX, |e| e.saturating_add(1));
            wal.read_range(start..end)
                .map_err(other)?
                .into_iter()
                .map(|(i, bytes)| open_entry(&sealer, i, &bytes))
                .collect()
        })
        .await
        .map_err(other)?
    }
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
        let mut out = self.read_disk(start, disk_end).await?;
        out.extend(newest);
        Ok(out)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        Ok(self.meta().vote)
    }
}

impl RaftLogStorage<C> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<C>, io::Error> {
        let last_purged = self.meta().purged;
        // The newest entry is in the tail (appended, maybe not synced yet), else on disk.
        let newest =
            self.tail.lock().expect("tail lock").entries.last_key_value().map(|(_, (e, _))| e.log_id);
        let last_log_id = match newest {
            Some(id) => Some(id),
            None => match self.wal.entry_bounds() {
                Some((_, last)) => self.read_disk(last, Some(last)).await?.pop().map(|e| e.log_id),
                None => None,
            },
        };
        Ok(LogState { last_purged_log_id: last_purged, last_log_id: last_log_id.or(last_purged) })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        let value = encode(vote)?;
        self.write(vec![Op::SetState { slot: VOTE, value }], true).await?;
        self.meta().vote = Some(*vote);
        Ok(())
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        // Written in order with everything else, and synced with the next sync: it never
        // costs one of its own. openraft applies as soon as this returns.
        let value = encode(&committed)?;
        self.meta().committed = committed;
        self.outbox.submit(vec![Op::SetState { slot: COMMITTED, value }], false, None, true);
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        Ok(self.meta().committed)
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<C>) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let Some(last) = entries.last().map(RaftEntry::index) else {
            callback.io_completed(Ok(()));
            return Ok(());
        };
        let made_here = self.me.is_some_and(|me| entries.iter().all(|e| e.log_id.leader_id.node_id == me));
        let ops: Vec<Op> = entries
            .iter()
            .map(|e| Op::Append { index: e.index(), data: seal_entry(&self.sealer, e.index(), e) })
            .collect();
        let generation = {
            // Readable from now on, synced or not.
            let mut tail = self.tail.lock().expect("tail lock");
            for (e, op) in entries.into_iter().zip(&ops) {
                let Op::Append { data, .. } = op else { unreachable!("only appends") };
                tail.push(e.index(), e, data.len());
            }
            tail.generation
        };
        let count = ops.len() as u64;
        let (tail, stats) = (self.tail.clone(), self.stats.clone());
        let done = Box::new(move |result: Result<(), shoal_wal::WalError>| {
            use std::sync::atomic::Ordering::Relaxed;
            if result.is_ok() {
                let mut t = tail.lock().expect("tail lock");
                if t.generation == generation {
                    t.synced = t.synced.max(last);
                    t.trim();
                }
                drop(t);
                stats.entries.fetch_add(count, Relaxed);
            }
            callback.io_completed(result.map_err(io::Error::other));
        });
        // A leader's own entries go to the WAL once the replication streams sent them.
        self.outbox.submit(ops, true, Some(done), made_here);
        Ok(())
    }

    async fn truncate_after(&mut self, last: Option<LogId>) -> Result<(), io::Error> {
        let from = last.map_or(0, |l| l.index() + 1);
        {
            let mut tail = self.tail.lock().expect("tail lock");
            tail.remove(from..);
            tail.synced = tail.synced.min(from.saturating_sub(1));
            tail.generation += 1;
        }
        // Written (so reads of the files agree), synced with the next append.
        self.write(vec![Op::TruncateFrom(from)], false).await
    }

    async fn purge(&mut self, upto: LogId) -> Result<(), io::Error> {
        let value = encode(&upto)?;
        self.meta().purged = Some(upto);
        self.tail.lock().expect("tail lock").remove(..=upto.index());
        // The purge point first: a crash between the two records leaves entries the
        // point already covers, never a hole. Synced with the next sync; the segments
        // it empties are deleted after that.
        let ops = vec![Op::SetState { slot: PURGED, value }, Op::PurgeThrough(upto.index())];
        self.outbox.submit(ops, false, None, true);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use openraft::testing::blank_ent;
    use redb::Database;

    use super::migrate::{FORMAT_RUN, META, OLD_LOG, RUNS};
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

    #[tokio::test]
    async fn a_leaders_own_entries_wait_for_the_ready_tasks_and_others_go_at_once() {
        use openraft::type_config::TypeConfigExt;
        let dir = tempfile::tempdir().unwrap();
        let mut log = LogStore::open(dir.path(), sealer()).unwrap().of_manager(1);
        // Made by manager 1, this one: queued until the replication streams have run.
        let (tx, own_synced) = C::oneshot();
        log.append([blank_ent::<C>(1, 1, 1)], IOFlushed::signal(tx)).await.unwrap();
        assert_eq!(log.outbox.queued(), 1);
        own_synced.await.unwrap().unwrap();
        // Made by manager 2 (its leader): handed to the writer thread at once.
        let (tx, synced) = C::oneshot();
        log.append([blank_ent::<C>(2, 2, 2)], IOFlushed::signal(tx)).await.unwrap();
        assert_eq!(log.outbox.queued(), 0);
        synced.await.unwrap().unwrap();
        drop(log);
        assert_eq!(on_disk(dir.path(), 1..=2).await, [1, 2]);
    }

    /// The indexes of every entry in `range`, as read from the disk (a fresh store).
    async fn on_disk(dir: &Path, range: std::ops::RangeInclusive<u64>) -> Vec<u64> {
        let mut log = LogStore::open(dir, sealer()).unwrap();
        log.try_get_log_entries(range).await.unwrap().iter().map(RaftEntry::index).collect()
    }

    /// A redb run of `entries` (consecutive, from `first`), as Shoal stored it.
    fn run_of(_first: u64, entries: &[Vec<u8>]) -> Vec<u8> {
        let mut value = vec![FORMAT_RUN];
        value.extend_from_slice(&(entries.len() as u32).to_le_bytes());
        for e in entries {
            value.extend_from_slice(&(e.len() as u32).to_le_bytes());
            value.extend_from_slice(e);
        }
        value
    }

    /// An entry sealed as the redb log stored it: JSON.
    fn sealed_json(sealer: &Sealer, entry: &Entry) -> Vec<u8> {
        let mut out = vec![FORMAT_SEALED];
        sealer.seal_into(&entry_aad(entry.index()), &serde_json::to_vec(entry).unwrap(), &mut out);
        out
    }

    #[tokio::test]
    async fn purges_truncations_and_overwrites_are_read_back_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut log = LogStore::open(dir.path(), sealer()).unwrap();
            append(&mut log, 1, 10).await;
            append(&mut log, 11, 12).await;
            log.purge(openraft::testing::log_id::<C>(1, 1, 3)).await.unwrap();
            log.truncate_after(Some(openraft::testing::log_id::<C>(1, 1, 6))).await.unwrap();
        }
        assert_eq!(on_disk(dir.path(), 0..=100).await, (4..=6).collect::<Vec<_>>(), "purged and truncated");
        append(&mut LogStore::open(dir.path(), sealer()).unwrap(), 7, 8).await;
        assert_eq!(on_disk(dir.path(), 0..=100).await, (4..=8).collect::<Vec<_>>());
        assert_eq!(on_disk(dir.path(), 5..=6).await, vec![5, 6], "a range in the middle");
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
    async fn a_sealed_redb_log_is_migrated_once_and_the_old_file_kept_aside() {
        let dir = tempfile::tempdir().unwrap();
        let s = sealer();
        let vote = Vote::new_committed(4, 2);
        {
            // The layout the redb store wrote: sealed runs (JSON), META with the key
            // check, vote, commit index and purge point.
            let db = Database::create(dir.path().join(OLD_FILE)).unwrap();
            let tx = db.begin_write().unwrap();
            {
                let mut runs = tx.open_table(RUNS).unwrap();
                let sealed: Vec<Vec<u8>> =
                    (4..=6).map(|i| sealed_json(&s, &blank_ent::<C>(2, 1, i))).collect();
                runs.insert(4, run_of(4, &sealed).as_slice()).unwrap();
                let sealed: Vec<Vec<u8>> =
                    (7..=9).map(|i| sealed_json(&s, &blank_ent::<C>(2, 1, i))).collect();
                runs.insert(7, run_of(7, &sealed).as_slice()).unwrap();
                let mut meta = tx.open_table(META).unwrap();
                let log_id = |i| openraft::testing::log_id::<C>(2, 1, i);
                meta.insert("vote", encode(&vote).unwrap().as_slice()).unwrap();
                meta.insert("committed", encode(&Some(log_id(8))).unwrap().as_slice()).unwrap();
                meta.insert("last_purged", encode(&log_id(3)).unwrap().as_slice()).unwrap();
                meta.insert(SEAL_CHECK, s.seal(SEAL_CHECK.as_bytes(), SEAL_CHECK_TEXT).as_slice()).unwrap();
            }
            tx.commit().unwrap();
        }
        // With another key: refused, and the old file left in place, as it was.
        let err = LogStore::open(dir.path(), Sealer::new(&Key::from_bytes([8; 32]))).unwrap_err();
        assert!(shoal_api::report::chain(&err).contains("another data key"), "{err}");
        assert!(err.path.ends_with(OLD_FILE), "{err}");
        assert!(dir.path().join(OLD_FILE).exists(), "left in place");
        assert!(!dir.path().join(WAL_DIR).exists());

        assert_eq!(on_disk(dir.path(), 0..=100).await, (4..=9).collect::<Vec<_>>());
        assert!(!dir.path().join(OLD_FILE).exists() && !dir.path().join(WAL_TMP).exists());
        assert!(dir.path().join(OLD_DONE).exists(), "the old file is kept, renamed");
        let mut log = LogStore::open(dir.path(), s.clone()).unwrap();
        assert_eq!(log.read_vote().await.unwrap(), Some(vote));
        assert_eq!(log.read_committed().await.unwrap().map(|l| l.index()), Some(8));
        let state = log.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id.map(|l| l.index()), Some(3));
        assert_eq!(state.last_log_id.map(|l| (l.leader_id.term, l.index())), Some((2, 9)));
        // Migrated once: later opens use the WAL only.
        append(&mut log, 10, 10).await;
        drop(log);
        assert_eq!(on_disk(dir.path(), 0..=100).await, (4..=10).collect::<Vec<_>>());
        // A crash after the WAL was put in place, before the old file was renamed: the
        // WAL wins, and the rename is finished.
        std::fs::rename(dir.path().join(OLD_DONE), dir.path().join(OLD_FILE)).unwrap();
        assert_eq!(on_disk(dir.path(), 0..=100).await, (4..=10).collect::<Vec<_>>());
        assert!(dir.path().join(OLD_DONE).exists() && !dir.path().join(OLD_FILE).exists());
        // A crash while the new WAL was being built: it is built again.
        std::fs::rename(dir.path().join(WAL_DIR), dir.path().join(WAL_TMP)).unwrap();
        std::fs::rename(dir.path().join(OLD_DONE), dir.path().join(OLD_FILE)).unwrap();
        assert_eq!(on_disk(dir.path(), 0..=100).await, (4..=9).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn the_commit_index_costs_no_sync_of_its_own() {
        use std::sync::atomic::Ordering::Relaxed;
        let dir = tempfile::tempdir().unwrap();
        let mut log = LogStore::open(dir.path(), sealer()).unwrap();
        let stats = log.stats();
        append(&mut log, 1, 3).await;
        let before = stats.syncs.load(Relaxed);
        log.save_committed(Some(openraft::testing::log_id::<C>(1, 1, 3))).await.unwrap();
        append(&mut log, 4, 5).await;
        assert_eq!(stats.syncs.load(Relaxed), before + 1, "the index rode on the append's sync");
        // Alone, it is written (in order) but not synced.
        log.save_committed(Some(openraft::testing::log_id::<C>(1, 1, 4))).await.unwrap();
        log.write(Vec::new(), false).await.unwrap();
        assert_eq!(
            slot::<Option<LogId>>(&log.wal, COMMITTED, "").unwrap().flatten().map(|l| l.index()),
            Some(4)
        );
        assert_eq!(stats.syncs.load(Relaxed), before + 1, "no sync of its own");
        assert_eq!(log.read_committed().await.unwrap().map(|l| l.index()), Some(4));
        drop(log);
        assert_eq!(
            LogStore::open(dir.path(), sealer()).unwrap().read_committed().await.unwrap().map(|l| l.index()),
            Some(4)
        );
    }

    #[tokio::test]
    async fn a_plain_redb_log_is_sealed_when_migrated_and_another_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let entries: Vec<Entry> = (1..=4).map(|i| blank_ent::<C>(1, 1, i)).collect();
        {
            // A log as Shoal kept it before sealing: runs of plain entries, no check value.
            let db = Database::create(dir.path().join(OLD_FILE)).unwrap();
            let tx = db.begin_write().unwrap();
            {
                // The oldest layout (one value per entry) for the first two, runs after.
                let mut old = tx.open_table(OLD_LOG).unwrap();
                for e in &entries[..2] {
                    old.insert(e.index(), encode(e).unwrap().as_slice()).unwrap();
                }
                let mut runs = tx.open_table(RUNS).unwrap();
                let plain: Vec<Vec<u8>> = entries[2..].iter().map(|e| encode(e).unwrap()).collect();
                runs.insert(3, run_of(3, &plain).as_slice()).unwrap();
                tx.open_table(META).unwrap();
            }
            tx.commit().unwrap();
        }
        assert_eq!(on_disk(dir.path(), 0..=100).await, vec![1, 2, 3, 4], "read back after sealing");
        let log = LogStore::open(dir.path(), sealer()).unwrap();
        for (i, bytes) in log.wal.read_range(0..100).unwrap() {
            assert_eq!(bytes[0], FORMAT_SEALED_BINARY, "entry {i} is sealed");
        }
        drop(log);
        let err = LogStore::open(dir.path(), Sealer::new(&Key::from_bytes([8; 32]))).unwrap_err();
        assert!(shoal_api::report::chain(&err).contains("another data key"), "{err}");
        // A plain entry slipped into the sealed log is refused.
        let log = LogStore::open(dir.path(), sealer()).unwrap();
        log.write(vec![Op::Append { index: 5, data: encode(&blank_ent::<C>(1, 1, 5)).unwrap() }], true)
            .await
            .unwrap();
        drop(log);
        let mut log = LogStore::open(dir.path(), sealer()).unwrap();
        let err = log.try_get_log_entries(5..=5).await.unwrap_err();
        assert!(err.to_string().contains("stored unsealed"), "{err}");
    }

    #[tokio::test]
    async fn a_damaged_log_is_named_and_never_reset() {
        let dir = tempfile::tempdir().unwrap();
        let (path, span) = {
            let mut log = LogStore::open(dir.path(), sealer()).unwrap();
            append(&mut log, 1, 5).await;
            log.wal.frame_span(3).unwrap()
        };
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[span.start as usize + 30] ^= 0xFF;
        std::fs::write(&path, &bytes).unwrap();
        let err = LogStore::open(dir.path(), sealer()).unwrap_err();
        let text = shoal_api::report::chain(&err);
        assert!(text.contains(&path.display().to_string()) && text.contains("restore"), "{text}");
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "the file is left as it was");
        // Segments removed by hand: refused, not started afresh.
        std::fs::remove_file(&path).unwrap();
        let err = LogStore::open(dir.path(), sealer()).unwrap_err();
        assert!(err.source.to_string().contains("no segments"), "{err}");
        // A redb log truncated to nothing is refused too.
        let old = tempfile::tempdir().unwrap();
        std::fs::write(old.path().join(OLD_FILE), b"").unwrap();
        let err = LogStore::open(old.path(), sealer()).unwrap_err();
        assert!(err.source.to_string().contains("empty"), "{err}");
    }
}
