//! Snapshot files: the store as JSON with its Raft metadata, written so that a crash
//! leaves the old file or the new one. Each object's JSON is kept from one snapshot to
//! the next and reused while its version is unchanged, so a snapshot costs the objects
//! written since the last one plus a copy, not a fresh encoding of the whole store.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

use openraft::type_config::alias::SnapshotMetaOf;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::value::RawValue;

use super::types::TypeConfig;
use crate::store::{Kind, Store};

type Meta = SnapshotMetaOf<TypeConfig>;

/// What a snapshot file holds, as read back.
#[derive(Serialize, Deserialize)]
pub(crate) struct SnapshotFile {
    pub(crate) meta: Meta,
    pub(crate) store: Store,
}

/// One object's JSON at one version.
struct Encoded {
    version: u64,
    json: Box<RawValue>,
}

impl Serialize for Encoded {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.json.serialize(s)
    }
}

type Objects = BTreeMap<Kind, BTreeMap<String, Encoded>>;

/// The JSON of every object in the last snapshot.
#[derive(Default)]
pub(crate) struct Encoder {
    last: Objects,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let count: usize = self.last.values().map(BTreeMap::len).sum();
        f.debug_struct("Encoder").field("objects", &count).finish()
    }
}

/// Laid out as [`SnapshotFile`] is, with the objects' kept JSON.
#[derive(Serialize)]
struct FileView<'a> {
    meta: &'a Meta,
    store: StoreView<'a>,
}

/// Laid out as [`Store`] serializes.
#[derive(Serialize)]
struct StoreView<'a> {
    objects: &'a Objects,
    last_index: u64,
}

impl Encoder {
    /// The snapshot file of `store` at `meta`.
    pub(crate) fn encode(&mut self, meta: &Meta, store: &Store) -> io::Result<Vec<u8>> {
        let mut next = Objects::new();
        for o in store.objects() {
            let (kind, id, version) = (o.kind(), o.id(), o.meta().version);
            let kept = self.last.get_mut(&kind).and_then(|m| m.remove(id)).filter(|e| e.version == version);
            let encoded = match kept {
                Some(e) => e,
                None => Encoded {
                    version,
                    json: serde_json::value::to_raw_value(o.as_ref()).map_err(io::Error::other)?,
                },
            };
            next.entry(kind).or_default().insert(id.to_owned(), encoded);
        }
        self.last = next;
        let view =
            FileView { meta, store: StoreView { objects: &self.last, last_index: store.last_index() } };
        serde_json::to_vec(&view).map_err(io::Error::other)
    }
}

/// Reads a snapshot file's bytes.
pub(crate) fn decode(bytes: &[u8]) -> Result<SnapshotFile, serde_json::Error> {
    let mut file: SnapshotFile = serde_json::from_slice(bytes)?;
    file.store.reindex();
    Ok(file)
}

/// How much of a snapshot file is written back to disk at a time.
const WRITEBACK_CHUNK: usize = 1 << 20;

/// Writes `bytes` durably to `tmp`, to be put in place with [`replace`]; together they
/// leave either the old file or the new one after a crash. The file goes to disk a
/// chunk at a time: a log commit's fsync waits for the disk's queue, and would
/// otherwise wait behind the whole file (up to tens of ms for a large store).
pub(crate) fn write_temp(tmp: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    use std::os::fd::AsRawFd;
    let mut f = std::fs::File::create(tmp)?;
    for (i, chunk) in bytes.chunks(WRITEBACK_CHUNK).enumerate() {
        f.write_all(chunk)?;
        let flags = libc::SYNC_FILE_RANGE_WAIT_BEFORE
            | libc::SYNC_FILE_RANGE_WRITE
            | libc::SYNC_FILE_RANGE_WAIT_AFTER;
        // SAFETY: the descriptor is open for the whole call and the range lies in the
        // file; the call only starts and waits for writeback (a failure is caught by
        // the fsync below).
        unsafe {
            libc::sync_file_range(f.as_raw_fd(), (i * WRITEBACK_CHUNK) as i64, chunk.len() as i64, flags)
        };
    }
    f.sync_all()
}

/// Puts `tmp` (written by [`write_temp`]) in place of `path`: rename, fsync of the
/// directory.
pub(crate) fn replace(tmp: &Path, path: &Path) -> io::Result<()> {
    std::fs::rename(tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use openraft::StoredMembership;
    use shoal_api::service::{Service, ServiceSpec};

    use super::*;
    use crate::store::{Change, Object, Transaction};

    fn service(id: &str, name: &str) -> Object {
        Object::Service(Service {
            id: id.into(),
            meta: shoal_api::Meta::new(chrono::Utc::now()),
            spec: ServiceSpec::new(name, "busybox"),
            previous_spec: None,
            update_status: None,
            endpoint: Default::default(),
        })
    }

    fn meta(index: u64) -> Meta {
        Meta {
            last_log_id: Some(openraft::testing::log_id::<TypeConfig>(1, 1, index)),
            last_membership: StoredMembership::default(),
        }
    }

    #[test]
    fn kept_json_is_reused_only_while_the_version_holds() {
        let mut store = Store::new();
        let create = |o| Transaction { changes: vec![Change::Create { object: o }] };
        store.apply(1, &create(service("a", "web"))).unwrap();
        store.apply(2, &create(service("b", "db"))).unwrap();
        let mut enc = Encoder::default();
        let first = enc.encode(&meta(2), &store).unwrap();
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&first).unwrap(),
            serde_json::to_value(SnapshotFile { meta: meta(2), store: store.clone() }).unwrap(),
            "the same document as the derived encoding"
        );
        let Some(Object::Service(mut a)) = store.get(Kind::Service, "a").cloned() else { panic!() };
        a.spec.labels.insert("tier".into(), "front".into());
        let update = Change::Update { object: Object::Service(a), expected_version: 1 };
        store.apply(3, &Transaction { changes: vec![update] }).unwrap();
        store
            .apply(
                4,
                &Transaction {
                    changes: vec![Change::Delete {
                        kind: Kind::Service,
                        id: "b".into(),
                        expected_version: None,
                    }],
                },
            )
            .unwrap();
        let second = enc.encode(&meta(4), &store).unwrap();
        let back = decode(&second).unwrap();
        assert_eq!(back.store, store, "the update is in, the deleted object is gone");
        assert_eq!(back.meta, meta(4));
    }
}
