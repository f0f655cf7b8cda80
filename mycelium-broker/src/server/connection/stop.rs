//! [`Stop`]: why a connection's reader stops, and the fatal `Error` frame a protocol
//! violation earns.

use mycelium_transport::frame::{NO_REQUEST, NO_TOPIC};
use mycelium_transport::handshake::Refusal;
use mycelium_transport::{DecodeError, ErrorCode, Frame};

/// Why the reader stopped.
pub(super) enum Stop {
    /// The peer closed its end, or went away.
    Gone,
    /// The broker is shutting down: leave the outbox for the listener to flush.
    Shutdown,
    /// The peer broke the protocol; send this fatal error, then close.
    Fatal(Box<Frame>),
}

/// The stop of a protocol violation: a fatal `Error` frame with `code` and `message`.
pub(super) fn fatal(code: ErrorCode, message: impl Into<String>) -> Stop {
    Stop::Fatal(Box::new(Frame::Error {
        request_id: NO_REQUEST,
        code,
        fatal: true,
        topic_id: NO_TOPIC,
        message: message.into(),
        refused: 0,
    }))
}

/// The stop of a connection its handshake refused.
pub(super) fn refused(refusal: &Refusal) -> Stop {
    fatal(refusal.code, refusal.message.clone())
}

/// The stop of a frame that did not decode: the peer is gone (an I/O error), or broke the
/// protocol.
pub(super) fn decode_stop(error: DecodeError) -> Stop {
    match error {
        DecodeError::Io(_) => Stop::Gone,
        other => fatal(other.error_code(), other.to_string()),
    }
}
