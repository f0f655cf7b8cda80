//! Why a topic lost messages: [`DropReason`], and the count per reason ([`DroppedBy`]).
//!
//! - Every place that counts a topic's `dropped` names its reason; the total is the sum over
//!   reasons (plus, in the broker's metrics, what shared-memory publishers count in their own
//!   rings, `drop_newest`).
//! - A drop is counted once per copy lost: a message lost for two subscribers counts two.

/// Why messages of a topic were lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DropReason {
    /// `backpressure = drop_newest`: the new messages did not fit (a full subscriber queue,
    /// relay ring or queue backlog; also a queue topic under `disconnect`, which drops alike),
    /// and what shared-memory publishers of the topic dropped in their own full rings.
    DropNewest,
    /// `backpressure = drop_oldest`: older messages made room for the new (evicted from a
    /// subscriber's queue or the backlog), or a lossy shared-memory ring lapped the broker's
    /// reader before it read them.
    DropOldest,
    /// `backpressure = disconnect`: what a slow subscriber had not taken when it was
    /// detached (the rest of the batch for a socket or in-process subscriber, one per
    /// detached shared-memory subscriber).
    SlowConsumer,
    /// `backpressure = block` gave up after `publish_deadline_ms`: a subscriber disconnected
    /// (one), or the rest of the batch dropped for a full backlog or relay ring.
    PublishDeadline,
    /// The topic was removed (a reload) with messages still in its backlog.
    TopicRemoved,
    /// A shared-memory publisher's message the broker refused: a malformed envelope, beyond
    /// the topic's header limits, or above `max_message_size`.
    Invalid,
    /// Lost in the shared-memory plumbing: a payload segment that could not be read or was
    /// refused to a reader with too many in flight, a message the relay ring could never
    /// take, what a departed consumer left unread that could not be taken back.
    SharedMemory,
    /// A durable topic's log could not store a shared-memory publisher's messages (a full
    /// disk): nobody can be told, so they are counted (socket and in-process publishers are
    /// refused instead, with the reason).
    Storage,
}

impl DropReason {
    /// Every reason, in the order [`DroppedBy::iter`] gives them.
    pub const ALL: [DropReason; 8] = [
        DropReason::DropNewest,
        DropReason::DropOldest,
        DropReason::SlowConsumer,
        DropReason::PublishDeadline,
        DropReason::TopicRemoved,
        DropReason::Invalid,
        DropReason::SharedMemory,
        DropReason::Storage,
    ];

    /// A stable lowercase name, for labels (`drop_newest`, `drop_oldest`, `slow_consumer`,
    /// `publish_deadline`, `topic_removed`, `invalid`, `shared_memory`, `storage`).
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::DropNewest => "drop_newest",
            DropReason::DropOldest => "drop_oldest",
            DropReason::SlowConsumer => "slow_consumer",
            DropReason::PublishDeadline => "publish_deadline",
            DropReason::TopicRemoved => "topic_removed",
            DropReason::Invalid => "invalid",
            DropReason::SharedMemory => "shared_memory",
            DropReason::Storage => "storage",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// Messages dropped, per [`DropReason`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DroppedBy {
    pub(crate) counts: [u64; DropReason::ALL.len()],
}

impl DroppedBy {
    /// Dropped for `reason`.
    pub fn get(&self, reason: DropReason) -> u64 {
        self.counts[reason.index()]
    }

    /// Every reason with its count (zeros included), in [`DropReason::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::ALL.iter().map(|r| (*r, self.get(*r)))
    }

    /// The sum over reasons.
    pub fn total(&self) -> u64 {
        self.counts.iter().fold(0u64, |n, c| n.saturating_add(*c))
    }

    pub(crate) fn add(&mut self, reason: DropReason, count: u64) {
        let slot = &mut self.counts[reason.index()];
        *slot = slot.saturating_add(count);
    }
}
