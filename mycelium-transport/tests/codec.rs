//! The codec against its contract, through the public API only: round trips, every split point,
//! every decode error, `peek_frame` against the `Decoder`, and properties over generated input.

use bytes::{BufMut, Bytes, BytesMut};
use mycelium_transport::{
    encode_frame, encode_message, kind, peek_frame, ConfigStatus, DecodeError, EncodeError,
    ErrorCode, Frame, FrameCodec, GroupStats, LogStats, MessageRules, NackAction, ReloadOutcome,
    RoutingKind, ShmRing, ShmRole, StartPosition, TopicStats, DURABLE_SUBSCRIPTION_BIT,
    HANDSHAKE_MAX_FRAME_LEN, MAX_NAME_LEN, MAX_RINGS_PER_GRANT, NO_TOPIC, PROTOCOL_VERSION,
};
use tokio_util::codec::{Decoder, Encoder};
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

fn codec() -> FrameCodec {
    FrameCodec::new(1 << 20)
}

fn topic_stats(name: &str, routing: RoutingKind) -> TopicStats {
    TopicStats {
        name: name.to_owned(),
        routing,
        subscribers: 3,
        published: u64::MAX,
        delivered: 1 << 40,
        dropped: 7,
        queued: 0,
        shm_subscribers: 2,
        flags: TopicStats::DYNAMIC,
        log: None,
    }
}

/// A durable topic's entry, with distinct values in its log counters.
fn durable_topic_stats(name: &str) -> TopicStats {
    TopicStats {
        flags: TopicStats::DURABLE,
        log: Some(LogStats {
            first_offset: 1000,
            next_offset: 1 << 33,
            retained_messages: (1 << 33) - 1000,
            retained_bytes: u64::MAX,
        }),
        ..topic_stats(name, RoutingKind::Fanout)
    }
}

/// A config status with distinct values in every field, and texts that are not ASCII.
fn config_status() -> ConfigStatus {
    ConfigStatus {
        generation: 3,
        reloads: 5,
        last_error: "broker.toml:4:9: topics.t.routing: unknown \"quéue\"\n\
                     broker.toml:7:1: shm.ring_bytes: below 4096"
            .into(),
        last_change: "+topic signals, ~execution.buffer_size 50000→80000, -topic old".into(),
        pending: "server.socket_path (needs a restart)".into(),
    }
}

/// One of every variant, with distinct values in every field so a swapped field shows.
fn every_variant() -> Vec<Frame> {
    vec![
        Frame::Hello {
            client_id: Uuid::from_u128(0x0011_2233_4455_6677_8899_aabb_ccdd_eeff),
            name: "sensor-7".into(),
        },
        Frame::Welcome {
            broker_id: Uuid::from_u128(42),
            connection_id: 0x0102_0304_0506_0708,
            max_message_size: 1 << 20,
            max_frame_len: (1 << 20) + 6,
            server: "mycelium 0.1.0".into(),
        },
        Frame::Subscribe {
            request_id: 1,
            prefetch: 64,
            no_echo: false,
            topic: "metrics.cpu".into(),
        },
        Frame::Unsubscribe {
            request_id: 2,
            topic_id: 9,
        },
        Frame::Advertise {
            request_id: 3,
            topic: "jobs".into(),
        },
        Frame::TopicAck {
            request_id: 4,
            topic_id: 5,
            routing: RoutingKind::Queue,
            max_message_size: 65_536,
            prefetch: 32,
            pattern: false,
            rules: MessageRules::default(),
        },
        Frame::Ack { request_id: 6 },
        Frame::Publish {
            topic_id: 3,
            payload: Bytes::from_static(b"hi"),
        },
        Frame::Deliver {
            topic_id: 3,
            payload: Bytes::from_static(b"\x00\xffbinary"),
        },
        Frame::Lagged {
            topic_id: 3,
            skipped: 1_000_000_007,
        },
        Frame::Credit {
            topic_id: 5,
            credit: 16,
        },
        Frame::Ping { token: 77 },
        Frame::Pong { token: u64::MAX },
        Frame::Error {
            request_id: 8,
            code: ErrorCode::UnknownTopic,
            fatal: false,
            topic_id: NO_TOPIC,
            message: "no topic named \"jobs\"".into(),
            refused: 0,
        },
        Frame::Error {
            request_id: 0,
            code: ErrorCode::SlowConsumer,
            fatal: false,
            topic_id: 5,
            message: "12 of a batch of 64 routed".into(),
            refused: 52,
        },
        Frame::StatsRequest { request_id: 9 },
        Frame::Stats {
            request_id: 10,
            connections: 2,
            uptime_ms: 123_456,
            topics: vec![
                topic_stats("a", RoutingKind::Fanout),
                topic_stats("jobs", RoutingKind::Queue),
                durable_topic_stats("orders"),
            ],
            config: config_status(),
        },
        Frame::ReloadRequest { request_id: 11 },
        Frame::ReloadResult {
            request_id: 12,
            outcome: ReloadOutcome::Failed,
            status: config_status(),
        },
        Frame::SubscribeDurable {
            request_id: 13,
            prefetch: 500,
            start: StartPosition::Timestamp(1_765_015_200_123_456_789),
            group: Some("billing".into()),
            topic: "orders".into(),
        },
        Frame::SubscribeDurable {
            request_id: 14,
            prefetch: 0,
            start: StartPosition::Offset(1 << 40),
            group: None,
            topic: "orders".into(),
        },
        Frame::AckMessages {
            subscription_id: DURABLE_SUBSCRIPTION_BIT | 3,
            offsets: vec![7, 8, 1 << 40, u64::MAX],
        },
        Frame::Nack {
            subscription_id: DURABLE_SUBSCRIPTION_BIT | 3,
            offset: 9,
            action: NackAction::RequeueAfter(std::time::Duration::from_millis(1500)),
        },
        Frame::PublishDurable {
            request_id: 15,
            topic_id: 4,
            enveloped: false,
            message: Bytes::from_static(b"\x00\xffdurable"),
        },
        Frame::Published {
            request_id: 15,
            offset: 0x0102_0304_0506_0708,
        },
        Frame::GroupsRequest {
            request_id: 16,
            topic: "orders".into(),
        },
        Frame::Groups {
            request_id: 16,
            groups: vec![GroupStats {
                name: "billing".into(),
                committed: 100,
                next_offset: 250,
                pending: 17,
                members: 3,
                redelivered: 5,
                dead_lettered: 1,
            }],
        },
    ]
}

fn malformed_reason(result: Result<Option<Frame>, DecodeError>) -> (&'static str, &'static str) {
    match result {
        Err(DecodeError::Malformed { kind_name, reason }) => (kind_name, reason),
        other => panic!("expected Malformed, got {other:?}"),
    }
}

mod round_trip {
    use super::*;

    fn assert_round_trips(frame: Frame) {
        let mut buf = encoded(&frame);
        let len = buf.len();
        assert_eq!(codec().decode(&mut buf).unwrap(), Some(frame.clone()));
        assert!(
            buf.is_empty(),
            "{frame:?} left {} of {len} bytes",
            buf.len()
        );
    }

    #[test]
    fn every_variant_decodes_to_an_equal_frame() {
        let frames = every_variant();
        let kinds: std::collections::HashSet<u8> = frames.iter().map(Frame::kind).collect();
        assert_eq!(
            kinds.len(),
            25,
            "every_variant covers every message-connection kind"
        );
        for frame in frames {
            assert_round_trips(frame);
        }
    }

    #[test]
    fn messages_with_an_empty_payload_round_trip() {
        for frame in [
            Frame::Publish {
                topic_id: 0,
                payload: Bytes::new(),
            },
            Frame::Deliver {
                topic_id: u32::MAX,
                payload: Bytes::new(),
            },
        ] {
            assert_eq!(encoded(&frame).len(), mycelium_transport::MESSAGE_OVERHEAD);
            assert_round_trips(frame);
        }
    }

    #[test]
    fn names_of_the_maximum_length_round_trip() {
        let long = "n".repeat(MAX_NAME_LEN);
        // Multi-byte characters: the limit is in bytes, 85 × 3 = 255.
        let wide = "€".repeat(85);
        assert_eq!(wide.len(), MAX_NAME_LEN);
        for name in [long, wide] {
            assert_round_trips(Frame::Hello {
                client_id: Uuid::nil(),
                name: name.clone(),
            });
            assert_round_trips(Frame::Welcome {
                broker_id: Uuid::nil(),
                connection_id: 0,
                max_message_size: 0,
                max_frame_len: 0,
                server: name.clone(),
            });
            assert_round_trips(Frame::Subscribe {
                request_id: 0,
                prefetch: 0,
                no_echo: false,
                topic: name.clone(),
            });
            assert_round_trips(Frame::Advertise {
                request_id: 0,
                topic: name.clone(),
            });
            assert_round_trips(Frame::Stats {
                request_id: 0,
                connections: 0,
                uptime_ms: 0,
                topics: vec![topic_stats(&name, RoutingKind::Fanout)],
                config: ConfigStatus::default(),
            });
        }
    }

    #[test]
    fn empty_client_and_server_names_round_trip() {
        assert_round_trips(Frame::Hello {
            client_id: Uuid::from_u128(1),
            name: String::new(),
        });
        assert_round_trips(Frame::Welcome {
            broker_id: Uuid::from_u128(1),
            connection_id: 1,
            max_message_size: 1,
            max_frame_len: 1,
            server: String::new(),
        });
    }

    #[test]
    fn stats_with_no_topics_and_with_several_round_trip() {
        for count in [0, 1, 5] {
            let topics = (0..count)
                .map(|i| topic_stats(&format!("topic.{i}"), RoutingKind::Fanout))
                .collect();
            assert_round_trips(Frame::Stats {
                request_id: count,
                connections: 1,
                uptime_ms: 1,
                topics,
                config: config_status(),
            });
        }
    }

    #[test]
    fn config_texts_empty_and_of_the_maximum_length_round_trip() {
        // 21845 × 3 = 65535 bytes: the u16 limit exactly, in multi-byte characters.
        let wide = "€".repeat(ConfigStatus::MAX_TEXT_LEN / 3);
        assert_eq!(wide.len(), usize::from(u16::MAX));
        let full = ConfigStatus {
            generation: u64::MAX,
            reloads: u64::MAX - 1,
            last_error: wide.clone(),
            last_change: "c".repeat(ConfigStatus::MAX_TEXT_LEN),
            pending: wide,
        };
        for status in [ConfigStatus::default(), full] {
            assert_round_trips(Frame::Stats {
                request_id: 1,
                connections: 0,
                uptime_ms: 0,
                topics: vec![topic_stats("t", RoutingKind::Queue)],
                config: status.clone(),
            });
            assert_round_trips(Frame::ReloadResult {
                request_id: 2,
                outcome: ReloadOutcome::Applied,
                status,
            });
        }
    }

    #[test]
    fn every_reload_outcome_round_trips() {
        for outcome in [
            ReloadOutcome::Applied,
            ReloadOutcome::Unchanged,
            ReloadOutcome::Failed,
        ] {
            assert_round_trips(Frame::ReloadResult {
                request_id: u32::MAX,
                outcome,
                status: config_status(),
            });
        }
    }

    #[test]
    fn error_frames_keep_codes_this_version_does_not_know() {
        for (code, fatal) in [
            (ErrorCode::Other(1000), true),
            (ErrorCode::Other(0), false),
            (ErrorCode::TooManyConnections, true),
        ] {
            assert_round_trips(Frame::Error {
                request_id: 0,
                code,
                fatal,
                topic_id: 12,
                message: "x".repeat(usize::from(u16::MAX)),
                refused: 0,
            });
        }
    }

    #[test]
    fn error_flags_other_than_fatal_are_ignored_on_receipt() {
        let mut buf = encoded(&Frame::Error {
            request_id: 1,
            code: ErrorCode::Internal,
            fatal: false,
            topic_id: NO_TOPIC,
            message: String::new(),
            refused: 0,
        });
        // flags is at offset 6 (header) + 4 (request_id) + 2 (code).
        buf[12] = 0b1111_1110;
        let Some(Frame::Error { fatal, .. }) = codec().decode(&mut buf).unwrap() else {
            panic!("expected an Error frame");
        };
        assert!(!fatal);
    }

    #[test]
    fn an_error_carries_the_number_of_messages_it_refuses_after_its_message() {
        for refused in [0, 1, 64, u32::MAX] {
            let frame = Frame::Error {
                request_id: 0,
                code: ErrorCode::TopicRemoved,
                fatal: false,
                topic_id: 7,
                message: "ab".into(),
                refused,
            };
            let buf = encoded(&frame);
            // header 6 | request_id 4 | code 2 | flags 1 | topic_id 4 | str16 2+2 | refused 4
            assert_eq!(buf.len(), 6 + 17 + 2, "body length 17 + n");
            assert_eq!(&buf[..4], &(2u32 + 17 + 2).to_le_bytes());
            assert_eq!(&buf[17..21], &[2, 0, b'a', b'b']);
            assert_eq!(&buf[21..], &refused.to_le_bytes());
            assert_round_trips(frame);
        }
    }

    #[test]
    fn the_codec_encoder_writes_what_encode_frame_writes() {
        for frame in every_variant() {
            let mut by_ref = BytesMut::new();
            codec().encode(&frame, &mut by_ref).unwrap();
            let mut by_value = BytesMut::new();
            codec().encode(frame.clone(), &mut by_value).unwrap();
            assert_eq!(by_ref, encoded(&frame));
            assert_eq!(by_value, by_ref);
        }
    }

    #[test]
    fn decoded_payloads_share_the_read_buffer() {
        let mut buf = encoded(&Frame::Publish {
            topic_id: 1,
            payload: Bytes::from_static(b"zero-copy"),
        });
        let payload_at = buf.as_ptr() as usize + mycelium_transport::MESSAGE_OVERHEAD;
        let Some(Frame::Publish { payload, .. }) = codec().decode(&mut buf).unwrap() else {
            panic!("expected a Publish");
        };
        assert_eq!(payload.as_ptr() as usize, payload_at);
    }
}

mod split_points {
    use super::*;

    fn ping() -> Frame {
        Frame::Ping { token: 0xdead_beef }
    }

    #[test]
    fn a_header_split_inside_the_length_waits_without_consuming() {
        let whole = encoded(&ping());
        let mut buf = BytesMut::from(&whole[..3]);
        assert_eq!(codec().decode(&mut buf).unwrap(), None);
        assert_eq!(&buf[..], &whole[..3]);
        buf.extend_from_slice(&whole[3..]);
        assert_eq!(codec().decode(&mut buf).unwrap(), Some(ping()));
        assert!(buf.is_empty());
    }

    #[test]
    fn a_header_split_after_the_version_waits_without_consuming() {
        let whole = encoded(&ping());
        let mut buf = BytesMut::from(&whole[..5]);
        assert_eq!(codec().decode(&mut buf).unwrap(), None);
        assert_eq!(buf.len(), 5);
        buf.extend_from_slice(&whole[5..]);
        assert_eq!(codec().decode(&mut buf).unwrap(), Some(ping()));
        assert!(buf.is_empty());
    }

    #[test]
    fn a_body_split_waits_and_reserves_exactly_the_rest_of_the_frame() {
        let frame = Frame::Publish {
            topic_id: 7,
            payload: Bytes::from(vec![0xab; 1000]),
        };
        let whole = encoded(&frame);
        let mut buf = BytesMut::with_capacity(16);
        buf.extend_from_slice(&whole[..16]);
        assert_eq!(codec().decode(&mut buf).unwrap(), None);
        assert_eq!(buf.len(), 16);
        assert!(buf.capacity() >= whole.len(), "{}", buf.capacity());
        let reserved = buf.capacity();
        buf.extend_from_slice(&whole[16..]);
        assert_eq!(buf.capacity(), reserved, "the rest fit without growing");
        assert_eq!(codec().decode(&mut buf).unwrap(), Some(frame));
        assert!(buf.is_empty());
    }

    #[test]
    fn several_frames_in_one_buffer_decode_in_order_and_leave_the_partial_one() {
        let frames = every_variant();
        let mut buf = BytesMut::new();
        for frame in &frames {
            encode_frame(frame, &mut buf).unwrap();
        }
        let partial = encoded(&ping());
        buf.extend_from_slice(&partial[..7]);
        let mut codec = codec();
        for frame in &frames {
            assert_eq!(codec.decode(&mut buf).unwrap().as_ref(), Some(frame));
        }
        assert_eq!(codec.decode(&mut buf).unwrap(), None);
        assert_eq!(&buf[..], &partial[..7]);
    }

    #[test]
    fn a_frame_delivered_byte_by_byte_decodes_only_at_its_last_byte() {
        for frame in every_variant() {
            let whole = encoded(&frame);
            let mut codec = codec();
            let mut buf = BytesMut::new();
            for (i, byte) in whole.iter().enumerate() {
                buf.put_u8(*byte);
                let decoded = codec.decode(&mut buf).unwrap();
                if i + 1 < whole.len() {
                    assert_eq!(decoded, None, "{frame:?} at byte {i}");
                    assert_eq!(buf.len(), i + 1);
                } else {
                    assert_eq!(decoded.as_ref(), Some(&frame));
                    assert!(buf.is_empty());
                }
            }
        }
    }

    #[test]
    fn end_of_stream_is_clean_only_on_a_frame_boundary() {
        let mut codec = codec();
        let mut empty = BytesMut::new();
        assert_eq!(codec.decode_eof(&mut empty).unwrap(), None);

        let mut last = encoded(&ping());
        assert_eq!(codec.decode_eof(&mut last).unwrap(), Some(ping()));
        assert_eq!(codec.decode_eof(&mut last).unwrap(), None);

        let mut cut = encoded(&ping());
        cut.truncate(9);
        assert!(matches!(
            codec.decode_eof(&mut cut),
            Err(DecodeError::TruncatedAtEof)
        ));
    }
}

mod decode_errors {
    use super::*;

    #[test]
    fn a_length_over_the_limit_fails_from_the_four_length_bytes_alone_without_reserving() {
        let mut codec = FrameCodec::new(100);
        for len in [101u32, u32::MAX] {
            let mut buf = BytesMut::with_capacity(8);
            buf.put_u32_le(len);
            let capacity = buf.capacity();
            match codec.decode(&mut buf) {
                Err(DecodeError::FrameTooLarge { len: got, max: 100 }) => {
                    assert_eq!(got, len as usize)
                }
                other => panic!("expected FrameTooLarge, got {other:?}"),
            }
            assert_eq!(buf.capacity(), capacity, "nothing reserved for len {len}");
            assert_eq!(buf.len(), 4, "nothing consumed");
        }
    }

    #[test]
    fn a_length_equal_to_the_limit_is_accepted() {
        let frame = Frame::Publish {
            topic_id: 1,
            payload: Bytes::from(vec![1; 94]),
        };
        let mut buf = encoded(&frame);
        assert_eq!(FrameCodec::new(100).decode(&mut buf).unwrap(), Some(frame));
    }

    #[test]
    fn the_default_limit_is_the_handshake_limit() {
        assert_eq!(
            FrameCodec::default().max_frame_len(),
            HANDSHAKE_MAX_FRAME_LEN
        );
        let mut buf = BytesMut::new();
        buf.put_u32_le(HANDSHAKE_MAX_FRAME_LEN as u32 + 1);
        assert!(matches!(
            FrameCodec::default().decode(&mut buf),
            Err(DecodeError::FrameTooLarge { .. })
        ));
    }

    #[test]
    fn raising_the_limit_applies_from_the_next_frame() {
        let frame = Frame::Publish {
            topic_id: 1,
            payload: Bytes::from(vec![0; HANDSHAKE_MAX_FRAME_LEN]),
        };
        let mut codec = FrameCodec::default();
        let mut buf = encoded(&frame);
        assert!(codec.decode(&mut buf).is_err());
        codec.set_max_frame_len(2 * HANDSHAKE_MAX_FRAME_LEN);
        assert_eq!(codec.max_frame_len(), 2 * HANDSHAKE_MAX_FRAME_LEN);
        assert_eq!(codec.decode(&mut buf).unwrap(), Some(frame));
    }

    #[test]
    fn a_length_below_two_is_malformed() {
        for len in [0u32, 1] {
            let mut buf = BytesMut::new();
            buf.put_u32_le(len);
            assert_eq!(
                malformed_reason(codec().decode(&mut buf)),
                ("unknown", "len field below 2, no room for version and kind")
            );
        }
    }

    #[test]
    fn a_wrong_version_fails_as_soon_as_its_byte_arrives() {
        let mut buf = BytesMut::new();
        buf.put_u32_le(1000);
        buf.put_u8(PROTOCOL_VERSION + 1);
        assert!(matches!(
            codec().decode(&mut buf),
            Err(DecodeError::UnsupportedVersion(v)) if v == PROTOCOL_VERSION + 1
        ));
    }

    #[test]
    fn an_unknown_kind_fails_as_soon_as_its_byte_arrives() {
        for unknown in [0x00, 0x0a, 0x1a, 0x46, 0x59, 0x31, 0xff] {
            let mut buf = BytesMut::new();
            buf.put_u32_le(1000);
            buf.put_u8(PROTOCOL_VERSION);
            buf.put_u8(unknown);
            assert!(matches!(
                codec().decode(&mut buf),
                Err(DecodeError::UnknownKind(k)) if k == unknown
            ));
        }
    }

    #[test]
    fn a_truncated_fixed_body_is_malformed() {
        let cases: [(u8, &[u8]); 4] = [
            (kind::ACK, &[1, 0, 0]),
            (kind::PING, &[1, 2, 3, 4, 5, 6, 7]),
            (kind::TOPIC_ACK, &[0; 16]),
            (kind::HELLO, &[0; 15]),
        ];
        for (k, body) in cases {
            assert_eq!(
                malformed_reason(codec().decode(&mut raw(k, body))).1,
                "truncated body",
                "kind 0x{k:02x}"
            );
        }
    }

    #[test]
    fn an_error_without_its_refused_count_is_malformed_and_one_with_more_too() {
        // request_id 0 | code 22 | flags 0 | topic_id 3 | message "t" : the earlier revision's
        // body, which ends at the message.
        let earlier: &[u8] = &[0, 0, 0, 0, 22, 0, 0, 3, 0, 0, 0, 1, 0, b't'];
        assert_eq!(
            malformed_reason(codec().decode(&mut raw(kind::ERROR, earlier))),
            ("Error", "truncated body")
        );
        for cut in 1..4 {
            let mut body = earlier.to_vec();
            body.extend_from_slice(&[5, 0, 0, 0][..cut]);
            assert_eq!(
                malformed_reason(codec().decode(&mut raw(kind::ERROR, &body))).1,
                "truncated body"
            );
        }
        let mut whole = earlier.to_vec();
        whole.extend_from_slice(&[5, 0, 0, 0]);
        assert_eq!(
            codec().decode(&mut raw(kind::ERROR, &whole)).unwrap(),
            Some(Frame::Error {
                request_id: 0,
                code: ErrorCode::TopicRemoved,
                fatal: false,
                topic_id: 3,
                message: "t".into(),
                refused: 5,
            })
        );
        whole.push(0);
        assert_eq!(
            malformed_reason(codec().decode(&mut raw(kind::ERROR, &whole))),
            ("Error", "trailing bytes")
        );
    }

    #[test]
    fn a_message_without_a_whole_topic_id_is_malformed() {
        for k in [kind::PUBLISH, kind::DELIVER] {
            assert_eq!(
                malformed_reason(codec().decode(&mut raw(k, &[1, 2, 3]))).1,
                "truncated body"
            );
        }
    }

    #[test]
    fn trailing_bytes_after_a_fixed_body_are_malformed() {
        let cases: [(u8, &[u8]); 3] = [
            (kind::ACK, &[1, 0, 0, 0, 0]),
            (kind::PONG, &[0; 9]),
            // A Hello whose name is followed by a stray byte.
            (
                kind::HELLO,
                &[
                    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, b'a', b'b',
                ],
            ),
        ];
        for (k, body) in cases {
            assert_eq!(
                malformed_reason(codec().decode(&mut raw(k, body))).1,
                "trailing bytes",
                "kind 0x{k:02x}"
            );
        }
    }

    #[test]
    fn a_malformed_body_is_consumed_so_the_next_frame_decodes() {
        let mut buf = raw(kind::ACK, &[1, 0, 0, 0, 0]);
        buf.extend_from_slice(&encoded(&Frame::Ack { request_id: 2 }));
        let mut codec = codec();
        assert_eq!(
            malformed_reason(codec.decode(&mut buf)),
            ("Ack", "trailing bytes")
        );
        assert_eq!(
            codec.decode(&mut buf).unwrap(),
            Some(Frame::Ack { request_id: 2 })
        );
    }

    #[test]
    fn a_name_that_is_not_utf8_is_malformed() {
        let mut body = vec![0; 16];
        body.extend_from_slice(&[2, 0xc3, 0x28]);
        assert_eq!(
            malformed_reason(codec().decode(&mut raw(kind::HELLO, &body))),
            ("Hello", "string is not valid UTF-8")
        );
        let mut body = vec![9, 0, 0, 0, 0, 0, 0, 0, 0];
        body.extend_from_slice(&[1, 0xff]);
        assert_eq!(
            malformed_reason(codec().decode(&mut raw(kind::SUBSCRIBE, &body))).1,
            "string is not valid UTF-8"
        );
    }

    #[test]
    fn a_routing_byte_other_than_fanout_or_queue_is_malformed() {
        let mut body = vec![1, 0, 0, 0, 2, 0, 0, 0, 2];
        body.extend_from_slice(&[0; 8]);
        assert_eq!(
            malformed_reason(codec().decode(&mut raw(kind::TOPIC_ACK, &body))),
            ("TopicAck", "unknown routing kind")
        );
    }

    #[test]
    fn an_empty_topic_name_is_malformed() {
        assert_eq!(
            malformed_reason(codec().decode(&mut raw(kind::ADVERTISE, &[1, 0, 0, 0, 0]))),
            ("Advertise", "empty topic name")
        );
        assert_eq!(
            malformed_reason(
                codec().decode(&mut raw(kind::SUBSCRIBE, &[1, 0, 0, 0, 0, 0, 0, 0, 0, 0]))
            ),
            ("Subscribe", "empty topic name")
        );
    }

    #[test]
    fn a_missing_or_cut_topic_name_is_malformed() {
        assert_eq!(
            malformed_reason(codec().decode(&mut raw(kind::ADVERTISE, &[1, 0, 0, 0]))).1,
            "truncated body"
        );
        assert_eq!(
            malformed_reason(
                codec().decode(&mut raw(kind::ADVERTISE, &[1, 0, 0, 0, 5, b'a', b'b']))
            )
            .1,
            "truncated body"
        );
    }

    /// A config status block: generation 1, reloads 0, and the three texts.
    fn config_block(error: &[u8], change: &[u8], pending: &[u8]) -> Vec<u8> {
        let mut block = vec![1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        for text in [error, change, pending] {
            block.extend_from_slice(&u16::try_from(text.len()).unwrap().to_le_bytes());
            block.extend_from_slice(text);
        }
        block
    }

    fn stats_body(count: u32, entries: &[u8]) -> Vec<u8> {
        let mut body = vec![1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0];
        body.extend_from_slice(&count.to_le_bytes());
        body.extend_from_slice(entries);
        body.extend_from_slice(&config_block(b"", b"", b""));
        body
    }

    fn reload_result_body(outcome: u8, block: &[u8]) -> Vec<u8> {
        let mut body = vec![7, 0, 0, 0, outcome];
        body.extend_from_slice(block);
        body
    }

    /// Decodes `bad` followed by a `Ping`: `bad` is `Malformed` with `reason`, consumes exactly
    /// its own bytes, and the `Ping` decodes after it.
    fn assert_malformed_then_resync(bad: BytesMut, kind_name: &str, reason: &str) {
        assert_eq!(malformed_then_resync(bad), (kind_name, reason));
    }

    /// As [`assert_malformed_then_resync`], returning the kind and reason of the malformed frame.
    fn malformed_then_resync(bad: BytesMut) -> (&'static str, &'static str) {
        let bad_len = bad.len();
        let ping = encoded(&Frame::Ping { token: 5 });
        let mut buf = bad;
        buf.extend_from_slice(&ping);
        let mut codec = codec();
        let malformed = malformed_reason(codec.decode(&mut buf));
        assert_eq!(
            buf.len(),
            ping.len(),
            "all {bad_len} bytes of the bad frame consumed"
        );
        assert_eq!(
            codec.decode(&mut buf).unwrap(),
            Some(Frame::Ping { token: 5 })
        );
        malformed
    }

    #[test]
    fn a_stats_or_reload_result_with_a_cut_config_block_is_malformed_and_consumes_its_frame() {
        let topics = vec![topic_stats("a", RoutingKind::Fanout)];
        for frame in [
            Frame::Stats {
                request_id: 1,
                connections: 2,
                uptime_ms: 3,
                topics,
                config: config_status(),
            },
            Frame::Stats {
                request_id: 1,
                connections: 2,
                uptime_ms: 3,
                topics: Vec::new(),
                config: ConfigStatus::default(),
            },
            Frame::ReloadResult {
                request_id: 4,
                outcome: ReloadOutcome::Unchanged,
                status: config_status(),
            },
        ] {
            let whole = encoded(&frame);
            let block_len = match &frame {
                Frame::Stats { config, .. } | Frame::ReloadResult { status: config, .. } => {
                    22 + config.last_error.len() + config.last_change.len() + config.pending.len()
                }
                _ => unreachable!("only Stats and ReloadResult above"),
            };
            let body = &whole[6..];
            let name = kind::name(frame.kind()).unwrap();
            // Every cut inside the block, the whole block missing included. Once fewer bytes
            // remain than the entries and an empty block need, the count check refuses first.
            for cut in 1..=block_len {
                let (kind_name, reason) =
                    malformed_then_resync(raw(frame.kind(), &body[..body.len() - cut]));
                assert_eq!(kind_name, name);
                assert!(
                    reason == "truncated body"
                        || (frame.kind() == kind::STATS
                            && reason == "topic_count larger than the body"),
                    "{name} cut by {cut}: {reason}"
                );
            }
        }
    }

    #[test]
    fn bytes_after_the_config_block_are_malformed() {
        let mut stats = stats_body(0, &[]);
        stats.push(0);
        assert_malformed_then_resync(raw(kind::STATS, &stats), "Stats", "trailing bytes");
        let mut result = reload_result_body(0, &config_block(b"e", b"", b"p"));
        result.push(0);
        assert_malformed_then_resync(
            raw(kind::RELOAD_RESULT, &result),
            "ReloadResult",
            "trailing bytes",
        );
        let mut request = vec![1, 0, 0, 0];
        request.push(0);
        assert_malformed_then_resync(
            raw(kind::RELOAD_REQUEST, &request),
            "ReloadRequest",
            "trailing bytes",
        );
    }

    #[test]
    fn an_unknown_reload_outcome_is_malformed() {
        for outcome in [3, 0x80, 0xff] {
            let body = reload_result_body(outcome, &config_block(b"", b"", b""));
            assert_malformed_then_resync(
                raw(kind::RELOAD_RESULT, &body),
                "ReloadResult",
                "unknown reload outcome",
            );
        }
        let body = reload_result_body(2, &config_block(b"why", b"", b""));
        let Some(Frame::ReloadResult {
            request_id,
            outcome,
            status,
        }) = codec()
            .decode(&mut raw(kind::RELOAD_RESULT, &body))
            .unwrap()
        else {
            panic!("outcome 2 is a valid ReloadResult");
        };
        assert_eq!((request_id, outcome), (7, ReloadOutcome::Failed));
        assert_eq!(status.last_error, "why");
    }

    #[test]
    fn a_config_text_that_is_not_utf8_is_malformed() {
        for block in [
            config_block(&[0xc3, 0x28], b"", b""),
            config_block(b"", &[0xff], b""),
            config_block(b"", b"", &[b'a', 0xe2, 0x82]),
        ] {
            assert_malformed_then_resync(
                raw(kind::RELOAD_RESULT, &reload_result_body(0, &block)),
                "ReloadResult",
                "string is not valid UTF-8",
            );
            let mut stats = stats_body(0, &[]);
            stats.truncate(stats.len() - 22);
            stats.extend_from_slice(&block);
            assert_malformed_then_resync(
                raw(kind::STATS, &stats),
                "Stats",
                "string is not valid UTF-8",
            );
        }
    }

    #[test]
    fn a_config_text_length_past_the_body_is_malformed() {
        let mut block = config_block(b"", b"", b"");
        // error_len = 0xffff with nothing behind it.
        block[16] = 0xff;
        block[17] = 0xff;
        assert_malformed_then_resync(
            raw(kind::RELOAD_RESULT, &reload_result_body(1, &block)),
            "ReloadResult",
            "truncated body",
        );
    }

    #[test]
    fn a_stats_count_larger_than_the_body_is_malformed() {
        let one_entry = {
            let mut e = vec![1, b'a', 0];
            e.extend_from_slice(&[0; 73]);
            e
        };
        for count in [2, 1_000_000, u32::MAX] {
            assert_eq!(
                malformed_reason(
                    codec().decode(&mut raw(kind::STATS, &stats_body(count, &one_entry)))
                ),
                ("Stats", "topic_count larger than the body")
            );
        }
        let Some(Frame::Stats { topics, .. }) = codec()
            .decode(&mut raw(kind::STATS, &stats_body(1, &one_entry)))
            .unwrap()
        else {
            panic!("one entry with count 1 is a valid Stats");
        };
        assert_eq!(topics.len(), 1);
    }

    #[test]
    fn the_config_block_is_not_counted_as_room_for_topic_entries() {
        // One 76-byte entry, then a block of 22 + 54 bytes: 152 bytes after the count, room for
        // two entries if the block were not set aside.
        let mut body = vec![1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0];
        body.extend_from_slice(&[1, b'a', 0]);
        body.extend_from_slice(&[0; 73]);
        body.extend_from_slice(&config_block(
            b"0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefgh",
            b"",
            b"",
        ));
        assert_eq!(body.len() - 20, 2 * 76);
        assert_malformed_then_resync(
            raw(kind::STATS, &body),
            "Stats",
            "topic_count larger than the body",
        );
    }

    #[test]
    fn entries_of_earlier_layouts_are_malformed_not_misread() {
        // 38 + n bytes per entry, as before `shm_subscribers`, 42 + n, as before `flags`, or
        // 43 + n, as in version 2 (before the log counters): short by 37, 33 or 32 bytes each,
        // whatever the texts of the config block that follows.
        for (old_len, count) in [(36, 1u32), (36, 3), (40, 1), (40, 3), (41, 1), (41, 3)] {
            let mut old_entry = vec![1, b'a', 0];
            old_entry.extend_from_slice(&vec![7; old_len]);
            let entries = old_entry.repeat(count as usize);
            for block in [
                config_block(b"", b"", b""),
                config_block(b"error", b"+topic a", b""),
            ] {
                let mut body = stats_body(count, &entries);
                body.truncate(body.len() - 22);
                body.extend_from_slice(&block);
                // Whichever check trips first (the count, a cut, a misaligned routing byte),
                // the frame is refused as malformed.
                let (kind, reason) = malformed_reason(codec().decode(&mut raw(kind::STATS, &body)));
                assert_eq!(kind, "Stats", "{count} old entries: {reason}");
            }
        }
    }

    #[test]
    fn a_stats_count_smaller_than_the_entries_leaves_trailing_bytes() {
        let mut two = vec![1, b'a', 0];
        two.extend_from_slice(&[0; 73]);
        two.extend_from_within(..);
        assert_eq!(
            malformed_reason(codec().decode(&mut raw(kind::STATS, &stats_body(1, &two)))).1,
            "trailing bytes"
        );
    }
}

mod encode_errors {
    use super::*;

    #[test]
    fn a_name_longer_than_its_prefix_is_refused_and_nothing_is_written() {
        let long = "x".repeat(MAX_NAME_LEN + 1);
        let cases = [
            (
                Frame::Hello {
                    client_id: Uuid::nil(),
                    name: long.clone(),
                },
                "name",
            ),
            (
                Frame::Advertise {
                    request_id: 1,
                    topic: long.clone(),
                },
                "topic",
            ),
            (
                Frame::Stats {
                    request_id: 1,
                    connections: 0,
                    uptime_ms: 0,
                    topics: vec![topic_stats(&long, RoutingKind::Fanout)],
                    config: ConfigStatus::default(),
                },
                "topic",
            ),
        ];
        for (frame, expected) in cases {
            let mut buf = BytesMut::from(&b"kept"[..]);
            match encode_frame(&frame, &mut buf) {
                Err(EncodeError::NameTooLong { field, len, max }) => {
                    assert_eq!(
                        (field, len, max),
                        (expected, MAX_NAME_LEN + 1, MAX_NAME_LEN)
                    );
                }
                other => panic!("expected NameTooLong, got {other:?}"),
            }
            assert_eq!(&buf[..], b"kept");
        }
    }

    #[test]
    fn an_error_message_longer_than_u16_is_refused() {
        let frame = Frame::Error {
            request_id: 0,
            code: ErrorCode::Internal,
            fatal: true,
            topic_id: NO_TOPIC,
            message: "m".repeat(usize::from(u16::MAX) + 1),
            refused: 0,
        };
        assert!(matches!(
            encode_frame(&frame, &mut BytesMut::new()),
            Err(EncodeError::NameTooLong {
                field: "message",
                ..
            })
        ));
    }

    #[test]
    fn a_config_text_longer_than_u16_is_refused_and_nothing_is_written() {
        // 65536 bytes; its last char ends 2 bytes past the limit's last boundary.
        let long = format!("x{}", "€".repeat(ConfigStatus::MAX_TEXT_LEN / 3));
        let statuses = [
            (
                ConfigStatus {
                    last_error: long.clone(),
                    ..ConfigStatus::default()
                },
                "last_error",
            ),
            (
                ConfigStatus {
                    last_change: long.clone(),
                    ..ConfigStatus::default()
                },
                "last_change",
            ),
            (
                ConfigStatus {
                    pending: long.clone(),
                    ..ConfigStatus::default()
                },
                "pending",
            ),
        ];
        for (status, expected) in statuses {
            for frame in [
                Frame::Stats {
                    request_id: 1,
                    connections: 0,
                    uptime_ms: 0,
                    topics: Vec::new(),
                    config: status.clone(),
                },
                Frame::ReloadResult {
                    request_id: 1,
                    outcome: ReloadOutcome::Failed,
                    status: status.clone(),
                },
            ] {
                let mut buf = BytesMut::from(&b"kept"[..]);
                match encode_frame(&frame, &mut buf) {
                    Err(EncodeError::NameTooLong { field, len, max }) => {
                        assert_eq!((field, len, max), (expected, long.len(), 65_535));
                    }
                    other => panic!("expected NameTooLong, got {other:?}"),
                }
                assert_eq!(&buf[..], b"kept");
                assert!(codec().encode(&frame, &mut buf).is_err());
                assert_eq!(&buf[..], b"kept");
            }
            // Truncated, the same status encodes, with the text cut at a char boundary.
            let truncated = status.truncated();
            let frame = Frame::ReloadResult {
                request_id: 1,
                outcome: ReloadOutcome::Failed,
                status: truncated.clone(),
            };
            let mut buf = encoded(&frame);
            assert_eq!(codec().decode(&mut buf).unwrap(), Some(frame));
            let cut = [
                &truncated.last_error,
                &truncated.last_change,
                &truncated.pending,
            ]
            .map(|t| t.len());
            assert!(cut.contains(&(ConfigStatus::MAX_TEXT_LEN - 2)), "{cut:?}");
        }
    }

    #[test]
    fn an_empty_topic_name_is_refused() {
        let frame = Frame::Subscribe {
            request_id: 1,
            prefetch: 0,
            no_echo: false,
            topic: String::new(),
        };
        assert!(matches!(
            encode_frame(&frame, &mut BytesMut::new()),
            Err(EncodeError::EmptyName { field: "topic" })
        ));
    }

    #[test]
    fn the_codec_refuses_to_encode_a_frame_over_its_limit() {
        let frame = Frame::Publish {
            topic_id: 1,
            payload: Bytes::from(vec![0; 95]),
        };
        let mut buf = BytesMut::new();
        match FrameCodec::new(100).encode(&frame, &mut buf) {
            Err(EncodeError::FrameTooLarge { len: 101, max: 100 }) => {}
            other => panic!("expected FrameTooLarge, got {other:?}"),
        }
        assert!(buf.is_empty());
    }
}

mod hot_path {
    use super::*;

    #[test]
    fn encode_message_writes_exactly_what_encode_frame_writes() {
        for payload in [&b""[..], b"hi", &[0xff; 300]] {
            let mut fast = BytesMut::new();
            encode_message(&mut fast, kind::PUBLISH, 3, payload);
            let publish = Frame::Publish {
                topic_id: 3,
                payload: Bytes::copy_from_slice(payload),
            };
            assert_eq!(fast, encoded(&publish));

            let mut fast = BytesMut::new();
            encode_message(&mut fast, kind::DELIVER, u32::MAX, payload);
            let deliver = Frame::Deliver {
                topic_id: u32::MAX,
                payload: Bytes::copy_from_slice(payload),
            };
            assert_eq!(fast, encoded(&deliver));
        }
    }

    #[test]
    fn encode_message_does_not_reallocate_a_buffer_with_room() {
        let mut buf = BytesMut::with_capacity(64);
        let start = buf.as_ptr();
        encode_message(&mut buf, kind::DELIVER, 1, &[7; 54]);
        assert_eq!(buf.len(), 64);
        assert_eq!(buf.as_ptr(), start);
    }

    /// Every line of `docs/protocol.md`, whitespace collapsed to single spaces.
    fn protocol_document_lines() -> Vec<String> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/protocol.md");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        text.lines().map(normalised).collect()
    }

    fn normalised(text: &str) -> String {
        text.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    /// Bytes written as in `docs/protocol.md`: hex pairs, `|` separators ignored.
    fn hex(text: &str) -> Vec<u8> {
        text.split_whitespace()
            .filter(|t| *t != "|")
            .map(|t| u8::from_str_radix(t, 16).expect("hex byte"))
            .collect()
    }

    #[test]
    fn the_worked_example_of_the_protocol_document_is_exact() {
        let examples = [
            (
                Frame::Hello {
                    client_id: Uuid::from_u128(0x0011_2233_4455_6677_8899_aabb_ccdd_eeff),
                    name: "cli".into(),
                },
                "16 00 00 00 | 03 | 01 | 00 11 22 33 44 55 66 77 88 99 aa bb cc dd ee ff | 03 | 63 6c 69",
            ),
            (
                Frame::Welcome {
                    broker_id: Uuid::from_u128(0xffee_ddcc_bbaa_9988_7766_5544_3322_1100),
                    connection_id: 1,
                    max_message_size: 1 << 20,
                    max_frame_len: (1 << 20) + 6,
                    server: "m".into(),
                },
                "24 00 00 00 | 03 | 02 | ff ee dd cc bb aa 99 88 77 66 55 44 33 22 11 00 \
                 | 01 00 00 00 00 00 00 00 | 00 00 10 00 | 06 00 10 00 | 01 6d",
            ),
            (
                Frame::Advertise {
                    request_id: 1,
                    topic: "t".into(),
                },
                "08 00 00 00 | 03 | 05 | 01 00 00 00 | 01 74",
            ),
            (
                Frame::TopicAck {
                    request_id: 1,
                    topic_id: 3,
                    routing: RoutingKind::Fanout,
                    max_message_size: 1 << 20,
                    prefetch: 0,
                    pattern: false,
                    rules: MessageRules::default(),
                },
                "1a 00 00 00 | 03 | 06 | 01 00 00 00 | 03 00 00 00 | 00 | 00 00 10 00 | 00 00 00 00 | 00 | 20 00 | 00 10 00 00",
            ),
            (
                Frame::Publish {
                    topic_id: 3,
                    payload: Bytes::from_static(b"hi"),
                },
                "08 00 00 00 | 03 | 10 | 03 00 00 00 | 68 69",
            ),
            (
                Frame::Deliver {
                    topic_id: 3,
                    payload: Bytes::from_static(b"hi"),
                },
                "08 00 00 00 | 03 | 11 | 03 00 00 00 | 68 69",
            ),
            (
                Frame::Ping { token: 7 },
                "0a 00 00 00 | 03 | 20 | 07 00 00 00 00 00 00 00",
            ),
            (
                Frame::Error {
                    request_id: 0,
                    code: ErrorCode::MessageTooLarge,
                    fatal: false,
                    topic_id: 3,
                    message: "too large".into(),
                    refused: 1,
                },
                "1c 00 00 00 | 03 | 30 | 00 00 00 00 | 11 00 | 00 | 03 00 00 00 | 09 00 \
                 | 74 6f 6f 20 6c 61 72 67 65 | 01 00 00 00",
            ),
            (
                Frame::Error {
                    request_id: 0,
                    code: ErrorCode::SlowConsumer,
                    fatal: false,
                    topic_id: 3,
                    message: "50 dropped".into(),
                    refused: 50,
                },
                "1d 00 00 00 | 03 | 30 | 00 00 00 00 | 21 00 | 00 | 03 00 00 00 | 0a 00 \
                 | 35 30 20 64 72 6f 70 70 65 64 | 32 00 00 00",
            ),
            (
                Frame::Stats {
                    request_id: 9,
                    connections: 1,
                    uptime_ms: 1000,
                    topics: Vec::new(),
                    config: ConfigStatus {
                        generation: 2,
                        reloads: 2,
                        last_error: String::new(),
                        last_change: "+topic t".into(),
                        pending: String::new(),
                    },
                },
                "34 00 00 00 | 03 | 41 | 09 00 00 00 | 01 00 00 00 | e8 03 00 00 00 00 00 00 \
                 | 00 00 00 00 | 02 00 00 00 00 00 00 00 | 02 00 00 00 00 00 00 00 | 00 00 \
                 | 08 00 | 2b 74 6f 70 69 63 20 74 | 00 00",
            ),
            (
                Frame::Stats {
                    request_id: 9,
                    connections: 1,
                    uptime_ms: 1000,
                    topics: vec![TopicStats {
                        name: "t".into(),
                        routing: RoutingKind::Fanout,
                        subscribers: 1,
                        published: 5,
                        delivered: 5,
                        dropped: 0,
                        queued: 0,
                        shm_subscribers: 2,
                        flags: TopicStats::DYNAMIC,
                        log: None,
                    }],
                    config: ConfigStatus {
                        generation: 1,
                        reloads: 0,
                        last_error: String::new(),
                        last_change: String::new(),
                        pending: String::new(),
                    },
                },
                "78 00 00 00 | 03 | 41 | 09 00 00 00 | 01 00 00 00 | e8 03 00 00 00 00 00 00 \
                 | 01 00 00 00 | 01 74 | 00 | 01 00 00 00 | 05 00 00 00 00 00 00 00 \
                 | 05 00 00 00 00 00 00 00 | 00 00 00 00 00 00 00 00 | 00 00 00 00 00 00 00 00 \
                 | 02 00 00 00 | 01 | 00 00 00 00 00 00 00 00 | 00 00 00 00 00 00 00 00 \
                 | 00 00 00 00 00 00 00 00 | 00 00 00 00 00 00 00 00 \
                 | 01 00 00 00 00 00 00 00 | 00 00 00 00 00 00 00 00 | 00 00 \
                 | 00 00 | 00 00",
            ),
            (
                Frame::ReloadRequest { request_id: 5 },
                "06 00 00 00 | 03 | 42 | 05 00 00 00",
            ),
            (
                Frame::ReloadResult {
                    request_id: 5,
                    outcome: ReloadOutcome::Failed,
                    status: ConfigStatus {
                        generation: 2,
                        reloads: 3,
                        last_error: "broker.toml:2:9: t: bad".into(),
                        last_change: "+topic t".into(),
                        pending: String::new(),
                    },
                },
                "3c 00 00 00 | 03 | 43 | 05 00 00 00 | 02 | 02 00 00 00 00 00 00 00 \
                 | 03 00 00 00 00 00 00 00 | 17 00 \
                 | 62 72 6f 6b 65 72 2e 74 6f 6d 6c 3a 32 3a 39 3a 20 74 3a 20 62 61 64 \
                 | 08 00 | 2b 74 6f 70 69 63 20 74 | 00 00",
            ),
            (
                Frame::Error {
                    request_id: 0,
                    code: ErrorCode::TopicRemoved,
                    fatal: false,
                    topic_id: 3,
                    message: "topic t removed".into(),
                    refused: 0,
                },
                "22 00 00 00 | 03 | 30 | 00 00 00 00 | 16 00 | 00 | 03 00 00 00 | 0f 00 \
                 | 74 6f 70 69 63 20 74 20 72 65 6d 6f 76 65 64 | 00 00 00 00",
            ),
            (
                Frame::Lagged {
                    topic_id: 3,
                    skipped: 1000,
                },
                "0e 00 00 00 | 03 | 13 | 03 00 00 00 | e8 03 00 00 00 00 00 00",
            ),
            (
                Frame::SubscribeDurable {
                    request_id: 1,
                    prefetch: 100,
                    start: StartPosition::Earliest,
                    group: Some("g".into()),
                    topic: "t".into(),
                },
                "18 00 00 00 | 03 | 09 | 01 00 00 00 | 64 00 00 00 | 00 | 01 | 00 00 00 00 00 00 00 00 | 01 67 | 01 74",
            ),
            (
                Frame::DeliverEnvelope {
                    topic_id: DURABLE_SUBSCRIPTION_BIT | 1,
                    message: Bytes::from_static(b"\x20\x29\0\0\0\0\0\0\0hi"),
                },
                "11 00 00 00 | 03 | 15 | 01 00 00 40 | 20 | 29 00 00 00 00 00 00 00 | 68 69",
            ),
            (
                Frame::AckMessages {
                    subscription_id: DURABLE_SUBSCRIPTION_BIT | 1,
                    offsets: vec![5, 6],
                },
                "18 00 00 00 | 03 | 16 | 01 00 00 40 | 02 00 | 05 00 00 00 00 00 00 00 | 06 00 00 00 00 00 00 00",
            ),
            (
                Frame::Nack {
                    subscription_id: DURABLE_SUBSCRIPTION_BIT | 1,
                    offset: 7,
                    action: NackAction::RequeueAfter(std::time::Duration::from_secs(1)),
                },
                "13 00 00 00 | 03 | 17 | 01 00 00 40 | 07 00 00 00 00 00 00 00 | 01 | e8 03 00 00",
            ),
            (
                Frame::PublishDurable {
                    request_id: 2,
                    topic_id: 3,
                    enveloped: false,
                    message: Bytes::from_static(b"hi"),
                },
                "0d 00 00 00 | 03 | 18 | 02 00 00 00 | 03 00 00 00 | 00 | 68 69",
            ),
            (
                Frame::Published {
                    request_id: 2,
                    offset: 41,
                },
                "0e 00 00 00 | 03 | 19 | 02 00 00 00 | 29 00 00 00 00 00 00 00",
            ),
            (
                Frame::GroupsRequest {
                    request_id: 4,
                    topic: "t".into(),
                },
                "08 00 00 00 | 03 | 44 | 04 00 00 00 | 01 74",
            ),
            (
                Frame::Groups {
                    request_id: 4,
                    groups: vec![GroupStats {
                        name: "g".into(),
                        committed: 40,
                        next_offset: 42,
                        pending: 2,
                        members: 1,
                        redelivered: 0,
                        dead_lettered: 0,
                    }],
                },
                "32 00 00 00 | 03 | 45 | 04 00 00 00 | 01 00 | 01 67 | 28 00 00 00 00 00 00 00 \
                 | 2a 00 00 00 00 00 00 00 | 02 00 00 00 | 01 00 00 00 | 00 00 00 00 00 00 00 00 \
                 | 00 00 00 00 00 00 00 00",
            ),
        ];
        let document = protocol_document_lines();
        for (frame, text) in examples {
            assert!(
                document.contains(&normalised(text)),
                "docs/protocol.md has no line with the bytes of {frame:?}: {text}"
            );
            let bytes = hex(text);
            assert_eq!(&encoded(&frame)[..], &bytes[..], "{frame:?}");
            assert_eq!(
                codec().decode(&mut BytesMut::from(&bytes[..])).unwrap(),
                Some(frame)
            );
        }
        let mut publish = BytesMut::new();
        encode_message(&mut publish, kind::PUBLISH, 3, b"hi");
        assert_eq!(
            &publish[..],
            &hex("08 00 00 00 03 10 03 00 00 00 68 69")[..]
        );
    }

    #[test]
    fn a_view_reads_the_topic_id_and_payload_of_messages_only() {
        let mut buf = BytesMut::new();
        encode_message(&mut buf, kind::PUBLISH, 9, b"payload");
        let (view, total) = peek_frame(&buf, 100).unwrap().unwrap();
        assert_eq!((view.kind, total), (kind::PUBLISH, buf.len()));
        assert_eq!(view.message(), Some((9, &b"payload"[..])));

        let ack = encoded(&Frame::Ack { request_id: 9 });
        let (view, _) = peek_frame(&ack, 100).unwrap().unwrap();
        assert_eq!(view.message(), None);

        let short = raw(kind::DELIVER, &[1, 2]);
        let (view, _) = peek_frame(&short, 100).unwrap().unwrap();
        assert_eq!(view.message(), None);
    }

    #[test]
    fn peek_frame_agrees_with_the_decoder_on_every_variant() {
        let mut stream = BytesMut::new();
        for frame in every_variant() {
            encode_frame(&frame, &mut stream).unwrap();
        }
        let mut decoder_buf = stream.clone();
        let mut offset = 0;
        let mut codec = codec();
        while let Some((view, total)) = peek_frame(&stream[offset..], 1 << 20).unwrap() {
            let before = decoder_buf.len();
            let decoded = codec.decode(&mut decoder_buf).unwrap();
            assert_eq!(before - decoder_buf.len(), total);
            assert_eq!(Some(view.to_frame().unwrap()), decoded);
            offset += total;
        }
        assert_eq!(offset, stream.len());
    }

    #[test]
    fn peek_frame_waits_on_partial_frames_and_fails_early_on_bad_headers() {
        let whole = encoded(&Frame::Ping { token: 1 });
        for cut in 0..whole.len() {
            assert_eq!(
                peek_frame(&whole[..cut], 100).unwrap(),
                None,
                "cut at {cut}"
            );
        }
        assert!(matches!(
            peek_frame(&[0xff, 0xff, 0, 0], 100),
            Err(DecodeError::FrameTooLarge {
                len: 0xffff,
                max: 100
            })
        ));
        assert!(matches!(
            peek_frame(&[1, 0, 0, 0], 100),
            Err(DecodeError::Malformed { .. })
        ));
        assert!(matches!(
            peek_frame(&[10, 0, 0, 0, 9], 100),
            Err(DecodeError::UnsupportedVersion(9))
        ));
        assert!(matches!(
            peek_frame(&[10, 0, 0, 0, PROTOCOL_VERSION, 0x99], 100),
            Err(DecodeError::UnknownKind(0x99))
        ));
    }

    #[test]
    fn a_view_decodes_a_malformed_body_to_the_same_error_as_the_decoder() {
        let bad = raw(kind::TOPIC_ACK, &[0; 18]);
        let (view, _) = peek_frame(&bad, 100).unwrap().unwrap();
        assert_eq!(
            malformed_reason(view.to_frame().map(Some)),
            malformed_reason(codec().decode(&mut bad.clone()))
        );
    }
}

mod properties {
    use super::*;
    use proptest::collection::vec;
    use proptest::prelude::*;

    // `.` never yields '\n' but does yield multi-byte characters: 60 of them fit 255 bytes.
    fn name() -> impl Strategy<Value = String> {
        "[^\n]{0,60}"
    }

    fn topic() -> impl Strategy<Value = String> {
        "[^\n]{1,60}"
    }

    fn uuid() -> impl Strategy<Value = Uuid> {
        any::<u128>().prop_map(Uuid::from_u128)
    }

    fn routing() -> impl Strategy<Value = RoutingKind> {
        prop_oneof![Just(RoutingKind::Fanout), Just(RoutingKind::Queue)]
    }

    fn shm_role() -> impl Strategy<Value = ShmRole> {
        prop_oneof![Just(ShmRole::Publish), Just(ShmRole::Subscribe)]
    }

    fn shm_ring() -> impl Strategy<Value = ShmRing> {
        (any::<u32>(), any::<u32>()).prop_map(|(ring_id, slot)| ShmRing { ring_id, slot })
    }

    fn payload() -> impl Strategy<Value = Bytes> {
        vec(any::<u8>(), 0..300).prop_map(Bytes::from)
    }

    fn topic_stats() -> impl Strategy<Value = TopicStats> {
        (
            topic(),
            routing(),
            any::<[u32; 2]>(),
            any::<[u64; 4]>(),
            any::<u8>(),
            proptest::option::of(any::<[u64; 4]>()),
        )
            .prop_map(
                |(
                    name,
                    routing,
                    [subscribers, shm_subscribers],
                    [published, delivered, dropped, queued],
                    flags,
                    log,
                )| {
                    let log = log.map(
                        |[first_offset, next_offset, retained_messages, retained_bytes]| LogStats {
                            first_offset,
                            next_offset,
                            retained_messages,
                            retained_bytes,
                        },
                    );
                    // The DURABLE bit is the wire's record of `log`.
                    let flags = match log {
                        Some(_) => flags | TopicStats::DURABLE,
                        None => flags & !TopicStats::DURABLE,
                    };
                    TopicStats {
                        name,
                        routing,
                        subscribers,
                        published,
                        delivered,
                        dropped,
                        queued,
                        shm_subscribers,
                        flags,
                        log,
                    }
                },
            )
    }

    fn start_position() -> impl Strategy<Value = StartPosition> {
        prop_oneof![
            Just(StartPosition::New),
            Just(StartPosition::Earliest),
            any::<u64>().prop_map(StartPosition::Offset),
            any::<u64>().prop_map(StartPosition::Timestamp),
        ]
    }

    fn nack_action() -> impl Strategy<Value = NackAction> {
        prop_oneof![
            Just(NackAction::Requeue),
            Just(NackAction::DeadLetter),
            any::<u32>().prop_map(
                |ms| NackAction::RequeueAfter(std::time::Duration::from_millis(u64::from(ms)))
            ),
        ]
    }

    fn group_stats() -> impl Strategy<Value = GroupStats> {
        ("[a-z0-9._-]{1,255}", any::<[u64; 4]>(), any::<[u32; 2]>()).prop_map(
            |(name, [committed, next_offset, redelivered, dead_lettered], [pending, members])| {
                GroupStats {
                    name,
                    committed,
                    next_offset,
                    pending,
                    members,
                    redelivered,
                    dead_lettered,
                }
            },
        )
    }

    /// The frames of durable topics (a separate union: `frame` would exceed what one
    /// `prop_oneof!` takes comfortably).
    fn durable_frame() -> impl Strategy<Value = Frame> {
        prop_oneof![
            (
                any::<[u32; 2]>(),
                start_position(),
                proptest::option::of("[A-Za-z0-9._-]{1,255}"),
                topic()
            )
                .prop_map(|([request_id, prefetch], start, group, topic)| {
                    Frame::SubscribeDurable {
                        request_id,
                        prefetch,
                        start,
                        group,
                        topic,
                    }
                }),
            (any::<u32>(), vec(any::<u64>(), 1..200)).prop_map(|(subscription_id, offsets)| {
                Frame::AckMessages {
                    subscription_id,
                    offsets,
                }
            }),
            (any::<u32>(), any::<u64>(), nack_action()).prop_map(
                |(subscription_id, offset, action)| Frame::Nack {
                    subscription_id,
                    offset,
                    action,
                }
            ),
            (any::<[u32; 2]>(), payload()).prop_map(|([request_id, topic_id], message)| {
                Frame::PublishDurable {
                    request_id,
                    topic_id,
                    enveloped: false,
                    message,
                }
            }),
            (any::<[u32; 2]>(), payload()).prop_map(|([request_id, topic_id], payload)| {
                let mut message = BytesMut::from(&[0x20][..]);
                message.extend_from_slice(&7u64.to_le_bytes());
                message.extend_from_slice(&payload);
                Frame::PublishDurable {
                    request_id,
                    topic_id,
                    enveloped: true,
                    message: message.freeze(),
                }
            }),
            (any::<u32>(), any::<u64>())
                .prop_map(|(request_id, offset)| Frame::Published { request_id, offset }),
            (any::<u32>(), topic())
                .prop_map(|(request_id, topic)| Frame::GroupsRequest { request_id, topic }),
            (any::<u32>(), vec(group_stats(), 0..6))
                .prop_map(|(request_id, groups)| Frame::Groups { request_id, groups }),
        ]
    }

    /// Texts of up to 300 characters (so up to 1200 bytes), non-ASCII and newlines included.
    fn config_text() -> impl Strategy<Value = String> {
        prop_oneof![Just(String::new()), "(?s:.){0,300}"]
    }

    fn config_status() -> impl Strategy<Value = ConfigStatus> {
        (
            any::<u64>(),
            any::<u64>(),
            config_text(),
            config_text(),
            config_text(),
        )
            .prop_map(|(generation, reloads, last_error, last_change, pending)| {
                ConfigStatus {
                    generation,
                    reloads,
                    last_error,
                    last_change,
                    pending,
                }
            })
    }

    fn reload_outcome() -> impl Strategy<Value = ReloadOutcome> {
        prop_oneof![
            Just(ReloadOutcome::Applied),
            Just(ReloadOutcome::Unchanged),
            Just(ReloadOutcome::Failed),
        ]
    }

    fn frame() -> impl Strategy<Value = Frame> {
        prop_oneof![
            (uuid(), name()).prop_map(|(client_id, name)| Frame::Hello { client_id, name }),
            (uuid(), any::<u64>(), any::<u32>(), any::<u32>(), name()).prop_map(
                |(broker_id, connection_id, max_message_size, max_frame_len, server)| {
                    Frame::Welcome {
                        broker_id,
                        connection_id,
                        max_message_size,
                        max_frame_len,
                        server,
                    }
                }
            ),
            (any::<u32>(), any::<u32>(), topic()).prop_map(|(request_id, prefetch, topic)| {
                Frame::Subscribe {
                    request_id,
                    prefetch,
                    no_echo: false,
                    topic,
                }
            }),
            (any::<u32>(), any::<u32>()).prop_map(|(request_id, topic_id)| Frame::Unsubscribe {
                request_id,
                topic_id
            }),
            (any::<u32>(), topic())
                .prop_map(|(request_id, topic)| Frame::Advertise { request_id, topic }),
            (any::<[u32; 4]>(), routing()).prop_map(
                |([request_id, topic_id, max_message_size, prefetch], routing)| Frame::TopicAck {
                    request_id,
                    topic_id,
                    routing,
                    max_message_size,
                    prefetch,
                    pattern: false,
                    rules: MessageRules::default(),
                }
            ),
            any::<u32>().prop_map(|request_id| Frame::Ack { request_id }),
            (any::<u32>(), payload())
                .prop_map(|(topic_id, payload)| Frame::Publish { topic_id, payload }),
            (any::<u32>(), payload())
                .prop_map(|(topic_id, payload)| Frame::Deliver { topic_id, payload }),
            (any::<u32>(), any::<u32>())
                .prop_map(|(topic_id, credit)| Frame::Credit { topic_id, credit }),
            (any::<u32>(), any::<u64>())
                .prop_map(|(topic_id, skipped)| Frame::Lagged { topic_id, skipped }),
            any::<u64>().prop_map(|token| Frame::Ping { token }),
            any::<u64>().prop_map(|token| Frame::Pong { token }),
            (
                any::<u32>(),
                any::<u16>(),
                any::<bool>(),
                any::<u32>(),
                "[^\n]{0,300}",
                any::<u32>()
            )
                .prop_map(|(request_id, code, fatal, topic_id, message, refused)| {
                    Frame::Error {
                        request_id,
                        code: ErrorCode::from_u16(code),
                        fatal,
                        topic_id,
                        message,
                        refused,
                    }
                }),
            any::<u32>().prop_map(|request_id| Frame::StatsRequest { request_id }),
            (
                any::<u32>(),
                any::<u32>(),
                any::<u64>(),
                vec(topic_stats(), 0..6),
                config_status(),
            )
                .prop_map(|(request_id, connections, uptime_ms, topics, config)| {
                    Frame::Stats {
                        request_id,
                        connections,
                        uptime_ms,
                        topics,
                        config,
                    }
                }),
            any::<u32>().prop_map(|request_id| Frame::ReloadRequest { request_id }),
            (any::<u32>(), reload_outcome(), config_status()).prop_map(
                |(request_id, outcome, status)| Frame::ReloadResult {
                    request_id,
                    outcome,
                    status,
                }
            ),
            (uuid(), name()).prop_map(|(client_id, name)| Frame::ShmHello { client_id, name }),
            (any::<u32>(), shm_role(), any::<bool>(), topic()).prop_map(
                |(request_id, role, no_echo, topic)| Frame::ShmAttach {
                    request_id,
                    role,
                    no_echo,
                    topic,
                }
            ),
            (
                any::<[u32; 4]>(),
                shm_role(),
                routing(),
                vec(shm_ring(), 0..=MAX_RINGS_PER_GRANT),
                (any::<bool>(), any::<u16>(), any::<u32>(), any::<bool>()),
            )
                .prop_map(
                    |(
                        [request_id, attachment, topic_id, max_message_size],
                        role,
                        routing,
                        rings,
                        (stamp, max_headers, max_header_bytes, pattern),
                    )| {
                        Frame::ShmGrant {
                            request_id,
                            attachment,
                            topic_id,
                            role,
                            routing,
                            max_message_size,
                            rings,
                            rules: MessageRules {
                                stamp,
                                max_headers,
                                max_header_bytes,
                            },
                            pattern,
                        }
                    }
                ),
            (any::<u32>(), shm_ring())
                .prop_map(|(attachment, ring)| Frame::ShmRingAdded { attachment, ring }),
            (any::<[u32; 2]>(), shm_ring(), topic()).prop_map(
                |([attachment, topic_id], ring, topic)| Frame::ShmTopicRingAdded {
                    attachment,
                    ring,
                    topic_id,
                    topic,
                }
            ),
            (any::<u32>(), any::<u32>()).prop_map(|(attachment, ring_id)| {
                Frame::ShmRingRemoved {
                    attachment,
                    ring_id,
                }
            }),
            (any::<[u32; 4]>(), any::<u64>()).prop_map(
                |([request_id, attachment, len, recipient], segment)| Frame::ShmSegment {
                    request_id,
                    attachment,
                    segment,
                    len,
                    recipient,
                }
            ),
            (any::<[u32; 3]>(), any::<u64>(), any::<bool>()).prop_map(
                |([attachment, ring_id, len], segment, dropped)| Frame::ShmSegmentAdded {
                    attachment,
                    ring_id,
                    segment,
                    len,
                    dropped,
                }
            ),
            (any::<u32>(), any::<u32>()).prop_map(|(request_id, attachment)| Frame::ShmDetach {
                request_id,
                attachment
            }),
            (any::<u32>(), any::<u16>(), "[^\n]{0,300}").prop_map(|(attachment, code, message)| {
                Frame::ShmDetached {
                    attachment,
                    code: ErrorCode::from_u16(code),
                    message,
                }
            }),
            durable_frame(),
        ]
    }

    /// Decodes everything the codec yields from `buf`, carrying on past errors that consumed a
    /// frame and stopping at the first that did not (the stream is lost then).
    fn drain_decoder(codec: &mut FrameCodec, buf: &mut BytesMut) -> Vec<Result<Frame, String>> {
        let mut out = Vec::new();
        loop {
            let before = buf.len();
            match codec.decode(buf) {
                Ok(Some(frame)) => out.push(Ok(frame)),
                Ok(None) => return out,
                Err(e) => {
                    out.push(Err(e.to_string()));
                    if buf.len() == before {
                        return out;
                    }
                }
            }
        }
    }

    /// The same walk as [`drain_decoder`], through `peek_frame` and `FrameView::to_frame`.
    fn drain_peek(bytes: &[u8], max: usize) -> Vec<Result<Frame, String>> {
        let mut out = Vec::new();
        let mut offset = 0;
        loop {
            let Some(rest) = bytes.get(offset..) else {
                panic!("peek_frame reported more bytes than there were");
            };
            match peek_frame(rest, max) {
                Ok(Some((view, total))) => {
                    let _ = view.message();
                    out.push(view.to_frame().map_err(|e| e.to_string()));
                    offset += total;
                }
                Ok(None) => return out,
                Err(e) => {
                    out.push(Err(e.to_string()));
                    return out;
                }
            }
        }
    }

    fn check_arbitrary_input(bytes: &[u8], max: usize) -> Result<(), TestCaseError> {
        let mut buf = BytesMut::from(bytes);
        let decoded = drain_decoder(&mut FrameCodec::new(max), &mut buf);
        let frames = decoded.iter().filter(|r| r.is_ok()).count();
        prop_assert!(frames <= bytes.len() / 6);
        prop_assert_eq!(drain_peek(bytes, max), decoded);
        Ok(())
    }

    fn kind_byte() -> impl Strategy<Value = u8> {
        prop_oneof![
            9 => prop::sample::select(vec![
                kind::HELLO, kind::WELCOME, kind::SUBSCRIBE, kind::UNSUBSCRIBE, kind::ADVERTISE,
                kind::TOPIC_ACK, kind::ACK, kind::PUBLISH, kind::DELIVER, kind::CREDIT, kind::PING,
                kind::PONG, kind::ERROR, kind::STATS_REQUEST, kind::STATS, kind::RELOAD_REQUEST,
                kind::RELOAD_RESULT, kind::SUBSCRIBE_DURABLE, kind::ACK_MESSAGES, kind::NACK,
                kind::PUBLISH_DURABLE, kind::PUBLISHED, kind::GROUPS_REQUEST, kind::GROUPS,
            ]),
            1 => any::<u8>(),
        ]
    }

    proptest! {
        #[test]
        fn any_frame_round_trips(frame in frame()) {
            let mut buf = encoded(&frame);
            prop_assert_eq!(codec().decode(&mut buf).unwrap(), Some(frame));
            prop_assert!(buf.is_empty());
        }

        #[test]
        fn a_stream_of_frames_round_trips_in_any_chunking(
            frames in vec(frame(), 1..8),
            chunks in vec(1usize..64, 1..20),
        ) {
            let mut stream = BytesMut::new();
            for frame in &frames {
                encode_frame(frame, &mut stream).unwrap();
            }
            let mut codec = codec();
            let mut buf = BytesMut::new();
            let mut out = Vec::new();
            let mut sizes = chunks.iter().cycle();
            let mut rest = &stream[..];
            while !rest.is_empty() {
                let n = (*sizes.next().unwrap()).min(rest.len());
                let (chunk, tail) = rest.split_at(n);
                buf.extend_from_slice(chunk);
                rest = tail;
                while let Some(frame) = codec.decode(&mut buf).unwrap() {
                    out.push(frame);
                }
            }
            prop_assert_eq!(codec.decode_eof(&mut buf).unwrap(), None);
            prop_assert_eq!(out, frames);
        }

        #[test]
        fn arbitrary_bytes_never_panic_and_peek_agrees_with_the_decoder(
            bytes in vec(any::<u8>(), 0..4096),
            max in 0usize..8192,
        ) {
            check_arbitrary_input(&bytes, max)?;
        }

        #[test]
        fn valid_headers_around_arbitrary_bodies_never_panic(
            frames in vec((kind_byte(), vec(any::<u8>(), 0..96)), 0..40),
            tail in vec(any::<u8>(), 0..8),
        ) {
            let mut bytes = Vec::new();
            for (k, body) in &frames {
                bytes.extend_from_slice(&raw(*k, body));
            }
            bytes.extend_from_slice(&tail);
            check_arbitrary_input(&bytes, 1 << 20)?;
        }
    }
}

mod shm_patterns {
    use super::*;

    fn grant(pattern: bool, stamp: bool) -> Frame {
        Frame::ShmGrant {
            request_id: 7,
            attachment: 3,
            topic_id: NO_TOPIC,
            role: ShmRole::Subscribe,
            routing: RoutingKind::Fanout,
            max_message_size: 1024,
            rings: Vec::new(),
            rules: MessageRules {
                stamp,
                max_headers: 32,
                max_header_bytes: 4096,
            },
            pattern,
        }
    }

    #[test]
    fn a_pattern_grant_sets_bit_1_of_the_flags_and_a_plain_one_is_unchanged() {
        for (pattern, stamp, flags) in [
            (false, false, 0u8),
            (false, true, 1),
            (true, false, 2),
            (true, true, 3),
        ] {
            let frame = grant(pattern, stamp);
            let bytes = encoded(&frame);
            // header 6, then 4+4+4+1+1+4 scalars, ring_count 1, flags.
            assert_eq!(bytes[6 + 18 + 1], flags);
            assert_eq!(codec().decode(&mut bytes.clone()).unwrap(), Some(frame));
        }
    }

    #[test]
    fn a_grant_with_flag_bits_above_1_is_malformed() {
        let mut bytes = encoded(&grant(true, true));
        bytes[6 + 18 + 1] = 0b100;
        assert!(codec().decode(&mut bytes).is_err());
    }

    #[test]
    fn a_topic_ring_added_is_the_ring_added_body_then_the_topic_id_and_name() {
        let frame = Frame::ShmTopicRingAdded {
            attachment: 1,
            ring: ShmRing {
                ring_id: 2,
                slot: 3,
            },
            topic_id: 4,
            topic: "orders.eu".into(),
        };
        let mut body = Vec::new();
        for v in [1u32, 2, 3, 4] {
            body.extend_from_slice(&v.to_le_bytes());
        }
        body.push(9);
        body.extend_from_slice(b"orders.eu");
        assert_eq!(encoded(&frame), raw(kind::SHM_TOPIC_RING_ADDED, &body));
        assert_eq!(codec().decode(&mut encoded(&frame)).unwrap(), Some(frame));
    }

    #[test]
    fn a_topic_ring_added_with_an_empty_topic_is_malformed() {
        let mut body = vec![0u8; 16];
        body.push(0);
        assert!(codec()
            .decode(&mut raw(kind::SHM_TOPIC_RING_ADDED, &body))
            .is_err());
    }
}
