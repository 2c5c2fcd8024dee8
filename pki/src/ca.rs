//! The cluster's certificate authority: made at `--init` (or given, from an
//! external CA's certificate and key), it issues each node a certificate naming its
//! id, role and cluster, and during a rotation cross-signs its successor so nodes
//! that trust only the old root accept certificates of the new one.

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DnType, ExtendedKeyUsagePurpose,
    IsCa, Issuer, KeyPair, KeyUsagePurpose, PublicKeyData as _, SanType, SerialNumber,
};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use time::{Duration, OffsetDateTime};

use crate::{MANAGER_NAME, PkiError, Role, Subject, WORKER_NAME};

/// How long a root made here is valid (Swarm's: 20 years).
pub const ROOT_VALIDITY: Duration = Duration::days(20 * 365);
/// Certificates start this long before they are made, for clocks a little behind.
const BACKDATE: Duration = Duration::minutes(5);

/// A CA's certificate and private key, both PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct CaKeys {
    /// The CA certificate.
    pub cert_pem: String,
    /// Its private key (PKCS#8).
    pub key_pem: String,
}

impl std::fmt::Debug for CaKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaKeys").field("cert_pem", &self.cert_pem).field("key_pem", &"<redacted>").finish()
    }
}

fn serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] &= 0x7f;
    SerialNumber::from_slice(&bytes)
}

impl CaKeys {
    /// A new self-signed root for the cluster `cluster_id`. Each root's name is its
    /// own (a random suffix), so a successor never shares its predecessor's name.
    pub fn generate(cluster_id: &str) -> Result<CaKeys, PkiError> {
        let key = KeyPair::generate().map_err(PkiError::rcgen("generate the CA key"))?;
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        let tag: u32 = rand::random();
        params.distinguished_name.push(DnType::CommonName, format!("shoal-ca-{tag:08x}"));
        params.distinguished_name.push(DnType::OrganizationName, cluster_id);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - BACKDATE;
        params.not_after = now + ROOT_VALIDITY;
        params.serial_number = Some(serial());
        let cert = params.self_signed(&key).map_err(PkiError::rcgen("sign the CA certificate"))?;
        Ok(CaKeys { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
    }

    /// An external CA's certificate and key: checked to be a CA whose key is the
    /// one given.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<CaKeys, PkiError> {
        let der = first_cert(cert_pem, "the CA certificate")?;
        let (_, cert) = x509_parser::parse_x509_certificate(&der)
            .map_err(|e| PkiError::Certificate(format!("the CA certificate: {e}")))?;
        if !cert.is_ca() {
            return Err(PkiError::Certificate(
                "the CA certificate is not a CA (no basicConstraints CA:true)".into(),
            ));
        }
        let key = KeyPair::from_pem(key_pem).map_err(PkiError::rcgen("read the CA key"))?;
        if key.der_bytes() != cert.public_key().subject_public_key.data.as_ref() {
            return Err(PkiError::Certificate("the CA key does not belong to the CA certificate".into()));
        }
        Ok(CaKeys { cert_pem: cert_pem.trim().to_owned() + "\n", key_pem: key_pem.to_owned() })
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> Result<CertificateDer<'static>, PkiError> {
        first_cert(&self.cert_pem, "the CA certificate")
    }

    /// The digest join tokens pin.
    pub fn digest(&self) -> Result<String, PkiError> {
        Ok(crate::token::digest(&self.cert_der()?))
    }

    fn issuer(&self) -> Result<Issuer<'static, KeyPair>, PkiError> {
        let key = KeyPair::from_pem(&self.key_pem).map_err(PkiError::rcgen("read the CA key"))?;
        Issuer::from_ca_cert_pem(&self.cert_pem, key).map_err(PkiError::rcgen("read the CA certificate"))
    }

    /// A certificate for `subject` over the key of the request `csr_pem`, valid for
    /// `validity` from now. Whatever subject the request names is ignored. The
    /// certificate names the role's DNS name (clients of the managers' port check
    /// `shoal-manager`) plus `extra_names` (DNS names or IP addresses, for the API).
    pub fn issue(
        &self,
        csr_pem: &str,
        subject: &Subject,
        validity: std::time::Duration,
        extra_names: &[String],
    ) -> Result<String, PkiError> {
        let now = OffsetDateTime::now_utc();
        let validity = Duration::try_from(validity).unwrap_or(Duration::days(90));
        // Backdated for clocks a little behind, but by no more than a tenth of the
        // life: renewal is timed from the start, and a short certificate backdated
        // by minutes would be due at once.
        let back = BACKDATE.min(validity / 10);
        self.issue_between(csr_pem, subject, now - back, now + validity, extra_names)
    }

    /// [`CaKeys::issue`] with the validity given outright (tests make expired
    /// certificates with it).
    pub fn issue_between(
        &self,
        csr_pem: &str,
        subject: &Subject,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
        extra_names: &[String],
    ) -> Result<String, PkiError> {
        let csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(PkiError::rcgen("read the certificate signing request"))?;
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, subject.node_id.as_str());
        params.distinguished_name.push(DnType::OrganizationalUnitName, subject.role.unit());
        params.distinguished_name.push(DnType::OrganizationName, subject.cluster_id.as_str());
        let role_name = match subject.role {
            Role::Manager => MANAGER_NAME,
            Role::Worker => WORKER_NAME,
        };
        let mut names =
            vec![SanType::DnsName(role_name.try_into().map_err(PkiError::rcgen("name the role"))?)];
        for n in extra_names {
            names.push(match n.parse::<std::net::IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(n.as_str().try_into().map_err(PkiError::rcgen("name the node"))?),
            });
        }
        params.subject_alt_names = names;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages =
            vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        params.not_before = not_before;
        params.not_after = not_after;
        params.serial_number = Some(serial());
        let cert = params
            .signed_by(&csr.public_key, &self.issuer()?)
            .map_err(PkiError::rcgen("sign the node certificate"))?;
        Ok(cert.pem())
    }

    /// `successor`'s certificate signed by this CA: during a rotation nodes present it
    /// after their new leaf, so peers that trust only this (old) root still accept
    /// them.
    pub fn cross_sign(&self, successor: &CaKeys) -> Result<String, PkiError> {
        let der = successor.cert_der()?;
        let (_, cert) = x509_parser::parse_x509_certificate(&der)
            .map_err(|e| PkiError::Certificate(format!("the new CA certificate: {e}")))?;
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        for attr in cert.subject().iter_attributes() {
            let oid: Vec<u64> = attr.attr_type().iter().map(|i| i.collect()).unwrap_or_default();
            let value =
                attr.as_str().map_err(|e| PkiError::Certificate(format!("the new CA's name: {e}")))?;
            params.distinguished_name.push(DnType::from_oid(&oid), value);
        }
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        params.not_before = OffsetDateTime::from_unix_timestamp(cert.validity().not_before.timestamp())
            .map_err(|e| PkiError::Certificate(e.to_string()))?;
        params.not_after = OffsetDateTime::from_unix_timestamp(cert.validity().not_after.timestamp())
            .map_err(|e| PkiError::Certificate(e.to_string()))?;
        params.serial_number = Some(serial());
        let key = KeyPair::from_pem(&successor.key_pem).map_err(PkiError::rcgen("read the new CA key"))?;
        let cert =
            params.signed_by(&key, &self.issuer()?).map_err(PkiError::rcgen("cross-sign the new CA"))?;
        Ok(cert.pem())
    }
}

/// The first certificate in `pem`.
pub fn first_cert(pem: &str, what: &'static str) -> Result<CertificateDer<'static>, PkiError> {
    certs(pem, what)?.into_iter().next().ok_or(PkiError::Pem { what, why: "no certificate in it".into() })
}

/// Every certificate in `pem`, in order.
pub fn certs(pem: &str, what: &'static str) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PkiError::Pem { what, why: e.to_string() })
}

/// A CA made on the spot and credentials it issued to `node_id` with `role`, trusting
/// only that CA: for tests that need real TLS between parts of one process.
pub fn throwaway(node_id: &str, role: Role) -> Result<(CaKeys, crate::Credentials), PkiError> {
    let ca = CaKeys::generate("throwaway")?;
    let key = crate::keys::generate_key()?;
    let subject = Subject { node_id: node_id.to_owned(), role, cluster_id: "throwaway".to_owned() };
    let cert = ca.issue(&crate::keys::csr(&key)?, &subject, std::time::Duration::from_secs(3600), &[])?;
    let creds = crate::Credentials::new(&ca.cert_pem, &cert, &key)?;
    Ok((ca, creds))
}
