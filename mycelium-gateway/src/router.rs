//! The gateway's routes, and the JSON answers for a path it does not serve (404
//! `no_route`) or a method a path does not serve (405 `method_not_allowed`).
//!
//! - [`routes`] is the one list of paths: the router is built from it, and the OpenAPI
//!   document is checked against it by a test. A new endpoint (the WebSocket, the
//!   dashboard) is one more entry.
//! - Request bodies are read by the handlers up to `[http] max_body_bytes` as it is now
//!   (live on reload), so axum's own fixed limit is off.

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{delete, get, post, MethodRouter};
use axum::Router;

use crate::error::ApiError;
use crate::state::AppState;
use crate::{consume, dashboard, health, openapi, prometheus, publish, topics, websocket};

/// Every path the gateway serves, with its methods.
pub(crate) fn routes() -> Vec<(&'static str, MethodRouter<AppState>)> {
    vec![
        ("/publish/{topic}", post(publish::publish)),
        ("/publish/batch/{topic}", post(publish::publish_batch)),
        (
            "/subscribe/{topic}",
            post(consume::subscribe).delete(consume::unsubscribe),
        ),
        ("/consume/{topic}", get(consume::consume_one)),
        ("/consume/{topic}/batch", get(consume::consume_batch)),
        ("/topics", get(topics::list)),
        ("/topics/{topic}", delete(topics::delete)),
        ("/topics/{topic}/stats", get(topics::stats)),
        ("/health", get(health::health)),
        ("/metrics", get(prometheus::metrics)),
        ("/openapi.json", get(openapi::document)),
        ("/ws", get(websocket::endpoint)),
        ("/", get(dashboard::page)),
        ("/dashboard.js", get(dashboard::script)),
        ("/dashboard.css", get(dashboard::style)),
    ]
}

/// The gateway's router over `state`.
pub(crate) fn router(state: AppState) -> Router {
    let mut router = Router::new();
    for (path, methods) in routes() {
        router = router.route(path, methods);
    }
    router
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}

async fn no_route() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no_route",
        "no such endpoint (see GET /openapi.json)",
    )
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not serve that method (see GET /openapi.json)",
    )
}
