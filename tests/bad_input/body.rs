//! Frame bodies and requests: a malformed body is fatal; a publish over its topic's limit, a
//! request the broker cannot grant and an unknown topic id are refused without closing, in order
//! with the connection's other frames.

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
        let (mut raw, _) = handshake(&broker, name);
        raw.send(&bytes);
        raw.expect_fatal(ErrorCode::Malformed);
        healthy.check();
    }
    let mut truncated_hello = raw_frame(v, kind::HELLO, &[0; 16]);
    truncated_hello.extend([5, b'a']);
    truncated_hello[0] += 2;
    let mut raw = connect(&broker, "hello-name-past-end");
    raw.send(&truncated_hello);
    raw.expect_fatal(ErrorCode::Malformed);
    healthy.check();
}

#[test]
fn a_publish_over_the_topic_limit_is_refused_and_not_delivered() {
    let broker = start_broker();
    let mut healthy = Healthy::connect(&broker);
    let (mut small_sub, _) = handshake(&broker, "small-subscriber");
    let sub_topic = small_sub.subscribe("small");
    let (mut raw, _) = handshake(&broker, "too-large");
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
    let (mut raw, _) = handshake(&broker, "bad-requests");
    let news = raw.subscribe("news");
    let cases: [(Frame, ErrorCode, u32); 6] = [
        (
            Frame::Subscribe {
                request_id: 101,
                prefetch: 0,
                no_echo: false,
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
                no_echo: false,
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
    let (mut raw, _) = handshake(&broker, "own-subscriber");
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
    let (mut raw, _) = handshake(&broker, "good-then-bad");
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
    let (mut raw, _) = handshake(&broker, "unknown-topic");
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
