//! TODO

use axum::Router;

use crate::http::Api;

pub(super) fn routes() -> Router<Api> {
    Router::new()
}
