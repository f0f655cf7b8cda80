//! Writing frames into a buffer.
//!
//! - [`encode_frame`] checks every string against its length prefix (and topic names against
//!   emptiness) and the whole frame against `u32`, then reserves once and writes; on error `dst`
//!   is untouched. Anything it writes, the decoder accepts.
//! - [`encode_message`] is the hot path for `Publish` and `Deliver`: no checks beyond the `u32`
//!   bound, and no allocation when `dst` has room.
//! - [`encode_enveloped`] is its twin for `PublishEnvelope` and `DeliverEnvelope`: the envelope
//!   is written straight into `dst` after the frame header, with one reserve for the whole frame
//!   and nothing built on the side.

use bytes::{BufMut, BytesMut};

use super::parse::{CONFIG_STATUS_FIXED_LEN, GROUP_ENTRY_FIXED_LEN, STATS_ENTRY_FIXED_LEN};
use crate::envelope::Envelope;
use crate::error::EncodeError;
use crate::frame::{
    kind, ConfigStatus, Frame, LogStats, TopicStats, ACK_PATTERN, ACK_STAMP, MAX_NAME_LEN,
    MAX_RINGS_PER_GRANT, PROTOCOL_VERSION, PUBLISH_DURABLE_ENVELOPE, SUBSCRIBE_NO_ECHO,
};
use crate::limits::{MAX_ACKS_PER_FRAME, MAX_GROUPS_PER_FRAME};

/// Bytes of the frame after the `len` field and before the body: `version` and `kind`.
const VERSION_AND_KIND_LEN: usize = 2;

/// Writes `frame` at the end of `dst`.
///
/// Fails, leaving `dst` as it was, when a string does not fit its length prefix, a topic name is
/// empty, or the frame's `len` would exceed `u32::MAX`. No other limit is applied: a
/// [`FrameCodec`](super::FrameCodec) also checks its `max_frame_len`.
pub fn encode_frame(frame: &Frame, dst: &mut BytesMut) -> Result<(), EncodeError> {
    let len = frame_len(frame)?;
    write_frame(frame, len, dst);
    Ok(())
}

/// The hot path: writes one Publish or Deliver frame (`kind` = [`kind::PUBLISH`] or
/// [`kind::DELIVER`]) without allocating when `dst` has capacity.
///
/// The bytes are exactly those [`encode_frame`] writes for `Frame::Publish` / `Frame::Deliver`.
///
/// # Panics
///
/// If `payload.len() > u32::MAX - 6`, which the caller must rule out (a payload that came out of a
/// decoded frame always fits). A `len` silently truncated to 32 bits would desynchronise the
/// stream for every later frame, so this is checked in release builds too; it costs one compare.
/// Debug builds also assert that `kind` is a message kind.
pub fn encode_message(dst: &mut BytesMut, kind: u8, topic_id: u32, payload: &[u8]) {
    debug_assert!(
        matches!(
            kind,
            kind::PUBLISH | kind::DELIVER | kind::PUBLISH_ENVELOPE | kind::DELIVER_ENVELOPE
        ),
        "encode_message writes only Publish and Deliver frames, not kind 0x{kind:02x}"
    );
    let len = payload
        .len()
        .checked_add(VERSION_AND_KIND_LEN + 4)
        .and_then(|len| u32::try_from(len).ok());
    let Some(len) = len else {
        panic!(
            "a payload of {} bytes does not fit a frame (max u32::MAX - 6)",
            payload.len()
        );
    };
    dst.reserve(4 + VERSION_AND_KIND_LEN + 4 + payload.len());
    dst.put_u32_le(len);
    dst.put_u8(PROTOCOL_VERSION);
    dst.put_u8(kind);
    dst.put_u32_le(topic_id);
    dst.put_slice(payload);
}

/// The hot path for enveloped messages: writes one `PublishEnvelope` or `DeliverEnvelope` frame
/// (`kind` = [`kind::PUBLISH_ENVELOPE`] or [`kind::DELIVER_ENVELOPE`]): header, `topic_id`, the
/// `envelope`'s flags and blocks, then `payload`. One reserve for the whole frame; no allocation
/// when `dst` has capacity.
///
/// The bytes are exactly those [`encode_frame`] writes for `Frame::PublishEnvelope` /
/// `Frame::DeliverEnvelope` whose `message` is the envelope's encoding followed by `payload`.
///
/// Fails, leaving `dst` as it was, when the frame's `len` would exceed `u32::MAX`. Debug builds
/// assert that `kind` is an enveloped message kind.
pub fn encode_enveloped(
    dst: &mut BytesMut,
    kind: u8,
    topic_id: u32,
    envelope: &Envelope<'_>,
    payload: &[u8],
) -> Result<(), EncodeError> {
    debug_assert!(
        matches!(kind, kind::PUBLISH_ENVELOPE | kind::DELIVER_ENVELOPE),
        "encode_enveloped writes only enveloped message frames, not kind 0x{kind:02x}"
    );
    let body = envelope.len().saturating_add(payload.len());
    let len = body.saturating_add(VERSION_AND_KIND_LEN + 4);
    let len = u32::try_from(len).map_err(|_| EncodeError::FrameTooLarge {
        len,
        max: u32::MAX as usize,
    })?;
    dst.reserve(4 + len as usize);
    dst.put_u32_le(len);
    dst.put_u8(PROTOCOL_VERSION);
    dst.put_u8(kind);
    dst.put_u32_le(topic_id);
    // `encode` reserves its own length again: a no-op here, the room is already there.
    envelope.encode(dst);
    dst.put_slice(payload);
    Ok(())
}

/// The `len` field `frame` needs, after checking every string against its length prefix and the
/// total against `u32`.
pub(crate) fn frame_len(frame: &Frame) -> Result<u32, EncodeError> {
    // Saturating sums: a saturated length fails the u32 check below, which is the right answer.
    let body = match frame {
        Frame::Hello { name, .. } | Frame::ShmHello { name, .. } => 16 + 1 + name8("name", name)?,
        Frame::ShmAttach { topic, .. } => 4 + 1 + 1 + 1 + topic_len(topic)?,
        Frame::ShmGrant { rings, .. } => {
            if rings.len() > MAX_RINGS_PER_GRANT {
                return Err(EncodeError::TooManyRings {
                    count: rings.len(),
                    max: MAX_RINGS_PER_GRANT,
                });
            }
            4 + 4 + 4 + 1 + 1 + 4 + 1 + 8 * rings.len() + 1 + 2 + 4
        }
        Frame::ShmRingAdded { .. } => 4 + 4 + 4,
        Frame::ShmTopicRingAdded { topic, .. } => 4 + 4 + 4 + 4 + 1 + topic_len(topic)?,
        Frame::ShmSegment { .. } => 4 + 4 + 8 + 4 + 4,
        Frame::ShmSegmentAdded { .. } => 4 + 4 + 8 + 4 + 1,
        Frame::ShmRingRemoved { .. } | Frame::ShmDetach { .. } => 4 + 4,
        Frame::Welcome { server, .. } => 16 + 8 + 4 + 4 + 1 + name8("server", server)?,
        Frame::Subscribe { topic, .. } => 4 + 4 + 1 + 1 + topic_len(topic)?,
        Frame::SubscribeDurable { group, topic, .. } => {
            let group = match group {
                // An empty name on the wire means "no group": refuse it rather than change
                // what the caller asked for.
                Some(group) if group.is_empty() => {
                    return Err(EncodeError::EmptyName { field: "group" })
                }
                Some(group) => name8("group", group)?,
                None => 0,
            };
            4 + 4 + 1 + 1 + 8 + 1 + group + 1 + topic_len(topic)?
        }
        Frame::AckMessages { offsets, .. } => {
            if offsets.is_empty() || offsets.len() > MAX_ACKS_PER_FRAME {
                return Err(EncodeError::BadCount {
                    field: "offsets",
                    count: offsets.len(),
                    min: 1,
                    max: MAX_ACKS_PER_FRAME,
                });
            }
            4 + 2 + 8 * offsets.len()
        }
        Frame::Nack { .. } => 4 + 8 + 1 + 4,
        Frame::PublishDurable { message, .. } => message.len().saturating_add(4 + 4 + 1),
        Frame::Published { .. } => 4 + 8,
        Frame::GroupsRequest { topic, .. } => 4 + 1 + topic_len(topic)?,
        Frame::Groups { groups, .. } => {
            if groups.len() > MAX_GROUPS_PER_FRAME {
                return Err(EncodeError::BadCount {
                    field: "groups",
                    count: groups.len(),
                    min: 0,
                    max: MAX_GROUPS_PER_FRAME,
                });
            }
            let mut body: usize = 4 + 2;
            for group in groups {
                if group.name.is_empty() {
                    return Err(EncodeError::EmptyName { field: "group" });
                }
                body = body.saturating_add(GROUP_ENTRY_FIXED_LEN + name8("group", &group.name)?);
            }
            body
        }
        Frame::Unsubscribe { .. } => 4 + 4,
        Frame::Advertise { topic, .. } => 4 + 1 + topic_len(topic)?,
        Frame::TopicAck { .. } => 4 + 4 + 1 + 4 + 4 + 1 + 2 + 4,
        Frame::Ack { .. } => 4,
        Frame::Publish { payload, .. } | Frame::Deliver { payload, .. } => {
            payload.len().saturating_add(4)
        }
        Frame::PublishEnvelope { message, .. } | Frame::DeliverEnvelope { message, .. } => {
            message.len().saturating_add(4)
        }
        Frame::Credit { .. } => 4 + 4,
        Frame::Lagged { .. } => 4 + 8,
        Frame::Ping { .. } | Frame::Pong { .. } => 8,
        Frame::Error { message, .. } | Frame::ShmDetached { message, .. } => {
            let len = text16("message", message)?;
            if matches!(frame, Frame::ShmDetached { .. }) {
                4 + 2 + 2 + len
            } else {
                4 + 2 + 1 + 4 + 2 + len + 4
            }
        }
        Frame::StatsRequest { .. } | Frame::ReloadRequest { .. } => 4,
        Frame::Stats { topics, config, .. } => {
            let mut body: usize = 4 + 4 + 8 + 4 + config_status_len(config)?;
            for topic in topics {
                body = body.saturating_add(STATS_ENTRY_FIXED_LEN + topic_len(&topic.name)?);
            }
            body
        }
        Frame::ReloadResult { status, .. } => 4 + 1 + config_status_len(status)?,
    };
    let len = body.saturating_add(VERSION_AND_KIND_LEN);
    u32::try_from(len).map_err(|_| EncodeError::FrameTooLarge {
        len,
        max: u32::MAX as usize,
    })
}

/// Writes `frame`, whose `len` field [`frame_len`] has computed (and so checked every length the
/// narrowing casts below rely on).
pub(crate) fn write_frame(frame: &Frame, len: u32, dst: &mut BytesMut) {
    let start = dst.len();
    dst.reserve((len as usize).saturating_add(4));
    dst.put_u32_le(len);
    dst.put_u8(PROTOCOL_VERSION);
    dst.put_u8(frame.kind());
    match frame {
        Frame::Hello { client_id, name } | Frame::ShmHello { client_id, name } => {
            dst.put_slice(client_id.as_bytes());
            put_str8(dst, name);
        }
        Frame::ShmAttach {
            request_id,
            role,
            no_echo,
            topic,
        } => {
            dst.put_u32_le(*request_id);
            dst.put_u8(role.to_u8());
            dst.put_u8(if *no_echo { SUBSCRIBE_NO_ECHO } else { 0 });
            put_str8(dst, topic);
        }
        Frame::ShmGrant {
            request_id,
            attachment,
            topic_id,
            role,
            routing,
            max_message_size,
            rings,
            rules,
            pattern,
        } => {
            dst.put_u32_le(*request_id);
            dst.put_u32_le(*attachment);
            dst.put_u32_le(*topic_id);
            dst.put_u8(role.to_u8());
            dst.put_u8(routing.to_u8());
            dst.put_u32_le(*max_message_size);
            // `frame_len` checked the count against MAX_RINGS_PER_GRANT (64).
            dst.put_u8(rings.len() as u8);
            for ring in rings {
                dst.put_u32_le(ring.ring_id);
                dst.put_u32_le(ring.slot);
            }
            let stamp = if rules.stamp { ACK_STAMP } else { 0 };
            dst.put_u8(stamp | if *pattern { ACK_PATTERN } else { 0 });
            dst.put_u16_le(rules.max_headers);
            dst.put_u32_le(rules.max_header_bytes);
        }
        Frame::ShmRingAdded { attachment, ring } => {
            dst.put_u32_le(*attachment);
            dst.put_u32_le(ring.ring_id);
            dst.put_u32_le(ring.slot);
        }
        Frame::ShmTopicRingAdded {
            attachment,
            ring,
            topic_id,
            topic,
        } => {
            dst.put_u32_le(*attachment);
            dst.put_u32_le(ring.ring_id);
            dst.put_u32_le(ring.slot);
            dst.put_u32_le(*topic_id);
            put_str8(dst, topic);
        }
        Frame::ShmRingRemoved {
            attachment,
            ring_id,
        } => {
            dst.put_u32_le(*attachment);
            dst.put_u32_le(*ring_id);
        }
        Frame::ShmSegment {
            request_id,
            attachment,
            segment,
            len,
            recipient,
        } => {
            dst.put_u32_le(*request_id);
            dst.put_u32_le(*attachment);
            dst.put_u64_le(*segment);
            dst.put_u32_le(*len);
            dst.put_u32_le(*recipient);
        }
        Frame::ShmSegmentAdded {
            attachment,
            ring_id,
            segment,
            len,
            dropped,
        } => {
            dst.put_u32_le(*attachment);
            dst.put_u32_le(*ring_id);
            dst.put_u64_le(*segment);
            dst.put_u32_le(*len);
            dst.put_u8(u8::from(*dropped));
        }
        Frame::ShmDetach {
            request_id,
            attachment,
        } => {
            dst.put_u32_le(*request_id);
            dst.put_u32_le(*attachment);
        }
        Frame::ShmDetached {
            attachment,
            code,
            message,
        } => {
            dst.put_u32_le(*attachment);
            dst.put_u16_le(code.to_u16());
            put_str16(dst, message);
        }
        Frame::Welcome {
            broker_id,
            connection_id,
            max_message_size,
            max_frame_len,
            server,
        } => {
            dst.put_slice(broker_id.as_bytes());
            dst.put_u64_le(*connection_id);
            dst.put_u32_le(*max_message_size);
            dst.put_u32_le(*max_frame_len);
            put_str8(dst, server);
        }
        Frame::Subscribe {
            request_id,
            prefetch,
            no_echo,
            topic,
        } => {
            dst.put_u32_le(*request_id);
            dst.put_u32_le(*prefetch);
            dst.put_u8(if *no_echo { SUBSCRIBE_NO_ECHO } else { 0 });
            put_str8(dst, topic);
        }
        Frame::SubscribeDurable {
            request_id,
            prefetch,
            start,
            group,
            topic,
        } => {
            dst.put_u32_le(*request_id);
            dst.put_u32_le(*prefetch);
            dst.put_u8(0);
            let (start, start_value) = start.to_wire();
            dst.put_u8(start);
            dst.put_u64_le(start_value);
            put_str8(dst, group.as_deref().unwrap_or(""));
            put_str8(dst, topic);
        }
        Frame::AckMessages {
            subscription_id,
            offsets,
        } => {
            dst.put_u32_le(*subscription_id);
            // `frame_len` checked the count against MAX_ACKS_PER_FRAME (u16::MAX).
            dst.put_u16_le(offsets.len() as u16);
            for offset in offsets {
                dst.put_u64_le(*offset);
            }
        }
        Frame::Nack {
            subscription_id,
            offset,
            action,
        } => {
            dst.put_u32_le(*subscription_id);
            dst.put_u64_le(*offset);
            let (action, delay_ms) = action.to_wire();
            dst.put_u8(action);
            dst.put_u32_le(delay_ms);
        }
        Frame::PublishDurable {
            request_id,
            topic_id,
            enveloped,
            message,
        } => {
            dst.put_u32_le(*request_id);
            dst.put_u32_le(*topic_id);
            dst.put_u8(if *enveloped {
                PUBLISH_DURABLE_ENVELOPE
            } else {
                0
            });
            dst.put_slice(message);
        }
        Frame::Published { request_id, offset } => {
            dst.put_u32_le(*request_id);
            dst.put_u64_le(*offset);
        }
        Frame::GroupsRequest { request_id, topic } => {
            dst.put_u32_le(*request_id);
            put_str8(dst, topic);
        }
        Frame::Groups { request_id, groups } => {
            dst.put_u32_le(*request_id);
            // `frame_len` checked the count against MAX_GROUPS_PER_FRAME (u16::MAX).
            dst.put_u16_le(groups.len() as u16);
            for group in groups {
                put_str8(dst, &group.name);
                dst.put_u64_le(group.committed);
                dst.put_u64_le(group.next_offset);
                dst.put_u32_le(group.pending);
                dst.put_u32_le(group.members);
                dst.put_u64_le(group.redelivered);
                dst.put_u64_le(group.dead_lettered);
            }
        }
        Frame::Unsubscribe {
            request_id,
            topic_id,
        } => {
            dst.put_u32_le(*request_id);
            dst.put_u32_le(*topic_id);
        }
        Frame::Advertise { request_id, topic } => {
            dst.put_u32_le(*request_id);
            put_str8(dst, topic);
        }
        Frame::TopicAck {
            request_id,
            topic_id,
            routing,
            max_message_size,
            prefetch,
            pattern,
            rules,
        } => {
            dst.put_u32_le(*request_id);
            dst.put_u32_le(*topic_id);
            dst.put_u8(routing.to_u8());
            dst.put_u32_le(*max_message_size);
            dst.put_u32_le(*prefetch);
            let mut flags = 0;
            if rules.stamp {
                flags |= ACK_STAMP;
            }
            if *pattern {
                flags |= ACK_PATTERN;
            }
            dst.put_u8(flags);
            dst.put_u16_le(rules.max_headers);
            dst.put_u32_le(rules.max_header_bytes);
        }
        Frame::Ack { request_id }
        | Frame::StatsRequest { request_id }
        | Frame::ReloadRequest { request_id } => {
            dst.put_u32_le(*request_id);
        }
        Frame::Publish { topic_id, payload } | Frame::Deliver { topic_id, payload } => {
            dst.put_u32_le(*topic_id);
            dst.put_slice(payload);
        }
        Frame::PublishEnvelope { topic_id, message }
        | Frame::DeliverEnvelope { topic_id, message } => {
            dst.put_u32_le(*topic_id);
            dst.put_slice(message);
        }
        Frame::Credit { topic_id, credit } => {
            dst.put_u32_le(*topic_id);
            dst.put_u32_le(*credit);
        }
        Frame::Lagged { topic_id, skipped } => {
            dst.put_u32_le(*topic_id);
            dst.put_u64_le(*skipped);
        }
        Frame::Ping { token } | Frame::Pong { token } => dst.put_u64_le(*token),
        Frame::Error {
            request_id,
            code,
            fatal,
            topic_id,
            message,
            refused,
        } => {
            dst.put_u32_le(*request_id);
            dst.put_u16_le(code.to_u16());
            dst.put_u8(u8::from(*fatal));
            dst.put_u32_le(*topic_id);
            put_str16(dst, message);
            dst.put_u32_le(*refused);
        }
        Frame::Stats {
            request_id,
            connections,
            uptime_ms,
            topics,
            config,
        } => {
            dst.put_u32_le(*request_id);
            dst.put_u32_le(*connections);
            dst.put_u64_le(*uptime_ms);
            // Each entry takes at least 76 bytes and `len` fits a u32, so the count does too.
            dst.put_u32_le(topics.len() as u32);
            for t in topics {
                put_str8(dst, &t.name);
                dst.put_u8(t.routing.to_u8());
                dst.put_u32_le(t.subscribers);
                dst.put_u64_le(t.published);
                dst.put_u64_le(t.delivered);
                dst.put_u64_le(t.dropped);
                dst.put_u64_le(t.queued);
                dst.put_u32_le(t.shm_subscribers);
                // The DURABLE bit says whether the log counters mean anything: `log` decides it.
                let durable = if t.log.is_some() {
                    TopicStats::DURABLE
                } else {
                    0
                };
                dst.put_u8((t.flags & !TopicStats::DURABLE) | durable);
                let log = t.log.unwrap_or(LogStats::default());
                dst.put_u64_le(log.first_offset);
                dst.put_u64_le(log.next_offset);
                dst.put_u64_le(log.retained_messages);
                dst.put_u64_le(log.retained_bytes);
            }
            put_config_status(dst, config);
        }
        Frame::ReloadResult {
            request_id,
            outcome,
            status,
        } => {
            dst.put_u32_le(*request_id);
            dst.put_u8(outcome.to_u8());
            put_config_status(dst, status);
        }
    }
    debug_assert_eq!(
        dst.len() - start,
        (len as usize).saturating_add(4),
        "frame_len and write_frame disagree on the layout of {frame:?}"
    );
}

/// Length of a `str8` string that may be empty.
fn name8(field: &'static str, s: &str) -> Result<usize, EncodeError> {
    let len = s.len();
    if len > MAX_NAME_LEN {
        return Err(EncodeError::NameTooLong {
            field,
            len,
            max: MAX_NAME_LEN,
        });
    }
    Ok(len)
}

/// Length of a topic name: a `str8` that must not be empty.
fn topic_len(topic: &str) -> Result<usize, EncodeError> {
    if topic.is_empty() {
        return Err(EncodeError::EmptyName { field: "topic" });
    }
    name8("topic", topic)
}

/// Length of a `str16` string (may be empty), checked against its `u16` prefix.
fn text16(field: &'static str, s: &str) -> Result<usize, EncodeError> {
    let len = s.len();
    let max = usize::from(u16::MAX);
    if len > max {
        return Err(EncodeError::NameTooLong { field, len, max });
    }
    Ok(len)
}

/// Length of a config status block, after checking its three texts against their `u16`
/// prefixes (no truncation here: [`ConfigStatus::truncated`] is the caller's to apply).
fn config_status_len(status: &ConfigStatus) -> Result<usize, EncodeError> {
    Ok(CONFIG_STATUS_FIXED_LEN
        + text16("last_error", &status.last_error)?
        + text16("last_change", &status.last_change)?
        + text16("pending", &status.pending)?)
}

/// Writes a string whose length [`name8`] has checked.
fn put_str8(dst: &mut BytesMut, s: &str) {
    dst.put_u8(s.len() as u8);
    dst.put_slice(s.as_bytes());
}

/// Writes a string whose length [`text16`] has checked.
fn put_str16(dst: &mut BytesMut, s: &str) {
    dst.put_u16_le(s.len() as u16);
    dst.put_slice(s.as_bytes());
}

/// Writes a config status block whose texts [`config_status_len`] has checked.
fn put_config_status(dst: &mut BytesMut, status: &ConfigStatus) {
    dst.put_u64_le(status.generation);
    dst.put_u64_le(status.reloads);
    put_str16(dst, &status.last_error);
    put_str16(dst, &status.last_change);
    put_str16(dst, &status.pending);
}

#[cfg(test)]
mod enveloped_tests {
    use bytes::{Bytes, BytesMut};
    use uuid::Uuid;

    use super::*;
    use crate::codec::peek_frame;
    use crate::envelope::{EnvelopeView, Headers, Reply, ReplyStatus, Stamp};

    fn headers() -> Headers {
        let mut headers = Headers::new();
        headers
            .insert("trace-id", "4bf92f35")
            .expect("valid header");
        headers
            .insert("content-type", "application/json")
            .expect("valid header");
        headers
            .insert("trace-id", "repeated, and é")
            .expect("valid header");
        headers
    }

    /// Every combination of blocks, with an empty and a non-empty payload.
    fn envelopes(headers: &Headers) -> Vec<Envelope<'_>> {
        let stamp = Stamp {
            id: Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_0001),
            timestamp_ns: 1_765_000_000_123_456_789,
        };
        let reply = Reply {
            status: ReplyStatus::Error,
            code: 503,
            correlation: Uuid::from_u128(42),
        };
        let mut out = Vec::new();
        for mask in 0u8..64 {
            out.push(Envelope {
                stamp: (mask & 1 != 0).then_some(stamp),
                topic: (mask & 2 != 0).then_some("orders.eu"),
                reply_to: (mask & 4 != 0).then_some("_INBOX.0123456789abcdef0123456789abcdef"),
                reply: (mask & 8 != 0).then_some(reply),
                headers: (mask & 16 != 0).then_some(headers),
                offset: (mask & 32 != 0).then_some(u64::MAX - 1),
            });
        }
        out
    }

    #[test]
    fn enveloped_frames_read_back_through_the_decoder_with_every_block() {
        let headers = headers();
        for envelope in envelopes(&headers) {
            for payload in [&b""[..], b"payload bytes"] {
                for kind in [kind::PUBLISH_ENVELOPE, kind::DELIVER_ENVELOPE] {
                    let mut buf = BytesMut::new();
                    encode_enveloped(&mut buf, kind, 7, &envelope, payload).expect("fits");
                    let (view, used) = peek_frame(&buf, 1 << 20)
                        .expect("decodes")
                        .expect("a whole frame");
                    assert_eq!(used, buf.len());
                    assert_eq!(view.kind, kind);
                    let (topic_id, message) = view.message().expect("a message frame");
                    assert_eq!(topic_id, 7);
                    let read = EnvelopeView::parse(message).expect("a valid envelope");
                    assert_eq!(read.flags, envelope.flags());
                    assert_eq!(read.stamp, envelope.stamp);
                    assert_eq!(read.topic, envelope.topic);
                    assert_eq!(read.reply_to, envelope.reply_to);
                    assert_eq!(read.reply, envelope.reply);
                    assert_eq!(read.offset, envelope.offset);
                    assert_eq!(read.len, envelope.len());
                    let expected: Vec<(&str, &str)> = envelope
                        .headers
                        .map(|h| h.iter().collect())
                        .unwrap_or_default();
                    assert_eq!(read.headers().collect::<Vec<_>>(), expected);
                    assert_eq!(read.payload, payload);
                }
            }
        }
    }

    #[test]
    fn enveloped_frames_are_the_bytes_encode_frame_writes() {
        let headers = headers();
        for envelope in envelopes(&headers) {
            let mut message = BytesMut::new();
            envelope.encode(&mut message);
            message.extend_from_slice(b"xyz");
            let message = Bytes::from(message);
            let mut fast = BytesMut::new();
            encode_enveloped(&mut fast, kind::PUBLISH_ENVELOPE, 3, &envelope, b"xyz")
                .expect("fits");
            let mut slow = BytesMut::new();
            encode_frame(
                &Frame::PublishEnvelope {
                    topic_id: 3,
                    message: message.clone(),
                },
                &mut slow,
            )
            .expect("fits");
            assert_eq!(fast, slow);
            let mut fast = BytesMut::new();
            encode_enveloped(&mut fast, kind::DELIVER_ENVELOPE, 3, &envelope, b"xyz")
                .expect("fits");
            let mut slow = BytesMut::new();
            encode_frame(
                &Frame::DeliverEnvelope {
                    topic_id: 3,
                    message,
                },
                &mut slow,
            )
            .expect("fits");
            assert_eq!(fast, slow);
        }
    }

    #[test]
    fn an_enveloped_frame_after_others_leaves_them_as_they_were_and_reserves_once() {
        let headers = headers();
        let envelope = Envelope {
            headers: Some(&headers),
            ..Envelope::default()
        };
        let mut buf = BytesMut::new();
        encode_message(&mut buf, kind::PUBLISH, 1, b"first");
        let before = buf.clone();
        buf.reserve(4096);
        let capacity = buf.capacity();
        encode_enveloped(&mut buf, kind::PUBLISH_ENVELOPE, 2, &envelope, b"second").expect("fits");
        assert_eq!(
            buf.capacity(),
            capacity,
            "no reallocation when there is room"
        );
        assert_eq!(&buf[..before.len()], &before[..]);
        let (_, used) = peek_frame(&buf, 1 << 20).expect("decodes").expect("whole");
        let (view, rest) = peek_frame(&buf[used..], 1 << 20)
            .expect("decodes")
            .expect("whole");
        assert_eq!(used + rest, buf.len());
        let (topic_id, message) = view.message().expect("message");
        assert_eq!(topic_id, 2);
        let read = EnvelopeView::parse(message).expect("valid");
        assert_eq!(read.payload, b"second");
        assert_eq!(read.header_count(), 3);
    }
}
