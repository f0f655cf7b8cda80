//! A delivered message as JSON: `{"id", "topic", "timestamp", "headers", "data"}`, or
//! `"data_base64"` in place of `"data"` when the payload is not UTF-8.
//!
//! - `id` and `timestamp` (RFC 3339, nanoseconds, UTC) are `null` unless the topic stamps.
//! - `headers` is an object; a key repeated in the message keeps its first value.
//! - `lagged` appears when messages were lost for this subscription just before this one
//!   (a `drop_newest`/`drop_oldest` topic): how many.

use std::time::{Duration, UNIX_EPOCH};

use base64::Engine;
use mycelium_transport::Message;
use serde_json::{json, Map, Value};

/// A publish time (nanoseconds since the Unix epoch) in RFC 3339, UTC, with nanoseconds.
pub(crate) fn rfc3339(ns: u64) -> String {
    humantime::format_rfc3339_nanos(UNIX_EPOCH + Duration::from_nanos(ns)).to_string()
}

/// `message` as the consume endpoints answer it, with the lag told before it.
pub(crate) fn to_json(message: &Message, lagged: u64) -> Value {
    let mut headers = Map::new();
    for (key, value) in message.headers() {
        headers
            .entry(key.to_owned())
            .or_insert_with(|| Value::String(value.to_owned()));
    }
    let timestamp = message.timestamp_ns().map(rfc3339);
    let mut object = json!({
        "id": message.id().map(|id| id.to_string()),
        "topic": message.topic(),
        "timestamp": timestamp,
        "headers": headers,
    });
    if let Value::Object(fields) = &mut object {
        match std::str::from_utf8(message.payload()) {
            Ok(text) => fields.insert("data".to_owned(), Value::String(text.to_owned())),
            Err(_) => fields.insert(
                "data_base64".to_owned(),
                Value::String(base64::engine::general_purpose::STANDARD.encode(message.payload())),
            ),
        };
        if lagged > 0 {
            fields.insert("lagged".to_owned(), Value::from(lagged));
        }
    }
    object
}
