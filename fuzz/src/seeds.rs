//! The seed corpus: valid encoded frames of every kind, a few whole sessions, and a few invalid
//! headers and bodies, so the fuzzer starts from inputs that reach every body parser; first
//! frames for the handshake; real ring and payload segments; and configs, valid and broken.

use bytes::{BufMut, Bytes, BytesMut};
use mycelium_transport::envelope::{Envelope, Headers, Reply, ReplyStatus, Stamper};
use mycelium_transport::{
    encode_frame, kind, ConfigStatus, ErrorCode, Frame, GroupStats, LogStats, MessageRules,
    NackAction, ReloadOutcome, RoutingKind, ShmRing, ShmRole, StartPosition, TopicStats,
    DURABLE_SUBSCRIPTION_BIT, HANDSHAKE_MAX_FRAME_LEN, MAX_NAME_LEN, NO_SLOT, NO_TOPIC,
    PROTOCOL_VERSION,
};
use uuid::Uuid;

/// An enveloped message with every block (the concrete topic only if `topic`: a delivery to a
/// pattern subscription) before `payload`.
pub fn enveloped(topic: bool, payload: &[u8]) -> Bytes {
    enveloped_at(topic, None, payload)
}

/// As [`enveloped`], with the OFFSET block if `offset` (a delivery read from a durable log).
pub fn enveloped_at(topic: bool, offset: Option<u64>, payload: &[u8]) -> Bytes {
    let mut headers = Headers::new();
    for (key, value) in [
        ("trace-id", "4bf92f35"),
        ("content-type", "text/plain"),
        ("k", ""),
    ] {
        if headers.insert(key, value).is_err() {
            unreachable!("the seed's headers are valid");
        }
    }
    let envelope = Envelope {
        stamp: Some(Stamper::new().stamp_at(1_765_015_200_123_456_789)),
        topic: topic.then_some("orders.eu"),
        reply_to: Some("_INBOX.00112233445566778899aabbccddeeff"),
        reply: Some(Reply {
            status: ReplyStatus::Error,
            code: 503,
            correlation: Uuid::from_u128(7),
        }),
        headers: Some(&headers),
        offset,
    };
    let mut bytes = BytesMut::new();
    envelope.encode(&mut bytes);
    bytes.extend_from_slice(payload);
    bytes.freeze()
}

fn topic_stats(name: &str, routing: RoutingKind) -> TopicStats {
    TopicStats {
        name: name.to_owned(),
        routing,
        subscribers: 3,
        published: u64::MAX,
        delivered: 1 << 40,
        dropped: 7,
        queued: 0,
        shm_subscribers: 2,
        flags: TopicStats::DYNAMIC,
        log: None,
    }
}

/// A durable topic's entry, its log holding offsets 1000 up to 2^33.
fn durable_topic_stats(name: &str) -> TopicStats {
    TopicStats {
        flags: TopicStats::DURABLE,
        log: Some(LogStats {
            first_offset: 1000,
            next_offset: 1 << 33,
            retained_messages: (1 << 33) - 1000,
            retained_bytes: 1 << 40,
        }),
        ..topic_stats(name, RoutingKind::Fanout)
    }
}

fn group_stats(name: &str) -> GroupStats {
    GroupStats {
        name: name.to_owned(),
        committed: 40,
        next_offset: 42,
        pending: 2,
        members: 1,
        redelivered: 3,
        dead_lettered: 1,
    }
}

/// A config status with every text non-empty, one of them not ASCII.
fn config_status() -> ConfigStatus {
    ConfigStatus {
        generation: 4,
        reloads: 6,
        last_error: "broker.toml:4:9: topics.t.routing: unknown \"quéue\"".into(),
        last_change: "+topic signals, ~execution.buffer_size 50000→80000, -topic old".into(),
        pending: "server.socket_path (needs a restart)".into(),
    }
}

/// One or more valid frames of every kind, each named for its file.
pub fn frames() -> Vec<(&'static str, Frame)> {
    let long_name = "n".repeat(MAX_NAME_LEN);
    vec![
        (
            "hello",
            Frame::Hello {
                client_id: Uuid::from_u128(0x0011_2233_4455_6677_8899_aabb_ccdd_eeff),
                name: "cli".into(),
            },
        ),
        (
            "hello-long-name",
            Frame::Hello {
                client_id: Uuid::nil(),
                name: long_name.clone(),
            },
        ),
        (
            "welcome",
            Frame::Welcome {
                broker_id: Uuid::from_u128(42),
                connection_id: 1,
                max_message_size: 1 << 20,
                max_frame_len: (1 << 20) + 6,
                server: "mycelium 0.1.0".into(),
            },
        ),
        (
            "subscribe",
            Frame::Subscribe {
                request_id: 1,
                prefetch: 64,
                no_echo: false,
                topic: "metrics.cpu".into(),
            },
        ),
        (
            "unsubscribe",
            Frame::Unsubscribe {
                request_id: 2,
                topic_id: 9,
            },
        ),
        (
            "advertise",
            Frame::Advertise {
                request_id: 3,
                topic: "jobs".into(),
            },
        ),
        (
            "advertise-long-topic",
            Frame::Advertise {
                request_id: 3,
                topic: long_name,
            },
        ),
        (
            "topic-ack",
            Frame::TopicAck {
                request_id: 4,
                topic_id: 5,
                routing: RoutingKind::Queue,
                max_message_size: 65_536,
                prefetch: 32,
                pattern: false,
                rules: mycelium_transport::MessageRules::default(),
            },
        ),
        ("ack", Frame::Ack { request_id: 6 }),
        (
            "publish",
            Frame::Publish {
                topic_id: 3,
                payload: Bytes::from_static(b"hi"),
            },
        ),
        (
            "publish-empty",
            Frame::Publish {
                topic_id: 0,
                payload: Bytes::new(),
            },
        ),
        (
            "publish-5000",
            Frame::Publish {
                topic_id: 1,
                payload: Bytes::from(vec![0xab; 5000]),
            },
        ),
        (
            "publish-envelope",
            Frame::PublishEnvelope {
                topic_id: 3,
                message: enveloped(false, b"hi"),
            },
        ),
        (
            "deliver-envelope-pattern",
            Frame::DeliverEnvelope {
                topic_id: 0x8000_0001,
                message: enveloped(true, b"\x00\xffbinary"),
            },
        ),
        (
            "deliver",
            Frame::Deliver {
                topic_id: 3,
                payload: Bytes::from_static(b"\x00\xffbinary"),
            },
        ),
        (
            "credit",
            Frame::Credit {
                topic_id: 5,
                credit: 16,
            },
        ),
        (
            "lagged",
            Frame::Lagged {
                topic_id: 5,
                skipped: 1_000,
            },
        ),
        ("ping", Frame::Ping { token: 7 }),
        ("pong", Frame::Pong { token: u64::MAX }),
        (
            "error",
            Frame::Error {
                request_id: 0,
                code: ErrorCode::MessageTooLarge,
                fatal: false,
                topic_id: 3,
                message: "too large".into(),
                refused: 1,
            },
        ),
        (
            "error-fatal-unknown-code",
            Frame::Error {
                request_id: 8,
                code: ErrorCode::Other(1000),
                fatal: true,
                topic_id: NO_TOPIC,
                message: "é — ünïcode".into(),
                refused: 0,
            },
        ),
        ("stats-request", Frame::StatsRequest { request_id: 9 }),
        (
            "stats-empty",
            Frame::Stats {
                request_id: 10,
                connections: 0,
                uptime_ms: 0,
                topics: vec![],
                config: ConfigStatus::default(),
            },
        ),
        (
            "stats",
            Frame::Stats {
                request_id: 10,
                connections: 2,
                uptime_ms: 123_456,
                topics: vec![
                    topic_stats("a", RoutingKind::Fanout),
                    topic_stats("jobs", RoutingKind::Queue),
                ],
                config: config_status(),
            },
        ),
        (
            "stats-durable",
            Frame::Stats {
                request_id: 11,
                connections: 1,
                uptime_ms: 5,
                topics: vec![
                    durable_topic_stats("orders"),
                    topic_stats("a", RoutingKind::Fanout),
                ],
                config: ConfigStatus::default(),
            },
        ),
        (
            "subscribe-durable-group",
            Frame::SubscribeDurable {
                request_id: 20,
                prefetch: 1000,
                start: StartPosition::Earliest,
                group: Some("billing".into()),
                topic: "orders".into(),
            },
        ),
        (
            "subscribe-durable-replay-offset",
            Frame::SubscribeDurable {
                request_id: 21,
                prefetch: 0,
                start: StartPosition::Offset(1 << 33),
                group: None,
                topic: "orders".into(),
            },
        ),
        (
            "subscribe-durable-timestamp",
            Frame::SubscribeDurable {
                request_id: 22,
                prefetch: 64,
                start: StartPosition::Timestamp(1_765_015_200_123_456_789),
                group: Some("g".repeat(MAX_NAME_LEN)),
                topic: "t".into(),
            },
        ),
        (
            "subscribe-durable-new",
            Frame::SubscribeDurable {
                request_id: 23,
                prefetch: 1,
                start: StartPosition::New,
                group: Some("g".into()),
                topic: "t".into(),
            },
        ),
        (
            "ack-messages",
            Frame::AckMessages {
                subscription_id: DURABLE_SUBSCRIPTION_BIT | 1,
                offsets: vec![5, 6, 1 << 40, u64::MAX],
            },
        ),
        (
            "ack-messages-one",
            Frame::AckMessages {
                subscription_id: DURABLE_SUBSCRIPTION_BIT | 2,
                offsets: vec![0],
            },
        ),
        (
            "nack-requeue",
            Frame::Nack {
                subscription_id: DURABLE_SUBSCRIPTION_BIT | 1,
                offset: 7,
                action: NackAction::Requeue,
            },
        ),
        (
            "nack-requeue-after",
            Frame::Nack {
                subscription_id: DURABLE_SUBSCRIPTION_BIT | 1,
                offset: 8,
                action: NackAction::RequeueAfter(std::time::Duration::from_millis(1500)),
            },
        ),
        (
            "nack-dead-letter",
            Frame::Nack {
                subscription_id: DURABLE_SUBSCRIPTION_BIT | 1,
                offset: 9,
                action: NackAction::DeadLetter,
            },
        ),
        (
            "publish-durable",
            Frame::PublishDurable {
                request_id: 24,
                topic_id: 3,
                enveloped: false,
                message: Bytes::from_static(b"hi"),
            },
        ),
        (
            "publish-durable-enveloped",
            Frame::PublishDurable {
                request_id: 25,
                topic_id: 3,
                enveloped: true,
                message: enveloped(false, b"durable"),
            },
        ),
        (
            "published",
            Frame::Published {
                request_id: 25,
                offset: 41,
            },
        ),
        (
            "groups-request",
            Frame::GroupsRequest {
                request_id: 26,
                topic: "orders".into(),
            },
        ),
        (
            "groups",
            Frame::Groups {
                request_id: 26,
                groups: vec![
                    group_stats("billing"),
                    group_stats(&"g".repeat(MAX_NAME_LEN)),
                ],
            },
        ),
        (
            "groups-none",
            Frame::Groups {
                request_id: 27,
                groups: vec![],
            },
        ),
        (
            "deliver-envelope-durable",
            Frame::DeliverEnvelope {
                topic_id: DURABLE_SUBSCRIPTION_BIT | 1,
                message: enveloped_at(false, Some(41), b"replayed"),
            },
        ),
        (
            "deliver-envelope-offset-only",
            Frame::DeliverEnvelope {
                topic_id: DURABLE_SUBSCRIPTION_BIT | 1,
                message: Bytes::from_static(b"\x20\x29\0\0\0\0\0\0\0hi"),
            },
        ),
        ("reload-request", Frame::ReloadRequest { request_id: 15 }),
        (
            "reload-applied",
            Frame::ReloadResult {
                request_id: 15,
                outcome: ReloadOutcome::Applied,
                status: ConfigStatus {
                    pending: String::new(),
                    last_error: String::new(),
                    ..config_status()
                },
            },
        ),
        (
            "reload-unchanged",
            Frame::ReloadResult {
                request_id: 16,
                outcome: ReloadOutcome::Unchanged,
                status: ConfigStatus {
                    generation: 1,
                    reloads: 1,
                    ..ConfigStatus::default()
                },
            },
        ),
        (
            "reload-failed",
            Frame::ReloadResult {
                request_id: 17,
                outcome: ReloadOutcome::Failed,
                status: config_status(),
            },
        ),
        (
            "error-topic-removed",
            Frame::Error {
                request_id: 0,
                code: ErrorCode::TopicRemoved,
                fatal: false,
                topic_id: 3,
                message: "topic t removed".into(),
                refused: 0,
            },
        ),
        (
            "error-batch-refused",
            Frame::Error {
                request_id: 0,
                code: ErrorCode::SlowConsumer,
                fatal: false,
                topic_id: 3,
                message: "50 dropped".into(),
                refused: 50,
            },
        ),
        (
            "shm-hello",
            Frame::ShmHello {
                client_id: Uuid::from_u128(2),
                name: "shm".into(),
            },
        ),
        (
            "shm-attach",
            Frame::ShmAttach {
                request_id: 11,
                role: ShmRole::Subscribe,
                no_echo: true,
                topic: "market_data".into(),
            },
        ),
        (
            "shm-grant",
            Frame::ShmGrant {
                request_id: 11,
                attachment: 4,
                topic_id: 2,
                role: ShmRole::Subscribe,
                routing: RoutingKind::Fanout,
                max_message_size: 65536,
                rings: vec![
                    ShmRing {
                        ring_id: 1,
                        slot: 0,
                    },
                    ShmRing {
                        ring_id: 9,
                        slot: 3,
                    },
                ],
                rules: MessageRules::default(),
                pattern: false,
            },
        ),
        (
            "shm-grant-publisher",
            Frame::ShmGrant {
                request_id: 12,
                attachment: 5,
                topic_id: 3,
                role: ShmRole::Publish,
                routing: RoutingKind::Queue,
                max_message_size: 16384,
                rings: vec![ShmRing {
                    ring_id: 10,
                    slot: NO_SLOT,
                }],
                rules: MessageRules {
                    stamp: true,
                    max_headers: 8,
                    max_header_bytes: 512,
                },
                pattern: false,
            },
        ),
        (
            "shm-ring-added",
            Frame::ShmRingAdded {
                attachment: 4,
                ring: ShmRing {
                    ring_id: 11,
                    slot: 1,
                },
            },
        ),
        (
            "shm-topic-ring-added",
            Frame::ShmTopicRingAdded {
                attachment: 4,
                ring: ShmRing {
                    ring_id: 12,
                    slot: 1,
                },
                topic_id: 7,
                topic: "orders.eu".into(),
            },
        ),
        (
            "shm-ring-removed",
            Frame::ShmRingRemoved {
                attachment: 4,
                ring_id: 9,
            },
        ),
        (
            "shm-segment",
            Frame::ShmSegment {
                request_id: 14,
                attachment: 5,
                segment: 3,
                len: 16 << 20,
                recipient: NO_SLOT,
            },
        ),
        (
            "shm-segment-added",
            Frame::ShmSegmentAdded {
                attachment: 4,
                ring_id: 10,
                segment: 3,
                len: 16 << 20,
                dropped: false,
            },
        ),
        (
            "shm-segment-dropped",
            Frame::ShmSegmentAdded {
                attachment: 4,
                ring_id: 10,
                segment: 4,
                len: 1 << 20,
                dropped: true,
            },
        ),
        (
            "shm-detach",
            Frame::ShmDetach {
                request_id: 13,
                attachment: 4,
            },
        ),
        (
            "shm-detached",
            Frame::ShmDetached {
                attachment: 4,
                code: ErrorCode::SlowConsumer,
                message: "fell a ring behind".into(),
            },
        ),
    ]
}

/// `frames` encoded back to back.
fn stream(frames: &[Frame]) -> Vec<u8> {
    let mut buf = BytesMut::new();
    for frame in frames {
        encode_frame(frame, &mut buf).expect("seed frames are encodable");
    }
    buf.to_vec()
}

/// A config status block (generation 1, reloads 1) around the three texts, as bytes.
fn config_block(error: &[u8], change: &[u8], pending: &[u8]) -> Vec<u8> {
    let mut block = [1u64.to_le_bytes(), 1u64.to_le_bytes()].concat();
    for text in [error, change, pending] {
        block.extend_from_slice(
            &u16::try_from(text.len())
                .expect("short seed text")
                .to_le_bytes(),
        );
        block.extend_from_slice(text);
    }
    block
}

/// A frame with a valid header around `body`, whatever the body holds.
fn raw(version: u8, frame_kind: u8, body: &[u8]) -> Vec<u8> {
    let mut buf = BytesMut::new();
    buf.put_u32_le(u32::try_from(body.len() + 2).expect("small seed body"));
    buf.put_u8(version);
    buf.put_u8(frame_kind);
    buf.put_slice(body);
    buf.to_vec()
}

/// Every seed input for the `decode_frames` target, by file name.
pub fn decode_frames_inputs() -> Vec<(String, Vec<u8>)> {
    let frames = frames();
    let mut inputs: Vec<(String, Vec<u8>)> = frames
        .iter()
        .map(|(name, frame)| (format!("frame-{name}"), stream(std::slice::from_ref(frame))))
        .collect();
    let all: Vec<Frame> = frames.into_iter().map(|(_, frame)| frame).collect();
    inputs.push(("stream-every-kind".into(), stream(&all)));
    let session = stream(&[
        Frame::Hello {
            client_id: Uuid::from_u128(1),
            name: "cli".into(),
        },
        Frame::Advertise {
            request_id: 1,
            topic: "t".into(),
        },
        Frame::Publish {
            topic_id: 3,
            payload: Bytes::from_static(b"hi"),
        },
        Frame::Ping { token: 7 },
    ]);
    inputs.push(("stream-session".into(), session.clone()));
    let mut cut = session;
    cut.truncate(cut.len() - 3);
    inputs.push(("stream-session-cut".into(), cut));
    let mut invalid = vec![
        ("bad-version", raw(1, kind::PING, &[0; 8])),
        (
            "bad-envelope-flags",
            raw(
                PROTOCOL_VERSION,
                kind::PUBLISH_ENVELOPE,
                &[3, 0, 0, 0, 0x40, b'x'],
            ),
        ),
        (
            "bad-envelope-offset-cut",
            raw(
                PROTOCOL_VERSION,
                kind::DELIVER_ENVELOPE,
                &[1, 0, 0, 0x40, 0x20, 1, 2, 3],
            ),
        ),
        (
            "bad-subscribe-durable-start",
            raw(
                PROTOCOL_VERSION,
                kind::SUBSCRIBE_DURABLE,
                &[
                    1, 0, 0, 0, 64, 0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, b't',
                ],
            ),
        ),
        (
            "bad-subscribe-durable-start-value",
            raw(
                PROTOCOL_VERSION,
                kind::SUBSCRIBE_DURABLE,
                &[
                    1, 0, 0, 0, 64, 0, 0, 0, 0, 1, 9, 0, 0, 0, 0, 0, 0, 0, 0, 1, b't',
                ],
            ),
        ),
        (
            "bad-subscribe-durable-flags",
            raw(
                PROTOCOL_VERSION,
                kind::SUBSCRIBE_DURABLE,
                &[
                    1, 0, 0, 0, 64, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, b'g', 1, b't',
                ],
            ),
        ),
        (
            "bad-ack-messages-none",
            raw(PROTOCOL_VERSION, kind::ACK_MESSAGES, &[1, 0, 0, 0x40, 0, 0]),
        ),
        (
            "bad-ack-messages-count",
            raw(
                PROTOCOL_VERSION,
                kind::ACK_MESSAGES,
                &[1, 0, 0, 0x40, 0xff, 0xff, 5, 0, 0, 0, 0, 0, 0, 0],
            ),
        ),
        (
            "bad-nack-action",
            raw(
                PROTOCOL_VERSION,
                kind::NACK,
                &[1, 0, 0, 0x40, 7, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0],
            ),
        ),
        (
            "bad-nack-requeue-delay",
            raw(
                PROTOCOL_VERSION,
                kind::NACK,
                &[1, 0, 0, 0x40, 7, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0],
            ),
        ),
        (
            "bad-publish-durable-flags",
            raw(
                PROTOCOL_VERSION,
                kind::PUBLISH_DURABLE,
                &[1, 0, 0, 0, 3, 0, 0, 0, 2, b'x'],
            ),
        ),
        (
            "bad-publish-durable-envelope",
            raw(
                PROTOCOL_VERSION,
                kind::PUBLISH_DURABLE,
                &[1, 0, 0, 0, 3, 0, 0, 0, 1, 0x80, b'x'],
            ),
        ),
        (
            "bad-groups-count",
            raw(
                PROTOCOL_VERSION,
                kind::GROUPS,
                &[1, 0, 0, 0, 0xff, 0xff, 1, b'g'],
            ),
        ),
        (
            "bad-stats-log-not-durable",
            raw(
                PROTOCOL_VERSION,
                kind::STATS,
                // One entry without DURABLE whose first_offset is 1, then an empty block.
                &[
                    &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0][..],
                    &[1, b'a', 0][..],
                    &[0; 41][..],
                    &[1][..],
                    &[0; 31][..],
                    &config_block(b"", b"", b"")[..],
                ]
                .concat(),
            ),
        ),
        (
            "bad-stats-entry-of-version-2",
            raw(
                PROTOCOL_VERSION,
                kind::STATS,
                // One topic entry of the version-2 layout, without the log counters.
                &[
                    &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0][..],
                    &[1, b'a', 0][..],
                    &[0; 41][..],
                    &config_block(b"", b"", b"")[..],
                ]
                .concat(),
            ),
        ),
        (
            "bad-envelope-header-key",
            raw(
                PROTOCOL_VERSION,
                kind::DELIVER_ENVELOPE,
                &[3, 0, 0, 0, 0x10, 1, 0, 2, b'a', b' ', 0, 0],
            ),
        ),
        (
            "bad-envelope-cut",
            raw(
                PROTOCOL_VERSION,
                kind::PUBLISH_ENVELOPE,
                &[3, 0, 0, 0, 0x01, 1, 2, 3],
            ),
        ),
        (
            "bad-subscribe-flags",
            raw(
                PROTOCOL_VERSION,
                kind::SUBSCRIBE,
                &[1, 0, 0, 0, 0, 0, 0, 0, 0x02, 1, b't'],
            ),
        ),
        ("bad-kind", raw(PROTOCOL_VERSION, 0x99, &[])),
        ("bad-len-below-2", vec![1, 0, 0, 0, PROTOCOL_VERSION]),
        ("bad-too-large", vec![0xff, 0xff, 0xff, 0xff, 1, 1]),
        (
            "bad-publish-short",
            raw(PROTOCOL_VERSION, kind::PUBLISH, &[1, 2]),
        ),
        (
            "bad-subscribe-topic-past-end",
            raw(
                PROTOCOL_VERSION,
                kind::SUBSCRIBE,
                &[1, 0, 0, 0, 0, 0, 0, 0, 9, b't'],
            ),
        ),
        (
            "bad-advertise-utf8",
            raw(
                PROTOCOL_VERSION,
                kind::ADVERTISE,
                &[1, 0, 0, 0, 2, 0xc3, 0x28],
            ),
        ),
        (
            "bad-ack-trailing",
            raw(PROTOCOL_VERSION, kind::ACK, &[1, 0, 0, 0, 0]),
        ),
        (
            "bad-stats-count",
            raw(
                PROTOCOL_VERSION,
                kind::STATS,
                &[
                    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff,
                ],
            ),
        ),
        (
            "bad-stats-config-cut",
            raw(
                PROTOCOL_VERSION,
                kind::STATS,
                // No topics, then a config block without its last byte.
                &[&[0; 20][..], &config_block(b"", b"", b"p")[..22]].concat(),
            ),
        ),
        (
            "bad-stats-entry-without-shm-subscribers",
            raw(
                PROTOCOL_VERSION,
                kind::STATS,
                // One topic entry of the revision before `shm_subscribers` (38 + n bytes).
                &[
                    &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0][..],
                    &[1, b'a', 0][..],
                    &[0; 36][..],
                    &config_block(b"", b"", b"")[..],
                ]
                .concat(),
            ),
        ),
        (
            "bad-stats-entry-without-flags",
            raw(
                PROTOCOL_VERSION,
                kind::STATS,
                // One topic entry of the layout before `flags` (42 + n bytes).
                &[
                    &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0][..],
                    &[1, b'a', 0][..],
                    &[0; 40][..],
                    &config_block(b"", b"", b"")[..],
                ]
                .concat(),
            ),
        ),
        (
            "bad-reload-outcome",
            raw(
                PROTOCOL_VERSION,
                kind::RELOAD_RESULT,
                &[&[1, 0, 0, 0, 3][..], &config_block(b"", b"", b"")].concat(),
            ),
        ),
        (
            "bad-reload-text-past-end",
            raw(
                PROTOCOL_VERSION,
                kind::RELOAD_RESULT,
                // error_len 0xffff with one byte behind it.
                &[&[1, 0, 0, 0, 2][..], &[1; 16], &[0xff, 0xff, b'x']].concat(),
            ),
        ),
        (
            "bad-shm-grant-ring-count",
            raw(
                PROTOCOL_VERSION,
                kind::SHM_GRANT,
                &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 200],
            ),
        ),
        (
            "bad-shm-attach-role",
            raw(
                PROTOCOL_VERSION,
                kind::SHM_ATTACH,
                &[1, 0, 0, 0, 9, 0, 1, b't'],
            ),
        ),
        (
            "bad-shm-attach-flags",
            raw(
                PROTOCOL_VERSION,
                kind::SHM_ATTACH,
                &[1, 0, 0, 0, 1, 2, 1, b't'],
            ),
        ),
        ("http-get", b"GET / HTTP/1.1\r\n\r\n".to_vec()),
    ];
    // A malformed body followed by a valid frame: the decoder resynchronises.
    let mut resync = raw(PROTOCOL_VERSION, kind::ACK, &[1, 0, 0, 0, 0]);
    resync.extend(stream(&[Frame::Ping { token: 1 }]));
    invalid.push(("bad-then-ping", resync));
    inputs.extend(
        invalid
            .into_iter()
            .map(|(name, bytes)| (name.to_owned(), bytes)),
    );
    inputs
}

/// Every seed input for the `decode_split` target: the `decode_frames` seeds behind two split
/// bytes, split inside the length, right after the header, and in the middle.
/// Enveloped messages: every block, each block alone, and broken ones.
pub fn envelope_inputs() -> Vec<(String, Vec<u8>)> {
    let full = enveloped(true, b"payload").to_vec();
    let mut inputs = vec![
        ("full".to_owned(), full.clone()),
        ("publish".to_owned(), enveloped(false, b"").to_vec()),
        ("plain".to_owned(), vec![0, b'x']),
        ("empty-headers".to_owned(), vec![0x10, 0, 0, b'p']),
        ("reply-no-responders".to_owned(), {
            let mut v = vec![0x08, 2, 0, 0];
            v.extend_from_slice(&[0x11; 16]);
            v
        }),
        ("reserved-flags".to_owned(), vec![0xe0]),
        (
            "reserved-flag-6".to_owned(),
            vec![0x40, 0, 0, 0, 0, 0, 0, 0, 0],
        ),
        ("offset-only".to_owned(), {
            let mut v = vec![0x20];
            v.extend_from_slice(&41u64.to_le_bytes());
            v.extend_from_slice(b"payload");
            v
        }),
        ("offset-cut".to_owned(), vec![0x20, 1, 2, 3]),
        (
            "offset-after-every-block".to_owned(),
            enveloped_at(true, Some(u64::MAX), b"p").to_vec(),
        ),
        (
            "offset-after-headers".to_owned(),
            vec![
                0x30, 1, 0, 1, b'k', 1, 0, b'v', 7, 0, 0, 0, 0, 0, 0, 0, b'p',
            ],
        ),
        ("bad-status".to_owned(), vec![0x08, 9, 0, 0]),
        ("key-space".to_owned(), vec![0x10, 1, 0, 1, b' ', 0, 0]),
        (
            "value-not-utf8".to_owned(),
            vec![0x10, 1, 0, 1, b'k', 1, 0, 0xc3],
        ),
    ];
    for cut in [1, 10, 30, full.len() / 2] {
        inputs.push((format!("full-cut-{cut}"), full[..cut].to_vec()));
    }
    inputs
}

pub fn decode_split_inputs() -> Vec<(String, Vec<u8>)> {
    let mut inputs = Vec::new();
    for (name, bytes) in decode_frames_inputs() {
        for split in [2u16, 6, (bytes.len() / 2) as u16] {
            let mut input = split.to_le_bytes().to_vec();
            input.extend_from_slice(&bytes);
            inputs.push((format!("{name}-at-{split}"), input));
        }
    }
    inputs
}

/// Every seed input for the `handshake` target: a selector byte (socket reads of 1 byte or of
/// 255, shared memory enabled or not) in front of each first frame a connection may start with,
/// the broker's answers, and broken or oversized headers.
pub fn handshake_inputs() -> Vec<(String, Vec<u8>)> {
    let hello = Frame::Hello {
        client_id: Uuid::from_u128(7),
        name: "cli".into(),
    };
    let shm_hello = Frame::ShmHello {
        client_id: Uuid::from_u128(8),
        name: "shm-cli".into(),
    };
    let mut streams: Vec<(String, Vec<u8>)> = Vec::new();
    for (name, frame) in frames() {
        streams.push((format!("first-{name}"), stream(&[frame])));
    }
    streams.push((
        "hello-then-subscribe".into(),
        stream(&[
            hello.clone(),
            Frame::Subscribe {
                request_id: 1,
                prefetch: 64,
                no_echo: false,
                topic: "metrics".into(),
            },
        ]),
    ));
    streams.push((
        "shm-hello-then-attach".into(),
        stream(&[
            shm_hello.clone(),
            Frame::ShmAttach {
                request_id: 1,
                role: ShmRole::Subscribe,
                no_echo: false,
                topic: "t".into(),
            },
        ]),
    ));
    let mut cut = stream(&[hello.clone()]);
    cut.pop();
    streams.push(("hello-cut".into(), cut));
    // `len` one past the handshake limit, at it, and far beyond.
    for (name, len) in [
        ("len-over-limit", HANDSHAKE_MAX_FRAME_LEN as u32 + 1),
        ("len-at-limit", HANDSHAKE_MAX_FRAME_LEN as u32),
        ("len-huge", u32::MAX),
    ] {
        let mut bytes = len.to_le_bytes().to_vec();
        bytes.extend([PROTOCOL_VERSION, kind::HELLO]);
        bytes.extend(std::iter::repeat_n(0x41, 64));
        streams.push((name.into(), bytes));
    }
    streams.push(("bad-version".into(), raw(2, kind::HELLO, &[0; 20])));
    streams.push(("bad-kind".into(), raw(PROTOCOL_VERSION, 0x99, &[])));
    streams.push((
        "hello-name-past-end".into(),
        raw(
            PROTOCOL_VERSION,
            kind::HELLO,
            &[&[0; 16][..], &[9, b'x']].concat(),
        ),
    ));
    streams.push(("http-get".into(), b"GET / HTTP/1.1\r\n\r\n".to_vec()));
    let mut inputs = Vec::new();
    for (name, bytes) in streams {
        for (suffix, selector) in [("", 0xfe_u8), ("-by-byte-shm-off", 0x01)] {
            let mut input = vec![selector];
            input.extend_from_slice(&bytes);
            inputs.push((format!("{name}{suffix}"), input));
        }
    }
    inputs
}

/// One `shm_segment` op (see `shm_checks.rs`): `code | arg | offset u16 | value u32`.
fn shm_op(code: u8, arg: u8, offset: u16, value: u32) -> [u8; 8] {
    let mut op = [code, arg, 0, 0, 0, 0, 0, 0];
    op[2..4].copy_from_slice(&offset.to_le_bytes());
    op[4..].copy_from_slice(&value.to_le_bytes());
    op
}

/// The bytes of a segment.
fn segment_bytes(segment: &mycelium_transport::shm::Segment) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    let file = std::fs::File::from(segment.fd().try_clone_to_owned().expect("dup"));
    let mut bytes = vec![0; segment.len()];
    file.read_exact_at(&mut bytes, 0).expect("read the segment");
    bytes
}

/// A `shm_segment` input: `flags`, the ops, then the segment.
fn shm_input(flags: u8, ops: &[[u8; 8]], segment: &[u8]) -> Vec<u8> {
    let mut input = vec![flags, ops.len() as u8];
    for op in ops {
        input.extend_from_slice(op);
    }
    input.extend_from_slice(segment);
    input
}

/// Real rings, written by a real producer: a lossless ring whose slot 0 was reserved before
/// frames (one a reference, one a queue frame) were published, and which wrapped with a padding
/// frame; a lossy ring that lapped its slot; a fresh ring for a producer to adopt. Each is read
/// with a mix of ops; and payload segments under fitting and refused lengths.
pub fn shm_segment_inputs() -> Vec<(String, Vec<u8>)> {
    use mycelium_transport::shm::{
        reference::SegmentRef, reserve_slot, FrameFlags, RingConsumer, Segment,
    };

    let reads = [shm_op(0, 0, 0, 0), shm_op(1, 8, 0, 0), shm_op(0, 0, 0, 0)];
    let hostile = [
        shm_op(0, 0, 0, 0),
        shm_op(9, 0, 0, 1),
        shm_op(2, 0, 16, 7),
        shm_op(1, 4, 0, 0),
        shm_op(8, 1, 0, 4000),
        shm_op(0, 0, 0, 0),
        shm_op(3, 0, 8, 64),
        shm_op(5, 0, 0, 0),
        shm_op(7, 1, 0, 0),
        shm_op(4, 0, 0, 1),
        shm_op(1, 255, 0, 0),
    ];
    let mut inputs: Vec<(String, Vec<u8>)> = Vec::new();

    // Lossless, 4 KiB, 2 slots; slot 0 reserved, then frames, read halfway, wrapped.
    let (segment, mut producer) = Segment::create_ring("mycelium-seed", 4096, 2).expect("ring");
    let region = segment.ring_region().expect("region");
    let slot = reserve_slot(&region).expect("slot");
    producer.try_push(b"hello").expect("push");
    producer
        .try_push_marked(
            &SegmentRef {
                segment: 1,
                len: 1 << 20,
            }
            .encode(),
            FrameFlags::REFERENCE,
        )
        .expect("push");
    let mut queued = Vec::new();
    mycelium_transport::shm::queue::address(&mut queued, slot, b"job");
    producer.try_push(&queued).expect("push");
    producer.publish();
    inputs.push(("ring-lossless-3".into(), segment_bytes(&segment)));
    {
        let mut consumer = RingConsumer::adopt(&region, slot).expect("adopt");
        let mut out = Vec::new();
        for i in 0..40u8 {
            let _ = producer.try_push(&vec![i; 90]);
            producer.publish();
            let _ = consumer.try_recv_into(&mut out);
        }
    }
    inputs.push(("ring-lossless-wrapped".into(), segment_bytes(&segment)));

    // Lossy, lapped.
    let (lossy, mut producer) =
        Segment::create_ring_with_mode("mycelium-seed", 4096, 1, true).expect("ring");
    let region = lossy.ring_region().expect("region");
    reserve_slot(&region).expect("slot");
    for i in 0..100u8 {
        producer
            .try_push(&vec![i; 50 + usize::from(i)])
            .expect("lossy push");
        producer.publish();
    }
    inputs.push(("ring-lossy-lapped".into(), segment_bytes(&lossy)));

    // Fresh, 8 KiB, 4 slots: a producer adopts it.
    let (fresh, _producer) = Segment::create_ring("mycelium-seed", 8192, 4).expect("ring");
    let fresh = segment_bytes(&fresh);

    let mut rings = Vec::new();
    for (name, bytes) in inputs.drain(..) {
        rings.push((format!("{name}-adopt-reads"), shm_input(2, &reads, &bytes)));
        rings.push((
            format!("{name}-adopt-hostile"),
            shm_input(2, &hostile, &bytes),
        ));
        rings.push((
            format!("{name}-join-hostile"),
            shm_input(0, &hostile, &bytes),
        ));
    }
    let pushes = [
        shm_op(6, 1, 0, 100),
        shm_op(0, 0, 0, 0),
        shm_op(6, 2, 1, 3000),
        shm_op(6, 3, 0, 16),
        shm_op(1, 8, 0, 0),
        shm_op(2, 0, 33, 0),
        shm_op(6, 4, 0, 900),
        shm_op(1, 8, 0, 0),
    ];
    rings.push(("ring-fresh-push-read".into(), shm_input(0, &pushes, &fresh)));

    // Fresh and dropping when full (`drop_newest`): a producer adopts it, pushes, drops
    // (announcing the drop in `next_seq`/`next_seq_at`), and the consumer that joined at 0
    // is told at once on its empty ring; then the announcement is scribbled (its number's
    // low word, and its position moved) under the consumer's reads.
    let (dropping, creator) = Segment::create_ring("mycelium-seed", 4096, 2).expect("ring");
    drop(creator);
    mycelium_transport::shm::set_drop_when_full(&dropping.ring_region().expect("region"));
    let dropping = segment_bytes(&dropping);
    let drops = [
        shm_op(6, 1, 0, 100),
        shm_op(0, 0, 0, 0),
        shm_op(6, 2, 6, 0),
        shm_op(0, 0, 0, 0),
        shm_op(1, 8, 0, 0),
        shm_op(6, 3, 2, 1000),
        shm_op(6, 3, 2, 1000),
        shm_op(6, 3, 2, 1000),
        shm_op(6, 3, 2, 1000),
        shm_op(6, 3, 2, 1000),
        shm_op(1, 8, 0, 0),
        shm_op(0, 0, 0, 0),
        shm_op(2, 0, 24, 0xFFFF_FFFF),
        shm_op(0, 0, 0, 0),
        shm_op(3, 0, 13, 64),
        shm_op(1, 8, 0, 0),
        shm_op(3, 0, 13, 0xFFFF_FFC0),
        shm_op(0, 0, 0, 0),
    ];
    rings.push((
        "ring-drop-announced".into(),
        shm_input(0, &drops, &dropping),
    ));
    rings.push(("ring-zeroes".into(), shm_input(0, &reads, &[0; 4352])));

    for (name, claimed, max, contents) in [
        ("payload-whole", 0u16, 0u16, vec![7u8; 100]),
        ("payload-prefix", 10, 0, (0..=255).collect()),
        ("payload-longer-than-segment", 300, 0, vec![1; 200]),
        ("payload-over-limit", 0, 50, vec![2; 200]),
        ("payload-one-byte", 1, 1, vec![3]),
    ] {
        let mut input = vec![1];
        input.extend_from_slice(&claimed.to_le_bytes());
        input.extend_from_slice(&max.to_le_bytes());
        input.extend_from_slice(&contents);
        rings.push((name.into(), input));
    }
    rings
}

/// Every seed input for the `config` target: the repository's `broker.toml`, configs from the
/// config crate's tests and docs, broken variants, and reloads (two configs split by a NUL).
pub fn config_inputs() -> Vec<(String, Vec<u8>)> {
    let example = include_str!("../../broker.toml");
    let configs: Vec<(&str, String)> = vec![
        ("broker-toml", example.to_owned()),
        ("empty", String::new()),
        (
            "queue-topic",
            "[[topics]]\nname = \"orders\"\nrouting = \"queue\"\n".into(),
        ),
        (
            "every-section",
            "[server]\nsocket_path = \"/run/m.sock\"\nmax_connections = 10\n\
             connection_timeout_ms = 500\nsocket_mode = 0o600\n\n\
             [[topics]]\nname = \"a.b-c_d\"\nrouting = \"Fanout\"\nbuffer_size = 5\n\
             max_message_size = 16777216\nbackpressure = \"drop_oldest\"\nprefetch = 1\n\n\
             [topic_defaults]\nauto_create = true\nrouting = \"queue\"\nbuffer_size = 1\n\
             max_message_size = 1\nbackpressure = \"disconnect\"\nprefetch = 2\n\n\
             [performance]\nworker_threads = 1024\nchannel_capacity = 1\nbatch_size = 1\n\
             flush_interval_ms = 0\n\n\
             [shm]\nenabled = false\nring_bytes = 4096\nmax_subscribers = 1024\n\
             max_publishers_per_topic = 63\n"
                .into(),
        ),
        (
            "socket-mode-string",
            "[server]\nsocket_mode = \"0660\"\n".into(),
        ),
        ("syntax-error", "[server\nsocket_path = \"/tmp/x\"\n".into()),
        (
            "unterminated-string",
            "[server]\nsocket_path = \"/tmp/x\n".into(),
        ),
        (
            "unknown-field",
            "[server]\nsocket_paht = \"/tmp/x\"\n".into(),
        ),
        ("unknown-section", "[serverz]\nx = 1\n".into()),
        (
            "wrong-type",
            "[performance]\nworker_threads = \"two\"\n".into(),
        ),
        ("missing-routing", "[[topics]]\nname = \"t\"\n".into()),
        (
            "duplicate-topics",
            "[[topics]]\nname = \"t\"\nrouting = \"fanout\"\n\n\
             [[topics]]\nname = \"t\"\nrouting = \"queue\"\n"
                .into(),
        ),
        (
            "zeros",
            "[server]\nmax_connections = 0\nconnection_timeout_ms = 0\n\
             [[topics]]\nname = \"t\"\nrouting = \"fanout\"\nbuffer_size = 0\n\
             max_message_size = 0\nprefetch = 0\n\
             [performance]\nworker_threads = 0\nbatch_size = 0\nchannel_capacity = 0\n\
             [shm]\nring_bytes = 0\nmax_subscribers = 0\nmax_publishers_per_topic = 0\n"
                .into(),
        ),
        (
            "huge-numbers",
            "[server]\nmax_connections = 18446744073709551615\nsocket_mode = 0o7777\n\
             [[topics]]\nname = \"t\"\nrouting = \"fanout\"\nmax_message_size = 16777217\n\
             [performance]\nworker_threads = 1025\n\
             [shm]\nring_bytes = 3000\nmax_subscribers = 1025\nmax_publishers_per_topic = 64\n"
                .into(),
        ),
        ("negative", "[performance]\nflush_interval_ms = -1\n".into()),
        (
            "non-ascii-name",
            "[[topics]]\nname = \"quéue\"\nrouting = \"quéue\"\n".into(),
        ),
        (
            "bad-names",
            format!(
                "[[topics]]\nname = \"\"\nrouting = \"fanout\"\n\
                 [[topics]]\nname = \"{}\"\nrouting = \"fanout\"\n\
                 [[topics]]\nname = \"a b\"\nrouting = \"fanout\"\n",
                "n".repeat(256)
            ),
        ),
        (
            "bad-socket-paths",
            format!(
                "[server]\nsocket_path = \"/tmp/dir/\"\n\0[server]\nsocket_path = \"/{}\"\n",
                "s".repeat(120)
            ),
        ),
        (
            "bad-enum",
            "[topic_defaults]\nbackpressure = \"drop_all\"\n".into(),
        ),
        (
            "inline-tables",
            "server = { max_connections = 5 }\ntopics = [{ name = \"x\", routing = \"queue\" }]\n"
                .into(),
        ),
        ("crlf", "[server]\r\nmax_connections = 5\r\n".into()),
        (
            "durable-topics",
            "[storage]\ndata_dir = \"/var/lib/mycelium\"\nsegment_bytes = 4096\n\n\
             [[topics]]\nname = \"orders\"\nrouting = \"queue\"\ndurable = true\n\
             retention = \"1d2h3m4s5ms\"\nretention_bytes = 1073741824\n\
             retention_messages = 1000\nfsync = \"interval:10ms\"\nack_timeout_ms = 1\n\
             max_deliveries = 1\ndead_letter = \"orders.failed\"\n\n\
             [[topics]]\nname = \"audit\"\nrouting = \"fanout\"\ndurable = true\n\
             fsync = \"never\"\n\n\
             [topic_defaults]\ndurable = true\nretention = \"7d\"\nfsync = \"always\"\n"
                .into(),
        ),
        (
            "durable-broken",
            "[storage]\nsegment_bytes = 4095\n\
             [[topics]]\nname = \"..\"\nrouting = \"queue\"\ndurable = true\n\
             retention_bytes = 0\nfsync = \"interval:11s\"\nmax_deliveries = 0\n\
             dead_letter = \"..\"\n\
             [[topics]]\nname = \"plain\"\nrouting = \"fanout\"\nretention = \"24h\"\n\
             ack_timeout_ms = 0\n"
                .into(),
        ),
        (
            "bad-durations",
            "[[topics]]\nname = \"t\"\nrouting = \"fanout\"\ndurable = true\n\
             retention = \"30m1h\"\n\0\
             [topic_defaults]\nfsync = \"interval:99999999999999999999ms\"\n"
                .into(),
        ),
    ];
    let reloads: Vec<(&str, String)> = vec![
        (
            "reload-routing-refused",
            "[[topics]]\nname = \"jobs\"\nrouting = \"queue\"\n\0\
             [[topics]]\nname = \"jobs\"\nrouting = \"fanout\"\nbuffer_size = 5\n"
                .into(),
        ),
        (
            "reload-restart-and-live",
            "[server]\nsocket_path = \"/tmp/a.sock\"\nmax_connections = 5\n\
             [performance]\nworker_threads = 2\n[shm]\nmax_subscribers = 8\n\0\
             [server]\nsocket_path = \"/tmp/b.sock\"\nmax_connections = 6\n\
             [performance]\nworker_threads = 3\nbatch_size = 9\n[shm]\nmax_subscribers = 9\nring_bytes = 8192\n"
                .into(),
        ),
        (
            "reload-add-remove",
            "[[topics]]\nname = \"old\"\nrouting = \"fanout\"\n\0\
             [[topics]]\nname = \"new\"\nrouting = \"queue\"\nprefetch = 3\n\
             [topic_defaults]\nauto_create = true\n"
                .into(),
        ),
        (
            "reload-durable-first-data-dir",
            "[[topics]]\nname = \"a\"\nrouting = \"fanout\"\n\0\
             [storage]\ndata_dir = \"/var/lib/m\"\n\
             [[topics]]\nname = \"a\"\nrouting = \"fanout\"\ndurable = true\n\
             retention = \"1h\"\n\
             [[topics]]\nname = \"b\"\nrouting = \"queue\"\ndurable = true\n\
             [topic_defaults]\ndurable = true\n"
                .into(),
        ),
        (
            "reload-durable-live-and-restart",
            "[storage]\ndata_dir = \"/a\"\n\
             [[topics]]\nname = \"t\"\nrouting = \"fanout\"\ndurable = true\n\
             retention = \"1h\"\nfsync = \"always\"\n\0\
             [storage]\ndata_dir = \"/b\"\nsegment_bytes = 8192\n\
             [[topics]]\nname = \"t\"\nrouting = \"fanout\"\ndurable = true\n\
             retention = \"2h\"\nfsync = \"interval:5ms\"\nmax_deliveries = 2\n\
             dead_letter = \"t.dead\"\n"
                .into(),
        ),
        (
            "reload-example-to-empty",
            format!("{example}\0"),
        ),
        (
            "reload-example-to-buffer-cap",
            format!("{example}\0[performance]\nchannel_capacity = 10\n[[topics]]\nname = \"market_data\"\nrouting = \"queue\"\nbuffer_size = 1\n"),
        ),
    ];
    configs
        .into_iter()
        .chain(reloads)
        .map(|(name, text)| (name.to_owned(), text.into_bytes()))
        .collect()
}
