//! Who a node certificate names, as Swarm's do: CN = node id, OU = role, O = cluster
//! id; and what a parsed certificate says about itself (validity, issuer, serial).

use std::fmt;

use rustls_pki_types::CertificateDer;
use x509_parser::prelude::*;

use crate::PkiError;

/// What a node may do: a manager runs Raft and the API, a worker only runs tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// A worker node.
    Worker,
    /// A manager node.
    Manager,
}

impl Role {
    /// The organizational unit that carries the role.
    pub fn unit(self) -> &'static str {
        match self {
            Role::Worker => "shoal-worker",
            Role::Manager => "shoal-manager",
        }
    }

    fn from_unit(ou: &str) -> Option<Role> {
        match ou {
            "shoal-worker" => Some(Role::Worker),
            "shoal-manager" => Some(Role::Manager),
            _ => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Worker => "worker",
            Role::Manager => "manager",
        })
    }
}

/// The node a certificate names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Subject {
    /// The node's id (the certificate's common name).
    pub node_id: String,
    /// Its role (organizational unit).
    pub role: Role,
    /// The cluster's id (organization).
    pub cluster_id: String,
}

/// What a certificate says: its subject, when it is valid, who issued it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// The node it names.
    pub subject: Subject,
    /// Start of validity, seconds since the epoch.
    pub not_before: i64,
    /// End of validity, seconds since the epoch.
    pub not_after: i64,
    /// The issuer's distinguished name, as text.
    pub issuer: String,
    /// Serial number, hex.
    pub serial: String,
}

impl CertInfo {
    /// Reads a node certificate.
    pub fn parse(der: &CertificateDer<'_>) -> Result<CertInfo, PkiError> {
        let (_, cert) = X509Certificate::from_der(der).map_err(|e| PkiError::Certificate(e.to_string()))?;
        let name = cert.subject();
        let first = |it: &mut dyn Iterator<Item = &AttributeTypeAndValue<'_>>| {
            it.next().and_then(|a| a.as_str().ok()).map(str::to_owned)
        };
        let node_id =
            first(&mut name.iter_common_name()).ok_or_else(|| PkiError::NotANode("no CN".into()))?;
        let unit = first(&mut name.iter_organizational_unit())
            .ok_or_else(|| PkiError::NotANode("no OU (role)".into()))?;
        let role =
            Role::from_unit(&unit).ok_or_else(|| PkiError::NotANode(format!("unknown role {unit:?}")))?;
        let cluster_id = first(&mut name.iter_organization())
            .ok_or_else(|| PkiError::NotANode("no O (cluster)".into()))?;
        Ok(CertInfo {
            subject: Subject { node_id, role, cluster_id },
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            issuer: cert.issuer().to_string(),
            serial: cert.tbs_certificate.raw_serial_as_string().replace(':', ""),
        })
    }

    /// The moment to renew: a random point between 50 % and 80 % of the validity,
    /// so a cluster's nodes do not renew all at once. `unit` is a uniform draw in
    /// `[0, 1)`.
    pub fn renew_at(&self, unit: f64) -> i64 {
        let life = (self.not_after - self.not_before).max(0) as f64;
        self.not_before + (life * (0.5 + 0.3 * unit.clamp(0.0, 1.0))) as i64
    }
}

/// The subject name of a certificate (any certificate), as text: for messages.
pub fn subject_text(der: &CertificateDer<'_>) -> Option<String> {
    X509Certificate::from_der(der).ok().map(|(_, c)| c.subject().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_falls_between_half_and_four_fifths_of_the_life() {
        let info = CertInfo {
            subject: Subject { node_id: "n".into(), role: Role::Worker, cluster_id: "c".into() },
            not_before: 1000,
            not_after: 2000,
            issuer: String::new(),
            serial: String::new(),
        };
        assert_eq!(info.renew_at(0.0), 1500);
        assert_eq!(info.renew_at(0.5), 1650);
        assert_eq!(info.renew_at(0.999_999), 1799);
        assert_eq!(info.renew_at(7.0), 1800, "draws are clamped");
    }
}
