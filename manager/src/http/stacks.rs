//! `/v1/stacks`: deploy a Compose file as one change, list, remove.

use std::path::{Path as FsPath, PathBuf};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use shoal_api::compose::{self, Source};
use shoal_api::wire::{ErrorBody, ListOptions, StackDeploy, StackDeployed, StackInfo};

use super::{Api, ApiError, Body, Query, now, polling};
use crate::plan::stacks::Removal;
use crate::plan::{self, PlanError};
use crate::store::Kind;

/// Lists stacks, a page at a time with `limit`; with `wait_index`, once services,
/// networks, secrets or configs changed past it.
#[utoipa::path(get, path = "/v1/stacks", tag = "stacks", params(ListOptions),
    responses((status = 200, description = "Every stack, by name, with its object counts. `X-Shoal-Index`: the last \
                 index that changed a service, network, secret or config", body = Vec<StackInfo>),
              (status = 304, description = "`If-None-Match` holds the `ETag`: nothing changed"),
              (status = 400, description = "A malformed cursor, limit or wait", body = ErrorBody)))]
pub(super) async fn list(
    State(api): State<Api>,
    headers: HeaderMap,
    Query(opts): Query<ListOptions>,
) -> Result<Response, ApiError> {
    const KINDS: [Kind; 4] = [Kind::Service, Kind::Network, Kind::Secret, Kind::Config];
    let after: Option<String> = api
        .start_list(&KINDS, opts.cursor.as_deref(), opts.limit, opts.wait_index, opts.wait.as_deref())
        .await?;
    let ((page, next), index) = api
        .read(opts.consistent, |s| {
            let page = polling::page(plan::stacks::list(s), |st| st.name.clone(), after.as_ref(), opts.limit);
            (page, s.indexes().of(&KINDS))
        })
        .await?;
    let body = bytes::Bytes::from(serde_json::to_vec(&page).expect("stacks serialize"));
    Ok(polling::reply(&headers, polling::Listed { body, index, next }, true))
}

/// Deploys a Compose file as stack `name`: its services, networks, secrets and
/// configs are created, updated, or removed (when the file no longer has them), all
/// in one change or not at all.
#[utoipa::path(put, path = "/v1/stacks/{name}", tag = "stacks", request_body = StackDeploy,
    params(("name" = String, Path, description = "The stack's name")),
    responses((status = 200, description = "Deployed", body = StackDeployed),
              (status = 409, description = "A name or port is taken, or a secret's data changed", body = ErrorBody),
              (status = 422, description = "The Compose file has errors; `field` names the key", body = ErrorBody)))]
pub(super) async fn deploy(
    State(api): State<Api>,
    Path(name): Path<String>,
    Body(req): Body<StackDeploy>,
) -> Result<Json<StackDeployed>, ApiError> {
    let stack = {
        let env = |k: &str| req.env.get(k).cloned();
        let read_file = |p: &FsPath| {
            req.files.get(&p.display().to_string()).map(|b| b.0.clone()).ok_or_else(|| {
                let why =
                    format!("{} was not sent with the deploy: send its content in `files`", p.display());
                std::io::Error::new(std::io::ErrorKind::NotFound, why)
            })
        };
        let dir = PathBuf::from(if req.dir.is_empty() { "/" } else { req.dir.as_str() });
        let src = Source { stack: &name, text: &req.compose, dir: &dir, env: &env, read_file: &read_file };
        compose::load(&src).map_err(PlanError::Compose)?
    };
    let pool = api.manager.cluster().map(|c| c.spec.default_address_pool).unwrap_or_default();
    let now = now();
    let (version, mut out) = api.modify(|s| plan::stacks::deploy(s, &stack, &pool, now)).await?;
    out.version = version;
    Ok(Json(out))
}

/// Removes every service, network, secret and config of a stack: the services,
/// secrets and configs in one change, then the networks, once the services' tasks
/// have stopped and let go of their addresses on them.
#[utoipa::path(delete, path = "/v1/stacks/{name}", tag = "stacks",
    params(("name" = String, Path, description = "The stack's name")),
    responses((status = 200, description = "Removed; `removed` lists what went", body = StackDeployed),
              (status = 404, description = "No such stack", body = ErrorBody),
              (status = 409, description = "The services went, but a network was still in use a minute later", body = ErrorBody)))]
pub(super) async fn remove(
    State(api): State<Api>,
    Path(name): Path<String>,
) -> Result<Json<StackDeployed>, ApiError> {
    let (mut version, mut out) =
        api.modify(|s| plan::stacks::remove(s, &name, Removal::AllButNetworks)).await?;
    let remove_networks = || api.modify(|s| plan::stacks::remove(s, &name, Removal::Networks));
    match super::objects::once_tasks_let_go(&api, remove_networks).await {
        Ok((v, networks)) => {
            version = version.max(v);
            out.removed.extend(networks.removed);
        }
        Err(e) => {
            return Err(ApiError::new(
                e.status,
                &e.detail.code,
                format!(
                    "stack {name}: {} went, but its networks did not: {}; run the removal again once \
                     the tasks have stopped",
                    out.removed.join(", "),
                    e.detail.message
                ),
            ));
        }
    }
    out.version = version;
    Ok(Json(out))
}
