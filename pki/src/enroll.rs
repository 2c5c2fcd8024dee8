//! The client side of getting and keeping a certificate: channels to managers over
//! TLS, the join (fetch the CA, check it against the token's digest, only then send
//! the token and a signing request), and renewal with the current certificate.

use std::time::Duration;

use shoal_proto::raft as pb;
use shoal_proto::raft::membership_client::MembershipClient;
use tonic::transport::{Channel, Endpoint};

use crate::ca::certs;
use crate::creds::unverified_client_config;
use crate::keys::{csr, generate_key};
use crate::transport::Connector;
use crate::{Credentials, JoinToken, PkiError};

/// Why getting a certificate failed.
#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    /// The address is not usable.
    #[error("{addr} is not a manager's address: give host:port of its cluster port")]
    BadAddress {
        /// The address given.
        addr: String,
    },
    /// Certificates, keys, the token or the CA were refused here.
    #[error(transparent)]
    Pki(#[from] PkiError),
    /// The manager refused, or could not be reached.
    #[error("the manager at {addr} refused ({code:?}): {message}")]
    Refused {
        /// The manager.
        addr: String,
        /// The gRPC status code.
        code: tonic::Code,
        /// Its reason.
        message: String,
    },
}

/// A lazily connected channel to the manager at `addr` (`host:port`) over TLS with
/// `creds`.
pub fn channel(addr: &str, creds: &Credentials) -> Result<Channel, PkiError> {
    channel_from(addr, creds, None)
}

/// [`channel`], dialing from the source address `from` when given.
pub fn channel_from(
    addr: &str,
    creds: &Credentials,
    from: Option<std::net::IpAddr>,
) -> Result<Channel, PkiError> {
    let connector = Connector::new(creds.client_config(&[b"h2"])?).from_ip(from);
    Ok(endpoint(addr)?.connect_with_connector_lazy(connector))
}

fn endpoint(addr: &str) -> Result<Endpoint, PkiError> {
    Ok(Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| PkiError::Verifier(format!("{addr} is not host:port: {e}")))?
        .connect_timeout(Duration::from_secs(5))
        .http2_keep_alive_interval(Duration::from_secs(10)))
}

fn refused(addr: &str) -> impl FnOnce(tonic::Status) -> EnrollError + '_ {
    move |s| EnrollError::Refused { addr: addr.to_owned(), code: s.code(), message: s.message().to_owned() }
}

/// Who is joining.
#[derive(Debug, Clone, Default)]
pub struct JoinRequest {
    /// The node's id.
    pub node_id: String,
    /// Its hostname.
    pub hostname: String,
    /// The address it advertises.
    pub advertise_addr: String,
    /// A manager's Raft id; 0 for a worker.
    pub raft_id: u64,
}

/// A node admitted to the cluster.
#[derive(Debug)]
pub struct Enrolled {
    /// Its credentials: the cluster's roots, its certificate and key.
    pub credentials: Credentials,
    /// The managers' addresses.
    pub managers: Vec<String>,
    /// The cluster's id.
    pub cluster_id: String,
}

/// Joins through the manager at `addr` with `token`: the managers' CA is checked
/// against the token's digest before the token's secret leaves this node.
pub async fn enroll(addr: &str, token: &str, req: JoinRequest) -> Result<Enrolled, EnrollError> {
    let token = JoinToken::parse(token)?;
    let bad = |_| EnrollError::BadAddress { addr: addr.to_owned() };
    // Step 1: the CA, over a connection that trusts nothing yet.
    let unverified =
        endpoint(addr).map_err(bad)?.connect_with_connector_lazy(Connector::new(unverified_client_config()?));
    let roots = MembershipClient::new(unverified)
        .get_root_ca(pb::GetRootCaRequest {})
        .await
        .map_err(refused(addr))?
        .into_inner()
        .roots_pem;
    let pinned = certs(&roots, "the managers' CA")?
        .into_iter()
        .find(|c| token.check_ca(c).is_ok())
        .ok_or_else(|| {
            let found = certs(&roots, "the managers' CA")
                .ok()
                .and_then(|c| c.first().map(crate::token::digest))
                .unwrap_or_default();
            PkiError::WrongCa { pinned: token.ca_digest.clone(), found }
        })?;
    let _ = pinned;
    // Step 2: a connection that checks the manager against that CA carries the
    // secret and the request.
    let credentials = Credentials::trusting(&roots)?;
    let key = generate_key()?;
    let request = pb::IssueRequest {
        token: token.to_string(),
        csr_pem: csr(&key)?,
        node_id: req.node_id,
        hostname: req.hostname,
        advertise_addr: req.advertise_addr,
        raft_id: req.raft_id,
    };
    let reply = MembershipClient::new(channel(addr, &credentials)?)
        .issue_certificate(request)
        .await
        .map_err(refused(addr))?
        .into_inner();
    credentials.set_roots(&reply.roots_pem)?;
    credentials.set_identity(&reply.chain_pem, &key)?;
    Ok(Enrolled { credentials, managers: reply.managers, cluster_id: reply.cluster_id })
}

/// Renews `creds`' certificate through the manager at `addr` (a new key each time);
/// the new certificate and the roots sent with it replace the old ones in place.
pub async fn renew(addr: &str, creds: &Credentials) -> Result<(), EnrollError> {
    let key = generate_key()?;
    let reply = MembershipClient::new(channel(addr, creds)?)
        .renew_certificate(pb::RenewRequest { csr_pem: csr(&key)? })
        .await
        .map_err(refused(addr))?
        .into_inner();
    creds.set_roots(&reply.roots_pem)?;
    creds.set_identity(&reply.chain_pem, &key)?;
    Ok(())
}
