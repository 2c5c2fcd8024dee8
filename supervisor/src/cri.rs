//! Writing container log files: every line the container writes to stdout or stderr,
//! stamped with the time it was read, in the CRI format (`<RFC 3339 time> <stream>
//! <F|P> <text>`), rotated by size. The worker's `runtime::logs` reads them back.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::clock::rfc3339;

/// Longest line kept whole; longer ones are split into partial (`P`) records.
pub const MAX_LINE: usize = 16 * 1024;

/// Which output a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl Stream {
    /// The stream's name in a record.
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// The `n`th rotated file of the log at `path` (`<path>.<n>`, 1 the newest).
pub fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

/// Appends records to a log file and rotates it by size.
#[derive(Debug)]
pub struct LogWriter {
    path: PathBuf,
    file: File,
    size: u64,
    max_bytes: u64,
    max_files: u32,
    pending: [Vec<u8>; 2],
}

impl LogWriter {
    /// Opens (appending to) the log at `path`.
    pub fn open(path: &Path, max_bytes: u64, max_files: u32) -> io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(LogWriter {
            path: path.to_owned(),
            file,
            size,
            max_bytes,
            max_files,
            pending: [Vec::new(), Vec::new()],
        })
    }

    /// Takes bytes read from `stream`; complete lines are written at once.
    pub fn write(&mut self, stream: Stream, data: &[u8], now: SystemTime) -> io::Result<()> {
        let idx = stream as usize;
        self.pending[idx].extend_from_slice(data);
        while let Some(nl) = self.pending[idx].iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.pending[idx].drain(..=nl).collect();
            self.record(stream, &line[..line.len() - 1], true, now)?;
        }
        while self.pending[idx].len() > MAX_LINE {
            let chunk: Vec<u8> = self.pending[idx].drain(..MAX_LINE).collect();
            self.record(stream, &chunk, false, now)?;
        }
        Ok(())
    }

    /// Writes whatever is pending as final lines (the stream ended).
    pub fn flush_pending(&mut self, now: SystemTime) -> io::Result<()> {
        for stream in [Stream::Stdout, Stream::Stderr] {
            let rest = std::mem::take(&mut self.pending[stream as usize]);
            if !rest.is_empty() {
                self.record(stream, &rest, true, now)?;
            }
        }
        Ok(())
    }

    fn record(&mut self, stream: Stream, text: &[u8], full: bool, now: SystemTime) -> io::Result<()> {
        let mut rec = Vec::with_capacity(text.len() + 48);
        rec.extend_from_slice(rfc3339(now).as_bytes());
        rec.push(b' ');
        rec.extend_from_slice(stream.as_str().as_bytes());
        rec.extend_from_slice(if full { b" F " } else { b" P " });
        rec.extend_from_slice(text);
        rec.push(b'\n');
        if self.size > 0 && self.size + rec.len() as u64 > self.max_bytes {
            self.rotate()?;
        }
        self.file.write_all(&rec)?;
        self.size += rec.len() as u64;
        Ok(())
    }

    /// `log` → `log.1` → … → `log.<max_files>`, dropping the oldest.
    fn rotate(&mut self) -> io::Result<()> {
        if self.max_files == 0 {
            self.file.set_len(0)?;
        } else {
            for i in (1..self.max_files).rev() {
                let _ = fs::rename(rotated(&self.path, i), rotated(&self.path, i + 1));
            }
            fs::rename(&self.path, rotated(&self.path, 1))?;
            self.file = OpenOptions::new().create(true).append(true).open(&self.path)?;
        }
        self.size = 0;
        Ok(())
    }
}
