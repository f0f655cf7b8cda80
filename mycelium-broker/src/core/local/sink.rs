//! The in-process subscription's [`Delivery`]: a queue of payloads, no frames.
//!
//! - Messages (payloads, or envelopes then payloads) are copied into one growing buffer,
//!   back to back, with an entry per message that says whether it is enveloped;
//!   the subscription takes everything queued in one swap and hands each payload out as a
//!   zero-copy slice of that buffer, so routing one message to it costs a copy and no
//!   allocation, and taking one costs a reference count.
//! - Room is counted in messages (the topic's limit) and bytes ([`OUTBOX_MAX_BYTES`], as for
//!   a socket subscriber); an empty queue always takes one message.
//! - A loss is an entry of its own ([`Entry::Lagged`]) at the place of the gap; notices next
//!   to each other are merged, so a subscriber that keeps losing messages gets one notice per
//!   gap, not one per drop.
//! - The end (`SinkEnd`) is handed out after everything queued; from then on appends are
//!   refused.
//! - The subscription is woken only on the empty → non-empty transition (and at the end), and
//!   blocked publishers only when they asked for room.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::{Buf, Bytes, BytesMut};
use mycelium_transport::outbox::OUTBOX_MAX_BYTES;
use mycelium_transport::SubscriptionEnd;
use tokio::sync::Notify;

use crate::core::batch::BatchRef;
use crate::core::delivery::{Delivered, Delivery, Ending, RoomWait};
use crate::core::ids::TopicId;

/// One thing queued for the subscription, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Entry {
    /// A plain message: the next `len` bytes of the buffer are its payload.
    Message(usize),
    /// An enveloped message: the next `len` bytes of the buffer are its envelope, then its
    /// payload.
    Enveloped(usize),
    /// This many messages were lost here.
    Lagged(u64),
}

/// What the subscription took in one swap: the payload bytes and the entries over them.
#[derive(Debug, Default)]
pub(crate) struct Taken {
    /// The payloads of the message entries, back to back.
    pub(crate) bytes: Bytes,
    /// What was queued, oldest first.
    pub(crate) entries: VecDeque<Entry>,
}

/// What [`LocalSink::take`] found.
#[derive(Debug)]
pub(crate) enum Take {
    /// Entries were moved into the [`Taken`].
    Some,
    /// Nothing is queued; the subscription goes on.
    Nothing,
    /// Nothing is queued and nothing will be: the subscription is over.
    Ended(SubscriptionEnd),
}

#[derive(Debug, Default)]
struct Queue {
    bytes: BytesMut,
    entries: VecDeque<Entry>,
    /// Message entries in `entries`.
    messages: usize,
    /// Set by [`Delivery::end`] or [`LocalSink::close`]; appends are refused from then on.
    closed: bool,
    /// Why it ended, handed out after `entries`; `None` while open, or once the
    /// subscription itself closed the sink.
    end: Option<SubscriptionEnd>,
    /// A publisher waits for room; the next take must wake it.
    space_wanted: bool,
    /// The subscription waiting for something to take; woken (and cleared) by whoever
    /// makes the queue non-empty or ends it.
    reader: Option<Waker>,
}

impl Queue {
    /// The room rule: an empty queue always takes one message, else `limit` messages and
    /// [`OUTBOX_MAX_BYTES`] bytes (checked before the message, so it may go over by one).
    fn fits(messages: usize, bytes: usize, limit: usize) -> bool {
        messages == 0 || (messages < limit && bytes < OUTBOX_MAX_BYTES)
    }

    /// Whether the subscription has something to take, or the end to learn.
    fn has_news(&self) -> bool {
        !self.entries.is_empty() || self.closed
    }

    /// Adds a loss of `count` at the back, merged with a notice just before it.
    fn push_lost(&mut self, count: u64) {
        match self.entries.back_mut() {
            Some(Entry::Lagged(n)) => *n = n.saturating_add(count),
            _ => self.entries.push_back(Entry::Lagged(count)),
        }
    }
}

/// The queue between a topic and one [`LocalSubscription`](crate::LocalSubscription).
#[derive(Debug)]
pub(crate) struct LocalSink {
    /// The one topic whose messages come here: losses and evictions of any other are not
    /// this subscriber's.
    topic: TopicId,
    queue: Mutex<Queue>,
    /// Wakes publishers blocked on a full queue, when the subscription takes or leaves.
    writable: Notify,
}

impl LocalSink {
    /// An empty, open queue for a subscriber of `topic`.
    pub(crate) fn new(topic: TopicId) -> LocalSink {
        LocalSink {
            topic,
            queue: Mutex::default(),
            writable: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        // Every change below leaves the queue consistent between statements that can panic.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Moves everything queued into `into` (whose entries must have been used up).
    pub(crate) fn take(&self, into: &mut Taken) -> Take {
        into.entries.clear();
        let mut queue = self.lock();
        if queue.entries.is_empty() {
            return match &queue.end {
                Some(end) => Take::Ended(end.clone()),
                None if queue.closed => Take::Ended(SubscriptionEnd::Closed),
                None => Take::Nothing,
            };
        }
        std::mem::swap(&mut queue.entries, &mut into.entries);
        // The whole buffer goes to the subscription: splitting it would leave the rest of its
        // capacity shared, and the next append that outgrows it allocates anyway.
        into.bytes = std::mem::take(&mut queue.bytes).freeze();
        queue.messages = 0;
        let wake = std::mem::take(&mut queue.space_wanted);
        drop(queue);
        if wake {
            self.writable.notify_waiters();
        }
        Take::Some
    }

    /// Ready when there is something to take or the end to learn; else `cx` is woken when
    /// there is.
    pub(crate) fn poll_news(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut queue = self.lock();
        if queue.has_news() {
            return Poll::Ready(());
        }
        match &mut queue.reader {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// The subscription leaves: what is queued is discarded, appends are refused, and
    /// publishers waiting for room go on.
    pub(crate) fn close(&self) {
        let mut queue = self.lock();
        queue.closed = true;
        queue.entries = VecDeque::new();
        queue.bytes = BytesMut::new();
        queue.messages = 0;
        drop(queue);
        self.writable.notify_waiters();
    }

    /// Wakes the subscription if `queue` had nothing for it before this change.
    fn wake_reader(queue: &mut Queue, had_news: bool) -> Option<Waker> {
        if had_news {
            None
        } else {
            queue.reader.take()
        }
    }
}

impl Delivery for LocalSink {
    fn deliver(
        &self,
        _topic: TopicId,
        batch: BatchRef<'_>,
        range: Range<usize>,
        limit: Option<usize>,
    ) -> Delivered {
        let mut queue = self.lock();
        if queue.closed {
            return Delivered::Closed;
        }
        let had_news = queue.has_news();
        let mut queued = 0;
        for i in range {
            let item = batch.item(i);
            if let Some(limit) = limit {
                if !Queue::fits(queue.messages, queue.bytes.len(), limit) {
                    break;
                }
            }
            queue.bytes.extend_from_slice(item.bytes);
            queue.entries.push_back(if item.enveloped {
                Entry::Enveloped(item.bytes.len())
            } else {
                Entry::Message(item.bytes.len())
            });
            queue.messages += 1;
            queued += 1;
        }
        let waker = if queued > 0 {
            Self::wake_reader(&mut queue, had_news)
        } else {
            None
        };
        drop(queue);
        if let Some(waker) = waker {
            waker.wake();
        }
        Delivered::Queued(queued)
    }

    fn has_room(&self, _topic: TopicId, limit: usize) -> bool {
        let queue = self.lock();
        queue.closed || Queue::fits(queue.messages, queue.bytes.len(), limit)
    }

    fn wait_for_room(&self, _topic: TopicId, limit: usize) -> RoomWait<'_> {
        Box::pin(async move {
            loop {
                let notified = self.writable.notified();
                tokio::pin!(notified);
                // Registered before the look, so a take between the look and the await wakes it.
                notified.as_mut().enable();
                {
                    let mut queue = self.lock();
                    if queue.closed || Queue::fits(queue.messages, queue.bytes.len(), limit) {
                        return;
                    }
                    queue.space_wanted = true;
                }
                notified.await;
            }
        })
    }

    fn evict_oldest(&self, topic: TopicId, max: usize) -> usize {
        let mut queue = self.lock();
        if queue.closed || topic != self.topic {
            return 0;
        }
        let wanted = max.min(queue.messages);
        let (mut cut, mut told, mut cut_bytes) = (0, 0u64, 0);
        // The oldest messages, and the notices among and before them: one notice replaces all.
        while cut < wanted {
            match queue.entries.pop_front() {
                Some(Entry::Message(len) | Entry::Enveloped(len)) => {
                    cut += 1;
                    cut_bytes += len;
                }
                Some(Entry::Lagged(n)) => told = told.saturating_add(n),
                None => break,
            }
        }
        if cut == 0 {
            return 0;
        }
        queue.bytes.advance(cut_bytes);
        queue.messages -= cut;
        let skipped = (cut as u64).saturating_add(told);
        match queue.entries.front_mut() {
            Some(Entry::Lagged(n)) => *n = n.saturating_add(skipped),
            _ => queue.entries.push_front(Entry::Lagged(skipped)),
        }
        cut
    }

    fn report_lost(&self, topic: TopicId, count: u64) {
        if count == 0 || topic != self.topic {
            return;
        }
        let mut queue = self.lock();
        if queue.closed {
            return;
        }
        let had_news = queue.has_news();
        queue.push_lost(count);
        let waker = Self::wake_reader(&mut queue, had_news);
        drop(queue);
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    fn end(&self, _topic: TopicId, why: Ending<'_>) {
        let mut queue = self.lock();
        if queue.closed {
            return;
        }
        queue.closed = true;
        queue.end = Some(match why {
            Ending::TopicRemoved { message } => SubscriptionEnd::TopicRemoved {
                message: message.to_owned(),
            },
            Ending::SlowConsumer { message } => SubscriptionEnd::SlowConsumer {
                message: message.to_owned(),
            },
            Ending::StorageFailed { message } => SubscriptionEnd::Refused {
                code: mycelium_transport::ErrorCode::StorageFailed,
                message: message.to_owned(),
            },
        });
        let waker = queue.reader.take();
        drop(queue);
        if let Some(waker) = waker {
            waker.wake();
        }
        self.writable.notify_waiters();
    }

    fn queued(&self, _topic: TopicId) -> Option<usize> {
        Some(self.lock().messages)
    }
}

#[cfg(test)]
mod tests {
    use mycelium_transport::Message;

    use super::*;
    use crate::core::delivery_conformance::{self, Reader, Seen};

    impl Reader for LocalSink {
        fn open(topic: u32) -> LocalSink {
            LocalSink::new(topic)
        }

        fn read_all(&self) -> Vec<Seen> {
            let mut seen = Vec::new();
            let mut taken = Taken::default();
            loop {
                match self.take(&mut taken) {
                    Take::Some => {
                        for entry in taken.entries.drain(..) {
                            seen.push(match entry {
                                Entry::Message(len) => {
                                    let payload = taken.bytes.split_to(len);
                                    Seen::Message(payload.to_vec())
                                }
                                Entry::Enveloped(len) => {
                                    let bytes = taken.bytes.split_to(len);
                                    let message = Message::from_enveloped("t", bytes)
                                        .expect("a valid envelope");
                                    Seen::Message(message.payload().to_vec())
                                }
                                Entry::Lagged(n) => Seen::Lagged(n),
                            });
                        }
                    }
                    Take::Nothing => return seen,
                    Take::Ended(_) => {
                        seen.push(Seen::End);
                        return seen;
                    }
                }
            }
        }
    }

    #[tokio::test]
    async fn the_in_process_sink_keeps_the_delivery_contract() {
        delivery_conformance::run::<LocalSink>().await;
    }

    fn deliver(sink: &LocalSink, payloads: &[&[u8]], limit: usize) -> Delivered {
        sink.deliver(
            1,
            BatchRef::Payloads(payloads),
            0..payloads.len(),
            Some(limit),
        )
    }

    #[test]
    fn evicting_replaces_the_oldest_messages_and_their_notices_with_one_notice() {
        let sink = LocalSink::new(1);
        assert_eq!(deliver(&sink, &[b"a", b"b"], 10), Delivered::Queued(2));
        sink.report_lost(1, 2);
        assert_eq!(deliver(&sink, &[b"c", b"d"], 10), Delivered::Queued(2));
        assert_eq!(sink.evict_oldest(1, 3), 3);
        let mut taken = Taken::default();
        assert!(matches!(sink.take(&mut taken), Take::Some));
        assert_eq!(
            Vec::from(taken.entries),
            vec![Entry::Lagged(5), Entry::Message(1)]
        );
        assert_eq!(&taken.bytes[..], b"d");
    }

    #[test]
    fn the_end_comes_after_what_was_queued_and_refuses_appends() {
        let sink = LocalSink::new(1);
        deliver(&sink, &[b"a"], 10);
        sink.end(1, Ending::TopicRemoved { message: "gone" });
        assert_eq!(deliver(&sink, &[b"b"], 10), Delivered::Closed);
        let mut taken = Taken::default();
        assert!(matches!(sink.take(&mut taken), Take::Some));
        assert!(matches!(
            sink.take(&mut taken),
            Take::Ended(SubscriptionEnd::TopicRemoved { .. })
        ));
    }
}
