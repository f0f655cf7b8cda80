//! The gateway's answer when a request fails: a status code and the JSON body
//! `{"error":{"code":"...","message":"..."}}`, where `code` is a stable word a client may
//! match on and `message` says what happened in words.
//!
//! - 400 bad input, 403 a topic with access lists, 404 an unknown topic or subscription,
//!   405 a method the path does not serve, 409 a declared topic asked to be deleted, 410 a
//!   subscription whose topic was removed, 413 a body or message too large, 429 a `block`
//!   topic that stayed full (with `Retry-After`), 503 shutting down or out of room.
//! - The broker's own errors map here once ([`From`] impls), so every endpoint answers the
//!   same failure with the same status and code.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use mycelium_broker::{LookupError, PublishError, SubscribeError};

/// A failed request's answer; see the module's contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) code: &'static str,
    pub(crate) message: String,
    /// Seconds, for `Retry-After`.
    pub(crate) retry_after: Option<u64>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    pub(crate) fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub(crate) fn shutting_down() -> Self {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the broker is shutting down",
        )
    }

    /// A topic with `publish` or `subscribe` access lists: they name Unix users and groups,
    /// and an HTTP peer has neither.
    pub(crate) fn access_lists(topic: &str, action: &str) -> Self {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "access_lists",
            format!(
                "topic '{topic}' has {action} access lists; HTTP clients have no Unix uid or gid \
                 to check against them, so the gateway refuses such topics (use the socket client)"
            ),
        )
    }

    pub(crate) fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "error": { "code": self.code, "message": self.message }
        });
        let mut response = (self.status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl From<LookupError> for ApiError {
    fn from(error: LookupError) -> Self {
        let message = error.to_string();
        match error {
            LookupError::UnknownTopic { .. } => {
                ApiError::new(StatusCode::NOT_FOUND, "unknown_topic", message)
            }
            LookupError::InvalidName { .. } => ApiError::bad_request("invalid_topic", message),
            LookupError::TooManyTopics { .. } => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "too_many_topics", message)
            }
            LookupError::Storage { .. } => storage_failed(message),
        }
    }
}

/// A durable topic's log could not store (or open): 507, as the disk is what failed.
fn storage_failed(message: String) -> ApiError {
    ApiError::new(StatusCode::INSUFFICIENT_STORAGE, "storage_failed", message)
}

impl From<PublishError> for ApiError {
    fn from(error: PublishError) -> Self {
        let message = error.to_string();
        match error {
            PublishError::Lookup(lookup) => lookup.into(),
            PublishError::MessageTooLarge { .. } => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "message_too_large", message)
            }
            PublishError::HeadersTooLarge { .. } => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "headers_too_large", message)
            }
            PublishError::Storage { .. } => storage_failed(message),
        }
    }
}

impl From<SubscribeError> for ApiError {
    fn from(error: SubscribeError) -> Self {
        let message = error.to_string();
        match error {
            SubscribeError::Lookup(lookup) => lookup.into(),
            SubscribeError::NoEchoOnQueue { .. } => ApiError::bad_request("no_echo", message),
        }
    }
}
