//! The writer thread: the only code that writes segments. It takes every job queued
//! (no timer: a batch is whatever arrived while the last sync ran), writes their
//! records with one `pwrite`, syncs once with `fdatasync` if any job asked for it, and
//! then answers the jobs in order. A failed write or sync poisons the log: the failed
//! batch and every later one get an error, and no sync is retried (the kernel may have
//! dropped the pages it could not write).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::Receiver;

use crate::frame::Record;
use crate::segment::{self, HEADER_LEN};
use crate::state::{Segment, State};
use crate::{Done, Op, Shared, WalError};

/// One caller's writes, and who to tell once they are done.
pub(crate) struct Job {
    pub(crate) ops: Vec<Op>,
    pub(crate) sync: bool,
    pub(crate) done: Option<Done>,
}

/// The most jobs one batch takes, so a flood still gets answered in parts.
const JOBS_PER_BATCH: usize = 4096;

pub(crate) struct Writer {
    pub(crate) shared: Arc<Shared>,
    pub(crate) dir: PathBuf,
    pub(crate) segment_bytes: u64,
    /// The segment being written: its sequence number, id and file.
    pub(crate) seq: u64,
    pub(crate) id: u64,
    pub(crate) file: Arc<File>,
    pub(crate) path: PathBuf,
    /// Where the next frame goes, and where the first after the checkpoint went.
    pub(crate) end: u64,
    pub(crate) body_start: u64,
    /// Frames encoded but not yet written (they go at `end`).
    pub(crate) buf: Vec<u8>,
    /// Written since the last sync.
    pub(crate) dirty: bool,
    /// A purge was written whose segments are still to be deleted once it is synced.
    pub(crate) purge_pending: bool,
    /// Held while the writer runs: one writer per directory.
    pub(crate) _lock: nix::fcntl::Flock<File>,
}

impl Writer {
    pub(crate) fn run(mut self, jobs: &Receiver<Job>) {
        while let Ok(first) = jobs.recv() {
            self.shared.idle.store(false, Relaxed);
            let mut batch = vec![first];
            batch.extend(std::iter::from_fn(|| jobs.try_recv().ok()).take(JOBS_PER_BATCH - 1));
            let result = match self.shared.poisoned() {
                Some(e) => Err(e),
                None => self.write(&batch),
            };
            if let Err(e) = &result {
                self.shared.poison(e);
            }
            for job in batch {
                if let Some(done) = job.done {
                    done(result.clone());
                }
            }
            self.shared.idle.store(true, Relaxed);
        }
        // Every handle is gone: what was written lazily is synced on the way out.
        if self.shared.poisoned().is_none() && (self.dirty || self.purge_pending) {
            let _ = self.sync().and_then(|()| self.delete_purged());
        }
    }

    fn write(&mut self, batch: &[Job]) -> Result<(), WalError> {
        {
            let shared = self.shared.clone();
            let mut st = shared.state.write().expect("log state lock");
            for op in batch.iter().flat_map(|j| &j.ops) {
                let record = op.record();
                let len = record.frame_len() as u64;
                let at = self.end + self.buf.len() as u64;
                if at + len > self.segment_bytes && at > self.body_start {
                    self.cut(&mut st)?;
                }
                let at = self.end + self.buf.len() as u64;
                record.put(&mut self.buf, self.id);
                st.apply(&record, self.seq, at);
                self.purge_pending |= matches!(op, Op::PurgeThrough(_));
            }
        }
        self.flush()?;
        if batch.iter().any(|j| j.sync) {
            self.sync()?;
            if self.purge_pending {
                self.delete_purged()?;
            }
        }
        Ok(())
    }

    /// Writes the encoded frames.
    fn flush(&mut self) -> Result<(), WalError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.file.write_all_at(&self.buf, self.end).map_err(|e| WalError::io("write to", &self.path, e))?;
        self.end += self.buf.len() as u64;
        self.buf.clear();
        self.dirty = true;
        Ok(())
    }

    fn sync(&mut self) -> Result<(), WalError> {
        self.file.sync_data().map_err(|e| WalError::io("sync", &self.path, e))?;
        self.dirty = false;
        self.shared.syncs.fetch_add(1, Relaxed);
        Ok(())
    }

    /// Ends the current segment and starts the next: the new one is made and synced
    /// first (a full disk stops here, with the current segment intact), then the
    /// current one is cut to its data and synced, then the new one is put in place.
    fn cut(&mut self, st: &mut State) -> Result<(), WalError> {
        self.flush()?;
        let seq = self.seq + 1;
        let id = segment::new_id();
        let mut init = Vec::new();
        Record::Checkpoint(st.checkpoint()).put(&mut init, id);
        let new = segment::prepare(&self.dir, seq, st.next_index(), id, self.segment_bytes, &init)?;
        if let Err(e) = self.file.set_len(self.end).and_then(|()| self.file.sync_data()) {
            let _ = std::fs::remove_file(&new.tmp);
            return Err(WalError::io("end the log segment", &self.path, e));
        }
        self.dirty = false;
        self.shared.syncs.fetch_add(1, Relaxed);
        segment::install(&self.dir, &new)?;
        let file = Arc::new(new.file);
        st.segments.insert(seq, Segment { file: file.clone(), path: new.path.clone() });
        self.seq = seq;
        self.id = id;
        self.file = file;
        self.path = new.path;
        self.end = new.end;
        self.body_start = new.end;
        debug_assert!(self.end >= HEADER_LEN as u64);
        Ok(())
    }

    /// Deletes the segments that hold no live entry (never the current one), now that
    /// the purge that emptied them is synced.
    fn delete_purged(&mut self) -> Result<(), WalError> {
        self.purge_pending = false;
        let gone: Vec<Segment> = {
            let mut st = self.shared.state.write().expect("log state lock");
            let keep = st.entries.values().next().map_or(self.seq, |l| l.seg).min(self.seq);
            let seqs: Vec<u64> = st.segments.range(..keep).map(|(s, _)| *s).collect();
            seqs.iter().filter_map(|s| st.segments.remove(s)).collect()
        };
        if gone.is_empty() {
            return Ok(());
        }
        // Oldest first, each removal synced before the next: a crash never leaves a
        // gap in the sequence.
        for s in &gone {
            std::fs::remove_file(&s.path)
                .map_err(|e| WalError::io("delete the purged segment", &s.path, e))?;
            segment::sync_dir(&self.dir)?;
        }
        Ok(())
    }
}
