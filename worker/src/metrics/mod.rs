//! The worker's Prometheus metrics: container starts, failures, OOM kills and
//! operation latency (bumped by the [`agent::Executor`](crate::agent::Executor)),
//! image pulls, the embedded DNS's queries and replies, and load-balancer table
//! updates. They are one set per process, as a node runs one agent: [`instruments`]
//! reaches them from the runtime, DNS and nftables code without threading a handle
//! through each; [`register`] puts them in the node's registry. Label values known in
//! advance are pre-set to 0; no label carries a task or container id, except the
//! per-container series of [`containers`], which a node exports only when asked
//! (`--metrics-per-container`).

pub mod containers;

use std::sync::LazyLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use shoal_telemetry::{B1, B3, histogram};

/// Why a container counts as failed.
pub const FAILURE_REASONS: [&str; 5] = ["start", "exit_code", "signal", "oom", "lost"];
/// Timed container operations.
pub const OPERATIONS: [&str; 3] = ["start", "stop", "remove"];
/// DNS query types counted by name; the rest are `other`.
pub const DNS_TYPES: [&str; 6] = ["A", "AAAA", "PTR", "SRV", "TXT", "other"];
/// DNS reply codes counted by name; the rest are `other`.
pub const DNS_RCODES: [&str; 7] =
    ["NOERROR", "NXDOMAIN", "SERVFAIL", "REFUSED", "NOTIMP", "FORMERR", "other"];
/// Load-balancer tables: the per-sandbox VIP table, the routing mesh's ingress table.
pub const LB_TABLES: [&str; 2] = ["vips", "ingress"];

/// A label with one value from a fixed list.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct Reason {
    /// One of [`FAILURE_REASONS`].
    pub reason: &'static str,
}

/// A container operation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct Op {
    /// One of [`OPERATIONS`].
    pub op: &'static str,
}

/// A DNS query type.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct QueryType {
    /// One of [`DNS_TYPES`].
    pub r#type: &'static str,
}

/// A DNS reply code.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct Rcode {
    /// One of [`DNS_RCODES`].
    pub rcode: &'static str,
}

/// A load-balancer table.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct Table {
    /// One of [`LB_TABLES`].
    pub table: &'static str,
}

/// The worker's instruments.
#[derive(Debug)]
pub struct Instruments {
    /// Task containers started.
    pub container_starts: Counter,
    /// Task containers that failed: did not start, exited non-zero, were killed, ran
    /// out of memory, or lost their shim.
    pub container_failures: Family<Reason, Counter>,
    /// Task containers the kernel OOM-killed.
    pub container_oom_kills: Counter,
    /// Time for container operations.
    pub container_operation_duration: Family<Op, Histogram>,
    /// Time for image pulls.
    pub image_pull_duration: Histogram,
    /// Queries the embedded DNS took.
    pub dns_requests: Family<QueryType, Counter>,
    /// Replies it sent.
    pub dns_responses: Family<Rcode, Counter>,
    /// Time to answer (forwarded queries included).
    pub dns_request_duration: Histogram,
    /// nftables load-balancer updates applied.
    pub lb_updates: Family<Table, Counter>,
}

impl Instruments {
    fn new() -> Instruments {
        let i = Instruments {
            container_starts: Counter::default(),
            container_failures: Family::default(),
            container_oom_kills: Counter::default(),
            container_operation_duration: Family::new_with_constructor(|| histogram(B1)),
            image_pull_duration: histogram(B3),
            dns_requests: Family::default(),
            dns_responses: Family::default(),
            dns_request_duration: histogram(B1),
            lb_updates: Family::default(),
        };
        for reason in FAILURE_REASONS {
            drop(i.container_failures.get_or_create(&Reason { reason }));
        }
        for op in OPERATIONS {
            drop(i.container_operation_duration.get_or_create(&Op { op }));
        }
        for r#type in DNS_TYPES {
            drop(i.dns_requests.get_or_create(&QueryType { r#type }));
        }
        for rcode in DNS_RCODES {
            drop(i.dns_responses.get_or_create(&Rcode { rcode }));
        }
        for table in LB_TABLES {
            drop(i.lb_updates.get_or_create(&Table { table }));
        }
        i
    }

    /// Counts a failed container.
    pub fn failed(&self, reason: &'static str) {
        self.container_failures.get_or_create(&Reason { reason }).inc();
    }

    /// Times a container operation.
    pub fn timed(&self, op: &'static str, took: std::time::Duration) {
        self.container_operation_duration.get_or_create(&Op { op }).observe(took.as_secs_f64());
    }

    /// Counts a DNS query of `qtype` (its mnemonic, as `AAAA`).
    pub fn dns_request(&self, qtype: &str) {
        let r#type = DNS_TYPES.iter().find(|t| **t == qtype).copied().unwrap_or("other");
        self.dns_requests.get_or_create(&QueryType { r#type }).inc();
    }

    /// Counts a DNS reply with `rcode` (its mnemonic, as `NXDOMAIN`).
    pub fn dns_response(&self, rcode: &str) {
        let rcode = DNS_RCODES.iter().find(|c| c.eq_ignore_ascii_case(rcode)).copied().unwrap_or("other");
        self.dns_responses.get_or_create(&Rcode { rcode }).inc();
    }

    /// Counts an applied update of a load-balancer table.
    pub fn lb_updated(&self, table: &'static str) {
        self.lb_updates.get_or_create(&Table { table }).inc();
    }
}

static INSTRUMENTS: LazyLock<Instruments> = LazyLock::new(Instruments::new);

/// This process's worker instruments.
pub fn instruments() -> &'static Instruments {
    &INSTRUMENTS
}

/// Registers the worker's metrics in `registry`.
pub fn register(registry: &mut Registry) {
    let i = instruments();
    registry.register("shoal_container_starts", "Task containers started", i.container_starts.clone());
    registry.register(
        "shoal_container_failures",
        "Task containers that failed, by reason: start, exit_code, signal, oom, lost",
        i.container_failures.clone(),
    );
    registry.register(
        "shoal_container_oom_kills",
        "Task containers the kernel OOM-killed",
        i.container_oom_kills.clone(),
    );
    registry.register_with_unit(
        "shoal_container_operation_duration",
        "Time for container operations, by op: start, stop, remove",
        Unit::Seconds,
        i.container_operation_duration.clone(),
    );
    registry.register_with_unit(
        "shoal_image_pull_duration",
        "Time for image pulls",
        Unit::Seconds,
        i.image_pull_duration.clone(),
    );
    registry.register("shoal_dns_requests", "Queries the embedded DNS took, by type", i.dns_requests.clone());
    registry.register(
        "shoal_dns_responses",
        "Replies the embedded DNS sent, by code",
        i.dns_responses.clone(),
    );
    registry.register_with_unit(
        "shoal_dns_request_duration",
        "Time for the embedded DNS to answer, forwarded queries included",
        Unit::Seconds,
        i.dns_request_duration.clone(),
    );
    registry.register(
        "shoal_lb_updates",
        "nftables load-balancer updates applied, by table: vips, ingress",
        i.lb_updates.clone(),
    );
}
