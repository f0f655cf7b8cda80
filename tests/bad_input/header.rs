//! Frame headers: a `len` over the handshake limit or over `max_frame_len` is refused from the
//! header alone, a publish of exactly `max_frame_len` (the largest payload behind the largest
//! envelope) is delivered, and wrong versions and unknown frame kinds are refused.

use mycelium_transport::envelope::{Envelope, Headers, Reply, ReplyStatus, Stamper};

use super::*;

/// The largest envelope the default header limits (32 headers, 4096 bytes) allow: flags,
/// stamp, reply_to, reply, header count, three length bytes per header, their bytes.
const ENVELOPE_ROOM: usize = 1 + 24 + 256 + 19 + 2 + 3 * 32 + 4096;

/// The topic block the broker adds to deliveries to pattern subscribers (a `str8`).
const TOPIC_BLOCK: usize = 1 + 255;

/// The `max_frame_len` a broker on [`TOPICS`] announces: its largest payload behind the
/// largest envelope and topic block, plus 6.
const MAX_FRAME_LEN: usize = 65_536 + ENVELOPE_ROOM + TOPIC_BLOCK + 6;

/// Only the 6 header bytes of a frame announcing a `len`-byte body, which is never sent.
fn header_only(len: u32, version: u8, frame_kind: u8) -> Vec<u8> {
    let mut buf = len.to_le_bytes().to_vec();
    buf.extend([version, frame_kind]);
    buf
}

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
        let mut raw = connect(&broker, name);
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
        let (mut raw, welcome) = handshake(&broker, name);
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
    // The largest plain publish.
    let payload = vec![0x5a; 65_536];
    let frame = Frame::Publish {
        topic_id: healthy.topic_id,
        payload: Bytes::from(payload.clone()),
    };
    healthy.publisher.send_frame(&frame);
    healthy.publisher.ping();
    let topic = healthy.subscriber_topic_id;
    healthy.subscriber.expect_deliver(topic, &payload);
    healthy.expect_library_message(&payload);
    // The largest enveloped one: every block at its largest, on a topic of the defaults.
    let (mut publisher, _) = handshake(&broker, "largest-publisher");
    let (flood, _) = publisher.advertise("flood");
    let (mut subscriber, _) = handshake(&broker, "largest-subscriber");
    let flood_sub = subscriber.subscribe("flood");
    let mut headers = Headers::new();
    for i in 0..32 {
        // 128 bytes a header: 32 of them make 4096.
        headers
            .insert(format!("key-{i:02}"), "v".repeat(128 - 6))
            .expect("a valid header");
    }
    let inbox = "i".repeat(255);
    let envelope = Envelope {
        stamp: Some(Stamper::new().stamp()),
        reply_to: Some(&inbox),
        reply: Some(Reply {
            status: ReplyStatus::Ok,
            code: 0,
            correlation: uuid::Uuid::new_v4(),
        }),
        headers: Some(&headers),
        ..Envelope::default()
    };
    assert_eq!(envelope.len(), ENVELOPE_ROOM);
    let mut message = BytesMut::new();
    envelope.encode(&mut message);
    message.extend_from_slice(&payload);
    let frame = Frame::PublishEnvelope {
        topic_id: flood,
        message: message.clone().freeze(),
    };
    // The largest a publisher can send: the topic block is the broker's to add.
    assert_eq!(encoded(&frame).len(), 4 + MAX_FRAME_LEN - TOPIC_BLOCK);
    publisher.send_frame(&frame);
    publisher.ping();
    subscriber.expect_deliver_envelope(flood_sub, &message);
    healthy.check();
}

#[test]
fn a_wrong_protocol_version_is_refused() {
    let broker = start_broker();
    let mut healthy = Healthy::connect(&broker);
    // A version-1 peer (before envelopes) or a version-2 one (before durable topics) is an
    // old client: refused at its Hello.
    let mut hello_v1 = encoded(&hello("v1"));
    hello_v1[4] = 1;
    let mut hello_v2 = encoded(&hello("v2"));
    hello_v2[4] = 2;
    let mut hello_v4 = encoded(&hello("v4"));
    hello_v4[4] = 4;
    let before = [
        ("hello-v1", hello_v1),
        ("hello-v2", hello_v2),
        ("hello-v4", hello_v4),
        ("hello-v0-header", header_only(20, 0, kind::HELLO)),
        // The version byte alone is enough to refuse.
        ("version-byte-only", {
            let mut b = 20u32.to_le_bytes().to_vec();
            b.push(0xff);
            b
        }),
    ];
    for (name, bytes) in before {
        let mut raw = connect(&broker, name);
        raw.send(&bytes);
        raw.expect_fatal(ErrorCode::UnsupportedVersion);
        healthy.check();
    }
    let (mut raw, _) = handshake(&broker, "ping-v1");
    raw.send(&raw_frame(1, kind::PING, &7u64.to_le_bytes()));
    raw.expect_fatal(ErrorCode::UnsupportedVersion);
    healthy.check();
}

#[test]
fn an_unknown_frame_kind_is_refused() {
    let broker = start_broker();
    let mut healthy = Healthy::connect(&broker);
    for unknown in [0x00, 0x0a, 0x1a, 0x46, 0x59, 0x99, 0xff] {
        // Before the handshake, with a body the broker must not wait for.
        let mut raw = connect(&broker, &format!("before-0x{unknown:02x}"));
        raw.send(&header_only(100, PROTOCOL_VERSION, unknown));
        raw.expect_fatal(ErrorCode::UnknownFrameKind);
        // After it, with an empty body.
        let (mut raw, _) = handshake(&broker, &format!("after-0x{unknown:02x}"));
        raw.send(&raw_frame(PROTOCOL_VERSION, unknown, &[]));
        raw.expect_fatal(ErrorCode::UnknownFrameKind);
        healthy.check();
    }
}
