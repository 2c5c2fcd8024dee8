//! The Raft state machine: the [`Store`] in memory, applied entry by entry, with its
//! events published; snapshots are the store serialized (see [`super::snapshot`]),
//! built from a copy taken under a short read lock (off the apply path), kept on disk,
//! and installed atomically. It also says when the next snapshot is due
//! ([`SnapshotPolicy`]). The file on disk is sealed ([`snapshot::seal_file`]); a
//! plain `snapshot.json` left by an older Shoal is sealed the first time it is opened.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::{Stream, TryStreamExt};
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::type_config::alias::{LogIdOf, SnapshotMetaOf, SnapshotOf, StoredMembershipOf};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder, StoredMembership};

use super::seal::Sealer;
use super::snapshot::{self, Encoder};
use super::spare_cpu;
use super::types::{Applied, TypeConfig};
use crate::store::{EventLog, Indexes, Kind, Store};

type C = TypeConfig;

/// When a snapshot is due: once `entries` were applied since the last one **and** the
/// log written since is at least `log_to_snapshot` times that snapshot's size.
///
/// Swarm snapshots every 10000 entries whatever the store's size; a snapshot writes
/// the whole store, so with a large store most of a manager's work went into
/// rewriting objects that had not changed. Weighing the log against the last
/// snapshot (the Raft thesis, §5.1.1) bounds that work by the log's own size, while a
/// small store still snapshots every `entries`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SnapshotPolicy {
    /// The fewest entries between snapshots. Default 10000 (Swarm's).
    pub entries: u64,
    /// How large the log since the last snapshot must grow, as a multiple of that
    /// snapshot's size (0: count entries only). Default 1.
    pub log_to_snapshot: f64,
}

impl Default for SnapshotPolicy {
    fn default() -> SnapshotPolicy {
        SnapshotPolicy { entries: 10_000, log_to_snapshot: 1.0 }
    }
}

/// What was applied since the last snapshot, and whether one was asked for.
#[derive(Debug, Default)]
struct SinceSnapshot {
    entries: AtomicU64,
    /// The log bytes (transactions' JSON) of those entries.
    bytes: AtomicU64,
    /// The size of the last snapshot file.
    snapshot_bytes: AtomicU64,
    /// A snapshot was asked for and its build has not started yet.
    asked: AtomicBool,
}

/// State shared by the state machine, its snapshot builders and the manager's readers.
#[derive(Debug)]
pub struct Shared {
    store: RwLock<Store>,
    applied: RwLock<(Option<LogIdOf<C>>, StoredMembershipOf<C>)>,
    events: EventLog,
    snapshot_path: PathBuf,
    /// Seals and opens the snapshot file.
    sealer: Sealer,
    /// What the snapshot on disk covers (none yet: no file). Held only to put a new
    /// file in place or to read the current one; an older snapshot never replaces a
    /// newer one (builds and installs run concurrently).
    on_disk: std::sync::Mutex<Option<SnapshotMetaOf<C>>>,
    /// Objects' JSON kept from the last snapshot built.
    encoder: std::sync::Mutex<Encoder>,
    policy: SnapshotPolicy,
    since: SinceSnapshot,
    /// Told when a snapshot is due (see [`Shared::snapshot_due`]).
    due: tokio::sync::watch::Sender<()>,
    /// The store's per-kind indexes, sent after each change (blocking queries wait
    /// on it).
    indexes: tokio::sync::watch::Sender<Indexes>,
    /// Per kind (in [`Kind::ALL`]'s order), its index, sent only when it changes: a
    /// watcher of one kind is not woken by every write.
    kind_indexes: Vec<tokio::sync::watch::Sender<u64>>,
    /// The manager's counters and histograms (snapshot builds are timed here).
    instruments: crate::instruments::Instruments,
}

impl Shared {
    /// Runs `f` with a consistent view of the store.
    pub fn read<T>(&self, f: impl FnOnce(&Store) -> T) -> T {
        f(&self.store.read().expect("store lock"))
    }

    /// Checks a transaction against the current state: one change under the read lock
    /// (proposals do not queue behind each other), several applied and undone under the
    /// write lock (see [`Store::check`]).
    pub fn check(&self, tx: &crate::store::Transaction) -> Result<(), crate::store::StoreError> {
        if let Some(result) = self.store.read().expect("store lock").check_one(tx) {
            return result;
        }
        self.store.write().expect("store lock").check(tx)
    }

    /// The store's per-kind indexes, updated after every applied change and every
    /// snapshot installed.
    pub fn indexes(&self) -> tokio::sync::watch::Receiver<Indexes> {
        self.indexes.subscribe()
    }

    /// The index of `kind` alone, told only when an object of that kind changed (or a
    /// snapshot was installed).
    pub fn kind_index(&self, kind: Kind) -> tokio::sync::watch::Receiver<u64> {
        self.kind_indexes[Indexes::slot(kind)].subscribe()
    }

    /// Tells the watchers of the indexes, and of each kind that changed.
    fn publish_indexes(&self, now: Indexes) {
        let before = self.indexes.send_replace(now);
        for (kind, index) in now.changed_since(&before) {
            self.kind_indexes[Indexes::slot(kind)].send_replace(index);
        }
    }

    /// The event log (for watchers).
    pub fn events(&self) -> &EventLog {
        &self.events
    }

    /// The manager's counters and histograms.
    pub fn instruments(&self) -> &crate::instruments::Instruments {
        &self.instruments
    }

    /// The last applied log id.
    pub fn last_applied(&self) -> Option<LogIdOf<C>> {
        self.applied.read().expect("applied lock").0
    }

    /// Told each time a snapshot becomes due by the [`SnapshotPolicy`]; the manager
    /// then asks Raft for one, and asks again while [`Shared::snapshot_asked`] holds.
    /// Closes with the state machine.
    pub fn snapshot_due(&self) -> tokio::sync::watch::Receiver<()> {
        self.due.subscribe()
    }

    /// The size of the last snapshot, as encoded.
    pub fn snapshot_bytes(&self) -> u64 {
        self.since.snapshot_bytes.load(Ordering::Relaxed)
    }

    /// Whether a snapshot is due and no build has started since it was asked for.
    pub fn snapshot_asked(&self) -> bool {
        self.since.asked.load(Ordering::Relaxed)
    }

    /// Counts an applied entry of `bytes` and asks for a snapshot once one is due.
    /// Called under the store's write lock, as the copy for a snapshot is taken under
    /// its read lock: the counts always pair with the copy.
    fn count_applied(&self, bytes: u64) {
        let since = &self.since;
        let entries = since.entries.fetch_add(1, Ordering::Relaxed) + 1;
        let bytes = since.bytes.fetch_add(bytes, Ordering::Relaxed) + bytes;
        let snapshot = since.snapshot_bytes.load(Ordering::Relaxed) as f64;
        if entries >= self.policy.entries
            && bytes as f64 >= snapshot * self.policy.log_to_snapshot
            && !since.asked.swap(true, Ordering::Relaxed)
        {
            self.due.send_replace(());
        }
    }

    /// The store is being snapshotted, or was replaced by a snapshot: counting starts
    /// over (the snapshot's size is recorded once its file is written).
    fn counted_snapshot(&self) {
        self.since.entries.store(0, Ordering::Relaxed);
        self.since.bytes.store(0, Ordering::Relaxed);
        self.since.asked.store(false, Ordering::Relaxed);
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
    /// A state machine whose snapshots live in `dir`, sealed by `sealer`, taken by
    /// `policy`; restores the last one found.
    pub fn open(dir: &Path, policy: SnapshotPolicy, sealer: Sealer) -> io::Result<StateMachine> {
        std::fs::create_dir_all(dir)?;
        let snapshot_path = dir.join("snapshot.sealed");
        seal_plain_snapshot(dir, &snapshot_path, &sealer)?;
        let mut snapshot_bytes = 0;
        let damaged = |e: &dyn std::fmt::Display| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} is damaged or sealed with another key ({e}): move it away; the state comes back \
                     from the log and the other managers",
                    snapshot_path.display()
                ),
            )
        };
        let (store, applied, meta) = match std::fs::read(&snapshot_path) {
            Ok(file) => {
                let bytes = snapshot::open_file(&sealer, &file).map_err(|e| damaged(&e))?;
                let file = snapshot::decode(&bytes).map_err(|e| damaged(&e))?;
                let applied = (file.meta.last_log_id, file.meta.last_membership.clone());
                snapshot_bytes = bytes.len() as u64;
                (file.store, applied, Some(file.meta))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                (Store::new(), (None, StoredMembership::default()), None)
            }
            Err(e) => return Err(e),
        };
        let events = EventLog::new(EVENT_RING);
        let indexes = tokio::sync::watch::Sender::new(store.indexes());
        let kind_indexes =
            Kind::ALL.iter().map(|k| tokio::sync::watch::Sender::new(store.indexes().of(&[*k]))).collect();
        if let Some(id) = &applied.0 {
            events.reset(id.index);
        }
        Ok(StateMachine {
            shared: Arc::new(Shared {
                store: RwLock::new(store),
                on_disk: std::sync::Mutex::new(meta),
                encoder: std::sync::Mutex::default(),
                applied: RwLock::new(applied),
                events,
                snapshot_path,
                sealer,
                policy,
                since: SinceSnapshot { snapshot_bytes: snapshot_bytes.into(), ..Default::default() },
                due: tokio::sync::watch::Sender::new(()),
                indexes,
                kind_indexes,
                instruments: Default::default(),
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

    /// Makes the snapshot at `meta` current unless a newer one is on disk; `file`
    /// gives its bytes, and `tmp` names the temporary file (one per kind of writer).
    /// Returns the snapshot now current. Encoding and writing happen outside the lock
    /// that readers of the current snapshot take.
    fn keep_snapshot(
        &self,
        meta: SnapshotMetaOf<C>,
        tmp: &str,
        file: impl FnOnce() -> io::Result<Vec<u8>>,
    ) -> io::Result<SnapshotOf<C, Vec<u8>>> {
        let path = &self.shared.snapshot_path;
        let bytes = file()?;
        let tmp = path.with_extension(tmp);
        snapshot::write_temp(&tmp, &snapshot::seal_file(&self.shared.sealer, &bytes))?;
        let mut on_disk = self.shared.on_disk.lock().expect("snapshot lock");
        if let Some(newer) = on_disk.as_ref().filter(|m| m.last_log_id > meta.last_log_id) {
            let _ = std::fs::remove_file(&tmp);
            let snapshot = self.shared.read_snapshot()?;
            return Ok(SnapshotOf::<C, Vec<u8>> { meta: newer.clone(), snapshot });
        }
        snapshot::replace(&tmp, path)?;
        *on_disk = Some(meta.clone());
        self.shared.since.snapshot_bytes.store(bytes.len() as u64, Ordering::Relaxed);
        Ok(SnapshotOf::<C, Vec<u8>> { meta, snapshot: bytes })
    }
}

impl Shared {
    /// The JSON of the snapshot file on disk.
    fn read_snapshot(&self) -> io::Result<Vec<u8>> {
        snapshot::open_file(&self.sealer, &std::fs::read(&self.snapshot_path)?)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", self.snapshot_path.display())))
    }
}

/// Seals a plain `snapshot.json` (written before snapshots were sealed) into `sealed`
/// and removes it; a crash in between leaves both, and the next open finishes.
fn seal_plain_snapshot(dir: &Path, sealed: &Path, sealer: &Sealer) -> io::Result<()> {
    let plain = dir.join("snapshot.json");
    let json = match std::fs::read(&plain) {
        Ok(json) => json,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !sealed.exists() {
        snapshot::decode(&json).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} is damaged ({e}): move it away", plain.display()),
            )
        })?;
        let tmp = sealed.with_extension("tmp-seal");
        snapshot::write_temp(&tmp, &snapshot::seal_file(sealer, &json))?;
        snapshot::replace(&tmp, sealed)?;
    }
    std::fs::remove_file(&plain)?;
    std::fs::File::open(dir)?.sync_all()
}

/// The CPU time the calling thread has used (user and system); zero if the clock
/// cannot be read. A snapshot's log line gives it beside the time taken: on a busy
/// machine, the build on spare CPU waits far longer than it works.
fn thread_cpu() -> Duration {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `t` is a valid timespec for the call to write; the clock id is a constant
    // Linux knows.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) } != 0 {
        return Duration::ZERO;
    }
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

impl RaftSnapshotBuilder<C> for StateMachine {
    type SnapshotData = Vec<u8>;

    async fn build_snapshot(&mut self) -> Result<SnapshotOf<C, Vec<u8>>, io::Error> {
        // Copy under the read lock; serialize and write without it.
        let (store, applied) = {
            let store = self.shared.store.read().expect("store lock");
            let applied = self.shared.applied.read().expect("applied lock");
            self.shared.counted_snapshot();
            (store.objects_only(), applied.clone())
        };
        let meta = SnapshotMetaOf::<C> { last_log_id: applied.0, last_membership: applied.1 };
        let this = self.clone();
        // On a thread of its own, on spare CPU: a build takes longer when the machine is
        // busy, but writes and replies do not queue behind it.
        spare_cpu::run("raft-snapshot", spare_cpu::RAISE_AFTER, move || {
            // A newer snapshot (installed meanwhile) may be the current one then.
            let (started, cpu) = (std::time::Instant::now(), thread_cpu());
            let encode = || this.shared.encoder.lock().expect("encoder lock").encode(&meta, &store);
            let kept = this.keep_snapshot(meta.clone(), "tmp-build", encode);
            if let Ok(s) = &kept {
                this.shared.instruments.snapshot_duration.observe(started.elapsed().as_secs_f64());
                tracing::info!(
                    index = s.meta.last_log_id.map_or(0, |l| l.index),
                    bytes = s.snapshot.len(),
                    took_ms = started.elapsed().as_millis() as u64,
                    cpu_ms = thread_cpu().saturating_sub(cpu).as_millis() as u64,
                    "snapshot built"
                );
            }
            kept
        })
        .await?
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
            let mut events = None;
            // Taken before the store's lock: a leader's entry hands over the transaction
            // it decoded to check the proposal; a follower's is decoded here.
            let tx = match &entry.payload {
                EntryPayload::Normal(p) => Some((p.bytes().len() as u64, p.take_transaction())),
                _ => None,
            };
            {
                // The store and the applied log id change under one lock, so a snapshot
                // copy (taken under the store's read lock) never pairs one with the other's
                // neighbour.
                let mut store = self.shared.store.write().expect("store lock");
                let mut applied = self.shared.applied.write().expect("applied lock");
                let mut bytes = 0;
                if let Some((size, tx)) = tx {
                    bytes = size;
                    match tx.and_then(|tx| store.apply(index, tx)) {
                        Ok(e) => {
                            events = Some(e);
                            self.shared.publish_indexes(store.indexes());
                        }
                        Err(e) => response.error = Some(e),
                    }
                }
                if let EntryPayload::Membership(m) = &entry.payload {
                    applied.1 = StoredMembership::new(Some(entry.log_id), m.clone());
                }
                applied.0 = Some(entry.log_id);
                self.shared.count_applied(bytes);
            }
            if let Some(events) = events {
                self.shared.events.publish(events);
            }
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
        let started = std::time::Instant::now();
        // Decoded and put on disk on a thread of its own: the decode alone takes about
        // half a second of CPU at 100,000 tasks, which would hold up a runtime worker.
        // On disk first: a crash after this restores the new state, never half of it.
        // The bytes received are kept as they are when they describe themselves rightly.
        let this = self.clone();
        let disk_meta = meta.clone();
        let (store, cpu) = tokio::task::spawn_blocking(move || -> io::Result<(Store, Duration)> {
            let cpu = thread_cpu();
            let file = snapshot::decode(&snapshot).map_err(|e| {
                io::Error::new(io::ErrorKind::InvalidData, format!("received snapshot is damaged: {e}"))
            })?;
            // Only a file that must be encoded again needs a copy of the objects.
            let to_disk = (file.meta != disk_meta).then(|| file.store.objects_only());
            this.keep_snapshot(disk_meta.clone(), "tmp-install", || match &to_disk {
                None => Ok(snapshot),
                Some(objects) => {
                    this.shared.encoder.lock().expect("encoder lock").encode(&disk_meta, objects)
                }
            })?;
            Ok((file.store, thread_cpu().saturating_sub(cpu)))
        })
        .await
        .map_err(io::Error::other)??;
        let old = {
            let mut s = self.shared.store.write().expect("store lock");
            let mut a = self.shared.applied.write().expect("applied lock");
            let old = std::mem::replace(&mut *s, store);
            *a = (meta.last_log_id, meta.last_membership.clone());
            self.shared.publish_indexes(s.indexes());
            self.shared.counted_snapshot();
            old
        };
        // Freeing 100,000 objects takes a tenth of a second: not under the locks.
        drop(old);
        self.shared.events.reset(meta.last_log_id.as_ref().map_or(0, |l| l.index));
        self.shared.instruments.snapshot_install_duration.observe(started.elapsed().as_secs_f64());
        tracing::info!(
            index = meta.last_log_id.as_ref().map_or(0, |l| l.index),
            took_ms = started.elapsed().as_millis() as u64,
            cpu_ms = cpu.as_millis() as u64,
            "snapshot installed"
        );
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<SnapshotOf<C, Vec<u8>>>, io::Error> {
        // Under the lock: a file put in place meanwhile cannot pair with the old meta.
        let on_disk = self.shared.on_disk.lock().expect("snapshot lock");
        let Some(meta) = on_disk.clone() else { return Ok(None) };
        let snapshot = self.shared.read_snapshot()?;
        Ok(Some(SnapshotOf::<C, Vec<u8>> { meta, snapshot }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::seal::Key;
    use crate::store::{Change, Object, Transaction};

    fn config(data: &[u8]) -> Object {
        Object::Config(shoal_api::secret::Config {
            id: "c1".into(),
            meta: shoal_api::Meta::new(chrono::DateTime::UNIX_EPOCH),
            spec: shoal_api::secret::PayloadSpec {
                name: "conf".into(),
                labels: Default::default(),
                data: data.to_vec(),
            },
        })
    }

    #[test]
    fn a_thread_is_charged_for_its_work_not_its_waits() {
        let before = thread_cpu();
        std::thread::sleep(Duration::from_millis(100));
        let slept = thread_cpu().saturating_sub(before);
        assert!(slept < Duration::from_millis(20), "a sleep of 100 ms charged {slept:?}");
        // Spins until 50 ms are charged; on a busy machine that takes longer.
        let (wall, cpu) = (std::time::Instant::now(), thread_cpu());
        while thread_cpu().saturating_sub(cpu) < Duration::from_millis(50) {
            assert!(wall.elapsed() < Duration::from_secs(10), "10 s of spinning charged nothing");
            std::hint::black_box(());
        }
    }

    #[test]
    fn a_kinds_watchers_are_told_only_of_its_changes() {
        let dir = tempfile::tempdir().unwrap();
        let sm =
            StateMachine::open(dir.path(), SnapshotPolicy::default(), Sealer::new(&Key::random())).unwrap();
        let shared = sm.shared();
        let (mut configs, clusters, mut all) =
            (shared.kind_index(Kind::Config), shared.kind_index(Kind::Cluster), shared.indexes());
        let mut store = Store::new();
        store.apply(7, Transaction { changes: vec![Change::Create { object: config(b"x") }] }).unwrap();
        shared.publish_indexes(store.indexes());
        assert!(configs.has_changed().unwrap() && all.has_changed().unwrap());
        assert_eq!(*configs.borrow_and_update(), 7);
        assert!(!clusters.has_changed().unwrap(), "a config is not the cluster's business");
        all.borrow_and_update();
        // The same indexes again (an entry that changed nothing): nobody is told.
        shared.publish_indexes(store.indexes());
        assert!(!configs.has_changed().unwrap() && !clusters.has_changed().unwrap());
    }

    #[test]
    fn a_plain_snapshot_is_sealed_at_open_and_a_wrong_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::new();
        store
            .apply(1, Transaction { changes: vec![Change::Create { object: config(b"plain-probe-42") }] })
            .unwrap();
        let meta = SnapshotMetaOf::<C> {
            last_log_id: Some(openraft::testing::log_id::<C>(1, 1, 1)),
            last_membership: StoredMembership::default(),
        };
        let json = Encoder::default().encode(&meta, &store).unwrap();
        std::fs::write(dir.path().join("snapshot.json"), &json).unwrap();

        let key = Key::random();
        let sm = StateMachine::open(dir.path(), SnapshotPolicy::default(), Sealer::new(&key)).unwrap();
        assert_eq!(sm.shared().read(|s| s.clone()), store, "the plain snapshot's state is restored");
        assert!(!dir.path().join("snapshot.json").exists(), "the plain file is gone");
        let sealed = std::fs::read(dir.path().join("snapshot.sealed")).unwrap();
        let probe =
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD_NO_PAD, b"plain-probe-42");
        assert!(!sealed.windows(probe.len()).any(|w| w == probe.as_bytes()), "sealed on disk");
        drop(sm);

        // Opened again with its key, then with another.
        let sm = StateMachine::open(dir.path(), SnapshotPolicy::default(), Sealer::new(&key)).unwrap();
        assert_eq!(sm.shared().read(|s| s.clone()), store);
        let err = StateMachine::open(dir.path(), SnapshotPolicy::default(), Sealer::new(&Key::random()))
            .unwrap_err();
        assert!(err.to_string().contains("sealed with another key"), "{err}");
        // A changed byte is refused, never read as garbage.
        let mut bad = sealed.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        std::fs::write(dir.path().join("snapshot.sealed"), &bad).unwrap();
        let err = StateMachine::open(dir.path(), SnapshotPolicy::default(), Sealer::new(&key)).unwrap_err();
        assert!(err.to_string().contains("does not open with this key"), "{err}");
    }
}
