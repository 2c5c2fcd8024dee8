//! `/v1/services/{id}/logs` and `/v1/tasks/{id}/logs`: tasks' output streamed from
//! the workers' log files through the leader, as NDJSON records.

use std::convert::Infallible;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt as _;
use shoal_api::wire::{ErrorBody, LogQuery, LogRecord};
use shoal_proto::dispatcher as pb;

use super::{Api, ApiError, Query};
use crate::dispatcher::logs::LogOptions;
use crate::plan::{PlanError, find};
use crate::store::{Kind, Object, Store};

fn options(q: &LogQuery) -> Result<LogOptions, ApiError> {
    let since = match q.since.as_deref() {
        None | Some("") => 0,
        Some(text) => {
            let at = chrono::DateTime::parse_from_rfc3339(text)
                .map(|t| t.with_timezone(&chrono::Utc))
                .ok()
                .or_else(|| text.parse::<i64>().ok().and_then(|s| chrono::DateTime::from_timestamp(s, 0)))
                .or_else(|| {
                    shoal_api::duration::parse(text)
                        .ok()
                        .and_then(|d| chrono::Duration::from_std(d).ok())
                        .map(|d| chrono::Utc::now() - d)
                })
                .ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "since={text:?} is not an RFC 3339 time, Unix seconds, or a duration like 10m"
                    ))
                })?;
            at.timestamp_nanos_opt().unwrap_or(0)
        }
    };
    Ok(LogOptions { follow: q.follow, tail: q.tail.unwrap_or(0), since_unix_nanos: since })
}

fn records(reply: pb::LogsReply) -> Bytes {
    let mut out = Vec::new();
    let mut push = |r: LogRecord| {
        out.extend_from_slice(&serde_json::to_vec(&r).expect("records serialize"));
        out.push(b'\n');
    };
    if !reply.error.is_empty() {
        push(LogRecord {
            task_id: reply.task_id.clone(),
            stream: String::new(),
            time: None,
            line: String::new(),
            error: Some(reply.error),
        });
    }
    for l in reply.lines {
        let stream = if l.stream == pb::log_line::Stream::Stderr as i32 { "stderr" } else { "stdout" };
        push(LogRecord {
            task_id: reply.task_id.clone(),
            stream: stream.into(),
            time: Some(chrono::DateTime::from_timestamp_nanos(l.timestamp_unix_nanos)),
            line: String::from_utf8_lossy(&l.line).into_owned(),
            error: None,
        });
    }
    Bytes::from(out)
}

async fn stream(api: &Api, task_ids: Vec<String>, q: &LogQuery) -> Result<Response, ApiError> {
    let opts = options(q)?;
    let lines = api.dispatcher.logs(task_ids, opts).await?;
    let body = lines.map(|item| {
        Ok::<_, Infallible>(match item {
            Ok(reply) => records(reply),
            Err(status) => {
                let r = LogRecord {
                    task_id: String::new(),
                    stream: String::new(),
                    time: None,
                    line: String::new(),
                    error: Some(format!("the log stream broke: {}", status.message())),
                };
                let mut line = serde_json::to_vec(&r).expect("records serialize");
                line.push(b'\n');
                Bytes::from(line)
            }
        })
    });
    Ok(([(axum::http::header::CONTENT_TYPE, "application/x-ndjson")], Body::from_stream(body))
        .into_response())
}

/// Streams the output of every task of a service.
#[utoipa::path(get, path = "/v1/services/{id}/logs", tag = "services",
    params(("id" = String, Path, description = "Id, name or unique id prefix"), LogQuery),
    responses((status = 200, description = "`application/x-ndjson`: one `LogRecord` per line, task by task \
        (then interleaved as they come, with `follow`)", body = LogRecord, content_type = "application/x-ndjson"),
              (status = 400, description = "A bad `since`", body = ErrorBody),
              (status = 404, description = "No such service", body = ErrorBody)))]
pub(super) async fn service_logs(
    State(api): State<Api>,
    Path(key): Path<String>,
    Query(q): Query<LogQuery>,
) -> Result<Response, ApiError> {
    let ids = api
        .read(false, |s| -> Result<Vec<String>, PlanError> {
            Ok(placed_tasks(s, find(s, Kind::Service, &key)?.id()))
        })
        .await??;
    stream(&api, ids, &q).await
}

/// The ids of a service's tasks that have a node (the others have no logs), by slot
/// and then age: what a service's logs read, here and in the Docker API.
pub(crate) fn placed_tasks(s: &Store, service_id: &str) -> Vec<String> {
    let mut tasks: Vec<(Option<u64>, chrono::DateTime<chrono::Utc>, String)> = s
        .tasks_of_service(service_id)
        .filter_map(|o| match o {
            Object::Task(t) if t.node_id.is_some() => Some((t.slot, t.meta.created_at, t.id.clone())),
            _ => None,
        })
        .collect();
    tasks.sort();
    tasks.into_iter().map(|(_, _, id)| id).collect()
}

/// Streams the output of one task.
#[utoipa::path(get, path = "/v1/tasks/{id}/logs", tag = "tasks",
    params(("id" = String, Path, description = "Id or unique id prefix"), LogQuery),
    responses((status = 200, description = "`application/x-ndjson`: one `LogRecord` per line",
        body = LogRecord, content_type = "application/x-ndjson"),
              (status = 400, description = "A bad `since`", body = ErrorBody),
              (status = 404, description = "No such task", body = ErrorBody)))]
pub(super) async fn task_logs(
    State(api): State<Api>,
    Path(key): Path<String>,
    Query(q): Query<LogQuery>,
) -> Result<Response, ApiError> {
    let id = api.read(false, |s| find(s, Kind::Task, &key).map(|o| o.id().to_owned())).await??;
    stream(&api, vec![id], &q).await
}
