//! One error shape for every HTTP endpoint: OpenAI's, `{"error": {"message", "type", "param",
//! "code"}}`, so OpenAI clients and everyone else read errors the same way.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An HTTP error answer.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    /// `code`: a stable machine-readable name.
    pub code: &'static str,
    pub message: String,
    /// The request field at fault.
    pub param: Option<String>,
    /// Seconds to wait before trying again (429, 503).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            param: None,
            retry_after: None,
        }
    }

    /// 400 about `field`.
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        ApiError {
            param: Some(field.to_string()),
            ..ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", message)
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    /// 429 with Retry-After.
    pub fn capacity(message: impl Into<String>, retry_after: u64) -> Self {
        ApiError {
            retry_after: Some(retry_after),
            ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, "capacity", message)
        }
    }

    /// 503 with Retry-After.
    pub fn shutting_down() -> Self {
        ApiError {
            retry_after: Some(5),
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting_down",
                "the server is shutting down; try again shortly",
            )
        }
    }

    fn kind(&self) -> &'static str {
        match self.status.as_u16() {
            400 | 413 | 422 => "invalid_request_error",
            404 => "not_found_error",
            429 => "rate_limit_error",
            503 => "service_unavailable",
            _ => "server_error",
        }
    }
}

impl From<super::hub::Capacity> for ApiError {
    fn from(c: super::hub::Capacity) -> Self {
        match c {
            super::hub::Capacity::Full { limit, retry_after } => ApiError::capacity(
                format!("the server is at capacity ({limit}); try again in {retry_after} s"),
                retry_after,
            ),
            super::hub::Capacity::ShuttingDown => ApiError::shutting_down(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({
            "error": {
                "message": self.message,
                "type": self.kind(),
                "param": self.param,
                "code": self.code,
            }
        });
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(seconds) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&seconds.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        response
    }
}

/// Parse a JSON request body into `T`; errors name the field (serde's path) and the problem.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.is_empty() {
        return Err(ApiError::invalid("body", "the request needs a JSON body"));
    }
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid("body", format!("the body is not valid JSON: {e}")))?;
    if !value.is_object() {
        return Err(ApiError::invalid("body", "the body must be a JSON object"));
    }
    serde_json::from_value(value).map_err(|e| {
        let text = e.to_string();
        // serde names the field in backticks: "missing field `prompt`", "unknown field `x`".
        let field = text
            .split('`')
            .nth(1)
            .filter(|f| !f.contains(' '))
            .unwrap_or("body")
            .to_string();
        ApiError {
            param: Some(field),
            ..ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                format!("invalid body: {text}"),
            )
        }
    })
}
