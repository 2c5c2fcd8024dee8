//! `/services`: list (with `status=true` task counts), create, inspect, update
//! (including `rollback=previous`) and remove, through the cluster API's plans.
//! A Docker update stores the whole spec it is given and resets `UpdateStatus`, as
//! swarmkit does, so the CLI's progress loop follows the new rollout.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use shoal_api::Service;

use super::filters::Filters;
use super::spec::{to_docker, to_shoal, types as d};
use super::{DockerError, DockerJson, DockerQuery, flag};
use crate::http::Api;
use crate::plan::{self, PlanError};
use crate::store::{Change, Kind, Object, Store, Transaction, queries};

pub(super) fn routes() -> Router<Api> {
    Router::new()
        .route("/services", get(list))
        .route("/services/create", post(create))
        .route("/services/{id}", get(inspect).delete(remove))
        .route("/services/{id}/update", post(update))
}

/// The service `key` names: its id, its name or a unique id prefix.
pub(super) fn find_service<'a>(store: &'a Store, key: &str) -> Result<&'a Service, DockerError> {
    match plan::find(store, Kind::Service, key).map_err(|e| DockerError::lookup(e, "service", key))? {
        Object::Service(s) => Ok(s),
        _ => Err(DockerError::not_found("service", key)),
    }
}

fn status_of(s: &Store, svc: &Service) -> d::ServiceStatus {
    let c = crate::http::services::service_status(s, svc);
    d::ServiceStatus {
        running_tasks: c.running_tasks,
        desired_tasks: c.desired_tasks,
        completed_tasks: c.completed_tasks,
    }
}

/// `GET /services`' query: Docker's `filters`, and `status=true` for the counts.
#[derive(Deserialize)]
struct ServicesQuery {
    filters: Option<String>,
    status: Option<String>,
}

/// `GET /services`: filters `id`, `name` (prefixes), `label`, `mode`.
async fn list(
    State(api): State<Api>,
    DockerQuery(q): DockerQuery<ServicesQuery>,
) -> Result<Json<Vec<d::Service>>, DockerError> {
    let f = Filters::parse(q.filters.as_deref(), &["id", "name", "label", "mode"])?;
    let status = flag(q.status.as_deref());
    let out = api
        .read(false, |s| {
            queries::services(s)
                .filter(|svc| f.prefix_of("id", &svc.id))
                .filter(|svc| f.prefix_of("name", &svc.spec.name))
                .filter(|svc| f.labels_match(&svc.spec.labels))
                .filter(|svc| f.any("mode", |m| m == svc.spec.mode.name()))
                .map(|svc| to_docker::service(svc, s, status.then(|| status_of(s, svc))))
                .collect()
        })
        .await?;
    Ok(Json(out))
}

/// `POST /services/create` → 201 `{"ID"}`; `X-Registry-Auth` is accepted and not
/// used (Shoal's workers pull with their own credentials).
async fn create(
    State(api): State<Api>,
    DockerJson(body): DockerJson<d::ServiceSpec>,
) -> Result<(StatusCode, Json<serde_json::Value>), DockerError> {
    let spec = api.read(false, |s| to_shoal::service_spec(body, s, None)).await??;
    let now = chrono::Utc::now();
    let (_, id) = api
        .modify(|s| {
            let svc = plan::services::create(s, spec.clone(), now)?;
            let id = svc.id.clone();
            Ok((Transaction { changes: vec![Change::Create { object: Object::Service(svc) }] }, id))
        })
        .await?;
    Ok((StatusCode::CREATED, Json(json!({ "ID": id, "Warnings": null }))))
}

#[derive(Deserialize)]
struct InspectQuery {
    #[serde(rename = "insertDefaults")]
    _insert_defaults: Option<String>,
}

/// `GET /services/{id}`. Shoal's specs always hold every default, so
/// `insertDefaults` changes nothing.
async fn inspect(
    State(api): State<Api>,
    Path(key): Path<String>,
    DockerQuery(_): DockerQuery<InspectQuery>,
) -> Result<Json<d::Service>, DockerError> {
    let out =
        api.read(false, |s| find_service(s, &key).map(|svc| to_docker::service(svc, s, None))).await??;
    Ok(Json(out))
}

#[derive(Deserialize)]
struct UpdateQuery {
    version: Option<String>,
    rollback: Option<String>,
    #[serde(rename = "registryAuthFrom")]
    registry_auth_from: Option<String>,
}

/// `POST /services/{id}/update?version=N`: the whole new spec, or with
/// `rollback=previous` the previous one.
async fn update(
    State(api): State<Api>,
    Path(key): Path<String>,
    DockerQuery(q): DockerQuery<UpdateQuery>,
    DockerJson(body): DockerJson<d::ServiceSpec>,
) -> Result<Json<serde_json::Value>, DockerError> {
    let version = DockerError::version_param(q.version.as_deref(), "service")?;
    match q.registry_auth_from.as_deref().unwrap_or("") {
        "" | "spec" | "previous-spec" => {}
        other => {
            return Err(DockerError::bad_request(format!(
                "unsupported registryAuthFrom '{other}': use spec or previous-spec"
            )));
        }
    }
    let rollback = match q.rollback.as_deref().unwrap_or("") {
        "" | "none" => false,
        "previous" => true,
        other => {
            return Err(DockerError::bad_request(format!("unrecognized rollback option {other}")));
        }
    };
    // A client that read a newer version than this manager has applied reads
    // through the leader, so it is not refused for this manager's lag.
    let local = api.read(false, |s| find_service(s, &key).map(|svc| svc.meta.version)).await??;
    let tx = api
        .read(local < version, |s| -> Result<Transaction, DockerError> {
            let svc = find_service(s, &key)?;
            if svc.meta.version != version {
                let what = format!("service {}", svc.spec.name);
                return Err(DockerError::out_of_sequence(&what, svc.meta.version, version));
            }
            let now = chrono::Utc::now();
            let new = if rollback {
                plan::services::rollback(s, svc, now).map_err(|e| DockerError::lookup(e, "service", &key))?
            } else {
                let spec = to_shoal::service_spec(body, s, Some(&svc.spec))?;
                // What swarm refuses to change in place is a 501, as dockerd answers.
                if spec.name != svc.spec.name {
                    return Err(DockerError::new(
                        StatusCode::NOT_IMPLEMENTED,
                        format!("renaming services is not supported ({} to {})", svc.spec.name, spec.name),
                    ));
                }
                if std::mem::discriminant(&spec.mode) != std::mem::discriminant(&svc.spec.mode) {
                    return Err(DockerError::new(
                        StatusCode::NOT_IMPLEMENTED,
                        format!(
                            "service mode change is not allowed ({} to {}): remove and recreate the service",
                            svc.spec.mode.name(),
                            spec.mode.name()
                        ),
                    ));
                }
                // Swarmkit resets `UpdateStatus` on every new spec (the plan only on a new
                // task template): a stale `completed` would end the CLI's progress loop
                // before a scale has converged.
                let mut new = plan::services::update(s, svc, spec, now)
                    .map_err(|e| DockerError::lookup(e, "service", &key))?;
                new.update_status = None;
                new
            };
            Ok(Transaction { changes: vec![plan::services::put(new, version)] })
        })
        .await??;
    api.manager.propose(tx).await?;
    Ok(Json(json!({ "Warnings": null })))
}

/// `DELETE /services/{id}` → 200; its tasks are shut down.
async fn remove(State(api): State<Api>, Path(key): Path<String>) -> Result<StatusCode, DockerError> {
    let id = api.read(false, |s| find_service(s, &key).map(|svc| svc.id.clone())).await??;
    api.modify(|s| {
        let Some(Object::Service(svc)) = s.get(Kind::Service, &id) else {
            return Err(PlanError::NotFound { kind: Kind::Service, id: key.clone() });
        };
        let change = Change::Delete {
            kind: Kind::Service,
            id: svc.id.clone(),
            expected_version: Some(svc.meta.version),
        };
        Ok((Transaction { changes: vec![change] }, ()))
    })
    .await
    .map_err(|e| {
        let e = DockerError::from(e);
        if e.status == StatusCode::NOT_FOUND { DockerError::not_found("service", &key) } else { e }
    })?;
    Ok(StatusCode::OK)
}
