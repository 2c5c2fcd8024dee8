//! Requests of the cluster API turned into store transactions. Each function is pure:
//! it reads the current state (and the clock, passed in) and returns the changes to
//! propose, so it is tested without IO. Raft's compare-and-set on versions catches
//! any write that raced with the read.

pub mod networks;
pub mod services;
pub mod stacks;

use shoal_api::ValidationErrors;
use shoal_api::compose::ComposeError;

use crate::store::{Kind, Object, Store};

/// Why a request cannot become a transaction.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlanError {
    /// The body is well formed but not valid; every problem names its field.
    #[error("{0}")]
    Invalid(ValidationErrors),
    /// No such object.
    #[error("no {kind} {id:?}: check the name or id (`shoal {kind} ls`)")]
    NotFound {
        /// Its kind.
        kind: Kind,
        /// The id or name asked for.
        id: String,
    },
    /// More than one object matches an id prefix.
    #[error("{id:?} matches more than one {kind}: give more of the id")]
    Ambiguous {
        /// Its kind.
        kind: Kind,
        /// The prefix.
        id: String,
    },
    /// The request clashes with the state (a port in use, a secret whose data
    /// changed…).
    #[error("{0}")]
    Conflict(String),
    /// The request makes no sense for this object (scaling a global service…).
    #[error("{0}")]
    Refused(String),
    /// A Compose file that cannot become a stack.
    #[error("{0}")]
    Compose(ComposeError),
}

impl From<ValidationErrors> for PlanError {
    fn from(e: ValidationErrors) -> Self {
        PlanError::Invalid(e)
    }
}

/// Finds an object by id, by unique name, or by a unique id prefix (as Docker does).
/// Nodes are also found by hostname.
pub fn find<'a>(store: &'a Store, kind: Kind, key: &str) -> Result<&'a Object, PlanError> {
    if let Some(o) = store.get(kind, key).or_else(|| store.by_name(kind, key)) {
        return Ok(o);
    }
    let not_found = || PlanError::NotFound { kind, id: key.to_owned() };
    if key.is_empty() {
        return Err(not_found());
    }
    if kind == Kind::Node {
        let mut by_host =
            store.list(Kind::Node).filter(|o| matches!(o, Object::Node(n) if n.description.hostname == key));
        if let (Some(o), None) = (by_host.next(), by_host.next()) {
            return Ok(o);
        }
    }
    let mut by_prefix = store.list(kind).filter(|o| o.id().starts_with(key));
    match (by_prefix.next(), by_prefix.next()) {
        (Some(o), None) => Ok(o),
        (Some(_), Some(_)) => Err(PlanError::Ambiguous { kind, id: key.to_owned() }),
        _ => Err(not_found()),
    }
}

/// The stack an object's labels place it in.
pub fn stack_of(labels: &std::collections::BTreeMap<String, String>) -> Option<&str> {
    labels.get(shoal_api::compose::STACK_LABEL).map(String::as_str)
}
