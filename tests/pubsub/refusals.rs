//! What the broker refuses over the socket, and that it says why: an unknown topic (by name), an
//! oversized message (naming the limit, from the CLI and from a raw client); later messages
//! still flow.

use super::*;

#[test]
fn an_unknown_topic_is_refused_by_name_and_the_broker_keeps_serving() {
    let broker = TestBroker::start(&fanout("known"));
    for args in [&["pub", "nope", "x"][..], &["sub", "nope"][..]] {
        let out = run_to_end(broker.cmd().args(args));
        assert_eq!(
            out.status.code(),
            Some(1),
            "mycelium {args:?}: {}",
            out.stderr
        );
        assert!(
            out.stderr.starts_with("error: "),
            "mycelium {args:?}: {}",
            out.stderr
        );
        assert!(
            out.stderr.contains("unknown topic 'nope'"),
            "mycelium {args:?}: {}",
            out.stderr
        );
        assert!(!out.stderr.contains("subscribed to"), "{}", out.stderr);
        assert_eq!(out.stdout, "");
    }
    let mut sub = spawn_sub(&broker, "known", &["--count", "1"]);
    let out = run_to_end(broker.cmd().args(["pub", "known", "still serving"]));
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(sub.take_lines(1), ["still serving"]);
    assert!(sub.wait().success());
    let names: Vec<String> = stats_json(&broker)["topics"]
        .as_array()
        .expect("topics")
        .iter()
        .map(|t| t["name"].as_str().expect("name").to_owned())
        .collect();
    assert_eq!(names, ["known"], "a refused name must not create a topic");

    let auto = TestBroker::start("[topic_defaults]\nauto_create = true\n");
    let mut sub = spawn_sub(&auto, "nope", &["--count", "1"]);
    let out = run_to_end(auto.cmd().args(["pub", "nope", "x"]));
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(sub.take_lines(1), ["x"]);
    assert!(sub.wait().success());
    let stats = stats_json(&auto);
    let topics = stats["topics"].as_array().expect("topics");
    assert_eq!(topics.len(), 1, "{stats}");
    assert_eq!(topics[0]["name"], "nope");
    assert_eq!(topics[0]["routing"], "fanout");
    assert_eq!(topics[0]["published"], 1);
}

#[test]
fn an_oversized_message_is_refused_naming_the_limit_and_later_messages_still_flow() {
    let broker = TestBroker::start(
        "[[topics]]\nname = \"small\"\nrouting = \"fanout\"\nmax_message_size = 16\n",
    );
    let mut sub = spawn_sub(&broker, "small", &["--count", "2"]);
    let twenty = "abcdefghijklmnopqrst";
    let out = run_to_end(broker.cmd().args(["pub", "small", twenty]));
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("message of 20 bytes exceeds the limit of 16 bytes on topic 'small'"),
        "{}",
        out.stderr
    );
    let sixteen = "exactly16bytes!!";
    assert_eq!(sixteen.len(), 16);
    let out = run_to_end(broker.cmd().args(["pub", "small", sixteen]));
    assert!(
        out.status.success(),
        "a message at the limit is accepted: {}",
        out.stderr
    );
    assert_eq!(sub.take_lines(1), [sixteen]);

    block_on(async {
        let client = Client::connect(&broker.socket).await.expect("connect");
        let publisher = client.publisher("small").await.expect("publisher");
        assert_eq!(publisher.max_message_size(), 16);
        match publisher.publish(&[b'x'; 17]).await {
            Err(PublishError::MessageTooLarge { topic, size, max }) => {
                assert_eq!((topic.as_str(), size, max), ("small", 17, 16));
            }
            other => panic!("expected MessageTooLarge, got {other:?}"),
        }
        publisher
            .publish(b"after")
            .await
            .expect("a normal publish after the refusal");
        client
            .close()
            .await
            .expect("close: no publish was refused by the broker");
    });
    assert_eq!(sub.take_lines(1), ["after"]);
    assert!(sub.wait().success());
    assert_eq!(topic_counter(&broker, "small", "published"), 2);
}

#[test]
fn the_broker_itself_refuses_an_oversized_publish_from_a_raw_client_and_keeps_the_connection() {
    let broker = TestBroker::start(
        "[[topics]]\nname = \"small\"\nrouting = \"fanout\"\nmax_message_size = 16\n",
    );
    let mut sub = spawn_sub(&broker, "small", &["--count", "1"]);
    let mut raw = RawConnection::open(&broker.socket, "raw");
    raw.send_frame(&Frame::Advertise {
        request_id: 1,
        topic: "small".into(),
    });
    let frames = raw.recv_until(|f| matches!(f, Frame::TopicAck { .. }));
    let Some(Frame::TopicAck {
        topic_id,
        max_message_size,
        ..
    }) = frames.last().cloned()
    else {
        unreachable!()
    };
    assert_eq!(max_message_size, 16);
    let mut out = Vec::new();
    for (payload, token) in [(&b"seventeen bytes!!"[..], 7), (&b"fits"[..], 8)] {
        out.extend(encoded(&Frame::Publish {
            topic_id,
            payload: bytes::Bytes::from_static(payload),
        }));
        out.extend(encoded(&Frame::Ping { token }));
    }
    raw.send(&out);
    let frames = raw.recv_until(|f| matches!(f, Frame::Pong { token: 8 }));
    assert_eq!(frames.len(), 3, "{frames:?}");
    match &frames[0] {
        Frame::Error {
            request_id: 0,
            code: ErrorCode::MessageTooLarge,
            fatal: false,
            topic_id: t,
            message,
            refused: 1,
        } if *t == topic_id => {
            assert!(
                message.contains("17 bytes") && message.contains("16"),
                "{message}"
            );
        }
        other => panic!("expected a non-fatal MessageTooLarge, got {other:?}"),
    }
    assert_eq!(frames[1], Frame::Pong { token: 7 });
    assert_eq!(sub.take_lines(1), ["fits"]);
    assert!(sub.wait().success());
    assert_eq!(topic_counter(&broker, "small", "published"), 1);
}
