//! What a topic counts, and the plain report of it ([`TopicStatistics`]).

use std::sync::atomic::{AtomicU64, Ordering};

use mycelium_config::Routing;

use crate::core::topic::Topic;

/// What a topic counts as it routes; relaxed atomics, since they order nothing. Read through
/// [`Topic::statistics`].
#[derive(Debug, Default)]
pub(crate) struct TopicCounters {
    /// Messages accepted from publishers.
    pub(crate) published: AtomicU64,
    /// Copies handed to subscribers.
    pub(crate) delivered: AtomicU64,
    /// Copies discarded by the backpressure policy.
    pub(crate) dropped: AtomicU64,
}

impl TopicCounters {
    /// Adds a routing call's results, skipping zeros: an atomic add costs even when it adds
    /// nothing, and most calls drop nothing.
    pub(super) fn add(&self, delivered: u64, dropped: u64) {
        if delivered > 0 {
            self.delivered.fetch_add(delivered, Ordering::Relaxed);
        }
        if dropped > 0 {
            self.dropped.fetch_add(dropped, Ordering::Relaxed);
        }
    }
}

/// A topic's figures at one moment, as [`Topic::statistics`] reports them; each front end
/// presents them its own way (the socket server as a `TopicStats` frame).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TopicStatistics {
    /// The topic's name.
    pub name: String,
    /// How it routes.
    pub routing: Routing,
    /// Subscribers (fanout) or consumers (queue) reached one by one, through a
    /// [`Delivery`](crate::core::delivery::Delivery); the shared-memory relay's readers are
    /// not counted here.
    pub subscribers: usize,
    /// Messages accepted from publishers.
    pub published: u64,
    /// Copies handed to subscribers.
    pub delivered: u64,
    /// Copies discarded by the backpressure policy (or lost before they could be routed).
    pub dropped: u64,
    /// Messages waiting in a queue topic's backlog (always 0 for fanout).
    pub queued: usize,
    /// Auto-created, and removed once idle ([`Topic::is_dynamic`]).
    pub dynamic: bool,
}

impl Topic {
    /// The topic's counters, for the parts of the broker that count on its behalf.
    pub(crate) fn counters(&self) -> &TopicCounters {
        &self.counters
    }

    /// The topic's figures now.
    pub fn statistics(&self) -> TopicStatistics {
        TopicStatistics {
            name: self.name().to_owned(),
            routing: self.routing(),
            subscribers: self.subscriber_count(),
            published: self.counters.published.load(Ordering::Relaxed),
            delivered: self.counters.delivered.load(Ordering::Relaxed),
            dropped: self.counters.dropped.load(Ordering::Relaxed),
            queued: self.backlog_len(),
            dynamic: self.is_dynamic(),
        }
    }
}
