//! The API's errors: each a status and a reason in JSON (`{"error": "...", "reason": "..."}`),
//! so a caller always learns what to change. 401 carries `WWW-Authenticate`.

use axum::Json;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No token, or one the store does not know.
    #[error("{0}")]
    Unauthenticated(String),
    /// A token whose role does not allow the call.
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Conflict(String),
    /// The store could not be read or written: worth retrying.
    #[error("the store is unavailable: {0}")]
    Store(#[from] wyvern_store::StoreError),
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    fn status(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Unauthenticated(_) => (StatusCode::UNAUTHORIZED, "unauthenticated"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::Store(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, error) = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, "API request failed");
        }
        let body = Json(serde_json::json!({ "error": error, "reason": self.to_string() }));
        let mut r = (status, body).into_response();
        if status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer realm=\"wyvern\""),
            );
        }
        r
    }
}
