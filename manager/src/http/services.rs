//! `/v1/services` and `/v1/tasks`.

use std::borrow::Cow;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::response::Response;
use shoal_api::node::NodeState;
use shoal_api::service::ServiceMode;
use shoal_api::wire::{
    Created, ErrorBody, ReadOptions, Scale, ServiceFilter, ServiceStatus, ServiceUpdate, ServiceWithStatus,
    TaskFilter, Written,
};
use shoal_api::{Service, ServiceSpec, Task, TaskState};

use super::{Api, ApiError, Body, Query, now, polling};
use crate::plan::{self, PlanError, find, stack_of};
use crate::store::{Change, Kind, Object, Store, Transaction, queries};

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

/// The key services are listed and paged by: name, then id.
type ServiceKey = (String, String);

/// The kinds a services list shows: with `status`, tasks and nodes count too.
fn service_kinds(f: &ServiceFilter) -> &'static [Kind] {
    if f.status { &[Kind::Service, Kind::Task, Kind::Node] } else { &[Kind::Service] }
}

/// A service's task counts, as Docker's `ServiceStatus`.
pub(crate) fn service_status(s: &Store, svc: &Service) -> ServiceStatus {
    let tasks: Vec<&Task> = queries::tasks_of(s, &svc.id).collect();
    let wanted = |t: &Task| matches!(t.desired_state, TaskState::Running | TaskState::Complete);
    let running_tasks =
        tasks.iter().filter(|t| t.status.state == TaskState::Running && wanted(t)).count() as u64;
    let completed_tasks = match svc.spec.mode {
        ServiceMode::ReplicatedJob { .. } | ServiceMode::GlobalJob => {
            tasks.iter().filter(|t| t.status.state == TaskState::Complete).count() as u64
        }
        _ => 0,
    };
    // Global kinds: the nodes, not down, that were given a task to run.
    let nodes_with_a_task = |desired: TaskState| {
        tasks
            .iter()
            .filter(|t| t.desired_state == desired)
            .filter_map(|t| t.node_id.as_deref())
            .filter(|n| matches!(s.get(Kind::Node, n), Some(Object::Node(node)) if node.status.state != NodeState::Down))
            .collect::<std::collections::BTreeSet<_>>()
            .len() as u64
    };
    let desired_tasks = match svc.spec.mode {
        ServiceMode::Replicated { replicas } => replicas,
        ServiceMode::Global => nodes_with_a_task(TaskState::Running),
        ServiceMode::ReplicatedJob { max_concurrent, total_completions } => {
            max_concurrent.min(total_completions.unwrap_or(max_concurrent).saturating_sub(completed_tasks))
        }
        ServiceMode::GlobalJob => nodes_with_a_task(TaskState::Complete),
    };
    ServiceStatus { running_tasks, desired_tasks, completed_tasks }
}

/// Lists services, a page at a time with `limit`, each with its task counts with
/// `status`; with `wait_index`, once the services (with `status`, also their tasks
/// or the nodes) changed past it.
#[utoipa::path(get, path = "/v1/services", tag = "services", params(ServiceFilter),
    responses((status = 200, description = "Services matching every filter, by name then id; `service_status` with \
                 `status=true`. `X-Shoal-Index`: the last index that changed a service (or, with `status`, a task or \
                 node); `X-Shoal-Next-Cursor`: the next page's `cursor`", body = Vec<ServiceWithStatus>),
              (status = 304, description = "`If-None-Match` holds the `ETag` (`W/\"<index>\"`): nothing changed"),
              (status = 400, description = "A malformed filter, cursor, limit, fields or wait", body = ErrorBody)))]
pub(super) async fn list(
    State(api): State<Api>,
    headers: HeaderMap,
    Query(f): Query<ServiceFilter>,
) -> Result<Response, ApiError> {
    let fields = polling::parse_fields(f.fields.as_deref())?;
    let kinds = service_kinds(&f);
    let after: Option<ServiceKey> =
        api.start_list(kinds, f.cursor.as_deref(), f.limit, f.wait_index, f.wait.as_deref()).await?;
    let rendered = api.rendered.clone();
    let key = {
        let unwaited = ServiceFilter { wait_index: None, wait: None, ..f.clone() };
        format!("services?{}", serde_urlencoded::to_string(&unwaited).unwrap_or_default())
    };
    let listed = api
        .read(f.consistent, |s| {
            rendered.cached_list(key, s.indexes().of(kinds), || {
                let services = queries::services(s)
                    .filter(|svc| f.name.as_deref().is_none_or(|n| svc.spec.name.starts_with(n)))
                    .filter(|svc| f.label.as_deref().is_none_or(|l| label_matches(&svc.spec.labels, l)))
                    .filter(|svc| f.stack.as_deref().is_none_or(|st| stack_of(&svc.spec.labels) == Some(st)));
                let (page, next) = polling::page(
                    services,
                    |svc| (svc.spec.name.clone(), svc.id.clone()),
                    after.as_ref(),
                    f.limit,
                );
                let mut statuses: std::collections::HashMap<&str, String> = page
                    .iter()
                    .filter(|_| f.status)
                    .map(|svc| {
                        let counts =
                            serde_json::to_string(&service_status(s, svc)).expect("counts serialize");
                        (svc.id.as_str(), format!("\"service_status\":{counts}"))
                    })
                    .collect();
                let body = rendered.list(
                    page.iter().map(|svc| (svc.id.as_str(), svc.meta.version, *svc)),
                    fields.as_deref(),
                    |id| statuses.remove(id),
                );
                (body, next)
            })
        })
        .await?;
    Ok(polling::reply(&headers, listed, true))
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
    headers: HeaderMap,
    Path(key): Path<String>,
    Query(opts): Query<ReadOptions>,
) -> Result<Response, ApiError> {
    let (svc, index) = api
        .read(opts.consistent, |s| {
            service(s, &key).map(|svc| (svc.clone(), s.indexes().of(&[Kind::Service])))
        })
        .await??;
    Ok(polling::reply_json(&headers, &svc, index, true))
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

/// The key tasks are listed and paged by, none of which changes for a task: its
/// service, slot, node for a global task (none for a replicated one, whose node is
/// chosen after it is made), the newest first (negated microseconds), and its id.
/// Borrowed from the task: a page looks at every task's key, and copying three
/// strings each made a page of 100,000 tasks cost 100,000 allocations.
type TaskKey<'a> = (Cow<'a, str>, Option<u64>, Option<Cow<'a, str>>, i64, Cow<'a, str>);

fn task_key(t: &Task) -> TaskKey<'_> {
    let node = if t.slot.is_none() { t.node_id.as_deref().map(Cow::Borrowed) } else { None };
    let newest_first = t.meta.created_at.timestamp_micros().saturating_neg();
    (Cow::Borrowed(&t.service_id), t.slot, node, newest_first, Cow::Borrowed(&t.id))
}

/// The kinds a tasks list shows: tasks, and the services or nodes its filters name.
fn task_kinds(f: &TaskFilter) -> Vec<Kind> {
    let mut kinds = vec![Kind::Task];
    if f.service.is_some() || f.stack.is_some() {
        kinds.push(Kind::Service);
    }
    if f.node.is_some() {
        kinds.push(Kind::Node);
    }
    kinds
}

/// The observed states of `state=a,b`.
fn parse_states(states: Option<&str>) -> Result<Option<Vec<TaskState>>, ApiError> {
    let Some(states) = states else { return Ok(None) };
    states
        .split(',')
        .map(|name| {
            serde_json::from_value(serde_json::Value::String(name.trim().to_owned())).map_err(|_| {
                ApiError::bad_request(format!(
                    "state: {name:?} is not a task state (new, pending, assigned, accepted, preparing, ready, \
                     starting, running, complete, shutdown, failed, rejected, remove, orphaned)"
                ))
                .with_field("state")
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// Lists tasks, a page at a time with `limit`; with `wait_index`, once tasks (or the
/// services or node filtered on) changed past it.
#[utoipa::path(get, path = "/v1/tasks", tag = "tasks", params(TaskFilter),
    responses((status = 200, description = "Tasks matching every filter, by service, slot (or node, for a global \
                 service), newest first, then id. `X-Shoal-Index`: the last index that changed a task (or a service \
                 or node filtered on); `X-Shoal-Next-Cursor`: the next page's `cursor`", body = Vec<Task>),
              (status = 304, description = "`If-None-Match` holds the `ETag` (`W/\"<index>\"`): nothing changed"),
              (status = 400, description = "A malformed filter, state, cursor, limit, fields or wait", body = ErrorBody),
              (status = 404, description = "The service or node filtered on does not exist", body = ErrorBody)))]
pub(super) async fn list_tasks(
    State(api): State<Api>,
    headers: HeaderMap,
    Query(f): Query<TaskFilter>,
) -> Result<Response, ApiError> {
    let fields = polling::parse_fields(f.fields.as_deref())?;
    let states = parse_states(f.state.as_deref())?;
    let kinds = task_kinds(&f);
    let after: Option<TaskKey<'static>> =
        api.start_list(&kinds, f.cursor.as_deref(), f.limit, f.wait_index, f.wait.as_deref()).await?;
    let rendered = api.rendered.clone();
    let key = {
        let unwaited = TaskFilter { wait_index: None, wait: None, ..f.clone() };
        format!("tasks?{}", serde_urlencoded::to_string(&unwaited).unwrap_or_default())
    };
    let listed = api
        .read(f.consistent, |s| -> Result<polling::Listed, PlanError> {
            let service_id =
                f.service.as_deref().map(|k| service(s, k).map(|svc| svc.id.clone())).transpose()?;
            let node_id =
                f.node.as_deref().map(|k| find(s, Kind::Node, k).map(|n| n.id().to_owned())).transpose()?;
            Ok(rendered.cached_list(key, s.indexes().of(&kinds), || {
                let in_stack: Option<Vec<String>> = f.stack.as_deref().map(|st| {
                    plan::stacks::members(s, st, Kind::Service).map(|o| o.id().to_owned()).collect()
                });
                let tasks: Box<dyn Iterator<Item = &Object>> = match (&service_id, &node_id) {
                    (Some(id), _) => Box::new(s.tasks_of_service(id)),
                    (None, Some(n)) => Box::new(s.tasks_on_node(n)),
                    _ => Box::new(s.list(Kind::Task)),
                };
                let tasks = tasks
                    .filter_map(|o| match o {
                        Object::Task(t) => Some(t),
                        _ => None,
                    })
                    .filter(|t| node_id.as_ref().is_none_or(|n| t.node_id.as_ref() == Some(n)))
                    .filter(|t| f.desired_state.as_deref().is_none_or(|d| t.desired_state.as_str() == d))
                    .filter(|t| states.as_ref().is_none_or(|st| st.contains(&t.status.state)))
                    .filter(|t| in_stack.as_ref().is_none_or(|ids| ids.contains(&t.service_id)));
                let (page, next) = polling::page(tasks, |t| task_key(t), after.as_ref(), f.limit);
                let body = rendered.list(
                    page.into_iter().map(|t| (t.id.as_str(), t.meta.version, t)),
                    fields.as_deref(),
                    |_| None,
                );
                (body, next)
            }))
        })
        .await??;
    Ok(polling::reply(&headers, listed, true))
}

/// Shows a task.
#[utoipa::path(get, path = "/v1/tasks/{id}", tag = "tasks",
    params(("id" = String, Path, description = "Id or unique id prefix"), ReadOptions),
    responses((status = 200, description = "The task", body = Task),
              (status = 404, description = "No such task", body = ErrorBody)))]
pub(super) async fn inspect_task(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(key): Path<String>,
    Query(opts): Query<ReadOptions>,
) -> Result<Response, ApiError> {
    let (task, index) = api
        .read(opts.consistent, |s| match find(s, Kind::Task, &key)? {
            Object::Task(t) => Ok::<_, PlanError>((t.clone(), s.indexes().of(&[Kind::Task]))),
            _ => unreachable!("the task index holds tasks"),
        })
        .await??;
    Ok(polling::reply_json(&headers, &task, index, true))
}
