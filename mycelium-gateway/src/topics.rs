//! `GET /topics`, `GET /topics/{topic}/stats` and `DELETE /topics/{topic}`.
//!
//! - The figures are the broker's metrics per topic ([`TopicMetrics`]): the counters
//!   `mycelium stats` shows (same keys as before: `subscribers` counts socket and in-process
//!   subscribers, `queued` a queue's backlog), and beside them subscribers by transport, drops
//!   by reason, bytes, depth, the slowest subscribers' lag and the publish-to-deliver latency.
//! - Only topics `auto_create` made can be deleted (409 for a declared one, with the reason:
//!   a reload of a config without it removes it); their subscribers on every path are told
//!   the topic was removed.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use mycelium_broker::{RemoveTopicError, TopicMetrics};
use mycelium_config::Routing;
use serde_json::{json, Map, Value};

use crate::error::ApiError;
use crate::state::AppState;

fn micros(d: Option<Duration>) -> Value {
    d.map_or(Value::Null, |d| json!(d.as_secs_f64() * 1e6))
}

/// One topic's figures as JSON.
fn topic_json(t: &TopicMetrics) -> Value {
    let dropped_by: Map<String, Value> = t
        .dropped_by
        .iter()
        .map(|(reason, n)| (reason.as_str().to_owned(), json!(n)))
        .collect();
    json!({
        "name": t.name,
        "routing": match t.routing {
            Routing::Fanout => "fanout",
            Routing::Queue => "queue",
        },
        "dynamic": t.dynamic,
        "subscribers": t.subscribers.socket + t.subscribers.in_process,
        "shm_subscribers": t.subscribers.shm,
        "subscribers_by_transport": {
            "socket": t.subscribers.socket,
            "shm": t.subscribers.shm,
            "in_process": t.subscribers.in_process,
        },
        "published": t.published,
        "delivered": t.delivered,
        "dropped": t.dropped,
        "dropped_by": dropped_by,
        "queued": t.backlog,
        "depth": t.depth,
        "bytes_in": t.bytes_in,
        "bytes_out": t.bytes_out,
        "lag": {
            "messages": t.lag.queued_messages,
            "shm_bytes": t.lag.shm_bytes,
        },
        "latency": {
            "count": t.latency.count,
            "p50_us": micros(t.latency.p50),
            "p99_us": micros(t.latency.p99),
            "p999_us": micros(t.latency.p999),
        },
    })
}

/// `GET /topics`.
pub(crate) async fn list(State(state): State<AppState>) -> Json<Value> {
    let topics: Vec<Value> = state
        .handle
        .metrics()
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
        .metrics()
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
