//! Where a publish stands: how far a batch got, and whether it must wait.

use std::ops::Range;

use crate::core::topic::{Blocker, SubscriberId};

/// Where a blocked publish resumes. Start each new batch from `PublishCursor::default()`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PublishCursor {
    /// Fanout: subscribers with a smaller id have the whole batch. Queue: unused.
    pub(super) subscriber: SubscriberId,
    /// Fanout: messages of the batch that `subscriber` already has. Queue: messages placed.
    pub(super) offset: usize,
    /// Whether the batch was counted as published yet.
    pub(super) counted: bool,
    /// The batch's bytes, summed once when it was counted: what a copy of all of it adds
    /// to the bytes out.
    pub(super) bytes: u64,
    /// Fanout: messages of the batch the relay has dealt with (taken, or dropped by policy);
    /// the direct subscribers get the batch once this reaches its length.
    pub(super) relayed: usize,
    /// The batch came from the topic's relay's own path (shared-memory publishers): it is not
    /// handed back to the relay.
    pub(super) skip_relay: bool,
    /// How many messages of the batch, from its start, the topic has routed to every reader
    /// it has: see [`PublishCursor::routed`].
    pub(super) routed: usize,
    /// Who published the batch (a connection's id, an in-process broker handle's), for
    /// subscriptions that do not take their own publisher's messages; 0: no one in particular.
    pub(super) origin: u64,
    /// A durable topic's offsets of the batch, once its log stored it.
    pub(super) logged: Option<Range<u64>>,
}

impl PublishCursor {
    /// How many messages of the batch, from its start, were routed: on a fanout topic, handed
    /// to every subscriber (the relay and every direct subscriber; a subscriber's backpressure may drop
    /// its copy, as for any message), on a queue topic dealt to a consumer or put in the
    /// backlog. Less than the batch only while it is held back, or if the topic was removed
    /// (then the rest never will be) or [`Topic::give_up`](crate::core::topic::Topic::give_up) dropped the rest. A message that
    /// some fanout subscribers got and others not (held back by a later one) is not routed:
    /// the topic's removal ends those subscriptions without it.
    pub fn routed(&self) -> usize {
        self.routed
    }

    /// On a durable topic, the offsets its log gave the batch (once stored): the last one's
    /// durability is what a confirmed publish waits for. `None` on other topics, and before.
    pub fn logged(&self) -> Option<Range<u64>> {
        self.logged.clone()
    }

    /// A cursor for a batch published by `origin` (nonzero): a fanout subscription made with
    /// the same origin to skip (no echo) does not get it.
    pub fn from_origin(origin: u64) -> PublishCursor {
        PublishCursor {
            origin,
            ..PublishCursor::default()
        }
    }

    /// A cursor for a batch that came from the relay's own path: routed to the topic's
    /// subscribers, but not handed to the relay again.
    pub fn from_relay_path() -> PublishCursor {
        PublishCursor {
            skip_relay: true,
            ..PublishCursor::default()
        }
    }
}

/// What a publish call achieved.
#[derive(Debug)]
pub enum Progress {
    /// The whole batch was routed (or dropped by policy).
    Done,
    /// A `block` policy stopped the batch; wait on the blocker, then call `publish` again with
    /// the same cursor.
    Blocked(Blocker),
    /// A durable topic's log could not store the batch (a full disk, an I/O error): none of
    /// it was routed; tell the publisher.
    Refused(StorageRefusal),
}

/// Why a durable topic refused a batch: its log could not store it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageRefusal {
    /// What to tell the publisher: the topic, the log's file and the operating system's
    /// words ("No space left on device").
    pub message: String,
}

impl StorageRefusal {
    pub(crate) fn new(topic: &str, error: &mycelium_storage::AppendError) -> StorageRefusal {
        let message = format!(
            "durable topic '{topic}' could not store the message(s): {}",
            crate::error::error_chain(error)
        );
        tracing::error!(topic, %message, "a durable topic refused a batch");
        StorageRefusal { message }
    }
}

#[cfg(test)]
mod tests {

    use std::sync::Arc;

    use mycelium_config::{Backpressure, Routing};
    use mycelium_transport::outbox::Outbox;

    use super::*;

    use crate::core::topic::test_support::*;
    use crate::core::topic::*;

    #[test]
    fn a_batch_held_back_counts_as_routed_only_what_every_subscriber_has() {
        // The slow subscriber first: the one after it has none of the held batch.
        let t = topic(Routing::Fanout, 3, Backpressure::Block, 1);
        let (slow, other) = (Arc::new(Outbox::new()), Arc::new(Outbox::new()));
        t.subscribe(1, slow.clone(), 1000, 0);
        t.subscribe(2, other.clone(), 1000, 0);
        let m = msgs(8);
        let refs: Vec<&[u8]> = m.iter().map(|p| p.as_slice()).collect();
        let mut cursor = PublishCursor::default();
        assert!(matches!(
            t.publish(refs.as_slice(), &mut cursor),
            Progress::Blocked(_)
        ));
        assert_eq!(cursor.routed(), 0);
        assert_eq!(drain(&slow).len(), 3);
        assert!(drain(&other).is_empty());
        t.remove();
        assert!(matches!(
            t.publish(refs.as_slice(), &mut cursor),
            Progress::Done
        ));
        assert_eq!(cursor.routed(), 0, "nothing more once removed");

        // The slow subscriber last (it alone holds 3 at most): what it has, every subscriber
        // has.
        let t = topic(Routing::Fanout, 100, Backpressure::Block, 1);
        let (other, slow) = (Arc::new(Outbox::new()), Arc::new(Outbox::new()));
        t.subscribe(1, other.clone(), 1000, 0);
        t.subscribe(2, slow.clone(), 3, 0);
        let mut cursor = PublishCursor::default();
        assert!(matches!(
            t.publish(refs.as_slice(), &mut cursor),
            Progress::Blocked(_)
        ));
        assert_eq!(cursor.routed(), 3);
        assert_eq!(drain(&slow).len(), 3);
        assert!(matches!(
            t.publish(refs.as_slice(), &mut cursor),
            Progress::Blocked(_)
        ));
        assert_eq!(cursor.routed(), 6);
        drain(&slow);
        assert!(matches!(
            t.publish(refs.as_slice(), &mut cursor),
            Progress::Done
        ));
        assert_eq!(cursor.routed(), 8);
    }

    #[test]
    fn a_queue_batch_counts_as_routed_what_was_dealt_or_backlogged_not_what_was_given_up() {
        let t = topic(Routing::Queue, 3, Backpressure::Block, 2);
        let c = Arc::new(Outbox::new());
        assert_eq!(t.subscribe(1, c.clone(), 1000, 2), Some(2));
        let m = msgs(10);
        let refs: Vec<&[u8]> = m.iter().map(|p| p.as_slice()).collect();
        let mut cursor = PublishCursor::default();
        let Progress::Blocked(blocker) = t.publish(refs.as_slice(), &mut cursor) else {
            panic!("a full backlog holds the batch back");
        };
        assert_eq!(cursor.routed(), 5, "two dealt, three backlogged");
        assert_eq!(
            t.give_up(&blocker, refs.as_slice(), &mut cursor),
            GaveUp::Dropped(5)
        );
        assert!(matches!(
            t.publish(refs.as_slice(), &mut cursor),
            Progress::Done
        ));
        assert_eq!(cursor.routed(), 5, "the rest was dropped, not routed");
    }
}
