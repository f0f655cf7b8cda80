//! The frames of the Mycelium wire protocol, as Rust values.
//!
//! - Every frame on the wire is `len: u32 LE | version: u8 | kind: u8 | body`, where `len` counts
//!   the bytes after itself (so it is at least 2). All integers are little-endian.
//! - [`Frame`] is the owned form, used by the client, by tests and for control frames in the broker.
//!   The broker's hot path reads publishes through [`crate::codec::FrameView`] instead, without
//!   allocating.
//! - Strings are UTF-8 behind a `u8` (names) or `u16` (error message, the texts of a
//!   [`ConfigStatus`]) byte count. Topic names are 1 to [`MAX_NAME_LEN`] bytes; the client and
//!   server names may be empty.
//! - The byte-by-byte layout of every body is in `docs/protocol.md`; the comment on each variant
//!   repeats it in short.

use bytes::Bytes;
use uuid::Uuid;

/// The protocol version this crate speaks; carried in byte 4 of every frame.
pub const PROTOCOL_VERSION: u8 = 1;

/// Bytes before the body: `len` (4), `version` (1), `kind` (1).
pub const HEADER_LEN: usize = 6;

/// Bytes of a `Publish` or `Deliver` frame that are not payload: header plus `topic_id`.
pub const MESSAGE_OVERHEAD: usize = HEADER_LEN + 4;

pub use crate::limits::{HANDSHAKE_MAX_FRAME_LEN, MAX_NAME_LEN, MAX_RINGS_PER_GRANT};

/// The one-byte frame kinds. Values are part of the protocol and never reused.
pub mod kind {
    /// [`Frame::Hello`](super::Frame::Hello), client → broker.
    pub const HELLO: u8 = 0x01;
    /// [`Frame::Welcome`](super::Frame::Welcome), broker → client.
    pub const WELCOME: u8 = 0x02;
    /// [`Frame::Subscribe`](super::Frame::Subscribe), client → broker.
    pub const SUBSCRIBE: u8 = 0x03;
    /// [`Frame::Unsubscribe`](super::Frame::Unsubscribe), client → broker.
    pub const UNSUBSCRIBE: u8 = 0x04;
    /// [`Frame::Advertise`](super::Frame::Advertise), client → broker.
    pub const ADVERTISE: u8 = 0x05;
    /// [`Frame::TopicAck`](super::Frame::TopicAck), broker → client.
    pub const TOPIC_ACK: u8 = 0x06;
    /// [`Frame::Ack`](super::Frame::Ack), broker → client.
    pub const ACK: u8 = 0x07;
    /// [`Frame::ShmHello`](super::Frame::ShmHello), client → broker: opens a shared-memory
    /// control session instead of a message connection.
    pub const SHM_HELLO: u8 = 0x08;
    /// [`Frame::Publish`](super::Frame::Publish), client → broker.
    pub const PUBLISH: u8 = 0x10;
    /// [`Frame::Deliver`](super::Frame::Deliver), broker → client.
    pub const DELIVER: u8 = 0x11;
    /// [`Frame::Credit`](super::Frame::Credit), client → broker.
    pub const CREDIT: u8 = 0x12;
    /// [`Frame::Lagged`](super::Frame::Lagged), broker → client.
    pub const LAGGED: u8 = 0x13;
    /// [`Frame::Ping`](super::Frame::Ping), either way.
    pub const PING: u8 = 0x20;
    /// [`Frame::Pong`](super::Frame::Pong), either way.
    pub const PONG: u8 = 0x21;
    /// [`Frame::Error`](super::Frame::Error), broker → client.
    pub const ERROR: u8 = 0x30;
    /// [`Frame::StatsRequest`](super::Frame::StatsRequest), client → broker.
    pub const STATS_REQUEST: u8 = 0x40;
    /// [`Frame::Stats`](super::Frame::Stats), broker → client.
    pub const STATS: u8 = 0x41;
    /// [`Frame::ReloadRequest`](super::Frame::ReloadRequest), client → broker (message
    /// connections only).
    pub const RELOAD_REQUEST: u8 = 0x42;
    /// [`Frame::ReloadResult`](super::Frame::ReloadResult), broker → client.
    pub const RELOAD_RESULT: u8 = 0x43;
    /// [`Frame::ShmAttach`](super::Frame::ShmAttach), client → broker (shm sessions only).
    pub const SHM_ATTACH: u8 = 0x50;
    /// [`Frame::ShmGrant`](super::Frame::ShmGrant), broker → client, with one fd per ring.
    pub const SHM_GRANT: u8 = 0x51;
    /// [`Frame::ShmRingAdded`](super::Frame::ShmRingAdded), broker → client, with one fd.
    pub const SHM_RING_ADDED: u8 = 0x52;
    /// [`Frame::ShmRingRemoved`](super::Frame::ShmRingRemoved), broker → client.
    pub const SHM_RING_REMOVED: u8 = 0x53;
    /// [`Frame::ShmDetach`](super::Frame::ShmDetach), client → broker.
    pub const SHM_DETACH: u8 = 0x54;
    /// [`Frame::ShmDetached`](super::Frame::ShmDetached), broker → client.
    pub const SHM_DETACHED: u8 = 0x55;
    /// [`Frame::ShmSegment`](super::Frame::ShmSegment), client → broker, with one fd.
    pub const SHM_SEGMENT: u8 = 0x56;
    /// [`Frame::ShmSegmentAdded`](super::Frame::ShmSegmentAdded), broker → client, with one fd
    /// unless `dropped`.
    pub const SHM_SEGMENT_ADDED: u8 = 0x57;

    /// The name of a known kind (as in logs and `Malformed` errors), or `None` for a byte this
    /// version of the protocol does not define. This is the one list of valid kinds.
    pub fn name(kind: u8) -> Option<&'static str> {
        Some(match kind {
            HELLO => "Hello",
            WELCOME => "Welcome",
            SUBSCRIBE => "Subscribe",
            UNSUBSCRIBE => "Unsubscribe",
            ADVERTISE => "Advertise",
            TOPIC_ACK => "TopicAck",
            ACK => "Ack",
            SHM_HELLO => "ShmHello",
            PUBLISH => "Publish",
            DELIVER => "Deliver",
            CREDIT => "Credit",
            LAGGED => "Lagged",
            PING => "Ping",
            PONG => "Pong",
            ERROR => "Error",
            STATS_REQUEST => "StatsRequest",
            STATS => "Stats",
            RELOAD_REQUEST => "ReloadRequest",
            RELOAD_RESULT => "ReloadResult",
            SHM_ATTACH => "ShmAttach",
            SHM_GRANT => "ShmGrant",
            SHM_RING_ADDED => "ShmRingAdded",
            SHM_RING_REMOVED => "ShmRingRemoved",
            SHM_DETACH => "ShmDetach",
            SHM_DETACHED => "ShmDetached",
            SHM_SEGMENT => "ShmSegment",
            SHM_SEGMENT_ADDED => "ShmSegmentAdded",
            _ => return None,
        })
    }
}

/// How a topic hands out messages, as carried in `TopicAck` and `Stats` (one byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RoutingKind {
    /// `0`: every subscriber receives every message.
    Fanout,
    /// `1`: each message goes to exactly one subscriber.
    Queue,
}

impl RoutingKind {
    /// The routing's wire value.
    pub fn to_u8(self) -> u8 {
        match self {
            RoutingKind::Fanout => 0,
            RoutingKind::Queue => 1,
        }
    }

    /// The routing for a wire value, or `None` for a value the protocol does not define (unlike
    /// error codes, an unknown routing cannot be acted on, so it is not kept).
    pub fn from_u8(v: u8) -> Option<RoutingKind> {
        match v {
            0 => Some(RoutingKind::Fanout),
            1 => Some(RoutingKind::Queue),
            _ => None,
        }
    }
}

/// Why the broker refused something, carried in an `Error` frame (two bytes).
///
/// Unknown codes from a newer broker decode as [`ErrorCode::Other`] so old clients keep working.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// `1`: a frame could not be decoded (bad length, truncated body, invalid UTF-8 …).
    Malformed,
    /// `2`: the frame's version byte is not one the broker speaks.
    UnsupportedVersion,
    /// `3`: the frame's length exceeds the limit the broker announced.
    FrameTooLarge,
    /// `4`: the frame's kind byte is not known.
    UnknownFrameKind,
    /// `5`: a frame came before `Hello`, or `Hello` came twice, or a broker-only frame was sent.
    HandshakeRequired,
    /// `6`: the broker is at `max_connections`.
    TooManyConnections,
    /// `7`: the handshake did not complete within the connection timeout.
    HandshakeTimeout,
    /// `8`: the connection sent nothing, and took nothing the broker sent it, through
    /// `heartbeat_misses` pings in a row: the broker drops it as dead.
    HeartbeatTimeout,
    /// `16`: the topic (named, or by id) does not exist and is not auto-created.
    UnknownTopic,
    /// `17`: a payload is larger than the topic's `max_message_size`; the message was not routed.
    MessageTooLarge,
    /// `18`: unsubscribe or credit for a topic this connection is not subscribed to.
    NotSubscribed,
    /// `19`: subscribe to a topic this connection is already subscribed to.
    AlreadySubscribed,
    /// `20`: a topic name is empty, too long, or has characters outside `[A-Za-z0-9._-]`.
    InvalidTopicName,
    /// `21`: a shared-memory request was refused (wrong kind of connection, a limit reached,
    /// segments could not be created); the message says which.
    ShmRefused,
    /// `22`: the topic was removed from the broker's config by a reload: the subscription is
    /// ended, and publishes to its id are refused; the name may come back later with a new id.
    TopicRemoved,
    /// `23`: the topic's access list does not admit this peer (its uid and groups, as the
    /// kernel reports them for the socket) for this operation; the message names the topic
    /// and the list.
    PermissionDenied,
    /// `24`: a configured limit is reached (subscriptions per connection or in all); the
    /// message names the limit and its setting. Nothing was done.
    LimitExceeded,
    /// `32`: the broker is shutting down; no new work is accepted.
    ShuttingDown,
    /// `33`: this subscriber fell too far behind and its topic's policy is to disconnect it.
    SlowConsumer,
    /// `255`: a broker-side failure that is not the client's fault.
    Internal,
    /// Any other value, kept as received.
    Other(u16),
}

impl ErrorCode {
    /// The code's wire value.
    pub fn to_u16(self) -> u16 {
        match self {
            ErrorCode::Malformed => 1,
            ErrorCode::UnsupportedVersion => 2,
            ErrorCode::FrameTooLarge => 3,
            ErrorCode::UnknownFrameKind => 4,
            ErrorCode::HandshakeRequired => 5,
            ErrorCode::TooManyConnections => 6,
            ErrorCode::HandshakeTimeout => 7,
            ErrorCode::HeartbeatTimeout => 8,
            ErrorCode::UnknownTopic => 16,
            ErrorCode::MessageTooLarge => 17,
            ErrorCode::NotSubscribed => 18,
            ErrorCode::AlreadySubscribed => 19,
            ErrorCode::InvalidTopicName => 20,
            ErrorCode::ShmRefused => 21,
            ErrorCode::TopicRemoved => 22,
            ErrorCode::PermissionDenied => 23,
            ErrorCode::LimitExceeded => 24,
            ErrorCode::ShuttingDown => 32,
            ErrorCode::SlowConsumer => 33,
            ErrorCode::Internal => 255,
            ErrorCode::Other(v) => v,
        }
    }

    /// The code for a wire value; never fails.
    pub fn from_u16(v: u16) -> ErrorCode {
        match v {
            1 => ErrorCode::Malformed,
            2 => ErrorCode::UnsupportedVersion,
            3 => ErrorCode::FrameTooLarge,
            4 => ErrorCode::UnknownFrameKind,
            5 => ErrorCode::HandshakeRequired,
            6 => ErrorCode::TooManyConnections,
            7 => ErrorCode::HandshakeTimeout,
            8 => ErrorCode::HeartbeatTimeout,
            16 => ErrorCode::UnknownTopic,
            17 => ErrorCode::MessageTooLarge,
            18 => ErrorCode::NotSubscribed,
            19 => ErrorCode::AlreadySubscribed,
            20 => ErrorCode::InvalidTopicName,
            21 => ErrorCode::ShmRefused,
            22 => ErrorCode::TopicRemoved,
            23 => ErrorCode::PermissionDenied,
            24 => ErrorCode::LimitExceeded,
            32 => ErrorCode::ShuttingDown,
            33 => ErrorCode::SlowConsumer,
            255 => ErrorCode::Internal,
            other => ErrorCode::Other(other),
        }
    }
}

/// What a shared-memory attachment does with its topic, as carried in `ShmAttach` and
/// `ShmGrant` (one byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ShmRole {
    /// `0`: writes messages into a ring of its own.
    Publish,
    /// `1`: reads the rings of the topic's publishers (and the broker's relay ring).
    Subscribe,
}

impl ShmRole {
    /// The role's wire value.
    pub fn to_u8(self) -> u8 {
        match self {
            ShmRole::Publish => 0,
            ShmRole::Subscribe => 1,
        }
    }

    /// The role for a wire value, or `None` for a value the protocol does not define.
    pub fn from_u8(v: u8) -> Option<ShmRole> {
        match v {
            0 => Some(ShmRole::Publish),
            1 => Some(ShmRole::Subscribe),
            _ => None,
        }
    }
}

/// One ring handed over by a `ShmGrant`: its fd travels in the same `sendmsg`, in ring order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ShmRing {
    /// Names the ring in later `ShmRingRemoved` frames; unique within a broker run.
    pub ring_id: u32,
    /// For a subscriber: the consumer slot the broker reserved for it in this ring. For a
    /// publisher: [`NO_SLOT`].
    pub slot: u32,
}

/// `slot` of a ring granted to a publisher, which holds no consumer slot.
pub const NO_SLOT: u32 = u32::MAX;

/// Per-topic counters as reported in a `Stats` frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicStats {
    /// The topic's name.
    pub name: String,
    /// Fanout or queue.
    pub routing: RoutingKind,
    /// Current subscribers on message connections (the socket path), in-process ones
    /// included.
    pub subscribers: u32,
    /// Messages accepted from publishers since the broker started.
    pub published: u64,
    /// Message copies handed to subscribers (a fanout message to 3 subscribers counts 3).
    pub delivered: u64,
    /// Messages or copies discarded by the topic's backpressure policy.
    pub dropped: u64,
    /// Messages waiting in the topic's buffer (queue topics with no ready consumer).
    pub queued: u64,
    /// Current subscribers over shared memory (each reads the rings itself; the broker
    /// counts their attachments). Last in the entry, so the fields before it keep their
    /// offsets.
    pub shm_subscribers: u32,
}

/// What the last reload attempt did, as carried in `ReloadResult` (one byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReloadOutcome {
    /// `0`: the file differed and its changes were applied (those that can be: see
    /// [`ConfigStatus::pending`]).
    Applied,
    /// `1`: the file loads and matches the running config; nothing changed.
    Unchanged,
    /// `2`: the file could not be read, parsed or validated; nothing changed;
    /// [`ConfigStatus::last_error`] says why.
    Failed,
}

impl ReloadOutcome {
    /// The outcome's wire value.
    pub fn to_u8(self) -> u8 {
        match self {
            ReloadOutcome::Applied => 0,
            ReloadOutcome::Unchanged => 1,
            ReloadOutcome::Failed => 2,
        }
    }

    /// The outcome for a wire value, or `None` for a value the protocol does not define (an
    /// unknown outcome cannot be acted on, so it is not kept).
    pub fn from_u8(v: u8) -> Option<ReloadOutcome> {
        match v {
            0 => Some(ReloadOutcome::Applied),
            1 => Some(ReloadOutcome::Unchanged),
            2 => Some(ReloadOutcome::Failed),
            _ => None,
        }
    }
}

/// The state of the broker's configuration, as carried in `Stats` and `ReloadResult`.
///
/// On the wire (the "config status block"): `generation u64 | reloads u64 | error_len u16 |
/// last_error | change_len u16 | last_change | pending_len u16 | pending`. Each text is UTF-8 of
/// at most [`ConfigStatus::MAX_TEXT_LEN`] bytes; encoding a longer one fails
/// ([`EncodeError::NameTooLong`](crate::error::EncodeError::NameTooLong)), so the broker passes
/// its status through [`ConfigStatus::truncated`] before encoding.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConfigStatus {
    /// Bumped by every reload that applied a config; 1 is the config the broker started with.
    pub generation: u64,
    /// Reload attempts finished since the broker started: applied, unchanged or failed.
    pub reloads: u64,
    /// Why the last reload attempt failed, one diagnostic per line (`file:line:col: field: message`); empty when it did not fail.
    pub last_error: String,
    /// What the last applied reload changed, one line (`+topic signals, ~execution.buffer_size 50000→80000, -topic old`); empty before the first.
    pub last_change: String,
    /// Settings of the file the running broker does not follow (they need a restart, or were refused), one per line; empty when none.
    pub pending: String,
}

impl ConfigStatus {
    /// The longest `last_error`, `last_change` or `pending`, in bytes: each is behind a `u16`
    /// byte count.
    pub const MAX_TEXT_LEN: usize = u16::MAX as usize;

    /// The same status with each text cut to at most [`MAX_TEXT_LEN`](Self::MAX_TEXT_LEN)
    /// bytes, at a char boundary, so that it always encodes. The broker calls it before
    /// encoding a `Stats` or `ReloadResult`: diagnostics and change lists come from the
    /// operator's file and have no bound of their own. Texts that fit are kept as they are.
    pub fn truncated(mut self) -> ConfigStatus {
        for text in [
            &mut self.last_error,
            &mut self.last_change,
            &mut self.pending,
        ] {
            let len = truncate_utf8(text, Self::MAX_TEXT_LEN).len();
            text.truncate(len);
        }
        self
    }
}

/// The longest prefix of `s` that is at most `max` bytes and ends at a char boundary.
///
/// Used by [`ConfigStatus::truncated`]; also for any other text the caller must fit a length
/// prefix (an `Error` message, for one, is limited to `u16::MAX` bytes).
pub(crate) fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    // A char is at most 4 bytes, so a boundary lies within the last 4 positions up to `max`;
    // index 0 is always one, so the search cannot fail.
    let end = (0..=max)
        .rev()
        .find(|&i| s.is_char_boundary(i))
        .unwrap_or(0);
    &s[..end]
}

/// One protocol frame, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Client → broker, first frame. Body: `client_id [16] | name_len u8 | name [name_len] (UTF-8)`.
    Hello {
        /// Chosen by the client, random per connection unless it wants a stable identity.
        client_id: Uuid,
        /// Free-form label shown in logs; may be empty.
        name: String,
    },
    /// Broker → client, answer to `Hello`, before any other frame. Body:
    /// `broker_id [16] | connection_id u64 | max_message_size u32 | max_frame_len u32 | server_len u8 | server [server_len]`.
    Welcome {
        /// Random per broker run: a client that sees it change knows the broker restarted.
        broker_id: Uuid,
        /// Unique within this broker run; names the connection in the broker's logs.
        connection_id: u64,
        /// The largest payload any topic accepts.
        max_message_size: u32,
        /// The largest `len` field the broker accepts from now on.
        max_frame_len: u32,
        /// The broker's name and version, e.g. `mycelium 0.1.0`.
        server: String,
    },
    /// Client → broker, first frame of a shared-memory control session (instead of `Hello`).
    /// Body as `Hello`: `client_id [16] | name_len u8 | name [name_len]`. Answered by `Welcome`;
    /// the session then carries only `ShmAttach`, `ShmDetach`, `Ping` and `StatsRequest` from
    /// the client, and its broker frames may carry file descriptors (`SCM_RIGHTS`).
    ShmHello {
        /// As in `Hello`.
        client_id: Uuid,
        /// As in `Hello`.
        name: String,
    },
    /// Client → broker (shm sessions). Body: `request_id u32 | role u8 | topic_len u8 | topic`.
    /// Answered by `ShmGrant` or `Error`.
    ShmAttach {
        /// Echoed in the answer.
        request_id: u32,
        /// Publish or subscribe.
        role: ShmRole,
        /// The topic name.
        topic: String,
    },
    /// Broker → client, answer to `ShmAttach`, sent with one fd per ring (a sealed memfd
    /// holding the ring, `docs/shm-layout.md`). Body: `request_id u32 | attachment u32 |
    /// topic_id u32 | role u8 | routing u8 | max_message_size u32 | ring_count u8 |`
    /// then per ring `ring_id u32 | slot u32`.
    ShmGrant {
        /// The request this answers.
        request_id: u32,
        /// Names this attachment in `ShmRingAdded`, `ShmRingRemoved` and `ShmDetach`.
        attachment: u32,
        /// The topic's id.
        topic_id: u32,
        /// As requested.
        role: ShmRole,
        /// Fanout or queue.
        routing: RoutingKind,
        /// The topic's payload limit.
        max_message_size: u32,
        /// The rings, in the order of the fds (at most [`MAX_RINGS_PER_GRANT`]).
        rings: Vec<ShmRing>,
    },
    /// Broker → subscriber: a publisher joined; read this ring too, from the reserved slot.
    /// Sent with the ring's fd. Body: `attachment u32 | ring_id u32 | slot u32`.
    ShmRingAdded {
        /// The subscriber's attachment.
        attachment: u32,
        /// The new ring.
        ring: ShmRing,
    },
    /// Broker → subscriber: the ring's publisher left. Read what it published, then drop the
    /// ring. Body: `attachment u32 | ring_id u32`.
    ShmRingRemoved {
        /// The subscriber's attachment.
        attachment: u32,
        /// The ring to drop.
        ring_id: u32,
    },
    /// Client → broker: the attachment is done (its rings are dropped). Body:
    /// `request_id u32 | attachment u32`. Answered by `Ack` or `Error`.
    ShmDetach {
        /// Echoed in the answer.
        request_id: u32,
        /// From the `ShmGrant`.
        attachment: u32,
    },
    /// Broker → client: the broker ended this attachment (a subscriber that fell a whole ring
    /// behind on a `backpressure = "disconnect"` topic, or any attachment of a topic a reload
    /// removed). Its slots are freed; the client drops its rings. Body:
    /// `attachment u32 | code u16 | msg_len u16 | message [msg_len]`.
    ShmDetached {
        /// The attachment ended.
        attachment: u32,
        /// Why (`SlowConsumer`, `TopicRemoved`).
        code: ErrorCode,
        /// Human-readable, names the topic and the policy.
        message: String,
    },
    /// Client (a shared-memory publisher) → broker, with one fd: a sealed payload segment
    /// holding a message too large for the publisher's ring. The broker hands the fd to the
    /// ring's readers, then answers `Ack` (or `Error`); only then does the publisher write the
    /// reference frame. Body: `request_id u32 | attachment u32 | segment u64 | len u32 |
    /// recipient u32`.
    ShmSegment {
        /// Echoed in the answer.
        request_id: u32,
        /// The publisher's attachment, from its `ShmGrant`.
        attachment: u32,
        /// The segment's id: increasing within the attachment.
        segment: u64,
        /// The message's length in bytes.
        len: u32,
        /// Queue topics: the consumer slot the message is addressed to; fanout: [`NO_SLOT`].
        recipient: u32,
    },
    /// Broker → subscriber: a payload segment of one of the subscription's rings, carrying
    /// its fd unless `dropped` (the broker dropped the message for this subscriber). Body:
    /// `attachment u32 | ring_id u32 | segment u64 | len u32 | dropped u8`.
    ShmSegmentAdded {
        /// The subscriber's attachment.
        attachment: u32,
        /// The ring whose reference frame names the segment.
        ring_id: u32,
        /// The segment's id, as in the reference frame.
        segment: u64,
        /// The message's length in bytes.
        len: u32,
        /// `true`: no fd; the subscriber holds too many segments not yet read, and the
        /// message is lost for it (counted).
        dropped: bool,
    },
    /// Client → broker. Body: `request_id u32 | prefetch u32 | topic_len u8 | topic [topic_len]`.
    /// `prefetch` is the credit a queue consumer asks for (0 = the topic's default); fanout ignores it.
    Subscribe {
        /// Echoed in the `TopicAck` or `Error` that answers it.
        request_id: u32,
        /// Requested credit for queue topics; 0 asks for the topic's configured prefetch.
        prefetch: u32,
        /// The topic name.
        topic: String,
    },
    /// Client → broker. Body: `request_id u32 | topic_id u32`. Answered by `Ack` or `Error`.
    Unsubscribe {
        /// Echoed in the answer.
        request_id: u32,
        /// The id from the `TopicAck` of the subscription.
        topic_id: u32,
    },
    /// Client → broker: "I will publish on this topic; what is its id?" Body:
    /// `request_id u32 | topic_len u8 | topic [topic_len]`. Answered by `TopicAck` or `Error`.
    Advertise {
        /// Echoed in the answer.
        request_id: u32,
        /// The topic name.
        topic: String,
    },
    /// Broker → client, answer to `Subscribe` or `Advertise`. Body:
    /// `request_id u32 | topic_id u32 | routing u8 | max_message_size u32 | prefetch u32`.
    TopicAck {
        /// The request this answers.
        request_id: u32,
        /// The id to use in `Publish`, `Unsubscribe` and `Credit`, and seen in `Deliver`.
        topic_id: u32,
        /// Fanout or queue.
        routing: RoutingKind,
        /// The topic's payload limit.
        max_message_size: u32,
        /// Credit granted to this consumer (queue subscriptions), else 0.
        prefetch: u32,
    },
    /// Broker → client: the request succeeded and has nothing else to say. Body: `request_id u32`.
    Ack {
        /// The request this answers.
        request_id: u32,
    },
    /// Client → broker. Body: `topic_id u32 | payload [len - 6]`. Not answered unless refused.
    Publish {
        /// From the topic's `TopicAck`.
        topic_id: u32,
        /// The message; may be empty.
        payload: Bytes,
    },
    /// Broker → client. Body: `topic_id u32 | payload [len - 6]`.
    Deliver {
        /// The subscription's topic id.
        topic_id: u32,
        /// The message as published.
        payload: Bytes,
    },
    /// Client → broker: a queue consumer has processed `credit` more messages. Body: `topic_id u32 | credit u32`.
    Credit {
        /// The queue subscription.
        topic_id: u32,
        /// Messages processed since the last credit.
        credit: u32,
    },
    /// Broker → client: the topic's `drop_newest` / `drop_oldest` policy dropped `skipped`
    /// messages of this subscription since the last `Lagged` (its buffer was full). Sent with
    /// the next message the subscription gets; the subscription goes on. Body:
    /// `topic_id u32 | skipped u64`.
    Lagged {
        /// The subscription's topic id.
        topic_id: u32,
        /// Messages dropped for this subscriber, exactly.
        skipped: u64,
    },
    /// Either way: answer with `Pong` carrying the same token. Body: `token u64`.
    /// The broker handles frames of a connection in order, so a `Pong` also tells the client that
    /// every frame it sent before the `Ping` has been processed (a flush barrier).
    Ping {
        /// Opaque to the receiver.
        token: u64,
    },
    /// Either way: the answer to `Ping`. Body: `token u64`.
    Pong {
        /// The `Ping`'s token.
        token: u64,
    },
    /// Broker → client. Body: `request_id u32 | code u16 | flags u8 | topic_id u32 | msg_len u16 | message [msg_len] | refused u32`.
    /// `flags` bit 0 = fatal: the broker closes the connection after this frame. The other bits are
    /// reserved: sent as 0 and ignored on receipt, so a later version can use them.
    Error {
        /// The request this answers, or 0 when it answers a `Publish` or no request at all.
        request_id: u32,
        /// What went wrong.
        code: ErrorCode,
        /// True when the broker closes the connection after sending it.
        fatal: bool,
        /// The topic concerned, or [`NO_TOPIC`] when none.
        topic_id: u32,
        /// Human-readable, names the topic or limit concerned.
        message: String,
        /// How many published messages this error refuses: the `Publish` frames it answers
        /// that the broker did not route (one, or a whole batch held back by a slow reader and
        /// given up or cut short by the topic's removal). 0 for every error that refuses no
        /// publish, so a client that adds these up knows exactly how many were refused.
        refused: u32,
    },
    /// Client → broker. Body: `request_id u32`.
    StatsRequest {
        /// Echoed in the `Stats` answer.
        request_id: u32,
    },
    /// Broker → client. Body: `request_id u32 | connections u32 | uptime_ms u64 | topic_count u32 |`
    /// then per topic `name_len u8 | name | routing u8 | subscribers u32 | published u64 | delivered u64 | dropped u64 | queued u64 | shm_subscribers u32`,
    /// then the config status block (see [`ConfigStatus`]).
    Stats {
        /// The request this answers.
        request_id: u32,
        /// Open client connections.
        connections: u32,
        /// Milliseconds since the broker started.
        uptime_ms: u64,
        /// One entry per topic, in declaration order.
        topics: Vec<TopicStats>,
        /// The configuration's generation and the last reload's outcome.
        config: ConfigStatus,
    },
    /// Client → broker (message connections only): re-read the config file now. Body:
    /// `request_id u32`. Answered by `ReloadResult` once a reload that started after the
    /// request arrived is done.
    ReloadRequest {
        /// Echoed in the `ReloadResult`.
        request_id: u32,
    },
    /// Broker → client, answer to `ReloadRequest`. Body: `request_id u32 | outcome u8 |` then
    /// the config status block (see [`ConfigStatus`]).
    ReloadResult {
        /// The request this answers.
        request_id: u32,
        /// What the reload did.
        outcome: ReloadOutcome,
        /// The configuration's state after the reload.
        status: ConfigStatus,
    },
}

/// `topic_id` in an `Error` frame that concerns no topic.
pub const NO_TOPIC: u32 = u32::MAX;

/// `request_id` in an `Error` frame that answers no request (a refused publish, a fatal error,
/// news of a subscription). Clients never use it for a request of their own.
pub const NO_REQUEST: u32 = 0;

impl Frame {
    /// The frame's kind byte (one of the [`kind`] constants).
    pub fn kind(&self) -> u8 {
        match self {
            Frame::Hello { .. } => kind::HELLO,
            Frame::Welcome { .. } => kind::WELCOME,
            Frame::Subscribe { .. } => kind::SUBSCRIBE,
            Frame::Unsubscribe { .. } => kind::UNSUBSCRIBE,
            Frame::Advertise { .. } => kind::ADVERTISE,
            Frame::TopicAck { .. } => kind::TOPIC_ACK,
            Frame::Ack { .. } => kind::ACK,
            Frame::Publish { .. } => kind::PUBLISH,
            Frame::Deliver { .. } => kind::DELIVER,
            Frame::Credit { .. } => kind::CREDIT,
            Frame::Lagged { .. } => kind::LAGGED,
            Frame::Ping { .. } => kind::PING,
            Frame::Pong { .. } => kind::PONG,
            Frame::Error { .. } => kind::ERROR,
            Frame::StatsRequest { .. } => kind::STATS_REQUEST,
            Frame::Stats { .. } => kind::STATS,
            Frame::ReloadRequest { .. } => kind::RELOAD_REQUEST,
            Frame::ReloadResult { .. } => kind::RELOAD_RESULT,
            Frame::ShmHello { .. } => kind::SHM_HELLO,
            Frame::ShmAttach { .. } => kind::SHM_ATTACH,
            Frame::ShmGrant { .. } => kind::SHM_GRANT,
            Frame::ShmRingAdded { .. } => kind::SHM_RING_ADDED,
            Frame::ShmRingRemoved { .. } => kind::SHM_RING_REMOVED,
            Frame::ShmDetach { .. } => kind::SHM_DETACH,
            Frame::ShmDetached { .. } => kind::SHM_DETACHED,
            Frame::ShmSegment { .. } => kind::SHM_SEGMENT,
            Frame::ShmSegmentAdded { .. } => kind::SHM_SEGMENT_ADDED,
        }
    }
}

#[cfg(test)]
mod wire_values {
    use super::*;

    #[test]
    fn every_error_code_survives_its_wire_value() {
        for v in 0..=u16::MAX {
            assert_eq!(ErrorCode::from_u16(v).to_u16(), v);
        }
        assert_eq!(ErrorCode::from_u16(17), ErrorCode::MessageTooLarge);
        assert_eq!(ErrorCode::from_u16(22), ErrorCode::TopicRemoved);
        assert_eq!(ErrorCode::from_u16(1000), ErrorCode::Other(1000));
    }

    #[test]
    fn routing_has_exactly_two_wire_values() {
        for v in 0..=u8::MAX {
            let expected = match v {
                0 => Some(RoutingKind::Fanout),
                1 => Some(RoutingKind::Queue),
                _ => None,
            };
            assert_eq!(RoutingKind::from_u8(v), expected);
            if let Some(r) = expected {
                assert_eq!(r.to_u8(), v);
            }
        }
    }

    #[test]
    fn the_named_error_codes_have_their_documented_wire_values() {
        let codes = [
            (ErrorCode::Malformed, 1),
            (ErrorCode::UnsupportedVersion, 2),
            (ErrorCode::FrameTooLarge, 3),
            (ErrorCode::UnknownFrameKind, 4),
            (ErrorCode::HandshakeRequired, 5),
            (ErrorCode::TooManyConnections, 6),
            (ErrorCode::HandshakeTimeout, 7),
            (ErrorCode::HeartbeatTimeout, 8),
            (ErrorCode::UnknownTopic, 16),
            (ErrorCode::MessageTooLarge, 17),
            (ErrorCode::NotSubscribed, 18),
            (ErrorCode::AlreadySubscribed, 19),
            (ErrorCode::InvalidTopicName, 20),
            (ErrorCode::ShmRefused, 21),
            (ErrorCode::TopicRemoved, 22),
            (ErrorCode::PermissionDenied, 23),
            (ErrorCode::LimitExceeded, 24),
            (ErrorCode::ShuttingDown, 32),
            (ErrorCode::SlowConsumer, 33),
            (ErrorCode::Internal, 255),
        ];
        for (code, v) in codes {
            assert_eq!(code.to_u16(), v, "{code:?}");
            assert_eq!(ErrorCode::from_u16(v), code);
        }
        let named = (0..=u16::MAX)
            .filter(|&v| !matches!(ErrorCode::from_u16(v), ErrorCode::Other(_)))
            .count();
        assert_eq!(named, codes.len(), "every named code is listed above");
    }

    #[test]
    fn reload_outcome_has_exactly_three_wire_values() {
        for v in 0..=u8::MAX {
            let expected = match v {
                0 => Some(ReloadOutcome::Applied),
                1 => Some(ReloadOutcome::Unchanged),
                2 => Some(ReloadOutcome::Failed),
                _ => None,
            };
            assert_eq!(ReloadOutcome::from_u8(v), expected);
            if let Some(o) = expected {
                assert_eq!(o.to_u8(), v);
            }
        }
    }

    #[test]
    fn exactly_the_kind_constants_have_names() {
        let named: Vec<u8> = (0..=u8::MAX).filter(|&k| kind::name(k).is_some()).collect();
        assert_eq!(
            named,
            [
                kind::HELLO,
                kind::WELCOME,
                kind::SUBSCRIBE,
                kind::UNSUBSCRIBE,
                kind::ADVERTISE,
                kind::TOPIC_ACK,
                kind::ACK,
                kind::SHM_HELLO,
                kind::PUBLISH,
                kind::DELIVER,
                kind::CREDIT,
                kind::LAGGED,
                kind::PING,
                kind::PONG,
                kind::ERROR,
                kind::STATS_REQUEST,
                kind::STATS,
                kind::RELOAD_REQUEST,
                kind::RELOAD_RESULT,
                kind::SHM_ATTACH,
                kind::SHM_GRANT,
                kind::SHM_RING_ADDED,
                kind::SHM_RING_REMOVED,
                kind::SHM_DETACH,
                kind::SHM_DETACHED,
                kind::SHM_SEGMENT,
                kind::SHM_SEGMENT_ADDED,
            ]
        );
    }
}

#[cfg(test)]
mod truncation {
    use super::*;

    #[test]
    fn a_text_that_fits_is_kept_whole() {
        assert_eq!(truncate_utf8("héllo", 6), "héllo");
        assert_eq!(truncate_utf8("", 0), "");
    }

    #[test]
    fn a_text_is_cut_at_the_last_char_boundary_within_the_limit() {
        // "é" is 2 bytes, "€" 3, "😀" 4: a cut inside any of them backs off to its start.
        assert_eq!(truncate_utf8("abé", 3), "ab");
        assert_eq!(truncate_utf8("a€", 3), "a");
        assert_eq!(truncate_utf8("a😀", 4), "a");
        assert_eq!(truncate_utf8("a😀", 5), "a😀");
        assert_eq!(truncate_utf8("😀", 0), "");
    }

    #[test]
    fn a_status_is_truncated_to_what_encodes() {
        let max = ConfigStatus::MAX_TEXT_LEN;
        // 21845 × 3 = 65535: "€" fills the limit exactly; one more byte in front pushes the
        // last char over it.
        let exact = "€".repeat(max / 3);
        let status = ConfigStatus {
            generation: 3,
            reloads: 9,
            last_error: format!("x{exact}"),
            last_change: exact.clone(),
            pending: "p".repeat(max + 10),
        }
        .truncated();
        assert_eq!(status.last_error.len(), max - 2);
        assert!(status.last_error.starts_with('x'));
        assert_eq!(status.last_change, exact);
        assert_eq!(status.pending.len(), max);
        assert_eq!((status.generation, status.reloads), (3, 9));
    }
}
