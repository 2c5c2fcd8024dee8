//! Shoal's manager: the cluster state in a Raft log. [`store`] is the deterministic,
//! in-memory state machine (objects, transactions with compare-and-set, events).

pub mod raft;
pub mod store;
