//! The payload of a log entry: a store transaction together with the JSON it was
//! decoded from (or encoded to). The log and replication copy those bytes instead of
//! encoding the transaction again for the disk and for every follower; each manager
//! decodes an entry once, to apply it.

use std::fmt;
use std::sync::Arc;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

use crate::store::{MAX_TRANSACTION_BYTES, StoreError, Transaction};

/// A transaction and its JSON; clones share both.
#[derive(Clone)]
pub struct Proposal(Arc<Inner>);

struct Inner {
    tx: Transaction,
    json: Box<RawValue>,
}

impl Proposal {
    /// Encodes `tx`; refuses it if the encoding is over [`MAX_TRANSACTION_BYTES`].
    pub fn new(tx: Transaction) -> Result<Proposal, StoreError> {
        let json = serde_json::value::to_raw_value(&tx)
            .map_err(|e| StoreError::Invalid { message: format!("cannot encode the transaction: {e}") })?;
        Proposal::sized(Inner { tx, json })
    }

    /// Decodes a transaction sent as JSON, keeping the bytes.
    pub fn from_json(bytes: &[u8]) -> Result<Proposal, StoreError> {
        let invalid =
            |e: serde_json::Error| StoreError::Invalid { message: format!("malformed transaction: {e}") };
        let json: Box<RawValue> = serde_json::from_slice(bytes).map_err(invalid)?;
        let tx = serde_json::from_str(json.get()).map_err(invalid)?;
        Proposal::sized(Inner { tx, json })
    }

    fn sized(inner: Inner) -> Result<Proposal, StoreError> {
        let bytes = inner.json.get().len();
        if bytes > MAX_TRANSACTION_BYTES {
            return Err(StoreError::TooLarge { bytes, max: MAX_TRANSACTION_BYTES });
        }
        Ok(Proposal(Arc::new(inner)))
    }

    /// The transaction.
    pub fn transaction(&self) -> &Transaction {
        &self.0.tx
    }

    /// Its JSON.
    pub fn json(&self) -> &[u8] {
        self.0.json.get().as_bytes()
    }
}

impl fmt::Debug for Proposal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0.tx, f)
    }
}

impl fmt::Display for Proposal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.tx, f)
    }
}

impl PartialEq for Proposal {
    fn eq(&self, other: &Proposal) -> bool {
        self.0.tx == other.0.tx
    }
}

/// Written as the kept JSON, verbatim (with serde_json, which is what the log and the
/// transport use).
impl Serialize for Proposal {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.json.serialize(s)
    }
}

/// Read as JSON and decoded, keeping the text (serde_json only: the log and the
/// transport).
impl<'de> Deserialize<'de> for Proposal {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Proposal, D::Error> {
        let json = Box::<RawValue>::deserialize(d)?;
        let tx = serde_json::from_str(json.get()).map_err(D::Error::custom)?;
        Ok(Proposal(Arc::new(Inner { tx, json })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Change, Kind};

    fn delete(id: &str) -> Transaction {
        Transaction {
            changes: vec![Change::Delete { kind: Kind::Service, id: id.into(), expected_version: Some(3) }],
        }
    }

    #[test]
    fn the_json_is_kept_and_written_verbatim() {
        let p = Proposal::new(delete("s1")).unwrap();
        assert_eq!(p.json(), serde_json::to_vec(&delete("s1")).unwrap());
        let sent = br#"{ "changes": [ {"op":"delete","kind":"service","id":"s1","expected_version":3} ] }"#;
        let q = Proposal::from_json(sent).unwrap();
        assert_eq!(q.transaction(), &delete("s1"));
        assert_eq!(q.json(), sent, "the client's bytes, not a re-encoding");
        let entry = serde_json::to_string(&(7, &q)).unwrap();
        assert!(entry.contains(std::str::from_utf8(sent).unwrap()), "{entry}");
        let (_, back): (u32, Proposal) = serde_json::from_str(&entry).unwrap();
        assert_eq!((back.transaction(), back.json()), (q.transaction(), &sent[..]));
    }

    #[test]
    fn oversized_and_malformed_transactions_are_refused() {
        let mut big = delete("x");
        if let Change::Delete { id, .. } = &mut big.changes[0] {
            *id = "x".repeat(MAX_TRANSACTION_BYTES);
        }
        let err = Proposal::new(big).unwrap_err();
        assert!(matches!(err, StoreError::TooLarge { .. }));
        assert!(err.to_string().contains("split it"), "{err}");
        let err = Proposal::from_json(br#"{"changes": [{"op": "rename"}]}"#).unwrap_err();
        assert!(err.to_string().contains("malformed transaction"), "{err}");
    }
}
