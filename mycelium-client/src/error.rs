//! The client library's error type.

use std::path::PathBuf;

use mycelium_transport::{DecodeError, ErrorCode};

/// What went wrong talking to the broker.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The socket could not be reached (no broker there, or no permission).
    #[error("cannot connect to the broker at {path}: {reason}{}", connect_hint(*kind))]
    Connect {
        /// The socket path.
        path: PathBuf,
        /// The OS error, as text (io::Error is not Clone).
        reason: String,
        /// The OS error kind, to tell "not found" from "refused".
        kind: std::io::ErrorKind,
    },
    /// The broker refused a request or dropped this connection, and said why.
    #[error("broker refused: {message} ({code:?})")]
    Refused {
        /// The broker's error code.
        code: ErrorCode,
        /// The broker's explanation, naming the topic or limit concerned.
        message: String,
    },
    /// The connection to the broker is gone (it stopped, crashed, or closed this connection).
    #[error("the broker connection is gone{}", detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    BrokerGone {
        /// What is known about why.
        detail: Option<String>,
    },
    /// The payload exceeds the topic's `max_message_size`; nothing was sent.
    #[error("message of {size} bytes exceeds the limit of {max} bytes on topic '{topic}'")]
    MessageTooLarge {
        /// The topic.
        topic: String,
        /// The payload's size.
        size: usize,
        /// The topic's limit.
        max: usize,
    },
    /// The broker sent bytes that are not valid protocol; the connection was closed.
    #[error("protocol error from the broker: {0}")]
    Protocol(String),
    /// The broker did not answer in time.
    #[error("timed out waiting for the broker: {0}")]
    Timeout(&'static str),
    /// A shared-memory subscription missed `skipped` messages: on a `drop_oldest` topic they
    /// were overwritten before it read them (the next receive returns the oldest message still
    /// intact); on a `drop_newest` topic a publisher (or the broker's relay) dropped them for
    /// lack of room (the next receive returns the message after them). A socket subscription
    /// returns it from [`Subscription::recv_or_lagged`](crate::Subscription::recv_or_lagged)
    /// for the messages the broker dropped for it. News, not a failure: the subscription goes on.
    #[error("fell behind: {skipped} messages were lost before they were read (overwritten or dropped for lack of room)")]
    Lagged {
        /// Messages lost.
        skipped: u64,
    },
    /// A shared-memory publisher on a queue topic found no consumer to hand the message to
    /// within the request timeout; nothing was published. (Over the socket the broker would
    /// keep it in the topic's backlog.)
    #[error("no consumer on queue topic '{topic}' within {waited:?}: start one, or publish over the socket, where the broker keeps a backlog")]
    NoConsumer {
        /// The topic.
        topic: String,
        /// How long the publisher waited.
        waited: std::time::Duration,
    },
    /// A shared-memory ring could not be used (mapping failed, or its memory is corrupt); the
    /// ring was dropped.
    #[error("shared memory: {0}")]
    Shm(String),
}

/// What a user most likely needs to know after a failed connect.
fn connect_hint(kind: std::io::ErrorKind) -> &'static str {
    match kind {
        std::io::ErrorKind::NotFound => " (is the broker running? start one with `mycelium run`)",
        std::io::ErrorKind::ConnectionRefused => {
            " (nothing listens on this socket: a broker that is gone left it; start one with `mycelium run`)"
        }
        std::io::ErrorKind::PermissionDenied => " (the socket's permissions do not admit this user: see server.socket_mode)",
        _ => "",
    }
}

impl ClientError {
    /// The broker's error code, for refusals.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Refused { code, .. } => Some(*code),
            _ => None,
        }
    }

    pub(crate) fn gone(detail: impl Into<String>) -> ClientError {
        ClientError::BrokerGone {
            detail: Some(detail.into()),
        }
    }
}

impl From<DecodeError> for ClientError {
    fn from(error: DecodeError) -> ClientError {
        match error {
            DecodeError::Io(io) => ClientError::gone(io.to_string()),
            other => ClientError::Protocol(other.to_string()),
        }
    }
}
