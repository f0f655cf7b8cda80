//! The small values frames carry: routing kind, shared-memory role and ring, topic counters.

use super::LogStats;

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

/// What a topic asks of the messages published to it, told in its `TopicAck`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MessageRules {
    /// Publishers stamp every message with an id and a timestamp (the topic's `stamp`).
    pub stamp: bool,
    /// Most headers on one message.
    pub max_headers: u16,
    /// Most bytes of header keys and values on one message.
    pub max_header_bytes: u32,
}

impl Default for MessageRules {
    /// The broker's defaults: no stamps, 32 headers, 4096 bytes of them.
    fn default() -> Self {
        MessageRules {
            stamp: false,
            max_headers: 32,
            max_header_bytes: 4096,
        }
    }
}

/// `TopicAck` flag: publishers stamp every message ([`MessageRules::stamp`]).
pub const ACK_STAMP: u8 = 1 << 0;
/// `TopicAck` flag: the answer to a pattern subscription (its id has bit 31 set).
pub const ACK_PATTERN: u8 = 1 << 1;
/// `Subscribe` flag: leave out what this connection publishes itself.
pub const SUBSCRIBE_NO_ECHO: u8 = 1 << 0;

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
    /// counts their attachments).
    pub shm_subscribers: u32,
    /// What kind of topic this is: [`TopicStats::DYNAMIC`], [`TopicStats::DURABLE`]; other
    /// bits are 0 (a receiver ignores those it does not know). On the wire [`TopicStats::log`]
    /// decides the `DURABLE` bit: an encoder sets it exactly when `log` is `Some`.
    pub flags: u8,
    /// What the topic's log holds: `Some` exactly when the topic is durable (the `DURABLE`
    /// flag). The wire carries its four counters in every entry, zeros for a topic that is
    /// not durable.
    pub log: Option<LogStats>,
}

impl TopicStats {
    /// Bit of [`TopicStats::flags`]: the topic was created on first use (`auto_create`) and
    /// is removed after it has had no subscriber and no publisher for the broker's
    /// `idle_timeout_ms`.
    pub const DYNAMIC: u8 = 0x01;

    /// Bit of [`TopicStats::flags`]: the topic is durable: its messages are written to a log
    /// on disk, which [`TopicStats::log`] describes.
    pub const DURABLE: u8 = 0x02;

    /// Whether [`TopicStats::DYNAMIC`] is set.
    pub fn is_dynamic(&self) -> bool {
        self.flags & Self::DYNAMIC != 0
    }

    /// Whether the topic is durable (it has a log).
    pub fn is_durable(&self) -> bool {
        self.log.is_some()
    }
}
