//! A topic's publish-to-deliver latency: the samples its routing paths record, into its own
//! histogram and the broker-wide one ([`LatencyRecorder`]).
//!
//! - The caller (a socket connection's reader, the shared-memory ring reader) notes when it
//!   read a batch, only if [`Topic::latency_on`] says so (no clock read otherwise), and calls
//!   [`Topic::record_latency`] once the batch is routed: one sample per batch.
//! - The topic's own histogram is made at its first sample: topics never sampled cost a
//!   pointer.

use std::sync::Arc;
use std::time::Instant;

use crate::core::latency::{Histogram, LatencyRecorder, LatencySnapshot};
use crate::core::topic::Topic;

/// The histogram of a topic and the broker-wide recorder it also records into.
#[derive(Debug, Default)]
pub(super) struct TopicLatency {
    /// Made at the first sample.
    own: std::sync::OnceLock<Box<Histogram>>,
    /// The broker-wide recorder, shared by every topic of the registry; says whether to
    /// record.
    pub(super) broker: Arc<LatencyRecorder>,
}

impl TopicLatency {
    pub(super) fn new(broker: Arc<LatencyRecorder>) -> TopicLatency {
        TopicLatency {
            own: std::sync::OnceLock::new(),
            broker,
        }
    }
}

impl Topic {
    /// Whether batches' latency is recorded now (`metrics.enabled`): read once per batch,
    /// before the clock.
    #[inline]
    pub fn latency_on(&self) -> bool {
        self.latency.broker.enabled()
    }

    /// Records the latency of one batch the broker read at `read` and has just routed.
    pub fn record_latency(&self, read: Instant) {
        let latency = read.elapsed();
        self.latency.own.get_or_init(Box::default).record(latency);
        self.latency.broker.record(latency);
    }

    /// The topic's latency histogram now; empty before its first sample.
    pub fn latency(&self) -> LatencySnapshot {
        self.latency
            .own
            .get()
            .map(|h| h.snapshot())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use mycelium_config::TopicDefaults;

    use crate::core::registry::TopicRegistry;

    #[test]
    fn samples_go_to_the_topic_and_the_broker_and_the_switch_is_the_registrys() {
        let registry = TopicRegistry::new(TopicDefaults::default());
        let t = registry
            .create_topic(TopicDefaults::default().topic("t"))
            .expect("t");
        let u = registry
            .create_topic(TopicDefaults::default().topic("u"))
            .expect("u");
        assert!(!t.latency_on(), "off unless the config turns it on");
        registry.latency().set_enabled(true);
        assert!(t.latency_on() && u.latency_on());
        let read = std::time::Instant::now();
        t.record_latency(read);
        t.record_latency(read);
        u.record_latency(read);
        assert_eq!(t.latency().count, 2);
        assert_eq!(u.latency().count, 1);
        assert_eq!(registry.latency().snapshot().count, 3);
        let topic_never_sampled = registry
            .create_topic(TopicDefaults::default().topic("v"))
            .expect("v");
        assert_eq!(topic_never_sampled.latency().count, 0);
    }
}
