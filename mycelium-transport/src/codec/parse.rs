//! The one body parser: a complete frame's kind and body bytes to a [`Frame`].
//!
//! - Used by both the [`Decoder`](tokio_util::codec::Decoder) and
//!   [`FrameView::to_frame`](super::FrameView::to_frame); they differ only in how a message payload
//!   becomes [`Bytes`] (a zero-copy slice of the read buffer, or a copy).
//! - Fixed layouts must be read exactly: bytes left over are `Malformed("trailing bytes")`. Only
//!   the message frames (`Publish`, `Deliver`, their enveloped twins and `PublishDurable`) end
//!   in a payload that takes "the rest".
//! - Counts from the wire are bounded by the bytes present before anything is reserved for them.

use bytes::Bytes;

use super::reader::{Reader, Reason};
use crate::envelope::EnvelopeView;
use crate::error::DecodeError;
use crate::frame::{
    kind, ConfigStatus, ErrorCode, Frame, GroupStats, LogStats, MessageRules, NackAction, ShmRing,
    StartPosition, TopicStats, ACK_PATTERN, ACK_STAMP, MAX_RINGS_PER_GRANT,
    PUBLISH_DURABLE_ENVELOPE, SUBSCRIBE_NO_ECHO,
};

/// Bytes of one `Stats` topic entry besides the name itself: `name_len` (1), `routing` (1),
/// `subscribers` (4), four `u64` counters, `shm_subscribers` (4), `flags` (1) and the four
/// `u64` counters of the log.
pub(crate) const STATS_ENTRY_FIXED_LEN: usize = 1 + 1 + 4 + 4 * 8 + 4 + 1 + 4 * 8;

/// Bytes of one `Groups` entry besides the name itself: `name_len` (1), `committed` and
/// `next_offset` (8 each), `pending` and `members` (4 each), `redelivered` and
/// `dead_lettered` (8 each).
pub(crate) const GROUP_ENTRY_FIXED_LEN: usize = 1 + 8 + 8 + 4 + 4 + 8 + 8;

/// The smallest `Groups` entry: group names have at least one byte.
const GROUP_ENTRY_MIN_LEN: usize = GROUP_ENTRY_FIXED_LEN + 1;

/// The smallest `Stats` topic entry: topic names have at least one byte.
const STATS_ENTRY_MIN_LEN: usize = STATS_ENTRY_FIXED_LEN + 1;

/// Bytes of a config status block besides its three texts: `generation` and `reloads` (8 each)
/// and three `u16` byte counts. Also the smallest block (all texts empty).
pub(crate) const CONFIG_STATUS_FIXED_LEN: usize = 8 + 8 + 3 * 2;

/// Parses the body of a frame of `kind`. `payload` turns the payload of a `Publish` or `Deliver`,
/// a sub-slice of `body`, into `Bytes`.
pub(crate) fn parse_body(
    kind: u8,
    body: &[u8],
    payload: impl FnOnce(&[u8]) -> Bytes,
) -> Result<Frame, DecodeError> {
    let kind_name = kind::name(kind).ok_or(DecodeError::UnknownKind(kind))?;
    parse(kind, Reader::new(body), payload)
        .map_err(|reason| DecodeError::Malformed { kind_name, reason })
}

// Struct literal fields are evaluated in the order they are written, so each literal below reads
// its fields in wire order; keep the field order of each literal equal to the layout.
fn parse(
    frame_kind: u8,
    mut r: Reader<'_>,
    payload: impl FnOnce(&[u8]) -> Bytes,
) -> Result<Frame, Reason> {
    let frame = match frame_kind {
        kind::HELLO => Frame::Hello {
            client_id: r.uuid()?,
            name: r.str8()?,
        },
        kind::WELCOME => Frame::Welcome {
            broker_id: r.uuid()?,
            connection_id: r.u64()?,
            max_message_size: r.u32()?,
            max_frame_len: r.u32()?,
            server: r.str8()?,
        },
        kind::SUBSCRIBE => Frame::Subscribe {
            request_id: r.u32()?,
            prefetch: r.u32()?,
            no_echo: match r.u8()? {
                0 => false,
                SUBSCRIBE_NO_ECHO => true,
                _ => return Err("reserved Subscribe flag bits set"),
            },
            topic: r.topic()?,
        },
        kind::SUBSCRIBE_DURABLE => {
            let (request_id, prefetch, flags) = (r.u32()?, r.u32()?, r.u8()?);
            if flags != 0 {
                return Err("reserved SubscribeDurable flag bits set");
            }
            let (start, start_value) = (r.u8()?, r.u64()?);
            let start = StartPosition::from_wire(start, start_value)?;
            let group = r.str8()?;
            Frame::SubscribeDurable {
                request_id,
                prefetch,
                start,
                group: (!group.is_empty()).then_some(group),
                topic: r.topic()?,
            }
        }
        kind::UNSUBSCRIBE => Frame::Unsubscribe {
            request_id: r.u32()?,
            topic_id: r.u32()?,
        },
        kind::ADVERTISE => Frame::Advertise {
            request_id: r.u32()?,
            topic: r.topic()?,
        },
        kind::TOPIC_ACK => {
            let (request_id, topic_id, routing) = (r.u32()?, r.u32()?, r.routing()?);
            let (max_message_size, prefetch, flags) = (r.u32()?, r.u32()?, r.u8()?);
            if flags & !(ACK_STAMP | ACK_PATTERN) != 0 {
                return Err("reserved TopicAck flag bits set");
            }
            Frame::TopicAck {
                request_id,
                topic_id,
                routing,
                max_message_size,
                prefetch,
                pattern: flags & ACK_PATTERN != 0,
                rules: MessageRules {
                    stamp: flags & ACK_STAMP != 0,
                    max_headers: r.u16()?,
                    max_header_bytes: r.u32()?,
                },
            }
        }
        kind::ACK => Frame::Ack {
            request_id: r.u32()?,
        },
        kind::PUBLISH => Frame::Publish {
            topic_id: r.u32()?,
            payload: payload(r.rest()),
        },
        kind::DELIVER => Frame::Deliver {
            topic_id: r.u32()?,
            payload: payload(r.rest()),
        },
        kind::PUBLISH_ENVELOPE => Frame::PublishEnvelope {
            topic_id: r.u32()?,
            message: enveloped(r.rest(), payload)?,
        },
        kind::DELIVER_ENVELOPE => Frame::DeliverEnvelope {
            topic_id: r.u32()?,
            message: enveloped(r.rest(), payload)?,
        },
        kind::ACK_MESSAGES => Frame::AckMessages {
            subscription_id: r.u32()?,
            offsets: ack_offsets(&mut r)?,
        },
        kind::NACK => {
            let (subscription_id, offset) = (r.u32()?, r.u64()?);
            let (action, delay_ms) = (r.u8()?, r.u32()?);
            Frame::Nack {
                subscription_id,
                offset,
                action: NackAction::from_wire(action, delay_ms)?,
            }
        }
        kind::PUBLISH_DURABLE => {
            let (request_id, topic_id) = (r.u32()?, r.u32()?);
            let enveloped = match r.u8()? {
                0 => false,
                PUBLISH_DURABLE_ENVELOPE => true,
                _ => return Err("reserved PublishDurable flag bits set"),
            };
            let message = if enveloped {
                self::enveloped(r.rest(), payload)?
            } else {
                payload(r.rest())
            };
            Frame::PublishDurable {
                request_id,
                topic_id,
                enveloped,
                message,
            }
        }
        kind::PUBLISHED => Frame::Published {
            request_id: r.u32()?,
            offset: r.u64()?,
        },
        kind::GROUPS_REQUEST => Frame::GroupsRequest {
            request_id: r.u32()?,
            topic: r.topic()?,
        },
        kind::GROUPS => Frame::Groups {
            request_id: r.u32()?,
            groups: group_stats(&mut r)?,
        },
        kind::CREDIT => Frame::Credit {
            topic_id: r.u32()?,
            credit: r.u32()?,
        },
        kind::LAGGED => Frame::Lagged {
            topic_id: r.u32()?,
            skipped: r.u64()?,
        },
        kind::PING => Frame::Ping { token: r.u64()? },
        kind::PONG => Frame::Pong { token: r.u64()? },
        kind::ERROR => Frame::Error {
            request_id: r.u32()?,
            code: ErrorCode::from_u16(r.u16()?),
            // Only bit 0 is defined; the rest are reserved for later versions and ignored.
            fatal: r.u8()? & 1 == 1,
            topic_id: r.u32()?,
            message: r.str16()?,
            refused: r.u32()?,
        },
        kind::STATS_REQUEST => Frame::StatsRequest {
            request_id: r.u32()?,
        },
        kind::SHM_HELLO => Frame::ShmHello {
            client_id: r.uuid()?,
            name: r.str8()?,
        },
        kind::SHM_ATTACH => Frame::ShmAttach {
            request_id: r.u32()?,
            role: r.shm_role()?,
            no_echo: match r.u8()? {
                0 => false,
                SUBSCRIBE_NO_ECHO => true,
                _ => return Err("reserved ShmAttach flag bits set"),
            },
            topic: r.topic()?,
        },
        kind::SHM_GRANT => {
            let (request_id, attachment, topic_id) = (r.u32()?, r.u32()?, r.u32()?);
            let (role, routing, max_message_size) = (r.shm_role()?, r.routing()?, r.u32()?);
            let rings = shm_rings(&mut r)?;
            let flags = r.u8()?;
            if flags & !(ACK_STAMP | ACK_PATTERN) != 0 {
                return Err("reserved ShmGrant flag bits set");
            }
            Frame::ShmGrant {
                request_id,
                attachment,
                topic_id,
                role,
                routing,
                max_message_size,
                rings,
                rules: MessageRules {
                    stamp: flags & ACK_STAMP != 0,
                    max_headers: r.u16()?,
                    max_header_bytes: r.u32()?,
                },
                pattern: flags & ACK_PATTERN != 0,
            }
        }
        kind::SHM_TOPIC_RING_ADDED => Frame::ShmTopicRingAdded {
            attachment: r.u32()?,
            ring: ShmRing {
                ring_id: r.u32()?,
                slot: r.u32()?,
            },
            topic_id: r.u32()?,
            topic: r.topic()?,
        },
        kind::SHM_RING_ADDED => Frame::ShmRingAdded {
            attachment: r.u32()?,
            ring: ShmRing {
                ring_id: r.u32()?,
                slot: r.u32()?,
            },
        },
        kind::SHM_RING_REMOVED => Frame::ShmRingRemoved {
            attachment: r.u32()?,
            ring_id: r.u32()?,
        },
        kind::SHM_SEGMENT => Frame::ShmSegment {
            request_id: r.u32()?,
            attachment: r.u32()?,
            segment: r.u64()?,
            len: r.u32()?,
            recipient: r.u32()?,
        },
        kind::SHM_SEGMENT_ADDED => Frame::ShmSegmentAdded {
            attachment: r.u32()?,
            ring_id: r.u32()?,
            segment: r.u64()?,
            len: r.u32()?,
            dropped: match r.u8()? {
                0 => false,
                1 => true,
                _ => return Err("dropped is neither 0 nor 1"),
            },
        },
        kind::SHM_DETACH => Frame::ShmDetach {
            request_id: r.u32()?,
            attachment: r.u32()?,
        },
        kind::SHM_DETACHED => Frame::ShmDetached {
            attachment: r.u32()?,
            code: ErrorCode::from_u16(r.u16()?),
            message: r.str16()?,
        },
        kind::STATS => Frame::Stats {
            request_id: r.u32()?,
            connections: r.u32()?,
            uptime_ms: r.u64()?,
            topics: topic_stats(&mut r)?,
            config: config_status(&mut r)?,
        },
        kind::RELOAD_REQUEST => Frame::ReloadRequest {
            request_id: r.u32()?,
        },
        kind::RELOAD_RESULT => Frame::ReloadResult {
            request_id: r.u32()?,
            outcome: r.reload_outcome()?,
            status: config_status(&mut r)?,
        },
        // `parse_body` has already refused unknown kinds.
        _ => return Err("unknown kind"),
    };
    r.finish()?;
    Ok(frame)
}

fn shm_rings(r: &mut Reader<'_>) -> Result<Vec<ShmRing>, Reason> {
    let count = usize::from(r.u8()?);
    if count > MAX_RINGS_PER_GRANT {
        return Err("ring_count above MAX_RINGS_PER_GRANT");
    }
    // A forged count must not reserve memory: accept only what the remaining bytes can hold.
    if count > r.remaining() / 8 {
        return Err("ring_count larger than the body");
    }
    let mut rings = Vec::with_capacity(count);
    for _ in 0..count {
        rings.push(ShmRing {
            ring_id: r.u32()?,
            slot: r.u32()?,
        });
    }
    Ok(rings)
}

fn topic_stats(r: &mut Reader<'_>) -> Result<Vec<TopicStats>, Reason> {
    let count = r.u32()?;
    // A forged count must not reserve memory: accept only what the remaining bytes can hold,
    // less the config status block that follows the entries.
    let room = r.remaining().saturating_sub(CONFIG_STATUS_FIXED_LEN);
    let count = usize::try_from(count)
        .ok()
        .filter(|&n| n <= room / STATS_ENTRY_MIN_LEN)
        .ok_or("topic_count larger than the body")?;
    let mut topics = Vec::with_capacity(count);
    for _ in 0..count {
        let mut topic = TopicStats {
            name: r.topic()?,
            routing: r.routing()?,
            subscribers: r.u32()?,
            published: r.u64()?,
            delivered: r.u64()?,
            dropped: r.u64()?,
            queued: r.u64()?,
            shm_subscribers: r.u32()?,
            flags: r.u8()?,
            log: None,
        };
        let log = LogStats {
            first_offset: r.u64()?,
            next_offset: r.u64()?,
            retained_messages: r.u64()?,
            retained_bytes: r.u64()?,
        };
        if topic.flags & TopicStats::DURABLE != 0 {
            topic.log = Some(log);
        } else if log != LogStats::default() {
            return Err("log counters of a topic that is not durable");
        }
        topics.push(topic);
    }
    Ok(topics)
}

fn ack_offsets(r: &mut Reader<'_>) -> Result<Vec<u64>, Reason> {
    let count = usize::from(r.u16()?);
    if count == 0 {
        return Err("AckMessages with no offset");
    }
    // The count must account for the body exactly, checked before anything is reserved.
    if count.checked_mul(8) != Some(r.remaining()) {
        return Err("count does not match the body length");
    }
    let mut offsets = Vec::with_capacity(count);
    for _ in 0..count {
        offsets.push(r.u64()?);
    }
    Ok(offsets)
}

fn group_stats(r: &mut Reader<'_>) -> Result<Vec<GroupStats>, Reason> {
    let count = usize::from(r.u16()?);
    // A forged count must not reserve memory: accept only what the remaining bytes can hold.
    if count > r.remaining() / GROUP_ENTRY_MIN_LEN {
        return Err("group count larger than the body");
    }
    let mut groups = Vec::with_capacity(count);
    for _ in 0..count {
        let name = r.str8()?;
        if name.is_empty() {
            return Err("empty group name");
        }
        groups.push(GroupStats {
            name,
            committed: r.u64()?,
            next_offset: r.u64()?,
            pending: r.u32()?,
            members: r.u32()?,
            redelivered: r.u64()?,
            dead_lettered: r.u64()?,
        });
    }
    Ok(groups)
}

fn config_status(r: &mut Reader<'_>) -> Result<ConfigStatus, Reason> {
    Ok(ConfigStatus {
        generation: r.u64()?,
        reloads: r.u64()?,
        last_error: r.str16()?,
        last_change: r.str16()?,
        pending: r.str16()?,
    })
}

/// An enveloped message's bytes, checked whole (a message whose envelope does not parse makes
/// the frame malformed), turned into `Bytes` by `payload`.
fn enveloped(bytes: &[u8], payload: impl FnOnce(&[u8]) -> Bytes) -> Result<Bytes, Reason> {
    EnvelopeView::parse(bytes).map_err(|error| error.0)?;
    Ok(payload(bytes))
}
