//! Opening a log: every segment is replayed, in order, into the [`State`]. Only the
//! last segment may end in a torn record (a write cut short by a crash): a bad record
//! there with nothing but zeros after it, and no valid record anywhere after it, is
//! cut off (zeroed, then synced). Any other damage is [`WalError::Corrupt`], naming the
//! file and offset, and nothing is changed.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::WalError;
use crate::frame::{self, Checkpoint, Kind, Parsed, Record};
use crate::segment::{self, HEADER_LEN, Header};
use crate::state::{Segment, State};

/// A replayed log, and where its writer goes on.
#[derive(Debug)]
pub(crate) struct Recovered {
    pub(crate) state: State,
    /// The last segment: its sequence number and id, where its next frame goes, and
    /// where its first frame after the checkpoint is.
    pub(crate) seq: u64,
    pub(crate) id: u64,
    pub(crate) end: u64,
    pub(crate) body_start: u64,
}

/// Replays the log in `dir`, making its first segment if it has none.
pub(crate) fn recover(dir: &Path, segment_bytes: u64) -> Result<Recovered, WalError> {
    let mut segs: Vec<(u64, PathBuf)> = Vec::new();
    for item in std::fs::read_dir(dir).map_err(|e| WalError::io("list", dir, e))? {
        let item = item.map_err(|e| WalError::io("list", dir, e))?;
        let name = item.file_name().to_string_lossy().into_owned();
        if name.ends_with(".wal.tmp") {
            // A segment never put in place: a crash cut it short, and it held nothing
            // acknowledged.
            std::fs::remove_file(item.path()).map_err(|e| WalError::io("remove", item.path(), e))?;
        } else if let Some(seq) = segment::parse_name(&name) {
            segs.push((seq, item.path()));
        }
    }
    segs.sort();
    if segs.is_empty() {
        return first_segment(dir, segment_bytes);
    }
    for w in segs.windows(2) {
        if w[1].0 != w[0].0 + 1 {
            return Err(WalError::Missing {
                dir: dir.to_owned(),
                what: format!(
                    "segment {} is missing (between {} and {})",
                    w[0].0 + 1,
                    w[0].1.display(),
                    w[1].1.display()
                ),
            });
        }
    }
    let mut st = State::default();
    let mut tail = None;
    let count = segs.len();
    for (i, (seq, path)) in segs.into_iter().enumerate() {
        let last_seg = i + 1 == count;
        let file = File::options()
            .read(true)
            .write(last_seg)
            .open(&path)
            .map_err(|e| WalError::io("open the log segment", &path, e))?;
        let mut data = Vec::new();
        (&file).read_to_end(&mut data).map_err(|e| WalError::io("read the log segment", &path, e))?;
        let header = Header::decode(&data).map_err(|what| WalError::corrupt(&path, 0, what))?;
        if header.seq != seq {
            return Err(WalError::corrupt(&path, 0, format!("its header says it is segment {}", header.seq)));
        }
        let mut pos = HEADER_LEN;
        let cp = match frame::parse(&data, pos, header.id) {
            Parsed::Frame { kind: Kind::Checkpoint, payload, len } => {
                pos += len;
                Checkpoint::decode(payload)
                    .ok_or_else(|| WalError::corrupt(&path, HEADER_LEN as u64, "an unreadable checkpoint"))?
            }
            _ => {
                return Err(WalError::corrupt(
                    &path,
                    pos as u64,
                    "the segment does not start with its checkpoint",
                ));
            }
        };
        if i == 0 {
            st.apply(&Record::Checkpoint(cp), seq, HEADER_LEN as u64);
        } else if cp.purged != st.purged || cp.last != st.last {
            return Err(WalError::Missing {
                dir: dir.to_owned(),
                what: format!(
                    "{} starts at purged {:?} / last {:?}, but the segments before it end at {:?} / {:?}",
                    path.display(),
                    cp.purged,
                    cp.last,
                    st.purged,
                    st.last
                ),
            });
        }
        let body_start = pos;
        loop {
            let (what, end) = match frame::parse(&data, pos, header.id) {
                Parsed::End if data.get(pos..).is_none_or(|rest| rest.iter().all(|&b| b == 0)) => break,
                Parsed::End => ("a zeroed record header with data after it", pos + frame::HEADER),
                Parsed::Frame { kind, payload, len } => {
                    let record = match Record::decode(kind, payload) {
                        Some(Record::Checkpoint(_)) => {
                            return Err(WalError::corrupt(&path, pos as u64, "a second checkpoint"));
                        }
                        Some(r) => r,
                        None => {
                            return Err(WalError::corrupt(
                                &path,
                                pos as u64,
                                "a record too short for its kind",
                            ));
                        }
                    };
                    st.apply(&record, seq, pos as u64);
                    pos += len;
                    continue;
                }
                Parsed::Bad { what, end } => (what, end),
            };
            if last_seg && torn(&data, pos, end, header.id) {
                let nonzero_end = data.iter().rposition(|&b| b != 0).map_or(pos, |i| i + 1);
                file.write_all_at(&vec![0; nonzero_end.saturating_sub(pos)], pos as u64)
                    .and_then(|()| file.sync_data())
                    .map_err(|e| WalError::io("cut the torn record off", &path, e))?;
                break;
            }
            return Err(WalError::corrupt(&path, pos as u64, what));
        }
        st.segments.insert(seq, Segment { file: Arc::new(file), path });
        if last_seg {
            tail = Some(Recovered {
                state: State::default(),
                seq,
                id: header.id,
                end: pos as u64,
                body_start: body_start as u64,
            });
        }
    }
    if let Some(what) = st.gap() {
        return Err(WalError::Missing { dir: dir.to_owned(), what });
    }
    let mut r = tail.expect("at least one segment");
    r.state = st;
    Ok(r)
}

/// Whether the bad record at `pos` (said to end at `end`) is a torn final write: only
/// zeros after it, and no valid record at any frame boundary after it.
fn torn(data: &[u8], pos: usize, end: usize, segment_id: u64) -> bool {
    let nonzero_end = data.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    if nonzero_end > end {
        return false;
    }
    (pos + 8..nonzero_end)
        .step_by(8)
        .all(|at| !matches!(frame::parse(data, at, segment_id), Parsed::Frame { .. }))
}

/// Makes the first segment of a new log.
fn first_segment(dir: &Path, segment_bytes: u64) -> Result<Recovered, WalError> {
    let id = segment::new_id();
    let mut init = Vec::new();
    Record::Checkpoint(Checkpoint::default()).put(&mut init, id);
    let p = segment::prepare(dir, 1, 0, id, segment_bytes, &init)?;
    segment::install(dir, &p)?;
    let mut state = State::default();
    let end = p.end;
    state.segments.insert(1, Segment { file: Arc::new(p.file), path: p.path });
    Ok(Recovered { state, seq: 1, id, end, body_start: end })
}
