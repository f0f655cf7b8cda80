//! The receive contract every subscription keeps, whatever carries its messages.
//!
//! - `recv` waits for the next [`Message`]; `try_recv` takes one if one is ready; a blocking
//!   subscription also has `recv_timeout`. Each returns the message, or says why there is
//!   none: [`RecvError`], [`TryRecvError`], [`RecvTimeoutError`].
//! - A lag notice is an error value that does not end anything: `Lagged(n)` says that `n`
//!   messages meant for this subscriber were lost (a `drop_newest` / `drop_oldest` topic, a
//!   lossy ring); the next call returns the next message that was kept.
//! - The end is `Ended(`[`SubscriptionEnd`]`)`: why no message will come again. Every later
//!   call returns the same end.
//! - Every async subscription is also a `Stream` of `Result<Message, RecvError>` that yields
//!   the lag notices, then the end once, then `None`.
//! - [`Receive`] names the async part of the contract, so that code written once runs over
//!   any subscription (see [`Broker`](crate::Broker)).

use std::future::Future;
use std::sync::Arc;
use std::task::Poll;

use crate::frame::ErrorCode;
use crate::message::Message;

/// Why a subscription will deliver nothing more.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum SubscriptionEnd {
    /// The broker is gone: it stopped or crashed, or its connection broke.
    #[error("the broker is gone{}", detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    BrokerGone {
        /// What is known about why (the broker's last word, or the connection's error).
        detail: Option<String>,
    },
    /// The broker removed the topic (it left the config on a reload).
    #[error("the topic was removed: {message}")]
    TopicRemoved {
        /// The broker's explanation, naming the topic.
        message: String,
    },
    /// The broker ended this subscriber for falling too far behind (a `disconnect` topic, or
    /// a publish deadline that ran out while it did not read).
    #[error("dropped by the broker as a slow consumer: {message}")]
    SlowConsumer {
        /// The broker's explanation, naming the topic and the limit.
        message: String,
    },
    /// The broker ended it for another reason, and said why.
    #[error("ended by the broker: {message} ({code:?})")]
    Refused {
        /// The broker's error code.
        code: ErrorCode,
        /// The broker's explanation.
        message: String,
    },
    /// This side ended it: the client or the broker handle it came from was closed.
    #[error("closed")]
    Closed,
    /// Reading failed: the connection returned an error, the broker sent bytes that are not
    /// protocol, or a shared-memory ring turned out corrupt.
    #[error("receiving failed")]
    Failed(#[source] Arc<dyn std::error::Error + Send + Sync>),
}

impl SubscriptionEnd {
    /// A failure, keeping `error` as the source.
    pub fn failed(error: impl std::error::Error + Send + Sync + 'static) -> SubscriptionEnd {
        SubscriptionEnd::Failed(Arc::new(error))
    }
}

/// Why `recv` returned no message.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum RecvError {
    /// This many messages meant for this subscriber were lost; it goes on.
    #[error("fell behind: {0} messages were lost")]
    Lagged(u64),
    /// No message will come again.
    #[error("subscription ended")]
    Ended(#[source] SubscriptionEnd),
}

/// Why `try_recv` returned no message.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum TryRecvError {
    /// No message is ready now.
    #[error("no message ready")]
    Empty,
    /// This many messages meant for this subscriber were lost; it goes on.
    #[error("fell behind: {0} messages were lost")]
    Lagged(u64),
    /// No message will come again.
    #[error("subscription ended")]
    Ended(#[source] SubscriptionEnd),
}

/// Why `recv_timeout` returned no message.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum RecvTimeoutError {
    /// No message came within the timeout.
    #[error("no message within the timeout")]
    Timeout,
    /// This many messages meant for this subscriber were lost; it goes on.
    #[error("fell behind: {0} messages were lost")]
    Lagged(u64),
    /// No message will come again.
    #[error("subscription ended")]
    Ended(#[source] SubscriptionEnd),
}

impl From<RecvError> for TryRecvError {
    fn from(error: RecvError) -> TryRecvError {
        match error {
            RecvError::Lagged(n) => TryRecvError::Lagged(n),
            RecvError::Ended(end) => TryRecvError::Ended(end),
        }
    }
}

impl From<RecvError> for RecvTimeoutError {
    fn from(error: RecvError) -> RecvTimeoutError {
        match error {
            RecvError::Lagged(n) => RecvTimeoutError::Lagged(n),
            RecvError::Ended(end) => RecvTimeoutError::Ended(end),
        }
    }
}

/// What every async subscription answers; see the module docs for the contract.
pub trait Receive {
    /// Waits for the next message. Cancel-safe: a dropped future takes nothing.
    fn recv(&mut self) -> impl Future<Output = Result<Message, RecvError>> + Send;

    /// Takes the next message if one is ready, without waiting.
    fn try_recv(&mut self) -> Result<Message, TryRecvError>;

    /// The topic this subscription receives.
    fn topic(&self) -> &str;
}

/// Where a subscription's `Stream` stands: it yields messages and lag notices, then the end
/// once, then `None`. Every subscription keeps one, so that the rule lives here alone.
#[derive(Debug, Default, Clone, Copy)]
pub struct StreamState {
    ended: bool,
}

impl StreamState {
    /// Whether the end has been yielded: the stream answers `None` from now on.
    pub fn is_over(&self) -> bool {
        self.ended
    }

    /// The stream's item for what a receive returned, noting the end.
    pub fn yielded(
        &mut self,
        item: Result<Message, RecvError>,
    ) -> Poll<Option<Result<Message, RecvError>>> {
        if matches!(item, Err(RecvError::Ended(_))) {
            self.ended = true;
        }
        Poll::Ready(Some(item))
    }
}
