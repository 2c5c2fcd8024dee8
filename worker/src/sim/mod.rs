//! Simulated nodes for scale tests and benchmarks (`shoal bench-agents`): many real
//! agents in one process, each with its own identity and loopback address, talking
//! gRPC to real managers, with a timed in-memory node behind the agent's seam.
//!
//! - [`node`]: the timed fake node ([`TimedNode`]) and its [`Timings`];
//! - [`fleet`]: joining, starting, silencing and reviving the nodes ([`Fleet`]).

pub mod fleet;
pub mod node;

pub use fleet::{Fleet, FleetConfig, Progress, SimError};
pub use node::{TimedNode, Timings};
