//! Errors in Docker's shape: `{"message": "..."}` with `Content-Type:
//! application/json` exactly (a charset makes the 20.10 CLI print the raw body), and
//! Docker's statuses: 400 for a bad request or spec, 404 for a missing object, 409
//! for a name in use or an out-of-sequence update, 501 for what swarm refuses to
//! change in place, 503 without a leader.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::http::ApiError;
use crate::manager::ManagerError;
use crate::plan::PlanError;

/// An error reply to a Docker client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {message}")]
pub(crate) struct DockerError {
    /// The HTTP status.
    pub(crate) status: StatusCode,
    /// What the CLI prints after "Error response from daemon: ".
    pub(crate) message: String,
}

impl DockerError {
    /// An error with `status`.
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> DockerError {
        DockerError { status, message: message.into() }
    }

    /// 400: a malformed request, or a spec Shoal cannot honour.
    pub(crate) fn bad_request(message: impl Into<String>) -> DockerError {
        DockerError::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404: `kind` `key` does not exist (the CLI turns this into "No such ...").
    pub(crate) fn not_found(kind: &str, key: &str) -> DockerError {
        DockerError::new(StatusCode::NOT_FOUND, format!("{kind} {key} not found"))
    }

    /// A failed lookup of `kind` `key`: 404 when nothing matches, 400 when an id
    /// prefix matches several, the plan's own error otherwise.
    pub(crate) fn lookup(e: PlanError, kind: &str, key: &str) -> DockerError {
        match e {
            PlanError::NotFound { .. } => DockerError::not_found(kind, key),
            PlanError::Ambiguous { .. } => {
                DockerError::bad_request(format!("{kind} {key} is ambiguous: give more of the id"))
            }
            e => e.into(),
        }
    }

    /// 409: `what` changed since the `read` version the update was made at.
    pub(crate) fn out_of_sequence(what: &str, version: u64, read: u64) -> DockerError {
        DockerError::new(
            StatusCode::CONFLICT,
            format!("update out of sequence: {what} is at version {version}, the update read version {read}"),
        )
    }

    /// An update's `version=N` query parameter, which must be there.
    pub(crate) fn version_param(v: Option<&str>, what: &str) -> Result<u64, DockerError> {
        v.and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| DockerError::bad_request(format!("invalid {what} version")))
    }

    /// 400 for a field of Docker's that Shoal cannot honour: it names the field
    /// (its JSON path in Docker's types) and says why.
    pub(crate) fn unsupported(field: &str, why: &str) -> DockerError {
        DockerError::bad_request(format!("{field}: {why}"))
    }
}

impl IntoResponse for DockerError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "message": self.message }).to_string();
        let mut res = (self.status, body).into_response();
        res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        res
    }
}

/// The cluster API's errors, in Docker's terms: an invalid spec (422 there) is a
/// 400 here, and so is what swarm calls a failed precondition (an object in use, a
/// refused removal, a taken address); the rest keep their status.
impl From<ApiError> for DockerError {
    fn from(e: ApiError) -> Self {
        let status = match (e.status, e.detail.code.as_str()) {
            (StatusCode::UNPROCESSABLE_ENTITY, _) => StatusCode::BAD_REQUEST,
            (_, "in_use" | "refused" | "address_taken") => StatusCode::BAD_REQUEST,
            (s, _) => s,
        };
        let message = match &e.detail.field {
            Some(field) if !e.detail.message.starts_with(field.as_str()) => {
                format!("{field}: {}", e.detail.message)
            }
            _ => e.detail.message.clone(),
        };
        DockerError::new(status, message)
    }
}

/// A plan's refusal: a name in use or a stale version is 409, what swarm answers
/// with InvalidArgument or FailedPrecondition (a taken port, a node that is up or a
/// manager, an overlapping subnet, a full pool) is 400.
impl From<PlanError> for DockerError {
    fn from(e: PlanError) -> Self {
        match e {
            PlanError::PortTaken { .. }
            | PlanError::PortsExhausted { .. }
            | PlanError::NodeIsManager { .. }
            | PlanError::NodeIsUp { .. }
            | PlanError::Immutable { .. }
            | PlanError::SubnetOverlap { .. }
            | PlanError::PoolExhausted { .. }
            | PlanError::NetworkFull { .. } => DockerError::bad_request(e.to_string()),
            e => ApiError::from(e).into(),
        }
    }
}

impl From<ManagerError> for DockerError {
    fn from(e: ManagerError) -> Self {
        ApiError::from(e).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn errors_are_a_message_with_a_bare_json_content_type() {
        let res = DockerError::not_found("service", "web").into_response();
        assert_eq!(res.status(), StatusCode::NOT_FOUND);
        assert_eq!(res.headers()[header::CONTENT_TYPE], "application/json");
        let body = axum::body::to_bytes(res.into_body(), 1024).await.unwrap();
        assert_eq!(&body[..], br#"{"message":"service web not found"}"#);
    }
}
