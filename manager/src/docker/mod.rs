//! The Docker Engine API, v1.41, for the swarm parts: the `docker` CLI (`service`,
//! `stack`, `node`, `network`, `secret`, `config`), Portainer and Swarmpit drive
//! Shoal through it unchanged. It is served by every manager on its own unix socket
//! (and optionally on TCP, as HTTPS behind the cluster API's token and certificate
//! rules), at the versioned paths (`/v1.24/…` to `/v1.41/…`) and the unversioned
//! ones. Handlers read the local store and write through the same plans as the
//! cluster API; [`spec`] maps Docker's types to Shoal's and back, refusing what
//! Shoal cannot honour by name. `docs/docker-api.md` lists every endpoint and field.

mod error;
mod events;
mod filters;
mod logs;
mod nodes;
mod objects;
mod server;
mod services;
mod spec;
mod swarm;
mod system;
mod tasks;

use axum::Router;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, Uri};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

pub(crate) use error::DockerError;
pub use server::{DockerOptions, DockerServer};

use crate::http::Api;

/// The newest API version served (Docker 20.10's): clients use `min(theirs, this)`.
pub(crate) const API_VERSION: &str = "1.41";
/// The oldest version accepted in a path (what dockerd 20.10 accepts).
pub(crate) const MIN_API_VERSION: &str = "1.12";

/// Every route, unversioned; [`app`] strips the version from a request's path.
fn routes() -> Router<Api> {
    Router::new()
        .merge(system::routes())
        .merge(swarm::routes())
        .merge(services::routes())
        .merge(tasks::routes())
        .merge(logs::routes())
        .merge(nodes::routes())
        .merge(objects::routes())
        .merge(events::routes())
        .fallback(|| async { DockerError::new(axum::http::StatusCode::NOT_FOUND, "page not found") })
        .method_not_allowed_fallback(|| async {
            DockerError::new(axum::http::StatusCode::METHOD_NOT_ALLOWED, "method not allowed on this path")
        })
        .layer(axum::extract::DefaultBodyLimit::max(crate::http::MAX_BODY_BYTES))
}

/// The whole Engine API app for `api`; `auth` adds the TCP listener's access check
/// (the cluster API's token or certificate rules; `GET /swarm`, which shows the
/// join tokens, needs the admin scope).
fn app(api: Api, auth: bool) -> Router {
    let mut routes = routes();
    if auth {
        routes = routes.layer(axum::middleware::from_fn_with_state(
            api.clone(),
            |axum::extract::State(api): axum::extract::State<Api>,
             req: Request,
             next: axum::middleware::Next| async move {
                match crate::http::access::check(&api, &req) {
                    Ok(()) => next.run(req).await,
                    Err(e) => DockerError::from(e).into_response(),
                }
            },
        ));
    }
    let routes = routes.with_state(api);
    let unversioned = tower::service_fn(move |req: Request| {
        let routes = routes.clone();
        async move {
            use tower::ServiceExt as _;
            match strip_version(req) {
                Ok(req) => routes.oneshot(req).await,
                Err(e) => Ok(e.into_response()),
            }
        }
    });
    Router::new().fallback_service(unversioned).layer(axum::middleware::map_response(identify))
}

/// The headers dockerd sets on every response; the CLI negotiates its version from
/// `Api-Version` (without it, it falls back to 1.24 and hides half its commands).
async fn identify(mut res: Response) -> Response {
    let h = res.headers_mut();
    h.insert(HeaderName::from_static("api-version"), HeaderValue::from_static(API_VERSION));
    h.insert(HeaderName::from_static("ostype"), HeaderValue::from_static("linux"));
    h.insert(HeaderName::from_static("docker-experimental"), HeaderValue::from_static("false"));
    h.insert(
        axum::http::header::SERVER,
        HeaderValue::from_static(concat!("Shoal/", env!("CARGO_PKG_VERSION"), " (linux)")),
    );
    res
}

/// A `(major, minor)` API version from `1.41`.
fn parse_version(v: &str) -> Option<(u32, u32)> {
    let (major, minor) = v.split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// `/v1.41/services` → `/services`; a version outside [1.12, 1.41] is a 400, as
/// dockerd answers.
fn strip_version(mut req: Request) -> Result<Request, DockerError> {
    let path = req.uri().path();
    let Some(rest) = path.strip_prefix("/v") else { return Ok(req) };
    let (version, tail) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let Some(asked) = parse_version(version) else { return Ok(req) };
    let newest = parse_version(API_VERSION).expect("a version");
    let oldest = parse_version(MIN_API_VERSION).expect("a version");
    if asked > newest {
        return Err(DockerError::bad_request(format!(
            "client version {version} is too new. Maximum supported API version is {API_VERSION}"
        )));
    }
    if asked < oldest {
        return Err(DockerError::bad_request(format!(
            "client version {version} is too old. Minimum supported API version is {MIN_API_VERSION}, \
             please upgrade your client to a newer version"
        )));
    }
    let path_and_query = match req.uri().query() {
        Some(q) => format!("{tail}?{q}"),
        None => tail.to_owned(),
    };
    let mut parts = req.uri().clone().into_parts();
    parts.path_and_query =
        Some(path_and_query.parse().map_err(|_| DockerError::bad_request("a malformed path"))?);
    *req.uri_mut() = Uri::from_parts(parts).map_err(|_| DockerError::bad_request("a malformed path"))?;
    Ok(req)
}

/// A JSON body in Docker's types; a malformed one is a 400 naming the field
/// (`TaskTemplate.ContainerSpec.Image: invalid type ...`).
pub(crate) struct DockerJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for DockerJson<T> {
    type Rejection = DockerError;

    async fn from_request(req: Request, state: &S) -> Result<Self, DockerError> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| DockerError::bad_request(format!("cannot read the request body: {e}")))?;
        let de = &mut serde_json::Deserializer::from_slice(&bytes);
        serde_path_to_error::deserialize(de).map(DockerJson).map_err(|e| {
            let path = e.path().to_string();
            if path.is_empty() || path == "." {
                DockerError::bad_request(format!("invalid JSON: {}", e.inner()))
            } else {
                DockerError::bad_request(format!("invalid JSON at {path}: {}", e.inner()))
            }
        })
    }
}

/// Query parameters; a malformed one is a 400.
pub(crate) struct DockerQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for DockerQuery<T> {
    type Rejection = DockerError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, DockerError> {
        let query = parts.uri.query().unwrap_or_default();
        serde_urlencoded::from_str(query)
            .map(DockerQuery)
            .map_err(|e| DockerError::bad_request(format!("invalid query parameters: {e}")))
    }
}

/// A list's query: Docker's `filters` (see [`filters`]).
#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct ListQuery {
    pub(crate) filters: Option<String>,
}

/// An update's query: the `version` the object was read at.
#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct VersionQuery {
    pub(crate) version: Option<String>,
}

/// A time as the CLI sends it (`since`, `until`): unix seconds, with an optional
/// `.nanoseconds` part; `what` names the parameter in the error.
pub(crate) fn unix_time(raw: &str, what: &str) -> Result<chrono::DateTime<chrono::Utc>, DockerError> {
    let bad = || DockerError::bad_request(format!("invalid {what} time {raw:?}: unix seconds[.nanoseconds]"));
    let (secs, frac) = raw.trim().split_once('.').unwrap_or((raw.trim(), ""));
    let secs: i64 = secs.parse().map_err(|_| bad())?;
    if frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let nanos: u32 = if frac.is_empty() { 0 } else { format!("{frac:0<9}").parse().map_err(|_| bad())? };
    chrono::DateTime::from_timestamp(secs, nanos).ok_or_else(bad)
}

/// Docker's booleans in queries: `1`, `true`, `True` (and `0`, `false`, empty).
pub(crate) fn flag(v: Option<&str>) -> bool {
    matches!(v.map(str::trim), Some("1" | "true" | "True" | "TRUE" | "yes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_stripped_and_checked() {
        let req = |p: &str| Request::builder().uri(p).body(axum::body::Body::empty()).unwrap();
        assert_eq!(strip_version(req("/v1.41/services?x=1")).unwrap().uri(), "/services?x=1");
        assert_eq!(strip_version(req("/v1.24/_ping")).unwrap().uri().path(), "/_ping");
        assert_eq!(strip_version(req("/services")).unwrap().uri().path(), "/services");
        assert_eq!(strip_version(req("/volumes")).unwrap().uri().path(), "/volumes");
        let e = strip_version(req("/v1.42/info")).unwrap_err();
        assert!(e.message.contains("too new"), "{}", e.message);
        assert!(strip_version(req("/v1.11/info")).unwrap_err().message.contains("too old"));
    }
}
