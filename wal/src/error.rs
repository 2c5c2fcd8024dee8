//! What can go wrong with a write-ahead log, worded for whoever has to act on it.

use std::path::PathBuf;
use std::sync::Arc;

/// Why the log could not be opened, read or written.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WalError {
    /// A file operation failed.
    #[error("cannot {op} {path}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// A record (or a segment's header) is damaged somewhere a torn write cannot explain.
    #[error(
        "the log segment {path} is damaged at byte {offset} ({what}); nothing was changed or cut: \
         restore the directory from a backup, or rebuild this node's log from its peers"
    )]
    Corrupt {
        /// The segment file.
        path: PathBuf,
        /// Where the damaged record (or header) starts.
        offset: u64,
        /// What is wrong with it.
        what: String,
    },
    /// The segments do not add up to one log (one is missing, or they disagree).
    #[error(
        "the log in {dir} is incomplete: {what}; restore the directory from a backup, or rebuild this node's log from its peers"
    )]
    Missing {
        /// The log's directory.
        dir: PathBuf,
        /// What does not add up.
        what: String,
    },
    /// The disk filled up when a new segment was made; everything acknowledged before is kept.
    #[error(
        "no space left for a new log segment in {dir}: free some space and restart; every write acknowledged before this is kept"
    )]
    DiskFull {
        /// The log's directory.
        dir: PathBuf,
    },
    /// Another process (or another open in this one) holds the log.
    #[error("the log in {dir} is in use by another process")]
    Locked {
        /// The log's directory.
        dir: PathBuf,
    },
    /// An earlier write or sync failed, so no later one is taken: what follows a lost
    /// write must never land after it.
    #[error(
        "the log stopped taking writes after an earlier failure (restart to recover from what is on disk): {0}"
    )]
    Poisoned(String),
    /// Every handle is gone or the writer thread ended.
    #[error("the log is closed")]
    Closed,
}

impl WalError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> WalError {
        WalError::Io { op, path: path.into(), source: Arc::new(source) }
    }

    pub(crate) fn corrupt(path: impl Into<PathBuf>, offset: u64, what: impl Into<String>) -> WalError {
        WalError::Corrupt { path: path.into(), offset, what: what.into() }
    }
}
