//! `/nodes`: Shoal's nodes as Docker's (with the leader and reachability the
//! cluster API shows), their filters, and their update and removal through the
//! cluster API's handlers (a role change is a Raft membership change there).

use std::collections::BTreeMap;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use shoal_api::Node;
use shoal_api::node::{Availability, NodeRole, NodeSpec, NodeState, Reachability};
use shoal_api::wire::{NodeUpdate, RemoveOptions};

use super::filters::Filters;
use super::{DockerError, DockerJson, DockerQuery, ListQuery, VersionQuery, flag};
use crate::http::Api;
use crate::http::nodes::{live, reachability};
use crate::store::queries;

pub(super) fn routes() -> Router<Api> {
    Router::new()
        .route("/nodes", get(list))
        .route("/nodes/{id}", get(inspect).delete(remove))
        .route("/nodes/{id}/update", post(update))
}

fn availability(a: Availability) -> &'static str {
    match a {
        Availability::Active => "active",
        Availability::Pause => "pause",
        Availability::Drain => "drain",
    }
}

fn state(s: NodeState) -> &'static str {
    match s {
        NodeState::Unknown => "unknown",
        NodeState::Down => "down",
        NodeState::Ready => "ready",
        NodeState::Disconnected => "disconnected",
    }
}

fn reachable(r: Reachability) -> &'static str {
    match r {
        Reachability::Unknown => "unknown",
        Reachability::Unreachable => "unreachable",
        Reachability::Reachable => "reachable",
    }
}

/// A node in Docker's shape; `tls` is the cluster's `TLSInfo`.
pub(super) fn node_json(n: &Node, tls: &Value) -> Value {
    let d = &n.description;
    let mut v = json!({
        "ID": n.id,
        "Version": { "Index": n.meta.version },
        "CreatedAt": n.meta.created_at,
        "UpdatedAt": n.meta.updated_at,
        "Spec": {
            "Labels": n.spec.labels,
            "Role": n.spec.role.as_str(),
            "Availability": availability(n.spec.availability),
        },
        "Description": {
            "Hostname": d.hostname,
            "Platform": { "Architecture": d.platform.arch, "OS": d.platform.os },
            "Resources": { "NanoCPUs": d.resources.nano_cpus, "MemoryBytes": d.resources.memory_bytes },
            "Engine": {
                "EngineVersion": d.version,
                "Labels": d.engine_labels,
                "Plugins": [{ "Type": "Network", "Name": "overlay" }],
            },
            "TLSInfo": tls,
        },
        "Status": { "State": state(n.status.state), "Message": n.status.message, "Addr": n.status.addr.to_string() },
    });
    if let Some(ms) = &n.manager_status {
        v["ManagerStatus"] =
            json!({ "Leader": ms.leader, "Reachability": reachable(ms.reachability), "Addr": ms.addr });
    }
    v
}

/// The filters `GET /nodes` takes (dockerd's).
const NODE_FILTERS: &[&str] = &["id", "label", "name", "node.label", "membership", "role"];

/// Whether `n` passes `f`: `label` on the engine's labels, `node.label` on the
/// node's, as dockerd does. Every Shoal node in the store is `accepted`.
pub(super) fn node_matches(f: &Filters, n: &Node) -> bool {
    f.prefix_of("id", &n.id)
        && f.prefix_of("name", &n.description.hostname)
        && f.any("role", |r| r == n.spec.role.as_str())
        && f.any("membership", |m| m == "accepted")
        && f.pairs_match("label", &n.description.engine_labels)
        && f.pairs_match("node.label", &n.spec.labels)
}

async fn list(
    State(api): State<Api>,
    DockerQuery(q): DockerQuery<ListQuery>,
) -> Result<Json<Vec<Value>>, DockerError> {
    let f = Filters::parse(q.filters.as_deref(), NODE_FILTERS)?;
    let nodes: Vec<Node> =
        api.read(false, |s| queries::nodes(s).filter(|n| node_matches(&f, n)).cloned().collect()).await?;
    let reach = reachability(&api.manager, nodes.iter()).await;
    let tls = tls(&api);
    Ok(Json(nodes.into_iter().map(|n| node_json(&live(&api.manager, reach.as_ref(), n), &tls)).collect()))
}

/// The cluster's `TLSInfo` (the same on every node: Shoal's nodes trust one CA).
fn tls(api: &Api) -> Value {
    match api.manager.cluster() {
        Some(c) => super::swarm::tls_info(&c),
        None => {
            json!({ "TrustRoot": api.manager.roots_pem(), "CertIssuerSubject": "", "CertIssuerPublicKey": "" })
        }
    }
}

/// The node `key` names: an id, a hostname, a unique id prefix, or `self`.
async fn find_node(api: &Api, key: &str) -> Result<Node, DockerError> {
    let key = if key == "self" { api.manager.node_id().to_owned() } else { key.to_owned() };
    api.read(false, |s| crate::http::nodes::node(s, &key).cloned())
        .await?
        .map_err(|e| DockerError::lookup(e, "node", &key))
}

async fn inspect(State(api): State<Api>, Path(key): Path<String>) -> Result<Json<Value>, DockerError> {
    let n = find_node(&api, &key).await?;
    let reach = reachability(&api.manager, std::iter::once(&n)).await;
    Ok(Json(node_json(&live(&api.manager, reach.as_ref(), n), &tls(&api))))
}

/// Docker's `NodeSpec`, as `node update` sends it whole.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase", deny_unknown_fields)]
pub(super) struct DockerNodeSpec {
    name: String,
    labels: Option<BTreeMap<String, String>>,
    role: String,
    availability: String,
}

/// Shoal's spec for `node` from Docker's; a name other than its hostname is refused
/// (Shoal names nodes by hostname).
pub(super) fn node_spec(node: &Node, d: DockerNodeSpec) -> Result<NodeSpec, DockerError> {
    if !d.name.is_empty() && d.name != node.description.hostname {
        return Err(DockerError::unsupported(
            "Name",
            &format!(
                "Shoal names a node by its hostname ({}); it cannot be renamed",
                node.description.hostname
            ),
        ));
    }
    let role = match d.role.as_str() {
        "" => node.spec.role,
        "worker" => NodeRole::Worker,
        "manager" => NodeRole::Manager,
        other => {
            return Err(DockerError::bad_request(format!("Role: invalid role {other:?}: worker or manager")));
        }
    };
    let availability = match d.availability.as_str() {
        "" => node.spec.availability,
        "active" => Availability::Active,
        "pause" => Availability::Pause,
        "drain" => Availability::Drain,
        other => {
            return Err(DockerError::bad_request(format!(
                "Availability: invalid availability {other:?}: active, pause or drain"
            )));
        }
    };
    Ok(NodeSpec { labels: d.labels.unwrap_or_default(), role, availability })
}

async fn update(
    State(api): State<Api>,
    Path(key): Path<String>,
    DockerQuery(q): DockerQuery<VersionQuery>,
    DockerJson(body): DockerJson<DockerNodeSpec>,
) -> Result<StatusCode, DockerError> {
    let version = DockerError::version_param(q.version.as_deref(), "node")?;
    let current = find_node(&api, &key).await?;
    if current.meta.version != version {
        return Err(DockerError::out_of_sequence(
            &format!("node {}", current.id),
            current.meta.version,
            version,
        ));
    }
    let spec = node_spec(&current, body)?;
    let Json(_written) = crate::http::nodes::update(
        State(api),
        Path(current.id),
        crate::http::Body(NodeUpdate { version, spec }),
    )
    .await?;
    Ok(StatusCode::OK)
}

#[derive(Debug, Default, Deserialize)]
struct RemoveQuery {
    force: Option<String>,
}

async fn remove(
    State(api): State<Api>,
    Path(key): Path<String>,
    DockerQuery(q): DockerQuery<RemoveQuery>,
) -> Result<StatusCode, DockerError> {
    let current = find_node(&api, &key).await?;
    let force = flag(q.force.as_deref());
    crate::http::nodes::remove(State(api), Path(current.id), crate::http::Query(RemoveOptions { force }))
        .await?;
    Ok(StatusCode::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node() -> Node {
        serde_json::from_value(json!({
            "id": "abc123", "version": 7, "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z",
            "spec": { "labels": { "zone": "a" }, "role": "manager", "availability": "active" },
            "description": {
                "hostname": "m1", "platform": { "os": "linux", "arch": "x86_64" },
                "resources": { "nano_cpus": 2000000000u64, "memory_bytes": 1024 },
                "engine_labels": { "disk": "ssd" }, "version": "0.1.0"
            },
            "status": { "state": "ready", "addr": "127.0.0.1" },
            "manager_status": { "raft_id": 1, "addr": "127.0.0.1:4242", "leader": true, "reachability": "reachable" }
        }))
        .unwrap()
    }

    #[test]
    fn a_node_shows_in_dockers_shape() {
        let v = node_json(&node(), &json!({ "TrustRoot": "PEM" }));
        assert_eq!(v["Version"]["Index"], 7);
        assert_eq!(v["Spec"]["Role"], "manager");
        assert_eq!(v["Description"]["Platform"]["Architecture"], "x86_64");
        assert_eq!(v["Status"]["State"], "ready");
        assert_eq!(v["ManagerStatus"]["Leader"], true);
        assert_eq!(v["ManagerStatus"]["Addr"], "127.0.0.1:4242");
    }

    #[test]
    fn filters_and_specs_map() {
        let n = node();
        let f = |raw: &str| Filters::parse(Some(raw), NODE_FILTERS).unwrap();
        assert!(node_matches(&f(r#"{"role":{"manager":true}}"#), &n));
        assert!(!node_matches(&f(r#"{"role":{"worker":true}}"#), &n));
        assert!(node_matches(&f(r#"{"node.label":{"zone=a":true},"label":{"disk":true}}"#), &n));
        assert!(!node_matches(&f(r#"{"node.label":{"disk":true}}"#), &n));
        assert!(node_matches(&f(r#"{"name":{"m":true},"id":{"abc":true}}"#), &n));
        let spec = |v: Value| node_spec(&n, serde_json::from_value(v).unwrap());
        let s = spec(json!({"Labels": {}, "Role": "manager", "Availability": "drain"})).unwrap();
        assert_eq!((s.availability, s.role), (Availability::Drain, NodeRole::Manager));
        assert!(spec(json!({"Name": "other"})).unwrap_err().message.starts_with("Name:"));
        assert!(spec(json!({"Availability": "gone"})).unwrap_err().message.starts_with("Availability:"));
    }
}
