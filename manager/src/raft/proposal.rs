//! The payload of a log entry: a store transaction and its encoded bytes. The log and
//! replication copy the bytes as they are; a manager decodes them once, when it first
//! needs the transaction (to apply it, or to check one forwarded to the leader), so a
//! follower never parses an entry just to store or pass it on. Applying takes the
//! decoded transaction out ([`Proposal::take_transaction`]): its objects move into the
//! store uncopied, and the log's cache of recent entries keeps only their bytes.
//!
//! New transactions are encoded as [`MSGPACK`] (one tag byte, then MessagePack with
//! field names: self-describing, so every serde attribute of the object model works).
//! Bytes that start otherwise are JSON: what logs written before kept, and what a
//! client may send.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

use crate::store::{MAX_TRANSACTION_BYTES, StoreError, Transaction};

/// The tag byte of a MessagePack-encoded transaction (JSON never starts with it).
pub const MSGPACK: u8 = 1;

/// A transaction's bytes and, once decoded and until applied, the transaction; clones
/// share both.
#[derive(Clone)]
pub struct Proposal(Arc<Inner>);

struct Inner {
    bytes: Box<[u8]>,
    /// The decoded transaction (or why it does not decode), from its first use until
    /// [`Proposal::take_transaction`].
    tx: Mutex<Option<Result<Transaction, StoreError>>>,
}

impl Proposal {
    /// Encodes `tx`; refuses it if the encoding is over [`MAX_TRANSACTION_BYTES`].
    pub fn new(tx: Transaction) -> Result<Proposal, StoreError> {
        let mut bytes = vec![MSGPACK];
        rmp_serde::encode::write_named(&mut bytes, &tx)
            .map_err(|e| StoreError::Invalid { message: format!("cannot encode the transaction: {e}") })?;
        // The leader applies `tx` as it is and the others decode the bytes: in debug
        // builds (every test) each new proposal proves the two are the same.
        #[cfg(debug_assertions)]
        assert_eq!(decode(&bytes).as_ref(), Ok(&tx), "a transaction does not survive its encoding");
        let p = Proposal::from_bytes(bytes)?;
        *p.decoded() = Some(Ok(tx));
        Ok(p)
    }

    /// Takes encoded bytes (from the log or a leader) without decoding them; refuses
    /// them only if they are too large.
    pub fn from_bytes(bytes: impl Into<Box<[u8]>>) -> Result<Proposal, StoreError> {
        let bytes = bytes.into();
        if bytes.len() > MAX_TRANSACTION_BYTES {
            return Err(StoreError::TooLarge { bytes: bytes.len(), max: MAX_TRANSACTION_BYTES });
        }
        Ok(Proposal(Arc::new(Inner { bytes, tx: Mutex::new(None) })))
    }

    /// Takes encoded bytes sent by another manager and decodes them at once, so a
    /// malformed transaction is refused at the door.
    pub fn checked(bytes: impl Into<Box<[u8]>>) -> Result<Proposal, StoreError> {
        let p = Proposal::from_bytes(bytes)?;
        p.with_transaction(|_| ())?;
        Ok(p)
    }

    /// Runs `f` on the transaction, decoded on the first call and kept for the next.
    pub fn with_transaction<T>(&self, f: impl FnOnce(&Transaction) -> T) -> Result<T, StoreError> {
        let mut decoded = self.decoded();
        decoded.get_or_insert_with(|| decode(&self.0.bytes)).as_ref().map(f).map_err(Clone::clone)
    }

    /// The transaction, to apply: the one decoded before, taken out (a later use
    /// decodes the bytes again), or decoded now.
    pub fn take_transaction(&self) -> Result<Transaction, StoreError> {
        self.decoded().take().unwrap_or_else(|| decode(&self.0.bytes))
    }

    /// Runs `f` on the transaction without keeping a decoded copy it did not find:
    /// for looking at an entry (formatting, comparing, writing it out) after it may
    /// have been applied, so the log's cache keeps only bytes.
    fn look_at<T>(&self, f: impl FnOnce(&Transaction) -> T) -> Result<T, StoreError> {
        match &*self.decoded() {
            Some(kept) => kept.as_ref().map(f).map_err(Clone::clone),
            None => decode(&self.0.bytes).as_ref().map(f).map_err(Clone::clone),
        }
    }

    fn decoded(&self) -> MutexGuard<'_, Option<Result<Transaction, StoreError>>> {
        // A panic while decoding leaves nothing half-made: the slot is still usable.
        self.0.tx.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The encoded bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.0.bytes
    }
}

/// Decodes a transaction from either encoding.
fn decode(bytes: &[u8]) -> Result<Transaction, StoreError> {
    let malformed =
        |e: &dyn fmt::Display| StoreError::Invalid { message: format!("malformed transaction: {e}") };
    match bytes.split_first() {
        Some((&MSGPACK, body)) => rmp_serde::from_slice(body).map_err(|e| malformed(&e)),
        _ => serde_json::from_slice(bytes).map_err(|e| malformed(&e)),
    }
}

impl fmt::Debug for Proposal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.look_at(|tx| format!("{tx:?}")) {
            Ok(tx) => f.write_str(&tx),
            Err(e) => write!(f, "Proposal({} bytes, {e})", self.0.bytes.len()),
        }
    }
}

impl fmt::Display for Proposal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.look_at(|tx| tx.to_string()) {
            Ok(tx) => f.write_str(&tx),
            Err(e) => write!(f, "undecodable transaction of {} bytes ({e})", self.0.bytes.len()),
        }
    }
}

impl PartialEq for Proposal {
    fn eq(&self, other: &Proposal) -> bool {
        if Arc::ptr_eq(&self.0, &other.0) {
            return true;
        }
        match (self.look_at(Clone::clone), other.look_at(Clone::clone)) {
            (Ok(a), Ok(b)) => a == b,
            _ => self.0.bytes == other.0.bytes,
        }
    }
}

/// Written as the transaction (openraft's serde forms of entries: tests, and the JSON
/// log layout read at an upgrade).
impl Serialize for Proposal {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error as _;
        self.look_at(|tx| tx.serialize(s)).map_err(S::Error::custom)?
    }
}

/// Read from JSON, keeping the text as the bytes (serde_json only: the JSON log layout
/// of earlier versions). Decoded at once, as a log being read back must be whole.
impl<'de> Deserialize<'de> for Proposal {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Proposal, D::Error> {
        let json = Box::<RawValue>::deserialize(d)?;
        let bytes: Box<str> = json.into();
        Proposal::checked(bytes.into_boxed_bytes()).map_err(D::Error::custom)
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
    fn a_new_transaction_is_messagepack_and_decodes_back() {
        let p = Proposal::new(delete("s1")).unwrap();
        assert_eq!(p.bytes()[0], MSGPACK);
        let q = Proposal::from_bytes(p.bytes().to_vec()).unwrap();
        assert!(q.decoded().is_none(), "taking bytes decodes nothing");
        assert_eq!(q.with_transaction(Clone::clone).unwrap(), delete("s1"));
        assert_eq!(p, q);
    }

    #[test]
    fn applying_takes_the_decoded_transaction_out() {
        let p = Proposal::new(delete("s1")).unwrap();
        let kept = p.clone();
        assert_eq!(p.take_transaction().unwrap(), delete("s1"));
        assert!(kept.decoded().is_none(), "the log's copy no longer holds the decoded transaction");
        assert_eq!(kept.take_transaction().unwrap(), delete("s1"), "taken again: decoded from the bytes");
        let lazy = Proposal::from_bytes(p.bytes().to_vec()).unwrap();
        assert_eq!(lazy.take_transaction().unwrap(), delete("s1"));
        assert!(lazy.decoded().is_none(), "decoding to apply keeps no copy");
        assert_eq!(format!("{lazy:?}"), format!("{:?}", delete("s1")));
        assert!(lazy.decoded().is_none(), "looking at an entry keeps no copy");
    }

    #[test]
    fn json_bytes_are_kept_verbatim_and_decoded() {
        let sent = br#"{ "changes": [ {"op":"delete","kind":"service","id":"s1","expected_version":3} ] }"#;
        let q = Proposal::checked(sent.to_vec()).unwrap();
        assert_eq!(q.with_transaction(Clone::clone).unwrap(), delete("s1"));
        assert_eq!(q.bytes(), sent, "the client's bytes, not a re-encoding");
        let entry = serde_json::to_string(&(7, &Proposal::new(delete("s1")).unwrap())).unwrap();
        let (_, back): (u32, Proposal) = serde_json::from_str(&entry).unwrap();
        assert_eq!(back.with_transaction(Clone::clone).unwrap(), delete("s1"));
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
        let err = Proposal::checked(br#"{"changes": [{"op": "rename"}]}"#.to_vec()).unwrap_err();
        assert!(err.to_string().contains("malformed transaction"), "{err}");
        let lazy = Proposal::from_bytes(vec![MSGPACK, 0xc1]).unwrap();
        let err = lazy.take_transaction().unwrap_err();
        assert!(err.to_string().contains("malformed transaction"), "{err}");
    }
}
