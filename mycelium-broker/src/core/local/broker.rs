//! The in-process broker: the routing core behind the [`Broker`] trait, without sockets.

use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use mycelium_config::{Routing, TopicConfig, TopicDefaults};
use mycelium_transport::envelope::{Envelope, Headers, Stamp, Stamper};
use mycelium_transport::Broker;

use crate::core::acl::PeerIdentity;
use crate::core::batch::{enveloped_items, Batch};
use crate::core::local::sink::LocalSink;
use crate::core::local::subscription::LocalSubscription;
use crate::core::patterns::PatternSubscription;
use crate::core::registry::TopicRegistry;
use crate::core::subject::{Pattern, PatternParseError};
use crate::core::topic::{Progress, PublishCursor, PublisherHold, Topic, TopicId};
use crate::error::{CreateTopicError, LookupError, PublishError, SubscribeError};

/// Origins of in-process handles have this bit set, so they never meet a connection's id
/// (which counts up from 1).
const LOCAL_ORIGIN: u64 = 1 << 63;

/// The in-process broker; cheap to clone. See the [module docs](crate::core::local).
///
/// Each handle made by [`LocalBroker::new`] or [`LocalBroker::with_registry`] is one
/// publisher as far as no echo goes ([`LocalBroker::subscribe_no_echo`]); its clones are the
/// same one.
#[derive(Debug, Clone)]
pub struct LocalBroker {
    registry: Arc<TopicRegistry>,
    /// This handle's origin: what its publishes are marked with, for no echo.
    origin: u64,
    /// Stamps the messages of this handle's publishers on topics that stamp: one seed, one
    /// count for all of them.
    stamper: Arc<Mutex<Stamper>>,
}

impl LocalBroker {
    /// A broker with no topics; unknown topics are created from `defaults` if they allow it.
    pub fn new(defaults: TopicDefaults) -> LocalBroker {
        LocalBroker::with_registry(Arc::new(TopicRegistry::new(defaults)))
    }

    /// A broker over an existing registry (shared with a socket server, for instance): a
    /// handle of its own, with its own origin.
    pub fn with_registry(registry: Arc<TopicRegistry>) -> LocalBroker {
        let origin = LOCAL_ORIGIN | registry.next_subscriber_id();
        LocalBroker {
            registry,
            origin,
            stamper: Arc::new(Mutex::new(Stamper::new())),
        }
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
            origin: self.origin,
            stamper: self.stamper.clone(),
        })
    }

    /// Starts receiving `topic`'s messages, without waiting (what [`Broker::subscribe`] does
    /// for this broker): every message published after this returns.
    pub fn subscribe(&self, topic: &str) -> Result<LocalSubscription, SubscribeError> {
        self.subscribe_skipping(topic, 0)
    }

    /// As [`LocalBroker::subscribe`], without the messages this handle (or a clone of it, or
    /// a publisher it made) publishes: no echo. Fanout topics only; a queue topic refuses it
    /// ([`SubscribeError::NoEchoOnQueue`]).
    pub fn subscribe_no_echo(&self, topic: &str) -> Result<LocalSubscription, SubscribeError> {
        self.subscribe_skipping(topic, self.origin)
    }

    fn subscribe_skipping(
        &self,
        topic: &str,
        skip_origin: u64,
    ) -> Result<LocalSubscription, SubscribeError> {
        if topic.contains(['*', '>']) {
            return self.subscribe_pattern(topic, skip_origin);
        }
        let topic = self.registry.resolve(topic)?;
        if skip_origin != 0 && topic.routing() == Routing::Queue {
            return Err(SubscribeError::NoEchoOnQueue {
                topic: topic.name().to_owned(),
            });
        }
        let sink = Arc::new(LocalSink::new(topic.id()));
        let id = self.registry.next_subscriber_id();
        // Removed by a reload between the lookup and now.
        let credit = topic
            .subscribe_skipping(id, sink.clone(), usize::MAX, 0, skip_origin)
            .ok_or_else(|| LookupError::UnknownTopic {
                name: topic.name().to_owned(),
            })?;
        Ok(LocalSubscription::new(topic, id, sink, credit))
    }
}

impl LocalBroker {
    /// A subscription of a pattern (`orders.*`, `orders.>`): every fanout topic that matches,
    /// now or later, each message named by the topic it was published on.
    fn subscribe_pattern(
        &self,
        text: &str,
        skip_origin: u64,
    ) -> Result<LocalSubscription, SubscribeError> {
        let pattern = Pattern::parse(text).map_err(|error| LookupError::InvalidName {
            name: text.to_owned(),
            problem: pattern_problem(&error),
        })?;
        // A key of its own in the sink, beyond every topic id (they stay below 2^31).
        let key = mycelium_transport::frame::PATTERN_ID_BIT;
        let sink = Arc::new(LocalSink::new(key));
        let subscription = PatternSubscription::in_process(pattern, key, sink.clone(), skip_origin);
        self.registry.subscribe_pattern(&subscription);
        Ok(LocalSubscription::of_pattern(
            self.registry.clone(),
            subscription,
            sink,
        ))
    }
}

impl LocalBroker {
    /// A subscription of a pattern on behalf of `peer`: as a pattern of
    /// [`LocalBroker::subscribe`], reaching only the topics whose `subscribe` access lists
    /// let `peer` read them (as a socket peer's pattern does). For a front end that speaks
    /// for a client of its own, such as the HTTP gateway.
    pub fn subscribe_pattern_for(
        &self,
        text: &str,
        peer: Arc<PeerIdentity>,
    ) -> Result<LocalSubscription, SubscribeError> {
        let pattern = Pattern::parse(text).map_err(|error| LookupError::InvalidName {
            name: text.to_owned(),
            problem: pattern_problem(&error),
        })?;
        let key = mycelium_transport::frame::PATTERN_ID_BIT;
        let sink = Arc::new(LocalSink::new(key));
        let subscription =
            PatternSubscription::new(pattern, key, peer, sink.clone(), usize::MAX, 0, None);
        self.registry.subscribe_pattern(&subscription);
        Ok(LocalSubscription::of_pattern(
            self.registry.clone(),
            subscription,
            sink,
        ))
    }
}

/// Why a pattern is refused, in the words `LookupError::InvalidName` carries.
fn pattern_problem(error: &PatternParseError) -> &'static str {
    match error {
        PatternParseError::Empty => "a pattern must not be empty",
        PatternParseError::TooLong { .. } => "a pattern must be at most 255 bytes",
        PatternParseError::InvalidCharacter { .. } => {
            "a pattern may hold only A-Z a-z 0-9 . _ - * >"
        }
        PatternParseError::EmptyToken { .. } => "a pattern's tokens must not be empty",
        PatternParseError::WildcardInToken { .. } => "* and > must stand alone between dots",
        PatternParseError::GtNotLast => "> may only be the last token",
    }
}

/// Publishes on one topic; see [`LocalBroker::publisher`].
///
/// On a topic with `stamp = true` every message is stamped (id and publish time) here, as a
/// socket publisher would: it reaches subscribers enveloped, on every path.
#[derive(Debug, Clone)]
pub struct LocalPublisher {
    /// The topic, claimed as published to while this publisher (or a clone) lives, so an
    /// auto-created topic is not reclaimed under it.
    hold: PublisherHold,
    /// The handle's origin, for no echo.
    origin: u64,
    /// The handle's stamper.
    stamper: Arc<Mutex<Stamper>>,
}

impl LocalPublisher {
    /// Routes one message.
    pub async fn publish(&self, payload: &[u8]) -> Result<(), PublishError> {
        self.publish_batch(&[payload]).await
    }

    /// Routes one message with `headers` (and, on a topic that stamps, an id and a publish
    /// time). Refused whole when the payload or the headers exceed the topic's limits.
    pub async fn publish_with(
        &self,
        headers: &Headers,
        payload: &[u8],
    ) -> Result<(), PublishError> {
        self.publish_stamped(headers, payload).await.map(drop)
    }

    /// As [`LocalPublisher::publish_with`], returning the stamp the message got (`None`
    /// unless the topic stamps): a front end that answers its client with the message's id.
    pub async fn publish_stamped(
        &self,
        headers: &Headers,
        payload: &[u8],
    ) -> Result<Option<Stamp>, PublishError> {
        let topic = self.hold.topic();
        let config = topic.config();
        if headers.len() > usize::from(config.max_headers)
            || headers.byte_len() > config.max_header_bytes as usize
        {
            return Err(PublishError::HeadersTooLarge {
                topic: topic.name().to_owned(),
                count: headers.len(),
                bytes: headers.byte_len(),
                max_headers: config.max_headers,
                max_header_bytes: config.max_header_bytes,
            });
        }
        self.publish_enveloped(&config, Some(headers), &[payload])
            .await
    }

    /// Routes several messages in order, handing each subscriber the batch at once.
    /// If any payload is too large, nothing is routed.
    pub async fn publish_batch(&self, payloads: &[&[u8]]) -> Result<(), PublishError> {
        let topic = self.hold.topic();
        let config = topic.config();
        if config.stamp {
            return self
                .publish_enveloped(&config, None, payloads)
                .await
                .map(drop);
        }
        check_sizes(topic.name(), config.max_message_size, payloads)?;
        route(topic, payloads, self.origin).await
    }

    /// Routes `payloads` each behind an envelope of `headers` and, if the topic stamps, a
    /// stamp of its own; returns the last one's stamp.
    async fn publish_enveloped(
        &self,
        config: &TopicConfig,
        headers: Option<&Headers>,
        payloads: &[&[u8]],
    ) -> Result<Option<Stamp>, PublishError> {
        let topic = self.hold.topic();
        check_sizes(topic.name(), config.max_message_size, payloads)?;
        let mut bytes = BytesMut::new();
        let mut ends = Vec::with_capacity(payloads.len());
        let mut last = None;
        {
            let mut stamper = self.stamper.lock().unwrap_or_else(|p| p.into_inner());
            for payload in payloads {
                last = config.stamp.then(|| stamper.stamp());
                let envelope = Envelope {
                    stamp: last,
                    headers,
                    ..Envelope::default()
                };
                envelope.encode(&mut bytes);
                bytes.extend_from_slice(payload);
                ends.push(bytes.len());
            }
        }
        let items = enveloped_items(&bytes, &ends);
        route(topic, items.as_slice(), self.origin).await?;
        Ok(last)
    }
}

/// Routes `batch` on `topic` as published by `origin`, waiting while it is held back; a
/// durable topic whose log cannot store it refuses it whole.
async fn route<B: Batch + ?Sized>(
    topic: &Arc<Topic>,
    batch: &B,
    origin: u64,
) -> Result<(), PublishError> {
    let mut cursor = PublishCursor::from_origin(origin);
    loop {
        match topic.publish(batch, &mut cursor) {
            Progress::Done => return Ok(()),
            Progress::Blocked(blocker) => blocker.wait().await,
            Progress::Refused(refusal) => {
                return Err(PublishError::Storage {
                    topic: topic.name().to_owned(),
                    message: refusal.message,
                })
            }
        }
    }
}

/// Refuses a batch with a payload over `max` bytes.
fn check_sizes(topic: &str, max: usize, payloads: &[&[u8]]) -> Result<(), PublishError> {
    match payloads.iter().find(|p| p.len() > max) {
        Some(big) => Err(PublishError::MessageTooLarge {
            topic: topic.to_owned(),
            size: big.len(),
            max,
        }),
        None => Ok(()),
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
    use bytes::Bytes;
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

    #[tokio::test]
    async fn headers_and_stamps_reach_in_process_and_socket_subscribers() {
        use mycelium_transport::frame::kind;
        use mycelium_transport::outbox::{Drained, Outbox};
        let broker = LocalBroker::new(TopicDefaults::default());
        let mut config = TopicDefaults::default().topic("stamped");
        config.stamp = true;
        broker.create_topic(config).expect("created");
        let mut sub = LocalBroker::subscribe(&broker, "stamped").expect("sub");
        let topic = broker.registry().get_by_name("stamped").expect("topic");
        let socket = Arc::new(Outbox::new());
        topic.subscribe(999, socket.clone(), 1000, 0);
        let publisher = broker.publisher("stamped").expect("publisher");
        let mut headers = Headers::new();
        headers.insert("trace", "abc").expect("a valid header");
        publisher
            .publish_with(&headers, b"one")
            .await
            .expect("published");
        publisher.publish(b"two").await.expect("published");
        let one = sub.recv().await.expect("one");
        assert_eq!((&one[..], one.header("trace")), (&b"one"[..], Some("abc")));
        let two = sub.recv().await.expect("two");
        assert_eq!(&two[..], b"two");
        let three = publisher
            .publish_stamped(&Headers::new(), b"three")
            .await
            .expect("published")
            .expect("a stamp");
        assert_eq!(Some(three), sub.recv().await.expect("three").stamp());
        let (a, b) = (one.id().expect("stamped"), two.id().expect("stamped"));
        assert!(a < b, "ids sort by publish time");
        let mut drained = Drained::default();
        assert!(socket.take(&mut drained));
        let buf = drained.flatten();
        let (view, _) = mycelium_transport::peek_frame(&buf, usize::MAX)
            .expect("valid")
            .expect("whole");
        assert_eq!(view.kind, kind::DELIVER_ENVELOPE);
        let (_, body) = view.message().expect("a message");
        let message =
            mycelium_transport::Message::from_enveloped("stamped", Bytes::copy_from_slice(body))
                .expect("a valid envelope");
        assert_eq!(message, one, "the same bytes on both paths");
    }

    #[tokio::test]
    async fn headers_over_the_topics_limits_are_refused() {
        let broker = LocalBroker::new(TopicDefaults::default());
        let mut config = TopicDefaults::default().topic("few");
        config.max_headers = 1;
        config.max_header_bytes = 8;
        broker.create_topic(config).expect("created");
        let publisher = broker.publisher("few").expect("publisher");
        let mut two = Headers::new();
        two.insert("a", "1").expect("valid");
        two.insert("b", "2").expect("valid");
        let mut long = Headers::new();
        long.insert("key", "a long value").expect("valid");
        for headers in [two, long] {
            assert!(matches!(
                publisher.publish_with(&headers, b"x").await,
                Err(PublishError::HeadersTooLarge { .. })
            ));
        }
    }

    #[tokio::test]
    async fn a_no_echo_subscription_skips_its_own_handles_messages() {
        let broker = broker_with(Routing::Fanout);
        let other = LocalBroker::with_registry(broker.registry().clone());
        let mut sub = broker.subscribe_no_echo("t").expect("sub");
        broker.publish("t", b"mine").await.expect("published");
        other.publish("t", b"theirs").await.expect("published");
        assert_eq!(&sub.recv().await.expect("theirs")[..], b"theirs");
        assert!(matches!(sub.try_recv(), Err(TryRecvError::Empty)));
        let queue = broker_with(Routing::Queue);
        assert!(matches!(
            queue.subscribe_no_echo("t"),
            Err(SubscribeError::NoEchoOnQueue { .. })
        ));
    }

    #[tokio::test]
    async fn a_pattern_subscription_takes_every_matching_topic_with_its_name() {
        let broker = LocalBroker::new(TopicDefaults {
            auto_create: true,
            ..TopicDefaults::default()
        });
        let before = broker.publisher("orders.eu").unwrap();
        let mut all = LocalBroker::subscribe(&broker, "orders.*").unwrap();
        assert_eq!(all.topic(), "orders.*");
        let mut others = broker.subscribe_no_echo("orders.>").unwrap();
        let after = broker.publisher("orders.us").unwrap();
        let other_broker = LocalBroker::with_registry(broker.registry().clone());
        let foreign = other_broker.publisher("orders.us").unwrap();
        let deep = broker.publisher("orders.us.east").unwrap();
        before.publish(b"1").await.unwrap();
        after.publish(b"2").await.unwrap();
        deep.publish(b"3").await.unwrap();
        foreign.publish(b"4").await.unwrap();
        let got: Vec<(String, Vec<u8>)> = std::iter::from_fn(|| all.try_recv().ok())
            .map(|m| (m.topic().to_owned(), m.payload().to_vec()))
            .collect();
        assert_eq!(
            got,
            [
                ("orders.eu".to_owned(), b"1".to_vec()),
                ("orders.us".to_owned(), b"2".to_vec()),
                ("orders.us".to_owned(), b"4".to_vec()),
            ]
        );
        // No echo: only what another handle published.
        let got: Vec<Vec<u8>> = std::iter::from_fn(|| others.try_recv().ok())
            .map(|m| m.payload().to_vec())
            .collect();
        assert_eq!(got, [b"4".to_vec()]);
        assert!(
            LocalBroker::subscribe(&broker, "orders.a*").is_err(),
            "a bad pattern is refused"
        );
        drop(all);
        drop(others);
        assert_eq!(broker.registry().pattern_count(), 0);
    }
}
