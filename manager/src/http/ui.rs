//! `/ui`: the live dashboard, a page and its script and style, compiled into the
//! binary from `manager/ui/` (nothing is fetched at build or run time). The files
//! hold no cluster data, so on TCP they are served without a token: the script asks
//! for the (read-only) token and sends it with every API call it makes. Each file
//! goes out with its SHA-256 as the ETag and `Cache-Control: no-cache`, so a browser
//! revalidates and an upgraded manager's page is never stale; a content security
//! policy keeps the page to its own origin.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::ApiError;

/// The dashboard's files, `manager/ui/`, embedded also in debug builds.
#[derive(rust_embed::Embed)]
#[folder = "ui/"]
struct Assets;

/// Scripts, styles and API calls only from the page's own origin; no inline code,
/// no frames, no forms posted anywhere.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The dashboard's routes: `/ui` (the page) and `/ui/<file>`.
pub(super) fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/ui", get(|headers: HeaderMap| async move { asset("index.html", &headers) }))
        .route("/ui/", get(|headers: HeaderMap| async move { asset("index.html", &headers) }))
        .route(
            "/ui/{file}",
            get(|Path(file): Path<String>, headers: HeaderMap| async move { asset(&file, &headers) }),
        )
}

/// The media type of a dashboard file, from its extension.
fn content_type(file: &str) -> &'static str {
    match file.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        _ => "application/octet-stream",
    }
}

/// One embedded file, or 304 when the caller holds this version.
fn asset(file: &str, headers: &HeaderMap) -> Response {
    let Some(found) = Assets::get(file) else {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("the dashboard has no file {file:?}"),
        )
        .into_response();
    };
    let hash: String = found.metadata.sha256_hash().iter().map(|b| format!("{b:02x}")).collect();
    let etag = HeaderValue::from_str(&format!("\"{hash}\"")).expect("a hex ETag is a valid header");
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|tag| tag.trim() == etag || tag.trim() == "*"));
    let common = [
        (header::ETAG, etag),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP)),
        (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        (header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")),
    ];
    if fresh {
        return (StatusCode::NOT_MODIFIED, common).into_response();
    }
    let body = found.data.into_owned();
    (common, [(header::CONTENT_TYPE, HeaderValue::from_static(content_type(file)))], body).into_response()
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use sha2::{Digest as _, Sha256};
    use tower::ServiceExt as _;

    use super::*;

    async fn get(path: &str, if_none_match: Option<&str>) -> (StatusCode, HeaderMap, Vec<u8>) {
        let mut req = Request::get(path);
        if let Some(tag) = if_none_match {
            req = req.header(header::IF_NONE_MATCH, tag);
        }
        let resp = routes::<()>().oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
        let (parts, body) = resp.into_parts();
        let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap();
        (parts.status, parts.headers, bytes.to_vec())
    }

    #[tokio::test]
    async fn the_page_and_its_files_are_served_with_types_and_etags() {
        for (path, file, ty) in [
            ("/ui", "index.html", "text/html; charset=utf-8"),
            ("/ui/", "index.html", "text/html; charset=utf-8"),
            ("/ui/app.js", "app.js", "text/javascript; charset=utf-8"),
            ("/ui/style.css", "style.css", "text/css; charset=utf-8"),
        ] {
            let (status, headers, body) = get(path, None).await;
            assert_eq!(status, StatusCode::OK, "{path}");
            assert_eq!(headers[header::CONTENT_TYPE], ty, "{path}");
            assert_eq!(headers[header::CACHE_CONTROL], "no-cache", "{path}");
            assert_eq!(headers[header::CONTENT_SECURITY_POLICY], CSP, "{path}");
            let on_disk =
                std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/ui/").to_owned() + file).unwrap();
            assert_eq!(body, on_disk, "{path} is the file in manager/ui");
            let sha: String = Sha256::digest(&on_disk).iter().map(|b| format!("{b:02x}")).collect();
            let etag = headers[header::ETAG].to_str().unwrap().to_owned();
            assert_eq!(etag, format!("\"{sha}\""), "{path}: the ETag is the file's SHA-256");

            // A browser holding this version gets 304 and no body; another version, the file.
            let (status, headers, body) = get(path, Some(&etag)).await;
            assert_eq!((status, body.len()), (StatusCode::NOT_MODIFIED, 0), "{path}");
            assert_eq!(headers[header::ETAG], etag.as_str());
            let (status, _, body) = get(path, Some("\"0000\"")).await;
            assert_eq!((status, body.len()), (StatusCode::OK, on_disk.len()), "{path}");
        }
    }

    #[tokio::test]
    async fn the_page_names_only_its_own_files_and_unknown_files_are_404() {
        let (_, _, page) = get("/ui", None).await;
        let page = String::from_utf8(page).unwrap();
        assert!(page.contains("src=\"/ui/app.js\"") && page.contains("href=\"/ui/style.css\""), "{page}");
        for text in [page, String::from_utf8(get("/ui/app.js", None).await.2).unwrap()] {
            assert!(!text.contains("http://") && !text.contains("https://"), "no external URL");
        }
        let (status, headers, _) = get("/ui/missing.js", None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(headers[header::CONTENT_TYPE], "application/json");
    }
}
