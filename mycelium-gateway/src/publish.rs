//! `POST /publish/{topic}` (the body is the payload) and `POST /publish/batch/{topic}` (a
//! JSON array of messages).
//!
//! - A single publish on a topic that stamps answers with the message's `id` and
//!   `timestamp`, as a consumer will see them.
//! - Headers of a single publish come from the request's `X-Mycelium-Header-<Key>: value`
//!   headers; HTTP header names are case-insensitive, so `<Key>` arrives in lower case.
//! - A batch is checked whole (JSON shape, base64, header keys, every size limit) before
//!   anything is published: a bad item refuses the batch and publishes nothing.
//! - A `block` topic that stays full holds a publish back for at most [`PUBLISH_WAIT`];
//!   then the answer is 429 with `Retry-After`. Subscribers that had room may have got the
//!   message already (fanout), so a retry can reach them twice; a queue topic's full backlog
//!   took nothing.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use base64::Engine;
use mycelium_broker::LocalPublisher;
use mycelium_config::TopicConfig;
use mycelium_transport::envelope::Headers;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::body::read_limited;
use crate::error::ApiError;
use crate::state::AppState;

/// Longest a publish waits on a full `block` topic before 429.
pub(crate) const PUBLISH_WAIT: Duration = Duration::from_secs(1);

/// Request headers with this prefix become message headers.
pub(crate) const HEADER_PREFIX: &str = "x-mycelium-header-";

/// `POST /publish/{topic}`.
pub(crate) async fn publish(
    State(state): State<AppState>,
    Path(topic): Path<String>,
    request_headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    state.refuse_if_stopping()?;
    let payload = read_limited(&request_headers, body, state.http().max_body_bytes).await?;
    let headers = message_headers(&request_headers)?;
    let (publisher, config) = publisher_for(&state, &topic)?;
    let published = async {
        if headers.is_empty() && !config.stamp {
            // Plain, as the socket's plain publish: no envelope.
            publisher.publish(&payload).await.map(|()| None)
        } else {
            publisher.publish_stamped(&headers, &payload).await
        }
    };
    let stamp = match tokio::time::timeout(PUBLISH_WAIT, published).await {
        Ok(result) => result?,
        Err(_) => return Err(backpressure(&topic, 0, 1)),
    };
    let mut answer = json!({ "topic": topic, "published": 1 });
    if let (Some(stamp), Value::Object(fields)) = (stamp, &mut answer) {
        fields.insert("id".to_owned(), Value::from(stamp.id.to_string()));
        fields.insert(
            "timestamp".to_owned(),
            Value::from(crate::message::rfc3339(stamp.timestamp_ns)),
        );
    }
    Ok(Json(answer))
}

/// One item of a batch: a string (the payload, as UTF-8), or an object.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum BatchItem {
    Text(String),
    Object(BatchObject),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchObject {
    data: Option<String>,
    data_base64: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

/// `POST /publish/batch/{topic}`.
pub(crate) async fn publish_batch(
    State(state): State<AppState>,
    Path(topic): Path<String>,
    request_headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    state.refuse_if_stopping()?;
    let body = read_limited(&request_headers, body, state.http().max_body_bytes).await?;
    let items: Vec<Value> = serde_json::from_slice(&body).map_err(|error| {
        ApiError::bad_request(
            "bad_json",
            format!("the body must be a JSON array of messages: {error}"),
        )
    })?;
    let (publisher, config) = publisher_for(&state, &topic)?;
    let messages = items
        .into_iter()
        .enumerate()
        .map(|(index, item)| parse_item(index, item, &config))
        .collect::<Result<Vec<_>, ApiError>>()?;
    let count = messages.len();
    let mut done = 0;
    let published = async {
        if messages.iter().all(|(headers, _)| headers.is_empty()) {
            let payloads: Vec<&[u8]> = messages.iter().map(|(_, p)| p.as_slice()).collect();
            publisher.publish_batch(&payloads).await?;
            done = count;
        } else {
            for (headers, payload) in &messages {
                publisher.publish_with(headers, payload).await?;
                done += 1;
            }
        }
        Ok::<(), mycelium_broker::PublishError>(())
    };
    match tokio::time::timeout(PUBLISH_WAIT, published).await {
        Ok(result) => result?,
        Err(_) => return Err(backpressure(&topic, done, count)),
    }
    Ok(Json(json!({ "topic": topic, "published": count })))
}

/// Checks item `index` against the topic's limits; its headers and payload.
fn parse_item(
    index: usize,
    item: Value,
    config: &TopicConfig,
) -> Result<(Headers, Vec<u8>), ApiError> {
    let bad =
        |message: String| ApiError::bad_request("bad_batch", format!("item {index}: {message}"));
    let item: BatchItem = serde_json::from_value(item).map_err(|_| {
        bad("must be a string or an object {\"data\"|\"data_base64\", \"headers\"}".to_owned())
    })?;
    let (payload, pairs) = match item {
        BatchItem::Text(text) => (text.into_bytes(), BTreeMap::new()),
        BatchItem::Object(object) => {
            let payload = match (object.data, object.data_base64) {
                (Some(text), None) => text.into_bytes(),
                (None, Some(encoded)) => base64::engine::general_purpose::STANDARD
                    .decode(encoded.as_bytes())
                    .map_err(|error| bad(format!("data_base64 is not base64: {error}")))?,
                _ => return Err(bad("needs exactly one of data and data_base64".to_owned())),
            };
            (payload, object.headers)
        }
    };
    let mut headers = Headers::new();
    for (key, value) in pairs {
        headers
            .insert(key, value)
            .map_err(|error| bad(format!("bad header: {error}")))?;
    }
    if payload.len() > config.max_message_size {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "message_too_large",
            format!(
                "item {index}: message of {} bytes exceeds the limit of {} bytes on topic '{}'",
                payload.len(),
                config.max_message_size,
                config.name
            ),
        ));
    }
    if headers.len() > usize::from(config.max_headers)
        || headers.byte_len() > config.max_header_bytes as usize
    {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "headers_too_large",
            format!(
                "item {index}: {} header(s) of {} bytes exceed the limits of topic '{}' (max_headers = {}, max_header_bytes = {})",
                headers.len(),
                headers.byte_len(),
                config.name,
                config.max_headers,
                config.max_header_bytes
            ),
        ));
    }
    Ok((headers, payload))
}

/// The message headers named by `X-Mycelium-Header-<Key>` request headers.
fn message_headers(request: &HeaderMap) -> Result<Headers, ApiError> {
    let mut headers = Headers::new();
    for (name, value) in request {
        let Some(key) = name.as_str().strip_prefix(HEADER_PREFIX) else {
            continue;
        };
        let value = std::str::from_utf8(value.as_bytes()).map_err(|_| {
            ApiError::bad_request(
                "bad_header",
                format!("header '{key}': the value is not UTF-8"),
            )
        })?;
        headers.insert(key, value).map_err(|error| {
            ApiError::bad_request("bad_header", format!("header '{key}': {error}"))
        })?;
    }
    Ok(headers)
}

/// A publisher of `topic` (auto-created if the broker allows), refused when the topic has
/// `publish` access lists.
pub(crate) fn publisher_for(
    state: &AppState,
    topic: &str,
) -> Result<(LocalPublisher, std::sync::Arc<TopicConfig>), ApiError> {
    let resolved = state.handle.registry().resolve(topic)?;
    let config = resolved.config();
    if config.publish.is_some() {
        return Err(ApiError::access_lists(topic, "publish"));
    }
    Ok((state.local.publisher(topic)?, config))
}

pub(crate) fn backpressure(topic: &str, done: usize, count: usize) -> ApiError {
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "backpressure",
        format!(
            "topic '{topic}' is full (backpressure = block) and stayed full for {} ms; \
             {done} of {count} message(s) published; subscribers with room may have the \
             one that was waiting",
            PUBLISH_WAIT.as_millis()
        ),
    )
    .with_retry_after(1)
}
