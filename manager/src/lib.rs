//! Shoal's manager: the cluster state in a Raft log. [`store`] is the deterministic,
//! in-memory state machine (objects, transactions with compare-and-set, events);
//! [`raft`] keeps it replicated (openraft, a redb log, gRPC between managers);
//! [`manager`] is one running manager and the API the rest of the manager uses;
//! [`server`] starts one and serves it over gRPC with the dispatcher;
//! [`plan`] turns API requests into transactions; [`http`] serves the cluster API;
//! [`docker`] serves the Docker Engine API's swarm endpoints on the same state;
//! [`orchestrator`] holds the leader-only controllers that make services into tasks;
//! [`dispatcher`] serves the workers' sessions; [`metrics`] exports them all to
//! Prometheus, with the counters of [`instruments`].

pub mod dispatcher;
pub mod docker;
pub mod http;
pub mod instruments;
pub mod manager;
pub mod metrics;
pub mod orchestrator;
pub mod plan;
pub mod raft;
pub mod server;
pub mod store;

/// Generators shared with shoal-api's fuzz tests (JSON trees, mutations of seeds).
#[cfg(test)]
#[path = "../../api/tests/fuzz_support/mod.rs"]
pub(crate) mod fuzz_support;
#[cfg(test)]
pub(crate) mod testing;
