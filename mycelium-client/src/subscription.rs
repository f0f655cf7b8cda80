//! A subscription as seen by the application: a [`Stream`] of messages.
//!
//! - The connection's reader task pushes whole batches of payloads into a shared queue under one
//!   lock; the subscription swaps the whole queue out when its local batch is empty, so each
//!   message costs no lock and no allocation (payloads are slices of the read buffer).
//! - The shared queue is bounded by [`SUBSCRIPTION_BUFFER`]: past it the reader stops reading
//!   the socket, which pushes back to the broker and on to publishers per the topic's policy.
//! - Queue topics: credit is returned to the broker as the application takes messages, half the
//!   prefetch at a time, so a consumer that stops taking stops receiving.
//! - The stream yields `Err` once if the subscription ends abnormally (broker gone, slow consumer
//!   disconnected), then ends. Dropping a subscription unsubscribes it.
//! - Messages the broker dropped for the subscription (its `Lagged` notices) are counted in
//!   [`Subscription::missed`]; [`Subscription::recv_or_lagged`] also returns each new count as
//!   [`ClientError::Lagged`] once the messages received before the notice are handed out, so
//!   an application waiting for messages hears of a loss that no message follows.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use futures_core::Stream;
use mycelium_transport::{Frame, RoutingKind};
use tokio::sync::Notify;

use crate::error::ClientError;
use crate::handle::Shared;

/// Messages a subscription may hold un-taken before the connection stops reading the socket.
pub const SUBSCRIPTION_BUFFER: usize = 64 * 1024;

/// One received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    payload: Bytes,
}

impl Message {
    /// The payload, as published.
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }

    /// Takes the payload.
    pub fn into_payload(self) -> Bytes {
        self.payload
    }
}

impl std::ops::Deref for Message {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.payload
    }
}

#[derive(Debug, Default)]
struct QueueState {
    items: VecDeque<Bytes>,
    /// Set when the subscription ends; `None` inside means a clean end (unsubscribed).
    ended: Option<Option<ClientError>>,
    waker: Option<Waker>,
    /// The reader is waiting for the application to take messages.
    space_wanted: bool,
}

/// The half of a subscription shared with the connection's reader task.
#[derive(Debug, Default)]
pub(crate) struct SubscriptionQueue {
    state: Mutex<QueueState>,
    /// Messages the broker dropped for this subscription (its `Lagged` notices), in all.
    missed: std::sync::atomic::AtomicU64,
    /// Wakes the reader task when the application has taken messages.
    space: Notify,
}

impl SubscriptionQueue {
    fn lock(&self) -> MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends a batch; called by the reader task.
    pub(crate) fn push(&self, batch: impl IntoIterator<Item = Bytes>) {
        let mut state = self.lock();
        if state.ended.is_some() {
            return;
        }
        state.items.extend(batch);
        let waker = state.waker.take();
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Counts messages the broker says it dropped for this subscription, and wakes a task
    /// waiting in [`Subscription::recv_or_lagged`].
    pub(crate) fn lagged(&self, skipped: u64) {
        // Counted before the waker is taken under the lock: a poll that registered its waker
        // (under the lock) before this either sees the count or is woken.
        self.missed
            .fetch_add(skipped, std::sync::atomic::Ordering::Relaxed);
        let waker = self.lock().waker.take();
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Waits until the application has room for more; called by the reader task.
    pub(crate) async fn wait_for_room(&self) {
        loop {
            let notified = self.space.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut state = self.lock();
                if state.items.len() < SUBSCRIPTION_BUFFER || state.ended.is_some() {
                    return;
                }
                state.space_wanted = true;
            }
            notified.await;
        }
    }

    /// Ends the subscription; queued messages are still handed out first.
    pub(crate) fn end(&self, error: Option<ClientError>) {
        let mut state = self.lock();
        if state.ended.is_none() {
            state.ended = Some(error);
        }
        let waker = state.waker.take();
        drop(state);
        self.space.notify_waiters();
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// A live subscription; see the module docs.
#[derive(Debug)]
pub struct Subscription {
    shared: Arc<Shared>,
    queue: Arc<SubscriptionQueue>,
    topic: String,
    topic_id: u32,
    routing: RoutingKind,
    /// Swapped out of the shared queue; handed out without locking.
    local: VecDeque<Bytes>,
    /// Queue topics: messages taken since credit was last returned.
    unreturned: u32,
    /// Queue topics: return credit once this many are taken.
    credit_batch: u32,
    finished: bool,
    /// Of [`Self::missed`], what [`Self::recv_or_lagged`] has returned.
    told_missed: u64,
}

impl Subscription {
    pub(crate) fn new(
        shared: Arc<Shared>,
        queue: Arc<SubscriptionQueue>,
        topic: String,
        topic_id: u32,
        routing: RoutingKind,
        prefetch: u32,
    ) -> Subscription {
        Subscription {
            shared,
            queue,
            topic,
            topic_id,
            routing,
            local: VecDeque::new(),
            unreturned: 0,
            credit_batch: (prefetch / 2).max(1),
            finished: false,
            told_missed: 0,
        }
    }

    /// Messages the broker dropped for this subscription so far, because its buffer was full
    /// on a `drop_newest` or `drop_oldest` topic (told by `Lagged` notices, which arrive with
    /// the messages that follow a gap). Always 0 on other topics.
    pub fn missed(&self) -> u64 {
        self.queue.missed.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Messages received from the broker and not yet taken by the application.
    pub fn pending(&self) -> usize {
        self.local.len() + self.queue.lock().items.len()
    }

    /// The topic's name.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Fanout or queue.
    pub fn routing(&self) -> RoutingKind {
        self.routing
    }

    /// The next message; `None` once the subscription has ended (after any error was returned).
    pub async fn recv(&mut self) -> Option<Result<Message, ClientError>> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }

    /// [`recv`](Self::recv), which also returns `Some(Err(ClientError::Lagged { skipped }))`
    /// when the broker has reported messages dropped for this subscription that this method
    /// has not returned yet (`skipped` of them) and every message received before the report
    /// has been handed out. It returns as soon as the report arrives, so a loss at the end
    /// of a burst, which no message follows, is heard of without waiting for one. (Messages
    /// received after the report may be handed out before it, when they arrived together.)
    pub async fn recv_or_lagged(&mut self) -> Option<Result<Message, ClientError>> {
        std::future::poll_fn(|cx| {
            if self.finished {
                return Poll::Ready(None);
            }
            if self.local.is_empty() {
                let end = self.refill(Some(cx.waker()));
                if self.local.is_empty() {
                    // The count is read after the waker was registered: see `lagged`.
                    let missed = self.missed();
                    if missed > self.told_missed {
                        let skipped = missed - self.told_missed;
                        self.told_missed = missed;
                        return Poll::Ready(Some(Err(ClientError::Lagged { skipped })));
                    }
                }
                if let Some(end) = end {
                    self.finished = true;
                    return Poll::Ready(end.map(Err));
                }
            }
            match self.local.pop_front() {
                Some(payload) => {
                    self.taken();
                    Poll::Ready(Some(Ok(Message { payload })))
                }
                None => Poll::Pending,
            }
        })
        .await
    }

    /// The next message if one has arrived, without waiting.
    pub fn try_recv(&mut self) -> Option<Message> {
        if self.local.is_empty() {
            self.refill(None);
        }
        let payload = self.local.pop_front()?;
        self.taken();
        Some(Message { payload })
    }

    /// Stops the subscription and waits for the broker to confirm it.
    pub async fn unsubscribe(mut self) -> Result<(), ClientError> {
        self.finished = true;
        // End the queue first: the connection's reader may be waiting for room in it, and it
        // must be free to read the broker's answer.
        self.queue.end(None);
        self.shared.unsubscribe(self.topic_id).await
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

    fn taken(&mut self) {
        if self.routing == RoutingKind::Queue {
            self.unreturned += 1;
            if self.unreturned >= self.credit_batch {
                let credit = std::mem::take(&mut self.unreturned);
                self.shared.send_control(&Frame::Credit {
                    topic_id: self.topic_id,
                    credit,
                });
            }
        }
    }
}

impl Stream for Subscription {
    type Item = Result<Message, ClientError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.finished {
            return Poll::Ready(None);
        }
        if self.local.is_empty() {
            if let Some(end) = self.refill(Some(cx.waker())) {
                self.finished = true;
                return Poll::Ready(end.map(Err));
            }
        }
        match self.local.pop_front() {
            Some(payload) => {
                self.taken();
                Poll::Ready(Some(Ok(Message { payload })))
            }
            None => Poll::Pending,
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if !self.finished {
            // Ending the queue wakes a reader waiting for room in it (see `unsubscribe`).
            self.queue.end(None);
            self.shared.forget_subscription(self.topic_id);
        }
    }
}
