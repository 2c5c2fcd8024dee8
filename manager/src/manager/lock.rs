//! Keys at rest. This manager's data key (DEK) seals its Raft log and snapshots
//! ([`crate::raft::seal`]); it lives in `raft-dek` in the manager's data dir (mode
//! 0600). Without autolock the file holds it plain, as Swarm keeps its DEK beside the
//! TLS key: the data is then safe from whoever gets the log or a snapshot, not from
//! whoever gets the whole data dir. With autolock the file holds it sealed by the
//! cluster's unlock key (the KEK, `SHKEY-1-...`), so a restarted manager cannot read
//! its own log until `shoal cluster unlock` gives it the key. The KEK is stored in
//! the cluster object, in Raft (so sealed by every manager's DEK); each manager
//! re-wraps its DEK when it changes ([`DekGuard::follow`]).
//!
//! [`read_secret`] and [`write_secret`] are the one format of a secret kept on disk
//! under the KEK, so the node's TLS key can be kept the same way.

use std::io;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};

use crate::raft::seal::{KEY_LEN, Key, Sealer};

/// The file of the DEK in the manager's data dir.
pub const DEK_FILE: &str = "raft-dek";

/// How an unlock key starts.
const UNLOCK_PREFIX: &str = "SHKEY-1-";

/// Why a key could not be read, or a manager cannot start.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// The DEK is sealed and no unlock key was given.
    #[error(
        "this manager is locked (autolock is on): run `shoal cluster unlock` and give it the cluster's unlock key"
    )]
    Locked,
    /// The given unlock key does not open the DEK.
    #[error(
        "that unlock key does not open this manager's data key: it is not the cluster's current unlock key \
         (`shoal cluster unlock-key` on an unlocked manager shows it)"
    )]
    WrongKey,
    /// Text that is not an unlock key.
    #[error("that is not an unlock key: it should look like SHKEY-1-<43 characters>")]
    NotAKey,
    /// A key file that cannot be read as one.
    #[error("{} is damaged: restore it from a backup, or remove this manager's data dir and join it again", path.display())]
    Damaged {
        /// The file.
        path: PathBuf,
    },
    /// Reading or writing a key file failed.
    #[error("cannot use the key file {}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the file system said.
        #[source]
        source: io::Error,
    },
}

/// The cluster's unlock key (the KEK). Never printed by `Debug`; [`UnlockKey::reveal`]
/// gives its text for the one place that shows it (`shoal cluster unlock-key`).
#[derive(Clone, PartialEq, Eq)]
pub struct UnlockKey(Key);

impl std::fmt::Debug for UnlockKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UnlockKey(..)")
    }
}

impl UnlockKey {
    /// A new random key.
    pub fn random() -> UnlockKey {
        UnlockKey(Key::random())
    }

    /// The key in `text` (`SHKEY-1-<base64url of 32 bytes>`; spaces around are ignored).
    pub fn parse(text: &str) -> Result<UnlockKey, LockError> {
        let body = text.trim().strip_prefix(UNLOCK_PREFIX).ok_or(LockError::NotAKey)?;
        let bytes = URL_SAFE_NO_PAD.decode(body).map_err(|_| LockError::NotAKey)?;
        let bytes: [u8; KEY_LEN] = bytes.try_into().map_err(|_| LockError::NotAKey)?;
        Ok(UnlockKey(Key::from_bytes(bytes)))
    }

    /// The key's text.
    pub fn reveal(&self) -> String {
        format!("{UNLOCK_PREFIX}{}", URL_SAFE_NO_PAD.encode(self.0.bytes()))
    }

    fn sealer(&self) -> Sealer {
        Sealer::new(&self.0)
    }
}

/// A key file: the secret plain, or sealed by the unlock key (base64 either way).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    plain: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sealed: Option<String>,
}

/// What a secret's sealing is bound to: the name of its file.
fn aad(path: &Path) -> Vec<u8> {
    let name = path.file_name().map(|n| n.as_encoded_bytes().to_vec()).unwrap_or_default();
    [b"shoal key file ".as_slice(), &name].concat()
}

fn read_file(path: &Path) -> Result<Option<KeyFile>, LockError> {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(LockError::Io { path: path.to_owned(), source }),
    };
    match serde_json::from_slice::<KeyFile>(&text) {
        Ok(f) if f.version == 1 && f.plain.is_some() != f.sealed.is_some() => Ok(Some(f)),
        _ => Err(LockError::Damaged { path: path.to_owned() }),
    }
}

/// Whether the secret in `path` is sealed by an unlock key (`false` if there is none).
pub fn is_sealed(path: &Path) -> Result<bool, LockError> {
    Ok(read_file(path)?.is_some_and(|f| f.sealed.is_some()))
}

/// The secret kept in `path` by [`write_secret`] (`None`: no such file). A sealed one
/// needs `kek`: without it the answer is [`LockError::Locked`], with another key
/// [`LockError::WrongKey`].
pub fn read_secret(path: &Path, kek: Option<&UnlockKey>) -> Result<Option<Vec<u8>>, LockError> {
    let Some(file) = read_file(path)? else { return Ok(None) };
    let damaged = || LockError::Damaged { path: path.to_owned() };
    match (file.plain, file.sealed) {
        (Some(plain), _) => STANDARD.decode(plain).map(Some).map_err(|_| damaged()),
        (None, Some(sealed)) => {
            let kek = kek.ok_or(LockError::Locked)?;
            let sealed = STANDARD.decode(sealed).map_err(|_| damaged())?;
            kek.sealer().open(&aad(path), &sealed).map(Some).map_err(|_| LockError::WrongKey)
        }
        (None, None) => Err(damaged()),
    }
}

/// Keeps `secret` in `path` (mode 0600), sealed by `kek` if one is given. The file is
/// replaced whole (written aside, synced, renamed): a crash leaves the old or the new.
pub fn write_secret(path: &Path, secret: &[u8], kek: Option<&UnlockKey>) -> Result<(), LockError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let file = match kek {
        None => KeyFile { version: 1, plain: Some(STANDARD.encode(secret)), sealed: None },
        Some(k) => KeyFile {
            version: 1,
            plain: None,
            sealed: Some(STANDARD.encode(k.sealer().seal(&aad(path), secret))),
        },
    };
    let io = |source| LockError::Io { path: path.to_owned(), source };
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f =
        std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp).map_err(io)?;
    f.write_all(&serde_json::to_vec(&file).expect("key files serialize")).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
    }
    Ok(())
}

/// This manager's DEK from `dir`, made (plain) on the first start. A sealed one needs
/// `kek` (see [`read_secret`]).
pub fn load_dek(dir: &Path, kek: Option<&UnlockKey>) -> Result<Key, LockError> {
    let path = dir.join(DEK_FILE);
    match read_secret(&path, kek)? {
        Some(bytes) => {
            let bytes: [u8; KEY_LEN] =
                bytes.try_into().map_err(|_| LockError::Damaged { path: path.clone() })?;
            Ok(Key::from_bytes(bytes))
        }
        None => {
            std::fs::create_dir_all(dir).map_err(|source| LockError::Io { path: path.clone(), source })?;
            let dek = Key::random();
            write_secret(&path, dek.bytes(), None)?;
            Ok(dek)
        }
    }
}

/// Keeps this manager's DEK file wrapped by the cluster's current unlock key (or plain
/// while autolock is off).
#[derive(Debug)]
pub struct DekGuard {
    path: PathBuf,
    dek: Key,
    /// The unlock key the file is sealed by now (`None`: plain).
    wrapped_by: Option<UnlockKey>,
}

impl DekGuard {
    /// The guard of `dek`, kept in `dir`, sealed now by `wrapped_by`.
    pub fn new(dir: &Path, dek: Key, wrapped_by: Option<UnlockKey>) -> DekGuard {
        DekGuard { path: dir.join(DEK_FILE), dek, wrapped_by }
    }

    /// Re-wraps the DEK file if the cluster's unlock key (`""`: autolock off) is not
    /// the one it is wrapped by. A key that does not parse leaves the file as it is.
    pub fn follow(&mut self, unlock_key: &str) -> Result<bool, LockError> {
        let wanted = match unlock_key {
            "" => None,
            text => Some(UnlockKey::parse(text)?),
        };
        if wanted == self.wrapped_by {
            return Ok(false);
        }
        write_secret(&self.path, self.dek.bytes(), wanted.as_ref())?;
        self.wrapped_by = wanted;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unlock_keys_print_and_parse_back() {
        let k = UnlockKey::random();
        let text = k.reveal();
        assert!(text.starts_with("SHKEY-1-") && text.len() == "SHKEY-1-".len() + 43, "{text}");
        assert_eq!(UnlockKey::parse(&format!(" {text}\n")).unwrap(), k);
        assert_eq!(format!("{k:?}"), "UnlockKey(..)");
        for bad in ["", "SHKEY-1-", "SHKEY-2-abc", &text[..text.len() - 1], &text.replace("SHKEY", "SWMKEY")]
        {
            assert!(matches!(UnlockKey::parse(bad), Err(LockError::NotAKey)), "{bad}");
        }
    }

    #[test]
    fn a_sealed_dek_needs_the_right_key() {
        let dir = tempfile::tempdir().unwrap();
        let dek = load_dek(dir.path(), None).unwrap();
        assert_eq!(load_dek(dir.path(), None).unwrap(), dek, "made once, then read");
        let path = dir.path().join(DEK_FILE);
        assert!(!is_sealed(&path).unwrap());
        let kek = UnlockKey::random();
        let mut guard = DekGuard::new(dir.path(), dek.clone(), None);
        assert!(guard.follow(&kek.reveal()).unwrap());
        assert!(!guard.follow(&kek.reveal()).unwrap(), "already wrapped by it");
        assert!(is_sealed(&path).unwrap());
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&STANDARD.encode(dek.bytes())), "the DEK does not show");
        assert!(matches!(load_dek(dir.path(), None), Err(LockError::Locked)));
        assert!(matches!(load_dek(dir.path(), Some(&UnlockKey::random())), Err(LockError::WrongKey)));
        assert_eq!(load_dek(dir.path(), Some(&kek)).unwrap(), dek);
        // Rotation: the old key stops working.
        let next = UnlockKey::random();
        guard.follow(&next.reveal()).unwrap();
        assert!(matches!(load_dek(dir.path(), Some(&kek)), Err(LockError::WrongKey)));
        assert_eq!(load_dek(dir.path(), Some(&next)).unwrap(), dek);
        // Autolock off: plain again.
        guard.follow("").unwrap();
        assert_eq!(load_dek(dir.path(), None).unwrap(), dek);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn a_damaged_key_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(DEK_FILE);
        std::fs::write(&path, b"{\"version\":1}").unwrap();
        let e = load_dek(dir.path(), None).unwrap_err();
        assert!(e.to_string().contains(&path.display().to_string()), "{e}");
        // A sealed file moved to another name does not open.
        let kek = UnlockKey::random();
        write_secret(&dir.path().join("tls-key"), b"secret", Some(&kek)).unwrap();
        std::fs::rename(dir.path().join("tls-key"), &path).unwrap();
        assert!(matches!(read_secret(&path, Some(&kek)), Err(LockError::WrongKey)));
    }
}
