//! Secrets and configs: small immutable payloads given to tasks as files. Only labels
//! can change after creation; rotating means a new name and a service update.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::object::Meta;

/// The largest secret or config payload, as in Swarm (500 KiB).
pub const MAX_PAYLOAD_BYTES: usize = 500 * 1024;

/// What a user declares for a secret or a config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PayloadSpec {
    /// Unique name among objects of its kind.
    pub name: String,
    /// Labels (the only field that may change).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The payload, base64 in JSON. At most 500 KiB.
    #[schema(value_type = String, format = Byte)]
    #[serde(with = "base64_bytes")]
    pub data: Vec<u8>,
}

/// A stored secret. Its data is encrypted at rest and never returned by the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Secret {
    /// Object id.
    pub id: String,
    /// Version and timestamps.
    #[serde(flatten)]
    pub meta: Meta,
    /// Name, labels and data.
    pub spec: PayloadSpec,
}

/// A stored config: like a secret, but not secret (mounted as a plain file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Config {
    /// Object id.
    pub id: String,
    /// Version and timestamps.
    #[serde(flatten)]
    pub meta: Meta,
    /// Name, labels and data.
    pub spec: PayloadSpec,
}

/// Serde for bytes as standard base64 text.
pub mod base64_bytes {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes the bytes as base64.
    pub fn serialize<S: Serializer>(data: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(data))
    }

    /// Reads base64 text.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD
            .decode(text.trim())
            .map_err(|e| serde::de::Error::custom(format!("data is not valid base64: {e}")))
    }
}
