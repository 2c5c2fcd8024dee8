//! `/v1/events`: the store's events as Server-Sent Events, resumable by log index
//! (`since`, or the `Last-Event-ID` header a reconnecting browser sends).

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as Sse, KeepAlive};
use futures::Stream;
use shoal_api::stored::Event;
use shoal_api::wire::{ErrorBody, ErrorDetail, EventQuery};
use tokio::sync::broadcast::error::RecvError;

use super::{Api, ApiError, Query};
use crate::store::{Kind, WatchError};

fn kind_named(name: &str) -> Option<Kind> {
    Kind::ALL.into_iter().find(|k| k.as_str() == name)
}

fn message(e: &Event) -> Sse {
    let object = std::sync::Arc::new(e.object.redacted());
    let data =
        serde_json::to_string(&Event { index: e.index, action: e.action, object }).expect("events serialize");
    let action =
        serde_json::to_value(e.action).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
    Sse::default().id(e.index.to_string()).event(format!("{}.{action}", e.kind())).data(data)
}

fn compacted(message: String) -> Sse {
    let body = ErrorBody {
        error: ErrorDetail { code: "compacted".into(), message, field: None, details: Vec::new() },
    };
    Sse::default().event("error").data(serde_json::to_string(&body).expect("errors serialize"))
}

/// Streams events about stored objects. Secret and config data and the cluster's
/// tokens are left out of the objects.
#[utoipa::path(get, path = "/v1/events", tag = "events", params(EventQuery),
    responses((status = 200, description = "`text/event-stream`: `id` is the log index, `event` is \
        `<kind>.<action>`, `data` is the event as JSON (an `Event`). An `error` event (code `compacted`) \
        ends the stream when the caller fell too far behind: list again and watch from the current index.",
        body = Event, content_type = "text/event-stream"),
              (status = 400, description = "An unknown type", body = ErrorBody),
              (status = 410, description = "Events after `since` are no longer kept: list again", body = ErrorBody)))]
pub(super) async fn events(
    State(api): State<Api>,
    headers: HeaderMap,
    Query(q): Query<EventQuery>,
) -> Result<axum::response::Sse<impl Stream<Item = Result<Sse, Infallible>>>, ApiError> {
    let kind = match q.kind.as_deref() {
        None => None,
        Some(name) => Some(kind_named(name).ok_or_else(|| {
            ApiError::bad_request(format!(
                "no object type {name:?}: use one of {}",
                Kind::ALL.map(Kind::as_str).join(", ")
            ))
        })?),
    };
    let last_id =
        headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    let from = match q.since.or(last_id) {
        Some(i) => i,
        None => api.manager.read(|s| s.last_index()),
    };
    let (backlog, mut live) = api.manager.watch(from).map_err(|e| match e {
        WatchError::Compacted { .. } => ApiError::new(StatusCode::GONE, "compacted", e.to_string()),
    })?;
    let wanted = move |e: &Event| kind.is_none_or(|k| e.kind() == k);
    let stream = async_stream(move |tx| async move {
        // The backlog and the live receiver were taken under one lock: every event is
        // in exactly one of them.
        let mut last = backlog.last().map_or(from, |e| e.index);
        for e in backlog.iter().filter(|e| wanted(e)) {
            if tx.send(message(e)).await.is_err() {
                return;
            }
        }
        loop {
            match live.recv().await {
                Ok(e) => {
                    last = e.index;
                    if wanted(&e) && tx.send(message(&e)).await.is_err() {
                        return;
                    }
                }
                Err(RecvError::Lagged(_)) => {
                    let _ = tx
                        .send(compacted(format!(
                            "this watcher fell behind after index {last}: list again and watch from the current index"
                        )))
                        .await;
                    return;
                }
                Err(RecvError::Closed) => return,
            }
        }
    });
    Ok(axum::response::Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// A task feeding a bounded channel, seen as a stream.
fn async_stream<F, Fut>(f: F) -> impl Stream<Item = Result<Sse, Infallible>>
where
    F: FnOnce(tokio::sync::mpsc::Sender<Sse>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(256);
    tokio::spawn(f(tx));
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (Ok(e), rx)) })
}
