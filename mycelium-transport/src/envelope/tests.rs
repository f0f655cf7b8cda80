use bytes::BytesMut;
use proptest::prelude::*;
use uuid::Uuid;

use super::*;

fn encode(envelope: &Envelope<'_>, payload: &[u8]) -> BytesMut {
    let mut buf = BytesMut::new();
    envelope.encode(&mut buf);
    assert_eq!(buf.len(), envelope.len());
    buf.extend_from_slice(payload);
    buf
}

#[test]
fn every_block_round_trips() {
    let mut headers = Headers::new();
    headers.insert("a", "1").unwrap();
    headers
        .insert("content-type", "text/plain; charset=utf-8")
        .unwrap();
    headers.insert("a", "again").unwrap();
    let stamp = Stamper::new().stamp();
    let reply = Reply {
        status: ReplyStatus::Error,
        code: 404,
        correlation: Uuid::from_u128(7),
    };
    let envelope = Envelope {
        stamp: Some(stamp),
        topic: Some("orders.eu"),
        reply_to: Some("_INBOX.abc"),
        reply: Some(reply),
        headers: Some(&headers),
        offset: Some(1 << 40),
    };
    let bytes = encode(&envelope, b"payload");
    let view = EnvelopeView::parse(&bytes).unwrap();
    assert_eq!(view.flags, KNOWN_FLAGS);
    assert_eq!(view.offset, Some(1 << 40));
    assert_eq!(view.stamp, Some(stamp));
    assert_eq!(view.topic, Some("orders.eu"));
    assert_eq!(view.reply_to, Some("_INBOX.abc"));
    assert_eq!(view.reply, Some(reply));
    assert_eq!(
        view.headers().collect::<Vec<_>>(),
        vec![
            ("a", "1"),
            ("content-type", "text/plain; charset=utf-8"),
            ("a", "again")
        ]
    );
    assert_eq!(view.header_bytes, headers.byte_len());
    assert_eq!(view.len, envelope.len());
    assert_eq!(view.payload, b"payload");
}

#[test]
fn flags_alone_is_a_valid_envelope_and_the_rest_is_payload() {
    let view = EnvelopeView::parse(&[0, 1, 2, 3]).unwrap();
    assert_eq!(
        (view.flags, view.len, view.payload),
        (0, 1, &[1u8, 2, 3][..])
    );
    assert_eq!(view.headers().count(), 0);
}

#[test]
fn hostile_envelopes_are_refused_with_a_reason() {
    let cases: &[(&[u8], &str)] = &[
        (&[], "truncated flags"),
        (&[0x40], "reserved flag bits set"),
        (&[0x80], "reserved flag bits set"),
        (&[0x60, 0, 0, 0, 0, 0, 0, 0, 0], "reserved flag bits set"),
        (&[OFFSET], "truncated offset"),
        (&[OFFSET, 1, 2, 3, 4, 5, 6, 7], "truncated offset"),
        (&[HEADERS | OFFSET, 0, 0, 1, 2, 3], "truncated offset"),
        (&[STAMP, 1, 2, 3], "truncated id"),
        (&[TOPIC, 0], "empty topic name"),
        (&[TOPIC, 5, b'a'], "truncated topic"),
        (&[REPLY_TO, 1, 0xFF], "topic name is not UTF-8"),
        (&[REPLY, 9, 0, 0], "unknown reply status"),
        (&[HEADERS, 1], "truncated header count"),
        (&[HEADERS, 1, 0, 0, 0, 0], "empty header key"),
        (
            &[HEADERS, 1, 0, 1, b' ', 0, 0],
            "header key with a character outside the token set",
        ),
        (
            &[HEADERS, 1, 0, 1, b'k', 1, 0, 0xC3],
            "header value is not UTF-8",
        ),
        (&[HEADERS, 2, 0, 1, b'k', 0, 0], "truncated header key"),
        (
            &[HEADERS, 1, 0, 1, b'k', 5, 0, b'x'],
            "truncated header value",
        ),
    ];
    for (bytes, reason) in cases {
        assert_eq!(
            EnvelopeView::parse(bytes),
            Err(EnvelopeError(reason)),
            "{bytes:?}"
        );
    }
}

#[test]
fn a_pattern_delivery_adds_the_topic_and_keeps_everything_else() {
    let mut headers = Headers::new();
    headers.insert("k", "v").unwrap();
    let stamp = Stamper::new().stamp();
    let original = Envelope {
        stamp: Some(stamp),
        reply_to: Some("_INBOX.x"),
        headers: Some(&headers),
        ..Envelope::default()
    };
    let bytes = encode(&original, b"data");
    let view = EnvelopeView::parse(&bytes).unwrap();
    let mut out = BytesMut::new();
    write_with_topic(Some(&view), view.payload, "orders.eu", &mut out);
    let again = EnvelopeView::parse(&out).unwrap();
    assert_eq!(again.topic, Some("orders.eu"));
    assert_eq!(again.stamp, Some(stamp));
    assert_eq!(again.reply_to, Some("_INBOX.x"));
    assert_eq!(again.headers().collect::<Vec<_>>(), vec![("k", "v")]);
    assert_eq!(again.payload, b"data");

    let mut plain = BytesMut::new();
    write_with_topic(None, b"raw", "orders.us", &mut plain);
    let view = EnvelopeView::parse(&plain).unwrap();
    assert_eq!(
        (view.flags, view.topic, view.payload),
        (TOPIC, Some("orders.us"), &b"raw"[..])
    );
}

#[test]
fn headers_refuse_bad_keys_and_values_at_insert() {
    let mut headers = Headers::new();
    assert_eq!(headers.insert("", "x").unwrap_err(), HeaderError::EmptyKey);
    assert!(matches!(
        headers.insert("a:b", "x"),
        Err(HeaderError::BadKeyCharacter { found: ':', .. })
    ));
    assert!(matches!(
        headers.insert("é", "x"),
        Err(HeaderError::BadKeyCharacter { .. })
    ));
    assert!(matches!(
        headers.insert("k".repeat(256), "x"),
        Err(HeaderError::KeyTooLong { len: 256 })
    ));
    assert!(matches!(
        headers.insert("k", "v".repeat(65536)),
        Err(HeaderError::ValueTooLong { len: 65536, .. })
    ));
    assert!(headers.is_empty());
}

proptest! {
    #[test]
    fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(view) = EnvelopeView::parse(&bytes) {
            prop_assert_eq!(view.len + view.payload.len(), bytes.len());
            prop_assert_eq!(view.headers().count(), view.header_count());
        }
    }

    #[test]
    fn what_is_written_is_read_back(
        keys in proptest::collection::vec("[a-z0-9-]{1,20}", 0..8),
        value in "\\PC{0,40}",
        reply_to in proptest::option::of("[a-z._]{1,30}"),
        payload in proptest::collection::vec(any::<u8>(), 0..100),
        stamped in any::<bool>(),
        offset in proptest::option::of(any::<u64>()),
    ) {
        let mut headers = Headers::new();
        for key in &keys {
            headers.insert(key.as_str(), value.as_str()).unwrap();
        }
        let envelope = Envelope {
            stamp: stamped.then(|| Stamper::new().stamp()),
            reply_to: reply_to.as_deref(),
            headers: Some(&headers),
            offset,
            ..Envelope::default()
        };
        let bytes = encode(&envelope, &payload);
        let view = EnvelopeView::parse(&bytes).unwrap();
        prop_assert_eq!(view.flags, envelope.flags());
        prop_assert_eq!(view.stamp, envelope.stamp);
        prop_assert_eq!(view.offset, offset);
        let message = crate::Message::from_enveloped("t", bytes.clone().freeze()).unwrap();
        prop_assert_eq!(message.offset(), offset);
        prop_assert_eq!(message.stamp(), envelope.stamp);
        prop_assert_eq!(message.reply_to(), reply_to.as_deref());
        prop_assert_eq!(view.reply_to, reply_to.as_deref());
        let read: Vec<(&str, &str)> = view.headers().collect();
        let written: Vec<(&str, &str)> = headers.iter().collect();
        prop_assert_eq!(read, written);
        prop_assert_eq!(view.payload, &payload[..]);
    }
}

#[test]
fn a_request_envelope_is_the_envelope_encoded_with_each_stamp() {
    let mut stamper = Stamper::new();
    let mut prefix = RequestEnvelope::new("_INBOX.0123456789abcdef0123456789abcdef");
    for _ in 0..3 {
        let stamp = stamper.stamp();
        let mut expected = BytesMut::new();
        Envelope {
            stamp: Some(stamp),
            reply_to: Some("_INBOX.0123456789abcdef0123456789abcdef"),
            ..Envelope::default()
        }
        .encode(&mut expected);
        assert_eq!(prefix.stamped(stamp), &expected[..]);
    }
}

#[test]
fn the_offset_block_round_trips_alone_and_after_every_other_block() {
    let mut headers = Headers::new();
    headers.insert("Mycelium-Delivery-Count", "3").unwrap();
    headers.insert("k", "v").unwrap();
    let stamp = Stamper::new().stamp();
    let reply = Reply {
        status: ReplyStatus::Ok,
        code: 0,
        correlation: Uuid::from_u128(9),
    };
    for mask in 0u8..32 {
        for offset in [0, 1, 4096, u64::MAX] {
            let envelope = Envelope {
                stamp: (mask & 1 != 0).then_some(stamp),
                topic: (mask & 2 != 0).then_some("orders.eu"),
                reply_to: (mask & 4 != 0).then_some("_INBOX.x"),
                reply: (mask & 8 != 0).then_some(reply),
                headers: (mask & 16 != 0).then_some(&headers),
                offset: Some(offset),
            };
            let bytes = encode(&envelope, b"payload");
            let view = EnvelopeView::parse(&bytes).unwrap();
            assert_eq!(view.flags, mask | OFFSET);
            assert_eq!(view.offset, Some(offset));
            assert_eq!(view.stamp, envelope.stamp);
            assert_eq!(view.reply, envelope.reply);
            assert_eq!(view.len, envelope.len());
            assert_eq!(view.payload, b"payload");
            // The block is the last 8 bytes of the envelope, little-endian.
            assert_eq!(&bytes[view.len - 8..view.len], &offset.to_le_bytes());
            let message = crate::Message::from_enveloped("t", bytes.freeze()).unwrap();
            assert_eq!(message.offset(), Some(offset));
            assert_eq!(message.stamp(), envelope.stamp);
            assert_eq!(message.reply_to(), envelope.reply_to);
            assert_eq!(message.reply(), envelope.reply);
            let header_count = if mask & 16 != 0 { 2 } else { 0 };
            assert_eq!(message.headers().count(), header_count);
            assert_eq!(message.payload().as_ref(), b"payload");
        }
    }
}

#[test]
fn a_message_without_the_offset_block_has_no_offset() {
    let stamped = Envelope {
        stamp: Some(Stamper::new().stamp()),
        ..Envelope::default()
    };
    let message = crate::Message::from_enveloped("t", encode(&stamped, b"p").freeze()).unwrap();
    assert_eq!(message.offset(), None);
    assert_eq!(crate::Message::new("t", &b"p"[..]).offset(), None);
}

#[test]
fn writing_with_an_offset_keeps_every_block_and_replaces_an_old_offset() {
    let mut headers = Headers::new();
    headers.insert("k", "v").unwrap();
    let stamp = Stamper::new().stamp();
    let original = Envelope {
        stamp: Some(stamp),
        reply_to: Some("_INBOX.x"),
        headers: Some(&headers),
        ..Envelope::default()
    };
    let mut stored = BytesMut::new();
    original.encode(&mut stored);
    let mut out = BytesMut::new();
    write_with_offset(&stored, b"data", 77, &mut out);
    let view = EnvelopeView::parse(&out).unwrap();
    assert_eq!(view.offset, Some(77));
    assert_eq!(view.stamp, Some(stamp));
    assert_eq!(view.reply_to, Some("_INBOX.x"));
    assert_eq!(view.headers().collect::<Vec<_>>(), vec![("k", "v")]);
    assert_eq!(view.payload, b"data");
    let expected = encode(
        &Envelope {
            offset: Some(77),
            ..original
        },
        b"data",
    );
    assert_eq!(out, expected);

    let mut again = BytesMut::new();
    write_with_offset(view.envelope_bytes(), view.payload, 78, &mut again);
    assert_eq!(EnvelopeView::parse(&again).unwrap().offset, Some(78));
    assert_eq!(again.len(), out.len());

    let mut plain = BytesMut::new();
    write_with_offset(&[], b"raw", 5, &mut plain);
    let view = EnvelopeView::parse(&plain).unwrap();
    assert_eq!(
        (view.flags, view.offset, view.payload),
        (OFFSET, Some(5), &b"raw"[..])
    );
}

#[test]
fn a_pattern_delivery_keeps_the_offset_block() {
    let envelope = Envelope {
        offset: Some(12),
        ..Envelope::default()
    };
    let bytes = encode(&envelope, b"data");
    let view = EnvelopeView::parse(&bytes).unwrap();
    let mut out = BytesMut::new();
    write_with_topic(Some(&view), view.payload, "orders.eu", &mut out);
    let again = EnvelopeView::parse(&out).unwrap();
    assert_eq!(
        (again.topic, again.offset, again.payload),
        (Some("orders.eu"), Some(12), &b"data"[..])
    );
}
