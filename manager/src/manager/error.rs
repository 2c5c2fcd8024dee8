//! The manager's error type and its wire forms: the gRPC `StoreError` message that
//! carries a refused proposal between managers, and the gRPC status of membership
//! calls. (Its HTTP form lives with the API, in `http/error.rs`.)

use std::path::PathBuf;
use std::sync::Arc;

use shoal_proto::raft as pb;

use crate::store::StoreError;

/// A source error kept whole, shareable between the callers of one cached answer.
pub type Source = Arc<dyn std::error::Error + Send + Sync>;

/// Errors of the manager's client API.
#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    /// The store refused the transaction.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No leader is known (an election is going on, or quorum is lost).
    #[error("no leader is known: an election is under way or a majority of managers is down; retry shortly")]
    NoLeader,
    /// The call needs the leader and this manager is not it.
    #[error("this manager is not the leader; the leader is {leader_addr}")]
    NotLeader {
        /// The leader's address.
        leader_addr: String,
    },
    /// A join token that is not this cluster's.
    #[error(
        "the join token is not valid for this cluster: get a current one with `shoal cluster join-token manager`"
    )]
    BadToken,
    /// `init` on a manager whose log already holds a cluster.
    #[error("this manager already belongs to a cluster")]
    AlreadyMember,
    /// A call that needs the cluster object before `--init` stored it.
    #[error("the cluster is not initialized yet: `shoal daemon --init` starts one")]
    NotInitialized,
    /// A manager asked to join with an id that is not a Raft id.
    #[error("{0:?} is not a manager id (a decimal Raft id)")]
    MalformedManagerId(String),
    /// A worker asked to join with something that is not a node id.
    #[error("{0:?} is not a node id")]
    MalformedNodeId(String),
    /// A membership change that would leave no majority of reachable managers.
    #[error(
        "that would leave {reachable} reachable of {remaining} managers, which is no majority: \
         bring managers back first, or force it"
    )]
    NoMajority {
        /// Managers left that the leader hears from.
        reachable: usize,
        /// Managers left in all.
        remaining: usize,
    },
    /// Removing a manager that still votes.
    #[error("manager {0} still votes: demote it first")]
    StillVotes(u64),
    /// A join token asked for a role that has none.
    #[error("no join token for role {0:?}: use worker or manager")]
    NoSuchRole(String),
    /// The leader refused a membership change it was sent; its reason.
    #[error("the leader refused: {0}")]
    Refused(String),
    /// The leader's data disk is nearly full: the write was refused before Raft
    /// saw it (a write that fails inside the log would stop the manager).
    #[error(
        "the leader's data disk is nearly full ({free_mib:.1} MiB free in {}; writes need {keep_mib:.1} MiB): \
         free space there, then retry; nothing was written",
        dir.display()
    )]
    DiskFull {
        /// The data dir.
        dir: PathBuf,
        /// MiB free.
        free_mib: f64,
        /// MiB a leader keeps free.
        keep_mib: f64,
    },
    /// The manager's keys at rest: locked, a wrong unlock key, a damaged key file.
    #[error(transparent)]
    Lock(#[from] super::lock::LockError),
    /// `unlock-key --rotate` while autolock is off.
    #[error(
        "autolock is off, so there is no unlock key: turn it on with `shoal cluster update --autolock true`"
    )]
    AutolockOff,
    /// Another manager reported a full disk (its message, as sent).
    #[error("{0}")]
    RemoteDiskFull(String),
    /// The manager's files could not be opened or made, or its port not bound.
    #[error("cannot {what}")]
    Io {
        /// What was being done, e.g. "listen on 127.0.0.1:2377".
        what: String,
        /// Why.
        #[source]
        source: Source,
    },
    /// Raft failed a call (a membership change, a write, a read index).
    #[error("Raft could not {what}")]
    Raft {
        /// The call.
        what: &'static str,
        /// openraft's error.
        #[source]
        source: Source,
    },
    /// Another manager could not be reached, or failed a call.
    #[error("the call to the manager at {addr} failed")]
    Rpc {
        /// Its address.
        addr: String,
        /// What gRPC said.
        #[source]
        source: Source,
    },
    /// Another manager answered with an error this one does not know (an older or
    /// newer version): its message.
    #[error("the manager answered: {0}")]
    Remote(String),
    /// A linearizable read could not wait long enough for this manager to apply what
    /// the leader had committed.
    #[error("this manager did not apply index {0} in time; retry")]
    NotApplied(u64),
    /// Certificates, keys or TLS setup failed.
    #[error(transparent)]
    Pki(#[from] shoal_pki::PkiError),
    /// Getting this manager's certificate from the cluster failed.
    #[error(transparent)]
    Enroll(#[from] shoal_pki::enroll::EnrollError),
    /// The caller's certificate does not allow the call.
    #[error("permission denied: {0}")]
    Forbidden(String),
}

impl ManagerError {
    /// A Raft call's failure.
    pub(crate) fn raft(
        what: &'static str,
        e: impl std::error::Error + Send + Sync + 'static,
    ) -> ManagerError {
        ManagerError::Raft { what, source: Arc::new(e) }
    }

    /// A failed call to the manager at `addr`.
    pub(crate) fn rpc(addr: &str, e: impl std::error::Error + Send + Sync + 'static) -> ManagerError {
        ManagerError::Rpc { addr: addr.to_owned(), source: Arc::new(e) }
    }

    /// A call carried to the leader failed: a refusal of this manager's certificate
    /// is said as such, anything else names the leader.
    pub(crate) fn forwarded(addr: &str, s: tonic::Status) -> ManagerError {
        match s.code() {
            tonic::Code::PermissionDenied => ManagerError::forbidden_from(s.message()),
            _ => ManagerError::rpc(addr, s),
        }
    }

    /// The refusal another manager sent, without its "permission denied: " prefix
    /// (this error adds its own).
    fn forbidden_from(message: &str) -> ManagerError {
        ManagerError::Forbidden(message.strip_prefix("permission denied: ").unwrap_or(message).to_owned())
    }

    /// A failure to open or make the manager's files, or to bind its port.
    pub(crate) fn io(what: String, e: impl std::error::Error + Send + Sync + 'static) -> ManagerError {
        ManagerError::Io { what, source: Arc::new(e) }
    }

    /// The gRPC form, with a stable code.
    pub fn to_pb(&self) -> pb::StoreError {
        let (code, field, leader_addr) = match self {
            ManagerError::Store(StoreError::Conflict { .. }) => ("conflict", String::new(), String::new()),
            ManagerError::Store(StoreError::NotFound { id, .. }) => ("not_found", id.clone(), String::new()),
            ManagerError::Store(StoreError::TooLarge { .. }) => ("too_large", String::new(), String::new()),
            ManagerError::Store(_) => ("invalid", String::new(), String::new()),
            ManagerError::NotLeader { leader_addr } => ("not_leader", String::new(), leader_addr.clone()),
            ManagerError::DiskFull { .. } | ManagerError::RemoteDiskFull(_) => {
                ("disk_full", String::new(), String::new())
            }
            ManagerError::BadToken => ("unauthenticated", String::new(), String::new()),
            ManagerError::Forbidden(_) => ("forbidden", String::new(), String::new()),
            // The rest travel as "no leader": the far side retries a while.
            ManagerError::NoLeader
            | ManagerError::AlreadyMember
            | ManagerError::NotInitialized
            | ManagerError::MalformedManagerId(_)
            | ManagerError::MalformedNodeId(_)
            | ManagerError::NoMajority { .. }
            | ManagerError::StillVotes(_)
            | ManagerError::NoSuchRole(_)
            | ManagerError::Refused(_)
            | ManagerError::Io { .. }
            | ManagerError::Lock(_)
            | ManagerError::AutolockOff
            | ManagerError::Raft { .. }
            | ManagerError::Rpc { .. }
            | ManagerError::Remote(_)
            | ManagerError::NotApplied(_)
            | ManagerError::Pki(_)
            | ManagerError::Enroll(_) => ("unavailable", String::new(), String::new()),
        };
        let message = match self {
            // The store error travels whole, so the far side rebuilds it exactly.
            ManagerError::Store(e) => serde_json::to_string(e).unwrap_or_else(|_| e.to_string()),
            other => shoal_api::report::chain(other),
        };
        pb::StoreError { code: code.into(), message, field, leader_addr }
    }

    /// The error another manager sent in its gRPC form.
    pub(crate) fn from_pb(e: pb::StoreError) -> ManagerError {
        match e.code.as_str() {
            "not_leader" => ManagerError::NotLeader { leader_addr: e.leader_addr },
            "unavailable" => ManagerError::NoLeader,
            "unauthenticated" => ManagerError::BadToken,
            "forbidden" => ManagerError::forbidden_from(&e.message),
            "disk_full" => ManagerError::RemoteDiskFull(e.message),
            _ => match serde_json::from_str::<StoreError>(&e.message) {
                Ok(s) => ManagerError::Store(s),
                Err(_) => ManagerError::Remote(e.message),
            },
        }
    }

    /// The gRPC status for errors of membership calls.
    pub fn to_status(&self) -> tonic::Status {
        let message = shoal_api::report::chain(self);
        match self {
            ManagerError::BadToken => tonic::Status::unauthenticated(message),
            ManagerError::Forbidden(_) => tonic::Status::permission_denied(message),
            ManagerError::NotLeader { .. } | ManagerError::NoLeader => tonic::Status::unavailable(message),
            e if e.is_refusal() => tonic::Status::failed_precondition(message),
            _ => tonic::Status::internal(message),
        }
    }

    /// The error a membership call's gRPC status stands for (the inverse of
    /// [`to_status`](Self::to_status)).
    pub(crate) fn from_status(addr: &str, s: tonic::Status) -> ManagerError {
        match s.code() {
            tonic::Code::Unauthenticated => ManagerError::BadToken,
            tonic::Code::PermissionDenied => ManagerError::forbidden_from(s.message()),
            tonic::Code::Unavailable => ManagerError::NoLeader,
            tonic::Code::FailedPrecondition => ManagerError::Refused(s.message().to_owned()),
            _ => ManagerError::rpc(addr, s),
        }
    }

    /// Whether the cluster refused the call as asked (asking again will not help),
    /// as opposed to failing to carry it out.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            ManagerError::AlreadyMember
                | ManagerError::NotInitialized
                | ManagerError::MalformedManagerId(_)
                | ManagerError::MalformedNodeId(_)
                | ManagerError::NoMajority { .. }
                | ManagerError::StillVotes(_)
                | ManagerError::NoSuchRole(_)
                | ManagerError::Refused(_)
                | ManagerError::AutolockOff
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Kind;

    /// Every error a leader can send a follower in a propose reply comes back as the
    /// same error (a store error whole, with its fields).
    #[test]
    fn proposal_errors_survive_the_trip_between_managers() {
        let cases = [
            ManagerError::Store(StoreError::Conflict {
                kind: Kind::Service,
                id: "s1".into(),
                expected: 3,
                actual: 4,
            }),
            ManagerError::Store(StoreError::NotFound { kind: Kind::Task, id: "t1".into() }),
            ManagerError::NotLeader { leader_addr: "127.0.0.1:2377".into() },
            ManagerError::BadToken,
            ManagerError::NoLeader,
        ];
        for e in cases {
            let back = ManagerError::from_pb(e.to_pb());
            assert_eq!(back.to_string(), e.to_string(), "{e:?} came back as {back:?}");
            assert_eq!(
                std::mem::discriminant(&back),
                std::mem::discriminant(&e),
                "{e:?} came back as {back:?}"
            );
        }
    }

    #[test]
    fn a_full_disk_keeps_its_message_across_managers() {
        let e = ManagerError::DiskFull { dir: "/data".into(), free_mib: 1.5, keep_mib: 32.0 };
        let back = ManagerError::from_pb(e.to_pb());
        assert!(matches!(back, ManagerError::RemoteDiskFull(_)), "{back:?}");
        assert_eq!(back.to_string(), e.to_string());
    }

    #[test]
    fn membership_refusals_map_to_failed_precondition_and_back() {
        let cases = [
            (ManagerError::StillVotes(7), tonic::Code::FailedPrecondition),
            (ManagerError::NoMajority { reachable: 1, remaining: 2 }, tonic::Code::FailedPrecondition),
            (ManagerError::BadToken, tonic::Code::Unauthenticated),
            (ManagerError::NoLeader, tonic::Code::Unavailable),
            (ManagerError::Remote("boom".into()), tonic::Code::Internal),
        ];
        for (e, code) in cases {
            let status = e.to_status();
            assert_eq!(status.code(), code, "{e:?}");
            let back = ManagerError::from_status("m1:2377", status);
            if code == tonic::Code::FailedPrecondition {
                assert!(matches!(back, ManagerError::Refused(ref m) if *m == e.to_string()), "{back:?}");
            }
        }
    }
}
