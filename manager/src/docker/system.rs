//! `/_ping`, `/version`, and what Portainer's snapshotter also lists on an engine
//! (containers, images, volumes: a manager runs its tasks through the node's own
//! runtime, not as engine containers, so those lists are empty), and
//! `/distribution/{name}/json`, which the CLI calls to pin digests.

use axum::Json;
use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use super::{API_VERSION, DockerError, MIN_API_VERSION};
use crate::http::Api;

pub(super) fn routes() -> Router<Api> {
    Router::new()
        .route("/_ping", get(ping).head(ping_head))
        .route("/version", get(version))
        .route("/containers/json", get(|| async { Json(json!([])) }))
        .route("/images/json", get(|| async { Json(json!([])) }))
        .route("/volumes", get(|| async { Json(json!({ "Volumes": [], "Warnings": null })) }))
        .route("/distribution/{*name}", get(distribution))
}

/// `Swarm`: this node's part in the swarm, as dockerd 23+ reports it (older CLIs
/// ignore it): a running manager is always `active/manager`.
const SWARM: &str = "active/manager";

fn ping_headers(mut res: Response) -> Response {
    let h = res.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache, no-store, must-revalidate"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    h.insert("swarm", HeaderValue::from_static(SWARM));
    h.insert("builder-version", HeaderValue::from_static("1"));
    res
}

async fn ping() -> Response {
    ping_headers(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], "OK").into_response())
}

async fn ping_head() -> Response {
    ping_headers(
        ([(header::CONTENT_TYPE, "text/plain; charset=utf-8"), (header::CONTENT_LENGTH, "0")], "")
            .into_response(),
    )
}

/// The kernel's release, as `uname -r` prints it.
pub(super) fn kernel_version() -> String {
    nix::sys::utsname::uname().map(|u| u.release().to_string_lossy().into_owned()).unwrap_or_default()
}

/// Docker's name for this machine's architecture (`amd64`, `arm64`).
pub(super) fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

async fn version() -> Json<serde_json::Value> {
    let version = env!("CARGO_PKG_VERSION");
    let kernel = kernel_version();
    Json(json!({
        "Platform": { "Name": "Shoal" },
        "Components": [{
            "Name": "Engine",
            "Version": version,
            "Details": {
                "ApiVersion": API_VERSION,
                "MinAPIVersion": MIN_API_VERSION,
                "Os": "linux",
                "Arch": go_arch(),
                "KernelVersion": kernel,
                "Experimental": "false",
            },
        }],
        "Version": version,
        "ApiVersion": API_VERSION,
        "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": option_env!("SHOAL_GIT_COMMIT").unwrap_or("unknown"),
        "GoVersion": "none (Rust)",
        "Os": "linux",
        "Arch": go_arch(),
        "KernelVersion": kernel,
        "BuildTime": "",
    }))
}

/// Shoal pins no digests through the engine (its nodes resolve tags when they
/// pull): the CLI takes any error here as "could not be accessed on a registry",
/// warns, and goes on with the tag.
async fn distribution(axum::extract::Path(name): axum::extract::Path<String>) -> DockerError {
    DockerError::new(
        StatusCode::NOT_IMPLEMENTED,
        format!(
            "{}: Shoal resolves image digests on the nodes that pull them, not here",
            name.trim_end_matches("/json")
        ),
    )
}
