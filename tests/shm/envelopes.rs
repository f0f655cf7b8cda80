//! Envelopes on the shared-memory path: stamps and headers from shm publishers to shm and
//! socket subscribers, from socket publishers through the relay ring, in payload segments,
//! no echo, and a hostile ring frame that claims an envelope it does not have.

use bytes::{Bytes, BytesMut};
use mycelium_transport::envelope::{Envelope, Headers, Stamp};
use mycelium_transport::shm::{FrameFlags, RingProducer, Segment};
use mycelium_transport::{Message, ShmRing};
use uuid::Uuid;

use super::*;

/// A fanout topic whose publishers stamp every message.
fn stamped(name: &str) -> String {
    format!("{}stamp = true\n", fanout(name))
}

/// A fanout topic allowing at most 2 headers, 16 bytes of them.
fn tight(name: &str) -> String {
    format!("{}max_headers = 2\nmax_header_bytes = 16\n", fanout(name))
}

fn headers(pairs: &[(&str, &str)]) -> Headers {
    let mut headers = Headers::new();
    for (key, value) in pairs {
        headers.insert(*key, *value).expect("a valid header");
    }
    headers
}

/// `payload` with an envelope of `headers` (and `stamp`) before it.
fn enveloped(stamp: Option<Stamp>, headers: &Headers, payload: &[u8]) -> Vec<u8> {
    let mut bytes = BytesMut::new();
    Envelope {
        stamp,
        headers: Some(headers),
        ..Envelope::default()
    }
    .encode(&mut bytes);
    bytes.extend_from_slice(payload);
    bytes.to_vec()
}

fn recv_message(sub: &mut blocking::Subscription) -> Message {
    match sub.recv_timeout(DEADLINE) {
        Ok(message) => message,
        Err(error) => panic!("no message within {DEADLINE:?}: {error}"),
    }
}

/// The next message a raw socket subscriber is delivered, as the client library reads it.
fn socket_message(raw: &mut RawConnection, topic: &str) -> Message {
    match raw.recv() {
        Frame::Deliver { payload, .. } => Message::new(topic, payload),
        Frame::DeliverEnvelope { message, .. } => {
            Message::from_enveloped(topic, message).expect("a well-formed envelope")
        }
        other => panic!("expected a delivery, got {other:?}"),
    }
}

/// A raw shm session's publisher ring on `topic`: the bytes it writes reach subscribers as
/// they are, whatever a well-behaved client would have checked.
struct RawPublisher {
    _session: RawConnection,
    _segment: Segment,
    producer: RingProducer,
}

impl RawPublisher {
    fn attach(broker: &TestBroker, topic: &str) -> RawPublisher {
        let mut session = RawConnection::open_shm(&broker.socket, "raw-publisher");
        session.send_frame(&Frame::ShmAttach {
            request_id: 1,
            role: ShmRole::Publish,
            no_echo: false,
            topic: topic.into(),
        });
        let (grant, fds) = session.recv_with_fds();
        assert!(matches!(grant, Frame::ShmGrant { .. }), "{grant:?}");
        let fd = fds.into_iter().next().expect("the ring's fd");
        let segment = Segment::from_fd(fd, 1 << 30).expect("map the ring");
        let region = segment.ring_region().expect("region");
        let producer = RingProducer::adopt(&region).expect("adopt");
        RawPublisher {
            _session: session,
            _segment: segment,
            producer,
        }
    }

    fn push(&mut self, bytes: &[u8], flags: FrameFlags) {
        self.producer.try_push_marked(bytes, flags).expect("push");
        self.producer.publish_and_wake().expect("wake");
    }
}

#[test]
fn a_stamping_topic_stamps_every_shm_publish_once_and_subscribers_read_the_stamp() {
    let broker = TestBroker::start(&stamped("stamped"));
    let client = shm_client(&broker);
    let mut sub = client.subscribe("stamped").expect("subscribe");
    let mut publisher = shm_client(&broker).publisher("stamped").expect("publisher");
    let before = std::time::SystemTime::now();
    publisher.publish(b"one").expect("publish");
    assert!(publisher.try_publish(b"two").expect("try_publish"));
    let mut loan = publisher.loan(5).expect("loan");
    loan.as_mut_slice().copy_from_slice(b"three");
    loan.commit().expect("commit");
    let mut ids = Vec::new();
    for expected in [&b"one"[..], b"two", b"three"] {
        let message = recv_message(&mut sub);
        assert_eq!(&message.payload()[..], expected);
        assert_eq!(message.topic(), "stamped");
        let stamp = message
            .stamp()
            .expect("every message of the topic is stamped");
        assert_eq!(stamp.id.get_version_num(), 7, "a UUIDv7");
        assert!(stamp.time() >= before - Duration::from_secs(1));
        ids.push(stamp.id);
    }
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "ids sort by time: {ids:?}"
    );
    // The buffer-reusing receive hands out the payload alone.
    publisher.publish(b"four").expect("publish");
    let mut out = Vec::new();
    assert!(sub
        .recv_timeout_into(&mut out, Some(DEADLINE))
        .expect("receive into"));
    assert_eq!(out, b"four");
}

#[test]
fn a_topic_without_stamps_keeps_shm_messages_plain() {
    let broker = TestBroker::start(&fanout("plain"));
    let client = shm_client(&broker);
    let mut sub = client.subscribe("plain").expect("subscribe");
    let mut publisher = client.publisher("plain").expect("publisher");
    publisher.publish(b"bare").expect("publish");
    let message = recv_message(&mut sub);
    assert_eq!(&message.payload()[..], b"bare");
    assert!(!message.has_envelope() && message.id().is_none());
}

#[test]
fn a_large_stamped_message_travels_in_a_segment_with_its_envelope() {
    let broker = TestBroker::start(&format!(
        "{}max_message_size = 1048576\nstamp = true\n\n[shm]\nring_bytes = {SMALL_RING}\n",
        fanout("bigstamped")
    ));
    let client = shm_client(&broker);
    let mut sub = client.subscribe("bigstamped").expect("subscribe");
    let mut publisher = client.publisher("bigstamped").expect("publisher");
    let payload: Vec<u8> = (0..5 * SMALL_RING).map(|i| (i * 7) as u8).collect();
    publisher.publish(&payload).expect("publish");
    let message = recv_message(&mut sub);
    assert!(message.payload()[..] == payload[..], "the payload, whole");
    assert!(message.id().is_some(), "the stamp came with it");
    // A large loan too: the envelope is written at the head of the segment.
    let mut loan = publisher.loan(payload.len()).expect("a large loan");
    loan.as_mut_slice().copy_from_slice(&payload);
    loan.commit().expect("commit");
    let message = recv_message(&mut sub);
    assert!(message.payload()[..] == payload[..]);
    assert!(message.id().is_some());
}

#[test]
fn headers_written_into_a_ring_reach_shm_subscribers_with_their_stamp() {
    let broker = TestBroker::start(&format!(
        "{}max_message_size = 1048576\n\n[shm]\nring_bytes = {SMALL_RING}\n",
        fanout("headers")
    ));
    let client = shm_client(&broker);
    let mut sub = client.subscribe("headers").expect("subscribe");
    let mut raw = RawPublisher::attach(&broker, "headers");
    let stamp = Stamp {
        id: Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0001),
        timestamp_ns: 1_700_000_000_123_456_789,
    };
    let sent = headers(&[("trace-id", "4bf92f35"), ("kind", "order")]);
    raw.push(
        &enveloped(Some(stamp), &sent, b"with headers"),
        FrameFlags::ENVELOPE,
    );
    let message = recv_message(&mut sub);
    assert_eq!(&message.payload()[..], b"with headers");
    assert_eq!(message.header("trace-id"), Some("4bf92f35"));
    assert_eq!(message.header("kind"), Some("order"));
    assert_eq!(message.stamp(), Some(stamp));
}

#[test]
fn a_ring_frame_marked_envelope_with_garbage_is_dropped_and_counted_never_relayed() {
    let broker = TestBroker::start(&fanout("hostile"));
    let client = shm_client(&broker);
    let mut sub = client.subscribe("hostile").expect("subscribe");
    let mut socket = RawConnection::open(&broker.socket, "socket-sub");
    socket.subscribe("hostile");
    let mut raw = RawPublisher::attach(&broker, "hostile");
    // Reserved flag bits, a truncated stamp, a header count beyond the bytes, and nothing.
    for garbage in [&[0xe0u8, 1, 2][..], &[0x01, 9, 9], &[0x10, 0xff, 0xff], &[]] {
        raw.push(garbage, FrameFlags::ENVELOPE);
    }
    let good = enveloped(None, &headers(&[("ok", "yes")]), b"after the garbage");
    raw.push(&good, FrameFlags::ENVELOPE);
    // The shm subscriber loses the four, counted as faults, and gets the good one.
    let message = recv_message(&mut sub);
    assert_eq!(&message.payload()[..], b"after the garbage");
    assert_eq!(message.header("ok"), Some("yes"));
    assert_eq!(sub.faults(), 4, "each bad envelope is a fault");
    // The broker's reader relays only the good one to the socket subscriber.
    let message = socket_message(&mut socket, "hostile");
    assert_eq!(&message.payload()[..], b"after the garbage");
    assert_eq!(message.header("ok"), Some("yes"));
    wait_until("the bad envelopes counted as dropped", || {
        topic_counter(&broker, "hostile", "dropped") >= 4
    });
}

#[test]
fn the_broker_relays_no_shm_message_beyond_the_header_limits_to_socket_subscribers() {
    let broker = TestBroker::start(&tight("tight"));
    let mut socket = RawConnection::open(&broker.socket, "socket-sub");
    socket.subscribe("tight");
    let mut raw = RawPublisher::attach(&broker, "tight");
    // Three headers (at most 2), then 17 bytes of them (at most 16), then one within both.
    let three = headers(&[("a", "1"), ("b", "2"), ("c", "3")]);
    let long = headers(&[("key", "fourteen bytes")]);
    let fine = headers(&[("key", "value")]);
    raw.push(&enveloped(None, &three, b"too many"), FrameFlags::ENVELOPE);
    raw.push(&enveloped(None, &long, b"too long"), FrameFlags::ENVELOPE);
    raw.push(&enveloped(None, &fine, b"within"), FrameFlags::ENVELOPE);
    let message = socket_message(&mut socket, "tight");
    assert_eq!(&message.payload()[..], b"within");
    assert_eq!(message.header("key"), Some("value"));
    wait_until("the two counted as dropped", || {
        topic_counter(&broker, "tight", "dropped") >= 2
    });
}

#[test]
fn a_stamped_shm_publish_reaches_a_socket_subscriber_as_deliver_envelope() {
    let broker = TestBroker::start(&stamped("tosocket"));
    let mut socket = RawConnection::open(&broker.socket, "socket-sub");
    let topic_id = socket.subscribe("tosocket");
    let mut publisher = shm_client(&broker)
        .publisher("tosocket")
        .expect("publisher");
    publisher
        .publish(b"stamped for the socket")
        .expect("publish");
    match socket.recv() {
        Frame::DeliverEnvelope {
            topic_id: got,
            message,
        } => {
            assert_eq!(got, topic_id);
            let message = Message::from_enveloped("tosocket", message).expect("envelope");
            assert_eq!(&message.payload()[..], b"stamped for the socket");
            assert!(message.id().is_some());
        }
        other => panic!("expected a DeliverEnvelope, got {other:?}"),
    }
}

#[test]
fn a_socket_publishers_envelope_reaches_shm_subscribers_through_the_relay_ring() {
    let broker = TestBroker::start(&format!(
        "{}max_message_size = 1048576\n\n[shm]\nring_bytes = {SMALL_RING}\n",
        fanout("relayed")
    ));
    let client = shm_client(&broker);
    let mut sub = client.subscribe("relayed").expect("subscribe");
    let mut socket = RawConnection::open(&broker.socket, "socket-pub");
    let (topic_id, _) = socket.advertise("relayed");
    let sent = headers(&[("from", "socket")]);
    let stamp = Stamp {
        id: Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0002),
        timestamp_ns: 1_700_000_000_000_000_001,
    };
    let small = enveloped(Some(stamp), &sent, b"small");
    let large_payload: Vec<u8> = (0..3 * SMALL_RING).map(|i| (i * 13) as u8).collect();
    let large = enveloped(Some(stamp), &sent, &large_payload);
    for message in [small, large] {
        socket.send_frame(&Frame::PublishEnvelope {
            topic_id,
            message: Bytes::from(message),
        });
    }
    socket.ping();
    let message = recv_message(&mut sub);
    assert_eq!(&message.payload()[..], b"small");
    assert_eq!(message.header("from"), Some("socket"));
    assert_eq!(message.stamp(), Some(stamp));
    let message = recv_message(&mut sub);
    assert!(
        message.payload()[..] == large_payload[..],
        "via a payload segment"
    );
    assert_eq!(message.header("from"), Some("socket"));
}

#[test]
fn a_no_echo_subscriber_holds_no_slot_in_its_own_sessions_rings() {
    let broker = TestBroker::start(&fanout("echo"));
    // Another client's publisher: its ring is granted to everyone.
    let other = shm_client(&broker);
    let _their_publisher = other.publisher("echo").expect("publisher");
    let mut session = RawConnection::open_shm(&broker.socket, "no-echo");
    // News for the session's subscriptions may come before a grant: kept for the end.
    let mut news = Vec::new();
    let mut attach = |session: &mut RawConnection, request_id, role, no_echo| {
        session.send_frame(&Frame::ShmAttach {
            request_id,
            role,
            no_echo,
            topic: "echo".into(),
        });
        loop {
            match session.recv_with_fds().0 {
                Frame::ShmGrant {
                    attachment, rings, ..
                } => return (attachment, rings),
                other @ Frame::ShmRingAdded { .. } => news.push(other),
                other => panic!("expected a grant, got {other:?}"),
            }
        }
    };
    let (_, own) = attach(&mut session, 1, ShmRole::Publish, false);
    let own_ring = own[0].ring_id;
    let (_, echoing) = attach(&mut session, 2, ShmRole::Subscribe, false);
    let (quiet_id, quiet) = attach(&mut session, 3, ShmRole::Subscribe, true);
    let ids = |rings: &[ShmRing]| rings.iter().map(|r| r.ring_id).collect::<Vec<_>>();
    assert!(ids(&echoing).contains(&own_ring), "{echoing:?}");
    assert!(!ids(&quiet).contains(&own_ring), "{quiet:?}");
    assert_eq!(
        quiet.len(),
        echoing.len() - 1,
        "every other ring is granted"
    );
    // A publisher the session attaches later is not announced to the quiet subscription
    // either; one of another session is.
    let later = attach(&mut session, 4, ShmRole::Publish, false).1[0].ring_id;
    let _another = other.publisher("echo").expect("publisher");
    let mut frames = news;
    frames.extend(session.recv_until(|frame| {
        matches!(frame, Frame::ShmRingAdded { attachment, ring } if *attachment == quiet_id && ring.ring_id != later)
    }));
    let announced: Vec<(u32, u32)> = frames
        .iter()
        .filter_map(|frame| match frame {
            Frame::ShmRingAdded { attachment, ring } => Some((*attachment, ring.ring_id)),
            _ => None,
        })
        .collect();
    assert!(
        !announced.contains(&(quiet_id, later)),
        "the quiet subscription was told of its own session's ring: {announced:?}"
    );
}
#[test]
fn no_echo_keeps_a_clients_own_shm_messages_from_its_subscription() {
    let broker = TestBroker::start(&fanout("chat"));
    let alice = shm_client(&broker);
    let bob = shm_client(&broker);
    let mut alice_sub = alice
        .subscribe_with(
            "chat",
            mycelium_client::SubscribeOptions::new().no_echo(true),
        )
        .expect("subscribe");
    let mut alice_pub = alice.publisher("chat").expect("publisher");
    let mut bob_pub = bob.publisher("chat").expect("publisher");
    alice_pub.publish(b"from alice").expect("publish");
    bob_pub.publish(b"from bob").expect("publish");
    assert_eq!(&recv_message(&mut alice_sub).payload()[..], b"from bob");
    assert!(matches!(
        alice_sub.recv_timeout(Duration::from_millis(200)),
        Err(RecvTimeoutError::Timeout)
    ));
}
