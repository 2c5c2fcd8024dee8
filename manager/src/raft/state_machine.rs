//! The Raft state machine: the [`Store`] in memory, applied entry by entry, with its
//! events published; snapshots are the store serialized, built from a copy taken under
//! a short read lock (off the apply path), kept on disk, and installed atomically.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use futures::{Stream, TryStreamExt};
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::type_config::alias::{LogIdOf, SnapshotMetaOf, SnapshotOf, StoredMembershipOf};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder, StoredMembership};
use serde::{Deserialize, Serialize};

use super::types::{Applied, TypeConfig};
use crate::store::{EventLog, Store};

type C = TypeConfig;

/// What a snapshot file holds.
#[derive(Serialize, Deserialize)]
struct SnapshotFile {
    meta: SnapshotMetaOf<C>,
    store: Store,
}

/// State shared by the state machine, its snapshot builders and the manager's readers.
#[derive(Debug)]
pub struct Shared {
    store: RwLock<Store>,
    applied: RwLock<(Option<LogIdOf<C>>, StoredMembershipOf<C>)>,
    events: EventLog,
    snapshot_path: PathBuf,
    /// Serializes snapshot writes (builds and installs run concurrently) and remembers
    /// the index of the snapshot on disk, so an older one never replaces a newer one.
    snapshot_lock: std::sync::Mutex<Option<u64>>,
}

impl Shared {
    /// Runs `f` with a consistent view of the store.
    pub fn read<T>(&self, f: impl FnOnce(&Store) -> T) -> T {
        f(&self.store.read().expect("store lock"))
    }

    /// Checks a transaction against the current state (applied and undone under the
    /// write lock; see [`Store::check`]).
    pub fn check(&self, tx: &crate::store::Transaction) -> Result<(), crate::store::StoreError> {
        self.store.write().expect("store lock").check(tx)
    }

    /// The event log (for watchers).
    pub fn events(&self) -> &EventLog {
        &self.events
    }

    /// The last applied log id.
    pub fn last_applied(&self) -> Option<LogIdOf<C>> {
        self.applied.read().expect("applied lock").0
    }
}

/// The state machine handed to openraft; clones share the state.
#[derive(Debug, Clone)]
pub struct StateMachine {
    shared: Arc<Shared>,
}

/// How many events the ring keeps for watchers resuming from an index.
pub const EVENT_RING: usize = 10_000;

impl StateMachine {
    /// A state machine whose snapshots live in `dir`; restores the last one found.
    pub fn open(dir: &Path) -> io::Result<StateMachine> {
        std::fs::create_dir_all(dir)?;
        let snapshot_path = dir.join("snapshot.json");
        let (store, applied) = match std::fs::read(&snapshot_path) {
            Ok(bytes) => {
                let file: SnapshotFile = serde_json::from_slice(&bytes).map_err(|e| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{} is damaged ({e}): move it away; the state comes back from the log and the other managers", snapshot_path.display()),
                    )
                })?;
                let mut store = file.store;
                store.reindex();
                (store, (file.meta.last_log_id, file.meta.last_membership.clone()))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                (Store::new(), (None, StoredMembership::default()))
            }
            Err(e) => return Err(e),
        };
        let events = EventLog::new(EVENT_RING);
        if let Some(id) = &applied.0 {
            events.reset(id.index);
        }
        Ok(StateMachine {
            shared: Arc::new(Shared {
                store: RwLock::new(store),
                snapshot_lock: std::sync::Mutex::new(applied.0.map(|l| l.index)),
                applied: RwLock::new(applied),
                events,
                snapshot_path,
            }),
        })
    }

    /// Replaces the stored membership (recovery only).
    pub fn set_membership(&self, m: StoredMembershipOf<C>) {
        self.shared.applied.write().expect("applied lock").1 = m;
    }

    /// The shared state, for readers.
    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// Writes `file` as the current snapshot unless a newer one is on disk already;
    /// returns the bytes of the snapshot now current.
    fn write_snapshot(&self, file: &SnapshotFile) -> io::Result<Vec<u8>> {
        let mut on_disk = self.shared.snapshot_lock.lock().expect("snapshot lock");
        let index = file.meta.last_log_id.map(|l| l.index);
        if on_disk.is_some() && index < *on_disk {
            return std::fs::read(&self.shared.snapshot_path);
        }
        let bytes = serde_json::to_vec(file).map_err(io::Error::other)?;
        write_durably(&self.shared.snapshot_path, &bytes)?;
        *on_disk = index;
        Ok(bytes)
    }
}

/// Writes `bytes` to `path` so that a crash leaves either the old file or the new one:
/// a temporary file, fsync, rename, fsync of the directory.
fn write_durably(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

impl RaftSnapshotBuilder<C> for StateMachine {
    type SnapshotData = Vec<u8>;

    async fn build_snapshot(&mut self) -> Result<SnapshotOf<C, Vec<u8>>, io::Error> {
        // Copy under the read lock; serialize and write without it.
        let (store, applied) = {
            let store = self.shared.store.read().expect("store lock");
            let applied = self.shared.applied.read().expect("applied lock");
            (store.clone(), applied.clone())
        };
        let meta = SnapshotMetaOf::<C> { last_log_id: applied.0, last_membership: applied.1 };
        let file = SnapshotFile { meta: meta.clone(), store };
        let this = self.clone();
        let bytes = tokio::task::spawn_blocking(move || this.write_snapshot(&file))
            .await
            .map_err(io::Error::other)??;
        // A newer snapshot (installed meanwhile) may be the current one: describe it.
        let current: SnapshotFile = serde_json::from_slice(&bytes).map_err(io::Error::other)?;
        let meta = if current.meta.last_log_id > meta.last_log_id { current.meta } else { meta };
        Ok(SnapshotOf::<C, Vec<u8>> { meta, snapshot: bytes })
    }
}

impl RaftStateMachine<C> for StateMachine {
    type SnapshotData = Vec<u8>;
    type SnapshotBuilder = StateMachine;

    async fn applied_state(&mut self) -> Result<(Option<LogIdOf<C>>, StoredMembershipOf<C>), io::Error> {
        Ok(self.shared.applied.read().expect("applied lock").clone())
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<C>, io::Error>> + Unpin + OptionalSend,
    {
        while let Some((entry, responder)) = entries.try_next().await? {
            let index = entry.log_id.index;
            let mut response = Applied { index, error: None };
            match &entry.payload {
                EntryPayload::Blank => {}
                EntryPayload::Normal(tx) => {
                    let result = self.shared.store.write().expect("store lock").apply(index, tx);
                    match result {
                        Ok(events) => self.shared.events.publish(events),
                        Err(e) => response.error = Some(e),
                    }
                }
                EntryPayload::Membership(m) => {
                    self.shared.applied.write().expect("applied lock").1 =
                        StoredMembership::new(Some(entry.log_id), m.clone());
                }
            }
            self.shared.applied.write().expect("applied lock").0 = Some(entry.log_id);
            if let Some(r) = responder {
                r.send(response);
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMetaOf<C>,
        snapshot: Vec<u8>,
    ) -> Result<(), io::Error> {
        let file: SnapshotFile = serde_json::from_slice(&snapshot).map_err(|e| {
            io::Error::new(io::ErrorKind::InvalidData, format!("received snapshot is damaged: {e}"))
        })?;
        let mut store = file.store;
        store.reindex();
        // On disk first: a crash after this restores the new state, never half of it.
        let this = self.clone();
        let to_disk = SnapshotFile { meta: meta.clone(), store: store.clone() };
        tokio::task::spawn_blocking(move || this.write_snapshot(&to_disk))
            .await
            .map_err(io::Error::other)??;
        {
            let mut s = self.shared.store.write().expect("store lock");
            let mut a = self.shared.applied.write().expect("applied lock");
            *s = store;
            *a = (meta.last_log_id, meta.last_membership.clone());
        }
        self.shared.events.reset(meta.last_log_id.as_ref().map_or(0, |l| l.index));
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<SnapshotOf<C, Vec<u8>>>, io::Error> {
        match std::fs::read(&self.shared.snapshot_path) {
            Ok(bytes) => {
                let file: SnapshotFile = serde_json::from_slice(&bytes).map_err(|e| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{}: {e}", self.shared.snapshot_path.display()),
                    )
                })?;
                Ok(Some(SnapshotOf::<C, Vec<u8>> { meta: file.meta, snapshot: bytes }))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}
