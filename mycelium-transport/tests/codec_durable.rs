//! The frames of durable topics (protocol version 3) against their layouts, through the public
//! API: every boundary of every new field, and the refusal of a version-2 peer.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use mycelium_transport::handshake::{ClientHandshake, Opening, ServerHandshake};
use mycelium_transport::{
    encode_frame, kind, peek_frame, ConfigStatus, DecodeError, EncodeError, ErrorCode, Frame,
    FrameCodec, GroupStats, LogStats, NackAction, RoutingKind, StartPosition, TopicStats,
    DURABLE_SUBSCRIPTION_BIT, MAX_NAME_LEN, PROTOCOL_VERSION,
};
use tokio_util::codec::Decoder;
use uuid::Uuid;

fn encoded(frame: &Frame) -> BytesMut {
    let mut buf = BytesMut::new();
    encode_frame(frame, &mut buf).expect("test frames are encodable");
    buf
}

/// A frame with a valid header around `body`, whatever the body holds.
fn raw(kind: u8, body: &[u8]) -> BytesMut {
    let mut buf = BytesMut::new();
    buf.put_u32_le(u32::try_from(body.len() + 2).expect("small test body"));
    buf.put_u8(PROTOCOL_VERSION);
    buf.put_u8(kind);
    buf.put_slice(body);
    buf
}

fn decode(mut bytes: BytesMut) -> Result<Option<Frame>, DecodeError> {
    let result = FrameCodec::new(1 << 24).decode(&mut bytes);
    if result.is_ok() {
        assert!(bytes.is_empty(), "the whole frame is consumed");
    }
    result
}

fn assert_round_trips(frame: Frame) {
    let bytes = encoded(&frame);
    let (view, total) = peek_frame(&bytes, 1 << 24)
        .expect("a valid header")
        .expect("a whole frame");
    assert_eq!(total, bytes.len());
    assert_eq!(view.to_frame().expect("the view decodes"), frame);
    assert_eq!(decode(bytes).expect("decodes"), Some(frame));
}

fn malformed(bytes: BytesMut) -> (&'static str, &'static str) {
    match decode(bytes) {
        Err(DecodeError::Malformed { kind_name, reason }) => (kind_name, reason),
        other => panic!("expected Malformed, got {other:?}"),
    }
}

/// A `SubscribeDurable` body from its parts, whatever they hold.
fn subscribe_body(flags: u8, start: u8, value: u64, group: &[u8], topic: &[u8]) -> Vec<u8> {
    let mut body = vec![1, 0, 0, 0, 64, 0, 0, 0, flags, start];
    body.extend_from_slice(&value.to_le_bytes());
    body.push(u8::try_from(group.len()).expect("short group"));
    body.extend_from_slice(group);
    body.push(u8::try_from(topic.len()).expect("short topic"));
    body.extend_from_slice(topic);
    body
}

mod subscribe_durable {
    use super::*;

    #[test]
    fn every_start_position_round_trips_with_and_without_a_group() {
        for start in [
            StartPosition::New,
            StartPosition::Earliest,
            StartPosition::Offset(0),
            StartPosition::Offset(u64::MAX),
            StartPosition::Timestamp(1_765_015_200_000_000_000),
        ] {
            for group in [None, Some("billing".to_owned())] {
                assert_round_trips(Frame::SubscribeDurable {
                    request_id: 7,
                    prefetch: 1000,
                    start,
                    group,
                    topic: "orders".into(),
                });
            }
        }
    }

    #[test]
    fn no_group_is_an_empty_group_name_on_the_wire() {
        let bytes = encoded(&Frame::SubscribeDurable {
            request_id: 1,
            prefetch: 64,
            start: StartPosition::New,
            group: None,
            topic: "t".into(),
        });
        assert_eq!(&bytes[6..], &subscribe_body(0, 0, 0, b"", b"t")[..]);
    }

    #[test]
    fn a_group_name_of_255_bytes_round_trips_and_256_is_refused() {
        let longest = "g".repeat(MAX_NAME_LEN);
        assert_round_trips(Frame::SubscribeDurable {
            request_id: 1,
            prefetch: 0,
            start: StartPosition::Earliest,
            group: Some(longest.clone()),
            topic: longest.clone(),
        });
        let mut buf = BytesMut::new();
        let too_long = Frame::SubscribeDurable {
            request_id: 1,
            prefetch: 0,
            start: StartPosition::Earliest,
            group: Some("g".repeat(MAX_NAME_LEN + 1)),
            topic: "t".into(),
        };
        assert!(matches!(
            encode_frame(&too_long, &mut buf),
            Err(EncodeError::NameTooLong {
                field: "group",
                len: 256,
                ..
            })
        ));
        assert!(buf.is_empty());
    }

    #[test]
    fn an_empty_group_name_is_refused_by_the_encoder_rather_than_sent_as_no_group() {
        let mut buf = BytesMut::new();
        let frame = Frame::SubscribeDurable {
            request_id: 1,
            prefetch: 0,
            start: StartPosition::New,
            group: Some(String::new()),
            topic: "t".into(),
        };
        assert!(matches!(
            encode_frame(&frame, &mut buf),
            Err(EncodeError::EmptyName { field: "group" })
        ));
        assert!(buf.is_empty());
    }

    #[test]
    fn start_bytes_other_than_0_to_3_are_malformed() {
        for start in [4u8, 9, 0xff] {
            let bytes = raw(
                kind::SUBSCRIBE_DURABLE,
                &subscribe_body(0, start, 0, b"", b"t"),
            );
            assert_eq!(
                malformed(bytes),
                ("SubscribeDurable", "unknown start position")
            );
        }
    }

    #[test]
    fn a_start_value_beside_new_or_earliest_is_malformed() {
        for start in [0u8, 1] {
            let bytes = raw(
                kind::SUBSCRIBE_DURABLE,
                &subscribe_body(0, start, 1, b"", b"t"),
            );
            assert_eq!(
                malformed(bytes),
                (
                    "SubscribeDurable",
                    "start_value set on a start position that takes none"
                )
            );
        }
    }

    #[test]
    fn every_reserved_flag_bit_is_malformed() {
        for bit in 0..8 {
            let bytes = raw(
                kind::SUBSCRIBE_DURABLE,
                &subscribe_body(1 << bit, 1, 0, b"g", b"t"),
            );
            assert_eq!(
                malformed(bytes),
                (
                    "SubscribeDurable",
                    "reserved SubscribeDurable flag bits set"
                )
            );
        }
    }

    #[test]
    fn an_empty_topic_a_cut_body_and_trailing_bytes_are_malformed() {
        let bytes = raw(kind::SUBSCRIBE_DURABLE, &subscribe_body(0, 1, 0, b"g", b""));
        assert_eq!(malformed(bytes).1, "empty topic name");
        let full = subscribe_body(0, 1, 0, b"g", b"t");
        for cut in 0..full.len() {
            let bytes = raw(kind::SUBSCRIBE_DURABLE, &full[..cut]);
            assert_eq!(malformed(bytes).1, "truncated body", "cut at {cut}");
        }
        let mut longer = full.clone();
        longer.push(0);
        assert_eq!(
            malformed(raw(kind::SUBSCRIBE_DURABLE, &longer)).1,
            "trailing bytes"
        );
        let bad_utf8 = subscribe_body(0, 1, 0, &[0xc3, 0x28], b"t");
        assert_eq!(
            malformed(raw(kind::SUBSCRIBE_DURABLE, &bad_utf8)).1,
            "string is not valid UTF-8"
        );
    }
}

mod ack_messages {
    use super::*;

    fn body(subscription_id: u32, count: u16, offsets: &[u64]) -> Vec<u8> {
        let mut body = subscription_id.to_le_bytes().to_vec();
        body.extend_from_slice(&count.to_le_bytes());
        for offset in offsets {
            body.extend_from_slice(&offset.to_le_bytes());
        }
        body
    }

    #[test]
    fn one_and_the_most_offsets_round_trip() {
        let id = DURABLE_SUBSCRIPTION_BIT | 9;
        assert_round_trips(Frame::AckMessages {
            subscription_id: id,
            offsets: vec![u64::MAX],
        });
        let most: Vec<u64> = (0..u64::from(u16::MAX)).collect();
        let frame = Frame::AckMessages {
            subscription_id: id,
            offsets: most,
        };
        assert_eq!(
            encoded(&frame).len(),
            4 + 2 + 4 + 2 + 8 * usize::from(u16::MAX)
        );
        assert_round_trips(frame);
    }

    #[test]
    fn no_offset_or_more_than_a_u16_count_is_refused_by_the_encoder() {
        for count in [0usize, usize::from(u16::MAX) + 1] {
            let mut buf = BytesMut::new();
            let frame = Frame::AckMessages {
                subscription_id: 1,
                offsets: vec![1; count],
            };
            assert!(
                matches!(
                    encode_frame(&frame, &mut buf),
                    Err(EncodeError::BadCount { field: "offsets", count: c, .. }) if c == count
                ),
                "{count} offsets"
            );
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn a_count_of_zero_is_malformed() {
        assert_eq!(
            malformed(raw(kind::ACK_MESSAGES, &body(1, 0, &[]))),
            ("AckMessages", "AckMessages with no offset")
        );
    }

    #[test]
    fn a_count_that_does_not_match_the_body_exactly_is_malformed() {
        for (count, offsets) in [
            (2u16, &[1u64][..]),
            (1, &[1, 2][..]),
            (u16::MAX, &[1][..]),
            (3, &[1, 2, 3, 4][..]),
        ] {
            assert_eq!(
                malformed(raw(kind::ACK_MESSAGES, &body(1, count, offsets))),
                ("AckMessages", "count does not match the body length"),
                "count {count} with {} offsets",
                offsets.len()
            );
        }
        // A body whose offsets are not whole 8-byte values.
        let mut ragged = body(1, 1, &[5]);
        ragged.push(0);
        assert_eq!(
            malformed(raw(kind::ACK_MESSAGES, &ragged)).1,
            "count does not match the body length"
        );
        assert_eq!(
            malformed(raw(kind::ACK_MESSAGES, &[1, 0, 0, 0, 1])).1,
            "truncated body"
        );
    }
}

mod nack {
    use super::*;

    fn body(action: u8, delay_ms: u32) -> Vec<u8> {
        let mut body = 5u32.to_le_bytes().to_vec();
        body.extend_from_slice(&77u64.to_le_bytes());
        body.push(action);
        body.extend_from_slice(&delay_ms.to_le_bytes());
        body
    }

    #[test]
    fn every_action_round_trips() {
        for action in [
            NackAction::Requeue,
            NackAction::RequeueAfter(Duration::ZERO),
            NackAction::RequeueAfter(Duration::from_millis(250)),
            NackAction::RequeueAfter(Duration::from_millis(u64::from(u32::MAX))),
            NackAction::DeadLetter,
        ] {
            assert_round_trips(Frame::Nack {
                subscription_id: DURABLE_SUBSCRIPTION_BIT | 5,
                offset: 77,
                action,
            });
        }
    }

    #[test]
    fn a_delay_past_u32_milliseconds_is_sent_as_the_longest() {
        let frame = Frame::Nack {
            subscription_id: 5,
            offset: 77,
            action: NackAction::RequeueAfter(Duration::from_secs(u64::MAX)),
        };
        assert_eq!(&encoded(&frame)[6..], &body(1, u32::MAX)[..]);
    }

    #[test]
    fn action_bytes_other_than_0_to_2_are_malformed() {
        for action in [3u8, 0x80, 0xff] {
            assert_eq!(
                malformed(raw(kind::NACK, &body(action, 0))),
                ("Nack", "unknown nack action")
            );
        }
    }

    #[test]
    fn a_delay_beside_requeue_or_dead_letter_is_malformed() {
        for action in [0u8, 2] {
            assert_eq!(
                malformed(raw(kind::NACK, &body(action, 1))),
                ("Nack", "delay_ms set on a nack action that takes none")
            );
        }
    }

    #[test]
    fn a_cut_or_longer_body_is_malformed() {
        let full = body(1, 10);
        assert_eq!(malformed(raw(kind::NACK, &full[..16])).1, "truncated body");
        let mut longer = full;
        longer.push(0);
        assert_eq!(malformed(raw(kind::NACK, &longer)).1, "trailing bytes");
    }
}

mod publish_durable {
    use super::*;

    fn offset_envelope(payload: &[u8]) -> Bytes {
        let mut message = vec![0x20];
        message.extend_from_slice(&3u64.to_le_bytes());
        message.extend_from_slice(payload);
        Bytes::from(message)
    }

    #[test]
    fn plain_and_enveloped_messages_round_trip_empty_or_not() {
        for payload in [&b""[..], b"durable payload"] {
            assert_round_trips(Frame::PublishDurable {
                request_id: 3,
                topic_id: 4,
                enveloped: false,
                message: Bytes::copy_from_slice(payload),
            });
            assert_round_trips(Frame::PublishDurable {
                request_id: 3,
                topic_id: 4,
                enveloped: true,
                message: offset_envelope(payload),
            });
        }
        // A plain message may hold bytes that are not an envelope.
        assert_round_trips(Frame::PublishDurable {
            request_id: 3,
            topic_id: 4,
            enveloped: false,
            message: Bytes::from_static(&[0xff, 0xff]),
        });
    }

    #[test]
    fn reserved_flag_bits_are_malformed() {
        for bit in 1..8 {
            let body = [&[1, 0, 0, 0, 2, 0, 0, 0][..], &[1 | (1 << bit)], b"x"].concat();
            assert_eq!(
                malformed(raw(kind::PUBLISH_DURABLE, &body)),
                ("PublishDurable", "reserved PublishDurable flag bits set")
            );
        }
    }

    #[test]
    fn an_enveloped_message_whose_envelope_is_bad_is_malformed() {
        for message in [&[][..], &[0x40, b'x'][..], &[0x20, 1, 2][..]] {
            let body = [&[1, 0, 0, 0, 2, 0, 0, 0, 1][..], message].concat();
            let (kind_name, _) = malformed(raw(kind::PUBLISH_DURABLE, &body));
            assert_eq!(kind_name, "PublishDurable");
        }
    }

    #[test]
    fn a_body_shorter_than_its_fixed_fields_is_malformed() {
        for cut in 0..9 {
            let body = [1, 0, 0, 0, 2, 0, 0, 0, 0];
            assert_eq!(
                malformed(raw(kind::PUBLISH_DURABLE, &body[..cut])).1,
                "truncated body"
            );
        }
    }

    #[test]
    fn a_view_reads_the_fields_in_place() {
        let bytes = encoded(&Frame::PublishDurable {
            request_id: 9,
            topic_id: 4,
            enveloped: true,
            message: offset_envelope(b"p"),
        });
        let (view, _) = peek_frame(&bytes, 1 << 20).unwrap().unwrap();
        let durable = view.durable_publish().expect("a PublishDurable");
        assert_eq!(
            (durable.request_id, durable.topic_id, durable.enveloped),
            (9, 4, true)
        );
        assert_eq!(durable.message, &offset_envelope(b"p")[..]);
        assert_eq!(view.message(), None, "not a plain message frame");

        let cut = raw(kind::PUBLISH_DURABLE, &[9, 0, 0, 0, 4, 0, 0]);
        let (view, _) = peek_frame(&cut, 1 << 20).unwrap().unwrap();
        assert_eq!(view.durable_publish(), None);
        let flags = raw(kind::PUBLISH_DURABLE, &[9, 0, 0, 0, 4, 0, 0, 0, 2]);
        let (view, _) = peek_frame(&flags, 1 << 20).unwrap().unwrap();
        assert_eq!(view.durable_publish(), None);
        let publish = raw(kind::PUBLISH, &[9, 0, 0, 0, 4, 0, 0, 0, 0]);
        let (view, _) = peek_frame(&publish, 1 << 20).unwrap().unwrap();
        assert_eq!(view.durable_publish(), None);
    }
}

mod published_and_groups {
    use super::*;

    fn group(name: &str) -> GroupStats {
        GroupStats {
            name: name.into(),
            committed: 10,
            next_offset: 1 << 50,
            pending: 3,
            members: u32::MAX,
            redelivered: 4,
            dead_lettered: u64::MAX,
        }
    }

    #[test]
    fn published_and_groups_request_round_trip() {
        assert_round_trips(Frame::Published {
            request_id: 1,
            offset: u64::MAX,
        });
        assert_round_trips(Frame::GroupsRequest {
            request_id: 2,
            topic: "t".repeat(MAX_NAME_LEN),
        });
        assert_eq!(
            malformed(raw(
                kind::PUBLISHED,
                &[1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
            ))
            .1,
            "trailing bytes"
        );
        assert_eq!(
            malformed(raw(kind::GROUPS_REQUEST, &[1, 0, 0, 0, 0])).1,
            "empty topic name"
        );
    }

    #[test]
    fn no_group_one_and_several_with_the_longest_name_round_trip() {
        for groups in [
            vec![],
            vec![group("g")],
            vec![
                group("a"),
                group(&"z".repeat(MAX_NAME_LEN)),
                group("b.c-d_e"),
            ],
        ] {
            assert_round_trips(Frame::Groups {
                request_id: 3,
                groups,
            });
        }
        assert_eq!(group("g").lag(), (1 << 50) - 10);
    }

    #[test]
    fn a_group_count_larger_than_the_body_is_malformed_without_allocating() {
        assert_eq!(
            malformed(raw(kind::GROUPS, &[3, 0, 0, 0, 0xff, 0xff])),
            ("Groups", "group count larger than the body")
        );
        let mut one = encoded(&Frame::Groups {
            request_id: 3,
            groups: vec![group("g")],
        });
        // Claim two entries with the bytes of one.
        one[10] = 2;
        assert_eq!(malformed(one).1, "group count larger than the body");
    }

    #[test]
    fn an_empty_group_name_is_malformed_and_refused_by_the_encoder() {
        let mut body = vec![3, 0, 0, 0, 1, 0, 0];
        body.extend_from_slice(&[0; 40]);
        body.push(0);
        assert_eq!(malformed(raw(kind::GROUPS, &body)).1, "empty group name");
        let mut buf = BytesMut::new();
        assert!(matches!(
            encode_frame(
                &Frame::Groups {
                    request_id: 3,
                    groups: vec![group("")],
                },
                &mut buf
            ),
            Err(EncodeError::EmptyName { field: "group" })
        ));
    }

    #[test]
    fn bytes_after_the_last_group_are_malformed() {
        let mut bytes = encoded(&Frame::Groups {
            request_id: 3,
            groups: vec![group("g")],
        });
        bytes.put_u8(0);
        bytes[0] += 1;
        assert_eq!(malformed(bytes).1, "trailing bytes");
    }
}

mod stats_log {
    use super::*;

    fn stats(topics: Vec<TopicStats>) -> Frame {
        Frame::Stats {
            request_id: 1,
            connections: 1,
            uptime_ms: 5,
            topics,
            config: ConfigStatus::default(),
        }
    }

    fn entry(flags: u8, log: Option<LogStats>) -> TopicStats {
        TopicStats {
            name: "t".into(),
            routing: RoutingKind::Fanout,
            subscribers: 1,
            published: 2,
            delivered: 3,
            dropped: 4,
            queued: 5,
            shm_subscribers: 6,
            flags,
            log,
        }
    }

    const LOG: LogStats = LogStats {
        first_offset: 100,
        next_offset: 200,
        retained_messages: 100,
        retained_bytes: 4096,
    };

    #[test]
    fn durable_and_plain_entries_round_trip_side_by_side() {
        assert_round_trips(stats(vec![
            entry(TopicStats::DURABLE, Some(LOG)),
            entry(0, None),
            entry(
                TopicStats::DYNAMIC | TopicStats::DURABLE,
                Some(LogStats::default()),
            ),
            entry(TopicStats::DYNAMIC, None),
        ]));
    }

    #[test]
    fn every_entry_carries_the_log_counters_zero_when_not_durable() {
        let plain = encoded(&stats(vec![entry(0, None)]));
        let durable = encoded(&stats(vec![entry(TopicStats::DURABLE, Some(LOG))]));
        assert_eq!(plain.len(), durable.len());
        // The entry starts at body offset 20: name (2), then the fixed fields up to `flags` (41).
        let flags_at = 6 + 20 + 2 + 41;
        assert_eq!(plain[flags_at], 0);
        assert_eq!(&plain[flags_at + 1..flags_at + 33], &[0; 32]);
        assert_eq!(durable[flags_at], TopicStats::DURABLE);
        assert_eq!(
            &durable[flags_at + 1..flags_at + 9],
            &100u64.to_le_bytes()[..]
        );
    }

    #[test]
    fn the_durable_flag_is_written_from_the_log_alone() {
        let frame = stats(vec![entry(TopicStats::DURABLE, None), entry(0, Some(LOG))]);
        let decoded = decode(encoded(&frame)).unwrap().unwrap();
        let Frame::Stats { topics, .. } = decoded else {
            panic!("a Stats frame");
        };
        assert_eq!(
            (topics[0].flags, topics[0].log, topics[0].is_durable()),
            (0, None, false)
        );
        assert_eq!(
            (topics[1].flags, topics[1].log, topics[1].is_durable()),
            (TopicStats::DURABLE, Some(LOG), true)
        );
    }

    #[test]
    fn log_counters_on_a_topic_that_is_not_durable_are_malformed() {
        let mut bytes = encoded(&stats(vec![entry(0, None)]));
        let first_offset_at = 6 + 20 + 2 + 41 + 1;
        bytes[first_offset_at] = 1;
        assert_eq!(
            malformed(bytes),
            ("Stats", "log counters of a topic that is not durable")
        );
    }

    #[test]
    fn an_entry_of_the_version_2_layout_is_malformed_not_misread() {
        // One v2 entry (44 bytes, no log counters) and an empty config block.
        let mut body = vec![1, 0, 0, 0, 1, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0];
        body.extend_from_slice(&[1, b't', 0]);
        body.extend_from_slice(&[0; 41]);
        body.extend_from_slice(&[0; 22]);
        assert_eq!(
            malformed(raw(kind::STATS, &body)).1,
            "topic_count larger than the body"
        );
    }
}

mod version {
    use super::*;

    #[test]
    fn a_version_2_hello_is_refused_with_unsupported_version_naming_both_versions() {
        assert_eq!(PROTOCOL_VERSION, 3);
        let mut hello = BytesMut::new();
        ClientHandshake::new(Opening::Messages, Uuid::from_u128(1), "old")
            .encode_hello(&mut hello)
            .expect("encodes");
        hello[4] = 2;
        let refusal = ServerHandshake::new()
            .receive(&mut hello.clone())
            .expect_err("a v2 Hello is refused");
        assert_eq!(refusal.code, ErrorCode::UnsupportedVersion);
        assert_eq!(
            refusal.message,
            "unsupported protocol version 2 (this side speaks 3)"
        );
        assert!(matches!(
            FrameCodec::default().decode(&mut hello),
            Err(DecodeError::UnsupportedVersion(2))
        ));
    }
}
