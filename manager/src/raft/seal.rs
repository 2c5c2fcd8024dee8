//! Sealing: authenticated encryption of what a manager keeps on disk (its Raft log
//! entries, its snapshots, and its data key itself when autolock wraps it).
//! XChaCha20-Poly1305 with a random 24-byte nonce per sealing: random nonces of that
//! size never repeat in practice, so one key can seal any number of entries. Each
//! sealing names what it holds (`aad`: a log entry's index, "snapshot", ...), so a
//! sealed value moved to another place fails to open just as a changed one does.
//!
//! A sealed value is `nonce (24) | ciphertext | tag (16)`. Opening with the wrong key,
//! or after any change, fails with [`SealError::Rejected`]: never garbage.

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;

/// Bytes of a key.
pub const KEY_LEN: usize = 32;
/// Bytes of the nonce in front of each sealed value.
pub const NONCE_LEN: usize = 24;
/// Bytes of the tag at its end.
pub const TAG_LEN: usize = 16;
/// What sealing adds to a value's length.
pub const OVERHEAD: usize = NONCE_LEN + TAG_LEN;

/// A 256-bit key: a manager's data key (DEK) or the cluster's unlock key (KEK).
/// Zeroed when dropped; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Key([u8; KEY_LEN]);

impl Key {
    /// A new random key (from the thread's CSPRNG, seeded by the OS).
    pub fn random() -> Key {
        let mut k = [0u8; KEY_LEN];
        rand::rng().fill_bytes(&mut k);
        Key(k)
    }

    /// The key made of `bytes`.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Key {
        Key(bytes)
    }

    /// The key's bytes (to store it, sealed or in a file only its owner reads).
    pub fn bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

impl Drop for Key {
    fn drop(&mut self) {
        for b in &mut self.0 {
            // SAFETY: `b` is a valid, aligned reference into this key for the write;
            // a volatile write keeps the compiler from dropping the zeroing as dead.
            unsafe { std::ptr::write_volatile(b, 0) };
        }
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(..)")
    }
}

/// Why a sealed value could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// Shorter than a nonce and a tag: cut off.
    #[error("the sealed value is cut off ({len} bytes, at least {OVERHEAD} expected)")]
    Short {
        /// Its length.
        len: usize,
    },
    /// The tag did not match.
    #[error("the sealed value does not open with this key: the key is wrong, or the data was changed")]
    Rejected,
}

/// Seals and opens with one key. Cheap to clone.
#[derive(Clone)]
pub struct Sealer {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(..)")
    }
}

impl Sealer {
    /// A sealer with `key`.
    pub fn new(key: &Key) -> Sealer {
        Sealer { cipher: XChaCha20Poly1305::new(key.bytes().into()) }
    }

    /// Appends `plaintext` sealed for `aad` to `out`, without another buffer.
    pub fn seal_into(&self, aad: &[u8], plaintext: &[u8], out: &mut Vec<u8>) {
        let mut nonce = XNonce::default();
        rand::rng().fill_bytes(nonce.as_mut_slice());
        out.reserve(OVERHEAD + plaintext.len());
        out.extend_from_slice(&nonce);
        let start = out.len();
        out.extend_from_slice(plaintext);
        let tag = self
            .cipher
            .encrypt_in_place_detached(&nonce, aad, &mut out[start..])
            .expect("XChaCha20-Poly1305 seals any length a Vec holds");
        out.extend_from_slice(&tag);
    }

    /// `plaintext` sealed for `aad`.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(OVERHEAD + plaintext.len());
        self.seal_into(aad, plaintext, &mut out);
        out
    }

    /// The plaintext of `sealed`, if it was sealed by this key for `aad` and is unchanged.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        if sealed.len() < OVERHEAD {
            return Err(SealError::Short { len: sealed.len() });
        }
        let (nonce, rest) = sealed.split_at(NONCE_LEN);
        let (ciphertext, tag) = rest.split_at(rest.len() - TAG_LEN);
        let mut plain = ciphertext.to_vec();
        self.cipher
            .decrypt_in_place_detached(
                XNonce::from_slice(nonce),
                aad,
                &mut plain,
                chacha20poly1305::Tag::from_slice(tag),
            )
            .map_err(|_| SealError::Rejected)?;
        Ok(plain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_value_opens_with_its_key_and_hides_the_plaintext() {
        let sealer = Sealer::new(&Key::random());
        let secret = b"the password is swordfish";
        let sealed = sealer.seal(b"entry 7", secret);
        assert_eq!(sealed.len(), secret.len() + OVERHEAD);
        assert!(!sealed.windows(8).any(|w| w == b"password"), "no plaintext shows");
        assert_eq!(sealer.open(b"entry 7", &sealed).unwrap(), secret);
        assert_ne!(sealer.seal(b"entry 7", secret), sealed, "a fresh nonce each time");
        assert_eq!(sealer.open(b"x", &sealer.seal(b"x", b"")).unwrap(), b"", "empty values too");
    }

    #[test]
    fn any_changed_byte_is_rejected() {
        let sealer = Sealer::new(&Key::random());
        let sealed = sealer.seal(b"snapshot", b"some store contents");
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            assert_eq!(sealer.open(b"snapshot", &bad), Err(SealError::Rejected), "byte {i}");
        }
        assert_eq!(sealer.open(b"snapshot", &sealed[..sealed.len() - 1]), Err(SealError::Rejected));
        assert_eq!(sealer.open(b"snapshot", &sealed[..10]), Err(SealError::Short { len: 10 }));
    }

    #[test]
    fn the_wrong_key_or_place_is_rejected() {
        let (a, b) = (Key::random(), Key::random());
        let sealed = Sealer::new(&a).seal(b"entry 1", b"value");
        assert_eq!(Sealer::new(&b).open(b"entry 1", &sealed), Err(SealError::Rejected));
        assert_eq!(Sealer::new(&a).open(b"entry 2", &sealed), Err(SealError::Rejected), "moved elsewhere");
        let same = Key::from_bytes(*a.bytes());
        assert_eq!(Sealer::new(&same).open(b"entry 1", &sealed).unwrap(), b"value");
        assert_eq!(format!("{a:?}"), "Key(..)", "a key never prints");
    }
}
