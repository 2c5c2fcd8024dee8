//! What the runtime keeps on disk per container, under `<data>/containers/<id>/`, so a
//! restarted daemon finds its containers again: the config, the shim's pids, and the
//! exit record.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Written by the shim once the container's program runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Started {
    /// The shim's pid, and its start time (pid + start time name one process).
    pub shim_pid: i32,
    /// See `shim_pid`.
    pub shim_start: u64,
    /// The container's init, as the host sees it.
    pub init_pid: i32,
    /// See `init_pid`.
    pub init_start: u64,
    /// When the program was started.
    pub started_at: DateTime<Utc>,
}

/// Written by the supervisor when the container's init has exited
/// (`shoal_supervisor::watch::ExitRecord`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exited {
    /// Exit code, when the init exited by itself.
    pub exit_code: Option<i32>,
    /// Signal number, when a signal killed it.
    pub signal: Option<i32>,
    /// The kernel OOM-killed a process of the container.
    pub oom_killed: bool,
    /// When the program started.
    pub started_at: DateTime<Utc>,
    /// When the init exited.
    pub finished_at: DateTime<Utc>,
}

impl Exited {
    /// The code a shell would report: the exit code, or 128 + signal.
    pub fn code(&self) -> i32 {
        self.exit_code.unwrap_or_else(|| 128 + self.signal.unwrap_or(0))
    }

    /// What happened, in words, for a task's error ("exit code 1", "OOM killed").
    pub fn describe(&self) -> String {
        let what = match (self.exit_code, self.signal) {
            (Some(code), _) => format!("exit code {code}"),
            (None, Some(sig)) => format!("killed by signal {sig}"),
            (None, None) => "ended".to_owned(),
        };
        if self.oom_killed { format!("{what}; out of memory (OOM killed)") } else { what }
    }
}

/// The files of one container.
#[derive(Debug, Clone)]
pub struct StateDir(pub PathBuf);

impl StateDir {
    /// `config.json`.
    pub fn config(&self) -> PathBuf {
        self.0.join("config.json")
    }
    /// `started.json`.
    pub fn started(&self) -> PathBuf {
        self.0.join("started.json")
    }
    /// `exited.json`, written by the supervisor.
    pub fn exited(&self) -> PathBuf {
        self.0.join(shoal_supervisor::watch::EXITED_FILE)
    }
    /// The log file, written by the supervisor.
    pub fn log(&self) -> PathBuf {
        self.0.join(shoal_supervisor::watch::LOG_FILE)
    }
}
