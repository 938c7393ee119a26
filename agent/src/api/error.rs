//! The one error shape of the API: `{"error":{"code":"snake_case","message":"…"}}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

/// The API answers the service's errors as they are.
pub use crate::service::ServiceError as ApiError;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"error": {"code": self.code, "message": self.message}});
        (self.status, Json(body)).into_response()
    }
}

/// Maps axum's extractor rejections (bad JSON, bad query, body too large) to our shape.
pub fn from_rejection(status: StatusCode, text: String) -> ApiError {
    match status {
        StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::new(status, "payload_too_large", "request body too large")
        }
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::new(status, "unsupported_media_type", text),
        s if s.is_client_error() => ApiError::bad_request(text),
        _ => ApiError::new(status, "internal", text),
    }
}
