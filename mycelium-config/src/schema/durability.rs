//! A durable topic's settings as the broker uses them, defaults filled in.
//!
//! - [`TopicConfig::durability`](crate::TopicConfig::durability) builds it; a topic that is not
//!   durable has none.
//! - The file leaves a setting out to take its default; the defaults live here alone.
//!
//! ```
//! use mycelium_config::{Fsync, TopicDefaults};
//!
//! let mut topic = TopicDefaults::default().topic("orders");
//! assert!(topic.durability().is_none());
//! topic.durable = true;
//! let durability = topic.durability().expect("durable");
//! assert_eq!(durability.fsync, Fsync::Always);
//! assert_eq!((durability.ack_timeout_ms, durability.max_deliveries), (30_000, 5));
//! assert_eq!(durability.dead_letter, "orders.dlq");
//! ```

use super::{ConfigDuration, Fsync};

/// `ack_timeout_ms` when the file leaves it out.
pub(crate) const DEFAULT_ACK_TIMEOUT_MS: u64 = 30_000;

/// `max_deliveries` when the file leaves it out.
pub(crate) const DEFAULT_MAX_DELIVERIES: u32 = 5;

/// Suffix of a topic's dead-letter topic when the file names none.
pub(crate) const DEAD_LETTER_SUFFIX: &str = ".dlq";

/// The dead-letter topic of `topic` when the file names none: `<topic>.dlq`.
pub(crate) fn default_dead_letter(topic: &str) -> String {
    format!("{topic}{DEAD_LETTER_SUFFIX}")
}

/// A durable topic's settings, defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Durability {
    /// Age limit of retained messages; `None`: none.
    pub retention: Option<ConfigDuration>,
    /// Byte limit of the log; `None`: none.
    pub retention_bytes: Option<u64>,
    /// Message count limit of the log; `None`: none.
    pub retention_messages: Option<u64>,
    /// When the log is synced to disk.
    pub fsync: Fsync,
    /// Milliseconds a group member has to ack a message.
    pub ack_timeout_ms: u64,
    /// Deliveries before a message is dead-lettered.
    pub max_deliveries: u32,
    /// The dead-letter topic's name.
    pub dead_letter: String,
}
