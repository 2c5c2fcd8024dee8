//! Snapshot files: the store as JSON with its Raft metadata, written so that a crash
//! leaves the old file or the new one. Each object's JSON is kept from one snapshot to
//! the next and reused while the object is unchanged, so a snapshot costs the objects
//! written since the last one plus a copy, not a fresh encoding of the whole store.
//!
//! On disk the file is sealed whole with the manager's data key ([`seal_file`]): it is
//! written and read whole anyway, and costs one pass of the cipher (about 1 GB/s).
//! What openraft sends to other managers is the plain JSON (each manager has its own
//! key; the transport protects it on the way).

use std::io;
use std::path::Path;
use std::sync::Arc;

use openraft::type_config::alias::SnapshotMetaOf;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::seal::Sealer;
use super::types::TypeConfig;
use crate::store::{Object, Store};

type Meta = SnapshotMetaOf<TypeConfig>;

/// What a snapshot file holds, as read back.
#[derive(Serialize, Deserialize)]
pub(crate) struct SnapshotFile {
    pub(crate) meta: Meta,
    pub(crate) store: Store,
}

/// One object as the last snapshot held it, with its JSON. The store replaces an
/// object's `Arc` whenever it changes, so the same `Arc` means the same JSON.
struct Kept {
    object: Arc<Object>,
    json: Box<RawValue>,
}

/// The JSON of every object in the last snapshot, in the store's order (kind, id).
#[derive(Default)]
pub(crate) struct Encoder {
    last: Vec<Kept>,
    /// The size of the last file, to size the next one's buffer.
    last_len: usize,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder").field("objects", &self.last.len()).finish()
    }
}

impl Encoder {
    /// The snapshot file of `store` at `meta`, laid out as [`SnapshotFile`] serializes.
    /// The store and the kept objects are both in (kind, id) order, so one walk over
    /// both finds what can be reused.
    pub(crate) fn encode(&mut self, meta: &Meta, store: &Store) -> io::Result<Vec<u8>> {
        let mut kept = std::mem::take(&mut self.last).into_iter().peekable();
        let mut next = Vec::with_capacity(kept.len() + kept.len() / 8);
        let mut out = Vec::with_capacity(self.last_len + self.last_len / 8 + 4096);
        out.extend_from_slice(b"{\"meta\":");
        serde_json::to_writer(&mut out, meta).map_err(io::Error::other)?;
        out.extend_from_slice(b",\"store\":{\"objects\":{");
        let mut kind = None;
        for o in store.objects() {
            let key = (o.kind(), o.id());
            while kept.next_if(|k| (k.object.kind(), k.object.id()) < key).is_some() {}
            let json = match kept.next_if(|k| Arc::ptr_eq(&k.object, o)) {
                Some(k) => k.json,
                None => serde_json::value::to_raw_value(o.as_ref()).map_err(io::Error::other)?,
            };
            if kind != Some(key.0) {
                if kind.is_some() {
                    out.extend_from_slice(b"},");
                }
                serde_json::to_writer(&mut out, &key.0).map_err(io::Error::other)?;
                out.extend_from_slice(b":{");
                kind = Some(key.0);
            } else {
                out.push(b',');
            }
            serde_json::to_writer(&mut out, key.1).map_err(io::Error::other)?;
            out.push(b':');
            out.extend_from_slice(json.get().as_bytes());
            next.push(Kept { object: o.clone(), json });
        }
        if kind.is_some() {
            out.push(b'}');
        }
        out.extend_from_slice(b"},\"last_index\":");
        out.extend_from_slice(store.last_index().to_string().as_bytes());
        out.extend_from_slice(b"}}");
        self.last = next;
        self.last_len = out.len();
        Ok(out)
    }
}

/// Reads a snapshot file's bytes.
pub(crate) fn decode(bytes: &[u8]) -> Result<SnapshotFile, serde_json::Error> {
    let mut file: SnapshotFile = serde_json::from_slice(bytes)?;
    file.store.reindex();
    Ok(file)
}

/// The first bytes of a sealed snapshot file; the sealed JSON follows.
const SEALED_MAGIC: &[u8] = b"shoal sealed snapshot 1\n";
/// What a snapshot's sealing is bound to.
const SNAPSHOT_AAD: &[u8] = b"raft snapshot";

/// The file that holds the snapshot `json`.
pub(crate) fn seal_file(sealer: &Sealer, json: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(SEALED_MAGIC.len() + super::seal::OVERHEAD + json.len());
    out.extend_from_slice(SEALED_MAGIC);
    sealer.seal_into(SNAPSHOT_AAD, json, &mut out);
    out
}

/// The JSON held by a snapshot file written by [`seal_file`].
pub(crate) fn open_file(sealer: &Sealer, file: &[u8]) -> io::Result<Vec<u8>> {
    let sealed = file.strip_prefix(SEALED_MAGIC).ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidData, "it is not a sealed snapshot (its first bytes are wrong)")
    })?;
    sealer.open(SNAPSHOT_AAD, sealed).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
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
    use crate::store::{Change, Kind, Object, Transaction};

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
        store.apply(1, create(service("a", "web"))).unwrap();
        store.apply(2, create(service("b", "db"))).unwrap();
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
        store.apply(3, Transaction { changes: vec![update] }).unwrap();
        store
            .apply(
                4,
                Transaction {
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
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&second).unwrap(),
            serde_json::to_value(SnapshotFile { meta: meta(4), store: store.clone() }).unwrap(),
        );
    }

    #[test]
    fn an_empty_store_and_one_of_several_kinds_encode_as_derived() {
        let mut enc = Encoder::default();
        let empty = enc.encode(&meta(0), &Store::new()).unwrap();
        assert_eq!(decode(&empty).unwrap().store, Store::new());
        let mut store = Store::new();
        store
            .apply(1, Transaction { changes: vec![Change::Create { object: service("a", "web") }] })
            .unwrap();
        let config = Object::Config(shoal_api::secret::Config {
            id: "c".into(),
            meta: shoal_api::Meta::new(chrono::Utc::now()),
            spec: shoal_api::secret::PayloadSpec {
                name: "conf".into(),
                labels: Default::default(),
                data: b"x".to_vec(),
            },
        });
        store.apply(2, Transaction { changes: vec![Change::Create { object: config }] }).unwrap();
        for _ in 0..2 {
            let bytes = enc.encode(&meta(2), &store).unwrap();
            assert_eq!(
                serde_json::from_slice::<serde_json::Value>(&bytes).unwrap(),
                serde_json::to_value(SnapshotFile { meta: meta(2), store: store.clone() }).unwrap(),
            );
        }
    }
}
