//! [`EnvelopeView`]: an enveloped message read in place, after checking every byte of it.

use uuid::Uuid;

use super::headers::{is_key_byte, HeaderIter};
use super::{
    Reply, ReplyStatus, Stamp, HEADERS, KNOWN_FLAGS, OFFSET, OFFSET_LEN, REPLY, REPLY_TO, STAMP,
    TOPIC,
};

/// Why bytes are not an envelope this version reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed envelope: {0}")]
pub struct EnvelopeError(pub &'static str);

/// An enveloped message, borrowed from the bytes it arrived in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnvelopeView<'a> {
    /// The flags byte.
    pub flags: u8,
    /// Id and publish time, if stamped.
    pub stamp: Option<Stamp>,
    /// The concrete topic (deliveries to pattern subscriptions).
    pub topic: Option<&'a str>,
    /// Where replies go (requests).
    pub reply_to: Option<&'a str>,
    /// Which request this answers (replies).
    pub reply: Option<Reply>,
    /// The header entries after the count (checked).
    headers: &'a [u8],
    header_count: u16,
    /// Bytes of the header keys and values.
    pub header_bytes: usize,
    /// The message's offset in its durable topic's log (deliveries read from a log).
    pub offset: Option<u64>,
    /// Bytes of the envelope: everything before the payload.
    pub len: usize,
    /// The blocks after TOPIC (REPLY_TO, REPLY, HEADERS, OFFSET) and the payload, as they came.
    after_topic: &'a [u8],
    /// The payload.
    pub payload: &'a [u8],
    /// The envelope's bytes: flags and blocks, without the payload.
    envelope: &'a [u8],
}

impl<'a> EnvelopeView<'a> {
    /// The view of a plain message with no payload: no blocks at all.
    pub const PLAIN: EnvelopeView<'static> = EnvelopeView {
        flags: 0,
        stamp: None,
        topic: None,
        reply_to: None,
        reply: None,
        headers: &[],
        header_count: 0,
        header_bytes: 0,
        offset: None,
        len: 0,
        after_topic: &[],
        payload: &[],
        envelope: &[],
    };

    /// Reads `bytes` (flags, blocks, payload), checking every length, string and flag.
    pub fn parse(bytes: &'a [u8]) -> Result<EnvelopeView<'a>, EnvelopeError> {
        let mut r = Cursor { buf: bytes };
        let flags = r.u8("truncated flags")?;
        if flags & !KNOWN_FLAGS != 0 {
            return Err(EnvelopeError("reserved flag bits set"));
        }
        let stamp = if flags & STAMP != 0 {
            let id = Uuid::from_bytes(r.array::<16>("truncated id")?);
            let timestamp_ns = u64::from_le_bytes(r.array::<8>("truncated timestamp")?);
            Some(Stamp { id, timestamp_ns })
        } else {
            None
        };
        let topic = (flags & TOPIC != 0)
            .then(|| r.name("truncated topic"))
            .transpose()?;
        let after_topic = r.buf;
        let reply_to = (flags & REPLY_TO != 0)
            .then(|| r.name("truncated reply_to"))
            .transpose()?;
        let reply = if flags & REPLY != 0 {
            let status = ReplyStatus::from_u8(r.u8("truncated reply status")?)
                .ok_or(EnvelopeError("unknown reply status"))?;
            let code = u16::from_le_bytes(r.array::<2>("truncated reply code")?);
            let correlation = Uuid::from_bytes(r.array::<16>("truncated correlation id")?);
            Some(Reply {
                status,
                code,
                correlation,
            })
        } else {
            None
        };
        let (mut headers, mut header_count, mut header_bytes): (&[u8], u16, usize) = (&[], 0, 0);
        if flags & HEADERS != 0 {
            header_count = u16::from_le_bytes(r.array::<2>("truncated header count")?);
            let start = r.buf;
            for _ in 0..header_count {
                let key = r.take_prefixed(1, "truncated header key")?;
                if key.is_empty() {
                    return Err(EnvelopeError("empty header key"));
                }
                if !key.iter().all(|&b| is_key_byte(b)) {
                    return Err(EnvelopeError(
                        "header key with a character outside the token set",
                    ));
                }
                let value = r.take_prefixed(2, "truncated header value")?;
                if std::str::from_utf8(value).is_err() {
                    return Err(EnvelopeError("header value is not UTF-8"));
                }
                header_bytes += key.len() + value.len();
            }
            headers = &start[..start.len() - r.buf.len()];
        }
        let offset = if flags & OFFSET != 0 {
            Some(u64::from_le_bytes(
                r.array::<OFFSET_LEN>("truncated offset")?,
            ))
        } else {
            None
        };
        let len = bytes.len() - r.buf.len();
        Ok(EnvelopeView {
            flags,
            stamp,
            topic,
            reply_to,
            reply,
            headers,
            header_count,
            header_bytes,
            offset,
            len,
            after_topic,
            payload: r.buf,
            envelope: &bytes[..len],
        })
    }

    /// The headers, in the order they were given.
    pub fn headers(&self) -> HeaderIter<'a> {
        HeaderIter::new(self.headers, self.header_count)
    }

    /// The envelope's bytes (flags and blocks, without the payload), as they came.
    pub fn envelope_bytes(&self) -> &'a [u8] {
        self.envelope
    }

    /// The bytes after the TOPIC block: the later blocks and the payload.
    pub(crate) fn after_topic(&self) -> &'a [u8] {
        self.after_topic
    }

    /// How many headers.
    pub fn header_count(&self) -> usize {
        usize::from(self.header_count)
    }
}

/// Reads fields front to back; `field` says what was cut short ("truncated id").
struct Cursor<'a> {
    buf: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], EnvelopeError> {
        let (head, tail) = self.buf.split_at_checked(n).ok_or(EnvelopeError(field))?;
        self.buf = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], EnvelopeError> {
        let bytes = self.take(N, field)?;
        let mut out = [0; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, EnvelopeError> {
        Ok(self.array::<1>(field)?[0])
    }

    fn take_prefixed(
        &mut self,
        prefix: usize,
        field: &'static str,
    ) -> Result<&'a [u8], EnvelopeError> {
        let len = match prefix {
            1 => usize::from(self.u8(field)?),
            _ => usize::from(u16::from_le_bytes(self.array::<2>(field)?)),
        };
        self.take(len, field)
    }

    /// A `str8` topic name: 1-255 bytes of UTF-8.
    fn name(&mut self, field: &'static str) -> Result<&'a str, EnvelopeError> {
        let bytes = self.take_prefixed(1, field)?;
        if bytes.is_empty() {
            return Err(EnvelopeError("empty topic name"));
        }
        std::str::from_utf8(bytes).map_err(|_| EnvelopeError("topic name is not UTF-8"))
    }
}

/// Where the fixed blocks of an envelope already checked by [`EnvelopeView::parse`] sit:
/// found by their lengths alone, for the accessors of a received message, which need one
/// field each and must not check the whole envelope again for it.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct BlockOffsets {
    /// The STAMP block's start.
    pub(crate) stamp: Option<usize>,
    /// The REPLY_TO name's bytes.
    pub(crate) reply_to: Option<(usize, usize)>,
    /// The REPLY block's start.
    pub(crate) reply: Option<usize>,
    /// The OFFSET block's start.
    pub(crate) offset: Option<usize>,
}

impl BlockOffsets {
    /// The offsets in `bytes` (the envelope's bytes alone: flags first, no payload), or `None`
    /// if a length runs past the end (never, for bytes that parsed).
    pub(crate) fn find(bytes: &[u8]) -> Option<BlockOffsets> {
        let flags = *bytes.first()?;
        let mut at = 1;
        let mut found = BlockOffsets::default();
        if flags & STAMP != 0 {
            found.stamp = Some(at);
            at += super::STAMP_LEN;
        }
        if flags & TOPIC != 0 {
            at += 1 + usize::from(*bytes.get(at)?);
        }
        if flags & REPLY_TO != 0 {
            let len = usize::from(*bytes.get(at)?);
            found.reply_to = Some((at + 1, len));
            at += 1 + len;
        }
        if flags & REPLY != 0 {
            found.reply = Some(at);
            at += super::REPLY_LEN;
        }
        if flags & OFFSET != 0 {
            // The last block: it ends the envelope, whatever HEADERS before it holds, so it
            // is found without walking the headers.
            let start = bytes.len().checked_sub(OFFSET_LEN)?;
            if start < at {
                return None;
            }
            found.offset = Some(start);
        }
        (at <= bytes.len()).then_some(found)
    }

    pub(crate) fn offset(&self, bytes: &[u8]) -> Option<u64> {
        let at = self.offset?;
        let block: [u8; OFFSET_LEN] = bytes.get(at..at + OFFSET_LEN)?.try_into().ok()?;
        Some(u64::from_le_bytes(block))
    }

    pub(crate) fn stamp(&self, bytes: &[u8]) -> Option<Stamp> {
        let at = self.stamp?;
        let id: [u8; 16] = bytes.get(at..at + 16)?.try_into().ok()?;
        let time: [u8; 8] = bytes.get(at + 16..at + 24)?.try_into().ok()?;
        Some(Stamp {
            id: Uuid::from_bytes(id),
            timestamp_ns: u64::from_le_bytes(time),
        })
    }

    pub(crate) fn reply_to<'a>(&self, bytes: &'a [u8]) -> Option<&'a str> {
        let (at, len) = self.reply_to?;
        std::str::from_utf8(bytes.get(at..at + len)?).ok()
    }

    pub(crate) fn reply(&self, bytes: &[u8]) -> Option<Reply> {
        let at = self.reply?;
        let block = bytes.get(at..at + super::REPLY_LEN)?;
        let correlation: [u8; 16] = block.get(3..19)?.try_into().ok()?;
        Some(Reply {
            status: ReplyStatus::from_u8(block[0])?,
            code: u16::from_le_bytes([block[1], block[2]]),
            correlation: Uuid::from_bytes(correlation),
        })
    }
}
