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
    /// body but its name and labels ([`decode::from_json_redacted`](crate::decode::from_json_redacted)).
    pub fn from_json(body: &[u8]) -> Result<PayloadSpec, crate::decode::DecodeError> {
        crate::decode::from_json_redacted(body, &["name", "labels"], "name, labels and data (base64)")
    }
}

/// New labels for a secret or config, valid only if it is still at `version`.
/// Nothing else of it can change: data given here must be what it holds, and other
/// data is refused (create a new one and update the services instead).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PayloadUpdate {
    /// The version read.
    pub version: u64,
    /// Its labels, all of them.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Its data (base64), if given: it must be unchanged.
    #[schema(value_type = Option<String>, format = Byte)]
    #[serde(default, with = "base64_opt", skip_serializing_if = "Option::is_none")]
    pub data: Option<Vec<u8>>,
}

impl std::fmt::Debug for PayloadUpdate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PayloadUpdate")
            .field("version", &self.version)
            .field("labels", &self.labels)
            .field("data", &self.data.as_ref().map(|d| format!("<{} bytes redacted>", d.len())))
            .finish()
    }
}

impl PayloadUpdate {
    /// Reads an update from a request body, with errors that repeat nothing of it
    /// but its version and labels.
    pub fn from_json(body: &[u8]) -> Result<PayloadUpdate, crate::decode::DecodeError> {
        crate::decode::from_json_redacted(body, &["version", "labels"], "version, labels and data (base64)")
    }
}

/// Serde for optional bytes as standard base64 text.
mod base64_opt {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(data: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match data {
            Some(d) => super::base64_bytes::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        #[derive(Deserialize)]
        struct Wrapped(#[serde(with = "super::base64_bytes")] Vec<u8>);
        Ok(Option::<Wrapped>::deserialize(d)?.map(|w| w.0))
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
        let files = crate::wire::Base64(b"hunter2".to_vec());
        assert_eq!(format!("{files:?}"), "Base64(<7 bytes redacted>)");
        // Not base64: the error must not quote the bad character, nor the rest.
        for bad in ["hunter2!", "aHVudGVyMg=x", "aHVudGVyM"] {
            let body = format!(r#"{{"name":"pw","data":"{bad}"}}"#);
            for e in [
                crate::decode::from_json::<PayloadSpec>(body.as_bytes()).unwrap_err().to_string(),
                PayloadSpec::from_json(body.as_bytes()).unwrap_err().to_string(),
            ] {
                assert!(e.starts_with("data: data is not valid base64"), "{e}");
                assert!(
                    !e.contains('!') && !e.contains("'x'") && !e.contains("hunter") && !e.contains(bad),
                    "{e}"
                );
            }
        }
        // Whatever the shape, the body's values are not repeated.
        for (body, says) in [
            (r#"{"name":"pw","hunter2":"aGk="}"#, "an unknown field"),
            (r#"{"name":"pw","data":123456789}"#, "data: must be the data as base64 text"),
            (r#""hunter2""#, "the body must be a JSON object"),
            (r#"{"name":"pw","data":"hunter2"#, "EOF"),
        ] {
            let e = PayloadSpec::from_json(body.as_bytes()).unwrap_err().to_string();
            assert!(e.contains(says), "{body}: {e}");
            assert!(!e.contains("hunter2") && !e.contains("123456789"), "{body}: {e}");
        }
        // Not secret: the name's and labels' errors say what was wrong with them.
        let e = PayloadSpec::from_json(br#"{"name":7,"data":"aGk="}"#).unwrap_err().to_string();
        assert!(e.starts_with("name: invalid type: integer `7`"), "{e}");
        assert_eq!(PayloadSpec::from_json(br#"{"name":"pw","data":"aGk="}"#).unwrap().data, b"hi");
        // An update, likewise.
        let u = PayloadUpdate::from_json(br#"{"version":3,"labels":{"a":"b"}}"#).unwrap();
        assert_eq!((u.version, u.data), (3, None));
        let u = PayloadUpdate::from_json(br#"{"version":3,"data":"aGk="}"#).unwrap();
        assert_eq!(u.data.as_deref(), Some(&b"hi"[..]));
        assert!(!format!("{u:?}").contains("104"), "{u:?}");
        for body in [
            r#"{"version":3,"data":"hunter2!"}"#,
            r#"{"version":3,"hunter2":1}"#,
            r#"{"version":3,"data":1234567}"#,
        ] {
            let e = PayloadUpdate::from_json(body.as_bytes()).unwrap_err().to_string();
            assert!(!e.contains("hunter2") && !e.contains("1234567"), "{body}: {e}");
        }
    }
}
