//! Pulling images from and pushing them to OCI registries (distribution API v2, with
//! anonymous, basic or token auth) through `oci-client`. Blobs land in the store only
//! after their digest is checked, and layers go through the same unpacking as imports.
//!
//! Registries on loopback (`127.0.0.0/8`, `localhost`, `::1`) are spoken to over plain
//! HTTP, as Docker does; any other registry needs HTTPS unless listed as insecure.

use std::path::PathBuf;

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use oci_spec::image::{ImageIndex, ImageManifest};
use tokio::io::AsyncWriteExt;

use super::import::store_manifest;
use super::{ImageError, ImageRecord, ImageStore, ImportError};

/// Why a pull or push failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The registry refused or could not be reached.
    #[error("registry {registry}")]
    Registry {
        /// The registry host.
        registry: String,
        /// What went wrong, from the client.
        #[source]
        source: Box<oci_client::errors::OciDistributionError>,
    },
    /// The registry client does not read the name as a reference.
    #[error("{name} is not an image reference the registry client accepts")]
    Reference {
        /// The name, in full.
        name: String,
        /// Why.
        #[source]
        source: oci_client::ParseError,
    },
    /// The image's media type cannot be sent as a header.
    #[error("the image's media type {media_type:?} cannot be sent to a registry")]
    MediaType {
        /// The media type.
        media_type: String,
        /// Why.
        #[source]
        source: http::header::InvalidHeaderValue,
    },
    /// No manifest for this machine's platform.
    #[error("{0} has no image for linux/{1}")]
    NoPlatform(String, String),
    /// The image cannot be pushed as stored.
    #[error(
        "image {0} was imported from a docker save archive and has no registry manifest; import an OCI layout to push it"
    )]
    NoManifest(String),
    /// The store refused something.
    #[error(transparent)]
    Store(#[from] ImageError),
    /// Storing the pulled image failed.
    #[error(transparent)]
    Import(#[from] ImportError),
}

/// How to reach a registry.
#[derive(Debug, Clone, Default)]
pub struct RegistryOptions {
    /// `user:password` for basic auth (token auth is negotiated from it).
    pub credentials: Option<(String, String)>,
    /// Registries (`host:port`) to reach over plain HTTP besides loopback ones.
    pub insecure: Vec<String>,
}

fn is_loopback(registry: &str) -> bool {
    let host = registry
        .rsplit_once(':')
        .map_or(registry, |(h, p)| if p.bytes().all(|b| b.is_ascii_digit()) { h } else { registry });
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The client's form of a reference (checked with our parser first, for its messages).
fn oci_reference(name: &str) -> Result<Reference, RegistryError> {
    let whole = shoal_api::image::parse(name).map_err(ImageError::from)?.whole();
    whole
        .parse()
        .map_err(|source: oci_client::ParseError| RegistryError::Reference { name: whole.clone(), source })
}

fn client(reference: &Reference, opts: &RegistryOptions) -> (Client, RegistryAuth) {
    let mut http = opts.insecure.clone();
    if is_loopback(reference.registry()) {
        http.push(reference.registry().to_owned());
    }
    let config = ClientConfig { protocol: ClientProtocol::HttpsExcept(http), ..ClientConfig::default() };
    let auth = match &opts.credentials {
        Some((u, p)) => RegistryAuth::Basic(u.clone(), p.clone()),
        None => RegistryAuth::Anonymous,
    };
    (Client::new(config), auth)
}

fn registry_err(
    reference: &Reference,
) -> impl Fn(oci_client::errors::OciDistributionError) -> RegistryError + '_ {
    move |e| RegistryError::Registry { registry: reference.registry().to_owned(), source: Box::new(e) }
}

const MANIFEST_TYPES: [&str; 4] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];

/// Pulls `name` into the store; returns the image record.
pub async fn pull(
    store: &ImageStore,
    name: &str,
    opts: &RegistryOptions,
) -> Result<ImageRecord, RegistryError> {
    let reference = oci_reference(name)?;
    let (client, auth) = client(&reference, opts);
    let err = registry_err(&reference);
    let (mut bytes, mut digest) =
        client.pull_manifest_raw(&reference, &auth, &MANIFEST_TYPES).await.map_err(&err)?;
    // An index: pick this machine's manifest and fetch it by digest.
    if let Ok(index) = ImageIndex::from_reader(&bytes[..])
        && !index.manifests().is_empty()
    {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            other => other,
        };
        let chosen = index
            .manifests()
            .iter()
            .find(|m| {
                m.platform()
                    .as_ref()
                    .is_some_and(|p| p.os().to_string() == "linux" && p.architecture().to_string() == arch)
            })
            .ok_or_else(|| RegistryError::NoPlatform(name.to_owned(), arch.to_owned()))?;
        let by_digest = reference.clone_with_digest(chosen.digest().to_string());
        (bytes, digest) = client.pull_manifest_raw(&by_digest, &auth, &MANIFEST_TYPES).await.map_err(&err)?;
    }
    super::check_digest(&bytes, &digest, &format!("manifest of {name}"))?;
    let manifest = ImageManifest::from_reader(&bytes[..])
        .map_err(|e| ImageError::BadDocument { what: format!("manifest of {name}"), source: e.into() })?;
    store.put_blob(&bytes, Some(&digest), "manifest")?;
    let tmp = store.temp_dir()?;
    let mut wanted: Vec<String> = vec![manifest.config().digest().to_string()];
    wanted.extend(manifest.layers().iter().map(|l| l.digest().to_string()));
    for blob in &wanted {
        if store.blob_path(blob).exists() {
            continue;
        }
        let path = tmp.path().join(blob.replace(':', "_"));
        let mut file = tokio::fs::File::create(&path)
            .await
            .map_err(|e| ImageError::Io { what: format!("create {}", path.display()), source: e })?;
        // The client checks the blob's digest while it downloads.
        client.pull_blob(&reference, blob.as_str(), &mut file).await.map_err(&err)?;
        file.flush().await.map_err(|e| ImageError::Io { what: "write blob".into(), source: e })?;
        store.adopt_blob(&path, blob)?;
    }
    let layer_path = |d: &str| -> Result<PathBuf, ImportError> { Ok(store.blob_path(d)) };
    Ok(store_manifest(store, &manifest, Some(&digest), layer_path, &[name.to_owned()])?)
}

/// Pushes the image `name` (which must have a registry manifest) to the registry its
/// name points at, or to `target` if given.
pub async fn push(
    store: &ImageStore,
    name: &str,
    target: Option<&str>,
    opts: &RegistryOptions,
) -> Result<String, RegistryError> {
    let record = store.find(name)?;
    let manifest_digest =
        record.manifest_digest.clone().ok_or_else(|| RegistryError::NoManifest(name.to_owned()))?;
    let dest = target.unwrap_or(name);
    let reference = oci_reference(dest)?;
    let (client, auth) = client(&reference, opts);
    let err = registry_err(&reference);
    client.auth(&reference, &auth, oci_client::RegistryOperation::Push).await.map_err(&err)?;
    let manifest_bytes = store.read_blob(&manifest_digest)?;
    let manifest = ImageManifest::from_reader(&manifest_bytes[..])
        .map_err(|e| ImageError::BadDocument { what: format!("manifest of {name}"), source: e.into() })?;
    let mut blobs = vec![manifest.config().digest().to_string()];
    blobs.extend(manifest.layers().iter().map(|l| l.digest().to_string()));
    for blob in blobs {
        if client.blob_exists(&reference, &blob).await.map_err(&err)? {
            continue;
        }
        let data = store.read_blob(&blob)?;
        client.push_blob(&reference, data, &blob).await.map_err(&err)?;
    }
    let content_type = manifest
        .media_type()
        .as_ref()
        .map_or_else(|| "application/vnd.oci.image.manifest.v1+json".to_owned(), |m| m.to_string());
    let header = http::HeaderValue::from_str(&content_type)
        .map_err(|source| RegistryError::MediaType { media_type: content_type.clone(), source })?;
    client.push_manifest_raw(&reference, manifest_bytes, header).await.map_err(&err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_registries_use_http() {
        for r in ["127.0.0.1:5000", "localhost:5000", "localhost", "[::1]:5000", "127.9.9.9"] {
            assert!(is_loopback(r), "{r}");
        }
        for r in ["registry.example:5000", "10.0.0.1:5000", "docker.io"] {
            assert!(!is_loopback(r), "{r}");
        }
    }
}
