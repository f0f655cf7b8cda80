//! `GET /openapi.json`: the OpenAPI 3.1 document of the gateway's HTTP API, written by hand
//! in `openapi.json` beside this file and compiled in. A test keeps it true: it names every
//! route the router serves and no other, and its examples succeed against a live gateway.

use axum::http::header;
use axum::response::IntoResponse;

/// The document.
pub(crate) const DOCUMENT: &str = include_str!("openapi.json");

/// `GET /openapi.json`.
pub(crate) async fn document() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], DOCUMENT)
}
