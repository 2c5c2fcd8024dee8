//! Raft for the manager store: openraft types, the entries' binary form, the log, the
//! state machine.

pub mod codec;
pub mod log_store;
pub mod network;
mod outbox;
pub mod proposal;
pub mod recovery;
pub mod seal;
mod snapshot;
mod spare_cpu;
pub mod state_machine;
pub mod types;

#[cfg(test)]
mod conformance;

pub use types::TypeConfig;

/// The Raft handle of a manager.
pub type Raft = openraft::Raft<TypeConfig, state_machine::StateMachine>;
