//! A node's own key pair (ECDSA P-256, as Swarm's) and the certificate signing
//! request it sends when it joins or renews. The key never leaves the node.

use rcgen::{CertificateParams, KeyPair};

use crate::PkiError;

/// A new private key, PKCS#8 PEM.
pub fn generate_key() -> Result<String, PkiError> {
    Ok(KeyPair::generate().map_err(PkiError::rcgen("generate a key"))?.serialize_pem())
}

/// A certificate signing request for `key_pem`. The CA ignores the subject it
/// names: the managers decide the node's id, role and cluster.
pub fn csr(key_pem: &str) -> Result<String, PkiError> {
    let key = KeyPair::from_pem(key_pem).map_err(PkiError::rcgen("read the node's key"))?;
    let params = CertificateParams::new(Vec::<String>::new()).map_err(PkiError::rcgen("make a request"))?;
    params
        .serialize_request(&key)
        .and_then(|r| r.pem())
        .map_err(PkiError::rcgen("make a certificate signing request"))
}
