//! `/v1/cluster`: who manages the cluster and what it holds; join and API tokens;
//! its CA and the CA's rotation.

use axum::Json;
use axum::extract::{Path, State};
use shoal_api::Validate;
use shoal_api::cluster::JoinTokens;
use shoal_api::wire::{
    ApiToken, CaInfo, CaRotation, ClusterInfo, ClusterUpdate, Counts, ErrorBody, ManagerInfo, RaftInfo,
    ReadOptions, SnapshotBuilt, TokenScope, UnlockKey, Written,
};

use super::{Api, ApiError, Body, Query};
use crate::manager::ManagerError;
use crate::store::{Kind, Object};

fn not_initialized() -> ApiError {
    ManagerError::NotInitialized.into()
}

/// Shows the cluster: its managers (the leader marked), object counts, Raft state.
#[utoipa::path(get, path = "/v1/cluster", tag = "cluster", params(ReadOptions),
    responses((status = 200, description = "The cluster", body = ClusterInfo),
              (status = 409, description = "The cluster is not initialized", body = ErrorBody)))]
pub(super) async fn info(
    State(api): State<Api>,
    super::Query(opts): super::Query<ReadOptions>,
) -> Result<Json<ClusterInfo>, ApiError> {
    let m = &api.manager;
    let (cluster, counts, node_ids) = api
        .read(opts.consistent, |s| {
            let cluster = s.list(Kind::Cluster).find_map(|o| match o {
                Object::Cluster(c) => Some(c.clone()),
                _ => None,
            });
            let counts = Counts {
                nodes: s.count(Kind::Node),
                services: s.count(Kind::Service),
                tasks: s.count(Kind::Task),
                networks: s.count(Kind::Network),
                secrets: s.count(Kind::Secret),
                configs: s.count(Kind::Config),
            };
            let node_ids: Vec<(u64, String)> = s
                .list(Kind::Node)
                .filter_map(|o| match o {
                    Object::Node(n) => n.manager_status.as_ref().map(|ms| (ms.raft_id, n.id.clone())),
                    _ => None,
                })
                .collect();
            (cluster, counts, node_ids)
        })
        .await?;
    let cluster = cluster.ok_or_else(not_initialized)?;
    let status = m.status();
    let reachable = m.reachable_anywhere().await;
    let managers = m
        .managers()
        .into_iter()
        .map(|(raft_id, addr)| ManagerInfo {
            raft_id,
            addr,
            leader: status.leader == Some(raft_id),
            voter: m.is_voter(raft_id),
            reachable: reachable.as_ref().map(|r| r.contains(&raft_id)),
            node_id: node_ids.iter().find(|(r, _)| *r == raft_id).map(|(_, id)| id.clone()),
        })
        .collect();
    Ok(Json(ClusterInfo {
        id: cluster.id,
        meta: cluster.meta,
        spec: cluster.spec,
        answered_by: m.id(),
        managers,
        counts,
        raft: RaftInfo {
            term: status.term,
            leader: status.leader,
            state: status.state,
            last_applied: status.last_applied.unwrap_or(0),
            commit_latency_us: status.commit_latency_us,
        },
    }))
}

/// Replaces the cluster's settings (heartbeat period, task history, Raft, address
/// pool, autolock); the version read must still be current. Turning autolock on makes
/// an unlock key (`GET /v1/cluster/unlock-key` shows it); turning it off drops it, and
/// every manager keeps its data key unwrapped again.
#[utoipa::path(put, path = "/v1/cluster", tag = "cluster", request_body = ClusterUpdate,
    responses((status = 200, description = "Updated", body = Written),
              (status = 409, description = "The cluster changed since `version`", body = ErrorBody),
              (status = 422, description = "Invalid settings", body = ErrorBody)))]
pub(crate) async fn update(
    State(api): State<Api>,
    super::Body(req): super::Body<ClusterUpdate>,
) -> Result<Json<Written>, ApiError> {
    req.spec.validate().map_err(crate::plan::PlanError::from)?;
    let mut cluster = api.manager.cluster().ok_or_else(not_initialized)?;
    if cluster.meta.version != req.version {
        return Err(crate::plan::PlanError::Stale {
            what: "the cluster".into(),
            version: cluster.meta.version,
            read: req.version,
        }
        .into());
    }
    cluster.spec = req.spec;
    crate::manager::tokens::apply_autolock(&mut cluster);
    cluster.meta.updated_at = chrono::Utc::now();
    let id = cluster.id.clone();
    let change =
        crate::store::Change::Update { object: Object::Cluster(cluster), expected_version: req.version };
    let version = api.manager.propose(crate::store::Transaction { changes: vec![change] }).await?;
    Ok(Json(Written { id, version }))
}

/// Has the manager answering build a snapshot of its state now, and waits for it
/// (at most a minute): before a backup of its data dir, or to see how long a build
/// takes. Raft builds them on its own as the log grows.
#[utoipa::path(post, path = "/v1/cluster/snapshot", tag = "cluster",
    responses((status = 200, description = "The snapshot on disk", body = SnapshotBuilt),
              (status = 503, description = "Raft could not build it in time", body = ErrorBody)))]
pub(crate) async fn snapshot(State(api): State<Api>) -> Result<Json<SnapshotBuilt>, ApiError> {
    Ok(Json(api.manager.snapshot_now(std::time::Duration::from_secs(60)).await?))
}

/// Shows the join tokens.
#[utoipa::path(get, path = "/v1/cluster/join-tokens", tag = "cluster",
    responses((status = 200, description = "The worker and manager join tokens", body = JoinTokens)))]
pub(super) async fn join_tokens(State(api): State<Api>) -> Result<Json<JoinTokens>, ApiError> {
    Ok(Json(api.manager.cluster().ok_or_else(not_initialized)?.join_tokens))
}

/// Replaces a join token; nodes that joined with the old one stay.
#[utoipa::path(post, path = "/v1/cluster/join-tokens/{role}/rotate", tag = "cluster",
    params(("role" = String, Path, description = "`worker` or `manager`")),
    responses((status = 200, description = "The tokens, one of them new", body = JoinTokens),
              (status = 409, description = "No such role", body = ErrorBody)))]
pub(super) async fn rotate_join_token(
    State(api): State<Api>,
    Path(role): Path<String>,
) -> Result<Json<JoinTokens>, ApiError> {
    Ok(Json(api.manager.rotate_join_token(&role).await?.join_tokens))
}

fn read_only(scope: &TokenScope) -> Result<bool, ApiError> {
    match scope.scope.as_deref() {
        None | Some("admin") => Ok(false),
        Some("read_only") => Ok(true),
        Some(other) => Err(ApiError::bad_request(format!("scope {other:?} is not admin or read_only"))),
    }
}

/// Shows an API token the TCP listener takes: the admin one, or (`scope=read_only`)
/// the one that may only read.
#[utoipa::path(get, path = "/v1/cluster/api-token", tag = "cluster", params(TokenScope),
    responses((status = 200, description = "The token", body = ApiToken)))]
pub(super) async fn api_token(
    State(api): State<Api>,
    Query(scope): Query<TokenScope>,
) -> Result<Json<ApiToken>, ApiError> {
    let cluster = api.manager.cluster().ok_or_else(not_initialized)?;
    let token = if read_only(&scope)? { cluster.read_only_api_token } else { cluster.api_token };
    Ok(Json(ApiToken { token }))
}

/// Replaces an API token; callers with the old one are refused from now on.
#[utoipa::path(post, path = "/v1/cluster/api-token/rotate", tag = "cluster", params(TokenScope),
    responses((status = 200, description = "The new token", body = ApiToken)))]
pub(super) async fn rotate_api_token(
    State(api): State<Api>,
    Query(scope): Query<TokenScope>,
) -> Result<Json<ApiToken>, ApiError> {
    let token = if read_only(&scope)? {
        api.manager.rotate_read_only_api_token().await?.read_only_api_token
    } else {
        api.manager.rotate_api_token().await?.api_token
    };
    Ok(Json(ApiToken { token }))
}

fn ca_info(api: &Api) -> Result<CaInfo, ApiError> {
    let cluster = api.manager.cluster().ok_or_else(not_initialized)?;
    Ok(CaInfo {
        roots_pem: cluster.ca.roots_pem,
        signer_subject: api.manager.ca_subject(),
        rotating: !cluster.ca.cross_signed.is_empty(),
    })
}

/// Shows the cluster's CA (its certificates, never its key).
#[utoipa::path(get, path = "/v1/cluster/ca", tag = "cluster",
    responses((status = 200, description = "The CA", body = CaInfo)))]
pub(super) async fn ca(State(api): State<Api>) -> Result<Json<CaInfo>, ApiError> {
    Ok(Json(ca_info(&api)?))
}

/// Replaces the cluster's CA without downtime: with the one given, or a new one.
/// Nodes renew from it as they hear of it; once all that are up have, the old root
/// is dropped. The join tokens change their CA digest, not their secrets.
#[utoipa::path(post, path = "/v1/cluster/ca/rotate", tag = "cluster", request_body = CaRotation,
    responses((status = 200, description = "The rotation started", body = CaInfo),
              (status = 400, description = "The given CA is unusable", body = ErrorBody)))]
pub(super) async fn rotate_ca(
    State(api): State<Api>,
    Body(req): Body<CaRotation>,
) -> Result<Json<CaInfo>, ApiError> {
    let given = match (req.cert_pem, req.key_pem) {
        (Some(cert), Some(key)) => {
            Some(shoal_pki::CaKeys::from_pem(&cert, &key).map_err(|e| ApiError::bad_request(e.to_string()))?)
        }
        (None, None) => None,
        _ => return Err(ApiError::bad_request("give both cert_pem and key_pem, or neither")),
    };
    api.manager.rotate_ca(given).await?;
    Ok(Json(ca_info(&api)?))
}

/// Shows the unlock key a restarted manager needs while autolock is on.
#[utoipa::path(get, path = "/v1/cluster/unlock-key", tag = "cluster",
    responses((status = 200, description = "The key", body = UnlockKey),
              (status = 409, description = "Autolock is off", body = ErrorBody)))]
pub(super) async fn unlock_key(State(api): State<Api>) -> Result<Json<UnlockKey>, ApiError> {
    let cluster = api.manager.cluster().ok_or_else(not_initialized)?;
    if !cluster.spec.autolock {
        return Err(ManagerError::AutolockOff.into());
    }
    Ok(Json(UnlockKey { key: cluster.unlock_key }))
}

/// Replaces the unlock key: every manager re-wraps its data key with the new one, and
/// the old key no longer unlocks any of them.
#[utoipa::path(post, path = "/v1/cluster/unlock-key/rotate", tag = "cluster",
    responses((status = 200, description = "The new key", body = UnlockKey),
              (status = 409, description = "Autolock is off", body = ErrorBody)))]
pub(super) async fn rotate_unlock_key(State(api): State<Api>) -> Result<Json<UnlockKey>, ApiError> {
    Ok(Json(UnlockKey { key: api.manager.rotate_unlock_key().await?.unlock_key }))
}

/// Gives a locked manager the unlock key. A manager that answers here is running,
/// so it is not locked: a locked one serves only this call (every other one is
/// refused with 503 until then).
#[utoipa::path(post, path = "/v1/cluster/unlock", tag = "cluster", request_body = UnlockKey,
    responses((status = 200, description = "Unlocked; the manager starts"),
              (status = 403, description = "Not the cluster's unlock key", body = ErrorBody),
              (status = 409, description = "This manager is not locked", body = ErrorBody),
              (status = 429, description = "Too many wrong keys: wait", body = ErrorBody)))]
pub(super) async fn unlock(super::Body(_req): super::Body<UnlockKey>) -> Result<Json<()>, ApiError> {
    Err(ApiError::new(axum::http::StatusCode::CONFLICT, "not_locked", "this manager is not locked"))
}
