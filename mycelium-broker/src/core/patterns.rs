//! Pattern subscriptions: a subscriber of `orders.*` or `orders.>` is attached to every fanout
//! topic whose name matches, now and whenever such a topic is created later.
//!
//! - Matching happens when a topic or a pattern appears, never per publish: a pattern
//!   subscription is an ordinary subscriber of each topic it matched (through a
//!   a `PatternSink`), so publishing costs the same with 10 000 patterns in place as with none.
//!   A new topic is looked up once in the [`SubjectTrie`] of every pattern.
//! - Every (pattern, topic) pair is seen by one side or both: a new pattern goes into the trie
//!   before it scans the existing topics, a new topic into the registry before it looks the
//!   trie up. Attaching is idempotent, so seeing a pair twice attaches once.
//! - A pattern reaches fanout topics only (a pattern must not silently take a share of a work
//!   queue's messages), and only those its subscriber may read ([`Action::Subscribe`]) when it
//!   attaches: a topic the access list hides never reaches it. Reply inboxes (`_INBOX.…`)
//!   are never reached by a pattern: their replies are for one requester alone.
//! - Each message reaches a pattern subscriber enveloped with the topic it was published on
//!   ([`write_with_topic`]), under the subscription's own id (bit 31 set on the wire), so a
//!   subscriber of several topics through one pattern knows where each message came from.
//! - A topic that goes away (a reload removed it, or it was reclaimed idle) just leaves the
//!   pattern's set; the pattern goes on and attaches again if the name comes back. Pattern
//!   attachments do not keep a dynamic topic alive.
//! - A *watching* subscription ([`PatternSubscription::watching`]) subscribes to nothing
//!   itself: under the same rules, it tells its owner of each topic it matches ([`OnMatch`]),
//!   once per topic, and the owner reads the topic its own way (the shared-memory sessions
//!   attach the topic's rings).

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex, Weak};

use bytes::BytesMut;
use mycelium_config::Routing;
use mycelium_transport::envelope::{write_with_topic, EnvelopeView};

use crate::core::acl::{Action, PeerIdentity};
use crate::core::batch::{BatchRef, Item};
use crate::core::delivery::{Delivered, Delivery, Ending, RoomWait, SubscriberTransport};
use crate::core::ids::{SubscriberId, TopicId};
use crate::core::registry::is_inbox;
use crate::core::subject::{Pattern, SubjectTrie};
use crate::core::topic::Topic;

/// Called each time a pattern subscription is attached to a topic (the server uses it to
/// have shared-memory publishers' rings read for the new subscriber).
pub type OnAttach = Arc<dyn Fn(&Arc<Topic>) + Send + Sync>;

/// Told, outside every lock, each time a watching pattern subscription matches a topic.
pub type OnMatch = Arc<dyn Fn(&Arc<Topic>) + Send + Sync>;

/// One pattern subscription: who asked, where its messages go, and the topics it holds.
pub struct PatternSubscription {
    pattern: Pattern,
    /// The subscription's id toward its peer: the key its messages are queued and counted
    /// under in `sink`, and the `topic_id` of its deliveries.
    key: TopicId,
    /// Whose access the topics' lists are checked against; `None` for an in-process
    /// subscriber, which (as for its plain subscriptions) is not checked.
    peer: Option<Arc<PeerIdentity>>,
    /// Where its messages go; `None` for a watching subscription, which reads nothing itself.
    sink: Option<Arc<dyn Delivery>>,
    /// A watching subscription's owner, told of each topic matched.
    on_match: Option<OnMatch>,
    channel_capacity: usize,
    /// Messages published with this origin are left out (no echo); 0: none are.
    skip_origin: u64,
    on_attach: Option<OnAttach>,
    state: Mutex<Attachments>,
}

#[derive(Default)]
struct Attachments {
    /// Topic id → (topic, the id this subscription has among its subscribers; `None` for a
    /// watching subscription, which is none of them).
    topics: HashMap<TopicId, (Arc<Topic>, Option<SubscriberId>)>,
    ended: bool,
}

impl std::fmt::Debug for PatternSubscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PatternSubscription")
            .field("pattern", &self.pattern.as_str())
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl PatternSubscription {
    /// A subscription of `pattern` for `peer`, whose messages go to `sink` under `key`,
    /// leaving out those published with origin `skip_origin` (0: none; see
    /// [`PublishCursor::from_origin`](crate::core::topic::PublishCursor::from_origin)).
    pub fn new(
        pattern: Pattern,
        key: TopicId,
        peer: Arc<PeerIdentity>,
        sink: Arc<dyn Delivery>,
        channel_capacity: usize,
        skip_origin: u64,
        on_attach: Option<OnAttach>,
    ) -> Arc<PatternSubscription> {
        Arc::new(PatternSubscription {
            pattern,
            key,
            peer: Some(peer),
            sink: Some(sink),
            on_match: None,
            channel_capacity,
            skip_origin,
            on_attach,
            state: Mutex::new(Attachments::default()),
        })
    }

    /// A subscription of `pattern` for an in-process subscriber (`LocalBroker`): as
    /// [`new`](Self::new), with no access list checked, as for its plain subscriptions.
    pub fn in_process(
        pattern: Pattern,
        key: TopicId,
        sink: Arc<dyn Delivery>,
        skip_origin: u64,
    ) -> Arc<PatternSubscription> {
        Arc::new(PatternSubscription {
            pattern,
            key,
            peer: None,
            sink: Some(sink),
            on_match: None,
            channel_capacity: usize::MAX,
            skip_origin,
            on_attach: None,
            state: Mutex::new(Attachments::default()),
        })
    }

    /// A watching subscription of `pattern` for `peer`: it subscribes to nothing, and tells
    /// `on_match` of every topic it matches under the rules of [`new`](Self::new) (a live
    /// fanout topic the peer may read, no reply inbox), once per topic (a topic removed and
    /// created again under its name is a new topic).
    pub fn watching(
        pattern: Pattern,
        key: TopicId,
        peer: Arc<PeerIdentity>,
        on_match: OnMatch,
    ) -> Arc<PatternSubscription> {
        Arc::new(PatternSubscription {
            pattern,
            key,
            peer: Some(peer),
            sink: None,
            on_match: Some(on_match),
            channel_capacity: 0,
            skip_origin: 0,
            on_attach: None,
            state: Mutex::new(Attachments::default()),
        })
    }

    /// The pattern.
    pub fn pattern(&self) -> &Pattern {
        &self.pattern
    }

    /// The topics it is attached to now, by name.
    pub fn topics(&self) -> Vec<String> {
        let state = self.lock();
        let mut names: Vec<String> = state
            .topics
            .values()
            .map(|(t, _)| t.name().to_owned())
            .collect();
        names.sort();
        names
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Attachments> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Attaches the subscription to `topic` if the pattern matches it, it is a live fanout
    /// topic the peer may read, and it is not attached already. `next_id` gives the
    /// subscriber id when it does.
    pub(crate) fn attach(
        self: &Arc<Self>,
        topic: &Arc<Topic>,
        next_id: impl FnOnce() -> SubscriberId,
    ) {
        if topic.routing() != Routing::Fanout
            || topic.is_removed()
            || is_inbox(topic.name())
            || !self.pattern.matches(topic.name())
            || self
                .peer
                .as_ref()
                .is_some_and(|peer| topic.check_access(Action::Subscribe, peer).is_err())
        {
            return;
        }
        let Some(sink) = &self.sink else {
            {
                let mut state = self.lock();
                if state.ended || state.topics.contains_key(&topic.id()) {
                    return;
                }
                // Nothing tells a watcher that a topic went away: forget the removed ones here.
                state.topics.retain(|_, (t, _)| !t.is_removed());
                state.topics.insert(topic.id(), (topic.clone(), None));
            }
            if let Some(on_match) = &self.on_match {
                on_match(topic);
            }
            return;
        };
        {
            let mut state = self.lock();
            if state.ended || state.topics.contains_key(&topic.id()) {
                return;
            }
            let id = next_id();
            let sink = Arc::new(PatternSink {
                subscription: Arc::downgrade(self),
                inner: sink.clone(),
                key: self.key,
                topic: topic.id(),
                name: topic.name().into(),
            });
            // Under the lock: a detach racing with this attach finds it recorded.
            let subscribed =
                topic.subscribe_skipping(id, sink, self.channel_capacity, 0, self.skip_origin);
            if subscribed.is_none() {
                return;
            }
            state.topics.insert(topic.id(), (topic.clone(), Some(id)));
        }
        tracing::debug!(
            pattern = self.pattern.as_str(),
            topic = topic.name(),
            "pattern attached"
        );
        if let Some(on_attach) = &self.on_attach {
            on_attach(topic);
        }
    }

    /// Detaches it from every topic; no topic attaches it again.
    pub(crate) fn end(&self) -> Vec<Arc<Topic>> {
        let topics = {
            let mut state = self.lock();
            state.ended = true;
            std::mem::take(&mut state.topics)
        };
        topics
            .into_values()
            .map(|(topic, id)| {
                if let Some(id) = id {
                    topic.unsubscribe(id);
                }
                topic
            })
            .collect()
    }

    /// The topic ended this attachment (removed or reclaimed): forget it.
    fn forget(&self, topic: TopicId) {
        self.lock().topics.remove(&topic);
    }
}

/// Every pattern subscription of a broker, by pattern.
#[derive(Debug, Default)]
pub(crate) struct PatternIndex {
    trie: Mutex<SubjectTrie<Arc<PatternSubscription>>>,
}

impl PatternIndex {
    pub(crate) fn insert(&self, subscription: &Arc<PatternSubscription>) {
        self.trie
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(&subscription.pattern, subscription.clone());
    }

    pub(crate) fn remove(&self, subscription: &Arc<PatternSubscription>) -> bool {
        self.trie
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&subscription.pattern, |s| Arc::ptr_eq(s, subscription))
            .is_some()
    }

    /// The subscriptions whose pattern matches `name`.
    pub(crate) fn matching(&self, name: &str) -> Vec<Arc<PatternSubscription>> {
        let mut found = Vec::new();
        self.trie
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .for_each_match(name, |s| found.push(s.clone()));
        found
    }

    /// Pattern subscriptions in place.
    pub(crate) fn len(&self) -> usize {
        self.trie.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// A pattern subscription's way into one topic: each message enveloped with the topic's name,
/// handed to the subscriber's sink under the subscription's key.
struct PatternSink {
    subscription: Weak<PatternSubscription>,
    inner: Arc<dyn Delivery>,
    key: TopicId,
    topic: TopicId,
    name: Box<str>,
}

impl std::fmt::Debug for PatternSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PatternSink")
            .field("key", &self.key)
            .field("topic", &self.name)
            .finish_non_exhaustive()
    }
}

impl Delivery for PatternSink {
    fn deliver(
        &self,
        _topic: TopicId,
        batch: BatchRef<'_>,
        range: Range<usize>,
        limit: Option<usize>,
    ) -> Delivered {
        let count = range.len();
        let mut buf = BytesMut::new();
        let mut ends = Vec::with_capacity(count);
        for i in range {
            let item = batch.item(i);
            let view = if item.enveloped {
                // Checked when it entered the broker; one that does not parse now is skipped
                // rather than sent on half-understood.
                match EnvelopeView::parse(item.bytes) {
                    Ok(view) => Some(view),
                    Err(_) => {
                        ends.push(None);
                        continue;
                    }
                }
            } else {
                None
            };
            write_with_topic(view.as_ref(), item.bytes, &self.name, &mut buf);
            ends.push(Some(buf.len()));
        }
        let frozen = buf.freeze();
        let mut items = Vec::with_capacity(count);
        let mut start = 0;
        for end in ends.iter().flatten() {
            items.push(Item {
                bytes: &frozen[start..*end],
                enveloped: true,
            });
            start = *end;
        }
        let skipped = count - items.len();
        match self
            .inner
            .deliver(self.key, BatchRef::Items(&items), 0..items.len(), limit)
        {
            // Skipped messages count as dealt with, or the topic would offer them again.
            Delivered::Queued(n) if n == items.len() => Delivered::Queued(n + skipped),
            other => other,
        }
    }

    fn has_room(&self, _topic: TopicId, limit: usize) -> bool {
        self.inner.has_room(self.key, limit)
    }

    fn wait_for_room(&self, _topic: TopicId, limit: usize) -> RoomWait<'_> {
        self.inner.wait_for_room(self.key, limit)
    }

    fn evict_oldest(&self, _topic: TopicId, max: usize) -> usize {
        self.inner.evict_oldest(self.key, max)
    }

    fn report_lost(&self, _topic: TopicId, count: u64) {
        self.inner.report_lost(self.key, count);
    }

    fn end(&self, _topic: TopicId, why: Ending<'_>) {
        match why {
            // The topic is gone, not the pattern: its other topics go on.
            Ending::TopicRemoved { .. } => {
                if let Some(subscription) = self.subscription.upgrade() {
                    subscription.forget(self.topic);
                }
            }
            Ending::SlowConsumer { .. } | Ending::StorageFailed { .. } => {
                self.inner.end(self.key, why)
            }
        }
    }

    fn counts_as_use(&self) -> bool {
        false
    }

    fn transport(&self) -> SubscriberTransport {
        self.inner.transport()
    }

    fn queued(&self, _topic: TopicId) -> Option<usize> {
        self.inner.queued(self.key)
    }
}

#[cfg(test)]
mod tests {
    use mycelium_config::{Routing, TopicDefaults};
    use mycelium_transport::envelope::EnvelopeView;
    use mycelium_transport::outbox::Outbox;

    use super::*;
    use crate::core::registry::TopicRegistry;
    use crate::core::topic::test_support::{drain, publish_all};

    const KEY: TopicId = mycelium_transport::frame::PATTERN_ID_BIT | 1;

    fn registry() -> TopicRegistry {
        TopicRegistry::new(TopicDefaults {
            auto_create: true,
            ..TopicDefaults::default()
        })
    }

    fn subscription(pattern: &str, outbox: &Arc<Outbox>) -> Arc<PatternSubscription> {
        PatternSubscription::new(
            pattern.parse().unwrap(),
            KEY,
            Arc::new(PeerIdentity::new(1000, 1000, 1)),
            outbox.clone(),
            1000,
            0,
            None,
        )
    }

    /// (topic, payload) of every message in the outbox, as the pattern subscriber sees it.
    fn received(outbox: &Outbox) -> Vec<(String, Vec<u8>)> {
        drain(outbox)
            .iter()
            .map(|bytes| {
                let view = EnvelopeView::parse(bytes).expect("an envelope");
                (
                    view.topic.expect("the concrete topic").to_owned(),
                    view.payload.to_vec(),
                )
            })
            .collect()
    }

    #[test]
    fn a_pattern_reaches_existing_and_later_fanout_topics_that_match_and_no_other() {
        let registry = registry();
        let before = registry.resolve("orders.eu").unwrap();
        let queue = {
            let mut config = TopicDefaults::default().topic("orders.jobs");
            config.routing = Routing::Queue;
            registry.create_topic(config).unwrap()
        };
        let other = registry.resolve("billing.eu").unwrap();
        let outbox = Arc::new(Outbox::new());
        let star = subscription("orders.*", &outbox);
        registry.subscribe_pattern(&star);
        let after = registry.resolve("orders.us").unwrap();
        let deeper = registry.resolve("orders.us.east").unwrap();
        assert_eq!(star.topics(), ["orders.eu", "orders.us"]);

        for topic in [&before, &queue, &other, &after, &deeper] {
            publish_all(topic, &[topic.name().as_bytes().to_vec()]);
        }
        assert_eq!(
            received(&outbox),
            [
                ("orders.eu".to_owned(), b"orders.eu".to_vec()),
                ("orders.us".to_owned(), b"orders.us".to_vec()),
            ]
        );
        assert!(!queue.has_direct_subscriber() && queue.subscriber_count() == 0);

        let left = registry.unsubscribe_pattern(&star);
        assert_eq!(left.len(), 2);
        publish_all(&before, &[b"after".to_vec()]);
        assert!(received(&outbox).is_empty());
        assert_eq!(registry.pattern_count(), 0);
        // A pattern that ended attaches to nothing new.
        registry.resolve("orders.late").unwrap();
        assert!(star.topics().is_empty());
    }

    #[test]
    fn a_gt_pattern_takes_every_depth_and_keeps_the_order_of_each_topic() {
        let registry = registry();
        let outbox = Arc::new(Outbox::new());
        let all = subscription("metrics.>", &outbox);
        registry.subscribe_pattern(&all);
        let cpu = registry.resolve("metrics.cpu").unwrap();
        let disk = registry.resolve("metrics.disk.sda").unwrap();
        registry.resolve("metrics").unwrap();
        publish_all(&cpu, &[b"1".to_vec(), b"2".to_vec()]);
        publish_all(&disk, &[b"3".to_vec()]);
        let got = received(&outbox);
        assert_eq!(
            got,
            [
                ("metrics.cpu".to_owned(), b"1".to_vec()),
                ("metrics.cpu".to_owned(), b"2".to_vec()),
                ("metrics.disk.sda".to_owned(), b"3".to_vec()),
            ]
        );
    }

    #[test]
    fn a_topic_the_peer_may_not_read_is_never_attached() {
        let registry = registry();
        let mut hidden = TopicDefaults::default().topic("orders.secret");
        hidden.subscribe = Some(Vec::new());
        let hidden = registry.create_topic(hidden).unwrap();
        let outbox = Arc::new(Outbox::new());
        let star = subscription("orders.*", &outbox);
        registry.subscribe_pattern(&star);
        let open = registry.resolve("orders.open").unwrap();
        publish_all(&hidden, &[b"no".to_vec()]);
        publish_all(&open, &[b"yes".to_vec()]);
        assert_eq!(
            received(&outbox),
            [("orders.open".to_owned(), b"yes".to_vec())]
        );
    }

    #[test]
    fn a_removed_topic_leaves_the_pattern_which_attaches_again_when_it_comes_back() {
        let registry = registry();
        let outbox = Arc::new(Outbox::new());
        let star = subscription("orders.*", &outbox);
        registry.subscribe_pattern(&star);
        let first = registry.resolve("orders.eu").unwrap();
        assert!(
            !first.has_direct_subscriber(),
            "a pattern does not keep a topic in use"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
        let reclaimed = registry.reclaim_idle(1, |_| false);
        assert_eq!(reclaimed.len(), 1);
        assert!(star.topics().is_empty());
        // No TopicRemoved notice: the pattern goes on.
        assert!(drain(&outbox).is_empty());
        let again = registry.resolve("orders.eu").unwrap();
        assert_ne!(again.id(), first.id());
        assert_eq!(star.topics(), ["orders.eu"]);
        publish_all(&again, &[b"back".to_vec()]);
        assert_eq!(
            received(&outbox),
            [("orders.eu".to_owned(), b"back".to_vec())]
        );
    }

    #[test]
    fn no_pattern_reaches_a_reply_inbox() {
        let registry = TopicRegistry::new(TopicDefaults::default());
        let outbox = Arc::new(Outbox::new());
        let everything = subscription(">", &outbox);
        registry.subscribe_pattern(&everything);
        let inbox = registry.resolve("_INBOX.0123456789abcdef").unwrap();
        assert!(
            inbox.is_dynamic(),
            "an inbox is made on first use even without auto_create"
        );
        assert_eq!(inbox.routing(), Routing::Fanout);
        publish_all(&inbox, &[b"reply".to_vec()]);
        assert!(received(&outbox).is_empty());
        assert!(
            registry.resolve("_INBOX.").is_err(),
            "an inbox names its owner"
        );
        assert!(
            registry.resolve("orders").is_err(),
            "other names still need auto_create"
        );
    }

    #[test]
    fn ten_thousand_patterns_that_do_not_match_attach_to_nothing() {
        let registry = registry();
        let outbox = Arc::new(Outbox::new());
        for i in 0..10_000 {
            registry.subscribe_pattern(&subscription(&format!("other{i}.*"), &outbox));
        }
        let topic = registry.resolve("orders.eu").unwrap();
        assert_eq!(topic.subscriber_count(), 0);
        assert_eq!(registry.pattern_count(), 10_000);
    }
}
