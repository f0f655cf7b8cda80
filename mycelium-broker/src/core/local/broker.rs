//! The in-process broker: the routing core behind the [`Broker`] trait, without sockets.

use std::sync::Arc;

use mycelium_config::{TopicConfig, TopicDefaults};
use mycelium_transport::Broker;

use crate::core::local::sink::LocalSink;
use crate::core::local::subscription::LocalSubscription;
use crate::core::registry::TopicRegistry;
use crate::core::topic::{Progress, PublishCursor, PublisherHold, TopicId};
use crate::error::{CreateTopicError, LookupError, PublishError, SubscribeError};

/// The in-process broker; cheap to clone. See the [module docs](crate::core::local).
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

    /// Declares a topic and returns its id.
    pub fn create_topic(&self, config: TopicConfig) -> Result<TopicId, CreateTopicError> {
        self.registry.create_topic(config).map(|t| t.id())
    }

    /// A publisher bound to one topic: resolves the name once, then publishes without lookups.
    pub fn publisher(&self, topic: &str) -> Result<LocalPublisher, PublishError> {
        Ok(LocalPublisher {
            hold: PublisherHold::new(self.registry.resolve(topic)?),
        })
    }

    /// Starts receiving `topic`'s messages, without waiting (what [`Broker::subscribe`] does
    /// for this broker): every message published after this returns.
    pub fn subscribe(&self, topic: &str) -> Result<LocalSubscription, SubscribeError> {
        let topic = self.registry.resolve(topic)?;
        let sink = Arc::new(LocalSink::new(topic.id()));
        let id = self.registry.next_subscriber_id();
        // Removed by a reload between the lookup and now.
        let credit = topic
            .subscribe(id, sink.clone(), usize::MAX, 0)
            .ok_or_else(|| LookupError::UnknownTopic {
                name: topic.name().to_owned(),
            })?;
        Ok(LocalSubscription::new(topic, id, sink, credit))
    }
}

/// Publishes on one topic; see [`LocalBroker::publisher`].
#[derive(Debug, Clone)]
pub struct LocalPublisher {
    /// The topic, claimed as published to while this publisher (or a clone) lives, so an
    /// auto-created topic is not reclaimed under it.
    hold: PublisherHold,
}

impl LocalPublisher {
    /// Routes one message.
    pub async fn publish(&self, payload: &[u8]) -> Result<(), PublishError> {
        self.publish_batch(&[payload]).await
    }

    /// Routes several messages in order, handing each subscriber the batch at once.
    /// If any payload is too large, nothing is routed.
    pub async fn publish_batch(&self, payloads: &[&[u8]]) -> Result<(), PublishError> {
        let topic = self.hold.topic();
        let max = topic.config().max_message_size;
        if let Some(big) = payloads.iter().find(|p| p.len() > max) {
            return Err(PublishError::MessageTooLarge {
                topic: topic.name().to_owned(),
                size: big.len(),
                max,
            });
        }
        let mut cursor = PublishCursor::default();
        while let Progress::Blocked(blocker) = topic.publish(payloads, &mut cursor) {
            blocker.wait().await;
        }
        Ok(())
    }
}

impl Broker for LocalBroker {
    type Subscription = LocalSubscription;
    type PublishError = PublishError;
    type SubscribeError = SubscribeError;
    type UnsubscribeError = std::convert::Infallible;

    async fn publish(&self, topic: &str, payload: &[u8]) -> Result<(), PublishError> {
        self.publisher(topic)?.publish(payload).await
    }

    async fn subscribe(&self, topic: &str) -> Result<LocalSubscription, SubscribeError> {
        LocalBroker::subscribe(self, topic)
    }

    async fn unsubscribe(
        &self,
        subscription: LocalSubscription,
    ) -> Result<(), std::convert::Infallible> {
        drop(subscription);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use futures_core::Stream;
    use mycelium_config::Routing;
    use mycelium_transport::{RecvError, SubscriptionEnd, TryRecvError};

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
        let mut a = LocalBroker::subscribe(&broker, "t").expect("a");
        let mut b = LocalBroker::subscribe(&broker, "t").expect("b");
        // 64 fit in each subscriber's buffer (buffer_size), so no receiver needs to run meanwhile.
        for i in 0..64u32 {
            broker
                .publish("t", &i.to_le_bytes())
                .await
                .expect("published");
        }
        for sub in [&mut a, &mut b] {
            for i in 0..64u32 {
                let message = sub.recv().await.expect("message");
                assert_eq!(message[..], i.to_le_bytes());
                assert_eq!(message.topic(), "t");
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
        let mut sub = LocalBroker::subscribe(&broker, "lossy").expect("sub");
        for i in 0..10u32 {
            broker
                .publish("lossy", &i.to_le_bytes())
                .await
                .expect("published");
        }
        for i in 0..4u32 {
            assert_eq!(sub.recv().await.expect("kept")[..], i.to_le_bytes());
        }
        assert!(
            matches!(sub.try_recv(), Err(TryRecvError::Lagged(6))),
            "told at once, exactly"
        );
        assert!(matches!(sub.try_recv(), Err(TryRecvError::Empty)));
        assert_eq!(sub.missed(), 6);
        broker.publish("lossy", b"after").await.expect("published");
        assert_eq!(&sub.recv().await.expect("still subscribed")[..], b"after");
    }

    #[tokio::test]
    async fn drop_oldest_keeps_the_newest_and_tells_the_gap_before_them() {
        let broker = LocalBroker::new(TopicDefaults::default());
        let mut config = TopicDefaults::default().topic("newest");
        config.buffer_size = 4;
        config.backpressure = mycelium_config::Backpressure::DropOldest;
        broker.create_topic(config).expect("created");
        let mut sub = LocalBroker::subscribe(&broker, "newest").expect("sub");
        for i in 0..10u32 {
            broker
                .publish("newest", &i.to_le_bytes())
                .await
                .expect("published");
        }
        assert!(matches!(sub.recv().await, Err(RecvError::Lagged(6))));
        for i in 6..10u32 {
            assert_eq!(sub.recv().await.expect("kept")[..], i.to_le_bytes());
        }
        assert!(matches!(sub.try_recv(), Err(TryRecvError::Empty)));
    }

    #[tokio::test]
    async fn local_queue_splits_messages_and_returns_credit() {
        let broker = broker_with(Routing::Queue);
        let mut a = LocalBroker::subscribe(&broker, "t").expect("a");
        let mut b = LocalBroker::subscribe(&broker, "t").expect("b");
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
                Ok(m) = a.recv() => seen.push(u32::from_le_bytes(m[..].try_into().expect("4 bytes"))),
                Ok(m) = b.recv() => seen.push(u32::from_le_bytes(m[..].try_into().expect("4 bytes"))),
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
        let sub = Broker::subscribe(&broker, "t").await.expect("sub");
        let topic = broker.registry().get_by_name("t").expect("t");
        assert_eq!(topic.subscriber_count(), 1);
        Broker::unsubscribe(&broker, sub)
            .await
            .expect("unsubscribed");
        assert_eq!(topic.subscriber_count(), 0);
    }

    /// Application code written once against the trait, as it would run against a client.
    async fn publish_and_receive<B: Broker>(
        broker: &B,
    ) -> Result<mycelium_transport::Message, Box<dyn std::error::Error + Send + Sync>> {
        use mycelium_transport::Receive;
        let mut sub = broker.subscribe("t").await?;
        broker.publish("t", b"generic").await?;
        let message = sub.recv().await?;
        broker.unsubscribe(sub).await?;
        Ok(message)
    }

    #[tokio::test]
    async fn code_written_against_the_broker_trait_runs_in_process() {
        let broker = broker_with(Routing::Fanout);
        let message = publish_and_receive(&broker).await.expect("round trip");
        assert_eq!((message.topic(), &message[..]), ("t", &b"generic"[..]));
    }

    #[tokio::test]
    async fn a_removed_topic_ends_its_subscriptions_after_what_was_routed() {
        let broker = broker_with(Routing::Fanout);
        let mut sub = LocalBroker::subscribe(&broker, "t").expect("sub");
        broker.publish("t", b"last").await.expect("published");
        broker.registry().get_by_name("t").expect("t").remove();
        assert_eq!(&sub.recv().await.expect("routed before")[..], b"last");
        for _ in 0..2 {
            assert!(matches!(
                sub.recv().await,
                Err(RecvError::Ended(SubscriptionEnd::TopicRemoved { .. }))
            ));
        }
    }

    #[tokio::test]
    async fn the_stream_yields_lag_notices_the_end_once_then_nothing() {
        let broker = LocalBroker::new(TopicDefaults::default());
        let mut config = TopicDefaults::default().topic("s");
        config.buffer_size = 1;
        config.backpressure = mycelium_config::Backpressure::DropNewest;
        broker.create_topic(config).expect("created");
        let mut sub = LocalBroker::subscribe(&broker, "s").expect("sub");
        broker.publish("s", b"a").await.expect("published");
        broker.publish("s", b"b").await.expect("published");
        broker.registry().get_by_name("s").expect("s").remove();
        let mut items = Vec::new();
        let mut sub = std::pin::Pin::new(&mut sub);
        while let Some(item) = std::future::poll_fn(|cx| sub.as_mut().poll_next(cx)).await {
            items.push(item);
        }
        assert_eq!(items.len(), 3);
        assert_eq!(&items[0].as_ref().expect("a")[..], b"a");
        assert!(matches!(items[1], Err(RecvError::Lagged(1))));
        assert!(matches!(
            items[2],
            Err(RecvError::Ended(SubscriptionEnd::TopicRemoved { .. }))
        ));
    }
}
