//! `/_ping`, `/version`, `/info` (this engine and its swarm: the cluster as the
//! managers hold it), and what Portainer's snapshotter also lists on an engine
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
use crate::store::{Kind, Object};

pub(super) fn routes() -> Router<Api> {
    Router::new()
        .route("/_ping", get(ping).head(ping_head))
        .route("/version", get(version))
        .route("/info", get(info))
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
                "GitCommit": GIT_COMMIT,
                "GoVersion": GO_VERSION,
                "BuildTime": BUILD_TIME,
            },
        }],
        "Version": version,
        "ApiVersion": API_VERSION,
        "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": GIT_COMMIT,
        "GoVersion": GO_VERSION,
        "Os": "linux",
        "Arch": go_arch(),
        "KernelVersion": kernel,
        "BuildTime": BUILD_TIME,
    }))
}

/// The commit built (`SHOAL_GIT_COMMIT` at build time).
const GIT_COMMIT: &str = match option_env!("SHOAL_GIT_COMMIT") {
    Some(c) => c,
    None => "unknown",
};
/// Shoal is no Go program: `docker version` shows this as its Go version.
const GO_VERSION: &str = "none (Shoal is written in Rust)";
/// When it was built (`SHOAL_BUILD_TIME` at build time).
const BUILD_TIME: &str = match option_env!("SHOAL_BUILD_TIME") {
    Some(t) => t,
    None => "unknown",
};

/// The distribution's name, as `/etc/os-release` gives it (read once).
fn operating_system() -> &'static str {
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NAME.get_or_init(|| {
        let text = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
        text.lines()
            .find_map(|l| l.strip_prefix("PRETTY_NAME="))
            .map(|v| v.trim_matches('"').to_owned())
            .unwrap_or_else(|| "Linux".to_owned())
    })
}

/// `2` where the cgroup hierarchy is unified only, `1` where v1 controllers are
/// mounted (hybrid included), as dockerd reports it.
fn cgroup_version() -> &'static str {
    if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() { "2" } else { "1" }
}

/// `GET /info`: the engine (this manager's node) and `Swarm`, its part in the
/// cluster. The capability booleans are all true: Shoal's runtime limits memory,
/// swap, CPU and pids through cgroups of either version (and an empty `Warnings` would make the CLI
/// warn from false ones).
async fn info(
    axum::extract::State(api): axum::extract::State<Api>,
) -> Result<Json<serde_json::Value>, DockerError> {
    let node_id = api.manager.node_id().to_owned();
    let (cluster, nodes) = api
        .read(false, |s| {
            let cluster = s.list(Kind::Cluster).find_map(|o| match o {
                Object::Cluster(c) => Some(c.clone()),
                _ => None,
            });
            (cluster, crate::store::queries::nodes(s).cloned().collect::<Vec<_>>())
        })
        .await?;
    let cluster = cluster.ok_or_else(|| DockerError::from(crate::manager::ManagerError::NotInitialized))?;
    let me = nodes.iter().find(|n| n.id == node_id);
    let managers: Vec<_> = nodes
        .iter()
        .filter_map(|n| n.manager_status.as_ref().map(|ms| json!({ "NodeID": n.id, "Addr": ms.addr })))
        .collect();
    let hostname = me.map(|n| n.description.hostname.clone()).unwrap_or_default();
    let (ncpu, mem) = me.map_or((0, 0), |n| {
        (n.description.resources.nano_cpus.div_ceil(1_000_000_000), n.description.resources.memory_bytes)
    });
    let node_addr = me.map(|n| n.status.addr.to_string()).unwrap_or_default();
    let labels: Vec<String> = me
        .map(|n| n.description.engine_labels.iter().map(|(k, v)| format!("{k}={v}")).collect())
        .unwrap_or_default();
    let swarm = json!({
        "NodeID": node_id,
        "NodeAddr": node_addr,
        "LocalNodeState": "active",
        "ControlAvailable": true,
        "Error": "",
        "RemoteManagers": managers,
        "Nodes": nodes.len(),
        "Managers": managers.len(),
        "Cluster": super::swarm::cluster_info_json(&cluster),
    });
    let mut info = json!({
        "ID": node_id,
        "Name": hostname,
        "Containers": 0, "ContainersRunning": 0, "ContainersPaused": 0, "ContainersStopped": 0,
        "Images": 0,
        "Driver": "shoal",
        "DriverStatus": [],
        "Plugins": { "Volume": [], "Network": ["overlay"], "Authorization": null, "Log": [] },
        "MemoryLimit": true, "SwapLimit": true, "KernelMemory": true, "KernelMemoryTCP": true,
        "CpuCfsPeriod": true, "CpuCfsQuota": true, "CPUShares": true, "CPUSet": true, "PidsLimit": true,
        "IPv4Forwarding": true, "BridgeNfIptables": true, "BridgeNfIp6tables": true, "OomKillDisable": true,
        "Debug": false,
        "NFd": 0, "NGoroutines": 0,
    });
    let more = json!({
        "SystemTime": chrono::Utc::now(),
        "LoggingDriver": "shoal",
        "CgroupDriver": "cgroupfs",
        "CgroupVersion": cgroup_version(),
        "NEventsListener": 0,
        "KernelVersion": kernel_version(),
        "OperatingSystem": operating_system(),
        "OSVersion": "",
        "OSType": "linux",
        "Architecture": std::env::consts::ARCH,
        "IndexServerAddress": "https://index.docker.io/v1/",
        "RegistryConfig": null,
        "NCPU": ncpu,
        "MemTotal": mem,
        "GenericResources": null,
        "DockerRootDir": "",
        "HttpProxy": "", "HttpsProxy": "", "NoProxy": "",
        "Labels": labels,
        "ExperimentalBuild": false,
        "ServerVersion": env!("CARGO_PKG_VERSION"),
        "Runtimes": { "shoal": { "path": "shoal" } },
        "DefaultRuntime": "shoal",
        "LiveRestoreEnabled": true,
        "Isolation": "",
        "InitBinary": "",
        "ContainerdCommit": { "ID": "", "Expected": "" },
        "RuncCommit": { "ID": "", "Expected": "" },
        "InitCommit": { "ID": "", "Expected": "" },
        "SecurityOptions": ["name=cgroupns"],
        "Warnings": [],
    });
    if let (Some(info), serde_json::Value::Object(more)) = (info.as_object_mut(), more) {
        info.extend(more);
    }
    info["Swarm"] = swarm;
    Ok(Json(info))
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
