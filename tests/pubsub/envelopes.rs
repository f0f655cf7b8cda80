//! Envelopes over the socket, spoken as raw frames: a `PublishEnvelope` (headers, stamp,
//! reply address) reaches subscribers as a `DeliverEnvelope` byte for byte, beside plain
//! publishes in the same write; the payload and header limits refuse one message each,
//! counted; a malformed envelope, or one with the broker's TOPIC block, ends only that
//! client's connection; no echo on a fanout topic (each of two connections gets only the
//! other's messages) and its refusal on a queue topic; enveloped messages waiting in a queue
//! topic's backlog; `drop_oldest` over a mix of plain and enveloped frames.

use bytes::{Bytes, BytesMut};
use mycelium_transport::envelope::{Envelope, Headers, Stamper};
use mycelium_transport::MessageRules;

use super::*;

/// An enveloped message: the envelope of `headers` (and a stamp and reply address when
/// asked), then `payload`.
fn enveloped(
    headers: &[(&str, &str)],
    stamp: bool,
    reply_to: Option<&str>,
    payload: &[u8],
) -> Vec<u8> {
    let mut map = Headers::new();
    for (key, value) in headers {
        map.insert(*key, *value).expect("a valid header");
    }
    let envelope = Envelope {
        stamp: stamp.then(|| Stamper::new().stamp()),
        reply_to,
        headers: Some(&map),
        ..Envelope::default()
    };
    let mut buf = BytesMut::new();
    envelope.encode(&mut buf);
    buf.extend_from_slice(payload);
    buf.to_vec()
}

/// `Advertise`s `topic` (fanout or queue) and returns its `TopicAck`'s topic id and rules.
fn advertise_any(raw: &mut RawConnection, topic: &str) -> (u32, MessageRules) {
    let request_id = raw.request_id();
    raw.send_frame(&Frame::Advertise {
        request_id,
        topic: topic.to_owned(),
    });
    match raw.recv() {
        Frame::TopicAck {
            request_id: answered,
            topic_id,
            rules,
            ..
        } if answered == request_id => (topic_id, rules),
        other => panic!("expected a TopicAck, got {other:?}"),
    }
}

#[test]
fn headers_and_stamps_travel_from_publisher_to_subscriber_byte_for_byte_beside_plain_messages() {
    let broker = TestBroker::start(
        "[[topics]]\nname = \"env\"\nrouting = \"fanout\"\nstamp = true\nmax_headers = 8\nmax_header_bytes = 512\n",
    );
    let mut subscriber = RawConnection::open(&broker.socket, "subscriber");
    let topic = subscriber.subscribe("env");
    let mut publisher = RawConnection::open(&broker.socket, "publisher");
    let (topic_id, rules) = advertise_any(&mut publisher, "env");
    assert_eq!(
        rules,
        MessageRules {
            stamp: true,
            max_headers: 8,
            max_header_bytes: 512
        },
        "the TopicAck carries the topic's settings"
    );
    let first = enveloped(
        &[("trace", "t-1"), ("kind", "order")],
        true,
        None,
        b"payload one",
    );
    let second = enveloped(&[], true, Some("_INBOX.abc"), b"");
    // One write: plain and enveloped publishes to one topic, in one run.
    let mut out = Vec::new();
    out.extend(encoded(&Frame::Publish {
        topic_id,
        payload: Bytes::from_static(b"plain before"),
    }));
    out.extend(encoded(&Frame::PublishEnvelope {
        topic_id,
        message: Bytes::from(first.clone()),
    }));
    out.extend(encoded(&Frame::Publish {
        topic_id,
        payload: Bytes::from_static(b"plain between"),
    }));
    out.extend(encoded(&Frame::PublishEnvelope {
        topic_id,
        message: Bytes::from(second.clone()),
    }));
    publisher.send(&out);
    publisher.ping();
    subscriber.expect_deliver(topic, b"plain before");
    subscriber.expect_deliver_envelope(topic, &first);
    subscriber.expect_deliver(topic, b"plain between");
    subscriber.expect_deliver_envelope(topic, &second);
    // The read of the envelope, as a client makes it.
    let message = mycelium_transport::Message::from_enveloped("env", Bytes::from(first))
        .expect("a valid envelope");
    assert_eq!(message.header("trace"), Some("t-1"));
    assert!(message.id().is_some());
    assert_eq!(&message[..], b"payload one");
}

#[test]
fn welcome_leaves_room_for_the_largest_envelope_and_such_a_publish_is_delivered() {
    let broker = TestBroker::start(
        "[[topics]]\nname = \"big\"\nrouting = \"fanout\"\nmax_message_size = 1000\nmax_headers = 4\nmax_header_bytes = 100\n",
    );
    let mut publisher = RawConnection::connect(&broker.socket, "publisher");
    let welcome = publisher.handshake(mycelium_transport::handshake::Opening::Messages);
    // The defaults (65536 bytes, 32 headers, 4096 bytes of them) are the largest here; the
    // second 256 is the topic block the broker adds for pattern subscribers.
    let room = 1 + 24 + 256 + 256 + 19 + 2 + 3 * 32 + 4096;
    match welcome {
        Frame::Welcome { max_frame_len, .. } => {
            assert_eq!(max_frame_len as usize, 65_536 + room + 6)
        }
        other => unreachable!("{other:?}"),
    }
    let mut subscriber = RawConnection::open(&broker.socket, "subscriber");
    let topic = subscriber.subscribe("big");
    let (topic_id, _) = advertise_any(&mut publisher, "big");
    // Every block at its largest, headers at the topic's limits, the payload at its limit.
    let value = "v".repeat(25 - 2);
    let headers: Vec<(String, String)> = (0..4).map(|i| (format!("k{i}"), value.clone())).collect();
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let inbox = "i".repeat(255);
    let message = enveloped(&headers, true, Some(&inbox), &[7u8; 1000]);
    publisher.publish_envelope(topic_id, &message);
    publisher.ping();
    subscriber.expect_deliver_envelope(topic, &message);
}

#[test]
fn payloads_and_headers_over_the_limits_are_refused_one_by_one_and_counted() {
    let broker = TestBroker::start(
        "[[topics]]\nname = \"strict\"\nrouting = \"fanout\"\nmax_message_size = 100\nmax_headers = 2\nmax_header_bytes = 16\n",
    );
    let mut subscriber = RawConnection::open(&broker.socket, "subscriber");
    let topic = subscriber.subscribe("strict");
    let mut publisher = RawConnection::open(&broker.socket, "publisher");
    let (topic_id, _) = advertise_any(&mut publisher, "strict");
    // The payload, not the envelope, counts against max_message_size.
    let fits = enveloped(
        &[("a", "0123456789abcd")],
        true,
        Some("_INBOX.x"),
        &[1u8; 100],
    );
    let cases: [(Vec<u8>, ErrorCode, &[&str]); 3] = [
        (
            enveloped(&[("a", "1"), ("b", "2"), ("c", "3")], false, None, b"x"),
            ErrorCode::HeadersTooLarge,
            &[
                "'strict'",
                "3 header(s)",
                "max_headers = 2",
                "max_header_bytes = 16",
            ],
        ),
        (
            enveloped(&[("a", "0123456789abcdef")], false, None, b"x"),
            ErrorCode::HeadersTooLarge,
            &["17 bytes", "max_header_bytes = 16"],
        ),
        (
            enveloped(&[], false, None, &[0u8; 101]),
            ErrorCode::MessageTooLarge,
            &["101 bytes", "limit of 100 bytes", "'strict'"],
        ),
    ];
    for (message, code, words) in &cases {
        publisher.publish_envelope(topic_id, message);
        match publisher.recv() {
            Frame::Error {
                code: got,
                fatal: false,
                topic_id: named,
                refused: 1,
                request_id: 0,
                message,
            } if got == *code && named == topic_id => {
                for word in *words {
                    assert!(message.contains(word), "{message:?} lacks {word:?}");
                }
            }
            other => panic!("expected a non-fatal {code:?} refusing 1, got {other:?}"),
        }
    }
    publisher.publish_envelope(topic_id, &fits);
    publisher.ping();
    subscriber.expect_deliver_envelope(topic, &fits);
    subscriber.ping();
    let (_, topics) = subscriber.stats();
    let strict = topics.iter().find(|t| t.name == "strict").expect("listed");
    assert_eq!(strict.published, 1, "refused messages are not published");
}

#[test]
fn a_malformed_envelope_or_a_topic_block_ends_that_client_only() {
    let broker = TestBroker::start(&fanout("shared"));
    let mut subscriber = RawConnection::open(&broker.socket, "subscriber");
    let topic = subscriber.subscribe("shared");
    let mut healthy = RawConnection::open(&broker.socket, "healthy");
    let (healthy_id, _) = healthy.advertise("shared");
    let mut with_topic = BytesMut::new();
    Envelope {
        topic: Some("shared"),
        ..Envelope::default()
    }
    .encode(&mut with_topic);
    with_topic.extend_from_slice(b"payload");
    let cases: [(&str, Vec<u8>); 5] = [
        ("reserved-flag", vec![0x80, b'x']),
        ("truncated-stamp", vec![0x01, 1, 2, 3]),
        ("empty", Vec::new()),
        ("bad-header-count", vec![0x10, 5, 0, 1, b'k', 0, 0]),
        ("topic-block", with_topic.to_vec()),
    ];
    for (n, (name, message)) in cases.iter().enumerate() {
        let mut bad = RawConnection::open(&broker.socket, name);
        let (topic_id, _) = bad.advertise("shared");
        // A good message first, in the same write: it is routed, the bad one ends the client.
        let mut out = encoded(&Frame::Publish {
            topic_id,
            payload: Bytes::from(format!("before {name}")),
        });
        out.extend(encoded(&Frame::PublishEnvelope {
            topic_id,
            message: Bytes::from(message.clone()),
        }));
        bad.send(&out);
        bad.expect_fatal(ErrorCode::Malformed);
        subscriber.expect_deliver(topic, format!("before {name}").as_bytes());
        let after = format!("still served {n}");
        healthy.send_frame(&Frame::Publish {
            topic_id: healthy_id,
            payload: Bytes::from(after.clone()),
        });
        healthy.ping();
        subscriber.expect_deliver(topic, after.as_bytes());
    }
}

#[test]
fn no_echo_gives_each_connection_only_the_others_messages_and_is_refused_on_a_queue() {
    let broker = TestBroker::start(
        "[[topics]]\nname = \"chat\"\nrouting = \"fanout\"\n\n[[topics]]\nname = \"jobs\"\nrouting = \"queue\"\n",
    );
    let mut a = RawConnection::open(&broker.socket, "a");
    let mut b = RawConnection::open(&broker.socket, "b");
    let mut topics = Vec::new();
    for raw in [&mut a, &mut b] {
        match raw.subscribe_no_echo("chat") {
            Frame::TopicAck { topic_id, .. } => topics.push(topic_id),
            other => panic!("expected a TopicAck, got {other:?}"),
        }
    }
    let topic = topics[0];
    let envelope = enveloped(&[("from", "a")], false, None, b"a3");
    let mut out = Vec::new();
    for i in 0..3 {
        out.extend(encoded(&Frame::Publish {
            topic_id: topic,
            payload: Bytes::from(format!("a{i}")),
        }));
    }
    out.extend(encoded(&Frame::PublishEnvelope {
        topic_id: topic,
        message: Bytes::from(envelope.clone()),
    }));
    a.send(&out);
    // The Pong comes next: nothing of a's own reached it.
    a.ping();
    for i in 0..3 {
        b.expect_deliver(topic, format!("a{i}").as_bytes());
    }
    b.expect_deliver_envelope(topic, &envelope);
    let mut out = Vec::new();
    for i in 0..3 {
        out.extend(encoded(&Frame::Publish {
            topic_id: topic,
            payload: Bytes::from(format!("b{i}")),
        }));
    }
    b.send(&out);
    b.ping();
    for i in 0..3 {
        a.expect_deliver(topic, format!("b{i}").as_bytes());
    }
    a.ping();
    // Skipped copies are not drops.
    let (_, stats) = a.stats();
    let chat = stats.iter().find(|t| t.name == "chat").expect("listed");
    assert_eq!((chat.published, chat.dropped), (7, 0));
    // On a queue topic no echo is refused, and the connection goes on.
    let refusal = a.subscribe_no_echo("jobs");
    match refusal {
        Frame::Error {
            code: ErrorCode::Unsupported,
            fatal: false,
            refused: 0,
            message,
            ..
        } => assert!(message.contains("fanout"), "{message}"),
        other => panic!("expected a non-fatal Unsupported, got {other:?}"),
    }
    a.ping();
}

#[test]
fn enveloped_messages_wait_in_a_queue_backlog_and_reach_the_consumer_unchanged() {
    let broker =
        TestBroker::start("[[topics]]\nname = \"jobs\"\nrouting = \"queue\"\nprefetch = 100\n");
    let mut publisher = RawConnection::open(&broker.socket, "publisher");
    let (topic_id, _) = advertise_any(&mut publisher, "jobs");
    let messages: Vec<Vec<u8>> = (0..5)
        .map(|i| {
            enveloped(
                &[("n", &i.to_string())],
                true,
                None,
                format!("job {i}").as_bytes(),
            )
        })
        .collect();
    for (i, message) in messages.iter().enumerate() {
        publisher.publish_envelope(topic_id, message);
        publisher.send_frame(&Frame::Publish {
            topic_id,
            payload: Bytes::from(format!("plain {i}")),
        });
    }
    publisher.ping();
    let mut consumer = RawConnection::open(&broker.socket, "consumer");
    let request_id = consumer.request_id();
    consumer.send_frame(&Frame::Subscribe {
        request_id,
        prefetch: 100,
        no_echo: false,
        topic: "jobs".into(),
    });
    let topic = match consumer.recv() {
        Frame::TopicAck { topic_id, .. } => topic_id,
        other => panic!("expected a TopicAck, got {other:?}"),
    };
    for (i, message) in messages.iter().enumerate() {
        consumer.expect_deliver_envelope(topic, message);
        consumer.expect_deliver(topic, format!("plain {i}").as_bytes());
    }
}

#[test]
fn drop_oldest_over_plain_and_enveloped_frames_keeps_the_newest_and_counts_the_rest() {
    const N: usize = 30_000;
    let broker = TestBroker::start(
        "[[topics]]\nname = \"lossy\"\nrouting = \"fanout\"\nbuffer_size = 16\nbackpressure = \"drop_oldest\"\n",
    );
    let mut subscriber = RawConnection::open(&broker.socket, "subscriber");
    let topic = subscriber.subscribe("lossy");
    let mut publisher = RawConnection::open(&broker.socket, "publisher");
    let (topic_id, _) = publisher.advertise("lossy");
    // Odd messages enveloped, even ones plain; 1 KiB each, so the subscriber's socket fills.
    let message = |i: usize| -> (bool, Vec<u8>) {
        let mut payload = (i as u64).to_le_bytes().to_vec();
        payload.resize(1024, 0xab);
        if i % 2 == 1 {
            (
                true,
                enveloped(&[("i", &i.to_string())], false, None, &payload),
            )
        } else {
            (false, payload)
        }
    };
    let mut out = Vec::new();
    for i in 0..N {
        let (is_enveloped, bytes) = message(i);
        out.extend(encoded(&if is_enveloped {
            Frame::PublishEnvelope {
                topic_id,
                message: Bytes::from(bytes),
            }
        } else {
            Frame::Publish {
                topic_id,
                payload: Bytes::from(bytes),
            }
        }));
        if out.len() > 1 << 20 {
            publisher.send(&out);
            out.clear();
        }
    }
    publisher.send(&out);
    publisher.ping();
    let (mut received, mut lagged, mut last) = (0usize, 0u64, None::<usize>);
    while received + (lagged as usize) < N {
        let (i, got_enveloped, body) = match subscriber.recv() {
            Frame::Lagged { topic_id, skipped } if topic_id == topic => {
                lagged += skipped;
                continue;
            }
            Frame::Deliver { topic_id, payload } if topic_id == topic => {
                let i = u64::from_le_bytes(payload[..8].try_into().expect("8 bytes")) as usize;
                (i, false, payload)
            }
            Frame::DeliverEnvelope { topic_id, message } if topic_id == topic => {
                let m = mycelium_transport::Message::from_enveloped("lossy", message.clone())
                    .expect("a valid envelope");
                let i = u64::from_le_bytes(m[..8].try_into().expect("8 bytes")) as usize;
                assert_eq!(m.header("i"), Some(i.to_string().as_str()));
                (i, true, message)
            }
            other => panic!("expected a message or a Lagged notice, got {other:?}"),
        };
        assert!(last.is_none_or(|l| i > l), "{i} after {last:?}");
        let (want_enveloped, want) = message(i);
        assert_eq!(got_enveloped, want_enveloped, "message {i} changed kind");
        assert_eq!(body[..], want[..], "message {i} changed");
        last = Some(i);
        received += 1;
    }
    assert_eq!(last, Some(N - 1), "the newest message is kept");
    assert!(lagged > 0, "the stalled subscriber lost some");
    let (_, topics) = subscriber.stats();
    let lossy = topics.iter().find(|t| t.name == "lossy").expect("listed");
    assert_eq!(lossy.dropped, lagged, "every loss counted and told");
    // Nothing else is queued.
    subscriber.ping();
}
