//! `GET /metrics` on the API listeners, and the layer that times every API request
//! by method, route template (axum's matched path, never the URI: the labels stay
//! bounded) and status code. Requests that match no route, or that the TCP access
//! check turns away, are not timed.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};

use super::{Api, ApiError};
use crate::instruments::ReplyLabel;

/// The node's metrics, in the format the scraper asks for.
pub(super) async fn scrape(State(api): State<Api>, headers: HeaderMap) -> Response {
    match &api.metrics {
        Some(registry) => shoal_telemetry::serve::reply(registry, &headers),
        None => {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", "this API serves no metrics").into_response()
        }
    }
}

/// Times a request to its reply's head and counts the reply.
pub(super) async fn track(State(api): State<Api>, req: Request, next: Next) -> Response {
    let Some(route) = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned()) else {
        return next.run(req).await;
    };
    let method = req.method().as_str().to_owned();
    let started = Instant::now();
    let reply = next.run(req).await;
    let took = started.elapsed().as_secs_f64();
    let i = api.manager.instruments();
    let labels = ReplyLabel { method, route, code: reply.status().as_u16().to_string() };
    i.http_duration.get_or_create(&labels).observe(took);
    i.http_requests.get_or_create(&labels).inc();
    reply
}
