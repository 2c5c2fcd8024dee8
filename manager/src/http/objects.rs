//! `/v1/networks`, `/v1/secrets` and `/v1/configs`: create, list, inspect, remove;
//! and a secret's or config's labels, the one thing of them that can change.
//! Secret and config data go in and never come out: configs' data neither, unlike
//! Docker's (one rule for both; a config may hold what is worth keeping too).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::response::Response;
use shoal_api::wire::{
    AttachedTask, Created, ErrorBody, ListOptions, NetworkInspect, PayloadInfo, ReadOptions, Written,
};
use shoal_api::{Config, Meta, Network, NetworkSpec, PayloadSpec, PayloadUpdate, Secret, Validate};

use super::{Api, ApiError, Body, PayloadBody, Query, now, polling};
use crate::orchestrator::allocator;
use crate::plan::{self, PlanError, find};
use crate::store::{Change, Kind, Object, Store, Transaction};

fn list_of<T>(store: &Store, kind: Kind, f: impl Fn(&Object) -> Option<T>) -> Vec<T> {
    store.list(kind).filter_map(f).collect()
}

fn payload_info(o: &Object) -> Option<PayloadInfo> {
    match o {
        Object::Secret(s) => Some(PayloadInfo::new(&s.id, &s.meta, &s.spec)),
        Object::Config(c) => Some(PayloadInfo::new(&c.id, &c.meta, &c.spec)),
        _ => None,
    }
}

async fn remove_object(api: &Api, kind: Kind, key: &str) -> Result<StatusCode, ApiError> {
    api.modify(|s| {
        let o = find(s, kind, key)?;
        let change = Change::Delete { kind, id: o.id().to_owned(), expected_version: Some(o.meta().version) };
        Ok((Transaction { changes: vec![change] }, ()))
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A page of the objects of `kind` (by name then id, as `item` shows them), at the
/// index of `kind`, once it passes `wait_index`.
async fn list_named<T: serde::Serialize>(
    api: &Api,
    headers: &HeaderMap,
    kind: Kind,
    opts: &ListOptions,
    item: impl Fn(&Object) -> Option<T>,
    name: impl Fn(&T) -> (String, String),
) -> Result<Response, ApiError> {
    let after: Option<(String, String)> = api
        .start_list(&[kind], opts.cursor.as_deref(), opts.limit, opts.wait_index, opts.wait.as_deref())
        .await?;
    let ((page, next), index) = api
        .read(opts.consistent, |s| {
            (polling::page(list_of(s, kind, item), name, after.as_ref(), opts.limit), s.indexes().of(&[kind]))
        })
        .await?;
    let body = bytes::Bytes::from(serde_json::to_vec(&page).expect("objects serialize"));
    Ok(polling::reply(headers, polling::Listed { body, index, next }, true))
}

async fn list_payloads(
    api: &Api,
    headers: &HeaderMap,
    kind: Kind,
    opts: &ListOptions,
) -> Result<Response, ApiError> {
    list_named(api, headers, kind, opts, payload_info, |p| (p.name.clone(), p.id.clone())).await
}

async fn inspect_payload(
    api: &Api,
    headers: &HeaderMap,
    kind: Kind,
    key: &str,
    consistent: bool,
) -> Result<Response, ApiError> {
    let (info, index) = api
        .read(consistent, |s| {
            find(s, kind, key).map(|o| (payload_info(o).expect("a payload kind"), s.indexes().of(&[kind])))
        })
        .await??;
    Ok(polling::reply_json(headers, &info, index, true))
}

async fn create_payload(
    api: &Api,
    kind: Kind,
    spec: PayloadSpec,
) -> Result<(StatusCode, Json<Created>), ApiError> {
    spec.validate().map_err(PlanError::from)?;
    let id = shoal_api::object::new_id();
    let meta = Meta::new(now());
    let object = match kind {
        Kind::Secret => Object::Secret(Secret { id: id.clone(), meta, spec }),
        _ => Object::Config(Config { id: id.clone(), meta, spec }),
    };
    let version = api.manager.propose(Transaction { changes: vec![Change::Create { object }] }).await?;
    Ok((StatusCode::CREATED, Json(Created { id, version, warnings: Vec::new() })))
}

async fn update_payload(
    api: &Api,
    kind: Kind,
    key: &str,
    req: PayloadUpdate,
) -> Result<Json<Written>, ApiError> {
    let now = now();
    let (version, id) = api
        .modify(|s| {
            let current = find(s, kind, key)?;
            let mut new = current.clone();
            let spec = match &mut new {
                Object::Secret(x) => &mut x.spec,
                Object::Config(x) => &mut x.spec,
                _ => unreachable!("the {kind} index holds {kind}s"),
            };
            let read = current.meta().version;
            if read != req.version {
                return Err(PlanError::Stale {
                    what: format!("{kind} {}", spec.name),
                    version: read,
                    read: req.version,
                });
            }
            if req.data.as_ref().is_some_and(|d| *d != spec.data) {
                return Err(PlanError::Immutable { kind, name: spec.name.clone() });
            }
            spec.labels = req.labels.clone();
            spec.validate()?;
            new.meta_mut().updated_at = now;
            let id = new.id().to_owned();
            Ok((Transaction { changes: vec![Change::Update { object: new, expected_version: read }] }, id))
        })
        .await?;
    Ok(Json(Written { id, version }))
}

/// Lists networks, a page at a time with `limit`; with `wait_index`, once networks
/// changed past it.
#[utoipa::path(get, path = "/v1/networks", tag = "networks", params(ListOptions),
    responses((status = 200, description = "Networks, by name then id. `X-Shoal-Index`: the last index that changed \
                 a network; `X-Shoal-Next-Cursor`: the next page's `cursor`", body = Vec<Network>),
              (status = 304, description = "`If-None-Match` holds the `ETag`: nothing changed"),
              (status = 400, description = "A malformed cursor, limit or wait", body = ErrorBody)))]
pub(super) async fn list_networks(
    State(api): State<Api>,
    headers: HeaderMap,
    Query(opts): Query<ListOptions>,
) -> Result<Response, ApiError> {
    let network = |o: &Object| match o {
        Object::Network(n) => Some(n.clone()),
        _ => None,
    };
    list_named(&api, &headers, Kind::Network, &opts, network, |n: &Network| {
        (n.spec.name.clone(), n.id.clone())
    })
    .await
}

/// Creates an overlay network; a subnet and a VXLAN id are allocated.
#[utoipa::path(post, path = "/v1/networks", tag = "networks", request_body = NetworkSpec,
    responses((status = 201, description = "Created", body = Created),
              (status = 400, description = "Malformed JSON or an unknown field", body = ErrorBody),
              (status = 409, description = "The name is taken, the subnet overlaps, or the pool is full", body = ErrorBody),
              (status = 422, description = "An invalid spec", body = ErrorBody)))]
pub(crate) async fn create_network(
    State(api): State<Api>,
    Body(spec): Body<NetworkSpec>,
) -> Result<(StatusCode, Json<Created>), ApiError> {
    let pool = api.manager.cluster().map(|c| c.spec.default_address_pool).unwrap_or_default();
    let now = now();
    let (version, id) = api
        .modify(|s| {
            let n = plan::networks::create(s, spec.clone(), &pool, &[], now)?;
            let id = n.id.clone();
            Ok((Transaction { changes: vec![Change::Create { object: Object::Network(n) }] }, id))
        })
        .await?;
    Ok((StatusCode::CREATED, Json(Created { id, version, warnings: Vec::new() })))
}

/// Shows a network.
#[utoipa::path(get, path = "/v1/networks/{id}", tag = "networks",
    params(("id" = String, Path, description = "Id, name or unique id prefix"), ReadOptions),
    responses((status = 200, description = "The network and the tasks on it, by node", body = NetworkInspect),
              (status = 404, description = "No such network", body = ErrorBody)))]
pub(super) async fn inspect_network(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(key): Path<String>,
    Query(opts): Query<ReadOptions>,
) -> Result<Response, ApiError> {
    let n = api
        .read(opts.consistent, |s| match find(s, Kind::Network, &key)? {
            Object::Network(n) => {
                let attached = allocator::attached(s, &n.id)
                    .into_iter()
                    .map(|(node, tasks)| {
                        (
                            node,
                            tasks.into_iter().map(|(task_id, addr)| AttachedTask { task_id, addr }).collect(),
                        )
                    })
                    .collect();
                let index = s.indexes().of(&[Kind::Network, Kind::Task, Kind::Node]);
                Ok::<_, PlanError>((NetworkInspect { network: n.clone(), attached }, index))
            }
            _ => unreachable!("the network index holds networks"),
        })
        .await??;
    Ok(polling::reply_json(&headers, &n.0, n.1, true))
}

/// Removes a network no service uses.
#[utoipa::path(delete, path = "/v1/networks/{id}", tag = "networks",
    params(("id" = String, Path, description = "Id, name or unique id prefix")),
    responses((status = 204, description = "Removed"),
              (status = 404, description = "No such network", body = ErrorBody),
              (status = 409, description = "A service uses it", body = ErrorBody)))]
pub(crate) async fn remove_network(
    State(api): State<Api>,
    Path(key): Path<String>,
) -> Result<StatusCode, ApiError> {
    remove_object(&api, Kind::Network, &key).await
}

/// How long a removal waits for stopping tasks to let go of a network (a task
/// stops within its stop grace period, 10 s by default).
const NETWORKS_FREED_WITHIN: std::time::Duration = std::time::Duration::from_secs(60);

/// Runs `remove` until it no longer fails with `in_use` (a task still holding an
/// address on a network), waiting for the next store change between tries, for at
/// most [`NETWORKS_FREED_WITHIN`]; a stack's removal (and the Docker API's, right
/// after its services) takes the networks once their tasks have stopped.
pub(crate) async fn once_tasks_let_go<T, F, Fut>(api: &Api, remove: F) -> Result<T, ApiError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, ApiError>>,
{
    let deadline = tokio::time::Instant::now() + NETWORKS_FREED_WITHIN;
    let mut changes = api.manager.indexes();
    loop {
        match remove().await {
            Err(e) if e.detail.code == "in_use" && tokio::time::Instant::now() < deadline => {
                let _ = tokio::time::timeout_at(deadline, changes.changed()).await;
            }
            done => return done,
        }
    }
}

/// Lists secrets (never their data), a page at a time with `limit`; with
/// `wait_index`, once secrets changed past it.
#[utoipa::path(get, path = "/v1/secrets", tag = "secrets", params(ListOptions),
    responses((status = 200, description = "Secrets, by name then id. `X-Shoal-Index`: the last index that changed a \
                 secret; `X-Shoal-Next-Cursor`: the next page's `cursor`", body = Vec<PayloadInfo>),
              (status = 304, description = "`If-None-Match` holds the `ETag`: nothing changed"),
              (status = 400, description = "A malformed cursor, limit or wait", body = ErrorBody)))]
pub(super) async fn list_secrets(
    State(api): State<Api>,
    headers: HeaderMap,
    Query(opts): Query<ListOptions>,
) -> Result<Response, ApiError> {
    list_payloads(&api, &headers, Kind::Secret, &opts).await
}

/// Creates a secret.
#[utoipa::path(post, path = "/v1/secrets", tag = "secrets", request_body = PayloadSpec,
    responses((status = 201, description = "Created", body = Created),
              (status = 400, description = "Malformed JSON, data that is not base64", body = ErrorBody),
              (status = 409, description = "The name is taken", body = ErrorBody),
              (status = 422, description = "An invalid name or data over 500 KiB", body = ErrorBody)))]
pub(crate) async fn create_secret(
    State(api): State<Api>,
    PayloadBody(spec): PayloadBody<PayloadSpec>,
) -> Result<(StatusCode, Json<Created>), ApiError> {
    create_payload(&api, Kind::Secret, spec).await
}

/// Shows a secret (never its data).
#[utoipa::path(get, path = "/v1/secrets/{id}", tag = "secrets",
    params(("id" = String, Path, description = "Id, name or unique id prefix"), ReadOptions),
    responses((status = 200, description = "The secret", body = PayloadInfo),
              (status = 404, description = "No such secret", body = ErrorBody)))]
pub(super) async fn inspect_secret(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(key): Path<String>,
    Query(opts): Query<ReadOptions>,
) -> Result<Response, ApiError> {
    inspect_payload(&api, &headers, Kind::Secret, &key, opts.consistent).await
}

/// Replaces a secret's labels, the one thing of it that can change: other data is
/// refused (create a new secret and update the services to use it).
#[utoipa::path(put, path = "/v1/secrets/{id}", tag = "secrets", request_body = PayloadUpdate,
    params(("id" = String, Path, description = "Id, name or unique id prefix")),
    responses((status = 200, description = "Updated", body = Written),
              (status = 400, description = "Malformed JSON, data that is not base64", body = ErrorBody),
              (status = 404, description = "No such secret", body = ErrorBody),
              (status = 409, description = "It changed since `version`, or the data differs", body = ErrorBody),
              (status = 422, description = "Invalid labels", body = ErrorBody)))]
pub(crate) async fn update_secret(
    State(api): State<Api>,
    Path(key): Path<String>,
    PayloadBody(req): PayloadBody<PayloadUpdate>,
) -> Result<Json<Written>, ApiError> {
    update_payload(&api, Kind::Secret, &key, req).await
}

/// Removes a secret no service uses.
#[utoipa::path(delete, path = "/v1/secrets/{id}", tag = "secrets",
    params(("id" = String, Path, description = "Id, name or unique id prefix")),
    responses((status = 204, description = "Removed"),
              (status = 404, description = "No such secret", body = ErrorBody),
              (status = 409, description = "A service uses it", body = ErrorBody)))]
pub(crate) async fn remove_secret(
    State(api): State<Api>,
    Path(key): Path<String>,
) -> Result<StatusCode, ApiError> {
    remove_object(&api, Kind::Secret, &key).await
}

/// Lists configs (never their data), a page at a time with `limit`; with
/// `wait_index`, once configs changed past it.
#[utoipa::path(get, path = "/v1/configs", tag = "configs", params(ListOptions),
    responses((status = 200, description = "Configs, by name then id. `X-Shoal-Index`: the last index that changed a \
                 config; `X-Shoal-Next-Cursor`: the next page's `cursor`", body = Vec<PayloadInfo>),
              (status = 304, description = "`If-None-Match` holds the `ETag`: nothing changed"),
              (status = 400, description = "A malformed cursor, limit or wait", body = ErrorBody)))]
pub(super) async fn list_configs(
    State(api): State<Api>,
    headers: HeaderMap,
    Query(opts): Query<ListOptions>,
) -> Result<Response, ApiError> {
    list_payloads(&api, &headers, Kind::Config, &opts).await
}

/// Creates a config.
#[utoipa::path(post, path = "/v1/configs", tag = "configs", request_body = PayloadSpec,
    responses((status = 201, description = "Created", body = Created),
              (status = 400, description = "Malformed JSON, data that is not base64", body = ErrorBody),
              (status = 409, description = "The name is taken", body = ErrorBody),
              (status = 422, description = "An invalid name or data over 500 KiB", body = ErrorBody)))]
pub(crate) async fn create_config(
    State(api): State<Api>,
    PayloadBody(spec): PayloadBody<PayloadSpec>,
) -> Result<(StatusCode, Json<Created>), ApiError> {
    create_payload(&api, Kind::Config, spec).await
}

/// Shows a config (never its data).
#[utoipa::path(get, path = "/v1/configs/{id}", tag = "configs",
    params(("id" = String, Path, description = "Id, name or unique id prefix"), ReadOptions),
    responses((status = 200, description = "The config", body = PayloadInfo),
              (status = 404, description = "No such config", body = ErrorBody)))]
pub(super) async fn inspect_config(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(key): Path<String>,
    Query(opts): Query<ReadOptions>,
) -> Result<Response, ApiError> {
    inspect_payload(&api, &headers, Kind::Config, &key, opts.consistent).await
}

/// Replaces a config's labels, the one thing of it that can change: other data is
/// refused (create a new config and update the services to use it).
#[utoipa::path(put, path = "/v1/configs/{id}", tag = "configs", request_body = PayloadUpdate,
    params(("id" = String, Path, description = "Id, name or unique id prefix")),
    responses((status = 200, description = "Updated", body = Written),
              (status = 400, description = "Malformed JSON, data that is not base64", body = ErrorBody),
              (status = 404, description = "No such config", body = ErrorBody),
              (status = 409, description = "It changed since `version`, or the data differs", body = ErrorBody),
              (status = 422, description = "Invalid labels", body = ErrorBody)))]
pub(crate) async fn update_config(
    State(api): State<Api>,
    Path(key): Path<String>,
    PayloadBody(req): PayloadBody<PayloadUpdate>,
) -> Result<Json<Written>, ApiError> {
    update_payload(&api, Kind::Config, &key, req).await
}

/// Removes a config no service uses.
#[utoipa::path(delete, path = "/v1/configs/{id}", tag = "configs",
    params(("id" = String, Path, description = "Id, name or unique id prefix")),
    responses((status = 204, description = "Removed"),
              (status = 404, description = "No such config", body = ErrorBody),
              (status = 409, description = "A service uses it", body = ErrorBody)))]
pub(crate) async fn remove_config(
    State(api): State<Api>,
    Path(key): Path<String>,
) -> Result<StatusCode, ApiError> {
    remove_object(&api, Kind::Config, &key).await
}
