//! The binary forms of log entries and of AppendEntries requests: what the log store
//! keeps (sealed) and what the leader sends. A normal entry carries its proposal's
//! bytes as they are, so storing or passing an entry on never parses the transaction
//! (see [`super::proposal`]).
//!
//! An entry: a version byte, term, leader node id and index (u64 LE each), a kind byte,
//! then the payload to the end: nothing for a blank entry, the proposal's bytes for a
//! normal one, the membership's JSON for a membership change (rare and small).
//!
//! An AppendEntries request: a version byte, the vote (term, node id, committed), the
//! previous log id and the leader's commit (each a presence byte and a log id), the
//! entry count (u32), then each entry as its length (u32) and its bytes.

use openraft::entry::RaftEntry;
use openraft::impls::leader_id_adv::LeaderId;
use openraft::raft::AppendEntriesRequest;
use openraft::{EntryPayload, RaftTypeConfig};

use super::proposal::Proposal;
use super::types::TypeConfig;

type C = TypeConfig;
type Entry = <C as RaftTypeConfig>::Entry;
type LogId = openraft::type_config::alias::LogIdOf<C>;
type Vote = openraft::type_config::alias::VoteOf<C>;

/// The version byte of both forms.
const VERSION: u8 = 1;

const BLANK: u8 = 0;
const NORMAL: u8 = 1;
const MEMBERSHIP: u8 = 2;

/// Why bytes are not an entry or a request.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The bytes end early.
    #[error("the {what} ends early: {needed} more bytes needed at offset {at}")]
    Short {
        /// What was being read.
        what: &'static str,
        /// Where.
        at: usize,
        /// How many bytes were missing.
        needed: usize,
    },
    /// A version or kind this build does not know.
    #[error("the {what} has unknown {field} {value}: written by a newer Shoal? Upgrade this manager")]
    Unknown {
        /// What was being read.
        what: &'static str,
        /// Which byte.
        field: &'static str,
        /// Its value.
        value: u8,
    },
    /// The payload did not decode.
    #[error("the {what}'s payload is malformed: {message}")]
    Payload {
        /// What was being read.
        what: &'static str,
        /// What the decoder said.
        message: String,
    },
}

/// Appends the binary form of `entry` to `out`.
pub fn encode_entry(entry: &Entry, out: &mut Vec<u8>) {
    out.push(VERSION);
    put_log_id(out, &entry.log_id);
    match &entry.payload {
        EntryPayload::Blank => out.push(BLANK),
        EntryPayload::Normal(p) => {
            out.push(NORMAL);
            out.extend_from_slice(p.bytes());
        }
        EntryPayload::Membership(m) => {
            out.push(MEMBERSHIP);
            serde_json::to_writer(&mut *out, m).expect("a membership always encodes as JSON");
        }
    }
}

/// The entry whose binary form is `bytes` (its transaction is not decoded here).
pub fn decode_entry(bytes: &[u8]) -> Result<Entry, CodecError> {
    let mut r = Reader { bytes, at: 0, what: "log entry" };
    r.version()?;
    let log_id = r.log_id()?;
    let kind = r.u8()?;
    let rest = r.rest();
    let payload = match kind {
        BLANK => EntryPayload::Blank,
        NORMAL => EntryPayload::Normal(r.payload(Proposal::from_bytes(rest))?),
        MEMBERSHIP => EntryPayload::Membership(r.payload(serde_json::from_slice(rest))?),
        value => return Err(CodecError::Unknown { what: r.what, field: "kind", value }),
    };
    Ok(Entry::new(log_id, payload))
}

/// The binary form of an AppendEntries request.
pub fn encode_append(rpc: &AppendEntriesRequest<C>) -> Vec<u8> {
    let entries: usize = rpc.entries.iter().map(|e| entry_size_hint(e) + 4).sum();
    let mut out = Vec::with_capacity(64 + entries);
    out.push(VERSION);
    let vote = &rpc.vote;
    out.extend_from_slice(&vote.leader_id.term.to_le_bytes());
    out.extend_from_slice(&vote.leader_id.node_id.to_le_bytes());
    out.push(u8::from(vote.committed));
    put_optional_log_id(&mut out, rpc.prev_log_id.as_ref());
    put_optional_log_id(&mut out, rpc.leader_commit.as_ref());
    out.extend_from_slice(&(rpc.entries.len() as u32).to_le_bytes());
    for entry in &rpc.entries {
        let len_at = out.len();
        out.extend_from_slice(&[0; 4]);
        encode_entry(entry, &mut out);
        let len = (out.len() - len_at - 4) as u32;
        out[len_at..len_at + 4].copy_from_slice(&len.to_le_bytes());
    }
    out
}

/// The AppendEntries request whose binary form is `bytes`.
pub fn decode_append(bytes: &[u8]) -> Result<AppendEntriesRequest<C>, CodecError> {
    let mut r = Reader { bytes, at: 0, what: "AppendEntries request" };
    r.version()?;
    let (term, node_id) = (r.u64()?, r.u64()?);
    let committed = r.u8()? != 0;
    let vote = Vote { leader_id: LeaderId { term, node_id }, committed };
    let prev_log_id = r.optional_log_id()?;
    let leader_commit = r.optional_log_id()?;
    let count = r.u32()? as usize;
    let mut entries = Vec::with_capacity(count.min(bytes.len() / 30));
    for _ in 0..count {
        let len = r.u32()? as usize;
        entries.push(decode_entry(r.take(len)?)?);
    }
    Ok(AppendEntriesRequest { vote, prev_log_id, leader_commit, entries })
}

/// About how many bytes `entry` encodes to.
fn entry_size_hint(entry: &Entry) -> usize {
    match &entry.payload {
        EntryPayload::Normal(p) => 26 + p.bytes().len(),
        _ => 128,
    }
}

fn put_log_id(out: &mut Vec<u8>, id: &LogId) {
    out.extend_from_slice(&id.leader_id.term.to_le_bytes());
    out.extend_from_slice(&id.leader_id.node_id.to_le_bytes());
    out.extend_from_slice(&id.index.to_le_bytes());
}

fn put_optional_log_id(out: &mut Vec<u8>, id: Option<&LogId>) {
    match id {
        None => out.push(0),
        Some(id) => {
            out.push(1);
            put_log_id(out, id);
        }
    }
}

/// Reads fixed fields off the front of `bytes`.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        let left = self.bytes.len() - self.at;
        if n > left {
            return Err(CodecError::Short { what: self.what, at: self.at, needed: n - left });
        }
        let end = self.at + n;
        let taken = &self.bytes[self.at..end];
        self.at = end;
        Ok(taken)
    }

    fn rest(&mut self) -> &'a [u8] {
        let rest = &self.bytes[self.at..];
        self.at = self.bytes.len();
        rest
    }

    fn u8(&mut self) -> Result<u8, CodecError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, CodecError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }

    fn u64(&mut self) -> Result<u64, CodecError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }

    fn version(&mut self) -> Result<(), CodecError> {
        match self.u8()? {
            VERSION => Ok(()),
            value => Err(CodecError::Unknown { what: self.what, field: "version", value }),
        }
    }

    fn log_id(&mut self) -> Result<LogId, CodecError> {
        let (term, node_id, index) = (self.u64()?, self.u64()?, self.u64()?);
        Ok(LogId::new(LeaderId { term, node_id }, index))
    }

    fn optional_log_id(&mut self) -> Result<Option<LogId>, CodecError> {
        match self.u8()? {
            0 => Ok(None),
            1 => self.log_id().map(Some),
            value => Err(CodecError::Unknown { what: self.what, field: "log id presence", value }),
        }
    }

    fn payload<T, E: std::fmt::Display>(&self, decoded: Result<T, E>) -> Result<T, CodecError> {
        decoded.map_err(|e| CodecError::Payload { what: self.what, message: e.to_string() })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use openraft::{BasicNode, Membership};

    use super::*;
    use crate::store::{Change, Kind, Transaction};

    fn log_id(term: u64, node: u64, index: u64) -> LogId {
        LogId::new(LeaderId { term, node_id: node }, index)
    }

    fn entries() -> Vec<Entry> {
        let tx = Transaction {
            changes: vec![Change::Delete { kind: Kind::Task, id: "t1".into(), expected_version: Some(9) }],
        };
        let nodes = BTreeMap::from([(1, BasicNode::new("127.0.0.1:1")), (2, BasicNode::new("127.0.0.1:2"))]);
        let membership = Membership::new(vec![BTreeSet::from([1, 2])], nodes).unwrap();
        vec![
            Entry::new(log_id(3, 1, 10), EntryPayload::Blank),
            Entry::new(log_id(3, 1, 11), EntryPayload::Normal(Proposal::new(tx).unwrap())),
            Entry::new(log_id(4, 2, 12), EntryPayload::Membership(membership)),
        ]
    }

    #[test]
    fn entries_round_trip_and_a_normal_one_carries_the_proposal_bytes_as_they_are() {
        for entry in entries() {
            let mut bytes = Vec::new();
            encode_entry(&entry, &mut bytes);
            let back = decode_entry(&bytes).unwrap();
            assert_eq!(back, entry);
            if let (EntryPayload::Normal(p), EntryPayload::Normal(q)) = (&entry.payload, &back.payload) {
                assert!(bytes.ends_with(p.bytes()));
                assert_eq!(q.bytes(), p.bytes());
            }
        }
    }

    #[test]
    fn requests_round_trip() {
        let rpc = AppendEntriesRequest::<C> {
            vote: Vote { leader_id: LeaderId { term: 4, node_id: 2 }, committed: true },
            prev_log_id: Some(log_id(3, 1, 9)),
            leader_commit: None,
            entries: entries(),
        };
        let back = decode_append(&encode_append(&rpc)).unwrap();
        assert_eq!(back.vote, rpc.vote);
        assert_eq!((back.prev_log_id, back.leader_commit), (rpc.prev_log_id, rpc.leader_commit));
        assert_eq!(back.entries, rpc.entries);
    }

    #[test]
    fn every_cut_short_request_and_unknown_byte_is_an_error_never_a_panic() {
        let rpc = AppendEntriesRequest::<C> {
            vote: Vote { leader_id: LeaderId { term: 4, node_id: 2 }, committed: false },
            prev_log_id: None,
            leader_commit: Some(log_id(4, 2, 11)),
            entries: entries(),
        };
        let bytes = encode_append(&rpc);
        for cut in 0..bytes.len() {
            assert!(decode_append(&bytes[..cut]).is_err(), "cut at {cut} of {}", bytes.len());
        }
        let mut newer = bytes.clone();
        newer[0] = 9;
        let err = decode_append(&newer).unwrap_err().to_string();
        assert!(err.contains("unknown version 9") && err.contains("Upgrade"), "{err}");
        let mut entry = Vec::new();
        encode_entry(&entries()[0], &mut entry);
        entry[25] = 7;
        assert!(decode_entry(&entry).unwrap_err().to_string().contains("unknown kind 7"));
    }
}
