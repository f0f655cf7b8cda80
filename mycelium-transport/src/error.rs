//! Why bytes could not be turned into a frame, or a frame into bytes.
//!
//! - [`DecodeError`] is what a peer's bytes can cause. A partial frame is never an error: decoding
//!   returns `Ok(None)` for it. [`DecodeError::error_code`] names the [`ErrorCode`] the broker
//!   answers with.
//! - After `FrameTooLarge`, `UnsupportedVersion`, `UnknownKind` or a `Malformed` header (`len` < 2)
//!   nothing was consumed and the stream cannot be resynchronised: close the connection. After a
//!   `Malformed` body the bad frame has been consumed and the next one can be read.
//! - [`EncodeError`] is what a local caller can get wrong: a string too long for its length prefix
//!   (the broker cuts its config texts first, with `ConfigStatus::truncated`), a topic name that
//!   is empty, or a frame larger than the limit in force.

use crate::frame::{ErrorCode, PROTOCOL_VERSION};

/// A peer sent bytes that are not a frame this side accepts.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The frame's `len` field exceeds the limit in force.
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    FrameTooLarge {
        /// The `len` field as received.
        len: usize,
        /// The limit in force (`max_frame_len`).
        max: usize,
    },
    /// The frame's version byte is not [`PROTOCOL_VERSION`].
    #[error("unsupported protocol version {0} (this side speaks {PROTOCOL_VERSION})")]
    UnsupportedVersion(u8),
    /// The frame's kind byte is not one of [`crate::frame::kind`].
    #[error("unknown frame kind 0x{0:02x}")]
    UnknownKind(u8),
    /// The frame is well delimited but its content breaks the layout of its kind (or `len` < 2).
    #[error("malformed {kind_name} frame: {reason}")]
    Malformed {
        /// The frame kind's name, e.g. `"Subscribe"`, or `"unknown"` when `len` leaves no room for
        /// a kind byte.
        kind_name: &'static str,
        /// What is wrong, e.g. `"trailing bytes"`.
        reason: &'static str,
    },
    /// The stream ended in the middle of a frame.
    #[error("bytes left over at end of stream")]
    TruncatedAtEof,
    /// Reading from the transport failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl DecodeError {
    /// The code the broker puts in the `Error` frame it answers this failure with.
    ///
    /// `Io` maps to [`ErrorCode::Internal`]: the peer's bytes are not at fault, and the connection
    /// is usually gone anyway.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            DecodeError::FrameTooLarge { .. } => ErrorCode::FrameTooLarge,
            DecodeError::UnsupportedVersion(_) => ErrorCode::UnsupportedVersion,
            DecodeError::UnknownKind(_) => ErrorCode::UnknownFrameKind,
            DecodeError::Malformed { .. } | DecodeError::TruncatedAtEof => ErrorCode::Malformed,
            DecodeError::Io(_) => ErrorCode::Internal,
        }
    }
}

/// A frame could not be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// A name, topic or message string is longer than its length prefix allows.
    #[error("{field} of {len} bytes exceeds the limit of {max}")]
    NameTooLong {
        /// Which string: `"name"`, `"server"`, `"topic"`, `"message"`, or one of a config
        /// status's `"last_error"`, `"last_change"`, `"pending"`.
        field: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The most its length prefix can carry.
        max: usize,
    },
    /// A topic name is empty; the decoder would refuse the frame.
    #[error("{field} is empty")]
    EmptyName {
        /// Which string (`"topic"`).
        field: &'static str,
    },
    /// The frame's `len` field would exceed `u32::MAX` or the codec's `max_frame_len`.
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    FrameTooLarge {
        /// The `len` field the frame would need.
        len: usize,
        /// The limit it exceeds.
        max: usize,
    },
    /// A `ShmGrant` lists more rings than one control message may carry fds for.
    #[error("{count} rings in one grant exceed the limit of {max}")]
    TooManyRings {
        /// Rings listed.
        count: usize,
        /// [`MAX_RINGS_PER_GRANT`](crate::frame::MAX_RINGS_PER_GRANT).
        max: usize,
    },
    /// A list is longer than its `u16` count can say (`AckMessages` offsets, `Groups`
    /// entries), or an `AckMessages` is empty, which the decoder would refuse.
    #[error("{field}: {count} entries, outside {min}..={max}")]
    BadCount {
        /// Which list: `"offsets"` or `"groups"`.
        field: &'static str,
        /// Entries given.
        count: usize,
        /// The fewest one frame carries.
        min: usize,
        /// The most one frame carries.
        max: usize,
    },
    /// Writing to the transport failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

#[cfg(test)]
mod error_code {
    use super::*;

    #[test]
    fn every_decode_error_maps_to_the_code_the_broker_answers_with() {
        let cases = [
            (
                DecodeError::FrameTooLarge { len: 9, max: 8 },
                ErrorCode::FrameTooLarge,
            ),
            (
                DecodeError::UnsupportedVersion(2),
                ErrorCode::UnsupportedVersion,
            ),
            (DecodeError::UnknownKind(0xee), ErrorCode::UnknownFrameKind),
            (
                DecodeError::Malformed {
                    kind_name: "Ack",
                    reason: "trailing bytes",
                },
                ErrorCode::Malformed,
            ),
            (DecodeError::TruncatedAtEof, ErrorCode::Malformed),
            (
                DecodeError::Io(std::io::Error::other("gone")),
                ErrorCode::Internal,
            ),
        ];
        for (err, code) in cases {
            assert_eq!(err.error_code(), code, "{err}");
        }
    }

    #[test]
    fn messages_name_the_values_involved() {
        assert_eq!(
            DecodeError::UnsupportedVersion(7).to_string(),
            format!("unsupported protocol version 7 (this side speaks {PROTOCOL_VERSION})")
        );
        assert_eq!(
            DecodeError::UnknownKind(0x0a).to_string(),
            "unknown frame kind 0x0a"
        );
        assert_eq!(
            DecodeError::Malformed {
                kind_name: "Stats",
                reason: "topic_count larger than the body"
            }
            .to_string(),
            "malformed Stats frame: topic_count larger than the body"
        );
    }
}
