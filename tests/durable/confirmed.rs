//! `PublishDurable` on the wire: answered with each message's offset, in order, once durable;
//! refused with the request's id where it cannot be.

use std::path::Path;

use bytes::Bytes;
use mycelium_transport::{ErrorCode, Frame};

use super::common::raw::RawConnection;
use super::common::TestBroker;

fn config(data: &Path, fsync: &str) -> String {
    format!(
        "[storage]\ndata_dir = \"{}\"\n\n[[topics]]\nname = \"kept\"\nrouting = \"fanout\"\n\
         durable = true\nfsync = \"{fsync}\"\n\n[[topics]]\nname = \"plain\"\nrouting = \"fanout\"\n",
        data.display()
    )
}

fn durable_publish(topic_id: u32, request_id: u32, payload: &[u8]) -> Frame {
    Frame::PublishDurable {
        request_id,
        topic_id,
        enveloped: false,
        message: Bytes::copy_from_slice(payload),
    }
}

#[test]
fn pipelined_durable_publishes_are_answered_in_order_with_their_offsets_under_every_fsync() {
    for fsync in ["always", "interval:5ms", "never"] {
        let data = tempfile::tempdir().expect("temp dir");
        let broker = TestBroker::start(&config(data.path(), fsync));
        let mut raw = RawConnection::open(&broker.socket, "durable publisher");
        let (kept, _) = raw.advertise("kept");
        // A plain publish first takes offset 0: the answers name the log's offsets.
        raw.send_frame(&Frame::Publish {
            topic_id: kept,
            payload: Bytes::from_static(b"plain"),
        });
        for i in 0..200u32 {
            raw.send_frame(&durable_publish(kept, 1000 + i, format!("m{i}").as_bytes()));
        }
        for i in 0..200u32 {
            match raw.recv() {
                Frame::Published { request_id, offset } => {
                    assert_eq!(
                        (request_id, offset),
                        (1000 + i, u64::from(i) + 1),
                        "fsync = {fsync}"
                    );
                }
                other => panic!("fsync = {fsync}: expected Published, got {other:?}"),
            }
        }
        raw.ping();
    }
}

/// The next frame refuses durable publish `request` (one message) with `code` on `topic`.
fn expect_refused(raw: &mut RawConnection, code: ErrorCode, request: u32, topic: u32) {
    match raw.recv() {
        Frame::Error {
            request_id,
            code: got,
            fatal: false,
            topic_id,
            refused: 1,
            message,
        } if request_id == request => {
            assert_eq!((got, topic_id), (code, topic), "{message}");
        }
        other => panic!("expected {code:?} refusing request {request}, got {other:?}"),
    }
}

#[test]
fn a_durable_publish_that_cannot_be_stored_is_refused_with_its_request_id() {
    let data = tempfile::tempdir().expect("temp dir");
    let broker = TestBroker::start(&config(data.path(), "always"));
    let mut raw = RawConnection::open(&broker.socket, "durable publisher");
    let (plain, _) = raw.advertise("plain");
    raw.send_frame(&durable_publish(plain, 7, b"x"));
    expect_refused(&mut raw, ErrorCode::Unsupported, 7, plain);
    raw.send_frame(&durable_publish(12345, 8, b"x"));
    expect_refused(&mut raw, ErrorCode::UnknownTopic, 8, 12345);
    let (kept, _) = raw.advertise("kept");
    let big = vec![b'x'; 70_000];
    raw.send_frame(&durable_publish(kept, 9, &big));
    expect_refused(&mut raw, ErrorCode::MessageTooLarge, 9, kept);
    // Still serving: the next one is stored at offset 0, nothing of the refused ones was.
    raw.send_frame(&durable_publish(kept, 10, b"ok"));
    assert_eq!(
        raw.recv(),
        Frame::Published {
            request_id: 10,
            offset: 0
        }
    );
}

/// A durable subscription asking for an enormous window gets at most the topic's
/// buffer_size: what the broker queues toward one reader stays bounded.
#[test]
fn a_durable_subscriptions_window_is_at_most_the_topics_buffer_size() {
    let data = tempfile::tempdir().expect("temp dir");
    let broker = TestBroker::start(&format!(
        "[storage]\ndata_dir = \"{}\"\n\n[[topics]]\nname = \"kept\"\nrouting = \"fanout\"\n\
         durable = true\nbuffer_size = 500\n",
        data.path().display()
    ));
    let mut raw = RawConnection::open(&broker.socket, "greedy reader");
    for (group, request_id) in [(None, 1), (Some("g".to_owned()), 2)] {
        raw.send_frame(&Frame::SubscribeDurable {
            request_id,
            prefetch: u32::MAX,
            start: mycelium_transport::StartPosition::Earliest,
            group,
            topic: "kept".into(),
        });
        match raw.recv() {
            Frame::TopicAck {
                request_id: answered,
                prefetch,
                ..
            } => assert_eq!((answered, prefetch), (request_id, 500)),
            other => panic!("expected a TopicAck, got {other:?}"),
        }
    }
}
