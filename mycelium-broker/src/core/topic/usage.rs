//! Who uses a topic: what the registry needs to reclaim the auto-created topics nobody uses.
//!
//! - A topic is *dynamic* when `auto_create` made it on first use; a reload that declares it
//!   makes it an ordinary topic for the rest of its life. Only dynamic topics are reclaimed.
//! - Subscribers are counted where they already live (the topic's subscriber lists, the
//!   shared-memory directory). Publishers are listed nowhere else, so each holds a
//!   [`PublisherHold`] for as long as it may publish: a socket connection from its
//!   `Advertise` until it closes, an in-process publisher while it (or a clone of it) lives.
//! - `last_active` is when the topic was last looked up by name or last seen in use. Every
//!   subscribe, advertise and attach looks the topic up first, so the registry never reclaims
//!   a topic between that lookup and the subscription it leads to, unless that gap outlasts
//!   the whole idle timeout.
//! - Nothing here is touched per message: at lookups, at advertise and disconnect, and by the
//!   registry's sweep.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::core::topic::Topic;

/// A topic's usage figures; relaxed atomics: the registry's write lock orders the decision
/// to reclaim against lookups, and a figure read a little late only delays a reclaim.
#[derive(Debug, Default)]
pub(crate) struct TopicUsage {
    /// Created by `auto_create`, and not declared since.
    dynamic: AtomicBool,
    /// Live [`PublisherHold`]s.
    publishers: AtomicUsize,
    /// Milliseconds on the registry's clock when the topic was last looked up or seen in use.
    last_active_ms: AtomicU64,
}

impl Topic {
    /// Whether `auto_create` made this topic and no reload has declared it since: the
    /// registry removes it once nobody has used it for `idle_timeout_ms`.
    pub fn is_dynamic(&self) -> bool {
        self.usage.dynamic.load(Ordering::Relaxed)
    }

    pub(crate) fn set_dynamic(&self, dynamic: bool) {
        self.usage.dynamic.store(dynamic, Ordering::Relaxed);
    }

    /// Publishers holding the topic now ([`PublisherHold`]).
    pub(crate) fn publisher_count(&self) -> usize {
        self.usage.publishers.load(Ordering::Relaxed)
    }

    /// Records that the topic was looked up or seen in use at `now_ms`.
    pub(crate) fn touch(&self, now_ms: u64) {
        self.usage.last_active_ms.store(now_ms, Ordering::Relaxed);
    }

    /// When the topic was last looked up or seen in use, in ms on the registry's clock.
    pub(crate) fn last_active(&self) -> u64 {
        self.usage.last_active_ms.load(Ordering::Relaxed)
    }
}

/// A publisher's claim on a topic: while one exists the topic counts as used. Cloning it
/// claims once more; dropping it gives the claim back.
#[derive(Debug)]
pub(crate) struct PublisherHold(Arc<Topic>);

impl PublisherHold {
    pub(crate) fn new(topic: Arc<Topic>) -> PublisherHold {
        topic.usage.publishers.fetch_add(1, Ordering::Relaxed);
        PublisherHold(topic)
    }

    /// The topic held.
    pub(crate) fn topic(&self) -> &Arc<Topic> {
        &self.0
    }
}

impl Clone for PublisherHold {
    fn clone(&self) -> PublisherHold {
        PublisherHold::new(self.0.clone())
    }
}

impl Drop for PublisherHold {
    fn drop(&mut self) {
        self.0.usage.publishers.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use mycelium_config::TopicDefaults;

    use super::*;

    #[test]
    fn holds_count_clones_and_give_their_claim_back_when_dropped() {
        let topic = Arc::new(Topic::new(0, TopicDefaults::default().topic("t")));
        let hold = PublisherHold::new(topic.clone());
        let clone = hold.clone();
        assert_eq!(topic.publisher_count(), 2);
        drop(hold);
        assert_eq!(topic.publisher_count(), 1);
        drop(clone);
        assert_eq!(topic.publisher_count(), 0);
    }
}
