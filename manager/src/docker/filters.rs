//! Docker's `filters` query parameter: URL-encoded JSON, either the CLI's
//! `{"key":{"value":true}}` or the older `{"key":["value"]}` that Portainer and
//! Swarmpit send. Several values under one key are ORed, the keys ANDed; a key the
//! endpoint does not know is a 400, as dockerd answers.

use std::collections::{BTreeMap, BTreeSet};

use super::error::DockerError;

/// The filters of one request: each key's values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Filters(BTreeMap<String, BTreeSet<String>>);

impl Filters {
    /// Reads `filters` (absent or empty means none), accepting only `known` keys.
    pub(crate) fn parse(raw: Option<&str>, known: &[&str]) -> Result<Filters, DockerError> {
        let Some(raw) = raw.map(str::trim).filter(|r| !r.is_empty()) else {
            return Ok(Filters::default());
        };
        let invalid = |why: String| DockerError::bad_request(format!("Invalid filter: {why}"));
        let value: serde_json::Value =
            serde_json::from_str(raw).map_err(|e| invalid(format!("filters is not JSON: {e}")))?;
        let serde_json::Value::Object(keys) = value else {
            return Err(invalid("filters must be a JSON object".into()));
        };
        let mut out = BTreeMap::new();
        for (key, values) in keys {
            if !known.contains(&key.as_str()) {
                return Err(invalid(format!("'{key}' (this endpoint filters on {})", known.join(", "))));
            }
            let set: BTreeSet<String> = match values {
                serde_json::Value::Object(map) => {
                    map.into_iter().filter(|(_, on)| on.as_bool() != Some(false)).map(|(v, _)| v).collect()
                }
                serde_json::Value::Array(list) => list
                    .into_iter()
                    .map(|v| match v {
                        serde_json::Value::String(s) => Ok(s),
                        other => Err(invalid(format!("'{key}' values must be strings, not {other}"))),
                    })
                    .collect::<Result<_, _>>()?,
                serde_json::Value::String(s) => BTreeSet::from([s]),
                other => return Err(invalid(format!("'{key}' must map values to true, not {other}"))),
            };
            out.insert(key, set);
        }
        Ok(Filters(out))
    }

    /// The values given for `key`, if the key was given.
    pub(crate) fn get(&self, key: &str) -> Option<&BTreeSet<String>> {
        self.0.get(key).filter(|v| !v.is_empty())
    }

    /// Whether `key` was not given, or `test` holds for one of its values.
    pub(crate) fn any(&self, key: &str, mut test: impl FnMut(&str) -> bool) -> bool {
        self.get(key).is_none_or(|values| values.iter().any(|v| test(v)))
    }

    /// Whether `key` was not given, or one of its values is `value`'s prefix (how
    /// `name` and `id` match in dockerd).
    pub(crate) fn prefix_of(&self, key: &str, value: &str) -> bool {
        self.any(key, |v| value.starts_with(v))
    }

    /// Whether `label` was not given, or every value (`key` or `key=value`) is
    /// among `labels`: dockerd ANDs label filters.
    pub(crate) fn labels_match(&self, labels: &BTreeMap<String, String>) -> bool {
        self.pairs_match("label", labels)
    }

    /// Whether `key` was not given, or every value of it (`key` or `key=value`)
    /// is among `labels` (`label`, and the nodes' `node.label`).
    pub(crate) fn pairs_match(&self, key: &str, labels: &BTreeMap<String, String>) -> bool {
        self.get(key).is_none_or(|wanted| {
            wanted.iter().all(|w| match w.split_once('=') {
                Some((k, v)) => labels.get(k).is_some_and(|have| have == v),
                None => labels.contains_key(w),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_encodings_read_the_same() {
        let cli = Filters::parse(Some(r#"{"name":{"web":true,"db":true}}"#), &["name"]).unwrap();
        let legacy = Filters::parse(Some(r#"{"name":["web","db"]}"#), &["name"]).unwrap();
        assert_eq!(cli, legacy);
        assert!(cli.prefix_of("name", "web-1") && cli.prefix_of("name", "db") && !cli.prefix_of("name", "x"));
        assert!(Filters::parse(None, &[]).unwrap().prefix_of("name", "anything"));
    }

    #[test]
    fn unknown_keys_and_bad_json_are_refused() {
        let e = Filters::parse(Some(r#"{"colour":{"red":true}}"#), &["name", "label"]).unwrap_err();
        assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST);
        assert!(e.message.contains("'colour'") && e.message.contains("name, label"), "{}", e.message);
        assert!(Filters::parse(Some("{nope"), &["name"]).is_err());
    }

    #[test]
    fn labels_are_anded_and_match_by_key_or_pair() {
        let f = Filters::parse(Some(r#"{"label":{"a":true,"b=2":true}}"#), &["label"]).unwrap();
        let labels =
            |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        assert!(f.labels_match(&labels(&[("a", "x"), ("b", "2")])));
        assert!(!f.labels_match(&labels(&[("a", "x"), ("b", "3")])));
        assert!(!f.labels_match(&labels(&[("b", "2")])));
    }
}
