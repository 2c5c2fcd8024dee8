//! A node's credentials: the roots it trusts, its certificate chain and its key.
//! They change while connections use them (renewal, CA rotation), so the rustls
//! configurations built here read them at each handshake: a renewed certificate or a
//! new root takes effect on the next connection without rebuilding a server.

use std::path::Path;
use std::sync::{Arc, RwLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{
    ClientConfig, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

use crate::ca::certs;
use crate::{CertInfo, PkiError, provider};

/// What the credentials hold now.
#[derive(Debug)]
struct State {
    roots: Vec<CertificateDer<'static>>,
    roots_pem: String,
    identity: Option<Identity>,
    client_verifier: Arc<dyn ClientCertVerifier>,
    server_verifier: Arc<dyn ServerCertVerifier>,
}

#[derive(Debug)]
struct Identity {
    key: Arc<CertifiedKey>,
    info: CertInfo,
    chain_pem: String,
    key_pem: Zeroed,
}

/// Key text, kept out of Debug output.
struct Zeroed(String);

impl std::fmt::Debug for Zeroed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A node's credentials, shared by every TLS configuration of the process; clones
/// share them.
#[derive(Debug, Clone)]
pub struct Credentials {
    state: Arc<RwLock<State>>,
}

type Verifiers = (Arc<dyn ClientCertVerifier>, Arc<dyn ServerCertVerifier>);

fn verifiers(roots: &[CertificateDer<'static>]) -> Result<Verifiers, PkiError> {
    let mut store = RootCertStore::empty();
    for r in roots {
        store.add(r.clone()).map_err(|e| PkiError::Verifier(format!("a trusted root is unusable: {e}")))?;
    }
    let store = Arc::new(store);
    // A client without a certificate may connect (a node joining has none yet);
    // each call then decides whether it needs one.
    let client = WebPkiClientVerifier::builder_with_provider(store.clone(), provider())
        .allow_unauthenticated()
        .build()
        .map_err(|e| PkiError::Verifier(e.to_string()))?;
    let server = WebPkiServerVerifier::builder_with_provider(store, provider())
        .build()
        .map_err(|e| PkiError::Verifier(e.to_string()))?;
    Ok((client, server))
}

impl Credentials {
    /// Credentials that trust nothing and hold nothing yet (a manager before it
    /// starts or joins a cluster): every handshake fails.
    pub fn empty() -> Credentials {
        let refuse = Arc::new(Refuse);
        let state = State {
            roots: Vec::new(),
            roots_pem: String::new(),
            identity: None,
            client_verifier: refuse.clone(),
            server_verifier: refuse,
        };
        Credentials { state: Arc::new(RwLock::new(state)) }
    }

    /// Credentials that trust the roots in `roots_pem` and hold no certificate yet.
    pub fn trusting(roots_pem: &str) -> Result<Credentials, PkiError> {
        let roots = certs(roots_pem, "the trusted roots")?;
        if roots.is_empty() {
            return Err(PkiError::Pem { what: "the trusted roots", why: "no certificate in it".into() });
        }
        let (client_verifier, server_verifier) = verifiers(&roots)?;
        let state = State {
            roots,
            roots_pem: roots_pem.to_owned(),
            identity: None,
            client_verifier,
            server_verifier,
        };
        Ok(Credentials { state: Arc::new(RwLock::new(state)) })
    }

    /// Credentials trusting `roots_pem`, holding the chain `chain_pem` (leaf first)
    /// over the key `key_pem`.
    pub fn new(roots_pem: &str, chain_pem: &str, key_pem: &str) -> Result<Credentials, PkiError> {
        let creds = Credentials::trusting(roots_pem)?;
        creds.set_identity(chain_pem, key_pem)?;
        Ok(creds)
    }

    /// Replaces the certificate and key (after a join or a renewal).
    pub fn set_identity(&self, chain_pem: &str, key_pem: &str) -> Result<(), PkiError> {
        let chain = certs(chain_pem, "the node certificate")?;
        let leaf = chain
            .first()
            .ok_or(PkiError::Pem { what: "the node certificate", why: "no certificate in it".into() })?;
        let info = CertInfo::parse(leaf)?;
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
            .map_err(|e| PkiError::Pem { what: "the node key", why: e.to_string() })?;
        let key = Arc::new(CertifiedKey::from_der(chain, key, &provider())?);
        let identity =
            Identity { key, info, chain_pem: chain_pem.to_owned(), key_pem: Zeroed(key_pem.to_owned()) };
        self.state.write().expect("credentials lock").identity = Some(identity);
        Ok(())
    }

    /// Replaces the trusted roots (a CA rotation).
    pub fn set_roots(&self, roots_pem: &str) -> Result<(), PkiError> {
        let roots = certs(roots_pem, "the trusted roots")?;
        if roots.is_empty() {
            return Err(PkiError::Pem { what: "the trusted roots", why: "no certificate in it".into() });
        }
        let (client_verifier, server_verifier) = verifiers(&roots)?;
        let mut s = self.state.write().expect("credentials lock");
        s.roots = roots;
        s.roots_pem = roots_pem.to_owned();
        s.client_verifier = client_verifier;
        s.server_verifier = server_verifier;
        Ok(())
    }

    /// The trusted roots, PEM.
    pub fn roots_pem(&self) -> String {
        self.state.read().expect("credentials lock").roots_pem.clone()
    }

    /// What this node's certificate says, once it has one.
    pub fn info(&self) -> Option<CertInfo> {
        self.state.read().expect("credentials lock").identity.as_ref().map(|i| i.info.clone())
    }

    /// The private key, PEM, once there is one (to hand to a process's other
    /// credentials; never logged).
    pub fn key_pem(&self) -> Option<String> {
        self.state.read().expect("credentials lock").identity.as_ref().map(|i| i.key_pem.0.clone())
    }

    /// The chain, PEM, once there is one.
    pub fn chain_pem(&self) -> Option<String> {
        self.state.read().expect("credentials lock").identity.as_ref().map(|i| i.chain_pem.clone())
    }

    /// Checks `chain` (leaf first) against the trusted roots now, as a TLS peer
    /// would: for a certificate that arrived some other way than a handshake.
    pub fn verify(&self, chain: &[CertificateDer<'_>]) -> Result<CertInfo, PkiError> {
        let (leaf, rest) = chain.split_first().ok_or_else(|| PkiError::Certificate("empty chain".into()))?;
        let verifier = self.state.read().expect("credentials lock").client_verifier.clone();
        verifier.verify_client_cert(leaf, rest, UnixTime::now())?;
        CertInfo::parse(leaf)
    }

    // Files under a node's data dir: `ca.pem`, `node.pem`, `node.key` (mode 0600).
    const ROOTS: &'static str = "ca.pem";
    const CHAIN: &'static str = "node.pem";
    const KEY: &'static str = "node.key";

    /// Writes the credentials to `dir` (each file replaced atomically).
    pub fn save(&self, dir: &Path) -> Result<(), PkiError> {
        let (roots, chain, key) = {
            let s = self.state.read().expect("credentials lock");
            let id = s.identity.as_ref();
            (s.roots_pem.clone(), id.map(|i| i.chain_pem.clone()), id.map(|i| i.key_pem.0.clone()))
        };
        std::fs::create_dir_all(dir).map_err(|source| PkiError::Io {
            what: "create",
            path: dir.into(),
            source,
        })?;
        write_file(&dir.join(Self::ROOTS), &roots, 0o644)?;
        if let (Some(chain), Some(key)) = (chain, key) {
            write_file(&dir.join(Self::KEY), &key, 0o600)?;
            write_file(&dir.join(Self::CHAIN), &chain, 0o644)?;
        }
        Ok(())
    }

    /// Reads credentials saved in `dir`, if there are any.
    pub fn load(dir: &Path) -> Result<Option<Credentials>, PkiError> {
        let read = |name: &str| {
            let path = dir.join(name);
            match std::fs::read_to_string(&path) {
                Ok(s) => Ok(Some(s)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(source) => Err(PkiError::Io { what: "read", path, source }),
            }
        };
        let (Some(roots), Some(chain), Some(key)) =
            (read(Self::ROOTS)?, read(Self::CHAIN)?, read(Self::KEY)?)
        else {
            return Ok(None);
        };
        Credentials::new(&roots, &chain, &key).map(Some)
    }

    /// The configuration of a TLS server: it presents this node's certificate and
    /// verifies a client's if the client offers one. `alpn`: protocols offered.
    pub fn server_config(&self, alpn: &[&[u8]]) -> Result<Arc<ServerConfig>, PkiError> {
        let mut cfg = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(Arc::new(Dynamic(self.clone())))
            .with_cert_resolver(Arc::new(Dynamic(self.clone())));
        cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(cfg))
    }

    /// The configuration of a TLS client: it checks the server against the trusted
    /// roots and presents this node's certificate when it has one.
    pub fn client_config(&self, alpn: &[&[u8]]) -> Result<Arc<ClientConfig>, PkiError> {
        let mut cfg = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Dynamic(self.clone())))
            .with_client_cert_resolver(Arc::new(Dynamic(self.clone())));
        cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(cfg))
    }
}

/// A client configuration that takes any server certificate: only for asking a
/// manager for its CA before joining, whose answer is trusted only if its digest is
/// the one the join token pins. Nothing secret is sent over it.
pub fn unverified_client_config() -> Result<Arc<ClientConfig>, PkiError> {
    let cfg = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer))
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

fn write_file(path: &Path, text: &str, mode: u32) -> Result<(), PkiError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let tmp = path.with_extension("new");
    let io = |what: &'static str| move |source| PkiError::Io { what, path: path.into(), source };
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io("write"))?;
    f.write_all(text.as_bytes()).and_then(|()| f.sync_all()).map_err(io("write"))?;
    std::fs::rename(&tmp, path).map_err(io("replace"))
}

/// The credentials seen from rustls: resolvers and verifiers that read the current
/// state at each handshake.
#[derive(Debug)]
struct Dynamic(Credentials);

impl Dynamic {
    fn key(&self) -> Option<Arc<CertifiedKey>> {
        self.0.state.read().expect("credentials lock").identity.as_ref().map(|i| i.key.clone())
    }
    fn client_verifier(&self) -> Arc<dyn ClientCertVerifier> {
        self.0.state.read().expect("credentials lock").client_verifier.clone()
    }
    fn server_verifier(&self) -> Arc<dyn ServerCertVerifier> {
        self.0.state.read().expect("credentials lock").server_verifier.clone()
    }
}

impl ResolvesServerCert for Dynamic {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.key()
    }
}

impl ResolvesClientCert for Dynamic {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        self.key()
    }
    fn has_certs(&self) -> bool {
        self.key().is_some()
    }
}

impl ClientCertVerifier for Dynamic {
    fn client_auth_mandatory(&self) -> bool {
        false
    }
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.client_verifier().verify_client_cert(end_entity, intermediates, now)
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.client_verifier().verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.client_verifier().verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.client_verifier().supported_verify_schemes()
    }
}

impl ServerCertVerifier for Dynamic {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.server_verifier().verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.server_verifier().verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.server_verifier().verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.server_verifier().supported_verify_schemes()
    }
}

/// Takes any server certificate, but still checks the handshake's signatures.
#[derive(Debug)]
struct AnyServer;

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        signature12(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        signature13(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        schemes()
    }
}

/// Refuses every certificate: the verifier of credentials that trust nothing yet.
#[derive(Debug)]
struct Refuse;

fn no_roots() -> rustls::Error {
    rustls::Error::General("this node trusts no CA yet: it has not started or joined a cluster".into())
}

impl ClientCertVerifier for Refuse {
    fn client_auth_mandatory(&self) -> bool {
        false
    }
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }
    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Err(no_roots())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        signature12(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        signature13(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        schemes()
    }
}

impl ServerCertVerifier for Refuse {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Err(no_roots())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        signature12(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        signature13(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        schemes()
    }
}

/// A handshake's TLS 1.2 signature checked with the provider's algorithms (the
/// verifiers that judge certificates themselves share these).
fn signature12(
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    rustls::crypto::verify_tls12_signature(message, cert, dss, &provider().signature_verification_algorithms)
}

/// The same for TLS 1.3.
fn signature13(
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    rustls::crypto::verify_tls13_signature(message, cert, dss, &provider().signature_verification_algorithms)
}

/// The signature schemes the provider checks.
fn schemes() -> Vec<SignatureScheme> {
    provider().signature_verification_algorithms.supported_schemes()
}
