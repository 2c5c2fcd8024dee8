//! How one record sits in a segment: a 12-byte header (`u32` payload length, `u8`
//! kind, `u8` flags, `u16` reserved, `u32` CRC32C), the payload, and zero padding to a
//! multiple of 8 bytes. The CRC covers the segment's unique id, the kind, the length
//! and the payload, so a record is valid only in the segment it was written to. Kind 0
//! is no record: preallocated (zeroed) space reads as the end of the log.
//!
//! Also the records themselves: what each kind's payload holds.

use std::collections::BTreeMap;

/// Bytes of a frame's header.
pub(crate) const HEADER: usize = 12;
/// Frames start and end on this boundary.
const ALIGN: usize = 8;

/// What a record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Kind {
    /// The state of the log when its segment was cut: first in every segment.
    Checkpoint = 1,
    /// An entry at an index.
    Entry = 2,
    /// A value for one of the caller's state slots.
    State = 3,
    /// Entries from an index on are gone.
    TruncateFrom = 4,
    /// Entries through an index are gone.
    PurgeThrough = 5,
}

impl Kind {
    fn from_byte(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::Checkpoint,
            2 => Kind::Entry,
            3 => Kind::State,
            4 => Kind::TruncateFrom,
            5 => Kind::PurgeThrough,
            _ => return None,
        })
    }
}

/// The bytes a frame of `payload` bytes takes, padding included.
pub(crate) fn frame_len(payload: usize) -> usize {
    (HEADER + payload).next_multiple_of(ALIGN)
}

fn crc(segment_id: u64, kind: u8, len: u32, parts: &[&[u8]]) -> u32 {
    let mut c = crc32c::crc32c(&segment_id.to_le_bytes());
    c = crc32c::crc32c_append(c, &[kind]);
    c = crc32c::crc32c_append(c, &len.to_le_bytes());
    for p in parts {
        c = crc32c::crc32c_append(c, p);
    }
    c
}

/// Appends the frame of a `kind` record whose payload is `parts` joined, for the
/// segment `segment_id`.
pub(crate) fn put(out: &mut Vec<u8>, segment_id: u64, kind: Kind, parts: &[&[u8]]) {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let len32 = u32::try_from(len).expect("a record under 4 GiB");
    let start = out.len();
    out.extend_from_slice(&len32.to_le_bytes());
    out.push(kind as u8);
    out.extend_from_slice(&[0, 0, 0]);
    out.extend_from_slice(&crc(segment_id, kind as u8, len32, parts).to_le_bytes());
    for p in parts {
        out.extend_from_slice(p);
    }
    out.resize(start + frame_len(len), 0);
}

/// What is at one offset of a segment.
#[derive(Debug)]
pub(crate) enum Parsed<'a> {
    /// A zeroed header (or a zeroed stub too short for one): no record here.
    End,
    /// A valid record and the bytes its frame takes.
    Frame { kind: Kind, payload: &'a [u8], len: usize },
    /// Not a valid record; `end` is where it says it ends (clamped to the data).
    Bad { what: &'static str, end: usize },
}

/// Reads the frame at `pos` of `data`, a segment with id `segment_id`.
pub(crate) fn parse(data: &[u8], pos: usize, segment_id: u64) -> Parsed<'_> {
    let rest = &data[pos.min(data.len())..];
    let Some(header) = rest.first_chunk::<HEADER>() else {
        return if rest.iter().all(|&b| b == 0) {
            Parsed::End
        } else {
            Parsed::Bad { what: "a record header cut off by the end of the file", end: data.len() }
        };
    };
    if header.iter().all(|&b| b == 0) {
        return Parsed::End;
    }
    let len = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes"));
    let stored_crc = u32::from_le_bytes(header[8..12].try_into().expect("4 bytes"));
    let flen = frame_len(len as usize);
    let end = pos.saturating_add(flen);
    let Some(kind) = Kind::from_byte(header[4]) else {
        return Parsed::Bad { what: "an unknown record kind", end: end.min(data.len()) };
    };
    if header[5..8] != [0, 0, 0] {
        return Parsed::Bad { what: "nonzero reserved header bytes", end: end.min(data.len()) };
    }
    if end > data.len() {
        return Parsed::Bad { what: "a record running past the end of the file", end: data.len() };
    }
    let payload = &rest[HEADER..HEADER + len as usize];
    if crc(segment_id, kind as u8, len, &[payload]) != stored_crc {
        return Parsed::Bad { what: "a checksum mismatch", end };
    }
    Parsed::Frame { kind, payload, len: flen }
}

/// The log's state when a segment was cut: enough to replay from that segment alone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Checkpoint {
    pub(crate) purged: Option<u64>,
    pub(crate) last: Option<u64>,
    pub(crate) slots: BTreeMap<u8, Vec<u8>>,
}

fn put_opt(out: &mut Vec<u8>, v: Option<u64>) {
    out.push(u8::from(v.is_some()));
    out.extend_from_slice(&v.unwrap_or(0).to_le_bytes());
}

impl Checkpoint {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        put_opt(&mut out, self.purged);
        put_opt(&mut out, self.last);
        out.extend_from_slice(&(self.slots.len() as u32).to_le_bytes());
        for (slot, value) in &self.slots {
            out.push(*slot);
            out.extend_from_slice(&(value.len() as u32).to_le_bytes());
            out.extend_from_slice(value);
        }
        out
    }

    pub(crate) fn decode(mut b: &[u8]) -> Option<Checkpoint> {
        fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
            let (head, tail) = b.split_at_checked(n)?;
            *b = tail;
            Some(head)
        }
        fn opt(b: &mut &[u8]) -> Option<Option<u64>> {
            let some = take(b, 1)?[0] != 0;
            let v = u64::from_le_bytes(take(b, 8)?.try_into().ok()?);
            Some(some.then_some(v))
        }
        let purged = opt(&mut b)?;
        let last = opt(&mut b)?;
        let n = u32::from_le_bytes(take(&mut b, 4)?.try_into().ok()?);
        let mut slots = BTreeMap::new();
        for _ in 0..n {
            let slot = take(&mut b, 1)?[0];
            let len = u32::from_le_bytes(take(&mut b, 4)?.try_into().ok()?) as usize;
            slots.insert(slot, take(&mut b, len)?.to_vec());
        }
        b.is_empty().then_some(Checkpoint { purged, last, slots })
    }
}

/// A decoded record.
#[derive(Debug)]
pub(crate) enum Record<'a> {
    Checkpoint(Checkpoint),
    Entry { index: u64, data: &'a [u8] },
    State { slot: u8, value: &'a [u8] },
    TruncateFrom(u64),
    PurgeThrough(u64),
}

/// Bytes an entry record's payload has before the entry's data (its index).
pub(crate) const ENTRY_PREFIX: usize = 8;

impl<'a> Record<'a> {
    /// The record of a valid frame; `None` if its payload does not fit its kind.
    pub(crate) fn decode(kind: Kind, payload: &'a [u8]) -> Option<Record<'a>> {
        let u64_of = |b: &[u8]| b.try_into().ok().map(u64::from_le_bytes);
        Some(match kind {
            Kind::Checkpoint => Record::Checkpoint(Checkpoint::decode(payload)?),
            Kind::Entry => {
                let (index, data) = payload.split_at_checked(ENTRY_PREFIX)?;
                Record::Entry { index: u64_of(index)?, data }
            }
            Kind::State => {
                let (slot, value) = payload.split_first()?;
                Record::State { slot: *slot, value }
            }
            Kind::TruncateFrom => Record::TruncateFrom(u64_of(payload)?),
            Kind::PurgeThrough => Record::PurgeThrough(u64_of(payload)?),
        })
    }

    /// Appends this record's frame for segment `segment_id`.
    pub(crate) fn put(&self, out: &mut Vec<u8>, segment_id: u64) {
        match self {
            Record::Checkpoint(cp) => put(out, segment_id, Kind::Checkpoint, &[&cp.encode()]),
            Record::Entry { index, data } => put(out, segment_id, Kind::Entry, &[&index.to_le_bytes(), data]),
            Record::State { slot, value } => put(out, segment_id, Kind::State, &[&[*slot], value]),
            Record::TruncateFrom(i) => put(out, segment_id, Kind::TruncateFrom, &[&i.to_le_bytes()]),
            Record::PurgeThrough(i) => put(out, segment_id, Kind::PurgeThrough, &[&i.to_le_bytes()]),
        }
    }

    /// The bytes its frame takes.
    pub(crate) fn frame_len(&self) -> usize {
        frame_len(match self {
            Record::Checkpoint(cp) => cp.encode().len(),
            Record::Entry { data, .. } => ENTRY_PREFIX + data.len(),
            Record::State { value, .. } => 1 + value.len(),
            Record::TruncateFrom(_) | Record::PurgeThrough(_) => 8,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_are_bound_to_their_segment() {
        let mut out = Vec::new();
        Record::Entry { index: 7, data: b"hello" }.put(&mut out, 42);
        assert_eq!(out.len(), frame_len(8 + 5));
        assert_eq!(out.len() % 8, 0);
        match parse(&out, 0, 42) {
            Parsed::Frame { kind: Kind::Entry, payload, len } => {
                assert_eq!(len, out.len());
                assert!(matches!(
                    Record::decode(Kind::Entry, payload),
                    Some(Record::Entry { index: 7, data: b"hello" })
                ));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(parse(&out, 0, 43), Parsed::Bad { what: "a checksum mismatch", .. }));
        assert!(matches!(parse(&[0u8; 20], 0, 42), Parsed::End));
        let cp = Checkpoint { purged: Some(3), last: None, slots: [(1, b"v".to_vec())].into() };
        assert_eq!(Checkpoint::decode(&cp.encode()), Some(cp));
    }
}
