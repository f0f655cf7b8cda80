//! [`FrameCodec`]: the `tokio_util` codec that turns a byte stream into [`Frame`]s and back.
//!
//! - Decoding returns `Ok(None)` on a partial frame, never an error. The `len` field is checked
//!   against `max_frame_len` before any memory is reserved for the frame, and then exactly the rest
//!   of the frame is reserved.
//! - The decoder keeps no state between calls: it consumes nothing until a whole frame is
//!   buffered, so the header is simply re-read (6 bytes) on the next call. Without a
//!   `Head`/`Data(len)` state machine there is no state to get out of step with the buffer.
//! - `Publish`/`Deliver` payloads are zero-copy: slices of the frozen frame, which shares the read
//!   buffer's allocation.
//! - Encoding applies the same `max_frame_len`, so a client that sets it from `Welcome` never
//!   sends a frame the broker would refuse.

use bytes::{Buf, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use super::encode::{frame_len, write_frame};
use super::parse::parse_body;
use super::peek::{peek, Peek};
use crate::error::{DecodeError, EncodeError};
use crate::frame::{Frame, HANDSHAKE_MAX_FRAME_LEN, HEADER_LEN};

/// Decodes and encodes [`Frame`]s, refusing frames whose `len` field exceeds `max_frame_len`.
///
/// The default limit is [`HANDSHAKE_MAX_FRAME_LEN`], the one in force before `Welcome`; raise it
/// with [`set_max_frame_len`](Self::set_max_frame_len) once the handshake is done (e.g. through
/// `Framed::codec_mut`).
#[derive(Debug, Clone)]
pub struct FrameCodec {
    max_frame_len: usize,
}

impl FrameCodec {
    /// A codec that accepts and writes frames whose `len` field is at most `max_frame_len`.
    pub fn new(max_frame_len: usize) -> Self {
        FrameCodec { max_frame_len }
    }

    /// The largest `len` field accepted.
    pub fn max_frame_len(&self) -> usize {
        self.max_frame_len
    }

    /// Changes the largest `len` field accepted, from the next frame on.
    pub fn set_max_frame_len(&mut self, n: usize) {
        self.max_frame_len = n;
    }
}

impl Default for FrameCodec {
    fn default() -> Self {
        FrameCodec::new(HANDSHAKE_MAX_FRAME_LEN)
    }
}

impl Decoder for FrameCodec {
    type Item = Frame;
    type Error = DecodeError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, DecodeError> {
        let (frame_kind, total) = match peek(src, self.max_frame_len)? {
            Peek::Partial { total } => {
                if let Some(total) = total {
                    src.reserve(total.saturating_sub(src.len()));
                }
                return Ok(None);
            }
            Peek::Whole { view, total } => (view.kind, total),
        };
        let mut body = src.split_to(total);
        // `Whole` means `total` bytes, at least HEADER_LEN (`len` >= 2), were buffered: no panic.
        body.advance(HEADER_LEN);
        let body = body.freeze();
        parse_body(frame_kind, &body, |payload| body.slice_ref(payload)).map(Some)
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, DecodeError> {
        match self.decode(buf)? {
            Some(frame) => Ok(Some(frame)),
            None if buf.is_empty() => Ok(None),
            None => Err(DecodeError::TruncatedAtEof),
        }
    }
}

impl Encoder<&Frame> for FrameCodec {
    type Error = EncodeError;

    fn encode(&mut self, frame: &Frame, dst: &mut BytesMut) -> Result<(), EncodeError> {
        let len = frame_len(frame)?;
        let len_usize = len as usize;
        if len_usize > self.max_frame_len {
            return Err(EncodeError::FrameTooLarge {
                len: len_usize,
                max: self.max_frame_len,
            });
        }
        write_frame(frame, len, dst);
        Ok(())
    }
}

impl Encoder<Frame> for FrameCodec {
    type Error = EncodeError;

    fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> Result<(), EncodeError> {
        Encoder::<&Frame>::encode(self, &frame, dst)
    }
}
