//! `/v1/networks`, `/v1/secrets` and `/v1/configs`: create, list, inspect, remove;
//! and a secret's or config's labels, the one thing of them that can change.
//! Secret and config data go in and never come out: configs' data neither, unlike
//! Docker's (one rule for both; a config may hold what is worth keeping too).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use shoal_api::wire::{AttachedTask, Created, ErrorBody, NetworkInspect, PayloadInfo, ReadOptions, Written};
use shoal_api::{Config, Meta, Network, NetworkSpec, PayloadSpec, PayloadUpdate, Secret, Validate};

use super::{Api, ApiError, Body, PayloadBody, Query, now};
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

async fn list_payloads(api: &Api, kind: Kind, consistent: bool) -> Result<Json<Vec<PayloadInfo>>, ApiError> {
    let mut out = api.read(consistent, |s| list_of(s, kind, payload_info)).await?;
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Json(out))
}

async fn inspect_payload(
    api: &Api,
    kind: Kind,
    key: &str,
    consistent: bool,
) -> Result<Json<PayloadInfo>, ApiError> {
    let info = api
        .read(consistent, |s| find(s, kind, key).map(|o| payload_info(o).expect("a payload kind")))
        .await??;
    Ok(Json(info))
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

/// Lists networks.
#[utoipa::path(get, path = "/v1/networks", tag = "networks", params(ReadOptions),
    responses((status = 200, description = "Every network, by name", body = Vec<Network>)))]
pub(super) async fn list_networks(
    State(api): State<Api>,
    Query(opts): Query<ReadOptions>,
) -> Result<Json<Vec<Network>>, ApiError> {
    let mut out = api
        .read(opts.consistent, |s| {
            list_of(s, Kind::Network, |o| match o {
                Object::Network(n) => Some(n.clone()),
                _ => None,
            })
        })
        .await?;
    out.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
    Ok(Json(out))
}

/// Creates an overlay network; a subnet and a VXLAN id are allocated.
#[utoipa::path(post, path = "/v1/networks", tag = "networks", request_body = NetworkSpec,
    responses((status = 201, description = "Created", body = Created),
              (status = 400, description = "Malformed JSON or an unknown field", body = ErrorBody),
              (status = 409, description = "The name is taken, the subnet overlaps, or the pool is full", body = ErrorBody),
              (status = 422, description = "An invalid spec", body = ErrorBody)))]
pub(super) async fn create_network(
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
    Path(key): Path<String>,
    Query(opts): Query<ReadOptions>,
) -> Result<Json<NetworkInspect>, ApiError> {
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
                Ok::<_, PlanError>(NetworkInspect { network: n.clone(), attached })
            }
            _ => unreachable!("the network index holds networks"),
        })
        .await??;
    Ok(Json(n))
}

/// Removes a network no service uses.
#[utoipa::path(delete, path = "/v1/networks/{id}", tag = "networks",
    params(("id" = String, Path, description = "Id, name or unique id prefix")),
    responses((status = 204, description = "Removed"),
              (status = 404, description = "No such network", body = ErrorBody),
              (status = 409, description = "A service uses it", body = ErrorBody)))]
pub(super) async fn remove_network(
    State(api): State<Api>,
    Path(key): Path<String>,
) -> Result<StatusCode, ApiError> {
    remove_object(&api, Kind::Network, &key).await
}

/// Lists secrets (never their data).
#[utoipa::path(get, path = "/v1/secrets", tag = "secrets", params(ReadOptions),
    responses((status = 200, description = "Every secret, by name", body = Vec<PayloadInfo>)))]
pub(super) async fn list_secrets(
    State(api): State<Api>,
    Query(opts): Query<ReadOptions>,
) -> Result<Json<Vec<PayloadInfo>>, ApiError> {
    list_payloads(&api, Kind::Secret, opts.consistent).await
}

/// Creates a secret.
#[utoipa::path(post, path = "/v1/secrets", tag = "secrets", request_body = PayloadSpec,
    responses((status = 201, description = "Created", body = Created),
              (status = 400, description = "Malformed JSON, data that is not base64", body = ErrorBody),
              (status = 409, description = "The name is taken", body = ErrorBody),
              (status = 422, description = "An invalid name or data over 500 KiB", body = ErrorBody)))]
pub(super) async fn create_secret(
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
    Path(key): Path<String>,
    Query(opts): Query<ReadOptions>,
) -> Result<Json<PayloadInfo>, ApiError> {
    inspect_payload(&api, Kind::Secret, &key, opts.consistent).await
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
pub(super) async fn update_secret(
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
pub(super) async fn remove_secret(
    State(api): State<Api>,
    Path(key): Path<String>,
) -> Result<StatusCode, ApiError> {
    remove_object(&api, Kind::Secret, &key).await
}

/// Lists configs (never their data).
#[utoipa::path(get, path = "/v1/configs", tag = "configs", params(ReadOptions),
    responses((status = 200, description = "Every config, by name", body = Vec<PayloadInfo>)))]
pub(super) async fn list_configs(
    State(api): State<Api>,
    Query(opts): Query<ReadOptions>,
) -> Result<Json<Vec<PayloadInfo>>, ApiError> {
    list_payloads(&api, Kind::Config, opts.consistent).await
}

/// Creates a config.
#[utoipa::path(post, path = "/v1/configs", tag = "configs", request_body = PayloadSpec,
    responses((status = 201, description = "Created", body = Created),
              (status = 400, description = "Malformed JSON, data that is not base64", body = ErrorBody),
              (status = 409, description = "The name is taken", body = ErrorBody),
              (status = 422, description = "An invalid name or data over 500 KiB", body = ErrorBody)))]
pub(super) async fn create_config(
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
    Path(key): Path<String>,
    Query(opts): Query<ReadOptions>,
) -> Result<Json<PayloadInfo>, ApiError> {
    inspect_payload(&api, Kind::Config, &key, opts.consistent).await
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
pub(super) async fn update_config(
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
pub(super) async fn remove_config(
    State(api): State<Api>,
    Path(key): Path<String>,
) -> Result<StatusCode, ApiError> {
    remove_object(&api, Kind::Config, &key).await
}
