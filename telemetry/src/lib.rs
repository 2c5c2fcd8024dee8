//! Shoal's Prometheus plumbing, shared by managers and workers: the bucket sets every
//! histogram uses, the [`process`] collector (`process_*` from `/proc/self`),
//! [`exposition`] (OpenMetrics or text 0.0.4, chosen from `Accept`) and [`serve`]
//! (the `/metrics` handler, and the plain-HTTP listener of `--metrics-addr`).
//!
//! Metrics are built with `prometheus-client` (re-exported as [`prom`]): each part of
//! the node registers its own into one [`Registry`](prom::registry::Registry), which
//! is then shared read-only by the listeners.

pub mod exposition;
pub mod process;
pub mod serve;

pub use prometheus_client as prom;

use prom::metrics::histogram::Histogram;

/// B1, the Prometheus default: 5 ms to 10 s (API requests, container operations).
pub const B1: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// B2, etcd's disk buckets: 1 ms doubling to 8.192 s (Raft commits, fsyncs).
pub const B2: &[f64] =
    &[0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096, 8.192];

/// B3, long operations: 0.1 s to 10 min (snapshots, pulls, scheduling delay).
pub const B3: &[f64] = &[0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0];

/// A classic histogram with `buckets`.
pub fn histogram(buckets: &[f64]) -> Histogram {
    Histogram::new(buckets.iter().copied())
}
