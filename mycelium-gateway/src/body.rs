//! A request body read whole, up to `[http] max_body_bytes` and never past it.

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, StatusCode};

use crate::error::ApiError;

/// The body, or 413 once it passes `max` bytes (told by `Content-Length` before a byte is
/// read, or found while reading one that did not say).
pub(crate) async fn read_limited(
    headers: &HeaderMap,
    body: Body,
    max: usize,
) -> Result<Bytes, ApiError> {
    let too_large = |size: &str| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("request body {size}exceeds [http] max_body_bytes = {max}"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(len) = declared {
        if len > max as u64 {
            return Err(too_large(&format!("of {len} bytes ")));
        }
    }
    axum::body::to_bytes(body, max).await.map_err(|error| {
        let inner = error.into_inner();
        if inner
            .downcast_ref::<http_body_util::LengthLimitError>()
            .is_some()
        {
            too_large("")
        } else {
            ApiError::bad_request(
                "bad_body",
                format!("the request body could not be read: {inner}"),
            )
        }
    })
}
