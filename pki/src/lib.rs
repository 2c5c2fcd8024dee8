//! Shoal's cluster PKI, in one place for every process that speaks TLS: the cluster
//! CA and the node certificates it issues, the join tokens that pin it, and the TLS
//! setup that the managers' gRPC, the workers' sessions and the HTTPS API share.
//!
//! - [`subject`]: who a certificate names (node id, role, cluster) and when it expires.
//! - [`ca`]: the CA: made at `--init` or given, issuing node certificates from
//!   requests, cross-signing its successor during a rotation.
//! - [`keys`]: a node's own key and certificate signing request.
//! - [`token`]: join tokens (`SHTKN-1-<CA digest>-<secret>`) and CA digests.
//! - [`creds`]: a node's credentials (trusted roots, its chain, its key), swappable
//!   while connections use them, and the rustls configurations built on them.
//! - [`enroll`]: joining (CA checked against the token first) and renewing.
//! - [`renew`]: renewal at 50–80 % of a certificate's life, or at once on a role or CA change.
//! - [`transport`]: TLS over TCP for tonic servers and channels and for the API:
//!   accepted connections carry the peer's certificate subject.

pub mod ca;
pub mod creds;
pub mod enroll;
pub mod error;
pub mod keys;
pub mod renew;
pub mod subject;
pub mod token;
pub mod transport;

pub use ca::CaKeys;
pub use creds::Credentials;
pub use error::PkiError;
pub use subject::{CertInfo, Role, Subject};
pub use token::JoinToken;
pub use transport::Peer;

/// The DNS name every manager's certificate carries: clients check it, so only a
/// manager's certificate can serve the managers' port (Swarm's `swarm-manager`).
pub const MANAGER_NAME: &str = "shoal-manager";
/// The DNS name in every worker's certificate.
pub const WORKER_NAME: &str = "shoal-worker";

/// The crypto provider every configuration here uses (ring), named once so no
/// process-wide default is needed.
pub(crate) fn provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    std::sync::Arc::new(rustls::crypto::ring::default_provider())
}
