//! [`DurableSubscription`]: the receive side of a durable subscription, handing out
//! [`DurableMessage`]s and sending their acknowledgements in batches.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_core::Stream;
use mycelium_transport::{Message, RecvError, SubscriptionEnd, TryRecvError};

use super::acks::AckBatch;
use super::message::DurableMessage;
use crate::error::{ClientError, RequestError};
use crate::socket::SocketSubscription;

/// A subscription reading a durable topic's log: a replay subscription of this client, or a
/// member of a consumer group. Made by
/// [`Client::subscribe_durable`](crate::Client::subscribe_durable).
///
/// - [`recv`](Self::recv), [`try_recv`](Self::try_recv) and the `Stream` keep the receive
///   contract of every subscription ([`mycelium_transport::receive`]), with
///   [`DurableMessage`]s.
/// - Acknowledgements pending are sent as one frame whenever the subscription finds nothing
///   to hand out (before it waits), once half the prefetch is pending, or shortly after (see
///   [`crate::durable`]); [`flush_acks`](Self::flush_acks) sends them now.
/// - A replay subscription returns credit as its messages are taken, half the prefetch at a
///   time, as a queue consumer does.
/// - Dropping it, or [`unsubscribe`](Self::unsubscribe), sends the pending acknowledgements
///   and ends it; a group keeps its committed position for the next member.
#[derive(Debug)]
pub struct DurableSubscription {
    /// Shared with every message handed out; closed when the subscription ends. Declared
    /// before `inner`: dropped first, its pending acknowledgements leave before the
    /// `Unsubscribe` that `inner` sends as it drops.
    acks: ClosedOnDrop,
    inner: SocketSubscription,
    group: Option<String>,
    prefetch: u32,
    /// The stream has yielded the end and now yields `None`.
    stream_over: bool,
    /// Set when the broker broke the protocol on this subscription: every later receive
    /// returns it.
    failed: Option<SubscriptionEnd>,
}

impl DurableSubscription {
    pub(crate) fn new(
        inner: SocketSubscription,
        acks: Arc<AckBatch>,
        group: Option<String>,
        prefetch: u32,
    ) -> DurableSubscription {
        DurableSubscription {
            acks: ClosedOnDrop(acks),
            inner,
            group,
            prefetch,
            stream_over: false,
            failed: None,
        }
    }

    /// The subscription's id (bit 30 set), as the broker names it.
    pub fn subscription_id(&self) -> u32 {
        self.inner.topic_id()
    }

    /// The topic's name.
    pub fn topic(&self) -> &str {
        self.inner.topic()
    }

    /// The consumer group, or `None` for a replay subscription.
    pub fn group(&self) -> Option<&str> {
        self.group.as_deref()
    }

    /// The prefetch the broker granted.
    pub fn prefetch(&self) -> u32 {
        self.prefetch
    }

    /// Messages received and not yet taken by the application.
    pub fn pending(&self) -> usize {
        self.inner.pending()
    }

    /// Acknowledgements made and not sent yet.
    pub fn pending_acks(&self) -> usize {
        self.acks.pending()
    }

    /// Sends the pending acknowledgements now, in one frame.
    pub fn flush_acks(&self) {
        self.acks.flush();
    }

    /// Polls for the next message; sends the pending acknowledgements when there is none.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Result<DurableMessage, RecvError>> {
        if let Some(end) = &self.failed {
            return Poll::Ready(Err(RecvError::Ended(end.clone())));
        }
        match self.inner.poll_recv(cx) {
            Poll::Pending => {
                self.acks.flush();
                Poll::Pending
            }
            Poll::Ready(Ok(message)) => Poll::Ready(self.wrap(message).map_err(RecvError::Ended)),
            Poll::Ready(Err(error)) => {
                if matches!(error, RecvError::Ended(_)) {
                    self.acks.close();
                }
                Poll::Ready(Err(error))
            }
        }
    }

    /// Waits for the next message. Cancel-safe: a dropped future takes nothing.
    pub async fn recv(&mut self) -> Result<DurableMessage, RecvError> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// The next message if one has arrived, without waiting; sends the pending
    /// acknowledgements when there is none.
    pub fn try_recv(&mut self) -> Result<DurableMessage, TryRecvError> {
        if let Some(end) = &self.failed {
            return Err(TryRecvError::Ended(end.clone()));
        }
        match self.inner.try_recv() {
            Ok(message) => self.wrap(message).map_err(TryRecvError::Ended),
            Err(TryRecvError::Empty) => {
                self.acks.flush();
                Err(TryRecvError::Empty)
            }
            Err(error) => {
                if matches!(error, TryRecvError::Ended(_)) {
                    self.acks.close();
                }
                Err(error)
            }
        }
    }

    /// Sends the pending acknowledgements, then ends the subscription and waits for the
    /// broker to confirm it.
    pub async fn unsubscribe(self) -> Result<(), RequestError> {
        let DurableSubscription { acks, inner, .. } = self;
        drop(acks);
        inner.unsubscribe().await
    }

    /// The durable message of a delivery: every delivery of a durable subscription carries
    /// its offset, and one without is the broker's protocol error, which ends the
    /// subscription.
    fn wrap(&mut self, message: Message) -> Result<DurableMessage, SubscriptionEnd> {
        match message.offset() {
            Some(offset) => Ok(DurableMessage::new(
                message,
                offset,
                Arc::clone(&self.acks.0),
                self.group.is_some(),
            )),
            None => {
                self.acks.close();
                let end = ClientError::Protocol(format!(
                    "a delivery of durable subscription {} without its offset",
                    self.inner.topic_id()
                ))
                .into_end();
                self.failed = Some(end.clone());
                Err(end)
            }
        }
    }
}

impl Stream for DurableSubscription {
    type Item = Result<DurableMessage, RecvError>;

    /// The messages, then the end once, then `None`.
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.stream_over {
            return Poll::Ready(None);
        }
        let next = std::task::ready!(self.poll_recv(cx));
        if matches!(next, Err(RecvError::Ended(_))) {
            self.stream_over = true;
        }
        Poll::Ready(Some(next))
    }
}

/// The subscription's batch, closed (its pending acknowledgements sent) when the
/// subscription goes.
#[derive(Debug)]
struct ClosedOnDrop(Arc<AckBatch>);

impl std::ops::Deref for ClosedOnDrop {
    type Target = Arc<AckBatch>;
    fn deref(&self) -> &Arc<AckBatch> {
        &self.0
    }
}

impl Drop for ClosedOnDrop {
    fn drop(&mut self) {
        self.0.close();
    }
}
