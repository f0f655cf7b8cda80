//! `GET /health`: 200 `{"status":"serving"}` while the broker serves, 503
//! `{"status":"shutting_down","error":{...}}` from the start of its graceful shutdown until
//! the gateway's listener closes.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::state::AppState;

/// `GET /health`.
pub(crate) async fn health(State(state): State<AppState>) -> Response {
    if state.handle.is_stopping() {
        let body = json!({
            "status": "shutting_down",
            "error": { "code": "shutting_down", "message": "the broker is shutting down" },
        });
        return (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    }
    Json(json!({ "status": "serving" })).into_response()
}
