//! `/tasks` and `/tasks/{id}`. Filters: `id` and `name` (prefixes; a task's name is
//! `service.slot.id`, or `service.node.id` for a global one), `label` (on the
//! task's SERVICE, as swarmkit matches it), `service` and `node` (an id, a name or a
//! unique id prefix), `desired-state`, and `_up-to-date`, the CLI's progress filter:
//! the task runs its service's current template on a node it may stay on.

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use shoal_api::Task;

use super::filters::Filters;
use super::services::find_service;
use super::spec::{to_docker, types as d};
use super::{DockerError, DockerQuery, ListQuery, flag};
use crate::http::Api;
use crate::orchestrator::update::up_to_date;
use crate::plan;
use crate::store::{Kind, Object, Store, queries};

pub(super) fn routes() -> Router<Api> {
    Router::new().route("/tasks", get(list)).route("/tasks/{id}", get(inspect))
}

const KEYS: &[&str] = &["id", "name", "label", "service", "node", "desired-state", "_up-to-date"];

/// Whether `t` runs its service's current task template on a node it can stay on.
fn is_up_to_date(s: &Store, t: &Task) -> bool {
    let Some(Object::Service(svc)) = s.get(Kind::Service, &t.service_id) else { return false };
    up_to_date(&t.spec, &svc.spec.task_template)
        && t.node_id.as_deref().is_none_or(|n| !queries::must_leave(s, n))
}

/// The name swarmkit gives a task: `service.slot.id` (`service.node.id` when global).
fn task_name(s: &Store, t: &Task) -> String {
    let service = match s.get(Kind::Service, &t.service_id) {
        Some(Object::Service(svc)) => svc.spec.name.as_str(),
        _ => t.service_id.as_str(),
    };
    format!("{}.{}", t.display_name(service), t.id)
}

/// The ids `key`'s values resolve to (each once: a name and an id of the same
/// object are one), or `None` when the filter was not given.
fn resolve(
    s: &Store,
    f: &Filters,
    key: &str,
    kind: Kind,
    what: &str,
) -> Result<Option<std::collections::BTreeSet<String>>, DockerError> {
    f.get(key)
        .map(|values| {
            values
                .iter()
                .map(|v| match kind {
                    Kind::Service => find_service(s, v).map(|svc| svc.id.clone()),
                    _ => plan::find(s, kind, v)
                        .map(|o| o.id().to_owned())
                        .map_err(|e| DockerError::lookup(e, what, v)),
                })
                .collect()
        })
        .transpose()
}

/// `GET /tasks`.
async fn list(
    State(api): State<Api>,
    DockerQuery(q): DockerQuery<ListQuery>,
) -> Result<Json<Vec<d::Task>>, DockerError> {
    let f = Filters::parse(q.filters.as_deref(), KEYS)?;
    let out = api
        .read(false, |s| -> Result<Vec<d::Task>, DockerError> {
            let services = resolve(s, &f, "service", Kind::Service, "service")?;
            let nodes = resolve(s, &f, "node", Kind::Node, "node")?;
            let up_to_date = f.get("_up-to-date").map(|v| v.iter().any(|v| flag(Some(v))));
            let candidates: Box<dyn Iterator<Item = &Task>> = match &services {
                Some(ids) => Box::new(ids.iter().flat_map(|id| queries::tasks_of(s, id))),
                None => Box::new(s.list(Kind::Task).filter_map(|o| match o {
                    Object::Task(t) => Some(t),
                    _ => None,
                })),
            };
            Ok(candidates
                .filter(|t| f.prefix_of("id", &t.id))
                .filter(|t| f.get("name").is_none() || f.prefix_of("name", &task_name(s, t)))
                .filter(|t| {
                    f.get("label").is_none()
                        || matches!(s.get(Kind::Service, &t.service_id),
                            Some(Object::Service(svc)) if f.labels_match(&svc.spec.labels))
                })
                .filter(|t| {
                    nodes.as_ref().is_none_or(|ids| t.node_id.as_ref().is_some_and(|n| ids.contains(n)))
                })
                .filter(|t| f.any("desired-state", |v| v == t.desired_state.as_str()))
                .filter(|t| up_to_date.is_none_or(|want| is_up_to_date(s, t) == want))
                .map(|t| to_docker::task(t, s))
                .collect())
        })
        .await??;
    Ok(Json(out))
}

/// `GET /tasks/{id}`: an id or unique id prefix.
async fn inspect(State(api): State<Api>, Path(key): Path<String>) -> Result<Json<d::Task>, DockerError> {
    let out = api
        .read(false, |s| {
            match plan::find(s, Kind::Task, &key).map_err(|e| DockerError::lookup(e, "task", &key))? {
                Object::Task(t) => Ok(to_docker::task(t, s)),
                _ => Err(DockerError::not_found("task", &key)),
            }
        })
        .await??;
    Ok(Json(out))
}
