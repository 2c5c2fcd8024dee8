//! Secrets and configs: small immutable payloads given to tasks as files. Only labels
//! can change after creation; rotating means a new name and a service update.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::object::Meta;

/// The largest secret or config payload, as in Swarm (500 KiB).
pub const MAX_PAYLOAD_BYTES: usize = 500 * 1024;

/// What a user declares for a secret or a config. Its Debug leaves the data out.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
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

impl std::fmt::Debug for PayloadSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PayloadSpec")
            .field("name", &self.name)
            .field("labels", &self.labels)
            .field("data", &format_args!("<{} bytes redacted>", self.data.len()))
            .finish()
    }
}

impl PayloadSpec {
    /// Reads a spec from a request body, with errors that repeat nothing of the
    /// body: serde's own would quote an unknown key, a number given as the data, or a
    /// bare string given as the body, any of which may be the secret.
    pub fn from_json(body: &[u8]) -> Result<PayloadSpec, crate::decode::DecodeError> {
        use crate::decode::DecodeError;
        let de = &mut serde_json::Deserializer::from_slice(body);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let field = e.path().to_string();
            let inner = e.into_inner();
            let (field, message) = match field.as_str() {
                _ if inner.is_syntax() || inner.is_eof() => {
                    // Positions only ("expected `,` or `}` at line 1 column 9").
                    (String::new(), inner.to_string())
                }
                // Names and labels are not secret; their errors stay as serde says.
                "name" => (field, strip_position(&inner.to_string())),
                f if f.starts_with("labels") => (field, strip_position(&inner.to_string())),
                // Our own message names no byte of the data.
                "data" if inner.to_string().starts_with("data is not valid base64") => {
                    (field, strip_position(&inner.to_string()))
                }
                "data" => (field, "must be the data as base64 text".to_owned()),
                "." | "?" | "" => (
                    String::new(),
                    "the body must be a JSON object with name, labels and data (base64)".to_owned(),
                ),
                _ => (
                    String::new(),
                    "an unknown field (not repeated here: it may be secret); give only name, labels \
                     and data (base64)"
                        .to_owned(),
                ),
            };
            DecodeError { field, message }
        })
    }
}

/// serde_json appends " at line L column C"; the field says more.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
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

    /// Reads base64 text. The error names no byte of it (base64's own error
    /// would quote the offending character, a piece of the secret).
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        use base64::DecodeError as E;
        let text = String::deserialize(d)?;
        STANDARD.decode(text.trim()).map_err(|e| {
            let why = match e {
                E::InvalidByte(at, _) => format!("a character that is not base64 at offset {at}"),
                E::InvalidLength(n) => format!("a length ({n} symbols) that base64 cannot have"),
                E::InvalidLastSymbol(at, _) => {
                    format!("a last symbol at offset {at} that base64 cannot end with")
                }
                E::InvalidPadding => "bad padding".to_owned(),
            };
            serde::de::Error::custom(format!("data is not valid base64: {why}; encode it with `base64 -w0`"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_data_shows_nowhere_in_debug_or_decode_errors() {
        let spec = PayloadSpec { name: "pw".into(), labels: Default::default(), data: b"hunter2".to_vec() };
        let secret = Secret { id: "s1".into(), meta: crate::Meta::new(chrono::Utc::now()), spec };
        let shown = format!("{secret:?} {secret:#?}");
        assert!(shown.contains("<7 bytes redacted>"), "{shown}");
        assert!(!shown.contains("hunter2") && !shown.contains("104, 117"), "{shown}");
        // Not base64: the error must not quote the bad character, nor the rest.
        for bad in ["hunter2!", "aHVudGVyMg=x", "aHVudGVyM"] {
            let body = format!(r#"{{"name":"pw","data":"{bad}"}}"#);
            let e = crate::decode::from_json::<PayloadSpec>(body.as_bytes()).unwrap_err().to_string();
            assert!(e.starts_with("data: data is not valid base64"), "{e}");
            assert!(
                !e.contains('!') && !e.contains("'x'") && !e.contains("hunter") && !e.contains(bad),
                "{e}"
            );
        }
    }
}
