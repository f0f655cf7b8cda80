//! The errors of the client, one enum per operation.
//!
//! - [`ConnectError`] (connecting and the handshake), [`PublishError`] (publishing, loans,
//!   publisher checks), [`SubscribeError`] (subscribing), [`RequestError`] (stats, reload,
//!   flush, close, unsubscribe). Receiving has the transport's contract:
//!   [`RecvError`](mycelium_transport::RecvError) and its siblings.
//! - Variants keep what a caller matches on as typed fields: the broker's
//!   [`ErrorCode`] and message, the io error of a failed connect, sizes and limits. Texts that
//!   only explain (why a connection broke, what was malformed) travel as a [`Cause`] source.
//! - Inside the crate one shared type, `ClientError`, carries failures between layers; each
//!   public operation converts it to its own enum at its boundary.

use std::path::PathBuf;
use std::time::Duration;

use mycelium_transport::{DecodeError, ErrorCode, SubscriptionEnd};

/// An explanation with no structure a caller could match on: why a connection broke, what
/// the broker sent that is not protocol, what was wrong with a shared-memory ring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause(String);

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Cause {}

/// Why [`Client::connect`](crate::Client::connect) (or its blocking twin) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The socket could not be reached: no broker there (`NotFound`, `ConnectionRefused`),
    /// or no permission (`PermissionDenied`).
    #[error("cannot connect to the broker at {}", path.display())]
    Unreachable {
        /// The socket path.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The broker refused the connection (too many connections, shared memory disabled) and
    /// said why.
    #[error("broker refused: {message} ({code:?})")]
    Refused {
        /// The broker's error code.
        code: ErrorCode,
        /// The broker's explanation.
        message: String,
    },
    /// The broker closed the connection during the handshake.
    #[error("the broker connection is gone")]
    BrokerGone(#[source] Option<Cause>),
    /// The broker answered with something that is not the protocol.
    #[error("protocol error from the broker")]
    Protocol(#[source] Cause),
    /// The broker did not complete the handshake within the connect timeout.
    #[error("timed out waiting for the broker: {0}")]
    Timeout(&'static str),
}

/// Why a publish (or a loan, or a publisher's check) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
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
    /// The broker refused (an unknown topic, a denied permission, an ended attachment) and
    /// said why.
    #[error("broker refused: {message} ({code:?})")]
    Refused {
        /// The broker's error code.
        code: ErrorCode,
        /// The broker's explanation, naming the topic or limit concerned.
        message: String,
    },
    /// The headers exceed the topic's `max_headers` or `max_header_bytes`; nothing was sent.
    #[error("headers refused on topic '{topic}': {detail}")]
    HeadersTooLarge {
        /// The topic.
        topic: String,
        /// Which limit, and by how much.
        detail: String,
    },
    /// The connection to the broker is gone (it stopped, crashed, or closed this connection).
    #[error("the broker connection is gone")]
    BrokerGone(#[source] Option<Cause>),
    /// A shared-memory publisher on a queue topic found no consumer to hand the message to
    /// within the request timeout; nothing was published. (Over the socket the broker would
    /// keep it in the topic's backlog.)
    #[error("no consumer on queue topic '{topic}' within {waited:?}: start one, or publish over the socket, where the broker keeps a backlog")]
    NoConsumer {
        /// The topic.
        topic: String,
        /// How long the publisher waited.
        waited: Duration,
    },
    /// The broker did not answer in time.
    #[error("timed out waiting for the broker: {0}")]
    Timeout(&'static str),
    /// The broker sent bytes that are not protocol; the connection was closed.
    #[error("protocol error from the broker")]
    Protocol(#[source] Cause),
    /// A shared-memory ring or payload segment could not be used.
    #[error("shared memory")]
    Shm(#[source] Cause),
    /// A loan was asked of a publisher over the socket, which lends no ring bytes.
    #[error("loans need the shared-memory transport")]
    LoanUnsupported,
    /// Connecting the transport this publisher needs failed.
    #[error(transparent)]
    Connect(#[from] ConnectError),
}

/// Why a subscribe (or the creation of a publisher) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SubscribeError {
    /// The broker refused (an unknown topic, a denied permission, a limit) and said why.
    #[error("broker refused: {message} ({code:?})")]
    Refused {
        /// The broker's error code.
        code: ErrorCode,
        /// The broker's explanation, naming the topic or limit concerned.
        message: String,
    },
    /// The connection to the broker is gone.
    #[error("the broker connection is gone")]
    BrokerGone(#[source] Option<Cause>),
    /// The broker did not answer in time.
    #[error("timed out waiting for the broker: {0}")]
    Timeout(&'static str),
    /// The broker sent bytes that are not protocol; the connection was closed.
    #[error("protocol error from the broker")]
    Protocol(#[source] Cause),
    /// A shared-memory ring could not be mapped, or a forwarding thread not started.
    #[error("shared memory")]
    Shm(#[source] Cause),
    /// Connecting the transport this subscription needs failed.
    #[error(transparent)]
    Connect(#[from] ConnectError),
}

/// Why a request to the broker (stats, reload, flush, close, unsubscribe) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The broker refused, and said why. After a flush: the first publish it refused since
    /// the previous flush.
    #[error("broker refused: {message} ({code:?})")]
    Refused {
        /// The broker's error code.
        code: ErrorCode,
        /// The broker's explanation.
        message: String,
    },
    /// The connection to the broker is gone.
    #[error("the broker connection is gone")]
    BrokerGone(#[source] Option<Cause>),
    /// The broker did not answer in time.
    #[error("timed out waiting for the broker: {0}")]
    Timeout(&'static str),
    /// The broker sent bytes that are not protocol; the connection was closed.
    #[error("protocol error from the broker")]
    Protocol(#[source] Cause),
    /// Connecting the socket this request needs failed.
    #[error(transparent)]
    Connect(#[from] ConnectError),
}

macro_rules! code_accessor {
    ($($error:ident),*) => {$(
        impl $error {
            /// The broker's error code, for refusals.
            pub fn code(&self) -> Option<ErrorCode> {
                match self {
                    $error::Refused { code, .. } => Some(*code),
                    _ => None,
                }
            }
        }
    )*};
}

code_accessor!(ConnectError, PublishError, SubscribeError, RequestError);

/// What went wrong, as it travels between the layers of the crate; each public operation
/// converts it to its own error at its boundary.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum ClientError {
    /// The socket could not be reached (no broker there, or no permission).
    #[error("cannot connect to the broker at {path}: {reason}")]
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
    /// The headers exceed the topic's `max_headers` or `max_header_bytes`; nothing was sent.
    #[error("headers refused on topic '{topic}': {detail}")]
    HeadersTooLarge {
        /// The topic.
        topic: String,
        /// Which limit, and by how much.
        detail: String,
    },
    /// The broker sent bytes that are not valid protocol; the connection was closed.
    #[error("protocol error from the broker: {0}")]
    Protocol(String),
    /// The broker did not answer in time.
    #[error("timed out waiting for the broker: {0}")]
    Timeout(&'static str),
    /// A shared-memory subscription missed `skipped` messages: on a `drop_oldest` topic they
    /// were overwritten before it read them; on a `drop_newest` topic a publisher (or the
    /// broker's relay) dropped them for lack of room. News, not a failure.
    #[error("fell behind: {skipped} messages were lost before they were read")]
    Lagged {
        /// Messages lost.
        skipped: u64,
    },
    /// A shared-memory publisher on a queue topic found no consumer in time.
    #[error("no consumer on queue topic '{topic}' within {waited:?}")]
    NoConsumer {
        /// The topic.
        topic: String,
        /// How long the publisher waited.
        waited: Duration,
    },
    /// A shared-memory ring could not be used (mapping failed, or its memory is corrupt); the
    /// ring was dropped.
    #[error("shared memory: {0}")]
    Shm(String),
    /// Sleeping on the rings' futexes failed: the subscription cannot wait any more.
    #[error("waiting on shared memory failed: {0}")]
    Wait(String),
}

impl ClientError {
    /// The broker's error code, for refusals.
    pub(crate) fn code(&self) -> Option<ErrorCode> {
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

    /// How a subscription that met this error ends.
    pub(crate) fn into_end(self) -> SubscriptionEnd {
        match self {
            ClientError::BrokerGone { detail } => SubscriptionEnd::BrokerGone { detail },
            // The socket connection words a shutdown the same way.
            ClientError::Refused {
                code: ErrorCode::ShuttingDown,
                ..
            } => SubscriptionEnd::BrokerGone {
                detail: Some("the broker shut down".to_owned()),
            },
            ClientError::Refused {
                code: ErrorCode::TopicRemoved,
                message,
            } => SubscriptionEnd::TopicRemoved { message },
            ClientError::Refused {
                code: ErrorCode::SlowConsumer,
                message,
            } => SubscriptionEnd::SlowConsumer { message },
            ClientError::Refused { code, message } => SubscriptionEnd::Refused { code, message },
            other => SubscriptionEnd::failed(other),
        }
    }
}

fn cause(text: String) -> Cause {
    Cause(text)
}

fn gone_cause(detail: Option<String>) -> Option<Cause> {
    detail.map(Cause)
}

impl From<ClientError> for ConnectError {
    fn from(error: ClientError) -> ConnectError {
        match error {
            ClientError::Connect {
                path, reason, kind, ..
            } => ConnectError::Unreachable {
                path,
                source: std::io::Error::new(kind, reason),
            },
            ClientError::Refused { code, message } => ConnectError::Refused { code, message },
            ClientError::BrokerGone { detail } => ConnectError::BrokerGone(gone_cause(detail)),
            ClientError::Timeout(what) => ConnectError::Timeout(what),
            ClientError::Protocol(text) => ConnectError::Protocol(cause(text)),
            // Nothing else arises while connecting; keep the text if it ever does.
            other => ConnectError::Protocol(cause(other.to_string())),
        }
    }
}

impl From<ClientError> for PublishError {
    fn from(error: ClientError) -> PublishError {
        match error {
            ClientError::MessageTooLarge { topic, size, max } => {
                PublishError::MessageTooLarge { topic, size, max }
            }
            ClientError::HeadersTooLarge { topic, detail } => {
                PublishError::HeadersTooLarge { topic, detail }
            }
            ClientError::Refused { code, message } => PublishError::Refused { code, message },
            ClientError::BrokerGone { detail } => PublishError::BrokerGone(gone_cause(detail)),
            ClientError::NoConsumer { topic, waited } => PublishError::NoConsumer { topic, waited },
            ClientError::Timeout(what) => PublishError::Timeout(what),
            ClientError::Protocol(text) => PublishError::Protocol(cause(text)),
            ClientError::Shm(text) | ClientError::Wait(text) => PublishError::Shm(cause(text)),
            connect @ ClientError::Connect { .. } => PublishError::Connect(connect.into()),
            // A publisher never meets a lag notice; keep the text if it ever does.
            other @ ClientError::Lagged { .. } => PublishError::Protocol(cause(other.to_string())),
        }
    }
}

impl From<ClientError> for SubscribeError {
    fn from(error: ClientError) -> SubscribeError {
        match error {
            ClientError::Refused { code, message } => SubscribeError::Refused { code, message },
            ClientError::BrokerGone { detail } => SubscribeError::BrokerGone(gone_cause(detail)),
            ClientError::Timeout(what) => SubscribeError::Timeout(what),
            ClientError::Protocol(text) => SubscribeError::Protocol(cause(text)),
            ClientError::Shm(text) | ClientError::Wait(text) => SubscribeError::Shm(cause(text)),
            connect @ ClientError::Connect { .. } => SubscribeError::Connect(connect.into()),
            other => SubscribeError::Protocol(cause(other.to_string())),
        }
    }
}

impl From<ClientError> for RequestError {
    fn from(error: ClientError) -> RequestError {
        match error {
            ClientError::Refused { code, message } => RequestError::Refused { code, message },
            ClientError::BrokerGone { detail } => RequestError::BrokerGone(gone_cause(detail)),
            ClientError::Timeout(what) => RequestError::Timeout(what),
            ClientError::Protocol(text) => RequestError::Protocol(cause(text)),
            connect @ ClientError::Connect { .. } => RequestError::Connect(connect.into()),
            other => RequestError::Protocol(cause(other.to_string())),
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
