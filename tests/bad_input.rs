//! A real broker process against peers that break the protocol, speaking raw bytes on its socket.
//!
//! - Every case asserts the exact `Error` frame the broker answers with (code, fatal flag, and for
//!   fatal errors `request_id` 0 and `NO_TOPIC`), then the end of the stream for fatal ones.
//! - Every case first connects healthy clients (a raw publisher, a raw subscriber and a library
//!   [`Client`] subscriber) and checks afterwards that a publish still reaches both subscribers:
//!   one bad peer never disturbs another connection.
//! - Every read has a deadline ([`DEADLINE`]), so a broker that hangs fails the test instead of
//!   hanging it.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::process::Stdio;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use common::{wait_until, TestBroker};
use mycelium_client::{Client, Subscription};
use mycelium_transport::{
    encode_frame, kind, peek_frame, ConfigStatus, ErrorCode, Frame, ReloadOutcome, RoutingKind,
    TopicStats, HANDSHAKE_MAX_FRAME_LEN, NO_TOPIC, PROTOCOL_VERSION,
};
use uuid::Uuid;

/// Longest any single wait for the broker may take.
const DEADLINE: Duration = Duration::from_secs(10);

/// `news`: the healthy clients' topic, whose payload limit is also the broker's (so its
/// `max_frame_len` is 65536 + 6). `small`: a topic with a 16-byte payload limit. `flood`: what a
/// killed publisher floods.
const TOPICS: &str = r#"
[[topics]]
name = "news"
routing = "fanout"
max_message_size = 65536

[[topics]]
name = "small"
routing = "fanout"
max_message_size = 16

[[topics]]
name = "flood"
routing = "fanout"
backpressure = "drop_newest"
"#;

/// The `max_frame_len` a broker on [`TOPICS`] announces: its largest payload plus 6.
const MAX_FRAME_LEN: usize = 65_536 + 6;

fn start_broker() -> TestBroker {
    TestBroker::start(TOPICS)
}

/// A frame's bytes.
fn encoded(frame: &Frame) -> Vec<u8> {
    let mut buf = BytesMut::new();
    encode_frame(frame, &mut buf).expect("test frames are encodable");
    buf.to_vec()
}

/// A frame with the given header bytes around `body`, whatever it holds.
fn raw_frame(version: u8, frame_kind: u8, body: &[u8]) -> Vec<u8> {
    let mut buf = BytesMut::new();
    buf.put_u32_le(u32::try_from(body.len() + 2).expect("small test body"));
    buf.put_u8(version);
    buf.put_u8(frame_kind);
    buf.put_slice(body);
    buf.to_vec()
}

/// Only the 6 header bytes of a frame announcing a `len`-byte body, which is never sent.
fn header_only(len: u32, version: u8, frame_kind: u8) -> Vec<u8> {
    let mut buf = len.to_le_bytes().to_vec();
    buf.extend([version, frame_kind]);
    buf
}

fn hello(name: &str) -> Frame {
    Frame::Hello {
        client_id: Uuid::new_v4(),
        name: name.to_owned(),
    }
}

/// Deterministic pseudo-random bytes (xorshift64*), so a failure replays.
fn pseudo_random_bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut state = seed.max(1);
    (0..n)
        .map(|_| {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            (state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
        })
        .collect()
}

/// The error a peer's first bytes must get when their header is already wrong, worked out from
/// the protocol's header rules (§9), not from the codec.
fn header_error(bytes: &[u8], limit: usize) -> ErrorCode {
    let len = u32::from_le_bytes(bytes[..4].try_into().expect("4 bytes")) as usize;
    if len > limit {
        ErrorCode::FrameTooLarge
    } else if len < 2 {
        ErrorCode::Malformed
    } else if bytes[4] != PROTOCOL_VERSION {
        ErrorCode::UnsupportedVersion
    } else if kind::name(bytes[5]).is_none() {
        ErrorCode::UnknownFrameKind
    } else {
        panic!("test garbage {bytes:02x?} has a valid header; pick other bytes")
    }
}

/// One raw connection: bytes out, frames in, every read bounded by [`DEADLINE`].
struct Raw {
    name: String,
    stream: UnixStream,
    buf: BytesMut,
    next_request: u32,
}

impl Raw {
    fn connect(broker: &TestBroker, name: &str) -> Raw {
        let stream = UnixStream::connect(&broker.socket).expect("connecting to the broker");
        stream
            .set_write_timeout(Some(DEADLINE))
            .expect("write timeout");
        Raw {
            name: name.to_owned(),
            stream,
            buf: BytesMut::new(),
            next_request: 1,
        }
    }

    /// Connects and completes the handshake; returns the connection and its `Welcome`.
    fn handshake(broker: &TestBroker, name: &str) -> (Raw, Frame) {
        let mut raw = Raw::connect(broker, name);
        raw.send_frame(&hello(name));
        let welcome = raw.recv();
        assert!(
            matches!(welcome, Frame::Welcome { .. }),
            "{name}: expected Welcome, got {welcome:?}"
        );
        (raw, welcome)
    }

    fn send(&mut self, bytes: &[u8]) {
        if let Err(error) = self
            .stream
            .write_all(bytes)
            .and_then(|()| self.stream.flush())
        {
            panic!(
                "{}: writing {} bytes failed: {error}",
                self.name,
                bytes.len()
            );
        }
    }

    fn send_frame(&mut self, frame: &Frame) {
        self.send(&encoded(frame));
    }

    /// Reads once into the buffer; `Ok(0)` is the end of the stream.
    fn read_some(&mut self, deadline: Instant) -> std::io::Result<usize> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ErrorKind::TimedOut.into());
        }
        self.stream.set_read_timeout(Some(left))?;
        let mut chunk = [0u8; 64 * 1024];
        let n = self.stream.read(&mut chunk)?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// A whole frame from the front of the buffer, consumed, if there is one.
    fn take_frame(&mut self) -> Option<Frame> {
        // Any length: the tests check sizes themselves.
        let (view, used) = match peek_frame(&self.buf, u32::MAX as usize) {
            Ok(found) => found?,
            Err(error) => panic!("{}: the broker sent a bad frame header: {error}", self.name),
        };
        let frame = match view.to_frame() {
            Ok(frame) => frame,
            Err(error) => panic!(
                "{}: the broker sent an undecodable frame: {error}",
                self.name
            ),
        };
        self.buf.advance(used);
        Some(frame)
    }

    /// The next frame from the broker; fails on end of stream or after [`DEADLINE`].
    fn recv(&mut self) -> Frame {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(frame) = self.take_frame() {
                return frame;
            }
            match self.read_some(deadline) {
                Ok(0) => panic!(
                    "{}: the broker closed the connection before a frame came",
                    self.name
                ),
                Ok(_) => {}
                Err(error) => panic!(
                    "{}: no frame from the broker within {DEADLINE:?}: {error}",
                    self.name
                ),
            }
        }
    }

    /// Asserts that the broker ends the stream, without sending anything more, within [`DEADLINE`].
    fn expect_closed(&mut self) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(frame) = self.take_frame() {
                panic!(
                    "{}: expected the end of the stream, got {frame:?}",
                    self.name
                );
            }
            match self.read_some(deadline) {
                Ok(0) => {
                    assert!(
                        self.buf.is_empty(),
                        "{}: the stream ended inside a frame",
                        self.name
                    );
                    return;
                }
                Ok(_) => {}
                Err(error) => panic!(
                    "{}: the broker did not close the connection within {DEADLINE:?}: {error}",
                    self.name
                ),
            }
        }
    }

    /// Asserts that the next frame is a fatal `Error` with `code`, then the end of the stream.
    fn expect_fatal(&mut self, code: ErrorCode) {
        match self.recv() {
            Frame::Error {
                request_id,
                code: got,
                fatal,
                topic_id,
                message,
                refused,
            } => {
                assert_eq!(
                    got, code,
                    "{}: wrong error code (message: {message:?})",
                    self.name
                );
                assert!(fatal, "{}: {code:?} must be fatal", self.name);
                assert_eq!(
                    refused, 0,
                    "{}: a fatal error refuses no publish",
                    self.name
                );
                assert_eq!(
                    request_id, 0,
                    "{}: a fatal error answers no request",
                    self.name
                );
                assert_eq!(
                    topic_id, NO_TOPIC,
                    "{}: a fatal error names no topic",
                    self.name
                );
                assert!(!message.is_empty(), "{}: the error says nothing", self.name);
            }
            other => panic!(
                "{}: expected a fatal {code:?} error, got {other:?}",
                self.name
            ),
        }
        self.expect_closed();
    }

    /// Asserts that the next frame is the non-fatal refusal of a `Publish` on `topic_id`.
    fn expect_publish_refused(&mut self, code: ErrorCode, topic: u32) {
        match self.recv() {
            Frame::Error {
                request_id,
                code: got,
                fatal,
                topic_id,
                message,
                refused,
            } => {
                assert_eq!(
                    got, code,
                    "{}: wrong error code (message: {message:?})",
                    self.name
                );
                assert!(
                    !fatal,
                    "{}: refusing a publish must not close the connection",
                    self.name
                );
                assert_eq!(
                    refused, 1,
                    "{}: the refusal of one publish says it refuses one message",
                    self.name
                );
                assert_eq!(
                    request_id, 0,
                    "{}: a refused publish has request_id 0",
                    self.name
                );
                assert_eq!(
                    topic_id, topic,
                    "{}: the error must name the publish's topic id",
                    self.name
                );
            }
            other => panic!("{}: expected a {code:?} error, got {other:?}", self.name),
        }
    }

    /// Asserts that the next frame is the non-fatal refusal of request `request`.
    fn expect_request_refused(&mut self, code: ErrorCode, request: u32, topic: u32) {
        match self.recv() {
            Frame::Error {
                request_id,
                code: got,
                fatal: false,
                topic_id,
                message,
                refused: 0,
            } if request_id == request => {
                assert_eq!(
                    got, code,
                    "{}: wrong error code (message: {message:?})",
                    self.name
                );
                assert_eq!(topic_id, topic, "{}: wrong topic id in {code:?}", self.name);
            }
            other => panic!(
                "{}: expected a non-fatal {code:?} for request {request}, got {other:?}",
                self.name
            ),
        }
    }

    fn request_id(&mut self) -> u32 {
        let id = self.next_request;
        self.next_request += 1;
        id
    }

    /// Sends `Advertise` or `Subscribe` for `topic` and returns the `TopicAck`'s topic id and limit.
    fn topic_request(&mut self, topic: &str, subscribe: bool) -> (u32, u32) {
        let request_id = self.request_id();
        let topic = topic.to_owned();
        self.send_frame(&if subscribe {
            Frame::Subscribe {
                request_id,
                prefetch: 0,
                topic,
            }
        } else {
            Frame::Advertise { request_id, topic }
        });
        match self.recv() {
            Frame::TopicAck {
                request_id: answered,
                topic_id,
                routing: RoutingKind::Fanout,
                max_message_size,
                prefetch: 0,
            } if answered == request_id => (topic_id, max_message_size),
            other => panic!(
                "{}: expected a TopicAck for request {request_id}, got {other:?}",
                self.name
            ),
        }
    }

    fn advertise(&mut self, topic: &str) -> (u32, u32) {
        self.topic_request(topic, false)
    }

    fn subscribe(&mut self, topic: &str) -> u32 {
        self.topic_request(topic, true).0
    }

    /// Sends a `Ping` and asserts that the next frame is its `Pong`: everything sent before has
    /// been processed (the protocol's flush barrier) and the connection is still open.
    fn ping(&mut self) {
        let token = u64::from(self.request_id()) | 0xabcd_0000_0000;
        self.send_frame(&Frame::Ping { token });
        match self.recv() {
            Frame::Pong { token: got } if got == token => {}
            other => panic!("{}: expected Pong {token}, got {other:?}", self.name),
        }
    }

    /// Asserts that the next frame is the `Deliver` of `payload` on `topic`.
    fn expect_deliver(&mut self, topic: u32, payload: &[u8]) {
        match self.recv() {
            Frame::Deliver {
                topic_id,
                payload: got,
            } if topic_id == topic && got == payload => {}
            other => panic!(
                "{}: expected Deliver of {} bytes on topic {topic}, got {other:?}",
                self.name,
                payload.len()
            ),
        }
    }

    /// The broker's open connections and topic counters, asked on this connection.
    fn stats(&mut self) -> (u32, Vec<TopicStats>) {
        let request_id = self.request_id();
        self.send_frame(&Frame::StatsRequest { request_id });
        match self.recv() {
            Frame::Stats {
                request_id: answered,
                connections,
                topics,
                ..
            } if answered == request_id => (connections, topics),
            other => panic!("{}: expected Stats, got {other:?}", self.name),
        }
    }
}

fn topic_stats<'a>(topics: &'a [TopicStats], name: &str) -> &'a TopicStats {
    topics
        .iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("no topic {name} in {topics:?}"))
}

/// Clients connected before a bad peer, to show that it disturbs no one else: a raw publisher and
/// a raw subscriber on `news`, and a subscriber through the library [`Client`].
struct Healthy {
    publisher: Raw,
    topic_id: u32,
    subscriber: Raw,
    subscriber_topic_id: u32,
    runtime: tokio::runtime::Runtime,
    /// Kept so that the library connection stays open.
    _client: Client,
    subscription: Subscription,
    checks: u32,
}

impl Healthy {
    /// Connections this holds open on the broker.
    const CONNECTIONS: u32 = 3;

    fn connect(broker: &TestBroker) -> Healthy {
        let (mut publisher, _) = Raw::handshake(broker, "healthy-publisher");
        let (topic_id, _) = publisher.advertise("news");
        let (mut subscriber, _) = Raw::handshake(broker, "healthy-subscriber");
        let subscriber_topic_id = subscriber.subscribe("news");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let (client, subscription) = runtime.block_on(async {
            let client = Client::connect(&broker.socket)
                .await
                .expect("library client connects");
            let subscription = client
                .subscribe("news")
                .await
                .expect("library client subscribes");
            (client, subscription)
        });
        Healthy {
            publisher,
            topic_id,
            subscriber,
            subscriber_topic_id,
            runtime,
            _client: client,
            subscription,
            checks: 0,
        }
    }

    /// Publishes one message and asserts both subscribers receive exactly it, next.
    fn check(&mut self) {
        self.checks += 1;
        let payload = format!("healthy message {}", self.checks).into_bytes();
        self.publisher.send_frame(&Frame::Publish {
            topic_id: self.topic_id,
            payload: Bytes::from(payload.clone()),
        });
        self.publisher.ping();
        self.subscriber
            .expect_deliver(self.subscriber_topic_id, &payload);
        self.expect_library_message(&payload);
    }

    /// Asserts that the library subscriber's next message is `payload`.
    fn expect_library_message(&mut self, payload: &[u8]) {
        let subscription = &mut self.subscription;
        let received = self
            .runtime
            .block_on(async { tokio::time::timeout(DEADLINE, subscription.recv()).await });
        match received {
            Ok(Ok(message)) => assert!(
                message[..] == payload[..],
                "library subscriber: expected {} bytes, got {} bytes",
                payload.len(),
                message.len()
            ),
            other => panic!("library subscriber: expected a message, got {other:?}"),
        }
    }

    /// Waits until the broker counts exactly `n` open connections (it notices a vanished peer
    /// asynchronously).
    fn wait_for_connections(&mut self, n: u32) {
        let mut last = 0;
        wait_until(&format!("the broker to count {n} connections"), || {
            last = self.publisher.stats().0;
            last == n
        });
    }
}

mod garbage {
    use super::*;

    /// Sends `bytes` as the first thing on a new connection and expects the fatal error the header
    /// rules give for them.
    fn assert_refused_before_handshake(broker: &TestBroker, name: &str, bytes: &[u8]) {
        let mut raw = Raw::connect(broker, name);
        raw.send(bytes);
        raw.expect_fatal(header_error(bytes, HANDSHAKE_MAX_FRAME_LEN));
    }

    #[test]
    fn random_bytes_as_the_first_thing_get_a_fatal_error() {
        let broker = start_broker();
        let mut healthy = Healthy::connect(&broker);
        for seed in [1, 2, 3, 0x5eed] {
            let bytes = pseudo_random_bytes(seed, 64);
            assert_refused_before_handshake(&broker, &format!("random-{seed}"), &bytes);
            healthy.check();
        }
        assert_refused_before_handshake(&broker, "zeros", &[0; 64]);
        assert_refused_before_handshake(&broker, "ones", &[0xff; 64]);
        healthy.check();
    }

    #[test]
    fn an_http_request_gets_frame_too_large() {
        let broker = start_broker();
        let mut healthy = Healthy::connect(&broker);
        let request = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
        // "GET " read as a little-endian length is 0x20544547, far above the handshake limit.
        assert_eq!(
            header_error(request, HANDSHAKE_MAX_FRAME_LEN),
            ErrorCode::FrameTooLarge
        );
        assert_refused_before_handshake(&broker, "http", request);
        healthy.check();
    }

    #[test]
    fn fifty_garbage_connections_at_once_leave_the_broker_serving() {
        let broker = start_broker();
        let mut healthy = Healthy::connect(&broker);
        let mut peers: Vec<(Raw, Vec<u8>)> = (0..50u64)
            .map(|i| {
                let bytes = match i % 5 {
                    0 => b"GET / HTTP/1.1\r\n\r\n".to_vec(),
                    1 => raw_frame(PROTOCOL_VERSION, 0x99, b"unknown kind"),
                    2 => raw_frame(7, kind::HELLO, &[0; 20]),
                    _ => pseudo_random_bytes(1000 + i, 64 + 37 * i as usize),
                };
                (Raw::connect(&broker, &format!("garbage-{i}")), bytes)
            })
            .collect();
        let barrier = std::sync::Barrier::new(peers.len());
        std::thread::scope(|scope| {
            for (raw, bytes) in &mut peers {
                let barrier = &barrier;
                scope.spawn(move || {
                    barrier.wait();
                    raw.send(bytes);
                    raw.expect_fatal(header_error(bytes, HANDSHAKE_MAX_FRAME_LEN));
                });
            }
        });
        healthy.check();

        let out = broker
            .cmd()
            .args(["stats", "--json"])
            .stderr(Stdio::inherit())
            .output()
            .expect("running mycelium stats");
        assert!(
            out.status.success(),
            "mycelium stats --json failed: {out:?}"
        );
        let doc: serde_json::Value =
            serde_json::from_slice(&out.stdout).expect("mycelium stats --json prints JSON");
        // The healthy clients and the stats command itself; none of the refused peers.
        assert_eq!(doc["connections"], Healthy::CONNECTIONS + 1, "{doc}");
        let news = doc["topics"]
            .as_array()
            .and_then(|topics| topics.iter().find(|t| t["name"] == "news"))
            .unwrap_or_else(|| panic!("no news topic in {doc}"));
        assert_eq!(news["published"], 1, "{doc}");
        assert_eq!(news["subscribers"], 2, "{doc}");
    }
}

mod header {
    use super::*;

    #[test]
    fn a_length_over_the_handshake_limit_is_refused_without_waiting_for_the_body() {
        let broker = start_broker();
        let mut healthy = Healthy::connect(&broker);
        let over = HANDSHAKE_MAX_FRAME_LEN as u32 + 1;
        let cases = [
            ("len-only", over.to_le_bytes().to_vec()),
            (
                "hello-header",
                header_only(over, PROTOCOL_VERSION, kind::HELLO),
            ),
            (
                "max-header",
                header_only(u32::MAX, PROTOCOL_VERSION, kind::PUBLISH),
            ),
        ];
        for (name, bytes) in cases {
            let mut raw = Raw::connect(&broker, name);
            raw.send(&bytes);
            raw.expect_fatal(ErrorCode::FrameTooLarge);
            healthy.check();
        }
    }

    #[test]
    fn a_length_over_max_frame_len_after_the_handshake_is_refused_without_waiting_for_the_body() {
        let broker = start_broker();
        let mut healthy = Healthy::connect(&broker);
        let over = MAX_FRAME_LEN as u32 + 1;
        let cases = [
            ("len-only", over.to_le_bytes().to_vec()),
            (
                "publish-header",
                header_only(over, PROTOCOL_VERSION, kind::PUBLISH),
            ),
            (
                "max-header",
                header_only(u32::MAX, PROTOCOL_VERSION, kind::PUBLISH),
            ),
        ];
        for (name, bytes) in cases {
            let (mut raw, welcome) = Raw::handshake(&broker, name);
            match welcome {
                Frame::Welcome {
                    max_frame_len,
                    max_message_size,
                    ..
                } => {
                    assert_eq!(max_frame_len as usize, MAX_FRAME_LEN);
                    assert_eq!(max_message_size, 65_536);
                }
                other => unreachable!("handshake returns a Welcome, not {other:?}"),
            }
            raw.send(&bytes);
            raw.expect_fatal(ErrorCode::FrameTooLarge);
            healthy.check();
        }
    }

    #[test]
    fn a_publish_of_exactly_max_frame_len_is_delivered() {
        let broker = start_broker();
        let mut healthy = Healthy::connect(&broker);
        let payload = vec![0x5a; MAX_FRAME_LEN - 6];
        let frame = Frame::Publish {
            topic_id: healthy.topic_id,
            payload: Bytes::from(payload.clone()),
        };
        assert_eq!(encoded(&frame).len(), 4 + MAX_FRAME_LEN);
        healthy.publisher.send_frame(&frame);
        healthy.publisher.ping();
        let topic = healthy.subscriber_topic_id;
        healthy.subscriber.expect_deliver(topic, &payload);
        healthy.expect_library_message(&payload);
        healthy.check();
    }

    #[test]
    fn a_wrong_protocol_version_is_refused() {
        let broker = start_broker();
        let mut healthy = Healthy::connect(&broker);
        let mut hello_v2 = encoded(&hello("v2"));
        hello_v2[4] = 2;
        let before = [
            ("hello-v2", hello_v2),
            ("hello-v0-header", header_only(20, 0, kind::HELLO)),
            // The version byte alone is enough to refuse.
            ("version-byte-only", {
                let mut b = 20u32.to_le_bytes().to_vec();
                b.push(0xff);
                b
            }),
        ];
        for (name, bytes) in before {
            let mut raw = Raw::connect(&broker, name);
            raw.send(&bytes);
            raw.expect_fatal(ErrorCode::UnsupportedVersion);
            healthy.check();
        }
        let (mut raw, _) = Raw::handshake(&broker, "ping-v2");
        raw.send(&raw_frame(2, kind::PING, &7u64.to_le_bytes()));
        raw.expect_fatal(ErrorCode::UnsupportedVersion);
        healthy.check();
    }

    #[test]
    fn an_unknown_frame_kind_is_refused() {
        let broker = start_broker();
        let mut healthy = Healthy::connect(&broker);
        for unknown in [0x00, 0x09, 0x14, 0x58, 0x99, 0xff] {
            // Before the handshake, with a body the broker must not wait for.
            let mut raw = Raw::connect(&broker, &format!("before-0x{unknown:02x}"));
            raw.send(&header_only(100, PROTOCOL_VERSION, unknown));
            raw.expect_fatal(ErrorCode::UnknownFrameKind);
            // After it, with an empty body.
            let (mut raw, _) = Raw::handshake(&broker, &format!("after-0x{unknown:02x}"));
            raw.send(&raw_frame(PROTOCOL_VERSION, unknown, &[]));
            raw.expect_fatal(ErrorCode::UnknownFrameKind);
            healthy.check();
        }
    }
}

mod handshake {
    use super::*;

    #[test]
    fn a_frame_before_hello_is_refused() {
        let broker = start_broker();
        let mut healthy = Healthy::connect(&broker);
        let firsts = [
            Frame::Subscribe {
                request_id: 1,
                prefetch: 0,
                topic: "news".into(),
            },
            Frame::Advertise {
                request_id: 1,
                topic: "news".into(),
            },
            Frame::Publish {
                topic_id: 0,
                payload: Bytes::from_static(b"early"),
            },
            Frame::Ping { token: 1 },
            Frame::StatsRequest { request_id: 1 },
        ];
        for first in firsts {
            let mut raw = Raw::connect(&broker, &format!("first-0x{:02x}", first.kind()));
            raw.send_frame(&first);
            raw.expect_fatal(ErrorCode::HandshakeRequired);
            healthy.check();
        }
    }

    #[test]
    fn a_second_hello_is_refused() {
        let broker = start_broker();
        let mut healthy = Healthy::connect(&broker);
        let (mut raw, _) = Raw::handshake(&broker, "twice");
        raw.send_frame(&hello("twice"));
        raw.expect_fatal(ErrorCode::HandshakeRequired);
        healthy.check();

        // Both Hellos in one write: the broker welcomes the first and refuses the second.
        let mut raw = Raw::connect(&broker, "twice-pipelined");
        let mut both = encoded(&hello("a"));
        both.extend(encoded(&hello("b")));
        raw.send(&both);
        assert!(matches!(raw.recv(), Frame::Welcome { .. }));
        raw.expect_fatal(ErrorCode::HandshakeRequired);
        healthy.check();
    }

    #[test]
    fn broker_only_frames_sent_by_a_client_are_refused() {
        let broker = start_broker();
        let mut healthy = Healthy::connect(&broker);
        let broker_only = [
            Frame::Welcome {
                broker_id: Uuid::nil(),
                connection_id: 1,
                max_message_size: 1,
                max_frame_len: 7,
                server: "fake".into(),
            },
            Frame::TopicAck {
                request_id: 1,
                topic_id: 0,
                routing: RoutingKind::Fanout,
                max_message_size: 1,
                prefetch: 0,
            },
            Frame::Ack { request_id: 1 },
            Frame::Deliver {
                topic_id: healthy.topic_id,
                payload: Bytes::from_static(b"forged delivery"),
            },
            Frame::Error {
                request_id: 0,
                code: ErrorCode::Internal,
                fatal: true,
                topic_id: NO_TOPIC,
                message: "forged".into(),
                refused: 0,
            },
            Frame::Stats {
                request_id: 1,
                connections: 0,
                uptime_ms: 0,
                topics: vec![],
                config: ConfigStatus::default(),
            },
            Frame::ReloadResult {
                request_id: 1,
                outcome: ReloadOutcome::Applied,
                status: ConfigStatus::default(),
            },
        ];
        for frame in &broker_only {
            let (mut raw, _) = Raw::handshake(&broker, &format!("after-0x{:02x}", frame.kind()));
            raw.send_frame(frame);
            raw.expect_fatal(ErrorCode::HandshakeRequired);
            healthy.check();
        }
        let mut raw = Raw::connect(&broker, "deliver-first");
        raw.send_frame(&broker_only[3]);
        raw.expect_fatal(ErrorCode::HandshakeRequired);
        healthy.check();
    }

    #[test]
    fn a_connection_over_max_connections_is_refused() {
        let broker = TestBroker::start_with("max_connections = 4", TOPICS);
        let mut healthy = Healthy::connect(&broker);
        // The fourth connection counts from its handshake on (a socket that says nothing
        // counts against `max_pending_handshakes` instead: tests/limits.rs).
        let (idle, _) = Raw::handshake(&broker, "idle");
        let mut over = Raw::connect(&broker, "over-the-limit");
        over.send_frame(&hello("over-the-limit"));
        over.expect_fatal(ErrorCode::TooManyConnections);
        healthy.check();
        drop(idle);
        // The broker frees the slot once it sees the idle connection close.
        wait_until("a slot to free up", || {
            let mut raw = Raw::connect(&broker, "after");
            raw.send_frame(&hello("after"));
            matches!(raw.recv(), Frame::Welcome { .. })
        });
        healthy.check();
    }

    #[test]
    fn a_silent_or_slow_peer_gets_handshake_timeout() {
        let broker = TestBroker::start_with("connection_timeout_ms = 300", TOPICS);
        let mut healthy = Healthy::connect(&broker);
        let mut silent = Raw::connect(&broker, "silent");
        let mut half_hello = Raw::connect(&broker, "half-hello");
        half_hello.send(&encoded(&hello("slow"))[..10]);
        silent.expect_fatal(ErrorCode::HandshakeTimeout);
        half_hello.expect_fatal(ErrorCode::HandshakeTimeout);
        // The timeout covers only the handshake: the healthy clients, idle meanwhile, still work.
        healthy.check();
    }
}

mod body {
    use super::*;

    #[test]
    fn a_malformed_body_is_refused() {
        let broker = start_broker();
        let mut healthy = Healthy::connect(&broker);
        let v = PROTOCOL_VERSION;
        let cases: Vec<(&str, Vec<u8>)> = vec![
            (
                "subscribe-topic-past-end",
                raw_frame(
                    v,
                    kind::SUBSCRIBE,
                    &[1, 0, 0, 0, 0, 0, 0, 0, 50, b'a', b'b'],
                ),
            ),
            (
                "subscribe-empty-topic",
                raw_frame(v, kind::SUBSCRIBE, &[1, 0, 0, 0, 0, 0, 0, 0, 0]),
            ),
            (
                "subscribe-no-topic",
                raw_frame(v, kind::SUBSCRIBE, &[1, 0, 0, 0, 0, 0, 0, 0]),
            ),
            (
                "advertise-not-utf8",
                raw_frame(v, kind::ADVERTISE, &[1, 0, 0, 0, 2, 0xc3, 0x28]),
            ),
            (
                "unsubscribe-truncated",
                raw_frame(v, kind::UNSUBSCRIBE, &[1, 0, 0, 0, 9]),
            ),
            ("ping-trailing-byte", raw_frame(v, kind::PING, &[0; 9])),
            ("publish-short", raw_frame(v, kind::PUBLISH, &[1, 0])),
            ("publish-empty", raw_frame(v, kind::PUBLISH, &[])),
            ("len-1", vec![1, 0, 0, 0, v]),
            ("len-0", vec![0, 0, 0, 0]),
        ];
        for (name, bytes) in cases {
            let (mut raw, _) = Raw::handshake(&broker, name);
            raw.send(&bytes);
            raw.expect_fatal(ErrorCode::Malformed);
            healthy.check();
        }
        let mut truncated_hello = raw_frame(v, kind::HELLO, &[0; 16]);
        truncated_hello.extend([5, b'a']);
        truncated_hello[0] += 2;
        let mut raw = Raw::connect(&broker, "hello-name-past-end");
        raw.send(&truncated_hello);
        raw.expect_fatal(ErrorCode::Malformed);
        healthy.check();
    }

    #[test]
    fn a_publish_over_the_topic_limit_is_refused_and_not_delivered() {
        let broker = start_broker();
        let mut healthy = Healthy::connect(&broker);
        let (mut small_sub, _) = Raw::handshake(&broker, "small-subscriber");
        let sub_topic = small_sub.subscribe("small");
        let (mut raw, _) = Raw::handshake(&broker, "too-large");
        let (topic_id, limit) = raw.advertise("small");
        assert_eq!(limit, 16);
        for size in [17, 1000, 65_536] {
            raw.send_frame(&Frame::Publish {
                topic_id,
                payload: Bytes::from(vec![b'x'; size]),
            });
            raw.expect_publish_refused(ErrorCode::MessageTooLarge, topic_id);
        }
        // Still open and in order; the refusals came before this Pong.
        raw.ping();
        let exact = b"sixteen bytes ok";
        raw.send_frame(&Frame::Publish {
            topic_id,
            payload: Bytes::from_static(exact),
        });
        raw.ping();
        // The subscriber's first frame is the one message within the limit.
        small_sub.expect_deliver(sub_topic, exact);
        let (_, topics) = raw.stats();
        assert_eq!(topic_stats(&topics, "small").published, 1);
        healthy.check();
    }

    #[test]
    fn requests_the_broker_cannot_grant_are_refused_without_closing() {
        let broker = start_broker();
        let mut healthy = Healthy::connect(&broker);
        let (mut raw, _) = Raw::handshake(&broker, "bad-requests");
        let news = raw.subscribe("news");
        let cases: [(Frame, ErrorCode, u32); 6] = [
            (
                Frame::Subscribe {
                    request_id: 101,
                    prefetch: 0,
                    topic: "no spaces!".into(),
                },
                ErrorCode::InvalidTopicName,
                NO_TOPIC,
            ),
            (
                Frame::Advertise {
                    request_id: 102,
                    topic: "undeclared".into(),
                },
                ErrorCode::UnknownTopic,
                NO_TOPIC,
            ),
            (
                Frame::Subscribe {
                    request_id: 103,
                    prefetch: 0,
                    topic: "news".into(),
                },
                ErrorCode::AlreadySubscribed,
                news,
            ),
            (
                Frame::Unsubscribe {
                    request_id: 104,
                    topic_id: 4242,
                },
                ErrorCode::NotSubscribed,
                4242,
            ),
            // Credit answers no request: request_id 0.
            (
                Frame::Credit {
                    topic_id: news,
                    credit: 1,
                },
                ErrorCode::NotSubscribed,
                news,
            ),
            (
                Frame::Credit {
                    topic_id: 4242,
                    credit: 1,
                },
                ErrorCode::NotSubscribed,
                4242,
            ),
        ];
        for (frame, code, topic) in cases {
            let request = match frame {
                Frame::Subscribe { request_id, .. }
                | Frame::Advertise { request_id, .. }
                | Frame::Unsubscribe { request_id, .. } => request_id,
                _ => 0,
            };
            raw.send_frame(&frame);
            raw.expect_request_refused(code, request, topic);
            raw.ping();
        }
        healthy.check();
    }

    #[test]
    fn a_refusal_reaches_the_publisher_in_order_with_its_own_deliveries() {
        // §10: frames are processed in the order sent and answered in the order produced, so a
        // publisher subscribed to its own topic sees each message or its refusal in turn.
        let broker = start_broker();
        let mut healthy = Healthy::connect(&broker);
        let (mut raw, _) = Raw::handshake(&broker, "own-subscriber");
        let topic_id = raw.subscribe("small");
        let mut burst = Vec::new();
        for payload in [&b"first"[..], &[b'x'; 17], b"third"] {
            burst.extend(encoded(&Frame::Publish {
                topic_id,
                payload: Bytes::copy_from_slice(payload),
            }));
        }
        burst.extend(encoded(&Frame::Ping { token: 5 }));
        raw.send(&burst);
        raw.expect_deliver(topic_id, b"first");
        raw.expect_publish_refused(ErrorCode::MessageTooLarge, topic_id);
        raw.expect_deliver(topic_id, b"third");
        assert_eq!(raw.recv(), Frame::Pong { token: 5 });
        healthy.check();
    }

    #[test]
    fn frames_before_a_bad_one_in_the_same_write_are_still_handled() {
        let broker = start_broker();
        let mut healthy = Healthy::connect(&broker);
        let (mut raw, _) = Raw::handshake(&broker, "good-then-bad");
        let mut burst = encoded(&Frame::Publish {
            topic_id: healthy.topic_id,
            payload: Bytes::from_static(b"before the garbage"),
        });
        burst.extend(encoded(&Frame::Ping { token: 1 }));
        burst.extend(encoded(&Frame::Publish {
            topic_id: healthy.topic_id,
            payload: Bytes::from_static(b"right before the garbage"),
        }));
        burst.extend(raw_frame(PROTOCOL_VERSION, 0x99, b"garbage"));
        raw.send(&burst);
        assert_eq!(raw.recv(), Frame::Pong { token: 1 });
        raw.expect_fatal(ErrorCode::UnknownFrameKind);
        let topic = healthy.subscriber_topic_id;
        for payload in [&b"before the garbage"[..], b"right before the garbage"] {
            healthy.subscriber.expect_deliver(topic, payload);
            healthy.expect_library_message(payload);
        }
        healthy.check();
    }

    #[test]
    fn a_publish_to_an_unknown_topic_id_is_refused_without_closing() {
        let broker = start_broker();
        let mut healthy = Healthy::connect(&broker);
        let (mut raw, _) = Raw::handshake(&broker, "unknown-topic");
        for topic_id in [4242, u32::MAX - 1, NO_TOPIC] {
            raw.send_frame(&Frame::Publish {
                topic_id,
                payload: Bytes::from_static(b"lost"),
            });
            raw.expect_publish_refused(ErrorCode::UnknownTopic, topic_id);
            raw.ping();
        }
        let (_, topics) = raw.stats();
        assert!(topics.iter().all(|t| t.published == 0), "{topics:?}");
        healthy.check();
    }
}

mod vanishing_peers {
    use super::*;

    #[test]
    fn peers_that_leave_in_the_middle_of_a_frame_do_not_disturb_the_broker() {
        let broker = start_broker();
        let mut healthy = Healthy::connect(&broker);

        // Dropped after half a Hello.
        let mut raw = Raw::connect(&broker, "half-hello");
        raw.send(&encoded(&hello("half"))[..9]);
        drop(raw);

        // Dropped after the header and part of the body of a publish.
        let (mut raw, _) = Raw::handshake(&broker, "half-publish");
        let (topic_id, _) = raw.advertise("news");
        let publish = encoded(&Frame::Publish {
            topic_id,
            payload: Bytes::from(vec![b'p'; 1000]),
        });
        raw.send(&publish[..500]);
        drop(raw);

        // Half-closed inside a frame: the broker closes without an Error frame (§11).
        let (mut raw, _) = Raw::handshake(&broker, "half-closed");
        raw.send(&publish[..3]);
        raw.stream
            .shutdown(std::net::Shutdown::Write)
            .expect("half-close");
        raw.expect_closed();

        healthy.wait_for_connections(Healthy::CONNECTIONS);
        healthy.check();
        let (_, topics) = healthy.publisher.stats();
        assert_eq!(
            topic_stats(&topics, "news").published,
            1,
            "no partial publish was routed"
        );
    }

    #[test]
    fn a_publisher_killed_mid_stream_does_not_disturb_the_broker() {
        let broker = start_broker();
        let mut healthy = Healthy::connect(&broker);
        let mut publisher = broker
            .cmd()
            .args(["pub", "flood"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawning mycelium pub");
        let mut stdin = publisher.stdin.take().expect("stdin");
        // Large lines, so that the kill most likely lands inside a frame being written.
        let feeder = std::thread::spawn(move || {
            let mut line = vec![b'f'; 60_000];
            line.push(b'\n');
            while stdin.write_all(&line).is_ok() {}
        });
        wait_until("the killed publisher to have published", || {
            let (_, topics) = healthy.publisher.stats();
            topic_stats(&topics, "flood").published >= 20
        });
        publisher.kill().expect("SIGKILL mycelium pub");
        publisher.wait().expect("reaping mycelium pub");
        feeder
            .join()
            .expect("the feeder stops once the pipe breaks");

        healthy.wait_for_connections(Healthy::CONNECTIONS);
        healthy.check();
        let (_, topics) = healthy.publisher.stats();
        assert_eq!(topic_stats(&topics, "news").published, 1);
    }

    #[test]
    fn a_session_fed_byte_by_byte_works() {
        let broker = start_broker();
        let mut healthy = Healthy::connect(&broker);
        let mut raw = Raw::connect(&broker, "byte-by-byte");
        // Pausing between bytes makes the broker see each one in its own read.
        let send_slowly = |raw: &mut Raw, frame: &Frame| {
            for byte in encoded(frame) {
                raw.send(&[byte]);
                std::thread::sleep(Duration::from_millis(1));
            }
        };
        send_slowly(&mut raw, &hello("slow"));
        assert!(matches!(raw.recv(), Frame::Welcome { .. }));
        send_slowly(
            &mut raw,
            &Frame::Advertise {
                request_id: 1,
                topic: "news".into(),
            },
        );
        let topic_id = match raw.recv() {
            Frame::TopicAck {
                request_id: 1,
                topic_id,
                ..
            } => topic_id,
            other => panic!("expected TopicAck, got {other:?}"),
        };
        send_slowly(
            &mut raw,
            &Frame::Publish {
                topic_id,
                payload: Bytes::from_static(b"one byte at a time"),
            },
        );
        send_slowly(&mut raw, &Frame::Ping { token: 99 });
        assert_eq!(raw.recv(), Frame::Pong { token: 99 });
        let topic = healthy.subscriber_topic_id;
        healthy
            .subscriber
            .expect_deliver(topic, b"one byte at a time");
        healthy.expect_library_message(b"one byte at a time");
        healthy.check();
    }
}
