//! The one error of the application service: an HTTP status, a stable snake_case
//! code and a message a person can act on. REST and the WebSocket answer it as
//! `{"error":{"code","message"}}`; the embedded SDK maps it to its own error kinds.

pub use axum::http::StatusCode;

/// A service error with its HTTP status, a stable code and a message a person can act on.
#[derive(Debug)]
pub struct ServiceError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable snake_case code.
    pub code: &'static str,
    /// Human-readable message.
    pub message: String,
}

impl ServiceError {
    /// Builds an error.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ServiceError {
        ServiceError {
            status,
            code,
            message: message.into(),
        }
    }
    /// 400 bad_request.
    pub fn bad_request(message: impl Into<String>) -> ServiceError {
        ServiceError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
    /// 404 not_found.
    pub fn not_found(message: impl Into<String>) -> ServiceError {
        ServiceError::new(StatusCode::NOT_FOUND, "not_found", message)
    }
    /// 403 forbidden.
    pub fn forbidden(message: impl Into<String>) -> ServiceError {
        ServiceError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }
    /// 503 unavailable (store failure, shutting down).
    pub fn unavailable(message: impl Into<String>) -> ServiceError {
        ServiceError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }
}

impl From<crate::store::Error> for ServiceError {
    fn from(e: crate::store::Error) -> ServiceError {
        tracing::error!(error = %e, "store error answering a request");
        ServiceError::unavailable(format!("storage unavailable: {e}"))
    }
}

impl From<crate::groups::GroupError> for ServiceError {
    fn from(e: crate::groups::GroupError) -> ServiceError {
        use crate::groups::GroupError;
        match e {
            GroupError::Store(e) => e.into(),
            GroupError::NotFound { .. } => ServiceError::not_found(e.to_string()),
            GroupError::Exists { .. } => {
                ServiceError::new(StatusCode::CONFLICT, "conflict", e.to_string())
            }
        }
    }
}

impl From<crate::names::NameError> for ServiceError {
    fn from(e: crate::names::NameError) -> ServiceError {
        ServiceError::bad_request(e.to_string())
    }
}

impl std::fmt::Display for ServiceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl std::error::Error for ServiceError {}
