//! Transactions: lists of object changes proposed as one Raft entry, with
//! compare-and-set on versions, and the errors a change can meet.

use serde::{Deserialize, Serialize};

use super::object::{Kind, Object};

/// The largest transaction, encoded, as in SwarmKit (1.5 MiB).
pub const MAX_TRANSACTION_BYTES: usize = 1536 * 1024;

/// One change to one object. Read through [`ChangeFields`]: a derived internally tagged
/// enum would buffer the whole object before decoding it, which cost the leader and
/// every follower a second pass over each entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", try_from = "ChangeFields")]
pub enum Change {
    /// Add a new object; its id must be unused (and its name, for named kinds).
    Create {
        /// The object, as it should be stored (its version is set by the store).
        object: Object,
    },
    /// Replace an object, if its stored version is still `expected_version`.
    Update {
        /// The new state of the object.
        object: Object,
        /// The version the writer read.
        expected_version: u64,
    },
    /// Remove an object, if its stored version is `expected_version` (when given).
    Delete {
        /// Its kind.
        kind: Kind,
        /// Its id.
        id: String,
        /// The version the writer read; `None` deletes whatever is there.
        expected_version: Option<u64>,
    },
}

/// The operations of [`Change`].
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Op {
    Create,
    Update,
    Delete,
}

/// Every field a [`Change`] may have, in any order; which are needed depends on `op`.
#[derive(Deserialize)]
struct ChangeFields {
    op: Op,
    object: Option<Object>,
    #[serde(default)]
    expected_version: Option<u64>,
    kind: Option<Kind>,
    id: Option<String>,
}

impl TryFrom<ChangeFields> for Change {
    type Error = String;

    fn try_from(f: ChangeFields) -> Result<Change, String> {
        let op = match f.op {
            Op::Create => "a create",
            Op::Update => "an update",
            Op::Delete => "a delete",
        };
        let missing = |field: &str| format!("{op} change needs `{field}`");
        Ok(match f.op {
            Op::Create => Change::Create { object: f.object.ok_or_else(|| missing("object"))? },
            Op::Update => Change::Update {
                expected_version: f.expected_version.ok_or_else(|| missing("expected_version"))?,
                object: f.object.ok_or_else(|| missing("object"))?,
            },
            Op::Delete => Change::Delete {
                kind: f.kind.ok_or_else(|| missing("kind"))?,
                id: f.id.ok_or_else(|| missing("id"))?,
                expected_version: f.expected_version,
            },
        })
    }
}

impl Change {
    /// The kind and id the change is about.
    pub fn target(&self) -> (Kind, &str) {
        match self {
            Change::Create { object } | Change::Update { object, .. } => (object.kind(), object.id()),
            Change::Delete { kind, id, .. } => (*kind, id),
        }
    }
}

/// Changes applied together, all or none, at one Raft log index.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Transaction {
    /// The changes, applied in order.
    pub changes: Vec<Change>,
}

impl std::fmt::Display for Transaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "transaction of {} change(s)", self.changes.len())
    }
}

/// Why a transaction was refused. Nothing of a refused transaction is applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum StoreError {
    /// The object changed since the writer read it.
    #[error(
        "{kind} {id} was changed by someone else (version {actual}, you read {expected}): read it again and retry"
    )]
    Conflict {
        /// Kind.
        kind: Kind,
        /// Id.
        id: String,
        /// The version the writer read.
        expected: u64,
        /// The version stored.
        actual: u64,
    },
    /// An object with this id exists already.
    #[error("{kind} {id} exists already")]
    Exists {
        /// Kind.
        kind: Kind,
        /// Id.
        id: String,
    },
    /// No such object.
    #[error("no {kind} {id}")]
    NotFound {
        /// Kind.
        kind: Kind,
        /// Id or name.
        id: String,
    },
    /// Another object of the kind has the name.
    #[error("a {kind} named {name:?} exists already ({id}): choose another name")]
    NameTaken {
        /// Kind.
        kind: Kind,
        /// The name.
        name: String,
        /// The object holding it.
        id: String,
    },
    /// An overlay address someone else holds (two allocations raced: retry).
    #[error(
        "address {addr} on network {network} is held by {holder}, so {id} cannot have it: allocate again"
    )]
    AddressTaken {
        /// Network id.
        network: String,
        /// The address.
        addr: std::net::Ipv4Addr,
        /// Who holds it.
        holder: String,
        /// Who asked for it.
        id: String,
    },
    /// The change would leave a reference dangling.
    #[error("{message}")]
    Reference {
        /// What refers to what, in words.
        message: String,
    },
    /// The change is malformed (e.g. a create with a version).
    #[error("{message}")]
    Invalid {
        /// What is wrong.
        message: String,
    },
    /// The encoded transaction is too big for one log entry.
    #[error("the transaction is {bytes} bytes; at most {max} fit in one log entry: split it")]
    TooLarge {
        /// Its size.
        bytes: usize,
        /// The limit.
        max: usize,
    },
}
