//! Topics: `[[topics]]` entries declared by name, and `[topic_defaults]` for topics created on demand.
//!
//! - A declared topic must give `name` and `routing`; every other field has a default.
//! - `[topic_defaults]` uses the same defaults, and [`TopicDefaults::topic`] turns it into the
//!   [`TopicConfig`] of an auto-created topic, so both kinds of topic obey the same rules.
//!
//! ```
//! use mycelium_config::{Routing, TopicDefaults};
//!
//! let defaults = TopicDefaults { routing: Routing::Queue, ..TopicDefaults::default() };
//! let topic = defaults.topic("jobs");
//! assert_eq!(topic.name, "jobs");
//! assert_eq!(topic.routing, Routing::Queue);
//! ```

use serde::Deserialize;

use super::durability::{default_dead_letter, DEFAULT_ACK_TIMEOUT_MS, DEFAULT_MAX_DELIVERIES};
use super::{Backpressure, ConfigDuration, Durability, Fsync, Principal, Routing};

const DEFAULT_BUFFER_SIZE: usize = 10_000;
const DEFAULT_MAX_MESSAGE_SIZE: usize = 64 * 1024;
const DEFAULT_PREFETCH: u32 = 256;
const DEFAULT_PUBLISH_DEADLINE_MS: u64 = 10_000;
const DEFAULT_STAMP: bool = false;
const DEFAULT_MAX_HEADERS: u16 = 32;
const DEFAULT_MAX_HEADER_BYTES: u32 = 4096;
const DEFAULT_IDLE_TIMEOUT_MS: u64 = 60_000;

fn default_max_headers() -> u16 {
    DEFAULT_MAX_HEADERS
}

fn default_max_header_bytes() -> u32 {
    DEFAULT_MAX_HEADER_BYTES
}

fn default_publish_deadline_ms() -> u64 {
    DEFAULT_PUBLISH_DEADLINE_MS
}

fn default_buffer_size() -> usize {
    DEFAULT_BUFFER_SIZE
}

fn default_max_message_size() -> usize {
    DEFAULT_MAX_MESSAGE_SIZE
}

fn default_prefetch() -> u32 {
    DEFAULT_PREFETCH
}

/// One `[[topics]]` entry.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicConfig {
    /// Topic name, required: 1 to 255 bytes of `[A-Za-z0-9._-]`, unique across topics.
    pub name: String,
    /// How messages are delivered, required.
    pub routing: Routing,
    /// Messages the topic may hold for one subscriber before `backpressure` applies. Default 10000,
    /// > 0.
    #[serde(default = "default_buffer_size")]
    pub buffer_size: usize,
    /// Largest message payload in bytes a publisher may send. Default 65536, in
    /// 1..=[`MAX_MESSAGE_SIZE_LIMIT`](crate::MAX_MESSAGE_SIZE_LIMIT).
    #[serde(default = "default_max_message_size")]
    pub max_message_size: usize,
    /// What happens when a subscriber's buffer is full. Default `block`.
    #[serde(default)]
    pub backpressure: Backpressure,
    /// Queue topics only: most unacknowledged messages in flight per consumer (its credit).
    /// Default 256, > 0.
    #[serde(default = "default_prefetch")]
    pub prefetch: u32,
    /// `block` only: longest a publish waits on one full subscriber (or a full queue backlog,
    /// or the full relay ring) before the broker stops waiting: that subscriber is
    /// disconnected (`SlowConsumer`), or the rest of a queue batch is dropped (counted, the
    /// publisher told), so one slow reader never stalls the others for longer. 0 waits for
    /// ever. Default 10000.
    #[serde(default = "default_publish_deadline_ms")]
    pub publish_deadline_ms: u64,
    /// Whether publishers stamp every message with a unique id and a publish timestamp (the
    /// broker tells them when they resolve the topic). Default `false`.
    #[serde(default)]
    pub stamp: bool,
    /// Most headers one message may carry; a publish with more is refused. Default 32, in
    /// 0..=[`MAX_HEADERS_LIMIT`](crate::MAX_HEADERS_LIMIT) (0 refuses every header).
    #[serde(default = "default_max_headers")]
    pub max_headers: u16,
    /// Most bytes of header keys and values together one message may carry; a publish with more
    /// is refused. Default 4096, in 0..=[`MAX_HEADER_BYTES_LIMIT`](crate::MAX_HEADER_BYTES_LIMIT).
    #[serde(default = "default_max_header_bytes")]
    pub max_header_bytes: u32,
    /// Who may publish (`uid:…`, `gid:…`, see [`Principal`]); absent: every local user who
    /// can open the socket; empty: nobody.
    #[serde(default)]
    pub publish: Option<Vec<Principal>>,
    /// Who may subscribe (or consume, on a queue topic), as `publish`.
    #[serde(default)]
    pub subscribe: Option<Vec<Principal>>,
    /// Whether the topic keeps its messages in a log under `[storage] data_dir`, which must be
    /// set. Default `false`. The settings below mean something only when this is `true`: setting
    /// one on a topic that is not durable is a validation error; [`TopicConfig::durability`]
    /// gives them with their defaults filled in.
    #[serde(default)]
    pub durable: bool,
    /// Age past which whole log segments are deleted (`"24h"`, `"7d"`, `"1h30m"`, see
    /// [`ConfigDuration`]); absent: no age limit.
    #[serde(default)]
    pub retention: Option<ConfigDuration>,
    /// Total log bytes past which the oldest segments are deleted; absent: no limit. > 0.
    #[serde(default)]
    pub retention_bytes: Option<u64>,
    /// Messages retained past which the oldest segments are deleted; absent: no limit. > 0.
    #[serde(default)]
    pub retention_messages: Option<u64>,
    /// When the log is synced to disk ([`Fsync`]); absent: `always`.
    #[serde(default)]
    pub fsync: Option<Fsync>,
    /// How long a consumer group member has to ack a message before it is redelivered;
    /// absent: 30000. > 0.
    #[serde(default)]
    pub ack_timeout_ms: Option<u64>,
    /// Deliveries of one message to a group before it goes to the dead-letter topic; absent: 5.
    /// >= 1.
    #[serde(default)]
    pub max_deliveries: Option<u32>,
    /// Topic that receives messages delivered `max_deliveries` times without an ack; absent:
    /// `<topic>.dlq`. A valid topic name other than the topic's own.
    #[serde(default)]
    pub dead_letter: Option<String>,
}

/// Section `[topic_defaults]`: settings for topics that are not declared in `[[topics]]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TopicDefaults {
    /// Whether publishing or subscribing to an undeclared topic creates it. Default `false`: such
    /// requests are refused, so a misspelt topic name fails loudly.
    pub auto_create: bool,
    /// How long an auto-created topic may go without any subscriber and any publisher before the
    /// broker removes it, with its memory and shared memory; its next use creates it again.
    /// Declared topics are never removed this way. Default 60000; 0 keeps them for ever.
    pub idle_timeout_ms: u64,
    /// Routing of auto-created topics. Default `fanout`.
    pub routing: Routing,
    /// As [`TopicConfig::buffer_size`].
    pub buffer_size: usize,
    /// As [`TopicConfig::max_message_size`].
    pub max_message_size: usize,
    /// As [`TopicConfig::backpressure`].
    pub backpressure: Backpressure,
    /// As [`TopicConfig::prefetch`].
    pub prefetch: u32,
    /// As [`TopicConfig::publish_deadline_ms`].
    pub publish_deadline_ms: u64,
    /// As [`TopicConfig::stamp`].
    pub stamp: bool,
    /// As [`TopicConfig::max_headers`].
    pub max_headers: u16,
    /// As [`TopicConfig::max_header_bytes`].
    pub max_header_bytes: u32,
    /// As [`TopicConfig::publish`].
    pub publish: Option<Vec<Principal>>,
    /// As [`TopicConfig::subscribe`].
    pub subscribe: Option<Vec<Principal>>,
    /// As [`TopicConfig::durable`].
    pub durable: bool,
    /// As [`TopicConfig::retention`].
    pub retention: Option<ConfigDuration>,
    /// As [`TopicConfig::retention_bytes`].
    pub retention_bytes: Option<u64>,
    /// As [`TopicConfig::retention_messages`].
    pub retention_messages: Option<u64>,
    /// As [`TopicConfig::fsync`].
    pub fsync: Option<Fsync>,
    /// As [`TopicConfig::ack_timeout_ms`].
    pub ack_timeout_ms: Option<u64>,
    /// As [`TopicConfig::max_deliveries`].
    pub max_deliveries: Option<u32>,
    /// As [`TopicConfig::dead_letter`]; absent: each auto-created topic gets its own
    /// `<topic>.dlq`.
    pub dead_letter: Option<String>,
}

impl Default for TopicDefaults {
    fn default() -> Self {
        TopicDefaults {
            auto_create: false,
            idle_timeout_ms: DEFAULT_IDLE_TIMEOUT_MS,
            routing: Routing::Fanout,
            buffer_size: DEFAULT_BUFFER_SIZE,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            backpressure: Backpressure::default(),
            prefetch: DEFAULT_PREFETCH,
            publish_deadline_ms: DEFAULT_PUBLISH_DEADLINE_MS,
            stamp: DEFAULT_STAMP,
            max_headers: DEFAULT_MAX_HEADERS,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            publish: None,
            subscribe: None,
            durable: false,
            retention: None,
            retention_bytes: None,
            retention_messages: None,
            fsync: None,
            ack_timeout_ms: None,
            max_deliveries: None,
            dead_letter: None,
        }
    }
}

impl TopicDefaults {
    /// The configuration of an auto-created topic called `name`.
    ///
    /// The name is taken as given; the broker checks it before creating the topic.
    pub fn topic(&self, name: &str) -> TopicConfig {
        TopicConfig {
            name: name.to_owned(),
            routing: self.routing,
            buffer_size: self.buffer_size,
            max_message_size: self.max_message_size,
            backpressure: self.backpressure,
            prefetch: self.prefetch,
            publish_deadline_ms: self.publish_deadline_ms,
            stamp: self.stamp,
            max_headers: self.max_headers,
            max_header_bytes: self.max_header_bytes,
            publish: self.publish.clone(),
            subscribe: self.subscribe.clone(),
            durable: self.durable,
            retention: self.retention,
            retention_bytes: self.retention_bytes,
            retention_messages: self.retention_messages,
            fsync: self.fsync,
            ack_timeout_ms: self.ack_timeout_ms,
            max_deliveries: self.max_deliveries,
            dead_letter: self.dead_letter.clone(),
        }
    }
}

impl TopicConfig {
    /// The topic's durability settings with their defaults filled in, or `None` when it is not
    /// durable.
    pub fn durability(&self) -> Option<Durability> {
        self.durable.then(|| Durability {
            retention: self.retention,
            retention_bytes: self.retention_bytes,
            retention_messages: self.retention_messages,
            fsync: self.fsync.unwrap_or_default(),
            ack_timeout_ms: self.ack_timeout_ms.unwrap_or(DEFAULT_ACK_TIMEOUT_MS),
            max_deliveries: self.max_deliveries.unwrap_or(DEFAULT_MAX_DELIVERIES),
            dead_letter: self
                .dead_letter
                .clone()
                .unwrap_or_else(|| default_dead_letter(&self.name)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_topic_with_only_name_and_routing_gets_the_same_defaults_as_topic_defaults() {
        let declared: TopicConfig = toml::from_str("name = \"t\"\nrouting = \"fanout\"").unwrap();
        assert_eq!(declared, TopicDefaults::default().topic("t"));
    }

    #[test]
    fn topic_defaults_topic_copies_every_setting() {
        let defaults = TopicDefaults {
            auto_create: true,
            idle_timeout_ms: 5,
            routing: Routing::Queue,
            buffer_size: 7,
            max_message_size: 9,
            backpressure: Backpressure::Disconnect,
            prefetch: 3,
            publish_deadline_ms: 4,
            stamp: true,
            max_headers: 6,
            max_header_bytes: 8,
            publish: Some(vec!["uid:1".parse().unwrap()]),
            subscribe: Some(vec![]),
            durable: true,
            retention: "7d".parse().ok(),
            retention_bytes: Some(10),
            retention_messages: Some(11),
            fsync: Some(Fsync::Never),
            ack_timeout_ms: Some(12),
            max_deliveries: Some(13),
            dead_letter: Some("dead".to_owned()),
        };
        assert_eq!(
            defaults.topic("orders.eu"),
            TopicConfig {
                name: "orders.eu".to_owned(),
                routing: Routing::Queue,
                buffer_size: 7,
                max_message_size: 9,
                backpressure: Backpressure::Disconnect,
                prefetch: 3,
                publish_deadline_ms: 4,
                stamp: true,
                max_headers: 6,
                max_header_bytes: 8,
                publish: Some(vec!["uid:1".parse().unwrap()]),
                subscribe: Some(vec![]),
                durable: true,
                retention: "7d".parse().ok(),
                retention_bytes: Some(10),
                retention_messages: Some(11),
                fsync: Some(Fsync::Never),
                ack_timeout_ms: Some(12),
                max_deliveries: Some(13),
                dead_letter: Some("dead".to_owned()),
            }
        );
    }

    #[test]
    fn durability_fills_in_the_defaults_and_keeps_what_the_file_says() {
        let topic: TopicConfig = toml::from_str(
            "name = \"orders\"\nrouting = \"queue\"\ndurable = true\nretention = \"1h30m\"\n\
             fsync = \"interval:10ms\"\nmax_deliveries = 3\n",
        )
        .unwrap();
        assert_eq!(
            topic.durability(),
            Some(Durability {
                retention: ConfigDuration::from_millis(5_400_000),
                retention_bytes: None,
                retention_messages: None,
                fsync: Fsync::Interval(ConfigDuration::from_millis(10).unwrap()),
                ack_timeout_ms: 30_000,
                max_deliveries: 3,
                dead_letter: "orders.dlq".to_owned(),
            })
        );
        let plain: TopicConfig = toml::from_str("name = \"t\"\nrouting = \"fanout\"").unwrap();
        assert_eq!(plain.durability(), None);
    }

    #[test]
    fn a_malformed_retention_or_fsync_does_not_parse() {
        for (line, expected) in [
            ("retention = \"1y\"", "unknown unit `y`"),
            ("retention = \"\"", "empty duration"),
            ("fsync = \"sometimes\"", "unknown fsync policy"),
            (
                "fsync = \"interval:5\"",
                "expected a number followed by a unit",
            ),
        ] {
            let text = format!("name = \"t\"\nrouting = \"fanout\"\ndurable = true\n{line}\n");
            let err = toml::from_str::<TopicConfig>(&text).unwrap_err();
            assert!(
                err.message().contains(expected),
                "{line}: {}",
                err.message()
            );
        }
    }

    #[test]
    fn a_topic_without_routing_does_not_parse() {
        let err = toml::from_str::<TopicConfig>("name = \"t\"").unwrap_err();
        assert!(err.message().contains("missing field `routing`"));
    }
}
