//! Envelopes through the client: headers, stamps (id + timestamp) and subscribe options.
//!
//! - Against a stand-in broker (a listener in the test that speaks the frames by hand): what
//!   the client sends (`Subscribe` flags, `PublishEnvelope` frames stamped when the topic's
//!   `TopicAck` says so, nothing at all past a header limit) and what it makes of what it
//!   receives (`DeliverEnvelope` read into a `Message`; a malformed envelope ends the
//!   connection).
//! - Against a real broker process: headers round trip, stamps present exactly on the topics
//!   declared with `stamp = true`, ids unique and increasing with timestamps inside the test's
//!   clock window, header limits from the config refused before sending, and no-echo with two
//!   clients.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::BytesMut;
use mycelium_client::{
    Backoff, HeaderLimit, Headers, Message, ReconnectingPublisher, SubscribeOptions,
};
use mycelium_transport::envelope::{Envelope, EnvelopeView, Stamp};
use mycelium_transport::{
    encode_enveloped, encode_frame, encode_message, kind, ErrorCode, Frame, FrameCodec,
    MessageRules, RoutingKind,
};
use tokio_util::codec::Decoder;

use super::*;

/// Nanoseconds since the Unix epoch now.
fn now_ns() -> u64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970");
    u64::try_from(since.as_nanos()).expect("fits u64 until 2554")
}

fn headers(pairs: &[(&str, &str)]) -> Headers {
    let mut headers = Headers::new();
    for (key, value) in pairs {
        headers.insert(*key, *value).expect("a valid test header");
    }
    headers
}

fn header_pairs(message: &Message) -> Vec<(String, String)> {
    message
        .headers()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// A stand-in broker: one listener, one connection at a time, frames by hand.
// ---------------------------------------------------------------------------------------------

/// A listening socket that plays the broker's side of the protocol by hand.
pub(super) struct StandIn {
    listener: UnixListener,
    pub(super) path: PathBuf,
    _dir: tempfile::TempDir,
}

impl StandIn {
    pub(super) fn bind() -> StandIn {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("stand-in.sock");
        let listener = UnixListener::bind(&path).expect("binding the stand-in's socket");
        StandIn {
            listener,
            path,
            _dir: dir,
        }
    }

    /// Accepts one client and answers its `Hello` with a `Welcome`.
    pub(super) fn accept(&self) -> Peer {
        let (stream, _) = self.listener.accept().expect("a client connects");
        stream.set_read_timeout(Some(DEADLINE)).expect("timeout");
        let mut peer = Peer {
            stream,
            buf: BytesMut::new(),
            codec: FrameCodec::new(1 << 20),
        };
        match peer.recv() {
            Frame::Hello { .. } => {}
            other => panic!("expected Hello, got {other:?}"),
        }
        peer.send(&Frame::Welcome {
            broker_id: uuid::Uuid::new_v4(),
            connection_id: 1,
            max_message_size: 1 << 16,
            max_frame_len: 1 << 20,
            server: "stand-in".into(),
        });
        peer
    }
}

/// The stand-in's end of one client connection.
pub(super) struct Peer {
    stream: UnixStream,
    buf: BytesMut,
    codec: FrameCodec,
}

impl Peer {
    pub(super) fn send(&mut self, frame: &Frame) {
        let mut out = BytesMut::new();
        encode_frame(frame, &mut out).expect("encodable");
        self.send_bytes(&out);
    }

    pub(super) fn send_bytes(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("writing to the client");
    }

    /// The next frame from the client (panics after [`DEADLINE`] or at its end).
    pub(super) fn recv(&mut self) -> Frame {
        loop {
            if let Some(frame) = self.codec.decode(&mut self.buf).expect("a valid frame") {
                return frame;
            }
            let mut chunk = [0u8; 64 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => panic!("the client closed the connection"),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => panic!("reading from the client: {e}"),
            }
        }
    }

    /// Reads (and drops) what the client sends until it closes the connection.
    pub(super) fn until_closed(mut self) {
        let mut chunk = [0u8; 4096];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => panic!("reading from the client: {e}"),
            }
        }
    }

    /// The next frame that is not a `Ping`, answering the pings on the way.
    pub(super) fn recv_answering_pings(&mut self) -> Frame {
        loop {
            match self.recv() {
                Frame::Ping { token } => self.send(&Frame::Pong { token }),
                other => return other,
            }
        }
    }

    /// Answers the client's next `Subscribe` with a fanout `TopicAck` for `topic_id`, and
    /// returns the `Subscribe`'s fields.
    fn ack_subscribe(&mut self, topic_id: u32) -> (u32, bool, String) {
        match self.recv_answering_pings() {
            Frame::Subscribe {
                request_id,
                prefetch,
                no_echo,
                topic,
            } => {
                self.send(&ack(request_id, topic_id, MessageRules::default()));
                (prefetch, no_echo, topic)
            }
            other => panic!("expected Subscribe, got {other:?}"),
        }
    }

    /// Answers the client's next `Advertise` with a `TopicAck` carrying `rules`.
    fn ack_advertise(&mut self, topic_id: u32, rules: MessageRules) {
        match self.recv_answering_pings() {
            Frame::Advertise { request_id, .. } => self.send(&ack(request_id, topic_id, rules)),
            other => panic!("expected Advertise, got {other:?}"),
        }
    }

    /// The messages the client sends until its next `Ping` (a flush), which is answered.
    fn messages_until_flush(&mut self) -> Vec<Frame> {
        let mut messages = Vec::new();
        loop {
            match self.recv() {
                Frame::Ping { token } => {
                    self.send(&Frame::Pong { token });
                    return messages;
                }
                frame => messages.push(frame),
            }
        }
    }
}

pub(super) fn ack(request_id: u32, topic_id: u32, rules: MessageRules) -> Frame {
    Frame::TopicAck {
        request_id,
        topic_id,
        routing: RoutingKind::Fanout,
        max_message_size: 1 << 16,
        prefetch: 0,
        pattern: false,
        rules,
    }
}

/// A `DeliverEnvelope` frame's bytes.
fn deliver_enveloped(topic_id: u32, envelope: &Envelope<'_>, payload: &[u8]) -> BytesMut {
    let mut out = BytesMut::new();
    encode_enveloped(
        &mut out,
        kind::DELIVER_ENVELOPE,
        topic_id,
        envelope,
        payload,
    )
    .expect("a small frame");
    out
}

/// Whether `error` (a subscription's end) comes from a protocol error naming the envelope.
fn is_envelope_protocol_error(end: &SubscriptionEnd) -> bool {
    let SubscriptionEnd::Failed(source) = end else {
        return false;
    };
    let mut text = source.to_string();
    let mut next = source.source();
    while let Some(error) = next {
        text.push_str(&format!(": {error}"));
        next = error.source();
    }
    text.contains("envelope")
}

#[test]
fn deliveries_with_an_envelope_reach_the_subscription_with_their_stamp_headers_and_payload() {
    let stand_in = StandIn::bind();
    let path = stand_in.path.clone();
    let stamp = Stamp {
        id: uuid::Uuid::from_u128(0x0193_93a1_b2c3_7d4e_8f00_0000_0000_0001),
        timestamp_ns: 1_765_000_000_123_456_789,
    };
    let server = std::thread::spawn(move || {
        let mut peer = stand_in.accept();
        peer.ack_subscribe(9);
        let trace = headers(&[("trace-id", "4bf92f35"), ("content-type", "text/plain")]);
        let mut frames = BytesMut::new();
        encode_message(&mut frames, kind::DELIVER, 9, b"plain first");
        frames.extend_from_slice(&deliver_enveloped(
            9,
            &Envelope {
                stamp: Some(stamp),
                headers: Some(&trace),
                ..Envelope::default()
            },
            b"stamped, with headers",
        ));
        frames.extend_from_slice(&deliver_enveloped(
            9,
            &Envelope {
                topic: Some("orders.eu"),
                ..Envelope::default()
            },
            b"from a concrete topic",
        ));
        encode_message(&mut frames, kind::DELIVER, 9, b"plain last");
        peer.send_bytes(&frames);
        // Held open until the client has read everything and gone.
        peer.until_closed();
    });
    block_on(async {
        let client = Client::connect(&path).await.expect("connect");
        let mut subscription = client.subscribe("orders.*").await.expect("subscribe");
        let first = subscription.recv().await.expect("message 1");
        assert_eq!(&first[..], b"plain first");
        assert!(!first.has_envelope());
        assert_eq!(first.id(), None);
        assert_eq!(first.headers().count(), 0);

        let second = subscription.recv().await.expect("message 2");
        assert_eq!(&second[..], b"stamped, with headers");
        assert_eq!(second.topic(), "orders.*");
        assert_eq!(second.stamp(), Some(stamp));
        assert_eq!(second.id(), Some(stamp.id));
        assert_eq!(second.timestamp_ns(), Some(stamp.timestamp_ns));
        assert_eq!(
            header_pairs(&second),
            owned(&[("trace-id", "4bf92f35"), ("content-type", "text/plain")])
        );
        assert_eq!(second.header("content-type"), Some("text/plain"));

        let third = subscription.recv().await.expect("message 3");
        assert_eq!(&third[..], b"from a concrete topic");
        assert_eq!(
            third.topic(),
            "orders.eu",
            "the envelope names the concrete topic"
        );
        assert_eq!(third.id(), None);

        let fourth = subscription.recv().await.expect("message 4");
        assert_eq!(&fourth[..], b"plain last");
        assert_eq!(fourth.topic(), "orders.*");
        drop(subscription);
        drop(client);
    });
    server.join().expect("the stand-in");
}

#[test]
fn a_malformed_envelope_from_the_broker_ends_the_connection_as_a_protocol_error() {
    let stand_in = StandIn::bind();
    let path = stand_in.path.clone();
    let server = std::thread::spawn(move || {
        let mut peer = stand_in.accept();
        peer.ack_subscribe(3);
        let mut frames = BytesMut::new();
        encode_message(&mut frames, kind::DELIVER, 3, b"before");
        // Flags with a reserved bit (0x80) set: not an envelope this version reads.
        encode_message(&mut frames, kind::DELIVER_ENVELOPE, 3, &[0x80, b'x']);
        encode_message(&mut frames, kind::DELIVER, 3, b"after");
        peer.send_bytes(&frames);
        peer
    });
    block_on(async {
        let client = Client::connect(&path).await.expect("connect");
        let mut subscription = client.subscribe("t").await.expect("subscribe");
        let before = subscription.recv().await.expect("the message before");
        assert_eq!(&before[..], b"before");
        match subscription.recv().await {
            Err(RecvError::Ended(end)) => {
                assert!(is_envelope_protocol_error(&end), "ended with {end:?}")
            }
            other => panic!("expected the end of the subscription, got {other:?}"),
        }
        let publisher = client.publish("t", b"x").await;
        assert!(
            matches!(publisher, Err(PublishError::Protocol(_))),
            "the connection is over: {publisher:?}"
        );
    });
    drop(server.join().expect("the stand-in"));
}

#[test]
fn subscribe_options_go_out_in_the_subscribe_frame() {
    let stand_in = StandIn::bind();
    let path = stand_in.path.clone();
    let server = std::thread::spawn(move || {
        let mut peer = stand_in.accept();
        let seen = [
            peer.ack_subscribe(1),
            peer.ack_subscribe(2),
            peer.ack_subscribe(3),
            peer.ack_subscribe(4),
        ];
        // The blocking client's own connection.
        let mut blocking = stand_in.accept();
        let seen_blocking = blocking.ack_subscribe(5);
        (seen, seen_blocking, peer, blocking)
    });
    let client = block_on(async {
        let client = Client::connect(&path).await.expect("connect");
        let a = client.subscribe("plain").await.expect("subscribe");
        let b = client
            .subscribe_with("quiet", SubscribeOptions::new().no_echo(true))
            .await
            .expect("subscribe no-echo");
        let c = client
            .subscribe_with("work", SubscribeOptions::new().prefetch(7))
            .await
            .expect("subscribe with prefetch");
        let d = client
            .subscribe_with(
                "both",
                SubscribeOptions::default().no_echo(true).prefetch(3),
            )
            .await
            .expect("subscribe with both");
        drop((a, b, c, d));
        client
    });
    let blocking = blocking::Client::connect(&path).expect("blocking connect");
    let subscription = blocking
        .subscribe_with("quiet", SubscribeOptions::new().no_echo(true))
        .expect("blocking subscribe no-echo");
    let (seen, seen_blocking, _peer, _blocking_peer) = server.join().expect("the stand-in");
    assert_eq!(
        seen,
        [
            (0, false, "plain".to_owned()),
            (0, true, "quiet".to_owned()),
            (7, false, "work".to_owned()),
            (3, true, "both".to_owned()),
        ]
    );
    assert_eq!(seen_blocking, (0, true, "quiet".to_owned()));
    drop(subscription);
    drop(client);
}

/// What a `PublishEnvelope` (or `Publish`) frame carried: stamp, headers, payload.
fn read_published(frame: &Frame) -> (Option<Stamp>, Vec<(String, String)>, Vec<u8>) {
    match frame {
        Frame::Publish { payload, .. } => (None, Vec::new(), payload.to_vec()),
        Frame::PublishEnvelope { message, .. } => {
            let view = EnvelopeView::parse(message).expect("a valid envelope");
            let headers = view
                .headers()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
            (view.stamp, headers, view.payload.to_vec())
        }
        other => panic!("expected a published message, got {other:?}"),
    }
}

#[test]
fn a_publisher_stamps_every_message_exactly_when_its_topics_ack_says_so() {
    let stand_in = StandIn::bind();
    let path = stand_in.path.clone();
    let stamping = MessageRules {
        stamp: true,
        max_headers: 2,
        max_header_bytes: 64,
    };
    let server = std::thread::spawn(move || {
        let mut peer = stand_in.accept();
        peer.ack_advertise(1, stamping);
        let stamped = peer.messages_until_flush();
        peer.ack_advertise(2, MessageRules::default());
        let plain = peer.messages_until_flush();
        (stamped, plain, peer)
    });
    let before = now_ns();
    block_on(async {
        let client = Client::connect(&path).await.expect("connect");
        let publisher = client.publisher("stamped").await.expect("publisher");
        publisher.publish(b"one").await.expect("publish");
        let trace = headers(&[("trace-id", "abc")]);
        publisher
            .publish_with(&trace, b"two")
            .await
            .expect("publish with headers");
        publisher
            .publish_batch(&[b"three", b"four"])
            .await
            .expect("publish a batch");
        assert!(publisher.try_publish(b"five").expect("try_publish"));
        // Past the topic's limits (2 headers, 64 bytes): refused here, nothing sent.
        let three = headers(&[("a", "1"), ("b", "2"), ("c", "3")]);
        match publisher.publish_with(&three, b"never").await {
            Err(PublishError::HeadersTooLarge { topic, limit }) => {
                assert_eq!(topic, "stamped");
                assert_eq!(limit, HeaderLimit::Count { count: 3, max: 2 });
            }
            other => panic!("expected HeadersTooLarge, got {other:?}"),
        }
        let long = headers(&[("k", &"v".repeat(64))]);
        match publisher.publish_with(&long, b"never").await {
            Err(PublishError::HeadersTooLarge { limit, .. }) => {
                assert_eq!(limit, HeaderLimit::Bytes { bytes: 65, max: 64 })
            }
            other => panic!("expected HeadersTooLarge, got {other:?}"),
        }
        client.flush().await.expect("flush");

        let plain = client.publisher("plain").await.expect("publisher");
        plain.publish(b"six").await.expect("publish");
        plain
            .publish_with(&trace, b"seven")
            .await
            .expect("publish with headers");
        plain
            .publish_with(&Headers::new(), b"eight")
            .await
            .expect("publish with no headers");
        client.flush().await.expect("flush");
    });
    let after = now_ns();
    let (stamped, plain, _peer) = server.join().expect("the stand-in");

    let stamped: Vec<_> = stamped.iter().map(read_published).collect();
    let payloads: Vec<&[u8]> = stamped.iter().map(|(_, _, p)| p.as_slice()).collect();
    assert_eq!(payloads, [&b"one"[..], b"two", b"three", b"four", b"five"]);
    let stamps: Vec<Stamp> = stamped
        .iter()
        .map(|(stamp, _, _)| stamp.expect("every message on a stamping topic is stamped"))
        .collect();
    for pair in stamps.windows(2) {
        assert!(pair[0].id < pair[1].id, "ids increase: {pair:?}");
        assert!(pair[0].timestamp_ns <= pair[1].timestamp_ns);
    }
    for stamp in &stamps {
        assert!(before <= stamp.timestamp_ns && stamp.timestamp_ns <= after);
        assert_eq!(stamp.id.get_version_num(), 7);
    }
    assert_eq!(stamped[1].1, owned(&[("trace-id", "abc")]));
    assert!(stamped[0].1.is_empty());

    assert!(
        matches!(plain[0], Frame::Publish { .. }),
        "a plain topic's plain message is a plain Publish: {:?}",
        plain[0]
    );
    let plain: Vec<_> = plain.iter().map(read_published).collect();
    assert_eq!(plain[0], (None, Vec::new(), b"six".to_vec()));
    assert_eq!(
        plain[1],
        (None, owned(&[("trace-id", "abc")]), b"seven".to_vec())
    );
    assert_eq!(plain[2], (None, Vec::new(), b"eight".to_vec()));
}

#[test]
fn the_brokers_headers_too_large_refusal_reaches_a_reconnecting_publisher_as_that_error() {
    let stand_in = StandIn::bind();
    let path = stand_in.path.clone();
    let server = std::thread::spawn(move || {
        let mut peer = stand_in.accept();
        peer.ack_advertise(4, MessageRules::default());
        match peer.recv() {
            Frame::PublishEnvelope { topic_id: 4, .. } => {}
            other => panic!("expected PublishEnvelope, got {other:?}"),
        }
        peer.send(&Frame::Error {
            request_id: 0,
            code: ErrorCode::HeadersTooLarge,
            fatal: false,
            topic_id: 4,
            message: "3 headers on topic 'audit' exceed its max_headers of 2".into(),
            refused: 1,
        });
        peer.messages_until_flush();
        peer
    });
    block_on(async {
        let mut publisher = ReconnectingPublisher::new(&path, "audit", Backoff::default())
            .await
            .expect("publisher");
        let three = headers(&[("a", "1")]);
        match publisher.publish_with(&three, b"x").await {
            Err(PublishError::HeadersTooLarge {
                topic,
                limit: HeaderLimit::Refused { message },
            }) => {
                assert_eq!(topic, "audit");
                assert!(message.contains("max_headers"), "{message}");
            }
            other => panic!("expected HeadersTooLarge, got {other:?}"),
        }
    });
    drop(server.join().expect("the stand-in"));
}

// ---------------------------------------------------------------------------------------------
// Against a real broker process.
// ---------------------------------------------------------------------------------------------

/// Topics: `stamped` (stamp = true), `plain` (defaults), `tight` (2 headers, 16 bytes).
fn envelope_broker() -> TestBroker {
    TestBroker::start(&format!(
        "{}stamp = true\n\n{}\n{}max_headers = 2\nmax_header_bytes = 16\n",
        fanout("stamped"),
        fanout("plain"),
        fanout("tight"),
    ))
}

#[test]
fn headers_round_trip_and_stamps_come_exactly_from_the_topics_that_stamp() {
    let broker = envelope_broker();
    let before = now_ns();
    block_on(async {
        let client = Client::connect(&broker.socket).await.expect("connect");
        let mut stamped = client.subscribe("stamped").await.expect("subscribe");
        let mut plain = client.subscribe("plain").await.expect("subscribe");
        let trace = headers(&[
            ("trace-id", "4bf92f35"),
            ("tenant", "é-acme"),
            ("tenant", "2"),
        ]);
        for topic in ["stamped", "plain"] {
            let publisher = client.publisher(topic).await.expect("publisher");
            publisher.publish(b"bare").await.expect("publish");
            publisher
                .publish_with(&trace, b"dressed")
                .await
                .expect("publish with headers");
        }
        client
            .flush()
            .await
            .expect("flush: the broker accepted every message");
        let after = now_ns();

        for (subscription, stamps) in [(&mut stamped, true), (&mut plain, false)] {
            let bare = subscription.recv().await.expect("bare");
            let dressed = subscription.recv().await.expect("dressed");
            assert_eq!((&bare[..], &dressed[..]), (&b"bare"[..], &b"dressed"[..]));
            assert_eq!(header_pairs(&bare), Vec::<(String, String)>::new());
            assert_eq!(
                header_pairs(&dressed),
                owned(&[
                    ("trace-id", "4bf92f35"),
                    ("tenant", "é-acme"),
                    ("tenant", "2")
                ])
            );
            for message in [&bare, &dressed] {
                assert_eq!(message.id().is_some(), stamps, "{}", message.topic());
                if let Some(ns) = message.timestamp_ns() {
                    assert!(
                        before <= ns && ns <= after,
                        "timestamp {ns} outside the window"
                    );
                }
            }
        }
    });
}

#[test]
fn a_blocking_publisher_sends_headers_that_an_async_subscriber_reads() {
    let broker = envelope_broker();
    let client = blocking::Client::connect(&broker.socket).expect("connect");
    let mut publisher = client.publisher("plain").expect("publisher");
    block_on(async {
        let subscriber = Client::connect(&broker.socket).await.expect("connect");
        let mut subscription = subscriber.subscribe("plain").await.expect("subscribe");
        let sent = headers(&[("k", "v")]);
        let handle = std::thread::spawn(move || {
            publisher
                .publish_with(&sent, b"from a thread")
                .expect("publish");
            publisher
        });
        let message = subscription.recv().await.expect("the message");
        assert_eq!(&message[..], b"from a thread");
        assert_eq!(message.header("k"), Some("v"));
        drop(handle.join().expect("the publishing thread"));
    });
}

#[test]
fn ids_from_one_publisher_are_unique_and_increasing_over_ten_thousand_messages() {
    const COUNT: usize = 10_000;
    let broker = envelope_broker();
    let before = now_ns();
    block_on(async {
        let client = Client::connect(&broker.socket).await.expect("connect");
        let mut subscription = client.subscribe("stamped").await.expect("subscribe");
        let publisher = client.publisher("stamped").await.expect("publisher");
        let receiver = tokio::spawn(async move {
            let mut stamps = Vec::with_capacity(COUNT);
            while stamps.len() < COUNT {
                let message = subscription.recv().await.expect("a message");
                stamps.push(message.stamp().expect("stamped"));
            }
            stamps
        });
        for i in 0..COUNT {
            publisher
                .publish(&(i as u64).to_le_bytes())
                .await
                .expect("publish");
        }
        client.flush().await.expect("flush");
        let after = now_ns();
        let stamps = receiver.await.expect("the receiver");
        let ids: std::collections::HashSet<_> = stamps.iter().map(|s| s.id).collect();
        assert_eq!(ids.len(), COUNT, "every id is unique");
        for pair in stamps.windows(2) {
            assert!(pair[0].id < pair[1].id, "ids increase: {pair:?}");
            assert!(pair[0].timestamp_ns <= pair[1].timestamp_ns);
        }
        assert!(before <= stamps[0].timestamp_ns);
        assert!(stamps[COUNT - 1].timestamp_ns <= after);
    });
}

#[test]
fn headers_past_the_topics_limits_are_refused_before_anything_is_sent() {
    let broker = envelope_broker();
    block_on(async {
        let client = Client::connect(&broker.socket).await.expect("connect");
        let mut subscription = client.subscribe("tight").await.expect("subscribe");
        let publisher = client.publisher("tight").await.expect("publisher");
        let three = headers(&[("a", "1"), ("b", "2"), ("c", "3")]);
        match publisher.publish_with(&three, b"too many").await {
            Err(PublishError::HeadersTooLarge { topic, limit }) => {
                assert_eq!(topic, "tight");
                assert_eq!(limit, HeaderLimit::Count { count: 3, max: 2 });
            }
            other => panic!("expected HeadersTooLarge, got {other:?}"),
        }
        let big = headers(&[("key", "a value past 16")]);
        match publisher.publish_with(&big, b"too big").await {
            Err(PublishError::HeadersTooLarge { topic, limit }) => {
                assert_eq!(topic, "tight");
                assert_eq!(limit, HeaderLimit::Bytes { bytes: 18, max: 16 });
            }
            other => panic!("expected HeadersTooLarge, got {other:?}"),
        }
        let fine = headers(&[("a", "1"), ("b", "2")]);
        publisher
            .publish_with(&fine, b"within")
            .await
            .expect("within the limits");
        client
            .flush()
            .await
            .expect("nothing was refused by the broker");
        let message = subscription
            .recv()
            .await
            .expect("the message within the limits");
        assert_eq!(
            &message[..],
            b"within",
            "the refused ones never left the client"
        );
        assert_eq!(client.refused_publishes(), 0);
    });
}

#[test]
fn a_no_echo_subscription_hears_the_other_client_but_not_its_own_over_either_transport() {
    let broker = envelope_broker();
    for transport in [Transport::Socket, Transport::SharedMemory] {
        block_on(async {
            let options = ClientOptions::with_transport(transport);
            let me = Client::connect_with(&broker.socket, options.clone())
                .await
                .expect("connect");
            let other = Client::connect_with(&broker.socket, options)
                .await
                .expect("connect");
            let mut quiet = me
                .subscribe_with("plain", SubscribeOptions::new().no_echo(true))
                .await
                .expect("no-echo subscribe");
            let mut everything = other.subscribe("plain").await.expect("subscribe");
            me.publish("plain", b"mine").await.expect("publish");
            other.publish("plain", b"theirs").await.expect("publish");
            me.flush().await.expect("flush");
            other.flush().await.expect("flush");
            let mut all = vec![
                everything.recv().await.expect("one").to_vec(),
                everything.recv().await.expect("two").to_vec(),
            ];
            all.sort();
            assert_eq!(
                all,
                [b"mine".to_vec(), b"theirs".to_vec()],
                "{transport:?}: a subscription without the option hears its own client too"
            );
            let heard = quiet.recv().await.expect("the other client's message");
            assert_eq!(&heard[..], b"theirs", "{transport:?}");
            // A marker from the other client: had the echo been delivered, it would come
            // before the marker.
            other.publish("plain", b"marker").await.expect("publish");
            let next = quiet.recv().await.expect("the marker");
            assert_eq!(
                &next[..],
                b"marker",
                "{transport:?}: its own message never arrives"
            );
        });
    }
}
