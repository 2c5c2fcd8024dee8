//! The data-path keys of encrypted overlays: made and rotated by the leader, kept on
//! the cluster object in Raft, sent to nodes in their network map.
//!
//! As Swarm: AES-128-GCM keys, a new one every 12 hours, a ring of three. A new key
//! is first only *accepted* by the nodes; it becomes the key they seal with
//! ([`DataPathKeys::primary`]) [`PROMOTE_AFTER`] later, once every node in session
//! has had it. Nodes open with any key of the ring, so neither step loses a packet:
//! a node that seals with the new key is understood by nodes that have not yet heard
//! it is primary, and the previous key is still accepted from nodes that have not yet
//! switched.

use std::time::Duration;

use chrono::{DateTime, Utc};
use shoal_api::cluster::{DataPathKey, DataPathKeys};

use crate::store::{Change, Kind, Object, Store};

/// How long a primary key is used before the next one is made (Swarm's 12 h).
pub const ROTATE_EVERY: Duration = Duration::from_secs(12 * 3600);
/// How long a new key is only accepted before nodes seal with it: the network map
/// reaches every node in session within a second or two.
pub const PROMOTE_AFTER: Duration = Duration::from_secs(30);

/// What to do with the keyring now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing.
    Keep,
    /// Make the first key and seal with it at once (nothing was sealed before).
    First,
    /// Add a new key, accepted but not yet sealed with; drop the oldest beyond three.
    Add,
    /// Seal with the newest key.
    Promote,
}

/// Decides the keyring's next step at `now`.
pub fn decide(keys: &DataPathKeys, now: DateTime<Utc>) -> Verdict {
    let Some(newest) = keys.keys.last() else { return Verdict::First };
    let age = (now - newest.created_at).to_std().unwrap_or_default();
    if newest.id != keys.primary {
        if age >= PROMOTE_AFTER { Verdict::Promote } else { Verdict::Keep }
    } else if age >= ROTATE_EVERY {
        Verdict::Add
    } else {
        Verdict::Keep
    }
}

/// The keyring after `verdict`; `fresh` makes a new random key.
pub fn next(
    keys: &DataPathKeys,
    verdict: &Verdict,
    now: DateTime<Utc>,
    fresh: impl FnOnce() -> Vec<u8>,
) -> DataPathKeys {
    let mut out = keys.clone();
    let new_id = keys.keys.last().map_or(1, |k| k.id.checked_add(1).unwrap_or(1));
    match verdict {
        Verdict::Keep => {}
        Verdict::First => {
            out.keys = vec![DataPathKey { id: new_id, key: fresh(), created_at: now }];
            out.primary = new_id;
        }
        Verdict::Add => {
            out.keys.push(DataPathKey { id: new_id, key: fresh(), created_at: now });
            while out.keys.len() > DataPathKeys::KEEP {
                out.keys.remove(0);
            }
        }
        Verdict::Promote => {
            if let Some(k) = out.keys.last() {
                out.primary = k.id;
            }
        }
    }
    out
}

/// The change to the cluster object the keyring needs at `now`, if any.
pub fn rotate(store: &Store, now: DateTime<Utc>, fresh: impl FnOnce() -> Vec<u8>) -> Vec<Change> {
    let Some(Object::Cluster(cluster)) = store.list(Kind::Cluster).next() else { return Vec::new() };
    let verdict = decide(&cluster.data_path_keys, now);
    if verdict == Verdict::Keep {
        return Vec::new();
    }
    let mut c = cluster.clone();
    c.data_path_keys = next(&cluster.data_path_keys, &verdict, now, fresh);
    c.meta.updated_at = now;
    vec![Change::Update { object: Object::Cluster(c), expected_version: cluster.meta.version }]
}

/// A new random AES-128 key.
pub fn random_key() -> Vec<u8> {
    rand::random::<[u8; DataPathKeys::KEY_LEN]>().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;

    fn counter() -> impl FnMut() -> Vec<u8> {
        let mut n = 0u8;
        move || {
            n += 1;
            vec![n; DataPathKeys::KEY_LEN]
        }
    }

    fn step(keys: &DataPathKeys, now: DateTime<Utc>, fresh: &mut impl FnMut() -> Vec<u8>) -> DataPathKeys {
        next(keys, &decide(keys, now), now, fresh)
    }

    fn secs(s: u64) -> chrono::TimeDelta {
        chrono::TimeDelta::from_std(Duration::from_secs(s)).expect("in range")
    }

    #[test]
    fn the_first_key_is_sealed_with_at_once() {
        let keys = step(&DataPathKeys::default(), t0(), &mut counter());
        assert_eq!(keys.keys.len(), 1);
        assert_eq!(keys.primary, keys.keys[0].id);
        assert_ne!(keys.primary, 0, "0 means no key");
        assert_eq!(decide(&keys, t0() + secs(3600)), Verdict::Keep);
    }

    #[test]
    fn a_new_key_is_accepted_first_and_sealed_with_only_after_the_grace() {
        let mut fresh = counter();
        let first = step(&DataPathKeys::default(), t0(), &mut fresh);
        let at = t0() + secs(ROTATE_EVERY.as_secs());
        let added = step(&first, at, &mut fresh);
        assert_eq!(added.keys.len(), 2);
        assert_eq!(added.primary, first.primary, "still sealing with the old key");
        assert_eq!(decide(&added, at + secs(PROMOTE_AFTER.as_secs() - 1)), Verdict::Keep);
        let promoted = step(&added, at + secs(PROMOTE_AFTER.as_secs()), &mut fresh);
        assert_eq!(promoted.primary, added.keys[1].id);
        assert_eq!(promoted.keys.len(), 2, "the old key is still accepted");
    }

    #[test]
    fn the_ring_keeps_three_keys_and_never_drops_the_primary() {
        let mut fresh = counter();
        let mut keys = DataPathKeys::default();
        let mut now = t0();
        for _ in 0..10 {
            keys = step(&keys, now, &mut fresh);
            now += secs(PROMOTE_AFTER.as_secs());
            keys = step(&keys, now, &mut fresh);
            now += secs(ROTATE_EVERY.as_secs());
            assert!(keys.keys.len() <= DataPathKeys::KEEP);
            assert!(keys.primary().is_some(), "the primary is in the ring: {keys:?}");
        }
        assert_eq!(keys.keys.len(), 3);
        let ids: Vec<u32> = keys.keys.iter().map(|k| k.id).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "oldest first, increasing: {ids:?}");
        let distinct: std::collections::BTreeSet<&Vec<u8>> = keys.keys.iter().map(|k| &k.key).collect();
        assert_eq!(distinct.len(), 3, "every key is new");
    }

    #[test]
    fn the_controller_writes_the_cluster_object_compare_and_set() {
        let mut store = store_with(vec![], vec![]);
        let cluster = crate::testing::cluster("c");
        apply(&mut store, vec![Change::Create { object: Object::Cluster(cluster) }]);
        let changes = rotate(&store, t0(), random_key);
        assert_eq!(changes.len(), 1);
        apply(&mut store, changes);
        assert!(rotate(&store, t0() + secs(60), random_key).is_empty(), "nothing to do for 12 h");
        let Some(Object::Cluster(c)) = store.list(Kind::Cluster).next() else { panic!("the cluster") };
        assert_eq!(c.data_path_keys.keys[0].key.len(), 16);
    }
}
