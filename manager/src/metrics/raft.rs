//! Raft figures at scrape time, from openraft's metrics of this manager: whether it
//! leads and whether there is a leader, its term, the last log, committed, applied,
//! snapshot and purged indexes, the log's length and file size, and each follower's
//! lag (on the leader; at most seven managers, so the `peer` label stays bounded).

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric as _};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::registry::Unit;

use openraft::async_runtime::WatchReceiver as _;
use openraft::type_config::alias::LogIdOf;

use crate::manager::Manager;
use crate::raft::TypeConfig;

/// One reading of a manager's Raft state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RaftFigures {
    /// This manager leads.
    pub is_leader: bool,
    /// Some manager leads, as far as this one knows.
    pub has_leader: bool,
    /// The current term.
    pub term: u64,
    /// The last log index.
    pub last_log_index: u64,
    /// The highest index known committed.
    pub commit_index: u64,
    /// The last applied index.
    pub applied_index: u64,
    /// The index the last snapshot covers.
    pub snapshot_index: u64,
    /// Entries in the log (after the purged prefix).
    pub log_entries: u64,
}

/// Reads this manager's Raft state.
pub fn figures(manager: &Manager) -> (RaftFigures, Vec<(u64, u64)>) {
    let m = manager.raft().metrics().borrow_watched().clone();
    let index = |l: &Option<LogIdOf<TypeConfig>>| l.as_ref().map_or(0, |l| l.index);
    let last = m.last_log_index.unwrap_or(0);
    let purged = m.purged.as_ref().map(|l| l.index);
    let f = RaftFigures {
        is_leader: manager.is_leader(),
        has_leader: m.current_leader.is_some(),
        term: m.current_term,
        last_log_index: last,
        commit_index: index(&m.local_committed),
        applied_index: index(&m.last_applied),
        snapshot_index: index(&m.snapshot),
        log_entries: match purged {
            Some(p) => last.saturating_sub(p),
            None => m.last_log_index.map_or(0, |l| l + 1),
        },
    };
    // Followers' lag behind the leader's last log, in entries.
    let lag = m
        .replication
        .as_ref()
        .map(|r| {
            r.iter()
                .filter(|(id, _)| **id != manager.id())
                .map(|(id, l)| (*id, last.saturating_sub(index(l))))
                .collect()
        })
        .unwrap_or_default();
    (f, lag)
}

/// The collector of a manager's Raft figures.
#[derive(Debug)]
pub struct RaftCollector(pub Arc<Manager>);

impl Collector for RaftCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let (f, lag) = figures(&self.0);
        let gauges: [(&str, &str, u64); 8] = [
            ("shoal_raft_is_leader", "1 if this manager leads the Raft group", u64::from(f.is_leader)),
            ("shoal_raft_has_leader", "1 if this manager knows of a leader", u64::from(f.has_leader)),
            ("shoal_raft_term", "The current Raft term", f.term),
            (
                "shoal_raft_last_log_index",
                "The index of the last entry in this manager's log",
                f.last_log_index,
            ),
            ("shoal_raft_commit_index", "The highest log index known committed", f.commit_index),
            ("shoal_raft_applied_index", "The last log index applied to the store", f.applied_index),
            ("shoal_raft_snapshot_index", "The log index the last snapshot covers", f.snapshot_index),
            (
                "shoal_raft_log_entries",
                "Entries in the log, after the prefix purged by snapshots",
                f.log_entries,
            ),
        ];
        for (name, help, value) in gauges {
            let g = ConstGauge::new(value as i64);
            g.encode(e.encode_descriptor(name, help, None, g.metric_type())?)?;
        }
        let size = ConstGauge::new(self.0.log_file_bytes() as i64);
        size.encode(e.encode_descriptor(
            "shoal_raft_log_size",
            "The size of the Raft log's file",
            Some(&Unit::Bytes),
            size.metric_type(),
        )?)?;
        let followers: Family<Vec<(&'static str, String)>, Gauge> = Family::default();
        for (peer, behind) in lag {
            followers.get_or_create(&vec![("peer", peer.to_string())]).set(behind as i64);
        }
        followers.encode(e.encode_descriptor(
            "shoal_raft_follower_lag_entries",
            "How far each follower's matched log is behind the leader's last entry (on the leader)",
            None,
            followers.metric_type(),
        )?)
    }
}
