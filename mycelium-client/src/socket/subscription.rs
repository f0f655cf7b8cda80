//! A subscription as seen by the application: a [`Stream`] of messages.
//!
//! - The connection's reader task pushes whole batches of payloads into a shared queue under one
//!   lock; the subscription swaps the whole queue out when its local batch is empty, so each
//!   message costs no lock and no allocation (payloads are slices of the read buffer).
//! - The shared queue is bounded by [`SUBSCRIPTION_BUFFER`](crate::SUBSCRIPTION_BUFFER): past it the reader stops reading
//!   the socket, which pushes back to the broker and on to publishers per the topic's policy.
//! - Queue topics (and durable replay subscriptions): credit is returned to the broker as the
//!   application takes messages, half the prefetch at a time, so a consumer that stops taking
//!   stops receiving.
//! - It keeps the transport's receive contract ([`mycelium_transport::receive`]): `recv` and
//!   `try_recv` return a [`Message`] or say why not; the stream yields the same, then `None`
//!   after the end. Dropping a subscription unsubscribes it.
//! - Messages the broker dropped for the subscription (its `Lagged` notices) are returned as
//!   `Lagged(n)` once the messages received before the notice are handed out, so an
//!   application waiting for messages hears of a loss that no message follows.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use futures_core::Stream;
use mycelium_transport::{
    Frame, Message, Receive, RecvError, RoutingKind, StreamState, SubscriptionEnd, TopicName,
    TryRecvError,
};

use crate::error::{ClientError, RequestError};
use crate::socket::connection::Shared;
use crate::socket::queue::{Delivery, SubscriptionQueue};

/// A live subscription over the socket; see the module docs.
#[derive(Debug)]
pub(crate) struct SocketSubscription {
    shared: Arc<Shared>,
    queue: Arc<SubscriptionQueue>,
    /// Shared by every message handed out.
    topic: TopicName,
    topic_id: u32,
    routing: RoutingKind,
    /// Swapped out of the shared queue; handed out without locking.
    local: VecDeque<Delivery>,
    /// Whether taking a message returns credit: queue topics, and durable replay
    /// subscriptions.
    returns_credit: bool,
    /// Messages taken since credit was last returned.
    unreturned: u32,
    /// Queue topics: return credit once this many are taken.
    credit_batch: u32,
    /// Unsubscribed, or ended: nothing to tell the broker on drop.
    detached: bool,
    /// How the subscription ended, once it has; every later receive returns it.
    end: Option<SubscriptionEnd>,
    /// The stream has yielded the end and now yields `None`.
    stream: StreamState,
    /// Of the messages the broker reported dropped, how many `recv` has reported.
    told_missed: u64,
}

impl SocketSubscription {
    pub(crate) fn new(
        shared: Arc<Shared>,
        queue: Arc<SubscriptionQueue>,
        topic: &str,
        topic_id: u32,
        routing: RoutingKind,
        prefetch: u32,
    ) -> SocketSubscription {
        SocketSubscription {
            shared,
            queue,
            topic: TopicName::from(topic),
            topic_id,
            routing,
            returns_credit: routing == RoutingKind::Queue,
            local: VecDeque::new(),
            unreturned: 0,
            credit_batch: (prefetch / 2).max(1),
            detached: false,
            end: None,
            stream: StreamState::default(),
            told_missed: 0,
        }
    }

    /// A durable subscription's receive side: it returns credit as messages are taken exactly
    /// when `returns_credit` (a replay subscription; a group's acknowledgements free its
    /// window instead).
    pub(crate) fn durable(
        shared: Arc<Shared>,
        queue: Arc<SubscriptionQueue>,
        topic: &str,
        subscription_id: u32,
        prefetch: u32,
        returns_credit: bool,
    ) -> SocketSubscription {
        let mut subscription = SocketSubscription::new(
            shared,
            queue,
            topic,
            subscription_id,
            RoutingKind::Fanout,
            prefetch,
        );
        subscription.returns_credit = returns_credit;
        subscription
    }

    /// The subscription's id, from its `TopicAck`.
    pub(crate) fn topic_id(&self) -> u32 {
        self.topic_id
    }

    /// Messages received from the broker and not yet taken by the application.
    pub(crate) fn pending(&self) -> usize {
        self.local.len() + self.queue.lock().items.len()
    }

    /// The topic's name.
    pub(crate) fn topic(&self) -> &str {
        &self.topic
    }

    /// Fanout or queue.
    pub(crate) fn routing(&self) -> RoutingKind {
        self.routing
    }

    /// The next message, a lag notice, or the end. Lag notices are returned as soon as the
    /// broker's report arrives and every message received before it has been handed out, so
    /// a loss at the end of a burst, which no message follows, is heard of without waiting
    /// for one. (Messages received after the report may be handed out before it, when they
    /// arrived together.)
    #[inline]
    pub(crate) fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Result<Message, RecvError>> {
        match self.next(Some(cx.waker())) {
            Err(TryRecvError::Empty) => Poll::Pending,
            Err(TryRecvError::Lagged(n)) => Poll::Ready(Err(RecvError::Lagged(n))),
            Err(TryRecvError::Ended(end)) => Poll::Ready(Err(RecvError::Ended(end))),
            Ok(message) => Poll::Ready(Ok(message)),
            Err(other) => Poll::Ready(Err(RecvError::Ended(SubscriptionEnd::failed(other)))),
        }
    }

    /// Waits for the next message; see [`Self::poll_recv`].
    pub(crate) async fn recv(&mut self) -> Result<Message, RecvError> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// The next message if one has arrived, without waiting.
    #[inline]
    pub(crate) fn try_recv(&mut self) -> Result<Message, TryRecvError> {
        self.next(None)
    }

    /// The next message, lag notice or end. The common case, a message already taken from
    /// the shared queue, is a pop and nothing else; everything else is `next_slow`'s, kept out
    /// of line so that this stays small enough to inline into every receive call.
    #[inline]
    fn next(&mut self, waker: Option<&Waker>) -> Result<Message, TryRecvError> {
        match self.local.pop_front() {
            Some(Delivery::Plain(payload)) => {
                self.taken();
                Ok(Message::new(self.topic.clone(), payload))
            }
            Some(Delivery::Enveloped(bytes)) => Ok(self.enveloped(bytes)),
            None => self.next_slow(waker),
        }
    }

    /// `next` with nothing taken yet: refills from the shared queue, or reports a lag, the
    /// end, or nothing. (`local` is empty whenever `end` is set: the end is reported only
    /// once the queue has been drained.)
    #[inline(never)]
    fn next_slow(&mut self, waker: Option<&Waker>) -> Result<Message, TryRecvError> {
        if let Some(end) = &self.end {
            return Err(TryRecvError::Ended(end.clone()));
        }
        let end = self.refill(waker);
        if self.local.is_empty() {
            // The count is read after the waker was registered: see `lagged`.
            let missed = self.queue.missed.load(std::sync::atomic::Ordering::Relaxed);
            if missed > self.told_missed {
                let skipped = missed - self.told_missed;
                self.told_missed = missed;
                return Err(TryRecvError::Lagged(skipped));
            }
        }
        if let Some(end) = end {
            let end = end.map_or(SubscriptionEnd::Closed, ClientError::into_end);
            self.detached = true;
            self.end = Some(end.clone());
            return Err(TryRecvError::Ended(end));
        }
        match self.local.pop_front() {
            Some(Delivery::Plain(payload)) => {
                self.taken();
                Ok(Message::new(self.topic.clone(), payload))
            }
            Some(Delivery::Enveloped(bytes)) => Ok(self.enveloped(bytes)),
            None => Err(TryRecvError::Empty),
        }
    }

    /// The message of an enveloped delivery (its envelope names the concrete topic of a
    /// pattern subscription's message).
    #[inline(never)]
    fn enveloped(&mut self, bytes: Bytes) -> Message {
        self.taken();
        // The reader checked the envelope before queueing it, so this cannot fail; were it
        // to, the bytes are handed out whole rather than lost.
        match Message::from_enveloped(self.topic.clone(), bytes.clone()) {
            Ok(message) => message,
            Err(_) => Message::new(self.topic.clone(), bytes),
        }
    }

    /// Stops the subscription and waits for the broker to confirm it.
    pub(crate) async fn unsubscribe(mut self) -> Result<(), RequestError> {
        self.detached = true;
        // End the queue first: the connection's reader may be waiting for room in it, and it
        // must be free to read the broker's answer.
        self.queue.end(None);
        Ok(self.shared.unsubscribe(self.topic_id).await?)
    }

    /// Moves the shared queue into `local`; registers `waker` if there is nothing.
    /// Returns the end state when the queue has ended and is empty.
    fn refill(&mut self, waker: Option<&Waker>) -> Option<Option<ClientError>> {
        let mut state = self.queue.lock();
        if state.items.is_empty() {
            if let Some(end) = &state.ended {
                return Some(end.clone());
            }
            if let Some(waker) = waker {
                state.waker = Some(waker.clone());
            }
            return None;
        }
        std::mem::swap(&mut state.items, &mut self.local);
        let wake = std::mem::take(&mut state.space_wanted);
        drop(state);
        if wake {
            self.queue.space.notify_waiters();
        }
        None
    }

    #[inline]
    fn taken(&mut self) {
        if self.returns_credit {
            self.unreturned += 1;
            if self.unreturned >= self.credit_batch {
                self.return_credit();
            }
        }
    }

    #[inline(never)]
    fn return_credit(&mut self) {
        let credit = std::mem::take(&mut self.unreturned);
        self.shared.send_control(&Frame::Credit {
            topic_id: self.topic_id,
            credit,
        });
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

impl Stream for SocketSubscription {
    type Item = Result<Message, RecvError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.poll_stream(cx)
    }
}

impl Receive for SocketSubscription {
    async fn recv(&mut self) -> Result<Message, RecvError> {
        SocketSubscription::recv(self).await
    }

    fn try_recv(&mut self) -> Result<Message, TryRecvError> {
        SocketSubscription::try_recv(self)
    }

    fn topic(&self) -> &str {
        &self.topic
    }
}

impl Drop for SocketSubscription {
    fn drop(&mut self) {
        if !self.detached {
            // Ending the queue wakes a reader waiting for room in it (see `unsubscribe`).
            self.queue.end(None);
            self.shared.forget_subscription(self.topic_id);
        }
    }
}
