//! What fits the lists for polling dashboards: pages in key order behind an opaque
//! cursor, blocking queries on a per-kind store index (`?wait_index=&wait=`), the
//! index an answer reflects (`X-Shoal-Index`, also its weak `ETag`, so
//! `If-None-Match` gets a 304), and the choice of fields.
//!
//! Pages are Nomad's kind: each list has a unique key that never changes for an
//! object (services and the other named kinds: name then id; tasks: service id, slot,
//! node for a global task, newest first, id), and a cursor is the key of the last item
//! given. A page is taken from the latest state, so a cursor stays valid across any
//! change: an object created past it shows on a later page, a removed one is not
//! returned, and none is returned twice.

use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Api, ApiError};
use crate::store::Kind;

/// The store index an answer reflects: the last one that changed an object of the
/// kinds the answer shows.
pub(crate) const INDEX_HEADER: &str = "x-shoal-index";
/// The cursor of the next page; absent on the last one.
pub(crate) const NEXT_CURSOR_HEADER: &str = "x-shoal-next-cursor";
/// How long a blocking query waits without `wait`.
pub(crate) const DEFAULT_WAIT: Duration = Duration::from_secs(300);
/// The longest `wait` taken (longer ones are cut to it).
pub(crate) const MAX_WAIT: Duration = Duration::from_secs(600);

/// The version tag of cursors: a cursor of another format is refused, not misread.
const CURSOR_PREFIX: &str = "v1.";

/// A cursor naming the item `key`: base64url of its JSON, behind a version tag.
pub(crate) fn encode_cursor<K: Serialize>(key: &K) -> String {
    let json = serde_json::to_vec(key).expect("keys serialize");
    format!("{CURSOR_PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json))
}

/// The key a cursor names; a cursor this list did not give is a 400 naming `cursor`.
pub(crate) fn decode_cursor<K: DeserializeOwned>(cursor: Option<&str>) -> Result<Option<K>, ApiError> {
    let Some(cursor) = cursor else { return Ok(None) };
    let bad = || {
        ApiError::bad_request(format!(
            "cursor {cursor:?} is not one this list gave: pass the X-Shoal-Next-Cursor of an earlier \
             answer of the same list, or no cursor for the first page"
        ))
        .with_field("cursor")
    };
    let text = cursor.strip_prefix(CURSOR_PREFIX).ok_or_else(bad)?;
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text).map_err(|_| bad())?;
    serde_json::from_slice(&json).map(Some).map_err(|_| bad())
}

/// Checks a page size: at least one.
pub(crate) fn check_limit(limit: Option<usize>) -> Result<(), ApiError> {
    if limit == Some(0) {
        return Err(ApiError::bad_request("limit must be at least 1 (leave it out for the whole list)")
            .with_field("limit"));
    }
    Ok(())
}

/// The items past `after` in key order, at most `limit` of them, and the cursor of
/// the next page when more remain.
pub(crate) fn page<T, K: Ord + Serialize>(
    items: impl IntoIterator<Item = T>,
    key: impl Fn(&T) -> K,
    after: Option<&K>,
    limit: Option<usize>,
) -> (Vec<T>, Option<String>) {
    let mut keyed: Vec<(K, T)> =
        items.into_iter().map(|t| (key(&t), t)).filter(|(k, _)| after.is_none_or(|a| k > a)).collect();
    // Keys are unique. Only the page's own items are sorted: the first `limit` are
    // picked out in linear time (sorting all of 100,000 tasks for each page of 1,000
    // made a walk of the whole list quadratic).
    let next = match limit {
        Some(n) if keyed.len() > n => {
            keyed.select_nth_unstable_by(n - 1, |a, b| a.0.cmp(&b.0));
            keyed.truncate(n);
            keyed.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            keyed.last().map(|(k, _)| encode_cursor(k))
        }
        _ => {
            keyed.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            None
        }
    };
    (keyed.into_iter().map(|(_, t)| t).collect(), next)
}

/// The top-level fields asked for with `fields=a,b`, checked to be field names.
pub(crate) fn parse_fields(fields: Option<&str>) -> Result<Option<Vec<String>>, ApiError> {
    let Some(fields) = fields else { return Ok(None) };
    let names: Vec<String> = fields.split(',').map(|f| f.trim().to_owned()).collect();
    if let Some(bad) =
        names.iter().find(|n| n.is_empty() || !n.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
    {
        return Err(ApiError::bad_request(format!(
            "fields: {bad:?} is not a field name; write top-level fields comma-separated, as `id,status`"
        ))
        .with_field("fields"));
    }
    Ok(Some(names))
}

/// `item` as JSON with only `fields` (all of it without).
pub(crate) fn render_fields<T: Serialize>(item: &T, fields: Option<&[String]>) -> Vec<u8> {
    let Some(fields) = fields else { return serde_json::to_vec(item).expect("objects serialize") };
    let mut value = serde_json::to_value(item).expect("objects serialize");
    if let serde_json::Value::Object(map) = &mut value {
        map.retain(|k, _| fields.iter().any(|f| f == k));
    }
    serde_json::to_vec(&value).expect("JSON values serialize")
}

/// How long a blocking query waits: `wait` (Go syntax), 5 minutes without, 10 at most.
pub(crate) fn wait_time(wait: Option<&str>) -> Result<Duration, ApiError> {
    match wait {
        None => Ok(DEFAULT_WAIT),
        Some(w) => shoal_api::duration::parse(w)
            .map(|d| d.min(MAX_WAIT))
            .map_err(|e| ApiError::bad_request(format!("wait: {e}")).with_field("wait")),
    }
}

impl Api {
    /// What every list does before it reads: where the page starts (`cursor`, a 400
    /// naming it when this list did not give it), the page size checked, then the
    /// blocking query's wait on `kinds`.
    pub(crate) async fn start_list<K: DeserializeOwned>(
        &self,
        kinds: &[Kind],
        cursor: Option<&str>,
        limit: Option<usize>,
        wait_index: Option<u64>,
        wait: Option<&str>,
    ) -> Result<Option<K>, ApiError> {
        let after = decode_cursor(cursor)?;
        check_limit(limit)?;
        self.block(kinds, wait_index, wait).await?;
        Ok(after)
    }

    /// A blocking query's wait: with `wait_index`, until the index of `kinds` passes
    /// it or the wait (plus up to a sixteenth at random) runs out; the store's apply
    /// wakes it, nothing polls. Without, at once (`wait` is still checked).
    pub(crate) async fn block(
        &self,
        kinds: &[Kind],
        wait_index: Option<u64>,
        wait: Option<&str>,
    ) -> Result<(), ApiError> {
        let wait = wait_time(wait)?;
        let Some(after) = wait_index else { return Ok(()) };
        let jitter = wait.mul_f64(rand::random_range(0.0..=1.0 / 16.0));
        let mut indexes = self.manager.indexes();
        // A closed channel (the manager stopping) ends the wait too.
        let _ = tokio::time::timeout(wait + jitter, indexes.wait_for(|ix| ix.of(kinds) > after)).await;
        Ok(())
    }
}

/// A list rendered at a store index, with the cursor of its next page.
#[derive(Debug, Clone)]
pub(crate) struct Listed {
    /// The JSON array.
    pub body: Bytes,
    /// The index it reflects.
    pub index: u64,
    /// The next page's cursor.
    pub next: Option<String>,
}

/// Whether `If-None-Match` holds `tag` (weak comparison, RFC 9110 §8.8.3.2).
fn none_match(request: &HeaderMap, tag: &str) -> bool {
    let weak = |t: &str| t.trim().trim_start_matches("W/").to_owned();
    request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|t| t.trim() == "*" || weak(t) == weak(tag)))
}

/// The answer of a list (or any read) at `index`: JSON with `X-Shoal-Index` and the
/// next cursor; with `etag`, also `ETag: W/"<index>"`, and a 304 without a body
/// when the request's `If-None-Match` has it. (`etag` is false where the answer holds
/// more than the store, as nodes' live manager status.)
pub(crate) fn reply(request: &HeaderMap, listed: Listed, etag: bool) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert(INDEX_HEADER, HeaderValue::from(listed.index));
    if let Some(next) = &listed.next {
        headers.insert(NEXT_CURSOR_HEADER, HeaderValue::from_str(next).expect("cursors are base64url"));
    }
    if etag {
        let tag = format!("W/\"{}\"", listed.index);
        if none_match(request, &tag) {
            headers.insert(header::ETAG, HeaderValue::from_str(&tag).expect("a number quoted"));
            return (StatusCode::NOT_MODIFIED, headers).into_response();
        }
        headers.insert(header::ETAG, HeaderValue::from_str(&tag).expect("a number quoted"));
    }
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    (headers, listed.body).into_response()
}

/// `value` as JSON at `index` (an inspect, or a list not kept rendered).
pub(crate) fn reply_json<T: Serialize>(request: &HeaderMap, value: &T, index: u64, etag: bool) -> Response {
    let body = Bytes::from(serde_json::to_vec(value).expect("replies serialize"));
    reply(request, Listed { body, index, next: None }, etag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_names_the_key_it_was_made_of() {
        let key =
            ("svc-1".to_owned(), Some(3u64), None::<String>, -1_700_000_000_000_000i64, "t-9".to_owned());
        let cursor = encode_cursor(&key);
        assert!(cursor.starts_with("v1."), "{cursor}");
        assert!(cursor.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)), "URL-safe: {cursor}");
        assert_eq!(decode_cursor(Some(&cursor)).unwrap(), Some(key));
        assert_eq!(decode_cursor::<(String, String)>(None).unwrap(), None);
    }

    #[test]
    fn a_cursor_not_given_by_the_list_is_a_400_naming_it() {
        let other_list = encode_cursor(&("web".to_owned(), "id".to_owned()));
        for bad in ["", "v1.", "v1.!!!", "v2.WyJhIl0", "WyJ3ZWIiLCJpZCJd", other_list.as_str()] {
            let e = decode_cursor::<(String, Option<u64>, String)>(Some(bad)).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{bad}");
            assert_eq!(e.detail.field.as_deref(), Some("cursor"), "{bad}");
        }
    }

    #[test]
    fn pages_follow_the_key_and_skip_nothing() {
        let items: Vec<u32> = vec![5, 1, 4, 2, 3];
        let (first, next) = page(items.clone(), |i| *i, None, Some(2));
        assert_eq!(first, [1, 2]);
        let after: u32 = decode_cursor(next.as_deref()).unwrap().unwrap();
        // 2 is removed and 0 and 6 are added between the pages: 0 falls before the
        // cursor (not seen), 6 after it (seen), nothing twice.
        let changed = vec![5, 1, 4, 3, 0, 6];
        let (second, next) = page(changed.clone(), |i| *i, Some(&after), Some(2));
        assert_eq!(second, [3, 4]);
        let after: u32 = decode_cursor(next.as_deref()).unwrap().unwrap();
        let (last, next) = page(changed, |i| *i, Some(&after), Some(2));
        assert_eq!((last, next), (vec![5, 6], None), "no cursor on the last page");
        assert_eq!(page(items, |i| *i, None, None).0, [1, 2, 3, 4, 5]);
    }

    #[test]
    fn waits_default_to_five_minutes_and_stop_at_ten() {
        assert_eq!(wait_time(None).unwrap(), DEFAULT_WAIT);
        assert_eq!(wait_time(Some("10s")).unwrap(), Duration::from_secs(10));
        assert_eq!(wait_time(Some("1h")).unwrap(), MAX_WAIT);
        assert_eq!(wait_time(Some("soon")).unwrap_err().detail.field.as_deref(), Some("wait"));
    }

    #[test]
    fn fields_are_names_and_keep_only_themselves() {
        assert!(parse_fields(Some("id,status")).unwrap().is_some());
        assert_eq!(parse_fields(Some("id,,x")).unwrap_err().detail.field.as_deref(), Some("fields"));
        let fields = parse_fields(Some("id,nope")).unwrap();
        let json = render_fields(&serde_json::json!({"id": "a", "spec": {"x": 1}}), fields.as_deref());
        assert_eq!(json, br#"{"id":"a"}"#);
    }

    #[test]
    fn an_etag_seen_before_gets_a_304() {
        let listed = Listed { body: Bytes::from_static(b"[]"), index: 42, next: None };
        let mut request = HeaderMap::new();
        let fresh = reply(&request, listed.clone(), true);
        assert_eq!(fresh.status(), StatusCode::OK);
        assert_eq!(fresh.headers()[header::ETAG], "W/\"42\"");
        assert_eq!(fresh.headers()[INDEX_HEADER], "42");
        request.insert(header::IF_NONE_MATCH, HeaderValue::from_static("W/\"41\", W/\"42\""));
        assert_eq!(reply(&request, listed.clone(), true).status(), StatusCode::NOT_MODIFIED);
        assert_eq!(reply(&request, listed.clone(), false).status(), StatusCode::OK, "no ETag, no 304");
        request.insert(header::IF_NONE_MATCH, HeaderValue::from_static("W/\"41\""));
        assert_eq!(reply(&request, listed, true).status(), StatusCode::OK);
    }
}
