//! The bytes a consumer group sends: a stored message written again with the headers the broker
//! sets (`docs/protocol.md` §7.11) and, for a member, its offset.
//!
//! - A delivery to a member is the stored envelope's blocks (stamp, reply address, reply,
//!   headers) with `Mycelium-Delivery-Count: <n>` added and the OFFSET block, then the payload:
//!   what a `DeliverEnvelope` carries. A plain message (no stored envelope) gets an envelope of
//!   those two alone.
//! - A header the broker sets replaces one of the same name the publisher sent, so a consumer
//!   reads one value, the broker's.
//! - The stored envelope was checked when it was published; should it not parse, it is left
//!   out (logged) and the payload goes alone, rather than sending bytes no peer can read.

use bytes::{BufMut, BytesMut};
use mycelium_transport::envelope::{Envelope, EnvelopeView, Headers};

/// How many times a message has been delivered to the group, 1 on the first.
pub const DELIVERY_COUNT_HEADER: &str = "Mycelium-Delivery-Count";

/// Writes the message (`envelope` as stored, `payload`) at the end of `dst` as a member gets it:
/// delivered for the `deliveries`-th time, at `offset`.
pub(crate) fn write_delivery(
    envelope: &[u8],
    payload: &[u8],
    offset: u64,
    deliveries: u32,
    dst: &mut BytesMut,
) {
    let count = deliveries.to_string();
    write_with_headers(
        envelope,
        payload,
        &[(DELIVERY_COUNT_HEADER, &count)],
        Some(offset),
        dst,
    );
}

/// Writes the message again at the end of `dst` with `added` headers (replacing any of the
/// same names) and, when given, `offset` in the OFFSET block. An OFFSET block already stored
/// is dropped.
pub(crate) fn write_with_headers(
    envelope: &[u8],
    payload: &[u8],
    added: &[(&str, &str)],
    offset: Option<u64>,
    dst: &mut BytesMut,
) {
    let view = if envelope.is_empty() {
        EnvelopeView::PLAIN
    } else {
        match EnvelopeView::parse(envelope) {
            Ok(view) => view,
            Err(error) => {
                tracing::warn!(%error, "a stored message's envelope does not parse; it is sent without it");
                EnvelopeView::PLAIN
            }
        }
    };
    let mut headers = Headers::new();
    // Inserts only fail for a key or value the parse already refused, or past 65535 headers:
    // such a header is left out rather than the message.
    for (key, value) in view.headers() {
        if !added.iter().any(|(name, _)| *name == key) {
            let _ = headers.insert(key, value);
        }
    }
    for (key, value) in added {
        let _ = headers.insert(*key, *value);
    }
    let out = Envelope {
        stamp: view.stamp,
        topic: view.topic,
        reply_to: view.reply_to,
        reply: view.reply,
        headers: Some(&headers),
        offset,
    };
    dst.reserve(out.len() + payload.len());
    out.encode(dst);
    dst.put_slice(payload);
}

#[cfg(test)]
mod tests {
    use super::*;
    use mycelium_transport::envelope::{Stamp, Stamper};

    fn header<'a>(view: &EnvelopeView<'a>, key: &str) -> Vec<&'a str> {
        view.headers()
            .filter(|(k, _)| *k == key)
            .map(|(_, v)| v)
            .collect()
    }

    #[test]
    fn a_delivery_keeps_the_stored_blocks_and_adds_the_count_and_the_offset() {
        let mut published = Headers::new();
        published.insert("trace", "abc").unwrap();
        published.insert(DELIVERY_COUNT_HEADER, "99").unwrap();
        let stamp: Stamp = Stamper::new().stamp();
        let stored = Envelope {
            stamp: Some(stamp),
            reply_to: Some("replies"),
            headers: Some(&published),
            ..Envelope::default()
        };
        let mut envelope = BytesMut::new();
        stored.encode(&mut envelope);
        let mut out = BytesMut::new();
        write_delivery(&envelope, b"payload", 42, 3, &mut out);
        let view = EnvelopeView::parse(&out).unwrap();
        assert_eq!(view.stamp, Some(stamp));
        assert_eq!(view.reply_to, Some("replies"));
        assert_eq!(view.offset, Some(42));
        assert_eq!(view.payload, b"payload");
        assert_eq!(header(&view, "trace"), vec!["abc"]);
        assert_eq!(
            header(&view, DELIVERY_COUNT_HEADER),
            vec!["3"],
            "the broker's count replaces the publisher's"
        );
    }

    #[test]
    fn a_plain_message_gets_an_envelope_of_the_count_and_the_offset() {
        let mut out = BytesMut::new();
        write_delivery(&[], b"p", 0, 1, &mut out);
        let view = EnvelopeView::parse(&out).unwrap();
        assert_eq!(
            (view.stamp, view.offset, view.payload),
            (None, Some(0), &b"p"[..])
        );
        assert_eq!(header(&view, DELIVERY_COUNT_HEADER), vec!["1"]);
    }

    #[test]
    fn an_envelope_that_does_not_parse_is_left_out() {
        let mut out = BytesMut::new();
        write_delivery(&[0xff, 1, 2], b"p", 5, 1, &mut out);
        let view = EnvelopeView::parse(&out).unwrap();
        assert_eq!((view.offset, view.payload), (Some(5), &b"p"[..]));
    }
}
