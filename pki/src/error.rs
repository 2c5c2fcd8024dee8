//! What can go wrong with certificates, keys, tokens and TLS.

/// A PKI error.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// Making or signing a certificate failed.
    #[error("could not {what}: {source}")]
    Rcgen {
        /// What was being done.
        what: &'static str,
        /// rcgen's reason.
        #[source]
        source: rcgen::Error,
    },
    /// PEM text held no usable item.
    #[error("{what} is not valid PEM: {why}")]
    Pem {
        /// What was read.
        what: &'static str,
        /// Why it was refused.
        why: String,
    },
    /// A certificate could not be read.
    #[error("the certificate is malformed: {0}")]
    Certificate(String),
    /// A certificate does not name a Shoal node.
    #[error("the certificate does not name a Shoal node: {0}")]
    NotANode(String),
    /// A join token is not of the form `SHTKN-1-<digest>-<secret>`.
    #[error("malformed join token: {0}; get a current one with `shoal cluster join-token worker|manager`")]
    MalformedToken(String),
    /// The CA a manager presented is not the one the join token pins.
    #[error(
        "the manager's CA does not match the join token (token pins {pinned}, the manager has {found}): \
         the token is for another cluster, or someone is in between; get the token from the cluster's managers again"
    )]
    WrongCa {
        /// Digest the token pins.
        pinned: String,
        /// Digest of the CA presented.
        found: String,
    },
    /// rustls refused a configuration.
    #[error("TLS setup failed: {0}")]
    Tls(#[from] rustls::Error),
    /// A certificate verifier could not be built.
    #[error("TLS verifier setup failed: {0}")]
    Verifier(String),
    /// Reading or writing credentials on disk failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was done.
        what: &'static str,
        /// The file.
        path: std::path::PathBuf,
        /// The OS's reason.
        #[source]
        source: std::io::Error,
    },
}

impl PkiError {
    pub(crate) fn rcgen(what: &'static str) -> impl FnOnce(rcgen::Error) -> PkiError {
        move |source| PkiError::Rcgen { what, source }
    }
}
