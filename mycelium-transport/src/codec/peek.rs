//! Finding one complete frame at the front of a buffer without copying or consuming it.
//!
//! - Header checks fail as early as the bytes allow: `len` against the limit and against 2 as soon
//!   as the 4 length bytes are there, the version as soon as byte 4 is, the kind as soon as byte 5
//!   is. A peer that announces a bad frame is refused before its body arrives.
//! - A partial frame is not an error: it is [`Peek::Partial`], or `Ok(None)` from [`peek_frame`].
//! - The body is not parsed here; [`FrameView::to_frame`] does that, and
//!   [`FrameView::message`] reads only a message's `topic_id` for the broker's hot path.

use bytes::Bytes;

use super::parse::parse_body;
use crate::error::DecodeError;
use crate::frame::{kind, Frame, HEADER_LEN, PROTOCOL_VERSION, PUBLISH_DURABLE_ENVELOPE};

/// A borrowed view of one complete frame at the front of a buffer, for the broker's hot path (no
/// allocation).
///
/// The header has been checked (length, version, known kind); the body has not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameView<'a> {
    /// The frame's kind byte, one of [`crate::frame::kind`].
    pub kind: u8,
    /// The bytes after the header: `len - 2` of them.
    pub body: &'a [u8],
}

impl<'a> FrameView<'a> {
    /// `Some((topic_id, rest))` for a message frame whose body holds a `topic_id`, else
    /// `None`. `rest` is the payload of a `Publish` or `Deliver`, and the envelope then the
    /// payload (not checked here) of a `PublishEnvelope` or `DeliverEnvelope`.
    pub fn message(&self) -> Option<(u32, &'a [u8])> {
        if !matches!(
            self.kind,
            kind::PUBLISH | kind::DELIVER | kind::PUBLISH_ENVELOPE | kind::DELIVER_ENVELOPE
        ) {
            return None;
        }
        let (topic_id, payload) = self.body.split_first_chunk::<4>()?;
        Some((u32::from_le_bytes(*topic_id), payload))
    }

    /// The fields of a `PublishDurable` read in place, or `None` for another kind, a body
    /// shorter than its fixed fields, or reserved flag bits set. The envelope (when
    /// [`DurablePublishView::enveloped`]) is not checked here: [`to_frame`](Self::to_frame)
    /// checks it.
    pub fn durable_publish(&self) -> Option<DurablePublishView<'a>> {
        if self.kind != kind::PUBLISH_DURABLE {
            return None;
        }
        let (request_id, rest) = self.body.split_first_chunk::<4>()?;
        let (topic_id, rest) = rest.split_first_chunk::<4>()?;
        let (&flags, message) = rest.split_first()?;
        let enveloped = match flags {
            0 => false,
            PUBLISH_DURABLE_ENVELOPE => true,
            _ => return None,
        };
        Some(DurablePublishView {
            request_id: u32::from_le_bytes(*request_id),
            topic_id: u32::from_le_bytes(*topic_id),
            enveloped,
            message,
        })
    }

    /// Decodes the whole body, copying a message payload into new [`Bytes`].
    pub fn to_frame(&self) -> Result<Frame, DecodeError> {
        parse_body(self.kind, self.body, Bytes::copy_from_slice)
    }
}

/// A `PublishDurable` read in place by [`FrameView::durable_publish`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurablePublishView<'a> {
    /// Echoed in the `Published` or `Error` answer.
    pub request_id: u32,
    /// From the topic's `TopicAck`.
    pub topic_id: u32,
    /// `message` begins with an envelope (not checked yet).
    pub enveloped: bool,
    /// The payload, or the envelope then the payload.
    pub message: &'a [u8],
}

/// What the front of a buffer holds, once the header bytes present have been checked.
#[derive(Debug)]
pub(crate) enum Peek<'a> {
    /// Part of a frame; `total` (`4 + len`) is known once the 4 length bytes are there.
    Partial { total: Option<usize> },
    /// A whole frame of `total` bytes.
    Whole { view: FrameView<'a>, total: usize },
}

/// Checks the header bytes present at the front of `buf` and reports whether a whole frame is
/// there. `max_frame_len` bounds the `len` field.
pub(crate) fn peek(buf: &[u8], max_frame_len: usize) -> Result<Peek<'_>, DecodeError> {
    let Some((len_bytes, after_len)) = buf.split_first_chunk::<4>() else {
        return Ok(Peek::Partial { total: None });
    };
    // Saturating to usize::MAX on a 16-bit target still yields FrameTooLarge below.
    let len = usize::try_from(u32::from_le_bytes(*len_bytes)).unwrap_or(usize::MAX);
    let too_large = DecodeError::FrameTooLarge {
        len,
        max: max_frame_len,
    };
    if len > max_frame_len {
        return Err(too_large);
    }
    if len < 2 {
        return Err(DecodeError::Malformed {
            kind_name: "unknown",
            reason: "len field below 2, no room for version and kind",
        });
    }
    let total = len.checked_add(4).ok_or(too_large)?;
    if let Some(&version) = after_len.first() {
        if version != PROTOCOL_VERSION {
            return Err(DecodeError::UnsupportedVersion(version));
        }
    }
    let Some(&frame_kind) = after_len.get(1) else {
        return Ok(Peek::Partial { total: Some(total) });
    };
    if kind::name(frame_kind).is_none() {
        return Err(DecodeError::UnknownKind(frame_kind));
    }
    match buf.get(HEADER_LEN..total) {
        Some(body) => Ok(Peek::Whole {
            view: FrameView {
                kind: frame_kind,
                body,
            },
            total,
        }),
        None => Ok(Peek::Partial { total: Some(total) }),
    }
}

/// Looks for one complete frame at the front of `buf`, without consuming or copying it.
///
/// Returns `Ok(None)` while `buf` does not yet hold a whole frame, and
/// `Ok(Some((view, total_len)))` once it does, where `total_len = 4 + len` is the number of bytes
/// to consume. Fails, as soon as the offending byte is present and before the body arrives, on
/// `len > max_frame_len` ([`DecodeError::FrameTooLarge`]), `len < 2` ([`DecodeError::Malformed`]),
/// a version byte other than [`PROTOCOL_VERSION`] or an unknown kind byte. After an error the
/// stream cannot be resynchronised.
///
/// The body is not checked: call [`FrameView::to_frame`] or [`FrameView::message`].
///
/// ```
/// use mycelium_transport::{encode_message, kind, peek_frame, HANDSHAKE_MAX_FRAME_LEN};
///
/// let mut buf = bytes::BytesMut::new();
/// encode_message(&mut buf, kind::PUBLISH, 3, b"hi");
/// assert!(peek_frame(&buf[..5], HANDSHAKE_MAX_FRAME_LEN)?.is_none());
/// let (view, total) = peek_frame(&buf, HANDSHAKE_MAX_FRAME_LEN)?.expect("a whole frame");
/// assert_eq!(view.message(), Some((3, &b"hi"[..])));
/// assert_eq!(total, buf.len());
/// # Ok::<(), mycelium_transport::DecodeError>(())
/// ```
pub fn peek_frame(
    buf: &[u8],
    max_frame_len: usize,
) -> Result<Option<(FrameView<'_>, usize)>, DecodeError> {
    match peek(buf, max_frame_len)? {
        Peek::Partial { .. } => Ok(None),
        Peek::Whole { view, total } => Ok(Some((view, total))),
    }
}
