//! The Raft log, vote and commit index in redb, under the manager's data dir. Every
//! write is committed with fsync before openraft is told it is durable; reads see
//! appended entries at once.

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{OptionalSend, RaftTypeConfig};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::types::TypeConfig;

type C = TypeConfig;
type Entry = <C as RaftTypeConfig>::Entry;
type LogId = openraft::type_config::alias::LogIdOf<C>;
type Vote = openraft::type_config::alias::VoteOf<C>;

const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// Format of every stored value: one version byte, then JSON. openraft's serde forms
/// are not a stable format across versions, so the envelope is ours.
const FORMAT_V1: u8 = 1;

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
    "cannot open the Raft log {path}: {message}. If the file is damaged, restore this manager's data dir \
     from a backup, or remove it and join the manager again (its state comes back from the others)"
)]
pub struct OpenError {
    /// The file.
    pub path: PathBuf,
    /// What redb said.
    pub message: String,
}

/// The redb-backed log store. Clones share the database and the tail cache.
#[derive(Debug, Clone)]
pub struct LogStore {
    db: Arc<Database>,
    stats: Arc<LogStats>,
    tail: Arc<std::sync::Mutex<Tail>>,
}

/// The newest entries, decoded: replication reads them here, not from the file
/// (decoding them again for every follower cost the leader most of its time).
#[derive(Debug, Default)]
struct Tail {
    entries: std::collections::BTreeMap<u64, (Entry, usize)>,
    bytes: usize,
}

/// The most the tail cache holds (encoded size); older entries come from the file.
const TAIL_BYTES: usize = 32 << 20;

impl Tail {
    fn push(&mut self, index: u64, entry: Entry, size: usize) {
        if let Some((_, old)) = self.entries.insert(index, (entry, size)) {
            self.bytes -= old;
        }
        self.bytes += size;
        while self.bytes > TAIL_BYTES {
            let Some((_, (_, size))) = self.entries.pop_first() else { break };
            self.bytes -= size;
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

    /// Every entry of `start..=end`, if all are here.
    fn get(&self, start: u64, end: u64) -> Option<Vec<Entry>> {
        let first = *self.entries.keys().next()?;
        let last = *self.entries.keys().next_back()?;
        (start >= first && end <= last && start <= end)
            .then(|| self.entries.range(start..=end).map(|(_, (e, _))| e.clone()).collect())
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
    /// Opens (creating) `dir/raft.redb`.
    pub fn open(dir: &Path) -> Result<LogStore, OpenError> {
        let path = dir.join("raft.redb");
        let err = |e: &dyn std::fmt::Display| OpenError { path: path.clone(), message: e.to_string() };
        std::fs::create_dir_all(dir).map_err(|e| err(&e))?;
        // redb would start an empty file afresh: a log truncated to nothing is lost
        // data, not a new manager.
        if std::fs::metadata(&path).is_ok_and(|m| m.len() == 0) {
            return Err(err(&"the file is empty (truncated?)"));
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
                Err(e) => return Err(err(&e)),
            }
        };
        let tx = db.begin_write().map_err(|e| err(&e))?;
        tx.open_table(LOG).map_err(|e| err(&e))?;
        tx.open_table(META).map_err(|e| err(&e))?;
        tx.commit().map_err(|e| err(&e))?;
        Ok(LogStore { db: Arc::new(db), stats: Arc::default(), tail: Arc::default() })
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

    async fn put_meta<T: serde::Serialize>(&self, key: &'static str, value: &T) -> io::Result<()> {
        let bytes = encode(value)?;
        self.blocking(move |db| {
            let tx = db.begin_write().map_err(other)?;
            tx.open_table(META).map_err(other)?.insert(key, bytes.as_slice()).map_err(other)?;
            tx.commit().map_err(other)
        })
        .await
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

impl RaftLogReader<C> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        let (start, end) = bounds(&range);
        if end.is_some_and(|e| e < start) || (matches!(range.end_bound(), Bound::Excluded(&0))) {
            return Ok(Vec::new());
        }
        if let Some(e) = end
            && let Some(entries) = self.tail.lock().expect("tail lock").get(start, e)
        {
            return Ok(entries);
        }
        self.blocking(move |db| {
            let tx = db.begin_read().map_err(other)?;
            let table = tx.open_table(LOG).map_err(other)?;
            let iter = match end {
                Some(e) => table.range(start..=e).map_err(other)?,
                None => table.range(start..).map_err(other)?,
            };
            let mut out = Vec::new();
            for item in iter {
                let (k, v) = item.map_err(other)?;
                out.push(decode::<Entry>(v.value(), &format!("log entry {}", k.value()))?);
            }
            Ok(out)
        })
        .await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        self.get_meta("vote").await
    }
}

impl RaftLogStorage<C> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<C>, io::Error> {
        let last_purged: Option<LogId> = self.get_meta("last_purged").await?;
        let last_entry = self
            .blocking(|db| {
                let tx = db.begin_read().map_err(other)?;
                let table = tx.open_table(LOG).map_err(other)?;
                match table.last().map_err(other)? {
                    Some((k, v)) => decode::<Entry>(v.value(), &format!("log entry {}", k.value())).map(Some),
                    None => Ok(None),
                }
            })
            .await?;
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
        // Synced: a restarted manager applies what was committed before it serves
        // reads (not synced, it would wait for a new leader's first commit).
        self.put_meta("committed", &committed).await
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        Ok(self.get_meta::<Option<LogId>>("committed").await?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<C>) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let encoded: Vec<(u64, Vec<u8>)> = entries
            .iter()
            .map(|e| Ok((openraft::entry::RaftEntry::index(e), encode(e)?)))
            .collect::<io::Result<_>>()?;
        let sizes: Vec<usize> = encoded.iter().map(|(_, b)| b.len()).collect();
        let count = encoded.len() as u64;
        let result = self
            .blocking(move |db| {
                let tx = db.begin_write().map_err(other)?;
                {
                    let mut table = tx.open_table(LOG).map_err(other)?;
                    for (index, bytes) in &encoded {
                        table.insert(*index, bytes.as_slice()).map_err(other)?;
                    }
                }
                // Commit is an fsync (redb's default durability).
                tx.commit().map_err(other)
            })
            .await;
        match result {
            Ok(()) => {
                use std::sync::atomic::Ordering::Relaxed;
                let mut tail = self.tail.lock().expect("tail lock");
                for (e, size) in entries.into_iter().zip(sizes) {
                    tail.push(openraft::entry::RaftEntry::index(&e), e, size);
                }
                drop(tail);
                self.stats.syncs.fetch_add(1, Relaxed);
                self.stats.entries.fetch_add(count, Relaxed);
                callback.io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.io_completed(Err(io::Error::new(e.kind(), e.to_string())));
                Err(e)
            }
        }
    }

    async fn truncate_after(&mut self, last: Option<LogId>) -> Result<(), io::Error> {
        let from = last.map_or(0, |l| l.index() + 1);
        self.tail.lock().expect("tail lock").remove(from..);
        self.blocking(move |db| {
            let tx = db.begin_write().map_err(other)?;
            {
                let mut table = tx.open_table(LOG).map_err(other)?;
                table.retain_in(from.., |_, _| false).map_err(other)?;
            }
            tx.commit().map_err(other)
        })
        .await
    }

    async fn purge(&mut self, upto: LogId) -> Result<(), io::Error> {
        let bytes = encode(&upto)?;
        let last = upto.index();
        self.tail.lock().expect("tail lock").remove(..=last);
        self.blocking(move |db| {
            // Record the purge point and delete in one transaction: no hole can show.
            let tx = db.begin_write().map_err(other)?;
            {
                tx.open_table(META).map_err(other)?.insert("last_purged", bytes.as_slice()).map_err(other)?;
                let mut table = tx.open_table(LOG).map_err(other)?;
                table.retain_in(..=last, |_, _| false).map_err(other)?;
            }
            tx.commit().map_err(other)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_damaged_file_is_named_and_never_reset() {
        let dir = tempfile::tempdir().unwrap();
        LogStore::open(dir.path()).unwrap();
        let path = dir.path().join("raft.redb");
        let len = std::fs::metadata(&path).unwrap().len();
        std::fs::write(&path, vec![0xAB; len as usize]).unwrap();
        let err = LogStore::open(dir.path()).unwrap_err();
        let text = err.to_string();
        assert!(text.contains(&path.display().to_string()) && text.contains("restore"), "{text}");
        assert_eq!(std::fs::read(&path).unwrap(), vec![0xAB; len as usize], "the file is left as it was");
        std::fs::write(&path, b"").unwrap();
        let err = LogStore::open(dir.path()).unwrap_err();
        assert!(err.to_string().contains("empty"), "{err}");
    }
}
