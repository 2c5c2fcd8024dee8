//! `/v1/services` and `/v1/tasks`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use shoal_api::wire::{
    Created, ErrorBody, ReadOptions, Scale, ServiceFilter, ServiceUpdate, TaskFilter, Written,
};
use shoal_api::{Service, ServiceSpec, Task};

use axum::response::Response;

use super::{Api, ApiError, Body, Query, json_response, now};
use crate::plan::{self, PlanError, find, stack_of};
use crate::store::{Change, Kind, Object, Store, Transaction};

fn service<'a>(store: &'a Store, key: &str) -> Result<&'a Service, PlanError> {
    match find(store, Kind::Service, key)? {
        Object::Service(s) => Ok(s),
        _ => unreachable!("the service index holds services"),
    }
}

fn label_matches(labels: &std::collections::BTreeMap<String, String>, filter: &str) -> bool {
    match filter.split_once('=') {
        Some((k, v)) => labels.get(k).is_some_and(|have| have == v),
        None => labels.contains_key(filter),
    }
}

/// Lists services.
#[utoipa::path(get, path = "/v1/services", tag = "services", params(ServiceFilter),
    responses((status = 200, description = "Services matching every filter, by name", body = Vec<Service>),
              (status = 400, description = "A malformed filter", body = ErrorBody)))]
pub(super) async fn list(
    State(api): State<Api>,
    Query(f): Query<ServiceFilter>,
) -> Result<Response, ApiError> {
    let rendered = api.rendered.clone();
    let key = format!("services?{}", serde_urlencoded::to_string(&f).unwrap_or_default());
    let body = api
        .read(f.consistent, |s| {
            rendered.cached_list(key, s.last_index(), || {
                let mut services: Vec<&Service> = s
                    .list(Kind::Service)
                    .filter_map(|o| match o {
                        Object::Service(svc) => Some(svc),
                        _ => None,
                    })
                    .filter(|svc| f.name.as_deref().is_none_or(|n| svc.spec.name.starts_with(n)))
                    .filter(|svc| f.label.as_deref().is_none_or(|l| label_matches(&svc.spec.labels, l)))
                    .filter(|svc| f.stack.as_deref().is_none_or(|st| stack_of(&svc.spec.labels) == Some(st)))
                    .collect();
                services.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
                rendered.list(services.into_iter().map(|svc| (svc.id.as_str(), svc.meta.version, svc)))
            })
        })
        .await?;
    Ok(json_response(body))
}

/// Creates a service.
#[utoipa::path(post, path = "/v1/services", tag = "services", request_body = ServiceSpec,
    responses((status = 201, description = "Created", body = Created),
              (status = 400, description = "Malformed JSON or an unknown field", body = ErrorBody),
              (status = 409, description = "The name or a published port is taken", body = ErrorBody),
              (status = 422, description = "An invalid spec; `field` names the first bad field", body = ErrorBody)))]
pub(super) async fn create(
    State(api): State<Api>,
    Body(spec): Body<ServiceSpec>,
) -> Result<(StatusCode, Json<Created>), ApiError> {
    let now = now();
    let (version, id) = api
        .modify(|s| {
            let svc = plan::services::create(s, spec.clone(), now)?;
            let id = svc.id.clone();
            Ok((Transaction { changes: vec![Change::Create { object: Object::Service(svc) }] }, id))
        })
        .await?;
    Ok((StatusCode::CREATED, Json(Created { id, version, warnings: Vec::new() })))
}

/// Shows a service.
#[utoipa::path(get, path = "/v1/services/{id}", tag = "services",
    params(("id" = String, Path, description = "Id, name or unique id prefix"), ReadOptions),
    responses((status = 200, description = "The service", body = Service),
              (status = 404, description = "No such service", body = ErrorBody)))]
pub(super) async fn inspect(
    State(api): State<Api>,
    Path(key): Path<String>,
    Query(opts): Query<ReadOptions>,
) -> Result<Json<Service>, ApiError> {
    Ok(Json(api.read(opts.consistent, |s| service(s, &key).cloned()).await??))
}

/// Replaces a service's spec; the version read must still be current.
#[utoipa::path(put, path = "/v1/services/{id}", tag = "services", request_body = ServiceUpdate,
    params(("id" = String, Path, description = "Id, name or unique id prefix")),
    responses((status = 200, description = "Updated; the old spec is kept for a rollback", body = Written),
              (status = 404, description = "No such service", body = ErrorBody),
              (status = 409, description = "The service changed since `version`", body = ErrorBody),
              (status = 422, description = "An invalid spec, a rename or a mode change", body = ErrorBody)))]
pub(super) async fn update(
    State(api): State<Api>,
    Path(key): Path<String>,
    Body(req): Body<ServiceUpdate>,
) -> Result<Json<Written>, ApiError> {
    // A client that read a newer version than this manager has applied gets a read
    // through the leader, so its write is not refused for this manager's lag.
    let local = api.read(false, |s| service(s, &key).map(|svc| svc.meta.version)).await??;
    let consistent = local < req.version;
    let (tx, id) = api
        .read(consistent, |s| {
            let svc = service(s, &key)?;
            if svc.meta.version != req.version {
                return Err(PlanError::Stale {
                    what: format!("service {}", svc.spec.name),
                    version: svc.meta.version,
                    read: req.version,
                });
            }
            let new = plan::services::update(s, svc, req.spec.clone(), now())?;
            Ok((Transaction { changes: vec![plan::services::put(new, req.version)] }, svc.id.clone()))
        })
        .await??;
    let version = api.manager.propose(tx).await?;
    Ok(Json(Written { id, version }))
}

/// Sets the replica count of a replicated service (or the completions of a job).
#[utoipa::path(post, path = "/v1/services/{id}/scale", tag = "services", request_body = Scale,
    params(("id" = String, Path, description = "Id, name or unique id prefix")),
    responses((status = 200, description = "Scaled", body = Written),
              (status = 404, description = "No such service", body = ErrorBody),
              (status = 422, description = "A global service, or too many replicas", body = ErrorBody)))]
pub(super) async fn scale(
    State(api): State<Api>,
    Path(key): Path<String>,
    Body(req): Body<Scale>,
) -> Result<Json<Written>, ApiError> {
    let now = now();
    let (version, id) = api
        .modify(|s| {
            let svc = service(s, &key)?;
            let new = plan::services::scale(s, svc, req.replicas, now)?;
            Ok((Transaction { changes: vec![plan::services::put(new, svc.meta.version)] }, svc.id.clone()))
        })
        .await?;
    Ok(Json(Written { id, version }))
}

/// Puts a service back on its previous spec.
#[utoipa::path(post, path = "/v1/services/{id}/rollback", tag = "services",
    params(("id" = String, Path, description = "Id, name or unique id prefix")),
    responses((status = 200, description = "Rolled back", body = Written),
              (status = 404, description = "No such service", body = ErrorBody),
              (status = 422, description = "The service was never updated", body = ErrorBody)))]
pub(super) async fn rollback(
    State(api): State<Api>,
    Path(key): Path<String>,
) -> Result<Json<Written>, ApiError> {
    let now = now();
    let (version, id) = api
        .modify(|s| {
            let svc = service(s, &key)?;
            let new = plan::services::rollback(s, svc, now)?;
            Ok((Transaction { changes: vec![plan::services::put(new, svc.meta.version)] }, svc.id.clone()))
        })
        .await?;
    Ok(Json(Written { id, version }))
}

/// Removes a service; its tasks are shut down.
#[utoipa::path(delete, path = "/v1/services/{id}", tag = "services",
    params(("id" = String, Path, description = "Id, name or unique id prefix")),
    responses((status = 204, description = "Removed"),
              (status = 404, description = "No such service", body = ErrorBody)))]
pub(super) async fn remove(State(api): State<Api>, Path(key): Path<String>) -> Result<StatusCode, ApiError> {
    api.modify(|s| {
        let svc = service(s, &key)?;
        let change = Change::Delete {
            kind: Kind::Service,
            id: svc.id.clone(),
            expected_version: Some(svc.meta.version),
        };
        Ok((Transaction { changes: vec![change] }, ()))
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Lists tasks.
#[utoipa::path(get, path = "/v1/tasks", tag = "tasks", params(TaskFilter),
    responses((status = 200, description = "Tasks matching every filter", body = Vec<Task>),
              (status = 404, description = "The service or node filtered on does not exist", body = ErrorBody)))]
pub(super) async fn list_tasks(
    State(api): State<Api>,
    Query(f): Query<TaskFilter>,
) -> Result<Response, ApiError> {
    let rendered = api.rendered.clone();
    let key = format!("tasks?{}", serde_urlencoded::to_string(&f).unwrap_or_default());
    let body = api
        .read(f.consistent, |s| -> Result<bytes::Bytes, PlanError> {
            let service_id =
                f.service.as_deref().map(|k| service(s, k).map(|svc| svc.id.clone())).transpose()?;
            let node_id =
                f.node.as_deref().map(|k| find(s, Kind::Node, k).map(|n| n.id().to_owned())).transpose()?;
            Ok(rendered.cached_list(key, s.last_index(), || {
                let in_stack: Option<Vec<String>> = f.stack.as_deref().map(|st| {
                    plan::stacks::members(s, st, Kind::Service).map(|o| o.id().to_owned()).collect()
                });
                let tasks: Box<dyn Iterator<Item = &Object>> = match (&service_id, &node_id) {
                    (Some(id), _) => Box::new(s.tasks_of_service(id)),
                    (None, Some(n)) => Box::new(s.tasks_on_node(n)),
                    _ => Box::new(s.list(Kind::Task)),
                };
                let mut out: Vec<&Task> = tasks
                    .filter_map(|o| match o {
                        Object::Task(t) => Some(t),
                        _ => None,
                    })
                    .filter(|t| node_id.as_ref().is_none_or(|n| t.node_id.as_ref() == Some(n)))
                    .filter(|t| f.desired_state.as_deref().is_none_or(|d| t.desired_state.as_str() == d))
                    .filter(|t| in_stack.as_ref().is_none_or(|ids| ids.contains(&t.service_id)))
                    .collect();
                out.sort_by(|a, b| {
                    (&a.service_id, a.slot, &a.node_id, b.meta.created_at).cmp(&(
                        &b.service_id,
                        b.slot,
                        &b.node_id,
                        a.meta.created_at,
                    ))
                });
                rendered.list(out.into_iter().map(|t| (t.id.as_str(), t.meta.version, t)))
            }))
        })
        .await??;
    Ok(json_response(body))
}

/// Shows a task.
#[utoipa::path(get, path = "/v1/tasks/{id}", tag = "tasks",
    params(("id" = String, Path, description = "Id or unique id prefix"), ReadOptions),
    responses((status = 200, description = "The task", body = Task),
              (status = 404, description = "No such task", body = ErrorBody)))]
pub(super) async fn inspect_task(
    State(api): State<Api>,
    Path(key): Path<String>,
    Query(opts): Query<ReadOptions>,
) -> Result<Json<Task>, ApiError> {
    let task = api
        .read(opts.consistent, |s| match find(s, Kind::Task, &key)? {
            Object::Task(t) => Ok::<_, PlanError>(t.clone()),
            _ => unreachable!("the task index holds tasks"),
        })
        .await?;
    Ok(Json(task.map_err(ApiError::from)?))
}
