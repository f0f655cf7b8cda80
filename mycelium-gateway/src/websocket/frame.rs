//! The WebSocket protocol of `/ws`, frame by frame: what a client may send (a request in a
//! text frame, or a publish with a binary payload in a binary frame) and what the gateway
//! sends back (acks, errors, messages, lag and end notices). `docs/http.md` shows each frame.
//!
//! - A text frame is one JSON object with a `type`: `subscribe`, `unsubscribe`, `publish`.
//!   An optional `id` (any JSON value) is echoed in the ack or error that answers it.
//! - A binary frame is `[4 bytes: N, big-endian][N bytes: a JSON object][payload]`: from a
//!   client, the object is a `publish` request without `data`; from the gateway, a message
//!   whose payload is not UTF-8 (on a subscription that asked for binary frames), the object
//!   being the message's JSON without `data`.
//! - A frame that cannot be read is answered with an `error` frame and the connection goes
//!   on; only a frame past the size limit closes it (close code 1009).

use std::collections::BTreeMap;

use axum::extract::ws::Message as WsMessage;
use axum::http::StatusCode;
use base64::Engine;
use bytes::{BufMut, Bytes, BytesMut};
use mycelium_transport::{Message, SubscriptionEnd};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::error::ApiError;
use crate::message::to_json;

/// How a subscription receives a payload that is not UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum BinaryMode {
    /// A binary frame: the message's JSON header, then the payload as is.
    #[default]
    Frame,
    /// A text frame with `data_base64`, as the HTTP consume endpoints answer.
    Base64,
}

/// A client's request, read from one frame.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Request {
    Subscribe {
        topic: String,
        binary: BinaryMode,
    },
    Unsubscribe {
        topic: String,
    },
    Publish {
        topic: String,
        headers: BTreeMap<String, String>,
        payload: Bytes,
    },
}

impl Request {
    /// The word acks and errors name the request by.
    pub(crate) fn op(&self) -> &'static str {
        match self {
            Request::Subscribe { .. } => "subscribe",
            Request::Unsubscribe { .. } => "unsubscribe",
            Request::Publish { .. } => "publish",
        }
    }
}

/// A frame read: the client's `id` (when it gave one, even in a frame otherwise bad) and
/// the request, or why the frame is refused.
#[derive(Debug)]
pub(crate) struct Parsed {
    pub(crate) id: Option<Value>,
    pub(crate) request: Result<Request, ApiError>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SubscribeFields {
    topic: String,
    #[serde(default)]
    binary: BinaryMode,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UnsubscribeFields {
    topic: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishFields {
    topic: String,
    data: Option<String>,
    data_base64: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

fn bad_frame(message: impl Into<String>) -> ApiError {
    ApiError::bad_request("bad_frame", message)
}

/// Splits a JSON object into its `id`, its `type` and the other fields.
fn object(value: Value) -> (Option<Value>, Result<(String, Value), ApiError>) {
    let Value::Object(mut fields) = value else {
        return (None, Err(bad_frame("a frame must be a JSON object")));
    };
    let id = fields.remove("id");
    let kind = match fields.remove("type") {
        Some(Value::String(kind)) => kind,
        Some(_) => return (id, Err(bad_frame("\"type\" must be a string"))),
        None => {
            return (
                id,
                Err(bad_frame(
                    "a frame needs a \"type\": subscribe, unsubscribe or publish",
                )),
            )
        }
    };
    (id, Ok((kind, Value::Object(fields))))
}

fn fields<T: for<'de> Deserialize<'de>>(kind: &str, rest: Value) -> Result<T, ApiError> {
    serde_json::from_value(rest).map_err(|error| bad_frame(format!("bad {kind} frame: {error}")))
}

/// A text frame.
pub(crate) fn parse_text(text: &str) -> Parsed {
    let value: Value = match serde_json::from_str(text) {
        Ok(value) => value,
        Err(error) => {
            return Parsed {
                id: None,
                request: Err(ApiError::bad_request(
                    "bad_json",
                    format!("a text frame must be one JSON object: {error}"),
                )),
            }
        }
    };
    let (id, split) = object(value);
    let request = split.and_then(|(kind, rest)| match kind.as_str() {
        "subscribe" => fields::<SubscribeFields>(&kind, rest).map(|f| Request::Subscribe {
            topic: f.topic,
            binary: f.binary,
        }),
        "unsubscribe" => fields::<UnsubscribeFields>(&kind, rest)
            .map(|f| Request::Unsubscribe { topic: f.topic }),
        "publish" => fields::<PublishFields>(&kind, rest).and_then(|f| {
            let payload = match (f.data, f.data_base64) {
                (Some(text), None) => Bytes::from(text),
                (None, Some(encoded)) => base64::engine::general_purpose::STANDARD
                    .decode(encoded.as_bytes())
                    .map(Bytes::from)
                    .map_err(|error| bad_frame(format!("data_base64 is not base64: {error}")))?,
                _ => {
                    return Err(bad_frame(
                        "a publish frame needs exactly one of data and data_base64",
                    ))
                }
            };
            Ok(Request::Publish {
                topic: f.topic,
                headers: f.headers,
                payload,
            })
        }),
        other => Err(ApiError::bad_request(
            "unknown_type",
            format!("unknown frame type '{other}' (subscribe, unsubscribe or publish)"),
        )),
    });
    Parsed { id, request }
}

/// The fields of a binary publish's JSON header.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BinaryPublishFields {
    topic: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

/// A binary frame: a publish whose payload is the frame's tail.
pub(crate) fn parse_binary(frame: Bytes) -> Parsed {
    let refuse = |message: String| Parsed {
        id: None,
        request: Err(bad_frame(message)),
    };
    let Some(length) = frame.get(..4) else {
        return refuse(format!(
            "a binary frame starts with a 4-byte big-endian length; this one has {} bytes",
            frame.len()
        ));
    };
    let length = u32::from_be_bytes([length[0], length[1], length[2], length[3]]) as usize;
    let Some(header) = frame.get(4..4usize.saturating_add(length)) else {
        return refuse(format!(
            "a binary frame's header length is {length} bytes but only {} follow it",
            frame.len() - 4
        ));
    };
    let value: Value = match serde_json::from_slice(header) {
        Ok(value) => value,
        Err(error) => {
            return Parsed {
                id: None,
                request: Err(ApiError::bad_request(
                    "bad_json",
                    format!("a binary frame's header must be one JSON object: {error}"),
                )),
            }
        }
    };
    let (id, split) = object(value);
    let request = split.and_then(|(kind, rest)| {
        if kind != "publish" {
            return Err(ApiError::bad_request(
                "unknown_type",
                format!("a binary frame carries a publish, not '{kind}'"),
            ));
        }
        let f: BinaryPublishFields = fields("binary publish", rest)?;
        Ok(Request::Publish {
            topic: f.topic,
            headers: f.headers,
            payload: frame.slice(4 + length..),
        })
    });
    Parsed { id, request }
}

/// `value` as a text frame.
fn text(value: &Value) -> WsMessage {
    WsMessage::text(value.to_string())
}

/// `{"type":"ack","op":...,"topic":...,"id":...}`, with `extra` fields.
pub(crate) fn ack(
    op: &str,
    topic: &str,
    id: Option<&Value>,
    extra: Map<String, Value>,
) -> WsMessage {
    let mut fields = Map::new();
    fields.insert("type".to_owned(), Value::from("ack"));
    fields.insert("op".to_owned(), Value::from(op));
    fields.insert("topic".to_owned(), Value::from(topic));
    if let Some(id) = id {
        fields.insert("id".to_owned(), id.clone());
    }
    fields.extend(extra);
    text(&Value::Object(fields))
}

/// `{"type":"error","code":...,"message":...}`, naming the request and its `id` when known.
pub(crate) fn error(error: &ApiError, op: Option<&str>, id: Option<&Value>) -> WsMessage {
    let mut fields = Map::new();
    fields.insert("type".to_owned(), Value::from("error"));
    fields.insert("code".to_owned(), Value::from(error.code));
    fields.insert("message".to_owned(), Value::from(error.message.as_str()));
    if let Some(op) = op {
        fields.insert("op".to_owned(), Value::from(op));
    }
    if let Some(id) = id {
        fields.insert("id".to_owned(), id.clone());
    }
    text(&Value::Object(fields))
}

/// A delivery on the subscription named `subscription`: a text frame, or a binary one for
/// a payload that is not UTF-8 when `binary` says so.
pub(crate) fn message(subscription: &str, message: &Message, binary: BinaryMode) -> WsMessage {
    let mut value = to_json(message, 0);
    if let Value::Object(fields) = &mut value {
        fields.insert("type".to_owned(), Value::from("message"));
        fields.insert("subscription".to_owned(), Value::from(subscription));
        if binary == BinaryMode::Frame && fields.remove("data_base64").is_some() {
            let header = value.to_string();
            let payload = message.payload();
            let mut frame = BytesMut::with_capacity(4 + header.len() + payload.len());
            // The header is a JSON object of bounded fields: far below 4 GiB.
            frame.put_u32(u32::try_from(header.len()).unwrap_or(u32::MAX));
            frame.put_slice(header.as_bytes());
            frame.put_slice(payload);
            return WsMessage::Binary(frame.freeze());
        }
    }
    text(&value)
}

/// `{"type":"lagged","topic":...,"count":n}`: `n` messages lost for the subscription
/// named `topic` (as the client subscribed it).
pub(crate) fn lagged(topic: &str, count: u64) -> WsMessage {
    text(&json!({ "type": "lagged", "topic": topic, "count": count }))
}

/// `{"type":"ended","topic":...,"reason":...}`: the subscription is over (its topic was
/// removed); the client may subscribe again.
pub(crate) fn ended(topic: &str, end: &SubscriptionEnd) -> WsMessage {
    text(&json!({ "type": "ended", "topic": topic, "reason": end.to_string() }))
}

/// A frame's size limit, from `[http] max_body_bytes`: room for a payload of that size in
/// base64 inside a JSON publish, with its headers.
pub(crate) fn size_limit(max_body_bytes: usize) -> usize {
    max_body_bytes
        .saturating_mul(4)
        .div_ceil(3)
        .saturating_add(64 << 10)
}

/// The error for a payload over `[http] max_body_bytes`.
pub(crate) fn payload_too_large(len: usize, max: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        format!("a payload of {len} bytes exceeds [http] max_body_bytes = {max}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_frames_parse_or_say_why_not() {
        let parsed = parse_text(r#"{"type":"subscribe","topic":"orders.*","id":7}"#);
        assert_eq!(parsed.id, Some(json!(7)));
        assert_eq!(
            parsed.request.expect("ok"),
            Request::Subscribe {
                topic: "orders.*".to_owned(),
                binary: BinaryMode::Frame
            }
        );
        let parsed = parse_text(
            r#"{"type":"publish","topic":"t","data_base64":"AAEC","headers":{"k":"v"}}"#,
        );
        assert_eq!(
            parsed.request.expect("ok"),
            Request::Publish {
                topic: "t".to_owned(),
                headers: BTreeMap::from([("k".to_owned(), "v".to_owned())]),
                payload: Bytes::from_static(&[0, 1, 2]),
            }
        );
        for (frame, code) in [
            ("not json", "bad_json"),
            ("[1]", "bad_frame"),
            (r#"{"topic":"t"}"#, "bad_frame"),
            (r#"{"type":"dance","id":"x"}"#, "unknown_type"),
            (r#"{"type":"subscribe"}"#, "bad_frame"),
            (r#"{"type":"subscribe","topic":"t","extra":1}"#, "bad_frame"),
            (r#"{"type":"publish","topic":"t"}"#, "bad_frame"),
            (
                r#"{"type":"publish","topic":"t","data":"a","data_base64":"YQ=="}"#,
                "bad_frame",
            ),
            (
                r#"{"type":"publish","topic":"t","data_base64":"%%"}"#,
                "bad_frame",
            ),
        ] {
            let error = parse_text(frame).request.expect_err(frame);
            assert_eq!(error.code, code, "{frame}: {}", error.message);
        }
        assert_eq!(
            parse_text(r#"{"type":"dance","id":"x"}"#).id,
            Some(json!("x"))
        );
    }

    #[test]
    fn binary_frames_carry_a_header_and_the_payload() {
        let header = br#"{"type":"publish","topic":"bin","id":1}"#;
        let mut frame = (header.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(header);
        frame.extend_from_slice(&[0xff, 0x00]);
        let parsed = parse_binary(Bytes::from(frame));
        assert_eq!(parsed.id, Some(json!(1)));
        assert_eq!(
            parsed.request.expect("ok"),
            Request::Publish {
                topic: "bin".to_owned(),
                headers: BTreeMap::new(),
                payload: Bytes::from_static(&[0xff, 0x00]),
            }
        );
        for frame in [
            &b"\x00\x00"[..],
            b"\x00\x00\x00\x09{}",
            b"\x00\x00\x00\x02{}",
        ] {
            assert!(parse_binary(Bytes::copy_from_slice(frame)).request.is_err());
        }
        let header = br#"{"type":"subscribe","topic":"bin"}"#;
        let mut frame = (header.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(header);
        let error = parse_binary(Bytes::from(frame))
            .request
            .expect_err("not publish");
        assert_eq!(error.code, "unknown_type");
    }
}
