//! [`Frame`]: one protocol frame as an owned value, the body of each variant drawn in short.

use bytes::Bytes;
use uuid::Uuid;

use super::{
    kind, ConfigStatus, ErrorCode, GroupStats, MessageRules, NackAction, ReloadOutcome,
    RoutingKind, ShmRing, ShmRole, StartPosition, TopicStats,
};

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
    /// Client → broker (shm sessions). Body: `request_id u32 | role u8 | flags u8 | topic_len u8
    /// | topic`. `flags` bit 0 ([`SUBSCRIBE_NO_ECHO`](crate::frame::SUBSCRIBE_NO_ECHO)): a subscriber
    /// that does not read the rings of its own session's publishers (0 for a publisher); the
    /// other bits are reserved (malformed if set). Answered by `ShmGrant` or `Error`.
    ShmAttach {
        /// Echoed in the answer.
        request_id: u32,
        /// Publish or subscribe.
        role: ShmRole,
        /// Subscribers: leave out the rings of this session's own publishers.
        no_echo: bool,
        /// The topic name.
        topic: String,
    },
    /// Broker → client, answer to `ShmAttach`, sent with one fd per ring (a sealed memfd
    /// holding the ring, `docs/shm-layout.md`). Body: `request_id u32 | attachment u32 |
    /// topic_id u32 | role u8 | routing u8 | max_message_size u32 | ring_count u8 |`
    /// then per ring `ring_id u32 | slot u32`, then `flags u8 | max_headers u16 |
    /// max_header_bytes u32`: the topic's [`MessageRules`] as in `TopicAck` (`flags` bit 0
    /// [`ACK_STAMP`](crate::frame::ACK_STAMP), bit 1 [`ACK_PATTERN`](crate::frame::ACK_PATTERN);
    /// the other bits are reserved, malformed if set), which a shared-memory publisher
    /// enforces itself.
    ///
    /// The grant of a pattern subscription (`ACK_PATTERN` set) carries no ring and
    /// `topic_id` [`NO_TOPIC`](crate::frame::NO_TOPIC): each ring of each matching topic
    /// follows as a `ShmTopicRingAdded`, the ones matching at the grant right after it.
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
        /// The rings, in the order of the fds (at most [`MAX_RINGS_PER_GRANT`](crate::limits::MAX_RINGS_PER_GRANT)).
        rings: Vec<ShmRing>,
        /// What the topic asks of each message: stamps, header limits.
        rules: MessageRules,
        /// A pattern subscription: its rings come as `ShmTopicRingAdded`, each naming its topic.
        pattern: bool,
    },
    /// Broker → subscriber of a pattern: read this ring too, from the reserved slot; its
    /// messages were published on `topic`. Sent with the ring's fd. Body: `attachment u32 |
    /// ring_id u32 | slot u32 | topic_id u32 | topic_len u8 | topic`.
    ShmTopicRingAdded {
        /// The subscriber's (pattern) attachment.
        attachment: u32,
        /// The new ring.
        ring: ShmRing,
        /// The id of the topic the ring carries.
        topic_id: u32,
        /// The name of the topic the ring carries.
        topic: String,
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
        /// Queue topics: the consumer slot the message is addressed to; fanout: [`NO_SLOT`](super::NO_SLOT).
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
    /// Client → broker. Body: `request_id u32 | prefetch u32 | flags u8 | topic_len u8 | topic
    /// [topic_len]`. `prefetch` is the credit a queue consumer asks for (0 = the topic's
    /// default); fanout ignores it. `flags` bit 0: no echo. `topic` may be a pattern
    /// (`orders.*`, `orders.>`).
    Subscribe {
        /// Echoed in the `TopicAck` or `Error` that answers it.
        request_id: u32,
        /// Requested credit for queue topics; 0 asks for the topic's configured prefetch.
        prefetch: u32,
        /// Leave out what this connection publishes itself.
        no_echo: bool,
        /// The topic name.
        topic: String,
    },
    /// Client → broker: read a durable topic's log, alone (a replay subscription) or as a
    /// member of a consumer group. Body: `request_id u32 | prefetch u32 | flags u8 | start u8 |
    /// start_value u64 | group_len u8 | group [group_len] | topic_len u8 | topic [topic_len]`.
    /// `flags` is reserved (0; malformed if a bit is set); `start` is a [`StartPosition`]
    /// (malformed if unknown, or if `start_value` is not 0 for `New` and `Earliest`). Answered
    /// by `TopicAck` (its `topic_id` the subscription's id, with
    /// [`DURABLE_SUBSCRIPTION_BIT`](super::DURABLE_SUBSCRIPTION_BIT) set) or `Error`;
    /// deliveries are `DeliverEnvelope` frames with that id, each carrying the OFFSET block.
    SubscribeDurable {
        /// Echoed in the answer.
        request_id: u32,
        /// Most messages in flight: unacknowledged (a group) or not yet credited (a replay
        /// subscription); 0 asks for the broker's default.
        prefetch: u32,
        /// Where to start; for a group, only if the group does not exist yet.
        start: StartPosition,
        /// The consumer group to join (1 to 255 bytes), or `None` (an empty `group` on the
        /// wire) for a replay subscription of this connection alone.
        group: Option<String>,
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
    /// `request_id u32 | topic_id u32 | routing u8 | max_message_size u32 | prefetch u32 |
    /// flags u8 | max_headers u16 | max_header_bytes u32`.
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
        /// This answers a pattern subscription: `topic_id` is the subscription's id (bit 31
        /// set) and deliveries name their topic.
        pattern: bool,
        /// What the topic asks of messages (for a pattern: the broker's defaults).
        rules: MessageRules,
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
    /// Client → broker. Body: `topic_id u32 | envelope and payload [len - 6]`: a message with an
    /// envelope (`crate::envelope`). Not answered unless refused.
    PublishEnvelope {
        /// From the topic's `TopicAck`.
        topic_id: u32,
        /// The envelope, then the payload (checked when decoded).
        message: Bytes,
    },
    /// Broker → client. Body: `topic_id u32 | envelope and payload [len - 6]`.
    DeliverEnvelope {
        /// The subscription's id.
        topic_id: u32,
        /// The envelope, then the payload (checked when decoded).
        message: Bytes,
    },
    /// Client → broker: these messages of a durable subscription are done. Body:
    /// `subscription_id u32 | count u16 | offsets u64 × count`; `count` is at least 1 and the
    /// body exactly `6 + 8 × count` bytes. Not answered unless refused. A group commits them
    /// (once every earlier one is); a replay subscription takes one credit back per offset.
    AckMessages {
        /// The durable subscription's id, from its `TopicAck`.
        subscription_id: u32,
        /// The offsets acknowledged, 1 to `u16::MAX` of them.
        offsets: Vec<u64>,
    },
    /// Client → broker: give one message of a durable subscription back. Body:
    /// `subscription_id u32 | offset u64 | action u8 | delay_ms u32` (a [`NackAction`];
    /// malformed for an unknown action or a delay on one that takes none). Not answered unless
    /// refused.
    Nack {
        /// The durable subscription's id.
        subscription_id: u32,
        /// The message's offset.
        offset: u64,
        /// What the broker does with it.
        action: NackAction,
    },
    /// Client → broker: publish to a durable topic and be told when the message is stored.
    /// Body: `request_id u32 | topic_id u32 | flags u8 | message [rest]`. `flags` bit 0
    /// ([`PUBLISH_DURABLE_ENVELOPE`](super::PUBLISH_DURABLE_ENVELOPE)): the message begins
    /// with an envelope (checked when decoded); the other bits are reserved (malformed if
    /// set). Answered by `Published` once the message is durable, or `Error` with the
    /// request id.
    PublishDurable {
        /// Echoed in the answer.
        request_id: u32,
        /// From the topic's `TopicAck`.
        topic_id: u32,
        /// `message` begins with an envelope.
        enveloped: bool,
        /// The payload, or the envelope then the payload.
        message: Bytes,
    },
    /// Broker → client: a `PublishDurable` is stored. Body: `request_id u32 | offset u64`.
    Published {
        /// The request this answers.
        request_id: u32,
        /// The message's offset in the topic's log.
        offset: u64,
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
        /// The topic concerned, or [`NO_TOPIC`](super::NO_TOPIC) when none.
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
    /// then per topic `name_len u8 | name | routing u8 | subscribers u32 | published u64 | delivered u64 | dropped u64 | queued u64 | shm_subscribers u32 | flags u8 |
    /// first_offset u64 | next_offset u64 | retained_messages u64 | retained_bytes u64`,
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
    /// Client → broker: the consumer groups of a durable topic. Body: `request_id u32 |
    /// topic_len u8 | topic`. Answered by `Groups` or `Error`.
    GroupsRequest {
        /// Echoed in the answer.
        request_id: u32,
        /// The topic name.
        topic: String,
    },
    /// Broker → client, answer to `GroupsRequest`. Body: `request_id u32 | count u16 |` then
    /// per group `name_len u8 | name | committed u64 | next_offset u64 | pending u32 |
    /// members u32 | redelivered u64 | dead_lettered u64`.
    Groups {
        /// The request this answers.
        request_id: u32,
        /// One entry per group (at most `u16::MAX`).
        groups: Vec<GroupStats>,
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
            Frame::PublishEnvelope { .. } => kind::PUBLISH_ENVELOPE,
            Frame::DeliverEnvelope { .. } => kind::DELIVER_ENVELOPE,
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
            Frame::ShmTopicRingAdded { .. } => kind::SHM_TOPIC_RING_ADDED,
            Frame::ShmRingRemoved { .. } => kind::SHM_RING_REMOVED,
            Frame::ShmDetach { .. } => kind::SHM_DETACH,
            Frame::ShmDetached { .. } => kind::SHM_DETACHED,
            Frame::ShmSegment { .. } => kind::SHM_SEGMENT,
            Frame::ShmSegmentAdded { .. } => kind::SHM_SEGMENT_ADDED,
            Frame::SubscribeDurable { .. } => kind::SUBSCRIBE_DURABLE,
            Frame::AckMessages { .. } => kind::ACK_MESSAGES,
            Frame::Nack { .. } => kind::NACK,
            Frame::PublishDurable { .. } => kind::PUBLISH_DURABLE,
            Frame::Published { .. } => kind::PUBLISHED,
            Frame::GroupsRequest { .. } => kind::GROUPS_REQUEST,
            Frame::Groups { .. } => kind::GROUPS,
        }
    }
}
