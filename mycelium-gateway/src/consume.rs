//! Server-side subscriptions over HTTP: `POST /subscribe/{topic}` makes one (201),
//! `GET /consume/{topic}` takes one message (200, or 204 after the wait),
//! `GET /consume/{topic}/batch` takes up to `limit` (200, an array, empty after the wait),
//! `DELETE /subscribe/{topic}` ends one.
//!
//! - `wait_ms` (default 0: answer at once) is a long poll, capped at `[http] max_wait_ms`;
//!   a message arriving meanwhile answers it at once. A batch waits only for its first
//!   message, then takes what else is ready.
//! - Two requests on the same subscription take turns; on a queue topic, separate
//!   subscriptions compete for messages as any consumers do.
//! - A subscription whose topic was removed answers 410 once, and is forgotten.
//! - Topics with `subscribe` access lists are refused (403): an HTTP peer has no uid. A
//!   pattern never reaches them (they are left out of its topics, as for a socket peer the
//!   lists do not name).

use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use mycelium_broker::PeerIdentity;
use mycelium_transport::{RecvError, TryRecvError};
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::error::ApiError;
use crate::message::to_json;
use crate::state::AppState;
use crate::subscriptions::{Consumer, Entry, MAX_SUBSCRIPTIONS};

/// `limit` of a batch when none is given, and the largest one taken.
const DEFAULT_BATCH: usize = 100;
const MAX_BATCH: usize = 10_000;

/// `POST /subscribe/{topic}`: a topic, or a pattern (`orders.*`, `orders.>`) of fanout
/// topics.
pub(crate) async fn subscribe(
    State(state): State<AppState>,
    Path(topic): Path<String>,
) -> Result<Response, ApiError> {
    state.refuse_if_stopping()?;
    let subscription = open_subscription(&state, &topic)?;
    let Some(id) = state.subscriptions.insert(&topic, subscription) else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_subscriptions",
            format!("the gateway holds {MAX_SUBSCRIPTIONS} subscriptions already; end some (DELETE /subscribe/{{topic}}) or let them expire"),
        ));
    };
    tracing::debug!(%topic, subscription = %id, "HTTP subscription made");
    let body = json!({ "subscription": id.to_string(), "topic": topic });
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// An in-process subscription of `topic`, or of a pattern, for a client of the gateway
/// (these endpoints, a WebSocket): 403 for a topic with `subscribe` access lists, and a
/// pattern leaves such topics out.
pub(crate) fn open_subscription(
    state: &AppState,
    topic: &str,
) -> Result<mycelium_broker::LocalSubscription, ApiError> {
    if topic.contains(['*', '>']) {
        // Only the topics without `subscribe` lists: no list names this identity.
        return Ok(state
            .local
            .subscribe_pattern_for(topic, unidentified_peer())?);
    }
    let resolved = state.handle.registry().resolve(topic)?;
    if resolved.config().subscribe.is_some() {
        return Err(ApiError::access_lists(topic, "subscribe"));
    }
    Ok(state.local.subscribe(topic)?)
}

/// Who an HTTP client is to the topics' access lists: nobody. Uid and gid `u32::MAX` are
/// `(uid_t)-1` and `(gid_t)-1`, which Linux never gives a user or group.
fn unidentified_peer() -> std::sync::Arc<PeerIdentity> {
    std::sync::Arc::new(PeerIdentity::new(u32::MAX, u32::MAX, 0))
}

/// The query of the consume and unsubscribe requests.
#[derive(Debug, Deserialize)]
pub(crate) struct ConsumeQuery {
    subscription: String,
    wait_ms: Option<u64>,
    limit: Option<usize>,
}

/// `DELETE /subscribe/{topic}?subscription=ID`.
pub(crate) async fn unsubscribe(
    State(state): State<AppState>,
    Path(topic): Path<String>,
    query: Result<Query<ConsumeQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let query = parse_query(query)?;
    let (id, _) = find(&state, &topic, &query.subscription)?;
    state.subscriptions.remove(&id);
    Ok(Json(
        json!({ "subscription": id.to_string(), "topic": topic, "removed": true }),
    ))
}

/// `GET /consume/{topic}?subscription=ID&wait_ms=N`.
pub(crate) async fn consume_one(
    State(state): State<AppState>,
    Path(topic): Path<String>,
    query: Result<Query<ConsumeQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let query = parse_query(query)?;
    let mut messages = consume(&state, &topic, &query, 1).await?;
    Ok(match messages.pop() {
        Some(message) => Json(message).into_response(),
        None => StatusCode::NO_CONTENT.into_response(),
    })
}

/// `GET /consume/{topic}/batch?subscription=ID&limit=N&wait_ms=N`.
pub(crate) async fn consume_batch(
    State(state): State<AppState>,
    Path(topic): Path<String>,
    query: Result<Query<ConsumeQuery>, QueryRejection>,
) -> Result<Json<Vec<Value>>, ApiError> {
    let query = parse_query(query)?;
    let limit = query.limit.unwrap_or(DEFAULT_BATCH);
    if limit == 0 || limit > MAX_BATCH {
        return Err(ApiError::bad_request(
            "bad_limit",
            format!("limit must be in 1..={MAX_BATCH}"),
        ));
    }
    Ok(Json(consume(&state, &topic, &query, limit).await?))
}

async fn consume(
    state: &AppState,
    topic: &str,
    query: &ConsumeQuery,
    limit: usize,
) -> Result<Vec<Value>, ApiError> {
    state.refuse_if_stopping()?;
    let (id, entry) = find(state, topic, &query.subscription)?;
    let wait = Duration::from_millis(query.wait_ms.unwrap_or(0).min(state.http().max_wait_ms));
    let deadline = tokio::time::Instant::now() + wait;
    let taken = tokio::select! {
        taken = async {
            let mut consumer = match tokio::time::timeout_at(deadline, entry.subscription.lock()).await {
                Ok(consumer) => consumer,
                // Another request held it for the whole wait.
                Err(_) => return Ok(Vec::new()),
            };
            take(&mut consumer, limit, deadline).await
        } => taken,
        _ = state.handle.stopping() => Err(ApiError::shutting_down()),
    };
    state.subscriptions.touch(&entry);
    if let Err(error) = &taken {
        if error.status == StatusCode::GONE {
            state.subscriptions.remove(&id);
        }
    }
    taken
}

/// Up to `limit` messages, waiting until `deadline` for the first.
async fn take(
    consumer: &mut Consumer,
    limit: usize,
    deadline: tokio::time::Instant,
) -> Result<Vec<Value>, ApiError> {
    let mut out = Vec::new();
    loop {
        while out.len() < limit {
            match consumer.subscription.try_recv() {
                Ok(message) => out.push(to_json(&message, std::mem::take(&mut consumer.lagged))),
                Err(TryRecvError::Lagged(n)) => consumer.lagged += n,
                Err(TryRecvError::Ended(end)) if out.is_empty() => return Err(gone(&end)),
                // Told again by the next request.
                Err(_) => break,
            }
        }
        if !out.is_empty() || tokio::time::Instant::now() >= deadline {
            return Ok(out);
        }
        match tokio::time::timeout_at(deadline, consumer.subscription.recv()).await {
            Err(_) => return Ok(out),
            Ok(Ok(message)) => out.push(to_json(&message, std::mem::take(&mut consumer.lagged))),
            Ok(Err(RecvError::Lagged(n))) => consumer.lagged += n,
            Ok(Err(RecvError::Ended(end))) => return Err(gone(&end)),
            Ok(Err(other)) => {
                return Err(ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "receive_failed",
                    other.to_string(),
                ))
            }
        }
    }
}

/// The query, or 400 saying what is wrong with it.
fn parse_query(
    query: Result<Query<ConsumeQuery>, QueryRejection>,
) -> Result<ConsumeQuery, ApiError> {
    query.map(|Query(query)| query).map_err(|rejection| {
        ApiError::bad_request(
            "bad_query",
            format!(
                "{} (expected subscription=ID, and optionally wait_ms=N, limit=N)",
                rejection.body_text()
            ),
        )
    })
}

fn gone(end: &mycelium_transport::SubscriptionEnd) -> ApiError {
    ApiError::new(
        StatusCode::GONE,
        "subscription_ended",
        format!("the subscription ended: {end}"),
    )
}

/// The subscription `id` of `topic`, or 400/404.
fn find(
    state: &AppState,
    topic: &str,
    id: &str,
) -> Result<(Uuid, std::sync::Arc<Entry>), ApiError> {
    let id = Uuid::parse_str(id).map_err(|_| {
        ApiError::bad_request(
            "bad_subscription",
            format!("'{id}' is not a subscription id"),
        )
    })?;
    let unknown = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_subscription",
            format!("no subscription {id} on topic '{topic}' (it may have expired after [http] subscription_idle_timeout_ms)"),
        )
    };
    let entry = state.subscriptions.get(&id).ok_or_else(unknown)?;
    if entry.topic != topic {
        return Err(unknown());
    }
    Ok((id, entry))
}
