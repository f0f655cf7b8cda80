//! [`AsyncShmSubscription`]: a shared-memory subscription for tokio tasks.
//!
//! - A dedicated OS thread owns the [`ShmSubscription`]: it spins briefly and then sleeps on
//!   the rings' futexes exactly as a synchronous subscriber does, and forwards each message
//!   into a bounded tokio channel that [`recv`](AsyncShmSubscription::recv) awaits. No runtime
//!   worker ever waits on a futex or spins.
//! - Why a thread and not `spawn_blocking` per wait: a futex sleep needs a thread either way,
//!   and a thread of its own keeps the subscription in one place, so a `recv` future dropped
//!   half-way loses nothing (tokio's `mpsc::Receiver::recv` is cancel-safe), while a blocking
//!   task per wait would hold the subscription in a closure that outlives a cancelled future,
//!   and pay a blocking-pool hand-off (tens of microseconds) per wait. The cost is one thread
//!   per subscription and one channel hop (a few microseconds) per message.
//! - **Cancellation safety**: dropping the future of [`recv`](AsyncShmSubscription::recv)
//!   before it completes loses no message; the next call returns it.
//! - Flow control: the channel holds at most [`FORWARD_CAPACITY`] messages; when it is full the
//!   thread stops reading the rings, so a task that stops receiving holds publishers back as a
//!   slow synchronous subscriber does (`block`). On a queue topic the messages in the channel
//!   are this consumer's: dropping the subscription loses them (as a socket consumer's
//!   prefetched messages).
//! - Dropping the subscription ends the thread within [`STOP_POLL`] and detaches from the
//!   topic.
//!
//! - It keeps the transport's receive contract ([`mycelium_transport::receive`]), as a
//!   `Stream` too.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_core::Stream;
use mycelium_transport::{Message, Receive, RecvError, StreamState, SubscriptionEnd, TryRecvError};
use tokio::sync::mpsc;

use crate::error::ClientError;
use crate::shm::subscription::ShmSubscription;

/// Messages (or errors) the forwarding thread may have handed over and the task not yet
/// received: enough to carry a burst across one wake-up of the task, small enough that a task
/// that stops receiving holds its publishers back soon.
pub(crate) const FORWARD_CAPACITY: usize = 1024;

/// Longest sleep of the forwarding thread before it checks that the subscription is still
/// wanted: how long a dropped subscription's thread (and attachment) may outlive it.
pub(crate) const STOP_POLL: Duration = Duration::from_millis(100);

/// A shared-memory subscription for async code; see the module docs.
#[derive(Debug)]
pub(crate) struct AsyncShmSubscription {
    topic: Arc<str>,
    /// Fed by the forwarding thread. Dropping it ends the thread: its next send fails, or
    /// its next check of `is_closed` after a sleep sees it.
    messages: mpsc::Receiver<Result<Message, RecvError>>,
    /// Set once the thread reported the end; every later call returns it.
    end: Option<SubscriptionEnd>,
    /// The stream has yielded the end and now yields `None`.
    stream: StreamState,
}

impl AsyncShmSubscription {
    /// Moves `subscription` to a forwarding thread of its own.
    ///
    /// # Errors
    ///
    /// [`ClientError::Shm`] if the thread cannot be started (the subscription is dropped,
    /// which detaches it).
    pub(crate) fn new(subscription: ShmSubscription) -> Result<AsyncShmSubscription, ClientError> {
        let topic: Arc<str> = Arc::from(subscription.topic());
        let (sender, messages) = mpsc::channel(FORWARD_CAPACITY);
        std::thread::Builder::new()
            .name(format!("shm-sub:{topic}"))
            .spawn(move || forward(subscription, sender))
            .map_err(|e| ClientError::Shm(format!("cannot start the forwarding thread: {e}")))?;
        Ok(AsyncShmSubscription {
            topic,
            messages,
            end: None,
            stream: StreamState::default(),
        })
    }

    /// The topic's name.
    pub(crate) fn topic(&self) -> &str {
        &self.topic
    }

    /// The next message, a lag notice or the end.
    pub(crate) fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Result<Message, RecvError>> {
        if let Some(end) = &self.end {
            return Poll::Ready(Err(RecvError::Ended(end.clone())));
        }
        let next = std::task::ready!(self.messages.poll_recv(cx));
        Poll::Ready(self.take(next))
    }

    /// Waits for the next message. Cancel-safe: a future dropped before it completes takes
    /// nothing.
    pub(crate) async fn recv(&mut self) -> Result<Message, RecvError> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// The next message if one is there now, without waiting.
    pub(crate) fn try_recv(&mut self) -> Result<Message, TryRecvError> {
        if let Some(end) = &self.end {
            return Err(TryRecvError::Ended(end.clone()));
        }
        match self.messages.try_recv() {
            Ok(next) => self.take(Some(next)).map_err(TryRecvError::from),
            Err(mpsc::error::TryRecvError::Empty) => Err(TryRecvError::Empty),
            Err(mpsc::error::TryRecvError::Disconnected) => {
                self.take(None).map_err(TryRecvError::from)
            }
        }
    }

    fn take(&mut self, next: Option<Result<Message, RecvError>>) -> Result<Message, RecvError> {
        match next {
            Some(Err(RecvError::Ended(end))) => {
                self.end = Some(end.clone());
                Err(RecvError::Ended(end))
            }
            Some(other) => other,
            None => {
                // The thread only stops on its own after sending the end, which was recorded
                // above; this is a thread that panicked.
                let end = SubscriptionEnd::failed(ClientError::Shm(
                    "the forwarding thread stopped".into(),
                ));
                self.end = Some(end.clone());
                Err(RecvError::Ended(end))
            }
        }
    }

    /// The stream's view: the end once, then `None`.
    pub(crate) fn poll_stream(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Message, RecvError>>> {
        if self.stream.is_over() {
            return Poll::Ready(None);
        }
        let next = std::task::ready!(self.poll_recv(cx));
        self.stream.yielded(next)
    }
}

impl Stream for AsyncShmSubscription {
    type Item = Result<Message, RecvError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.poll_stream(cx)
    }
}

impl Receive for AsyncShmSubscription {
    async fn recv(&mut self) -> Result<Message, RecvError> {
        AsyncShmSubscription::recv(self).await
    }

    fn try_recv(&mut self) -> Result<Message, TryRecvError> {
        AsyncShmSubscription::try_recv(self)
    }

    fn topic(&self) -> &str {
        &self.topic
    }
}

/// The forwarding thread: receives as a synchronous subscriber does and hands each message to
/// the channel, waiting for room there (which is the flow control), until the receiver is
/// dropped or the subscription ends.
fn forward(mut subscription: ShmSubscription, sender: mpsc::Sender<Result<Message, RecvError>>) {
    loop {
        if sender.is_closed() {
            return;
        }
        let next = match subscription.recv_timeout(STOP_POLL) {
            Ok(message) => Ok(message),
            Err(mycelium_transport::RecvTimeoutError::Timeout) => continue,
            Err(mycelium_transport::RecvTimeoutError::Lagged(n)) => Err(RecvError::Lagged(n)),
            Err(mycelium_transport::RecvTimeoutError::Ended(end)) => Err(RecvError::Ended(end)),
            Err(other) => Err(RecvError::Ended(SubscriptionEnd::failed(other))),
        };
        let last = matches!(next, Err(RecvError::Ended(_)));
        if let Err(error) = &next {
            tracing::debug!(topic = subscription.topic(), %error, "shared-memory subscription reports an error");
        }
        // Fails only when the receiver was dropped: the subscription is not wanted any more.
        if sender.blocking_send(next).is_err() || last {
            return;
        }
    }
}
