//! `GET /topics`, `GET /topics/{topic}/stats` and `DELETE /topics/{topic}`.
//!
//! - The figures are the ones `mycelium stats` shows (the broker's `Stats`), per topic.
//! - Only topics `auto_create` made can be deleted (409 for a declared one, with the reason:
//!   a reload of a config without it removes it); their subscribers on every path are told
//!   the topic was removed.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use mycelium_broker::RemoveTopicError;
use mycelium_transport::frame::{RoutingKind, TopicStats};
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::state::AppState;

/// One topic's figures as JSON.
fn topic_json(t: &TopicStats) -> Value {
    json!({
        "name": t.name,
        "routing": match t.routing {
            RoutingKind::Fanout => "fanout",
            RoutingKind::Queue => "queue",
        },
        "dynamic": t.is_dynamic(),
        "subscribers": t.subscribers,
        "shm_subscribers": t.shm_subscribers,
        "published": t.published,
        "delivered": t.delivered,
        "dropped": t.dropped,
        "queued": t.queued,
    })
}

/// `GET /topics`.
pub(crate) async fn list(State(state): State<AppState>) -> Json<Value> {
    let topics: Vec<Value> = state
        .handle
        .statistics()
        .topics
        .iter()
        .map(topic_json)
        .collect();
    Json(json!({ "topics": topics }))
}

/// `GET /topics/{topic}/stats`.
pub(crate) async fn stats(
    State(state): State<AppState>,
    Path(topic): Path<String>,
) -> Result<Json<Value>, ApiError> {
    state
        .handle
        .statistics()
        .topics
        .iter()
        .find(|t| t.name == topic)
        .map(|t| Json(topic_json(t)))
        .ok_or_else(|| unknown(&topic))
}

/// `DELETE /topics/{topic}`.
pub(crate) async fn delete(
    State(state): State<AppState>,
    Path(topic): Path<String>,
) -> Result<Json<Value>, ApiError> {
    state.refuse_if_stopping()?;
    match state.handle.remove_dynamic_topic(&topic) {
        Ok(()) => Ok(Json(json!({ "topic": topic, "deleted": true }))),
        Err(RemoveTopicError::Unknown { .. }) => Err(unknown(&topic)),
        Err(error @ RemoveTopicError::Declared { .. }) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "declared_topic",
            error.to_string(),
        )),
    }
}

fn unknown(topic: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "unknown_topic",
        format!("unknown topic '{topic}'"),
    )
}
