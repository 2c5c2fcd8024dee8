//! Join tokens, `SHTKN-1-<digest>-<secret>` as Swarm's `SWMTKN-1-…`: the digest
//! (SHA-256 of the CA certificate, base 36) lets a joining node check the managers'
//! CA before it trusts anything they say or sends the secret; the secret (a kind
//! letter, `W` or `M`, and 128 random bits in base 36) admits it with that role.

use rustls_pki_types::CertificateDer;
use sha2::{Digest, Sha256};

use crate::{PkiError, Role};

const PREFIX: &str = "SHTKN-1-";
/// Base-36 digits of a 256-bit digest.
const DIGEST_LEN: usize = 50;
/// Base-36 digits of a 128-bit secret.
const SECRET_LEN: usize = 25;

/// `bytes` as a big-endian number in base 36, left-padded with zeros to `width`.
fn base36(bytes: &[u8], width: usize) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut number = bytes.to_vec();
    let mut out = Vec::new();
    while number.iter().any(|&b| b != 0) {
        let mut rem = 0u32;
        for b in number.iter_mut() {
            let acc = (rem << 8) | u32::from(*b);
            *b = (acc / 36) as u8;
            rem = acc % 36;
        }
        out.push(DIGITS[rem as usize]);
    }
    while out.len() < width {
        out.push(b'0');
    }
    out.reverse();
    String::from_utf8(out).expect("base-36 digits are ASCII")
}

/// The digest a join token pins for the CA certificate `der`.
pub fn digest(der: &CertificateDer<'_>) -> String {
    base36(&Sha256::digest(der.as_ref()), DIGEST_LEN)
}

/// A parsed join token.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken {
    /// The digest of the CA certificate the cluster's managers must present.
    pub ca_digest: String,
    /// The role the token admits.
    pub role: Role,
    /// The secret part, kind letter included.
    pub secret: String,
}

impl std::fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinToken").field("ca_digest", &self.ca_digest).field("role", &self.role).finish()
    }
}

impl JoinToken {
    /// A new token for `role` pinning the CA with digest `ca_digest`.
    pub fn generate(role: Role, ca_digest: &str) -> JoinToken {
        let secret: [u8; 16] = rand::random();
        let kind = match role {
            Role::Worker => 'W',
            Role::Manager => 'M',
        };
        JoinToken {
            ca_digest: ca_digest.to_owned(),
            role,
            secret: format!("{kind}{}", base36(&secret, SECRET_LEN)),
        }
    }

    /// The same secret pinning another CA (after a CA rotation).
    pub fn repinned(&self, ca_digest: &str) -> JoinToken {
        JoinToken { ca_digest: ca_digest.to_owned(), ..self.clone() }
    }

    /// Reads a token.
    pub fn parse(text: &str) -> Result<JoinToken, PkiError> {
        let bad = |why: &str| PkiError::MalformedToken(why.to_owned());
        let rest = text.trim().strip_prefix(PREFIX).ok_or_else(|| bad("it does not start with SHTKN-1-"))?;
        let (digest, secret) = rest.split_once('-').ok_or_else(|| bad("no secret after the CA digest"))?;
        if digest.len() != DIGEST_LEN || !digest.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
        {
            return Err(bad("the CA digest is not 50 base-36 digits"));
        }
        let role = match secret.chars().next() {
            Some('W') => Role::Worker,
            Some('M') => Role::Manager,
            _ => return Err(bad("the secret does not start with W (worker) or M (manager)")),
        };
        if secret.len() != SECRET_LEN + 1
            || !secret[1..].bytes().all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
        {
            return Err(bad("the secret is not 25 base-36 digits"));
        }
        Ok(JoinToken { ca_digest: digest.to_owned(), role, secret: secret.to_owned() })
    }

    /// Checks that the CA a manager presented is the one this token pins.
    pub fn check_ca(&self, ca: &CertificateDer<'_>) -> Result<(), PkiError> {
        let found = digest(ca);
        if found == self.ca_digest {
            Ok(())
        } else {
            Err(PkiError::WrongCa { pinned: self.ca_digest.clone(), found })
        }
    }
}

impl std::fmt::Display for JoinToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{PREFIX}{}-{}", self.ca_digest, self.secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base36_is_a_big_endian_number() {
        assert_eq!(base36(&[0], 3), "000");
        assert_eq!(base36(&[35], 1), "z");
        assert_eq!(base36(&[1, 0], 1), "74", "256 = 7*36 + 4");
        assert_eq!(base36(&[0xff; 32], 0).len(), DIGEST_LEN, "the widest digest still fits");
        assert_eq!(base36(&[0xff; 16], 0).len(), SECRET_LEN);
    }

    #[test]
    fn tokens_round_trip_and_name_their_role() {
        let d = digest(&CertificateDer::from(vec![1u8, 2, 3]));
        let w = JoinToken::generate(Role::Worker, &d);
        let text = w.to_string();
        assert!(text.starts_with(&format!("SHTKN-1-{d}-W")), "{text}");
        assert_eq!(text.len(), "SHTKN-1-".len() + 50 + 1 + 26);
        assert_eq!(JoinToken::parse(&text).unwrap(), w);
        let m = JoinToken::generate(Role::Manager, &d);
        assert_eq!(JoinToken::parse(&m.to_string()).unwrap().role, Role::Manager);
        assert_ne!(w.secret, JoinToken::generate(Role::Worker, &d).secret);
        assert!(!format!("{w:?}").contains(&w.secret), "Debug hides the secret");
    }

    #[test]
    fn malformed_tokens_say_what_is_wrong() {
        let d = digest(&CertificateDer::from(vec![1u8]));
        for (text, why) in [
            ("SWMTKN-1-abc", "does not start with SHTKN-1-"),
            (&format!("SHTKN-1-{d}"), "no secret"),
            ("SHTKN-1-abc-W0000000000000000000000000", "50 base-36 digits"),
            (&format!("SHTKN-1-{d}-X0000000000000000000000000"), "W (worker) or M (manager)"),
            (&format!("SHTKN-1-{d}-W00"), "25 base-36 digits"),
        ] {
            let e = JoinToken::parse(text).unwrap_err().to_string();
            assert!(e.contains(why), "{text}: {e}");
        }
    }

    #[test]
    fn a_token_checks_the_ca_it_pins() {
        let ca = CertificateDer::from(vec![9u8; 10]);
        let t = JoinToken::generate(Role::Worker, &digest(&ca));
        t.check_ca(&ca).unwrap();
        let e = t.check_ca(&CertificateDer::from(vec![8u8; 10])).unwrap_err();
        assert!(e.to_string().contains("does not match the join token"), "{e}");
    }
}
