//! The routing core behind a [`Broker`] trait, usable in-process without sockets.
//!
//! - [`LocalBroker`] routes through the same [`Topic`]s and [`Outbox`]es as the socket server,
//!   so benchmarking it measures the real routing path minus the kernel.
//! - [`LocalSubscription`] drains its outbox in whole batches and hands out payloads as
//!   zero-copy slices of the drained buffer; a queue subscription returns credit as messages
//!   are taken, and unsubscribes itself when dropped.
//! - On a `drop_newest` / `drop_oldest` topic the messages the subscription lost are counted
//!   ([`LocalSubscription::missed`], from the topic's `Lagged` notices); it goes on.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use mycelium_broker::{Broker, LocalBroker};
//! let broker = LocalBroker::new(mycelium_config::TopicDefaults::default());
//! broker.create_topic(mycelium_config::TopicDefaults::default().topic("prices"))?;
//! let mut sub = broker.subscribe("prices")?;
//! broker.publish("prices", b"42").await?;
//! assert_eq!(&sub.recv().await.unwrap()[..], b"42");
//! # Ok(()) }
//! ```

use std::future::Future;
use std::sync::Arc;

use std::collections::VecDeque;

use bytes::Bytes;
use mycelium_config::{Routing, TopicConfig, TopicDefaults};
use mycelium_transport::{peek_frame, Frame};

use crate::core::registry::TopicRegistry;
use crate::core::topic::{Progress, PublishCursor, SubscriberId, Topic, TopicId};
use crate::error::{CreateTopicError, LookupError, PublishError, SubscribeError};
use mycelium_transport::outbox::{Drained, Outbox};

/// What any Mycelium broker offers, whatever carries the messages.
pub trait Broker {
    /// A live subscription; dropping or unsubscribing it stops delivery.
    type Subscription;

    /// Declares a topic and returns its id.
    fn create_topic(&self, config: TopicConfig) -> Result<TopicId, CreateTopicError>;

    /// Routes one message; waits while a `block` policy holds it back.
    fn publish(
        &self,
        topic: &str,
        payload: &[u8],
    ) -> impl Future<Output = Result<(), PublishError>> + Send;

    /// Starts receiving the topic's messages.
    fn subscribe(&self, topic: &str) -> Result<Self::Subscription, SubscribeError>;

    /// Stops a subscription; messages already routed to it are discarded.
    fn unsubscribe(&self, subscription: Self::Subscription);
}

/// The in-process broker; cheap to clone.
#[derive(Debug, Clone)]
pub struct LocalBroker {
    registry: Arc<TopicRegistry>,
}

impl LocalBroker {
    /// A broker with no topics; unknown topics are created from `defaults` if they allow it.
    pub fn new(defaults: TopicDefaults) -> LocalBroker {
        LocalBroker {
            registry: Arc::new(TopicRegistry::new(defaults)),
        }
    }

    /// A broker over an existing registry (shared with a socket server, for instance).
    pub fn with_registry(registry: Arc<TopicRegistry>) -> LocalBroker {
        LocalBroker { registry }
    }

    /// The registry behind this broker.
    pub fn registry(&self) -> &Arc<TopicRegistry> {
        &self.registry
    }

    /// A publisher bound to one topic: resolves the name once, then publishes without lookups.
    pub fn publisher(&self, topic: &str) -> Result<LocalPublisher, PublishError> {
        Ok(LocalPublisher {
            topic: self.registry.resolve(topic)?,
        })
    }
}

/// Publishes on one topic; see [`LocalBroker::publisher`].
#[derive(Debug, Clone)]
pub struct LocalPublisher {
    topic: Arc<Topic>,
}

impl LocalPublisher {
    /// Routes one message.
    pub async fn publish(&self, payload: &[u8]) -> Result<(), PublishError> {
        self.publish_batch(&[payload]).await
    }

    /// Routes several messages in order, taking each subscriber's lock once for the batch.
    /// If any payload is too large, nothing is routed.
    pub async fn publish_batch(&self, payloads: &[&[u8]]) -> Result<(), PublishError> {
        let max = self.topic.config().max_message_size;
        if let Some(big) = payloads.iter().find(|p| p.len() > max) {
            return Err(PublishError::MessageTooLarge {
                topic: self.topic.name().to_owned(),
                size: big.len(),
                max,
            });
        }
        let mut cursor = PublishCursor::default();
        while let Progress::Blocked(blocker) = self.topic.publish(payloads, &mut cursor) {
            blocker.wait().await;
        }
        Ok(())
    }
}

impl Broker for LocalBroker {
    type Subscription = LocalSubscription;

    fn create_topic(&self, config: TopicConfig) -> Result<TopicId, CreateTopicError> {
        self.registry.create_topic(config).map(|t| t.id())
    }

    async fn publish(&self, topic: &str, payload: &[u8]) -> Result<(), PublishError> {
        self.publisher(topic)?.publish(payload).await
    }

    fn subscribe(&self, topic: &str) -> Result<LocalSubscription, SubscribeError> {
        let topic = self.registry.resolve(topic)?;
        let outbox = Arc::new(Outbox::new());
        let id = self.registry.next_subscriber_id();
        // Removed by a reload between the lookup and now.
        let credit = topic
            .subscribe(id, outbox.clone(), usize::MAX, 0)
            .ok_or_else(|| LookupError::UnknownTopic {
                name: topic.name().to_owned(),
            })?;
        Ok(LocalSubscription {
            topic,
            id,
            outbox,
            pending: VecDeque::new(),
            drained: Drained::default(),
            unreturned: 0,
            credit_batch: (credit / 2).max(1),
            missed: 0,
        })
    }

    fn unsubscribe(&self, subscription: LocalSubscription) {
        drop(subscription);
    }
}

/// An in-process subscription; see the module docs.
#[derive(Debug)]
pub struct LocalSubscription {
    topic: Arc<Topic>,
    id: SubscriberId,
    outbox: Arc<Outbox>,
    /// Frames drained from the outbox and not yet handed out.
    pending: VecDeque<Bytes>,
    /// Receives each drain of the outbox before its chunks move to `pending`.
    drained: Drained,
    /// Queue: messages taken since credit was last returned.
    unreturned: u32,
    /// Queue: return credit once this many are taken (half the prefetch), so the broker can
    /// refill while the consumer works through the other half.
    credit_batch: u32,
    /// Messages the topic dropped for this subscription (its `Lagged` notices), in all.
    missed: u64,
}

impl LocalSubscription {
    /// The next message, waiting for one; None once the subscription is closed.
    pub async fn recv(&mut self) -> Option<Bytes> {
        loop {
            if let Some(message) = self.try_recv() {
                return Some(message);
            }
            if self.outbox.is_finished() {
                return None;
            }
            self.outbox.readable().await;
        }
    }

    /// Messages the topic dropped for this subscription so far (`drop_newest`,
    /// `drop_oldest`), as far as the frames taken so far tell.
    pub fn missed(&self) -> u64 {
        self.missed
    }

    /// The next message if one is ready.
    pub fn try_recv(&mut self) -> Option<Bytes> {
        let (frame_len, payload_range) = loop {
            if self.pending.is_empty() {
                self.refill();
            }
            let chunk = self.pending.front_mut()?;
            // Frames in the outbox were encoded by this crate, so a decode failure is a bug;
            // the subscription then ends rather than handing out garbage.
            let (view, used) = match peek_frame(chunk, usize::MAX) {
                Ok(Some(found)) => found,
                _ => return None,
            };
            if let Some((_, payload)) = view.message() {
                break (used, (used - payload.len())..used);
            }
            if let Ok(Frame::Lagged { skipped, .. }) = view.to_frame() {
                // Messages lost here; the subscription goes on.
                self.missed = self.missed.saturating_add(skipped);
                bytes::Buf::advance(chunk, used);
                if chunk.is_empty() {
                    self.pending.pop_front();
                }
                continue;
            }
            // Any other frame is the topic's notice that it was removed (`Topic::remove`):
            // the subscription is over.
            self.pending.clear();
            self.outbox.abort();
            return None;
        };
        let chunk = self.pending.front_mut()?;
        let message = chunk.slice(payload_range);
        // `advance` moves the view without touching the refcount (`split_to` would clone and
        // drop a handle: two atomics per message).
        bytes::Buf::advance(chunk, frame_len);
        if chunk.is_empty() {
            self.pending.pop_front();
        }
        if self.topic.routing() == Routing::Queue {
            self.unreturned += 1;
            if self.unreturned >= self.credit_batch {
                self.topic
                    .add_credit(self.id, std::mem::take(&mut self.unreturned));
            }
        }
        Some(message)
    }

    fn refill(&mut self) {
        if self.outbox.take(&mut self.drained) {
            self.drained.drain_chunks(&mut self.pending);
        }
    }

    /// The topic this subscription receives from.
    pub fn topic(&self) -> &Topic {
        &self.topic
    }
}

impl Drop for LocalSubscription {
    fn drop(&mut self) {
        self.topic.unsubscribe(self.id);
        self.outbox.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn broker_with(routing: Routing) -> LocalBroker {
        let broker = LocalBroker::new(TopicDefaults::default());
        let mut config = TopicDefaults::default().topic("t");
        config.routing = routing;
        config.prefetch = 8;
        config.buffer_size = 64;
        broker.create_topic(config).expect("created");
        broker
    }

    #[tokio::test]
    async fn local_fanout_reaches_every_subscription() {
        let broker = broker_with(Routing::Fanout);
        let mut a = broker.subscribe("t").expect("a");
        let mut b = broker.subscribe("t").expect("b");
        // 64 fit in each subscriber's buffer (buffer_size), so no receiver needs to run meanwhile.
        for i in 0..64u32 {
            broker
                .publish("t", &i.to_le_bytes())
                .await
                .expect("published");
        }
        for sub in [&mut a, &mut b] {
            for i in 0..64u32 {
                assert_eq!(sub.recv().await.expect("message")[..], i.to_le_bytes());
            }
        }
    }

    #[tokio::test]
    async fn a_local_subscription_that_lost_messages_is_told_and_goes_on() {
        let broker = LocalBroker::new(TopicDefaults::default());
        let mut config = TopicDefaults::default().topic("lossy");
        config.buffer_size = 4;
        config.backpressure = mycelium_config::Backpressure::DropNewest;
        broker.create_topic(config).expect("created");
        let mut sub = broker.subscribe("lossy").expect("sub");
        for i in 0..10u32 {
            broker
                .publish("lossy", &i.to_le_bytes())
                .await
                .expect("published");
        }
        for i in 0..4u32 {
            assert_eq!(sub.recv().await.expect("kept")[..], i.to_le_bytes());
        }
        assert_eq!(sub.try_recv(), None);
        assert_eq!(sub.missed(), 6, "told at once, exactly");
        broker.publish("lossy", b"after").await.expect("published");
        assert_eq!(&sub.recv().await.expect("still subscribed")[..], b"after");
    }

    #[tokio::test]
    async fn local_queue_splits_messages_and_returns_credit() {
        let broker = broker_with(Routing::Queue);
        let mut a = broker.subscribe("t").expect("a");
        let mut b = broker.subscribe("t").expect("b");
        let publisher = broker.publisher("t").expect("publisher");
        let producer = tokio::spawn(async move {
            for i in 0..1000u32 {
                publisher
                    .publish(&i.to_le_bytes())
                    .await
                    .expect("published");
            }
        });
        let mut seen = Vec::new();
        while seen.len() < 1000 {
            tokio::select! {
                Some(m) = a.recv() => seen.push(u32::from_le_bytes(m[..].try_into().expect("4 bytes"))),
                Some(m) = b.recv() => seen.push(u32::from_le_bytes(m[..].try_into().expect("4 bytes"))),
            }
        }
        producer.await.expect("producer finished");
        seen.sort_unstable();
        assert_eq!(seen, (0..1000).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn oversized_and_unknown_publishes_are_refused() {
        let broker = broker_with(Routing::Fanout);
        let big = vec![0u8; 65537];
        assert!(matches!(
            broker.publish("t", &big).await,
            Err(PublishError::MessageTooLarge { .. })
        ));
        assert!(matches!(
            broker.publish("other", b"x").await,
            Err(PublishError::Lookup(_))
        ));
    }

    #[tokio::test]
    async fn a_dropped_subscription_leaves_the_topic() {
        let broker = broker_with(Routing::Fanout);
        let sub = broker.subscribe("t").expect("sub");
        assert_eq!(sub.topic().subscriber_count(), 1);
        let topic = broker.registry().get_by_name("t").expect("t");
        broker.unsubscribe(sub);
        assert_eq!(topic.subscriber_count(), 0);
    }
}
