//! The handshake: a frame before `Hello`, a second `Hello`, frames only the broker may send, a
//! connection over `max_connections`, and a silent or slow peer are each refused with their own
//! error.

use super::*;

#[test]
fn a_frame_before_hello_is_refused() {
    let broker = start_broker();
    let mut healthy = Healthy::connect(&broker);
    let firsts = [
        Frame::Subscribe {
            request_id: 1,
            prefetch: 0,
            no_echo: false,
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
        let mut raw = connect(&broker, &format!("first-0x{:02x}", first.kind()));
        raw.send_frame(&first);
        raw.expect_fatal(ErrorCode::HandshakeRequired);
        healthy.check();
    }
}

#[test]
fn a_second_hello_is_refused() {
    let broker = start_broker();
    let mut healthy = Healthy::connect(&broker);
    let (mut raw, _) = handshake(&broker, "twice");
    raw.send_frame(&hello("twice"));
    raw.expect_fatal(ErrorCode::HandshakeRequired);
    healthy.check();

    // Both Hellos in one write: the broker welcomes the first and refuses the second.
    let mut raw = connect(&broker, "twice-pipelined");
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
            pattern: false,
            rules: mycelium_transport::MessageRules::default(),
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
        let (mut raw, _) = handshake(&broker, &format!("after-0x{:02x}", frame.kind()));
        raw.send_frame(frame);
        raw.expect_fatal(ErrorCode::HandshakeRequired);
        healthy.check();
    }
    let mut raw = connect(&broker, "deliver-first");
    raw.send_frame(&broker_only[3]);
    raw.expect_fatal(ErrorCode::HandshakeRequired);
    healthy.check();
}

#[test]
fn a_connection_over_max_connections_is_refused() {
    let broker = TestBroker::start_with("max_connections = 4", TOPICS);
    let mut healthy = Healthy::connect(&broker);
    // The fourth connection counts from its handshake on (a socket that says nothing
    // counts against `max_pending_handshakes` instead: tests/bad_input/limits.rs).
    let (idle, _) = handshake(&broker, "idle");
    let mut over = connect(&broker, "over-the-limit");
    over.send_frame(&hello("over-the-limit"));
    over.expect_fatal(ErrorCode::TooManyConnections);
    healthy.check();
    drop(idle);
    // The broker frees the slot once it sees the idle connection close.
    wait_until("a slot to free up", || {
        let mut raw = connect(&broker, "after");
        raw.send_frame(&hello("after"));
        matches!(raw.recv(), Frame::Welcome { .. })
    });
    healthy.check();
}

#[test]
fn a_silent_or_slow_peer_gets_handshake_timeout() {
    let broker = TestBroker::start_with("connection_timeout_ms = 300", TOPICS);
    let mut healthy = Healthy::connect(&broker);
    let mut silent = connect(&broker, "silent");
    let mut half_hello = connect(&broker, "half-hello");
    half_hello.send(&encoded(&hello("slow"))[..10]);
    silent.expect_fatal(ErrorCode::HandshakeTimeout);
    half_hello.expect_fatal(ErrorCode::HandshakeTimeout);
    // The timeout covers only the handshake: the healthy clients, idle meanwhile, still work.
    healthy.check();
}
