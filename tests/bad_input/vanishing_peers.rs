//! Peers that vanish: in the middle of a frame, half-closed, SIGKILLed mid-stream; and a session
//! fed one byte at a time still works.

use super::*;

#[test]
fn peers_that_leave_in_the_middle_of_a_frame_do_not_disturb_the_broker() {
    let broker = start_broker();
    let mut healthy = Healthy::connect(&broker);

    // Dropped after half a Hello.
    let mut raw = connect(&broker, "half-hello");
    raw.send(&encoded(&hello("half"))[..9]);
    drop(raw);

    // Dropped after the header and part of the body of a publish.
    let (mut raw, _) = handshake(&broker, "half-publish");
    let (topic_id, _) = raw.advertise("news");
    let publish = encoded(&Frame::Publish {
        topic_id,
        payload: Bytes::from(vec![b'p'; 1000]),
    });
    raw.send(&publish[..500]);
    drop(raw);

    // Half-closed inside a frame: the broker closes without an Error frame (§11).
    let (mut raw, _) = handshake(&broker, "half-closed");
    raw.send(&publish[..3]);
    raw.stream()
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
    let mut raw = connect(&broker, "byte-by-byte");
    // Pausing between bytes makes the broker see each one in its own read.
    let send_slowly = |raw: &mut RawConnection, frame: &Frame| {
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
