//! What every stored object carries: an id and its metadata (version and timestamps).

use chrono::{DateTime, Utc};
use rand::Rng;
use serde::{Deserialize, Serialize};

/// Length of a generated object id, as in SwarmKit.
pub const ID_LEN: usize = 25;

/// Makes a new random object id: 25 lowercase base-36 characters.
///
/// Ids are made by the leader before it proposes a change, never inside Raft's
/// `apply`, so every manager stores the same id.
pub fn new_id() -> String {
    const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut rng = rand::rng();
    (0..ID_LEN).map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())])).collect()
}

/// True when `s` could be an id made by [`new_id`]; used to tell ids from names.
pub fn looks_like_id(s: &str) -> bool {
    s.len() == ID_LEN && s.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
}

/// Version and timestamps of a stored object.
///
/// `version` is the Raft log index of the change that last wrote the object. An update
/// must carry the version it read; a stale one is refused as a conflict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Meta {
    /// Raft log index of the last write (0 before the object is first stored).
    #[serde(default)]
    pub version: u64,
    /// When the object was created, chosen by the leader before proposing.
    pub created_at: DateTime<Utc>,
    /// When the object was last written, chosen by the leader before proposing.
    pub updated_at: DateTime<Utc>,
}

impl Meta {
    /// Metadata for an object created at `now`, not yet stored.
    pub fn new(now: DateTime<Utc>) -> Self {
        Meta { version: 0, created_at: now, updated_at: now }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_recognised() {
        let a = new_id();
        let b = new_id();
        assert_ne!(a, b);
        assert!(looks_like_id(&a));
        assert!(!looks_like_id("web"));
        assert!(!looks_like_id(&a.to_uppercase()));
    }
}
