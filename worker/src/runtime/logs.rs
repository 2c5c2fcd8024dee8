//! Reading container log files: every line the container writes to stdout or stderr,
//! stamped with the time it was read, in the CRI format (`<RFC 3339 time> <stream>
//! <F|P> <text>`), rotated by size. The supervisor writes them
//! (`shoal_supervisor::cri`); readers here tail and follow them without loading whole
//! files.

use std::collections::VecDeque;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use shoal_supervisor::cri::rotated;
pub use shoal_supervisor::cri::{LogWriter, MAX_LINE, Stream};

/// One record read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// When the line was read from the container.
    pub time: DateTime<Utc>,
    /// Which output.
    pub stream: Stream,
    /// False for a piece of a longer line (more follows).
    pub full: bool,
    /// The text, without the newline.
    pub text: Vec<u8>,
}

/// Parses one record line (without its newline).
pub fn parse_record(line: &[u8]) -> Option<LogEntry> {
    let mut parts = line.splitn(4, |&b| b == b' ');
    let time = std::str::from_utf8(parts.next()?).ok()?;
    let time = DateTime::parse_from_rfc3339(time).ok()?.with_timezone(&Utc);
    let stream = match parts.next()? {
        b"stdout" => Stream::Stdout,
        b"stderr" => Stream::Stderr,
        _ => return None,
    };
    let full = parts.next()? == b"F";
    Some(LogEntry { time, stream, full, text: parts.next().unwrap_or_default().to_vec() })
}

/// Which records to read.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReadOptions {
    /// Only the last N records (None: all).
    pub tail: Option<usize>,
    /// Only records at or after this time.
    pub since: Option<DateTime<Utc>>,
}

/// Reads the log at `path` and its rotated files, oldest first, streaming each file so
/// only `tail` records are held in memory.
pub fn read(path: &Path, opts: ReadOptions, mut out: impl FnMut(LogEntry)) -> io::Result<()> {
    let mut files: Vec<PathBuf> = (1..=64).map(|i| rotated(path, i)).filter(|p| p.exists()).collect();
    files.reverse();
    files.push(path.to_owned());
    let mut kept: VecDeque<LogEntry> = VecDeque::new();
    for f in files {
        let file = match File::open(&f) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for line in BufReader::new(file).split(b'\n') {
            let Some(entry) = parse_record(&line?) else { continue };
            if opts.since.is_some_and(|s| entry.time < s) {
                continue;
            }
            match opts.tail {
                Some(n) => {
                    if n == 0 {
                        continue;
                    }
                    if kept.len() == n {
                        kept.pop_front();
                    }
                    kept.push_back(entry);
                }
                None => out(entry),
            }
        }
    }
    kept.into_iter().for_each(out);
    Ok(())
}

/// Follows a log file as it grows and rotates, from its current end or start.
#[derive(Debug)]
pub struct Follower {
    path: PathBuf,
    reader: Option<BufReader<File>>,
    inode: u64,
    partial: Vec<u8>,
}

impl Follower {
    /// Starts following `path` from its beginning (`from_start`) or its end.
    pub fn new(path: &Path, from_start: bool) -> Self {
        let mut f = Follower { path: path.to_owned(), reader: None, inode: 0, partial: Vec::new() };
        if let Ok(file) = File::open(path) {
            f.inode = file.metadata().map(|m| m.ino()).unwrap_or(0);
            let mut reader = BufReader::new(file);
            if !from_start {
                let _ = reader.seek(SeekFrom::End(0));
            }
            f.reader = Some(reader);
        }
        f
    }

    /// Returns every complete record written since the last call.
    pub fn poll(&mut self) -> io::Result<Vec<LogEntry>> {
        let mut out = Vec::new();
        self.drain(&mut out)?;
        // Rotated (or created): finish the old file, then continue with the new one.
        if let Ok(meta) = fs::metadata(&self.path)
            && meta.ino() != self.inode
        {
            self.drain(&mut out)?;
            self.inode = meta.ino();
            self.partial.clear();
            self.reader = File::open(&self.path).ok().map(BufReader::new);
            self.drain(&mut out)?;
        }
        Ok(out)
    }

    fn drain(&mut self, out: &mut Vec<LogEntry>) -> io::Result<()> {
        let Some(reader) = self.reader.as_mut() else { return Ok(()) };
        loop {
            let n = reader.read_until(b'\n', &mut self.partial)?;
            if n == 0 || self.partial.last() != Some(&b'\n') {
                return Ok(());
            }
            self.partial.pop();
            if let Some(e) = parse_record(&self.partial) {
                out.push(e);
            }
            self.partial.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: u64) -> std::time::SystemTime {
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000 + s)
    }

    #[test]
    fn lines_partials_and_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let mut w = LogWriter::open(&path, 200, 2).unwrap();
        w.write(Stream::Stdout, b"hel", t(0)).unwrap();
        w.write(Stream::Stderr, b"oops\n", t(1)).unwrap();
        w.write(Stream::Stdout, b"lo\nworld\n", t(2)).unwrap();
        let mut all = Vec::new();
        read(&path, ReadOptions::default(), |e| all.push(e)).unwrap();
        let texts: Vec<_> =
            all.iter().map(|e| (e.stream, String::from_utf8_lossy(&e.text).into_owned())).collect();
        assert_eq!(
            texts,
            [
                (Stream::Stderr, "oops".into()),
                (Stream::Stdout, "hello".into()),
                (Stream::Stdout, "world".into())
            ]
        );
        assert_eq!(all[1].time, DateTime::<Utc>::from(t(2)));

        let long = vec![b'x'; MAX_LINE + 10];
        let mut w = LogWriter::open(&dir.path().join("long"), 1 << 20, 1).unwrap();
        w.write(Stream::Stdout, &long, t(0)).unwrap();
        w.flush_pending(t(1)).unwrap();
        let mut parts = Vec::new();
        read(&dir.path().join("long"), ReadOptions::default(), |e| parts.push((e.full, e.text.len())))
            .unwrap();
        assert_eq!(parts, [(false, MAX_LINE), (true, 10)]);

        for i in 0..20 {
            w = LogWriter::open(&path, 200, 2).unwrap();
            w.write(Stream::Stdout, format!("line {i}\n").as_bytes(), t(10 + i)).unwrap();
        }
        assert!(path.exists() && rotated(&path, 1).exists() && rotated(&path, 2).exists());
        assert!(!rotated(&path, 3).exists());
        let mut last = Vec::new();
        read(&path, ReadOptions { tail: Some(2), since: None }, |e| last.push(e.text)).unwrap();
        assert_eq!(last, [b"line 18".to_vec(), b"line 19".to_vec()]);
        let mut since = Vec::new();
        let since_t = Some(DateTime::<Utc>::from(t(28)));
        read(&path, ReadOptions { tail: None, since: since_t }, |e| since.push(e.text)).unwrap();
        assert_eq!(since, [b"line 18".to_vec(), b"line 19".to_vec()]);
    }

    #[test]
    fn follower_sees_growth_and_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let mut w = LogWriter::open(&path, 120, 1).unwrap();
        w.write(Stream::Stdout, b"before\n", t(0)).unwrap();
        let mut f = Follower::new(&path, false);
        assert!(f.poll().unwrap().is_empty());
        w.write(Stream::Stdout, b"one\n", t(1)).unwrap();
        assert_eq!(f.poll().unwrap()[0].text, b"one");
        w.write(Stream::Stdout, b"two\n", t(2)).unwrap();
        w.write(Stream::Stdout, b"three\n", t(3)).unwrap(); // rotates
        let got: Vec<_> = f.poll().unwrap().into_iter().map(|e| e.text).collect();
        assert_eq!(got, [b"two".to_vec(), b"three".to_vec()]);
    }
}
