//! The numbers the routing core names topics and subscriptions by.

/// A topic's id: assigned by the broker, carried on the wire, never reused within a broker run.
pub type TopicId = u32;

/// Identifies one subscription (one subscriber on one topic); increasing within a broker run.
pub type SubscriberId = u64;
