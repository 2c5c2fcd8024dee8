//! The manager's own counters and histograms, bumped where things happen (Raft
//! proposals and snapshots, controller rounds, the dispatcher, API requests). One set
//! per manager, kept in its shared state; [`crate::metrics`] registers them for
//! scrapes beside the gauges it computes from the store. A leaf: it knows no other
//! module of the manager.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use shoal_telemetry::{B1, B2, B3, histogram};

/// The controllers of a round, as named in `shoal_reconcile_duration_seconds`.
pub const CONTROLLERS: [&str; 7] =
    ["replicated", "global", "update", "allocator", "scheduler", "reaper", "keys"];

/// A controller's label.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ControllerLabel {
    /// One of [`CONTROLLERS`].
    pub controller: &'static str,
}

/// The scheduler's decision about a pending task.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct DecisionLabel {
    /// `placed` or `unschedulable`.
    pub result: &'static str,
}

/// An API reply: its method, route (axum's matched template, never the URI) and
/// status code.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ReplyLabel {
    /// GET, POST, …
    pub method: String,
    /// The route template, as `/v1/services/{id}`.
    pub route: String,
    /// The status code, as `200`.
    pub code: String,
}

/// One manager's instruments.
#[derive(Debug, Clone)]
pub struct Instruments {
    /// Time for this manager's proposals (as leader) to commit and apply.
    pub proposal_duration: Histogram,
    /// Proposals that failed to commit (not refusals by the store's checks).
    pub proposals_failed: Counter,
    /// Leader changes this manager saw.
    pub leader_changes: Counter,
    /// Time to build a snapshot (copy, encode, seal and write it).
    pub snapshot_duration: Histogram,
    /// Time to install a snapshot the leader sent (decode, write, swap in the state).
    pub snapshot_install_duration: Histogram,
    /// Time for one controller's pass in a round, proposals included.
    pub reconcile_duration: Family<ControllerLabel, Histogram>,
    /// The scheduler's decisions about pending tasks.
    pub scheduler_decisions: Family<DecisionLabel, Counter>,
    /// Heartbeats the dispatcher received.
    pub heartbeats: Counter,
    /// Nodes the dispatcher marked down for missed heartbeats.
    pub heartbeats_expired: Counter,
    /// API request latency, to the reply's head.
    pub http_duration: Family<ReplyLabel, Histogram>,
    /// API replies.
    pub http_requests: Family<ReplyLabel, Counter>,
}

impl Default for Instruments {
    fn default() -> Self {
        let i = Instruments {
            proposal_duration: histogram(B2),
            proposals_failed: Counter::default(),
            leader_changes: Counter::default(),
            snapshot_duration: histogram(B3),
            snapshot_install_duration: histogram(B3),
            reconcile_duration: Family::new_with_constructor(|| histogram(B1)),
            scheduler_decisions: Family::default(),
            heartbeats: Counter::default(),
            heartbeats_expired: Counter::default(),
            http_duration: Family::new_with_constructor(|| histogram(B1)),
            http_requests: Family::default(),
        };
        // Known label values start at 0: a series never appears out of nowhere.
        for controller in CONTROLLERS {
            drop(i.reconcile_duration.get_or_create(&ControllerLabel { controller }));
        }
        for result in ["placed", "unschedulable"] {
            drop(i.scheduler_decisions.get_or_create(&DecisionLabel { result }));
        }
        i
    }
}

impl Instruments {
    /// Counts one controller pass of `took`.
    pub fn reconciled(&self, controller: &'static str, took: std::time::Duration) {
        self.reconcile_duration.get_or_create(&ControllerLabel { controller }).observe(took.as_secs_f64());
    }
}
