//! The node's image store: content-addressed blobs (sha256 checked), image manifests
//! and configs read with `oci-spec`, layers unpacked once each and keyed by chain ID,
//! names (`registry/repo:tag`) pointing at images, and garbage collection of what no
//! image or container uses.
//!
//! Layout under `<data>/images/`:
//! ```text
//! blobs/sha256/<hex>          manifests, configs and layer blobs
//! layers/<chain id hex>/diff  one unpacked layer, whiteouts in overlayfs form
//! images.json                 image records and names (written atomically, under a lock)
//! ```

#[cfg(test)]
mod fuzz;
mod import;
pub mod layer;
pub mod registry;
pub mod shift;

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use oci_spec::image::{ImageConfiguration, ImageManifest};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

pub use import::ImportError;
pub use layer::{Compression, LayerError};

use shoal_api::task_spec::HealthCheck;

/// The parts of an image's config that shape the container's process (the runtime's
/// config merges a task's spec over them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageDefaults {
    /// ENTRYPOINT.
    pub entrypoint: Vec<String>,
    /// CMD.
    pub cmd: Vec<String>,
    /// ENV.
    pub env: Vec<String>,
    /// WORKDIR.
    pub workdir: String,
    /// USER.
    pub user: String,
    /// STOPSIGNAL.
    pub stop_signal: Option<String>,
    /// HEALTHCHECK (Docker's image config field; OCI has none).
    pub healthcheck: Option<HealthCheck>,
}

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// No image has this name or id.
    #[error("no image {0:?} on this node: import or pull it first (shoal image import|pull)")]
    NotFound(String),
    /// A name that is not an image reference.
    #[error(transparent)]
    BadReference(#[from] shoal_api::image::ImageRefError),
    /// Content whose digest is not the one it was asked for.
    #[error("{what} has digest {actual}, expected {expected}: the image is corrupt")]
    DigestMismatch {
        /// What was checked.
        what: String,
        /// The digest named by the manifest or config.
        expected: String,
        /// The digest of the bytes.
        actual: String,
    },
    /// A manifest or config that cannot be read.
    #[error("{what} is not a valid OCI document")]
    BadDocument {
        /// Which document.
        what: String,
        /// The parser's complaint, or what is wrong with it.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A DiffID (or a layer's parent) that is not `sha256:` and 64 hex digits: it
    /// names a folder of the store, so nothing else may pass.
    #[error(
        "{what} {value:?} is not a sha256 digest (sha256: and 64 hex digits): the image is corrupt or hostile"
    )]
    BadDigest {
        /// Which field.
        what: &'static str,
        /// Its value.
        value: String,
    },
    /// A layer could not be unpacked.
    #[error(transparent)]
    Layer(#[from] LayerError),
    /// The image is used by a container.
    #[error("image {0} is used by a container: remove the container first")]
    InUse(String),
    /// Filesystem trouble.
    #[error("{what}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: io::Error,
    },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> ImageError {
    let what = what.into();
    move |source| ImageError::Io { what, source }
}

/// One image in the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// The image id: the digest of its config.
    pub id: String,
    /// The manifest's digest, when the image came with one.
    pub manifest_digest: Option<String>,
    /// Chain ids of its layers, bottom first.
    pub layers: Vec<String>,
    /// Unpacked size of all its layers, bytes.
    pub size: u64,
    /// When it was added.
    pub created: chrono::DateTime<chrono::Utc>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Index {
    /// Image id → record.
    images: BTreeMap<String, ImageRecord>,
    /// Full reference (`docker.io/library/busybox:latest`) → image id.
    names: BTreeMap<String, String>,
}

/// An image resolved for running: its layer directories and config defaults.
#[derive(Debug, Clone)]
pub struct ResolvedImage {
    /// The image id.
    pub id: String,
    /// `diff` directories, topmost first, as overlayfs wants them.
    pub layer_dirs: Vec<PathBuf>,
    /// ENTRYPOINT, CMD, ENV, WORKDIR, USER, STOPSIGNAL.
    pub defaults: ImageDefaults,
}

/// The image store of one node.
#[derive(Debug, Clone)]
pub struct ImageStore {
    root: PathBuf,
}

/// The full form of an image name (`busybox` → `docker.io/library/busybox:latest`).
pub fn normalize(name: &str) -> Result<String, ImageError> {
    Ok(shoal_api::image::parse(name)?.whole())
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Checks that `bytes` have the digest `expected`; `what` names them in the error.
/// Refuses anything but `sha256:<64 lowercase hex>`: digests from documents become
/// paths in the store (`layers/<hex>`), so `sha256:../../x` must never pass.
fn check_digest_form(value: &str, what: &'static str) -> Result<(), ImageError> {
    let ok = value.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 64 && h.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    });
    if ok { Ok(()) } else { Err(ImageError::BadDigest { what, value: value.to_owned() }) }
}

pub(crate) fn check_digest(bytes: &[u8], expected: &str, what: &str) -> Result<(), ImageError> {
    let actual = sha256_digest(bytes);
    if actual == expected {
        Ok(())
    } else {
        Err(ImageError::DigestMismatch { what: what.to_owned(), expected: expected.to_owned(), actual })
    }
}

impl ImageStore {
    /// Opens (creating) the store under `data_dir/images`.
    pub fn open(data_dir: &Path) -> Result<ImageStore, ImageError> {
        let root = data_dir.join("images");
        for sub in ["blobs/sha256", "layers", "tmp"] {
            fs::create_dir_all(root.join(sub))
                .map_err(io_err(format!("create {}", root.join(sub).display())))?;
        }
        Ok(ImageStore { root })
    }

    pub(crate) fn blob_path(&self, digest: &str) -> PathBuf {
        self.root.join("blobs/sha256").join(digest.trim_start_matches("sha256:"))
    }

    fn layer_dir(&self, chain_id: &str) -> PathBuf {
        self.root.join("layers").join(chain_id.trim_start_matches("sha256:"))
    }

    /// A fresh temporary directory inside the store (same filesystem, for renames).
    pub(crate) fn temp_dir(&self) -> Result<tempfile::TempDir, ImageError> {
        tempfile::tempdir_in(self.root.join("tmp")).map_err(io_err("create a temporary directory"))
    }

    /// Runs `f` on the index under an exclusive lock and writes the result back.
    fn with_index<T>(&self, f: impl FnOnce(&mut Index) -> Result<T, ImageError>) -> Result<T, ImageError> {
        let _guard = self.lock(nix::fcntl::FlockArg::LockExclusive)?;
        let mut index = self.read_index()?;
        let out = f(&mut index)?;
        let path = self.root.join("images.json");
        crate::json_file::write_json(&path, &index).map_err(io_err("write images.json"))?;
        Ok(out)
    }

    /// Runs `f` on the index under a shared lock, without writing.
    fn read_with_index<T>(&self, f: impl FnOnce(&Index) -> Result<T, ImageError>) -> Result<T, ImageError> {
        let _guard = self.lock(nix::fcntl::FlockArg::LockShared)?;
        f(&self.read_index()?)
    }

    fn lock(&self, how: nix::fcntl::FlockArg) -> Result<nix::fcntl::Flock<File>, ImageError> {
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.root.join("images.lock"))
            .map_err(io_err("open images.lock"))?;
        nix::fcntl::Flock::lock(lock, how).map_err(|(_, e)| io_err("lock images.lock")(e.into()))
    }

    fn read_index(&self) -> Result<Index, ImageError> {
        let path = self.root.join("images.json");
        match fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| ImageError::BadDocument {
                what: format!("{} (move it away to start an empty store)", path.display()),
                source: e.into(),
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Index::default()),
            Err(e) => Err(io_err("read images.json")(e)),
        }
    }

    /// Stores `bytes` as a blob, checking them against `digest` when given.
    pub fn put_blob(&self, bytes: &[u8], digest: Option<&str>, what: &str) -> Result<String, ImageError> {
        let actual = sha256_digest(bytes);
        if let Some(expected) = digest {
            check_digest(bytes, expected, what)?;
        }
        let path = self.blob_path(&actual);
        if !path.exists() {
            let tmp = path.with_extension("tmp");
            fs::write(&tmp, bytes).map_err(io_err(format!("write blob {actual}")))?;
            fs::rename(&tmp, &path).map_err(io_err(format!("write blob {actual}")))?;
        }
        Ok(actual)
    }

    /// Moves a downloaded file into the blobs, after checking it has `digest`.
    pub(crate) fn adopt_blob(&self, path: &Path, digest: &str) -> Result<(), ImageError> {
        let mut hash = Sha256::new();
        let mut f = File::open(path).map_err(io_err(format!("read {}", path.display())))?;
        io::copy(&mut f, &mut hash).map_err(io_err(format!("read {}", path.display())))?;
        let actual = format!("sha256:{}", hex::encode(hash.finalize()));
        if actual != digest {
            return Err(ImageError::DigestMismatch {
                what: format!("blob {digest}"),
                expected: digest.to_owned(),
                actual,
            });
        }
        fs::rename(path, self.blob_path(digest)).map_err(io_err(format!("store blob {digest}")))
    }

    /// The bytes of a blob, checked against its digest.
    pub fn read_blob(&self, digest: &str) -> Result<Vec<u8>, ImageError> {
        let bytes = fs::read(self.blob_path(digest)).map_err(io_err(format!("read blob {digest}")))?;
        check_digest(&bytes, digest, &format!("blob {digest}"))?;
        Ok(bytes)
    }

    /// Unpacks one layer on top of `parent` (a chain id), unless that chain is
    /// unpacked already. `blob_digest`, when known, is checked against the blob's
    /// bytes; the DiffID against `diff_id`. Returns the chain id.
    pub fn add_layer(
        &self,
        blob: impl Read,
        compression: Compression,
        blob_digest: Option<&str>,
        diff_id: &str,
        parent: Option<&str>,
    ) -> Result<String, ImageError> {
        check_digest_form(diff_id, "the image config's diff_id")?;
        if let Some(p) = parent {
            check_digest_form(p, "the parent layer")?;
        }
        let chain_id = match parent {
            None => diff_id.to_owned(),
            Some(p) => sha256_digest(format!("{p} {diff_id}").as_bytes()),
        };
        if self.layer_dir(&chain_id).join("diff").is_dir() {
            return Ok(chain_id);
        }
        let tmp = self.temp_dir()?;
        let diff = tmp.path().join("diff");
        fs::create_dir(&diff).map_err(io_err("create layer directory"))?;
        let mut hashing = layer::Hashing::new(blob);
        let actual_diff = layer::unpack(&mut hashing, compression, &diff)?;
        io::copy(&mut hashing, &mut io::sink()).map_err(io_err("read layer"))?;
        let actual_blob = hashing.digest();
        if let Some(expected) = blob_digest
            && expected != actual_blob
        {
            return Err(ImageError::DigestMismatch {
                what: format!("layer {expected}"),
                expected: expected.to_owned(),
                actual: actual_blob,
            });
        }
        if actual_diff != diff_id {
            return Err(ImageError::DigestMismatch {
                what: "uncompressed layer (DiffID)".to_owned(),
                expected: diff_id.to_owned(),
                actual: actual_diff,
            });
        }
        let size = dir_size(&diff);
        let meta =
            serde_json::json!({ "chain_id": chain_id, "diff_id": diff_id, "parent": parent, "size": size });
        fs::write(tmp.path().join("layer.json"), meta.to_string()).map_err(io_err("write layer.json"))?;
        let dest = self.layer_dir(&chain_id);
        match fs::rename(tmp.keep(), &dest) {
            Ok(()) => Ok(chain_id),
            // Another import unpacked the same layer meanwhile; theirs is as good.
            Err(_) if dest.join("diff").is_dir() => Ok(chain_id),
            Err(e) => Err(io_err(format!("store layer {chain_id}"))(e)),
        }
    }

    /// Records an image whose config blob and layers are in the store, under `names`.
    pub fn commit(
        &self,
        config_digest: &str,
        manifest_digest: Option<&str>,
        layers: Vec<String>,
        names: &[String],
    ) -> Result<ImageRecord, ImageError> {
        let size = layers.iter().map(|c| layer_size(&self.layer_dir(c))).sum();
        let record = ImageRecord {
            id: config_digest.to_owned(),
            manifest_digest: manifest_digest.map(str::to_owned),
            layers,
            size,
            created: chrono::Utc::now(),
        };
        let names = names.iter().map(|n| normalize(n)).collect::<Result<Vec<_>, _>>()?;
        self.with_index(|idx| {
            idx.images.insert(record.id.clone(), record.clone());
            for n in names {
                idx.names.insert(n, record.id.clone());
            }
            Ok(record)
        })
    }

    /// Reads and checks the config blob of image `id`.
    pub fn config(&self, id: &str) -> Result<ImageConfiguration, ImageError> {
        self.config_with_health(id).map(|(c, _)| c)
    }

    /// The config, and the HEALTHCHECK Docker keeps in it (outside the OCI schema).
    fn config_with_health(&self, id: &str) -> Result<(ImageConfiguration, Option<HealthCheck>), ImageError> {
        let bytes = fs::read(self.blob_path(id)).map_err(io_err(format!("read config {id}")))?;
        check_digest(&bytes, id, &format!("config {id}"))?;
        let config = ImageConfiguration::from_reader(&bytes[..])
            .map_err(|e| ImageError::BadDocument { what: format!("config {id}"), source: e.into() })?;
        Ok((config, image_health_check(&bytes)))
    }

    /// Finds an image by name (`busybox`, `shoal/busybox:latest`), full id or id prefix.
    pub fn find(&self, name_or_id: &str) -> Result<ImageRecord, ImageError> {
        self.read_with_index(|idx| {
            if let Ok(full) = normalize(name_or_id)
                && let Some(id) = idx.names.get(&full)
                && let Some(r) = idx.images.get(id)
            {
                return Ok(r.clone());
            }
            let hex = name_or_id.trim_start_matches("sha256:");
            let matches: Vec<&ImageRecord> = if hex.len() >= 12 && hex.bytes().all(|b| b.is_ascii_hexdigit())
            {
                idx.images.values().filter(|r| r.id.trim_start_matches("sha256:").starts_with(hex)).collect()
            } else {
                Vec::new()
            };
            match matches.as_slice() {
                [one] => Ok((*one).clone()),
                _ => Err(ImageError::NotFound(name_or_id.to_owned())),
            }
        })
    }

    /// What a container of this image needs: layer directories and config defaults.
    pub fn resolve(&self, name_or_id: &str) -> Result<ResolvedImage, ImageError> {
        let record = self.find(name_or_id)?;
        let (cfg, healthcheck) = self.config_with_health(&record.id)?;
        let mut layer_dirs: Vec<PathBuf> =
            record.layers.iter().map(|c| self.layer_dir(c).join("diff")).collect();
        for d in &layer_dirs {
            if !d.is_dir() {
                return Err(ImageError::NotFound(format!("{name_or_id} (layer {} is missing)", d.display())));
            }
        }
        layer_dirs.reverse();
        let defaults = cfg.config().as_ref().map_or_else(ImageDefaults::default, |c| ImageDefaults {
            entrypoint: c.entrypoint().clone().unwrap_or_default(),
            cmd: c.cmd().clone().unwrap_or_default(),
            env: c.env().clone().unwrap_or_default(),
            workdir: c.working_dir().clone().unwrap_or_default(),
            user: c.user().clone().unwrap_or_default(),
            stop_signal: c.stop_signal().clone(),
            healthcheck: None,
        });
        let defaults = ImageDefaults { healthcheck, ..defaults };
        Ok(ResolvedImage { id: record.id, layer_dirs, defaults })
    }

    /// Every image with its names.
    pub fn list(&self) -> Result<Vec<(ImageRecord, Vec<String>)>, ImageError> {
        self.read_with_index(|idx| {
            Ok(idx
                .images
                .values()
                .map(|r| {
                    let names =
                        idx.names.iter().filter(|(_, id)| **id == r.id).map(|(n, _)| n.clone()).collect();
                    (r.clone(), names)
                })
                .collect())
        })
    }

    /// Removes a name, and the image once no name points at it (by id: the image and
    /// all its names). Refused while a container in `in_use` (layer directories of
    /// existing containers) uses it. Unused layers go at the next [`gc`](Self::gc).
    pub fn remove(&self, name_or_id: &str, in_use: &[PathBuf]) -> Result<(), ImageError> {
        let record = self.find(name_or_id)?;
        let top = record.layers.last().map(|c| self.layer_dir(c).join("diff"));
        let by_name = normalize(name_or_id).ok();
        self.with_index(|idx| {
            let only_name = by_name
                .as_ref()
                .filter(|n| idx.names.get(*n) == Some(&record.id))
                .filter(|_| idx.names.values().filter(|id| **id == record.id).count() > 1);
            if let Some(n) = only_name {
                idx.names.remove(n);
                return Ok(());
            }
            if top.as_ref().is_some_and(|t| in_use.contains(t)) {
                return Err(ImageError::InUse(name_or_id.to_owned()));
            }
            idx.names.retain(|_, id| *id != record.id);
            idx.images.remove(&record.id);
            Ok(())
        })
    }

    /// Deletes layers and blobs no image uses, keeping layers in `in_use`. Returns the
    /// bytes freed.
    pub fn gc(&self, in_use: &[PathBuf]) -> Result<u64, ImageError> {
        let (used_layers, used_blobs) = self.read_with_index(|idx| {
            let mut layers: Vec<String> = Vec::new();
            let mut blobs: Vec<String> = Vec::new();
            for r in idx.images.values() {
                layers.extend(r.layers.iter().map(|l| l.trim_start_matches("sha256:").to_owned()));
                blobs.push(r.id.trim_start_matches("sha256:").to_owned());
                if let Some(m) = &r.manifest_digest {
                    blobs.push(m.trim_start_matches("sha256:").to_owned());
                    if let Ok(bytes) = fs::read(self.blob_path(m))
                        && let Ok(man) = ImageManifest::from_reader(&bytes[..])
                    {
                        blobs.extend(
                            man.layers()
                                .iter()
                                .map(|d| d.digest().to_string().trim_start_matches("sha256:").to_owned()),
                        );
                    }
                }
            }
            Ok((layers, blobs))
        })?;
        let mut freed = 0;
        for entry in fs::read_dir(self.root.join("layers")).map_err(io_err("list layers"))?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if used_layers.contains(&name) || in_use.contains(&entry.path().join("diff")) {
                continue;
            }
            freed += layer_size(&entry.path());
            fs::remove_dir_all(entry.path()).map_err(io_err(format!("remove layer {name}")))?;
        }
        for entry in fs::read_dir(self.root.join("blobs/sha256")).map_err(io_err("list blobs"))?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !used_blobs.contains(&name) {
                freed += entry.metadata().map(|m| m.len()).unwrap_or(0);
                fs::remove_file(entry.path()).map_err(io_err(format!("remove blob {name}")))?;
            }
        }
        Ok(freed)
    }

    /// Imports a `docker save` archive or an OCI image layout (directory or tar).
    /// `name` names the image when the archive does not, or renames it.
    pub fn import(&self, path: &Path, name: Option<&str>) -> Result<Vec<ImageRecord>, ImportError> {
        import::import(self, path, name)
    }
}

fn layer_size(dir: &Path) -> u64 {
    fs::read(dir.join("layer.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v["size"].as_u64())
        .unwrap_or(0)
}

fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => stack.push(e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

/// Docker's `config.Healthcheck` of an image config (durations in nanoseconds, zero
/// for the default), if it has one.
fn image_health_check(config: &[u8]) -> Option<HealthCheck> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Docker {
        #[serde(default)]
        test: Vec<String>,
        #[serde(default)]
        interval: u64,
        #[serde(default)]
        timeout: u64,
        #[serde(default)]
        start_period: u64,
        #[serde(default)]
        start_interval: u64,
        #[serde(default)]
        retries: u32,
    }
    #[derive(Deserialize)]
    struct Config {
        #[serde(rename = "Healthcheck")]
        healthcheck: Option<Docker>,
    }
    #[derive(Deserialize)]
    struct Image {
        config: Option<Config>,
    }
    let h = serde_json::from_slice::<Image>(config).ok()?.config?.healthcheck?;
    let d = HealthCheck::default();
    let or = |ns: u64, default: std::time::Duration| {
        if ns == 0 { default } else { std::time::Duration::from_nanos(ns) }
    };
    Some(HealthCheck {
        test: h.test,
        interval: or(h.interval, d.interval),
        timeout: or(h.timeout, d.timeout),
        retries: if h.retries == 0 { d.retries } else { h.retries },
        start_period: or(h.start_period, d.start_period),
        start_interval: or(h.start_interval, d.start_interval),
    })
}

#[cfg(test)]
mod health_tests {
    use super::*;

    #[test]
    fn dockers_healthcheck_is_read_from_the_config() {
        let config = br#"{"architecture":"amd64","os":"linux","config":{"Healthcheck":{"Test":["CMD-SHELL","wget -q localhost"],"Interval":2000000000,"Retries":0}},"rootfs":{"type":"layers","diff_ids":[]}}"#;
        let h = image_health_check(config).expect("a health check");
        assert_eq!(h.test, ["CMD-SHELL", "wget -q localhost"]);
        assert_eq!((h.interval, h.retries), (std::time::Duration::from_secs(2), 3), "zero is the default");
        assert_eq!(image_health_check(br#"{"config":{"Env":[]}}"#), None);
    }
}
