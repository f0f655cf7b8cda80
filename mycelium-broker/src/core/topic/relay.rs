//! A fanout topic's relay: every batch handed once to the subscribers on another path.

use std::sync::Arc;

use mycelium_config::{Backpressure, Routing, TopicConfig};

use crate::core::relay::Relay;
use crate::core::topic::{Batch, Blocker, DropReason, PublishCursor, Topic};

impl Topic {
    /// Sets (or, with `None`, removes) the topic's [`Relay`]. Ignored on queue topics.
    pub(crate) fn set_relay(&self, relay: Option<Arc<dyn Relay>>) {
        if self.routing == Routing::Fanout {
            *self.relay.write().unwrap_or_else(|p| p.into_inner()) = relay;
        }
    }

    /// Offers the relay the messages of the batch it has not dealt with yet; `Some` when a
    /// `block` or `disconnect` policy must wait for it to have room.
    pub(super) fn relay_rest<B: Batch + ?Sized>(
        &self,
        payloads: &B,
        cursor: &mut PublishCursor,
        settings: &TopicConfig,
    ) -> Option<Blocker> {
        let relay = self.relay.read().unwrap_or_else(|p| p.into_inner()).clone();
        let Some(relay) = relay else {
            // No relay (any more): nobody on the other path to wait for.
            cursor.relayed = payloads.len();
            return None;
        };
        let from = cursor.relayed;
        let mut each = (from..payloads.len()).map(|i| payloads.item(i));
        let relayed = relay.relay(&mut each);
        // A relay that claims more than it was offered is taken at its word for what exists.
        let passed = relayed.passed.min(payloads.len() - from);
        let dropped = relayed.dropped.min(passed);
        cursor.relayed = from + passed;
        let readers = relayed.readers;
        let delivered = (passed - dropped) as u64 * readers;
        // A message the relay could never take is rare; its bytes count as if it had been.
        let bytes = readers
            * if passed == payloads.len() {
                cursor.bytes
            } else {
                payloads.view().bytes(from..from + passed)
            };
        let never = dropped as u64 * readers;
        let mut lost = 0;
        let rest = payloads.len() - cursor.relayed;
        let blocker = if rest == 0 {
            None
        } else {
            match settings.backpressure {
                // `disconnect`: the shared-memory watchdog detaches the reader that holds the
                // relay full (`ShmRings`), and the wait ends.
                Backpressure::Block | Backpressure::Disconnect => {
                    // The direct subscribers get the batch only once the relay has all of it.
                    let direct = !self
                        .fanout
                        .read()
                        .unwrap_or_else(|p| p.into_inner())
                        .is_empty();
                    cursor.routed = if direct { 0 } else { cursor.relayed };
                    Some(Blocker::Relay)
                }
                // A lossy relay (`drop_oldest`) never stops short; should one, drop as
                // `drop_newest` does rather than wait under a policy that promises not to.
                Backpressure::DropNewest | Backpressure::DropOldest => {
                    lost += rest as u64 * readers;
                    cursor.relayed = payloads.len();
                    relay.dropped(rest as u64);
                    None
                }
            }
        };
        self.counters.add(delivered, bytes);
        self.counters.lost(DropReason::SharedMemory, never);
        let reason = match settings.backpressure {
            Backpressure::DropOldest => DropReason::DropOldest,
            _ => DropReason::DropNewest,
        };
        self.counters.lost(reason, lost);
        blocker
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::sync::Arc;

    use mycelium_config::{Backpressure, Routing};
    use mycelium_transport::outbox::Outbox;

    use crate::core::topic::test_support::*;
    use crate::core::topic::*;

    #[test]
    fn a_full_relay_holds_a_block_publish_back_and_resumes_without_duplicates_or_gaps() {
        let t = topic(Routing::Fanout, 100, Backpressure::Block, 1);
        let a = Arc::new(Outbox::new());
        t.subscribe(1, a.clone(), 1000, 0);
        let relay = RecordingRelay::with_room(5);
        t.set_relay(Some(relay.clone()));
        let m = msgs(8);
        let refs: Vec<&[u8]> = m.iter().map(|p| p.as_slice()).collect();
        let mut cursor = PublishCursor::default();
        assert!(matches!(
            t.publish(refs.as_slice(), &mut cursor),
            Progress::Blocked(Blocker::Relay)
        ));
        assert!(
            drain(&a).is_empty(),
            "outbox subscribers wait behind the relay, as behind a first subscriber"
        );
        // Still full: nothing moves, nothing is handed over twice.
        assert!(matches!(
            t.publish(refs.as_slice(), &mut cursor),
            Progress::Blocked(Blocker::Relay)
        ));
        relay.make_room(1);
        assert!(matches!(
            t.publish(refs.as_slice(), &mut cursor),
            Progress::Blocked(Blocker::Relay)
        ));
        relay.make_room(100);
        assert!(matches!(
            t.publish(refs.as_slice(), &mut cursor),
            Progress::Done
        ));
        assert_eq!(*relay.got.lock().unwrap(), m, "once each, in order");
        assert_eq!(drain(&a), m);
        let c = t.counters();
        assert_eq!(c.dropped.load(Ordering::Relaxed), 0);
        assert_eq!(c.published.load(Ordering::Relaxed), 8, "counted once");
        assert_eq!(c.delivered.load(Ordering::Relaxed), 16);
    }

    #[test]
    fn the_relay_gets_each_batch_once_even_when_a_subscriber_blocks_it() {
        let t = topic(Routing::Fanout, 3, Backpressure::Block, 1);
        let a = Arc::new(Outbox::new());
        t.subscribe(1, a.clone(), 1000, 0);
        let relay = RecordingRelay::with_room(100);
        t.set_relay(Some(relay.clone()));
        let m = msgs(8);
        let refs: Vec<&[u8]> = m.iter().map(|p| p.as_slice()).collect();
        let mut cursor = PublishCursor::default();
        let mut got = Vec::new();
        while let Progress::Blocked(_) = t.publish(refs.as_slice(), &mut cursor) {
            got.extend(drain(&a));
        }
        got.extend(drain(&a));
        assert_eq!(got, m);
        assert_eq!(*relay.got.lock().unwrap(), m, "once, in order");
        // A batch from the relay's own path is not handed back to it.
        let mut cursor = PublishCursor::from_relay_path();
        while let Progress::Blocked(_) = t.publish(refs.as_slice(), &mut cursor) {
            drain(&a);
        }
        assert_eq!(relay.got.lock().unwrap().len(), 8);
        // Removed: nothing more reaches it.
        t.set_relay(None);
        let mut cursor = PublishCursor::default();
        while let Progress::Blocked(_) = t.publish(refs.as_slice(), &mut cursor) {
            drain(&a);
        }
        assert_eq!(relay.got.lock().unwrap().len(), 8);
    }

    #[test]
    fn a_publish_blocked_on_the_relay_goes_on_when_the_relay_is_removed() {
        let t = topic(Routing::Fanout, 100, Backpressure::Block, 1);
        let a = Arc::new(Outbox::new());
        t.subscribe(1, a.clone(), 1000, 0);
        t.set_relay(Some(RecordingRelay::with_room(2)));
        let m = msgs(5);
        let refs: Vec<&[u8]> = m.iter().map(|p| p.as_slice()).collect();
        let mut cursor = PublishCursor::default();
        assert!(matches!(
            t.publish(refs.as_slice(), &mut cursor),
            Progress::Blocked(Blocker::Relay)
        ));
        t.set_relay(None);
        assert!(matches!(
            t.publish(refs.as_slice(), &mut cursor),
            Progress::Done
        ));
        assert_eq!(drain(&a), m);
    }

    #[test]
    fn drop_newest_drops_what_a_full_relay_cannot_take_and_counts_it() {
        let t = topic(Routing::Fanout, 100, Backpressure::DropNewest, 1);
        let a = Arc::new(Outbox::new());
        t.subscribe(1, a.clone(), 1000, 0);
        let relay = RecordingRelay::with_room(5);
        t.set_relay(Some(relay.clone()));
        let m = msgs(8);
        assert!(matches!(publish_all(&t, &m), Progress::Done));
        assert_eq!(*relay.got.lock().unwrap(), m[..5].to_vec());
        assert_eq!(drain(&a), m, "the outbox subscriber is not held back");
        assert_eq!(t.counters().dropped.load(Ordering::Relaxed), 3);
        assert_eq!(
            *relay.told_dropped.lock().unwrap(),
            3,
            "its readers are told"
        );
    }
}
