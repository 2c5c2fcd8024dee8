//! A manager's Prometheus metrics: [`register`] puts them all in the node's
//! registry. Counters and histograms live in [`crate::instruments`] and are bumped
//! where things happen; gauges are computed at scrape time by the collectors here,
//! one module per concern: [`raft`] (openraft's metrics), [`store`] (objects,
//! nodes, tasks and services, from one store read) and [`dispatcher`] (sessions).
//! The names are listed in `docs/metrics.md`.

pub mod dispatcher;
pub mod raft;
pub mod store;

use prometheus_client::registry::{Registry, Unit};

use crate::server::Served;

/// Registers the metrics of the manager `served` in `registry`.
pub fn register(registry: &mut Registry, served: &Served) {
    let i = served.manager.instruments().clone();
    registry.register_with_unit(
        "shoal_raft_proposal_duration",
        "Time for this manager's proposals to commit and apply (as leader)",
        Unit::Seconds,
        i.proposal_duration,
    );
    registry.register(
        "shoal_raft_proposals_failed",
        "Proposals that Raft failed to commit (store refusals not counted)",
        i.proposals_failed,
    );
    registry.register("shoal_raft_leader_changes_seen", "Leader changes this manager saw", i.leader_changes);
    registry.register_with_unit(
        "shoal_raft_snapshot_duration",
        "Time to build a snapshot: copy, encode, seal and write it",
        Unit::Seconds,
        i.snapshot_duration,
    );
    registry.register_with_unit(
        "shoal_raft_snapshot_install_duration",
        "Time to install a snapshot the leader sent: decode it, write it and swap in its state",
        Unit::Seconds,
        i.snapshot_install_duration,
    );
    registry.register_with_unit(
        "shoal_reconcile_duration",
        "Time for one controller's pass in a round, proposals included (on the leader)",
        Unit::Seconds,
        i.reconcile_duration,
    );
    registry.register(
        "shoal_scheduler_decisions",
        "The scheduler's decisions about pending tasks: placed, or told why not",
        i.scheduler_decisions,
    );
    registry.register("shoal_dispatcher_heartbeats", "Heartbeats the dispatcher received", i.heartbeats);
    registry.register(
        "shoal_dispatcher_heartbeat_expired",
        "Nodes the dispatcher marked down for missed heartbeats",
        i.heartbeats_expired,
    );
    registry.register_with_unit(
        "shoal_http_request_duration",
        "API request latency to the reply's head, by method, route template and status code",
        Unit::Seconds,
        i.http_duration,
    );
    registry.register(
        "shoal_http_requests",
        "API replies, by method, route template and status code",
        i.http_requests,
    );
    registry.register_collector(Box::new(raft::RaftCollector(served.manager.clone())));
    registry.register_collector(Box::new(store::StoreCollector(served.manager.clone())));
    registry.register_collector(Box::new(dispatcher::DispatcherCollector(served.dispatcher.clone())));
}
