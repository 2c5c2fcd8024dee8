//! Shoal's worker side: the built-in container runtime ([`runtime`]) with its cgroup
//! handling ([`cgroups`]), the image store ([`image`]), and the [`agent`] that runs the
//! tasks the managers assign to this node.
//!
//! Module map (arrows: "uses"):
//! - [`agent`] → [`runtime`], [`image`]: the session with the dispatcher, one
//!   reconciler owning the agent's state, and the [`agent::Node`] seam it acts
//!   through (the built-in runtime for real, an in-memory fake for tests);
//! - [`runtime`] → [`image`] (the image's process defaults, layer copies shifted for
//!   user namespaces), [`cgroups`], [`json_file`]: containers;
//! - [`image`] → [`json_file`]: the image store and registry pulls, never the runtime;
//! - [`cgroups`]: cgroup v1 and v2;
//! - [`network`]: the overlay data plane (namespaces, VXLAN, veths, nftables LB and
//!   routing mesh), applied level-triggered from a desired state;
//! - [`json_file`]: small JSON state files written atomically;
//! - [`sim`] → [`agent`]: simulated nodes (real agents, a timed fake node) for scale tests;
//! - [`metrics`]: the worker's Prometheus counters, bumped by the others;
//! - [`network`]: the sandboxes' networking: the embedded DNS resolver ([`network::dns`]);

pub mod agent;
pub mod cgroups;
pub mod image;
pub mod json_file;
pub mod metrics;
pub mod network;
pub mod runtime;
pub mod sim;
