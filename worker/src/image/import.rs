//! Importing images from files: OCI image layouts (a directory or a tar of one) and
//! `docker save` archives (which newer Docker versions also write as OCI layouts).

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest, MediaType};
use serde::Deserialize;

use super::{Compression, ImageError, ImageRecord, ImageStore};

/// Why an import failed.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The path is neither an OCI layout nor a `docker save` archive.
    #[error(
        "{0} is not an OCI image layout (no oci-layout file) or a docker save archive (no manifest.json)"
    )]
    UnknownFormat(PathBuf),
    /// The archive names no image and no name was given.
    #[error("the archive does not name its image: give a name (shoal image import FILE NAME)")]
    Unnamed,
    /// No manifest for linux/amd64 (or this machine's platform) in the index.
    #[error("the image index has no manifest for {0}")]
    NoPlatform(String),
    /// Anything the store refused.
    #[error(transparent)]
    Store(#[from] ImageError),
    /// Reading the file failed.
    #[error("read {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
}

fn read(path: &Path) -> Result<Vec<u8>, ImportError> {
    fs::read(path).map_err(|source| ImportError::Io { path: path.to_owned(), source })
}

pub(super) fn import(
    store: &ImageStore,
    path: &Path,
    name: Option<&str>,
) -> Result<Vec<ImageRecord>, ImportError> {
    let meta = fs::metadata(path).map_err(|source| ImportError::Io { path: path.to_owned(), source })?;
    let unpacked;
    let dir = if meta.is_dir() {
        path.to_owned()
    } else {
        unpacked = store.temp_dir()?;
        let file = File::open(path).map_err(|source| ImportError::Io { path: path.to_owned(), source })?;
        let mut head = [0u8; 4];
        let n = File::open(path).and_then(|mut f| f.read(&mut head)).unwrap_or(0);
        let reader: Box<dyn Read> = match Compression::sniff(&head[..n]) {
            Compression::Gzip => Box::new(flate2::read::GzDecoder::new(file)),
            _ => Box::new(file),
        };
        // The tar crate refuses entries that would land outside the directory.
        tar::Archive::new(reader)
            .unpack(unpacked.path())
            .map_err(|source| ImportError::Io { path: path.to_owned(), source })?;
        unpacked.path().to_owned()
    };
    if dir.join("oci-layout").exists() {
        import_oci_layout(store, &dir, name)
    } else if dir.join("manifest.json").exists() {
        import_docker_save(store, &dir, name)
    } else {
        Err(ImportError::UnknownFormat(path.to_owned()))
    }
}

/// The file of a blob in an OCI layout, which must be inside it (see [`inside`]).
fn blob(dir: &Path, digest: &str) -> Result<PathBuf, ImportError> {
    let (alg, hex) = digest.split_once(':').unwrap_or(("sha256", digest));
    inside(dir, &format!("blobs/{alg}/{hex}"), "index.json")
}

fn bad(what: &str, e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> ImportError {
    ImportError::Store(ImageError::BadDocument { what: what.to_owned(), source: e.into() })
}

/// Whether a descriptor's platform suits this machine (no platform suits everyone).
fn suits_this_machine(d: &Descriptor) -> bool {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    d.platform()
        .as_ref()
        .is_none_or(|p| p.os().to_string() == "linux" && p.architecture().to_string() == arch)
}

fn import_oci_layout(
    store: &ImageStore,
    dir: &Path,
    name: Option<&str>,
) -> Result<Vec<ImageRecord>, ImportError> {
    let index =
        ImageIndex::from_reader(&read(&dir.join("index.json"))?[..]).map_err(|e| bad("index.json", e))?;
    let mut out = Vec::new();
    let mut pending: Vec<(Descriptor, Option<String>)> =
        index.manifests().iter().map(|d| (d.clone(), None)).collect();
    let mut seen_platform_mismatch = false;
    while let Some((desc, inherited_name)) = pending.pop() {
        let ref_name = desc
            .annotations()
            .as_ref()
            .and_then(|a| a.get("org.opencontainers.image.ref.name").cloned())
            .or(inherited_name);
        let digest = desc.digest().to_string();
        let bytes = read(&blob(dir, &digest)?)?;
        super::check_digest(&bytes, &digest, &format!("manifest {digest}"))?;
        match desc.media_type() {
            MediaType::ImageIndex => {
                let nested = ImageIndex::from_reader(&bytes[..]).map_err(|e| bad(&digest, e))?;
                pending.extend(nested.manifests().iter().map(|d| (d.clone(), ref_name.clone())));
            }
            _ if !suits_this_machine(&desc) => seen_platform_mismatch = true,
            _ => {
                let manifest = ImageManifest::from_reader(&bytes[..]).map_err(|e| bad(&digest, e))?;
                store.put_blob(&bytes, Some(&digest), "manifest")?;
                let names = image_names(name, ref_name.as_deref())?;
                out.push(store_manifest(store, &manifest, Some(&digest), |d| blob(dir, d), &names)?);
            }
        }
    }
    if out.is_empty() && seen_platform_mismatch {
        return Err(ImportError::NoPlatform(format!("linux/{}", std::env::consts::ARCH)));
    }
    Ok(out)
}

/// The names to give an imported image: `name` if given, else the archive's own
/// (`org.opencontainers.image.ref.name`, which may be a full reference).
fn image_names(name: Option<&str>, ref_name: Option<&str>) -> Result<Vec<String>, ImportError> {
    match (name, ref_name) {
        (Some(n), _) => Ok(vec![n.to_owned()]),
        (None, Some(r)) if r.contains(['/', ':']) || shoal_api::image::parse(r).is_ok() => {
            Ok(vec![r.to_owned()])
        }
        _ => Err(ImportError::Unnamed),
    }
}

/// Stores the config and layers a manifest names; `layer_path` finds each blob.
pub(super) fn store_manifest(
    store: &ImageStore,
    manifest: &ImageManifest,
    manifest_digest: Option<&str>,
    layer_path: impl Fn(&str) -> Result<PathBuf, ImportError>,
    names: &[String],
) -> Result<ImageRecord, ImportError> {
    let config_digest = manifest.config().digest().to_string();
    let config_bytes = read(&layer_path(&config_digest)?)?;
    store.put_blob(&config_bytes, Some(&config_digest), "image config")?;
    let config = ImageConfiguration::from_reader(&config_bytes[..]).map_err(|e| bad("image config", e))?;
    let diff_ids = config.rootfs().diff_ids();
    if diff_ids.len() != manifest.layers().len() {
        return Err(bad(
            "image config",
            format!(
                "{} layers in the manifest but {} diff_ids in the config",
                manifest.layers().len(),
                diff_ids.len()
            ),
        ));
    }
    let mut parent: Option<String> = None;
    let mut chain = Vec::new();
    for (desc, diff_id) in manifest.layers().iter().zip(diff_ids) {
        let compression =
            Compression::from_media_type(desc.media_type().as_ref()).map_err(ImageError::from)?;
        let digest = desc.digest().to_string();
        let path = layer_path(&digest)?;
        let file = File::open(&path).map_err(|source| ImportError::Io { path: path.clone(), source })?;
        let id = store.add_layer(file, compression, Some(&digest), diff_id, parent.as_deref())?;
        // Keep the compressed blob too, so the image can be pushed as it came.
        if !store.blob_path(&digest).exists() {
            let tmp = store.blob_path(&digest).with_extension("tmp");
            fs::copy(&path, &tmp).map_err(|source| ImportError::Io { path: path.clone(), source })?;
            store.adopt_blob(&tmp, &digest)?;
        }
        chain.push(id.clone());
        parent = Some(id);
    }
    Ok(store.commit(&config_digest, manifest_digest, chain, names)?)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SaveEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

fn import_docker_save(
    store: &ImageStore,
    dir: &Path,
    name: Option<&str>,
) -> Result<Vec<ImageRecord>, ImportError> {
    let entries: Vec<SaveEntry> =
        serde_json::from_slice(&read(&dir.join("manifest.json"))?).map_err(|e| bad("manifest.json", e))?;
    let mut out = Vec::new();
    for entry in entries {
        let config_path = inside(dir, &entry.config, "manifest.json")?;
        let config_bytes = read(&config_path)?;
        let config_digest = store.put_blob(&config_bytes, None, "image config")?;
        let config = ImageConfiguration::from_reader(&config_bytes[..]).map_err(|e| bad(&entry.config, e))?;
        let diff_ids = config.rootfs().diff_ids();
        if diff_ids.len() != entry.layers.len() {
            return Err(bad("manifest.json", "layer count differs from the config's diff_ids"));
        }
        let mut parent: Option<String> = None;
        let mut chain = Vec::new();
        for (layer, diff_id) in entry.layers.iter().zip(diff_ids) {
            let path = inside(dir, layer, "manifest.json")?;
            let mut head = [0u8; 4];
            let n = File::open(&path).and_then(|mut f| f.read(&mut head)).unwrap_or(0);
            let file = File::open(&path).map_err(|source| ImportError::Io { path: path.clone(), source })?;
            let id =
                store.add_layer(file, Compression::sniff(&head[..n]), None, diff_id, parent.as_deref())?;
            chain.push(id.clone());
            parent = Some(id);
        }
        let names = match (name, entry.repo_tags) {
            (Some(n), _) => vec![n.to_owned()],
            (None, Some(tags)) if !tags.is_empty() => tags,
            _ => return Err(ImportError::Unnamed),
        };
        out.push(store.commit(&config_digest, None, chain, &names)?);
    }
    Ok(out)
}

/// A path named by the archive, which must stay inside it: relative, without `..`,
/// and through no symbolic link (the archive may hold links to anywhere, and what
/// they point at would be read into the store).
fn inside(dir: &Path, rel: &str, what: &str) -> Result<PathBuf, ImportError> {
    let p = Path::new(rel);
    if p.is_absolute() || p.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
        return Err(bad(what, format!("{rel:?} points outside the archive")));
    }
    let mut at = dir.to_path_buf();
    for c in p.components() {
        at.push(c);
        if fs::symlink_metadata(&at).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(bad(
                what,
                format!("{rel:?} goes through a symbolic link: an archive's files must be inside it"),
            ));
        }
    }
    Ok(at)
}
