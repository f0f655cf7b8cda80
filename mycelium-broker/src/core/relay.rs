//! The shared-memory side of a topic: one relay reaches every shared-memory reader at once.
//!
//! - A fanout topic hands each batch once to its [`Relay`] (the broker's relay ring), before
//!   its one-by-one subscribers ([`Delivery`](crate::core::delivery::Delivery)): the relay
//!   writes each message once for all of its readers.
//! - A queue topic deals messages to shared-memory consumers through its [`QueueRelay`],
//!   each message addressed to one consumer, beside the consumers it reaches one by one.
//! - Neither waits: a full ring takes what fits, and the topic's policy decides the rest.

use crate::core::batch::Item;

/// Takes a copy of every message routed on a topic, for subscribers that are not reached
/// one by one through a [`Delivery`](crate::core::delivery::Delivery) (the shared-memory
/// relay ring).
pub trait Relay: std::fmt::Debug + Send + Sync {
    /// Takes messages of a batch, in order, without waiting, and stops at the first that
    /// does not fit now (its readers must make room first). The topic hands over each
    /// message once: after a short return it offers only the messages after `passed`.
    fn relay(&self, messages: &mut dyn Iterator<Item = Item<'_>>) -> Relayed;

    /// The topic dropped the next `count` messages for the relay's readers after a short
    /// [`relay`](Self::relay) (`drop_newest`): the relay tells its readers how many they
    /// missed, with the next message they get or, if none comes, as soon as they have read
    /// the messages before the gap.
    fn dropped(&self, count: u64);

    /// A publish waited on the relay for longer than the topic's `publish_deadline_ms`:
    /// detach the readers that hold it full (`SlowConsumer`, with `why` in the reason), so
    /// that the publish goes on and the relay's other readers keep getting messages. Returns
    /// how many were detached (0: none could be, and the topic drops the rest instead).
    fn detach_laggards(&self, why: &str) -> usize;
}

/// How far a [`Relay`] got with the messages it was offered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Relayed {
    /// Leading messages dealt with: each taken, or dropped for good (one the relay can never
    /// take). Fewer than offered means the next one did not fit now.
    pub passed: usize,
    /// Of `passed`, those dropped for good.
    pub dropped: usize,
    /// Readers each message taken reaches (and each dropped one misses), for the counters.
    pub readers: u64,
}

/// Deals queue messages to shared-memory consumers (the broker's relay ring), each message
/// addressed to one consumer.
pub trait QueueRelay: std::fmt::Debug + Send + Sync {
    /// Messages dealt to the consumer in `slot` that it has not read yet, or `None` when no
    /// consumer holds the slot.
    fn unread(&self, slot: u32) -> Option<usize>;
    /// Writes `messages` addressed to the consumer in `slot`, in order, without waiting;
    /// stops at the first that does not fit. Returns how many were written: exactly those
    /// are the consumer's now.
    fn deal(&self, slot: u32, messages: &mut dyn Iterator<Item = Item<'_>>) -> usize;
    /// A publish waited on the backlog for longer than the topic's `publish_deadline_ms`:
    /// detach the consumers that hold the relay ring full, if any do (`SlowConsumer`, with
    /// `why` in the reason). Returns how many were detached (0: the ring is not what holds
    /// the backlog up).
    fn detach_laggards(&self, why: &str) -> usize;
}
