//! API errors: every failure becomes `{"error": {"code", "message", "field"}}` with
//! the status that fits (400 malformed, 401 no token, 404 missing, 409 conflict,
//! 413 too large, 422 invalid, 503 no leader).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use shoal_api::compose::ComposeError;
use shoal_api::decode::DecodeError;
use shoal_api::validate::FieldError;
use shoal_api::wire::{ErrorBody, ErrorDetail};

use crate::manager::ManagerError;
use crate::plan::PlanError;
use crate::store::StoreError;

/// An error reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// The body.
    pub detail: ErrorDetail,
}

impl ApiError {
    /// An error with no field.
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            detail: ErrorDetail {
                code: code.into(),
                message: message.into(),
                field: None,
                details: Vec::new(),
            },
        }
    }

    /// The same error, naming the field (or query parameter) at fault.
    pub(crate) fn with_field(mut self, field: impl Into<String>) -> ApiError {
        let field = field.into();
        if !field.is_empty() {
            self.detail.field = Some(field);
        }
        self
    }

    fn invalid(problems: Vec<FieldError>) -> ApiError {
        let message = problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
        let field = problems.first().map(|p| p.field.clone()).unwrap_or_default();
        let mut e = ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message).with_field(field);
        e.detail.details = problems;
        e
    }

    /// 400: a body or query that cannot be read.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(ErrorBody { error: self.detail })).into_response()
    }
}

impl From<DecodeError> for ApiError {
    fn from(e: DecodeError) -> Self {
        let message =
            if e.field.is_empty() { e.message.clone() } else { format!("{}: {}", e.field, e.message) };
        ApiError::bad_request(message).with_field(e.field)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let message = e.to_string();
        match e {
            StoreError::Conflict { .. } => ApiError::new(StatusCode::CONFLICT, "conflict", message),
            StoreError::Exists { .. } => ApiError::new(StatusCode::CONFLICT, "exists", message),
            StoreError::NameTaken { .. } => {
                ApiError::new(StatusCode::CONFLICT, "name_taken", message).with_field("name")
            }
            StoreError::NotFound { .. } => ApiError::new(StatusCode::NOT_FOUND, "not_found", message),
            StoreError::Reference { .. } => ApiError::new(StatusCode::CONFLICT, "in_use", message),
            StoreError::AddressTaken { .. } => ApiError::new(StatusCode::CONFLICT, "address_taken", message),
            StoreError::Invalid { .. } => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message),
            StoreError::TooLarge { .. } => ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", message),
        }
    }
}

impl From<ManagerError> for ApiError {
    fn from(e: ManagerError) -> Self {
        // The reply carries the whole chain: the client sees no sources.
        let message = shoal_api::report::chain(&e);
        match e {
            ManagerError::Store(s) => s.into(),
            ManagerError::BadToken => ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message),
            ManagerError::Forbidden(_) => ApiError::new(StatusCode::FORBIDDEN, "forbidden", message),
            ManagerError::DiskFull { .. } | ManagerError::RemoteDiskFull(_) => {
                ApiError::new(StatusCode::INSUFFICIENT_STORAGE, "disk_full", message)
            }
            e if e.is_refusal() => ApiError::new(StatusCode::CONFLICT, "refused", message),
            _ => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message),
        }
    }
}

impl From<PlanError> for ApiError {
    fn from(e: PlanError) -> Self {
        let message = e.to_string();
        match e {
            PlanError::Invalid(v) => ApiError::invalid(v.0),
            PlanError::NotFound { .. } => ApiError::new(StatusCode::NOT_FOUND, "not_found", message),
            PlanError::Ambiguous { .. } => ApiError::bad_request(message),
            PlanError::Stale { .. }
            | PlanError::NameTaken { .. }
            | PlanError::PortTaken { .. }
            | PlanError::PortsExhausted { .. }
            | PlanError::Immutable { .. }
            | PlanError::SubnetOverlap { .. }
            | PlanError::PoolExhausted { .. }
            | PlanError::NameClash { .. }
            | PlanError::NetworkFull { .. } => ApiError::new(StatusCode::CONFLICT, "conflict", message),
            // A node that may not go yet: as a refusal of the managers'.
            PlanError::NodeIsManager { .. } | PlanError::NodeIsUp { .. } => {
                ApiError::new(StatusCode::CONFLICT, "refused", message)
            }
            PlanError::Compose(ComposeError::Invalid(problems)) => ApiError::invalid(problems),
            PlanError::Compose(ComposeError::Interpolate { path, .. }) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message).with_field(path)
            }
            PlanError::Compose(ComposeError::Yaml(_)) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message).with_field("compose")
            }
            PlanError::NotScalable { .. }
            | PlanError::NotAttachable { .. }
            | PlanError::NoPreviousSpec { .. }
            | PlanError::NoExternalNetwork { .. } => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "refused", message)
            }
        }
    }
}
