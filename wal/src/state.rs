//! The log as replayed so far: where each live entry is, the purge point, the last
//! index, the state slots, and the open segment files. Recovery builds it from the
//! records on disk; the writer keeps it current as it writes records.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;

use crate::frame::{Checkpoint, ENTRY_PREFIX, HEADER, Record};

/// Where an entry's data is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Loc {
    /// The segment's sequence number.
    pub(crate) seg: u64,
    /// Where its frame starts.
    pub(crate) frame: u64,
    /// Bytes of data.
    pub(crate) len: u32,
}

impl Loc {
    /// Where the entry's data starts.
    pub(crate) fn data(&self) -> u64 {
        self.frame + (HEADER + ENTRY_PREFIX) as u64
    }
}

/// An open segment.
#[derive(Debug)]
pub(crate) struct Segment {
    pub(crate) file: Arc<File>,
    pub(crate) path: PathBuf,
}

#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) entries: BTreeMap<u64, Loc>,
    pub(crate) purged: Option<u64>,
    /// The newest index appended (after truncations), or the purge point if later.
    pub(crate) last: Option<u64>,
    pub(crate) slots: BTreeMap<u8, Vec<u8>>,
    pub(crate) segments: BTreeMap<u64, Segment>,
}

impl State {
    /// Applies `record`, whose frame is at `frame` of segment `seg`.
    pub(crate) fn apply(&mut self, record: &Record<'_>, seg: u64, frame: u64) {
        match record {
            Record::Checkpoint(cp) => {
                self.purged = cp.purged;
                self.last = cp.last;
                self.slots = cp.slots.clone();
            }
            Record::Entry { index, data } => {
                self.entries.split_off(index);
                let len = u32::try_from(data.len()).expect("a record under 4 GiB");
                self.entries.insert(*index, Loc { seg, frame, len });
                self.last = Some(*index);
            }
            Record::State { slot, value } => {
                self.slots.insert(*slot, value.to_vec());
            }
            Record::TruncateFrom(from) => {
                self.entries.split_off(from);
                if self.last.is_some_and(|l| l >= *from) {
                    self.last = from.checked_sub(1);
                }
                self.last = self.last.max(self.purged);
            }
            Record::PurgeThrough(upto) => {
                self.entries = self.entries.split_off(&(upto + 1));
                self.purged = self.purged.max(Some(*upto));
                self.last = self.last.max(Some(*upto));
            }
        }
    }

    /// The state a segment cut now starts from.
    pub(crate) fn checkpoint(&self) -> Checkpoint {
        Checkpoint { purged: self.purged, last: self.last, slots: self.slots.clone() }
    }

    /// The index the next entry would have.
    pub(crate) fn next_index(&self) -> u64 {
        self.last.map_or(0, |l| l + 1)
    }

    /// Why the live entries are not exactly those after the purge point through the
    /// last index, if they are not.
    pub(crate) fn gap(&self) -> Option<String> {
        let Some(last) = self.last else {
            return (!self.entries.is_empty()).then(|| "entries follow a log with none".into());
        };
        if self.purged == Some(last) && self.entries.is_empty() {
            return None;
        }
        let first = match self.purged {
            Some(p) => p + 1,
            None => match self.entries.keys().next() {
                Some(first) => *first,
                None => return Some(format!("the log ends at {last} but holds no entries")),
            },
        };
        let want = last.checked_sub(first).map_or(0, |n| n + 1);
        let ok = self.entries.len() as u64 == want
            && self.entries.first_key_value().is_some_and(|(i, _)| *i == first)
            && self.entries.last_key_value().is_some_and(|(i, _)| *i == last);
        (!ok).then(|| format!("entries {first}..={last} should all be present, {} are", self.entries.len()))
    }
}
