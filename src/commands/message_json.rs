//! `mycelium sub --json`: each message as one JSON object on one line.
//!
//! Keys, always in this order: `id` (the UUIDv7, or `null` when the message carries none),
//! `topic` (the topic it was published on: the concrete one under a pattern), `offset` (only on
//! a message read from a durable topic's log: its offset there), `timestamp` (RFC 3339 in UTC
//! with nanoseconds, or `null`), `headers` (an object, keys sorted; a key that repeats has an
//! array of its values, in order), then `data` (the payload as a string when it is UTF-8) or
//! `data_base64` (standard base64 when it is not). A request adds `reply_to`, a reply `reply`
//! (`status`, `code`, `correlation`).
//!
//! Ids and timestamps are there when the topic stamps its messages (`stamp = true`) or the
//! publisher stamped them; [`JsonLines`] says once on stderr, the first time a message has
//! none, why its `id` and `timestamp` are `null`.

use std::io::Write;

use base64::Engine;
use mycelium_client::envelope::ReplyStatus;
use mycelium_client::Message;
use serde_json::{json, Map, Value};

use crate::output::errln;

/// Writes messages as JSON lines, and notes once that stamps are missing.
#[derive(Debug, Default)]
pub struct JsonLines {
    told_unstamped: bool,
}

impl JsonLines {
    /// Writes `message` as one line. Returns true if stdout is gone (a closed pipe).
    pub fn write(&mut self, out: &mut impl Write, message: &Message) -> anyhow::Result<bool> {
        if message.stamp().is_none() && !self.told_unstamped {
            self.told_unstamped = true;
            errln!(
                "note: messages on {} carry no id or timestamp (\"id\" and \"timestamp\" are \
                 null): the topic does not stamp them; set stamp = true on it in the broker's \
                 config to have them",
                message.topic()
            );
        }
        let mut line = to_json_line(message).into_bytes();
        line.push(b'\n');
        super::pubsub::write_bytes(out, &line)
    }
}

/// The JSON text of one message, keys in the documented order (see the module docs).
pub fn to_json_line(message: &Message) -> String {
    let Value::Object(object) = to_json(message) else {
        return String::new();
    };
    let order = [
        "id",
        "topic",
        "offset",
        "timestamp",
        "headers",
        "reply_to",
        "reply",
        "data",
        "data_base64",
    ];
    let fields: Vec<String> = order
        .iter()
        .filter_map(|key| {
            object
                .get(*key)
                .map(|value| format!("{}:{value}", json!(key)))
        })
        .collect();
    format!("{{{}}}", fields.join(","))
}

/// The JSON object of one message (see the module docs).
pub fn to_json(message: &Message) -> Value {
    let stamp = message.stamp();
    let mut object = Map::new();
    object.insert(
        "id".into(),
        stamp.map_or(Value::Null, |s| json!(s.id.to_string())),
    );
    object.insert("topic".into(), json!(message.topic()));
    if let Some(offset) = message.offset() {
        object.insert("offset".into(), json!(offset));
    }
    object.insert(
        "timestamp".into(),
        stamp.map_or(Value::Null, |s| {
            json!(humantime::format_rfc3339_nanos(s.time()).to_string())
        }),
    );
    object.insert("headers".into(), Value::Object(headers(message)));
    if let Some(reply_to) = message.reply_to() {
        object.insert("reply_to".into(), json!(reply_to));
    }
    if let Some(reply) = message.reply() {
        let status = match reply.status {
            ReplyStatus::Ok => "ok",
            ReplyStatus::Error => "error",
            ReplyStatus::NoResponders => "no_responders",
        };
        object.insert(
            "reply".into(),
            json!({ "status": status, "code": reply.code, "correlation": reply.correlation.to_string() }),
        );
    }
    match std::str::from_utf8(message.payload()) {
        Ok(text) => object.insert("data".into(), json!(text)),
        Err(_) => object.insert(
            "data_base64".into(),
            json!(base64::engine::general_purpose::STANDARD.encode(message.payload())),
        ),
    };
    Value::Object(object)
}

/// The headers as an object: one string per key, or an array when a key repeats.
fn headers(message: &Message) -> Map<String, Value> {
    let mut map = Map::new();
    for (key, value) in message.headers() {
        match map.get_mut(key) {
            None => {
                map.insert(key.to_owned(), json!(value));
            }
            Some(Value::Array(values)) => values.push(json!(value)),
            Some(first) => *first = json!([first.take(), value]),
        }
    }
    map
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use mycelium_client::envelope::{Envelope, Headers, Stamper};

    use super::*;

    fn enveloped(envelope: &Envelope<'_>, payload: &[u8]) -> Message {
        let mut bytes = BytesMut::new();
        envelope.encode(&mut bytes);
        bytes.extend_from_slice(payload);
        Message::from_enveloped("orders.eu", bytes.freeze()).expect("a valid envelope")
    }

    #[test]
    fn a_stamped_message_with_headers_has_every_key_in_order() {
        let mut headers = Headers::new();
        headers.insert("a", "1").unwrap();
        headers.insert("b", "2").unwrap();
        headers.insert("a", "3").unwrap();
        let stamp = Stamper::new().stamp_at(1_765_015_200_123_456_789);
        let message = enveloped(
            &Envelope {
                stamp: Some(stamp),
                headers: Some(&headers),
                ..Envelope::default()
            },
            b"hello",
        );
        let text = to_json_line(&message);
        let parsed: Value = serde_json::from_str(&text).expect("valid JSON");
        assert_eq!(parsed, to_json(&message));
        assert_eq!(
            text,
            format!(
                r#"{{"id":"{}","topic":"orders.eu","timestamp":"2025-12-06T10:00:00.123456789Z","headers":{{"a":["1","3"],"b":"2"}},"data":"hello"}}"#,
                stamp.id
            )
        );
    }

    #[test]
    fn a_message_read_from_a_log_has_its_offset_after_the_topic() {
        let mut bytes = BytesMut::new();
        mycelium_transport::envelope::write_with_offset(&[], b"hi", 41, &mut bytes);
        let message = Message::from_enveloped("kept", bytes.freeze()).expect("a valid envelope");
        assert_eq!(
            to_json_line(&message),
            r#"{"id":null,"topic":"kept","offset":41,"timestamp":null,"headers":{},"data":"hi"}"#
        );
        // A message of a plain subscription has no offset key at all.
        assert!(to_json(&Message::new("t", &b"x"[..]))
            .get("offset")
            .is_none());
    }

    #[test]
    fn a_plain_binary_message_has_null_stamps_and_base64_data() {
        let message = Message::new("t", &[0xff, 0x00, 0x80][..]);
        let value = to_json(&message);
        assert_eq!(value["id"], Value::Null);
        assert_eq!(value["timestamp"], Value::Null);
        assert_eq!(value["headers"], json!({}));
        assert_eq!(value["data_base64"], json!("/wCA"));
        assert!(value.get("data").is_none());
    }
}
