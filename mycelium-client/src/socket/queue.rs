//! [`SubscriptionQueue`]: the half of a socket subscription that the connection's reader
//! task fills and the subscription empties.
//!
//! - The reader pushes whole batches of messages ([`Delivery`]) under one lock; the subscription swaps the
//!   whole queue out at once (`subscription.rs`), so a message costs no lock of its own.
//! - Bounded by [`SUBSCRIPTION_BUFFER`]: past it the reader waits for room
//!   ([`SubscriptionQueue::wait_for_room`]) instead of reading the socket.
//! - The broker's `Lagged` notices are counted here, and the end of the subscription is
//!   recorded here; queued messages are still handed out before the end.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};
use std::task::Waker;

use bytes::Bytes;
use tokio::sync::Notify;

use crate::error::ClientError;

/// Messages a subscription may hold un-taken before the connection stops reading the socket.
pub const SUBSCRIPTION_BUFFER: usize = 64 * 1024;

/// One message as the reader hands it over: a slice of the read buffer.
#[derive(Debug, Clone)]
pub(crate) enum Delivery {
    /// A `Deliver`: the payload.
    Plain(Bytes),
    /// A `DeliverEnvelope`: the envelope (checked by the reader), then the payload.
    Enveloped(Bytes),
}

#[derive(Debug, Default)]
pub(super) struct QueueState {
    pub(super) items: VecDeque<Delivery>,
    /// Set when the subscription ends; `None` inside means a clean end (unsubscribed).
    pub(super) ended: Option<Option<ClientError>>,
    pub(super) waker: Option<Waker>,
    /// The reader is waiting for the application to take messages.
    pub(super) space_wanted: bool,
}

/// The half of a subscription shared with the connection's reader task.
#[derive(Debug, Default)]
pub(crate) struct SubscriptionQueue {
    pub(super) state: Mutex<QueueState>,
    /// Messages the broker dropped for this subscription (its `Lagged` notices), in all.
    pub(super) missed: std::sync::atomic::AtomicU64,
    /// Wakes the reader task when the application has taken messages.
    pub(super) space: Notify,
}

impl SubscriptionQueue {
    /// Taken by the subscription on every refill (`subscription.rs`): `#[inline]` lets it be
    /// inlined across the module boundary.
    #[inline]
    pub(super) fn lock(&self) -> MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends a batch; called by the reader task.
    pub(crate) fn push(&self, batch: impl IntoIterator<Item = Delivery>) {
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
    /// waiting in `SocketSubscription::recv`.
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
