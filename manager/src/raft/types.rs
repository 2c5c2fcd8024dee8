//! The openraft type configuration: log entries carry store transactions, and applying
//! one answers with the index it was applied at or the reason it was refused.

use serde::{Deserialize, Serialize};

use super::proposal::Proposal;
use crate::store::StoreError;

/// What applying a transaction gave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    /// The log index of the entry (the version of every object it wrote).
    pub index: u64,
    /// Why the transaction was refused, if it was; nothing of it was applied then.
    pub error: Option<StoreError>,
}

openraft::declare_raft_types!(
    /// Shoal's Raft types: entries are [`Proposal`]s (store transactions), responses are [`Applied`].
    pub TypeConfig:
        D = Proposal,
        R = Applied,
);
