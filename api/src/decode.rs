//! Reading objects from JSON with errors that name the field that is wrong, so a bad
//! request body says `task_template.container.stop_grace_period: invalid duration …`
//! rather than "line 1 column 214".

use serde::de::DeserializeOwned;

/// A body that could not be read as the expected object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", if field.is_empty() { message.clone() } else { format!("{field}: {message}") })]
pub struct DecodeError {
    /// Path of the field that could not be read; empty for the whole body.
    pub field: String,
    /// What was wrong.
    pub message: String,
}

/// Reads `T` from JSON text, naming the failing field on error.
pub fn from_json<T: DeserializeOwned>(text: &[u8]) -> Result<T, DecodeError> {
    let de = &mut serde_json::Deserializer::from_slice(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let field = path_string(e.path());
        let message = e.inner().to_string();
        if let Some(e) = missing(&field, &strip_position(&message)) {
            return e;
        }
        // Without a field, the line and column are the only pointer to the problem.
        let message = if field.is_empty() { message } else { strip_position(&message) };
        DecodeError { field, message }
    })
}

/// Reads `T` from JSON text that holds a secret, with errors that repeat nothing
/// of it: serde's own would quote an unknown key, a number given as the data, or a
/// bare string given as the body, any of which may be the secret. Errors of the
/// fields in `shown` (and under them) are serde's; `data` says only that it must be
/// base64 (or which offset is not); the rest say the body must have `fields`.
pub fn from_json_redacted<T: DeserializeOwned>(
    text: &[u8],
    shown: &[&str],
    fields: &str,
) -> Result<T, DecodeError> {
    let de = &mut serde_json::Deserializer::from_slice(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let field = path_string(e.path());
        let inner = e.into_inner();
        let message = inner.to_string();
        let is_shown = |f: &str| shown.iter().any(|s| f == *s || f.starts_with(&format!("{s}.")));
        let (field, message) = if inner.is_syntax() || inner.is_eof() {
            // Positions only ("expected `,` or `}` at line 1 column 9").
            (String::new(), message)
        } else if let Some(m) = missing(&field, &strip_position(&message)) {
            // A missing field is named by the schema, not by the body.
            (m.field, m.message)
        } else if is_shown(&field) {
            (field, strip_position(&message))
        } else if field == "data" && message.starts_with("data is not valid base64") {
            // Our own message, which names no byte of the data.
            (field, strip_position(&message))
        } else if field == "data" {
            (field, "must be the data as base64 text".to_owned())
        } else if field.is_empty() {
            (field, format!("the body must be a JSON object with {fields}"))
        } else {
            // Named by what it is, not by its key (which may be the secret).
            (
                "(unknown field)".to_owned(),
                format!("an unknown field (not repeated here: it may be secret); give {fields}"),
            )
        };
        DecodeError { field, message }
    })
}

/// Reads `T` from a YAML value tree, naming the failing field on error.
pub fn from_yaml_value<T: DeserializeOwned>(value: serde_yaml_ng::Value) -> Result<T, DecodeError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let field = path_string(e.path());
        let message = e.inner().to_string();
        missing(&field, &message).unwrap_or(DecodeError { field, message })
    })
}

/// serde reports a missing field at its parent (`missing field `image`` at
/// `task_template.container`, or at the root with no path at all): name the field
/// itself, so that every refusal of an object says which field to fix.
fn missing(parent: &str, message: &str) -> Option<DecodeError> {
    let name = message.strip_prefix("missing field `")?.strip_suffix('`')?;
    let field = if parent.is_empty() { name.to_owned() } else { format!("{parent}.{name}") };
    Some(DecodeError { field, message: "is required".to_owned() })
}

/// `a.b[2].c` from serde_path_to_error's path (a place it could not name, `?`, is left
/// out). A key that is empty reads `""`, so that even it is named.
fn path_string(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path {
        let name = match segment {
            Segment::Seq { index } => {
                out.push_str(&format!("[{index}]"));
                continue;
            }
            Segment::Map { key } if key.is_empty() => "\"\"",
            Segment::Map { key } => key,
            Segment::Enum { variant } => variant,
            Segment::Unknown => continue,
        };
        if !out.is_empty() {
            out.push('.');
        }
        out.push_str(name);
    }
    out
}

/// serde_json appends " at line L column C"; the field path says more.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::ServiceSpec;

    #[test]
    fn names_the_bad_field() {
        let body =
            br#"{"name":"web","task_template":{"container":{"image":"busybox","stop_grace_period":"soon"}}}"#;
        let e = from_json::<ServiceSpec>(body).unwrap_err();
        assert_eq!(e.field, "task_template.container.stop_grace_period");
        assert!(e.message.contains("invalid duration"), "{e}");
    }

    #[test]
    fn names_unknown_fields() {
        let body = br#"{"name":"web","task_template":{"container":{"image":"busybox","imgae":"x"}}}"#;
        let e = from_json::<ServiceSpec>(body).unwrap_err();
        assert_eq!(e.field, "task_template.container.imgae");
        assert!(e.message.contains("unknown field"), "{e}");
    }

    /// Found by the fuzzer (tests/fuzz.rs): `{}` was refused with no field at all.
    #[test]
    fn names_missing_fields_even_at_the_root() {
        let e = from_json::<ServiceSpec>(b"{}").unwrap_err();
        assert_eq!((e.field.as_str(), e.message.as_str()), ("name", "is required"));
        let e = from_json::<ServiceSpec>(br#"{"name":"web","task_template":{"container":{}}}"#).unwrap_err();
        assert_eq!(e.field, "task_template.container.image");
        assert_eq!(e.to_string(), "task_template.container.image: is required");
        let e = from_yaml_value::<ServiceSpec>(serde_yaml_ng::from_str("name: web").unwrap()).unwrap_err();
        assert_eq!(e.field, "task_template");
    }

    /// Found by the fuzzer (tests/fuzz.rs): an unknown key that is empty was refused
    /// with no field.
    #[test]
    fn names_an_empty_unknown_key() {
        let e = from_json::<ServiceSpec>(br#"{"":null}"#).unwrap_err();
        assert_eq!(e.field, r#""""#);
        assert!(e.message.starts_with("unknown field ``"), "{e}");
        let body = br#"{"name":"web","task_template":{"container":{"image":"busybox","":1}}}"#;
        assert_eq!(from_json::<ServiceSpec>(body).unwrap_err().field, r#"task_template.container."""#);
    }

    #[test]
    fn reports_syntax_errors() {
        let e = from_json::<ServiceSpec>(b"{").unwrap_err();
        assert!(e.message.contains("EOF"), "{e}");
    }
}
