//! A real broker process against peers that break the protocol or try to make it hold memory,
//! speaking raw bytes on its socket ([`RawConnection`]).
//!
//! - Every protocol case asserts the exact `Error` frame the broker answers with (code, fatal flag,
//!   and for fatal errors `request_id` 0 and `NO_TOPIC`), then the end of the stream for fatal ones.
//! - Every protocol case first connects healthy clients (a raw publisher, a raw subscriber and a
//!   library [`Client`] subscriber) and checks afterwards that a publish still reaches both
//!   subscribers: one bad peer never disturbs another connection.
//! - Every read has a deadline ([`DEADLINE`]), so a broker that hangs fails the test instead of
//!   hanging it.
//!
//! # Layout
//! - `garbage`: random bytes and other protocols as a connection's first bytes.
//! - `header`: frame headers: lengths over the limits, wrong versions, unknown kinds.
//! - `handshake`: frames before or after `Hello` that do not belong there, the connection limit,
//!   peers too slow to finish the handshake.
//! - `body`: well-framed frames with bad bodies or requests the broker cannot grant.
//! - `vanishing_peers`: peers that leave in the middle of a frame or a stream, or send byte by byte.
//! - `limits`: memory a peer can make the broker hold stays bounded; sockets that never finish
//!   their handshake cannot lock clients out.

#[path = "../common/mod.rs"]
mod common;

mod body;
mod garbage;
mod handshake;
mod header;
mod limits;
mod vanishing_peers;

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use common::raw::{encoded, RawConnection};
use common::{wait_until, TestBroker};
use mycelium_client::{Client, Subscription};
use mycelium_transport::handshake::Opening;
use mycelium_transport::{
    kind, ConfigStatus, ErrorCode, Frame, ReloadOutcome, RoutingKind, TopicStats,
    HANDSHAKE_MAX_FRAME_LEN, NO_TOPIC, PROTOCOL_VERSION,
};
use uuid::Uuid;

/// Longest any single wait for the broker may take.
const DEADLINE: Duration = Duration::from_secs(10);

/// `news`: the healthy clients' topic, whose payload limit is also the broker's (so its
/// `max_frame_len` is 65536 behind the largest envelope, + 6). `small`: a topic with a
/// 16-byte payload limit. `flood`: what a killed publisher floods.
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

fn start_broker() -> TestBroker {
    TestBroker::start(TOPICS)
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

fn hello(name: &str) -> Frame {
    Frame::Hello {
        client_id: Uuid::new_v4(),
        name: name.to_owned(),
    }
}

/// A raw connection to `broker` called `name`, every read bounded by [`DEADLINE`].
fn connect(broker: &TestBroker, name: &str) -> RawConnection {
    RawConnection::connect(&broker.socket, name).within(DEADLINE)
}

/// Connects and completes the handshake; returns the connection and its `Welcome`.
fn handshake(broker: &TestBroker, name: &str) -> (RawConnection, Frame) {
    let mut raw = connect(broker, name);
    let welcome = raw.handshake(Opening::Messages);
    (raw, welcome)
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
    publisher: RawConnection,
    topic_id: u32,
    subscriber: RawConnection,
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
        let (mut publisher, _) = handshake(broker, "healthy-publisher");
        let (topic_id, _) = publisher.advertise("news");
        let (mut subscriber, _) = handshake(broker, "healthy-subscriber");
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
