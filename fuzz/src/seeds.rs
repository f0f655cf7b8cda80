//! The seed corpus: valid encoded frames of every kind, a few whole sessions, and a few invalid
//! headers and bodies, so the fuzzer starts from inputs that reach every body parser.

use bytes::{BufMut, Bytes, BytesMut};
use mycelium_transport::{
    encode_frame, kind, ConfigStatus, ErrorCode, Frame, ReloadOutcome, RoutingKind, ShmRing,
    ShmRole, TopicStats, MAX_NAME_LEN, NO_SLOT, NO_TOPIC, PROTOCOL_VERSION,
};
use uuid::Uuid;

fn topic_stats(name: &str, routing: RoutingKind) -> TopicStats {
    TopicStats {
        name: name.to_owned(),
        routing,
        subscribers: 3,
        published: u64::MAX,
        delivered: 1 << 40,
        dropped: 7,
        queued: 0,
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
        ("bad-version", raw(2, kind::PING, &[0; 8])),
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
                &[1, 0, 0, 0, 9, 1, b't'],
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
