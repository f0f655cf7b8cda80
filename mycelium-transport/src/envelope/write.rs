//! [`Envelope`]: the blocks a publisher (or the broker) puts before a payload, and writing them.

use bytes::{BufMut, BytesMut};

use super::view::EnvelopeView;
use super::{
    Headers, Reply, Stamp, HEADERS, OFFSET, OFFSET_LEN, REPLY, REPLY_LEN, REPLY_TO, STAMP,
    STAMP_LEN, TOPIC,
};

/// What to put before a payload. Every field is optional; all `None` (and no headers) is the
/// plain message, which needs no envelope at all.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Envelope<'a> {
    /// Id and publish time.
    pub stamp: Option<Stamp>,
    /// The concrete topic: set by the broker only.
    pub topic: Option<&'a str>,
    /// Where replies go: makes the message a request.
    pub reply_to: Option<&'a str>,
    /// Which request this answers: makes the message a reply.
    pub reply: Option<Reply>,
    /// Headers (none if empty).
    pub headers: Option<&'a Headers>,
    /// The message's offset in its durable topic's log: set by the broker only.
    pub offset: Option<u64>,
}

impl Envelope<'_> {
    /// The flags byte these fields make.
    pub fn flags(&self) -> u8 {
        let mut flags = 0;
        if self.stamp.is_some() {
            flags |= STAMP;
        }
        if self.topic.is_some() {
            flags |= TOPIC;
        }
        if self.reply_to.is_some() {
            flags |= REPLY_TO;
        }
        if self.reply.is_some() {
            flags |= REPLY;
        }
        if self.headers.is_some_and(|h| !h.is_empty()) {
            flags |= HEADERS;
        }
        if self.offset.is_some() {
            flags |= OFFSET;
        }
        flags
    }

    /// Whether these fields need an envelope at all.
    pub fn is_plain(&self) -> bool {
        self.flags() == 0
    }

    /// Bytes [`encode`](Self::encode) writes before the payload. Names longer than 255 bytes
    /// are cut to 255 by `encode` and counted so here.
    pub fn len(&self) -> usize {
        1 + self.stamp.map_or(0, |_| STAMP_LEN)
            + self.topic.map_or(0, |t| 1 + t.len().min(255))
            + self.reply_to.map_or(0, |t| 1 + t.len().min(255))
            + self.reply.map_or(0, |_| REPLY_LEN)
            + self
                .headers
                .filter(|h| !h.is_empty())
                .map_or(0, Headers::encoded_len)
            + self.offset.map_or(0, |_| OFFSET_LEN)
    }

    /// Always false: an envelope has at least its flags byte.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Writes the flags and blocks (not the payload) at the end of `dst`.
    pub fn encode(&self, dst: &mut BytesMut) {
        dst.reserve(self.len());
        self.put(dst);
    }

    /// Writes the flags and blocks (not the payload) at the start of `dst`, in place (a ring
    /// frame lent to the writer); returns how many bytes, [`len`](Self::len), or `None` (and
    /// nothing written) when `dst` is shorter.
    pub fn encode_to_slice(&self, dst: &mut [u8]) -> Option<usize> {
        let len = self.len();
        let mut at = dst.get_mut(..len)?;
        self.put(&mut at);
        Some(len)
    }

    fn put(&self, dst: &mut impl BufMut) {
        dst.put_u8(self.flags());
        if let Some(stamp) = self.stamp {
            dst.put_slice(stamp.id.as_bytes());
            dst.put_u64_le(stamp.timestamp_ns);
        }
        if let Some(topic) = self.topic {
            put_name(dst, topic);
        }
        if let Some(reply_to) = self.reply_to {
            put_name(dst, reply_to);
        }
        if let Some(reply) = self.reply {
            dst.put_u8(reply.status.to_u8());
            dst.put_u16_le(reply.code);
            dst.put_slice(reply.correlation.as_bytes());
        }
        if let Some(headers) = self.headers.filter(|h| !h.is_empty()) {
            headers.put(dst);
        }
        if let Some(offset) = self.offset {
            dst.put_u64_le(offset);
        }
    }
}

/// The envelope of a request without headers from a requester whose reply address is fixed
/// (its inbox): encoded once, after which each request only writes its own stamp into it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestEnvelope {
    /// Flags, the STAMP block (rewritten per request), the REPLY_TO block.
    bytes: Vec<u8>,
}

impl RequestEnvelope {
    /// The envelope of requests whose replies go to `reply_to`.
    pub fn new(reply_to: &str) -> RequestEnvelope {
        let envelope = Envelope {
            stamp: Some(Stamp {
                id: uuid::Uuid::nil(),
                timestamp_ns: 0,
            }),
            reply_to: Some(reply_to),
            ..Envelope::default()
        };
        let mut bytes = vec![0; envelope.len()];
        envelope.encode_to_slice(&mut bytes);
        RequestEnvelope { bytes }
    }

    /// The envelope's bytes with `stamp` in it, as [`Envelope::encode`] writes them.
    pub fn stamped(&mut self, stamp: Stamp) -> &[u8] {
        // The STAMP block is the first after the flags byte.
        if let Some(block) = self.bytes.get_mut(1..1 + STAMP_LEN) {
            let (id, time) = block.split_at_mut(16);
            id.copy_from_slice(stamp.id.as_bytes());
            time.copy_from_slice(&stamp.timestamp_ns.to_le_bytes());
        }
        &self.bytes
    }
}

fn put_name(dst: &mut impl BufMut, name: &str) {
    // Topic names are at most 255 bytes; a longer one is cut (on a character boundary), and
    // the broker refuses what it then names.
    let mut end = name.len().min(255);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    dst.put_u8(end as u8);
    dst.put_slice(&name.as_bytes()[..end]);
}

/// Writes a message again with the concrete `topic` added, at the end of `dst`: what the
/// broker sends a pattern subscription. `enveloped` is the message's envelope (checked), or
/// `None` for a plain `payload`.
pub fn write_with_topic(
    enveloped: Option<&EnvelopeView<'_>>,
    payload: &[u8],
    topic: &str,
    dst: &mut BytesMut,
) {
    let Some(view) = enveloped else {
        let envelope = Envelope {
            topic: Some(topic),
            ..Envelope::default()
        };
        dst.reserve(envelope.len() + payload.len());
        envelope.encode(dst);
        dst.put_slice(payload);
        return;
    };
    let rest = view.after_topic();
    dst.reserve(1 + STAMP_LEN + 256 + rest.len());
    dst.put_u8(view.flags | TOPIC);
    if let Some(stamp) = view.stamp {
        dst.put_slice(stamp.id.as_bytes());
        dst.put_u64_le(stamp.timestamp_ns);
    }
    put_name(dst, topic);
    // The blocks after TOPIC, and the payload, as they came.
    dst.put_slice(rest);
}

/// Writes a message again with its log `offset` in the OFFSET block, at the end of `dst`: what
/// the broker sends a durable subscription. `envelope` is the message's envelope bytes as
/// stored (flags and blocks, checked when the message was published; empty for a plain
/// message); an OFFSET block already in it is replaced.
pub fn write_with_offset(envelope: &[u8], payload: &[u8], offset: u64, dst: &mut BytesMut) {
    let (flags, blocks) = match envelope.split_first() {
        Some((&flags, blocks)) if flags & OFFSET != 0 => {
            // OFFSET is the last block: drop it, the new one takes its place.
            (flags, &blocks[..blocks.len().saturating_sub(OFFSET_LEN)])
        }
        Some((&flags, blocks)) => (flags, blocks),
        None => (0, &[][..]),
    };
    dst.reserve(1 + blocks.len() + OFFSET_LEN + payload.len());
    dst.put_u8(flags | OFFSET);
    dst.put_slice(blocks);
    dst.put_u64_le(offset);
    dst.put_slice(payload);
}
