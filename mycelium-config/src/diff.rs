//! What a reload changes: the difference between the config a broker runs and a newly loaded one.
//!
//! - [`ConfigDiff::between`] compares two validated configs: declared topics by name (their order
//!   in the file does not matter), every other setting field by field.
//! - Each changed setting says how it takes effect ([`Takes`]); the table below is the whole
//!   classification. Settings that do not take effect ([`Takes::Restart`], [`Takes::Refused`])
//!   stay at their running value in [`ConfigDiff::effective`], so diffing the next file against
//!   it reports them again.
//! - [`ConfigDiff::summary`] is the one line a reload logs; [`ConfigDiff::pending`] lists what the
//!   running broker does not follow.
//! - The comparison builds each section with an exhaustive struct literal, so a field added to a
//!   schema struct does not compile until it is classified here.
//!
//! | setting | takes | note |
//! |---|---|---|
//! | `server.socket_path` | Restart | |
//! | `server.max_connections` | Live | |
//! | `server.connection_timeout_ms` | Live | new connections |
//! | `server.max_pending_handshakes` | Live | |
//! | `server.socket_mode` | Live | applied to the socket file |
//! | `server.max_subscriptions_per_connection`, `server.max_subscriptions` | Live | checked at each subscribe; subscriptions held beyond it keep going |
//! | `server.max_inflight_bytes`, `server.shutdown_deadline_ms`, `server.heartbeat_interval_ms`, `server.heartbeat_misses` | Live | |
//! | `<topic>.routing` | Refused | a live topic cannot change routing: remove the topic, reload, then declare it again |
//! | `<topic>.buffer_size` | Live | |
//! | `<topic>.max_message_size` | Live | publishers see a raised limit when they resolve the topic again |
//! | `<topic>.backpressure` | Live | shared-memory rings keep theirs until re-attached |
//! | `<topic>.prefetch` | Later | consumers that subscribe from now on |
//! | `<topic>.publish_deadline_ms` | Live | |
//! | `<topic>.stamp` | Live | publishers follow it when they resolve the topic again |
//! | `<topic>.max_headers`, `<topic>.max_header_bytes` | Live | publishers see a raised limit when they resolve the topic again |
//! | `<topic>.publish` | Live | checked at every publish from now on |
//! | `<topic>.subscribe` | Live | checked at each subscribe; subscriptions made before keep going |
//! | `<topic>.durable` | Restart | a running topic keeps its storage; the broker opens or stops its log at the next start |
//! | `<topic>.retention`, `<topic>.retention_bytes`, `<topic>.retention_messages`, `<topic>.fsync`, `<topic>.ack_timeout_ms`, `<topic>.max_deliveries`, `<topic>.dead_letter` | Live | Restart when `durable` changes in the same reload (changed together with `durable`, so it waits for the restart that one needs) |
//! | `topic_defaults.auto_create` | Live | |
//! | `topic_defaults.idle_timeout_ms` | Live | every auto-created topic, already idle ones included |
//! | `topic_defaults.*` (the others) | Live | topics auto-created from now on |
//! | `performance.worker_threads` | Restart | |
//! | `performance.channel_capacity` | Later | subscriptions made from now on |
//! | `performance.batch_size` | Live | |
//! | `performance.flush_interval_ms` | Live | |
//! | `performance.busy_poll_us` | Live | |
//! | `shm.enabled` | Later | new shared-memory sessions; open ones keep their rings |
//! | `shm.ring_bytes` | Later | rings created from now on |
//! | `shm.max_subscribers` | Restart | a ring's slot count is fixed when the ring is created |
//! | `shm.max_publishers_per_topic` | Live | |
//! | `http.listen` | Live | the gateway starts, moves or stops |
//! | `http.*` (the others) | Live | requests and connections from now on |
//! | `metrics.enabled` | Live | |
//! | `storage.data_dir` | Restart | Live when it was unset (no log was open yet; durable topics created from now on keep theirs there) |
//! | `storage.segment_bytes` | Later | segments rolled from now on |
//!
//! A declared topic added to the file is [`ConfigDiff::added`], one taken out of it
//! [`ConfigDiff::removed`]; both take effect at once.
//!
//! ```
//! use std::path::Path;
//! use mycelium_config::{BrokerConfig, ConfigDiff};
//!
//! let load = |text: &str| BrokerConfig::from_toml_str_with_env(text, Path::new("broker.toml"), []);
//! let running = load("[[topics]]\nname = \"jobs\"\nrouting = \"queue\"\n")?;
//! let wanted = load("[[topics]]\nname = \"jobs\"\nrouting = \"fanout\"\nbuffer_size = 5\n")?;
//! let diff = ConfigDiff::between(&running, &wanted);
//! assert_eq!(
//!     diff.summary(),
//!     "!jobs.routing queue→fanout (refused: a live topic cannot change routing: remove the \
//!      topic, reload, then declare it again), ~jobs.buffer_size 10000→5"
//! );
//! let effective = diff.effective().topic("jobs").unwrap();
//! assert_eq!((effective.routing.as_str(), effective.buffer_size), ("queue", 5));
//! # Ok::<(), mycelium_config::ConfigError>(())
//! ```

use std::fmt::{self, Display};
use std::path::Path;

use crate::{
    display_access, BrokerConfig, HttpConfig, MetricsConfig, PerformanceConfig, Principal,
    ServerConfig, ShmConfig, StorageConfig, TopicConfig, TopicDefaults,
};

/// How a changed setting takes effect in a running broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Takes {
    /// At once, for everything that follows.
    Live,
    /// Only for what is created from now on (the note says what: new subscriptions, new
    /// shared-memory rings...).
    Later,
    /// Only after a restart: the running broker keeps the old value.
    Restart,
    /// Not applied: the running broker keeps the old value (the note says why and what to do).
    Refused,
}

impl Takes {
    /// Whether the running broker follows the new value once the diff is applied.
    const fn is_followed(self) -> bool {
        matches!(self, Takes::Live | Takes::Later)
    }
}

/// One setting that differs between the running config and the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingChange {
    /// Dotted path: `server.max_connections`, `shm.ring_bytes`, `topic_defaults.buffer_size`,
    /// and for a declared topic `<topic name>.<field>`, e.g. `execution.buffer_size`.
    pub field: String,
    /// The running value, as TOML would read it (enums in their lowercase spelling, `socket_mode`
    /// in octal such as `0660`, paths as displayed).
    pub old: String,
    /// The new value, written as `old` is.
    pub new: String,
    /// How the new value takes effect.
    pub takes: Takes,
    /// What a `Later` change reaches, why a `Refused` one is refused, or a caveat of a `Live`
    /// one; short and lowercase.
    pub note: Option<&'static str>,
}

impl Display for SettingChange {
    /// The change as [`ConfigDiff::summary`] lists it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let SettingChange {
            field,
            old,
            new,
            takes,
            note,
        } = self;
        match (takes, note) {
            (Takes::Live | Takes::Later, None) => write!(f, "~{field} {old}→{new}"),
            (Takes::Live | Takes::Later, Some(note)) => write!(f, "~{field} {old}→{new} ({note})"),
            (Takes::Restart, _) => write!(f, "~{field} {old}→{new} (needs restart)"),
            (Takes::Refused, None) => write!(f, "!{field} {old}→{new} (refused)"),
            (Takes::Refused, Some(note)) => write!(f, "!{field} {old}→{new} (refused: {note})"),
        }
    }
}

/// What a reload changes: the difference between the config a broker runs and a newly loaded
/// one.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigDiff {
    added: Vec<TopicConfig>,
    removed: Vec<String>,
    changes: Vec<SettingChange>,
    effective: BrokerConfig,
}

impl ConfigDiff {
    /// The difference from `running` to `wanted`, both validated configs.
    pub fn between(running: &BrokerConfig, wanted: &BrokerConfig) -> ConfigDiff {
        let mut changes = Changes::default();
        let mut added = Vec::new();
        let BrokerConfig {
            server,
            topics,
            topic_defaults,
            performance,
            shm,
            http,
            metrics,
            storage,
        } = wanted;
        // Sections in file order: the changes are listed in the order they are found.
        let server = changes.server(&running.server, server);
        let topics = topics
            .iter()
            .map(|topic| match running.topic(&topic.name) {
                Some(old) => changes.topic(old, topic),
                None => {
                    added.push(topic.clone());
                    topic.clone()
                }
            })
            .collect();
        let topic_defaults = changes.topic_defaults(&running.topic_defaults, topic_defaults);
        let performance = changes.performance(&running.performance, performance);
        let shm = changes.shm(&running.shm, shm);
        let http = changes.http(&running.http, http);
        let metrics = MetricsConfig {
            enabled: changes.setting(
                "metrics",
                "enabled",
                &running.metrics.enabled,
                &metrics.enabled,
                LIVE,
                plain,
            ),
        };
        let storage = changes.storage(&running.storage, storage);
        let removed = running
            .topics
            .iter()
            .filter(|topic| wanted.topic(&topic.name).is_none())
            .map(|topic| topic.name.clone())
            .collect();
        ConfigDiff {
            added,
            removed,
            changes: changes.list,
            effective: BrokerConfig {
                server,
                topics,
                topic_defaults,
                performance,
                shm,
                http,
                metrics,
                storage,
            },
        }
    }

    /// Declared topics in `wanted` and not in `running` (by name), in `wanted`'s order.
    pub fn added(&self) -> &[TopicConfig] {
        &self.added
    }

    /// Names of declared topics in `running` and not in `wanted`, in `running`'s order.
    pub fn removed(&self) -> &[String] {
        &self.removed
    }

    /// Every setting that differs, topic settings of topics in both configs included: sections in
    /// file order (`server`, topics in `wanted`'s order, `topic_defaults`, `performance`, `shm`),
    /// fields in struct order.
    pub fn changes(&self) -> &[SettingChange] {
        &self.changes
    }

    /// Nothing differs (a reordering of declared topics is no difference).
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changes.is_empty()
    }

    /// The config the broker runs once the diff is applied: `wanted`, with every
    /// [`Takes::Restart`] and [`Takes::Refused`] setting kept at its `running` value.
    pub fn effective(&self) -> &BrokerConfig {
        &self.effective
    }

    /// As [`ConfigDiff::effective`], by value.
    pub fn into_effective(self) -> BrokerConfig {
        self.effective
    }

    /// One line: added topics, then changes, then removed topics, comma-separated, e.g.
    /// `+topic signals, ~execution.buffer_size 50000→80000, -topic old`; `no change` when empty.
    ///
    /// A `Later` change ends in its note (`~shm.ring_bytes 4096→8192 (rings created from now
    /// on)`), a `Restart` one in `(needs restart)`, and a `Refused` one starts with `!` and ends
    /// in `(refused: <note>)`; a `Live` change with a note (a caveat) ends in it too.
    pub fn summary(&self) -> String {
        if self.is_empty() {
            return "no change".to_owned();
        }
        let added = self
            .added
            .iter()
            .map(|topic| format!("+topic {}", topic.name));
        let changes = self.changes.iter().map(ToString::to_string);
        let removed = self.removed.iter().map(|name| format!("-topic {name}"));
        added
            .chain(changes)
            .chain(removed)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The settings the running broker does not follow after this diff (`Restart` and `Refused`
    /// ones), one line each: `server.socket_path: /tmp/a.sock→/tmp/b.sock needs a restart`, or
    /// `execution.routing: queue→fanout refused: <note>`.
    pub fn pending(&self) -> Vec<String> {
        self.changes
            .iter()
            .filter_map(|change| {
                let SettingChange {
                    field, old, new, ..
                } = change;
                match (change.takes, change.note) {
                    (Takes::Live | Takes::Later, _) => None,
                    (Takes::Restart, _) => Some(format!("{field}: {old}→{new} needs a restart")),
                    (Takes::Refused, None) => Some(format!("{field}: {old}→{new} refused")),
                    (Takes::Refused, Some(note)) => {
                        Some(format!("{field}: {old}→{new} refused: {note}"))
                    }
                }
            })
            .collect()
    }
}

/// How one setting takes effect: the classification, one constant per distinct row.
#[derive(Debug, Clone, Copy)]
struct Rule {
    takes: Takes,
    note: Option<&'static str>,
}

impl Rule {
    const fn new(takes: Takes, note: &'static str) -> Rule {
        Rule {
            takes,
            note: Some(note),
        }
    }
}

const LIVE: Rule = Rule {
    takes: Takes::Live,
    note: None,
};
const RESTART: Rule = Rule {
    takes: Takes::Restart,
    note: None,
};
const NEW_SUBSCRIPTIONS: Rule = Rule::new(
    Takes::Live,
    "checked at each subscribe; subscriptions held beyond it keep going",
);
const NEW_CONNECTIONS: Rule = Rule::new(Takes::Live, "new connections");
const SOCKET_MODE: Rule = Rule::new(Takes::Live, "applied to the socket file");
const TOPIC_ROUTING: Rule = Rule::new(
    Takes::Refused,
    "a live topic cannot change routing: remove the topic, reload, then declare it again",
);
const TOPIC_MAX_MESSAGE_SIZE: Rule = Rule::new(
    Takes::Live,
    "publishers see a raised limit when they resolve the topic again",
);
const TOPIC_STAMP: Rule = Rule::new(
    Takes::Live,
    "publishers follow it when they resolve the topic again",
);
const TOPIC_BACKPRESSURE: Rule = Rule::new(
    Takes::Live,
    "shared-memory rings keep theirs until re-attached",
);
const PUBLISH_ACL: Rule = Rule::new(Takes::Live, "checked at every publish from now on");
const SUBSCRIBE_ACL: Rule = Rule::new(
    Takes::Live,
    "checked at each subscribe; subscriptions made before keep going",
);
const TOPIC_DURABLE: Rule = Rule::new(
    Takes::Restart,
    "a running topic keeps its storage; the broker opens or stops its log at the next start",
);
const DURABLE_FOLLOWS: Rule = Rule::new(
    Takes::Restart,
    "changed together with `durable`, so it waits for the restart that one needs",
);
const FIRST_DATA_DIR: Rule = Rule::new(
    Takes::Live,
    "no log was open yet; durable topics created from now on keep theirs there",
);
const SEGMENT_BYTES: Rule = Rule::new(Takes::Later, "segments rolled from now on");
const TOPIC_PREFETCH: Rule = Rule::new(Takes::Later, "consumers that subscribe from now on");
const IDLE_TIMEOUT: Rule = Rule::new(
    Takes::Live,
    "every auto-created topic, already idle ones included",
);
const AUTO_CREATED: Rule = Rule::new(Takes::Live, "topics auto-created from now on");
const CHANNEL_CAPACITY: Rule = Rule::new(Takes::Later, "subscriptions made from now on");
const SHM_ENABLED: Rule = Rule::new(
    Takes::Later,
    "new shared-memory sessions; open ones keep their rings",
);
const RING_BYTES: Rule = Rule::new(Takes::Later, "rings created from now on");
const MAX_SUBSCRIBERS: Rule = Rule::new(
    Takes::Restart,
    "a ring's slot count is fixed when the ring is created",
);

/// The changes found so far, in the order they were found.
#[derive(Default)]
struct Changes {
    list: Vec<SettingChange>,
}

impl Changes {
    /// Compares one setting and returns the value the broker runs with: `new` when the rule lets
    /// it take effect, `old` otherwise.
    fn setting<T: PartialEq + Clone>(
        &mut self,
        section: &str,
        name: &str,
        old: &T,
        new: &T,
        rule: Rule,
        show: fn(&T) -> String,
    ) -> T {
        if old == new {
            return new.clone();
        }
        self.list.push(SettingChange {
            field: format!("{section}.{name}"),
            old: show(old),
            new: show(new),
            takes: rule.takes,
            note: rule.note,
        });
        if rule.takes.is_followed() {
            new.clone()
        } else {
            old.clone()
        }
    }

    fn server(&mut self, old: &ServerConfig, new: &ServerConfig) -> ServerConfig {
        const S: &str = "server";
        ServerConfig {
            socket_path: self.setting(
                S,
                "socket_path",
                &old.socket_path,
                &new.socket_path,
                RESTART,
                path,
            ),
            max_connections: self.setting(
                S,
                "max_connections",
                &old.max_connections,
                &new.max_connections,
                LIVE,
                plain,
            ),
            connection_timeout_ms: self.setting(
                S,
                "connection_timeout_ms",
                &old.connection_timeout_ms,
                &new.connection_timeout_ms,
                NEW_CONNECTIONS,
                plain,
            ),
            max_pending_handshakes: self.setting(
                S,
                "max_pending_handshakes",
                &old.max_pending_handshakes,
                &new.max_pending_handshakes,
                LIVE,
                plain,
            ),
            socket_mode: self.setting(
                S,
                "socket_mode",
                &old.socket_mode,
                &new.socket_mode,
                SOCKET_MODE,
                octal,
            ),
            max_subscriptions_per_connection: self.setting(
                S,
                "max_subscriptions_per_connection",
                &old.max_subscriptions_per_connection,
                &new.max_subscriptions_per_connection,
                NEW_SUBSCRIPTIONS,
                plain,
            ),
            max_subscriptions: self.setting(
                S,
                "max_subscriptions",
                &old.max_subscriptions,
                &new.max_subscriptions,
                NEW_SUBSCRIPTIONS,
                plain,
            ),
            max_inflight_bytes: self.setting(
                S,
                "max_inflight_bytes",
                &old.max_inflight_bytes,
                &new.max_inflight_bytes,
                LIVE,
                plain,
            ),
            shutdown_deadline_ms: self.setting(
                S,
                "shutdown_deadline_ms",
                &old.shutdown_deadline_ms,
                &new.shutdown_deadline_ms,
                LIVE,
                plain,
            ),
            heartbeat_interval_ms: self.setting(
                S,
                "heartbeat_interval_ms",
                &old.heartbeat_interval_ms,
                &new.heartbeat_interval_ms,
                LIVE,
                plain,
            ),
            heartbeat_misses: self.setting(
                S,
                "heartbeat_misses",
                &old.heartbeat_misses,
                &new.heartbeat_misses,
                LIVE,
                plain,
            ),
        }
    }

    /// A topic declared in both configs (`old.name == new.name`).
    fn topic(&mut self, old: &TopicConfig, new: &TopicConfig) -> TopicConfig {
        let s = new.name.as_str();
        // The durability settings are live on a topic that stays durable (or stays not), but
        // follow `durable` when it changes: the running topic must never hold half of each.
        let durable_rule = if old.durable == new.durable {
            LIVE
        } else {
            DURABLE_FOLLOWS
        };
        TopicConfig {
            name: new.name.clone(),
            routing: self.setting(
                s,
                "routing",
                &old.routing,
                &new.routing,
                TOPIC_ROUTING,
                plain,
            ),
            buffer_size: self.setting(
                s,
                "buffer_size",
                &old.buffer_size,
                &new.buffer_size,
                LIVE,
                plain,
            ),
            max_message_size: self.setting(
                s,
                "max_message_size",
                &old.max_message_size,
                &new.max_message_size,
                TOPIC_MAX_MESSAGE_SIZE,
                plain,
            ),
            backpressure: self.setting(
                s,
                "backpressure",
                &old.backpressure,
                &new.backpressure,
                TOPIC_BACKPRESSURE,
                plain,
            ),
            prefetch: self.setting(
                s,
                "prefetch",
                &old.prefetch,
                &new.prefetch,
                TOPIC_PREFETCH,
                plain,
            ),
            publish_deadline_ms: self.setting(
                s,
                "publish_deadline_ms",
                &old.publish_deadline_ms,
                &new.publish_deadline_ms,
                LIVE,
                plain,
            ),
            stamp: self.setting(s, "stamp", &old.stamp, &new.stamp, TOPIC_STAMP, plain),
            max_headers: self.setting(
                s,
                "max_headers",
                &old.max_headers,
                &new.max_headers,
                TOPIC_MAX_MESSAGE_SIZE,
                plain,
            ),
            max_header_bytes: self.setting(
                s,
                "max_header_bytes",
                &old.max_header_bytes,
                &new.max_header_bytes,
                TOPIC_MAX_MESSAGE_SIZE,
                plain,
            ),
            publish: self.setting(
                s,
                "publish",
                &old.publish,
                &new.publish,
                PUBLISH_ACL,
                access,
            ),
            subscribe: self.setting(
                s,
                "subscribe",
                &old.subscribe,
                &new.subscribe,
                SUBSCRIBE_ACL,
                access,
            ),
            durable: self.setting(
                s,
                "durable",
                &old.durable,
                &new.durable,
                TOPIC_DURABLE,
                plain,
            ),
            retention: self.setting(
                s,
                "retention",
                &old.retention,
                &new.retention,
                durable_rule,
                or_none,
            ),
            retention_bytes: self.setting(
                s,
                "retention_bytes",
                &old.retention_bytes,
                &new.retention_bytes,
                durable_rule,
                or_none,
            ),
            retention_messages: self.setting(
                s,
                "retention_messages",
                &old.retention_messages,
                &new.retention_messages,
                durable_rule,
                or_none,
            ),
            fsync: self.setting(s, "fsync", &old.fsync, &new.fsync, durable_rule, or_default),
            ack_timeout_ms: self.setting(
                s,
                "ack_timeout_ms",
                &old.ack_timeout_ms,
                &new.ack_timeout_ms,
                durable_rule,
                or_default,
            ),
            max_deliveries: self.setting(
                s,
                "max_deliveries",
                &old.max_deliveries,
                &new.max_deliveries,
                durable_rule,
                or_default,
            ),
            dead_letter: self.setting(
                s,
                "dead_letter",
                &old.dead_letter,
                &new.dead_letter,
                durable_rule,
                or_default,
            ),
        }
    }

    fn topic_defaults(&mut self, old: &TopicDefaults, new: &TopicDefaults) -> TopicDefaults {
        const S: &str = "topic_defaults";
        TopicDefaults {
            auto_create: self.setting(
                S,
                "auto_create",
                &old.auto_create,
                &new.auto_create,
                LIVE,
                plain,
            ),
            idle_timeout_ms: self.setting(
                S,
                "idle_timeout_ms",
                &old.idle_timeout_ms,
                &new.idle_timeout_ms,
                IDLE_TIMEOUT,
                plain,
            ),
            routing: self.setting(
                S,
                "routing",
                &old.routing,
                &new.routing,
                AUTO_CREATED,
                plain,
            ),
            buffer_size: self.setting(
                S,
                "buffer_size",
                &old.buffer_size,
                &new.buffer_size,
                AUTO_CREATED,
                plain,
            ),
            max_message_size: self.setting(
                S,
                "max_message_size",
                &old.max_message_size,
                &new.max_message_size,
                AUTO_CREATED,
                plain,
            ),
            backpressure: self.setting(
                S,
                "backpressure",
                &old.backpressure,
                &new.backpressure,
                AUTO_CREATED,
                plain,
            ),
            prefetch: self.setting(
                S,
                "prefetch",
                &old.prefetch,
                &new.prefetch,
                AUTO_CREATED,
                plain,
            ),
            publish_deadline_ms: self.setting(
                S,
                "publish_deadline_ms",
                &old.publish_deadline_ms,
                &new.publish_deadline_ms,
                AUTO_CREATED,
                plain,
            ),
            stamp: self.setting(S, "stamp", &old.stamp, &new.stamp, AUTO_CREATED, plain),
            max_headers: self.setting(
                S,
                "max_headers",
                &old.max_headers,
                &new.max_headers,
                AUTO_CREATED,
                plain,
            ),
            max_header_bytes: self.setting(
                S,
                "max_header_bytes",
                &old.max_header_bytes,
                &new.max_header_bytes,
                AUTO_CREATED,
                plain,
            ),
            publish: self.setting(
                S,
                "publish",
                &old.publish,
                &new.publish,
                AUTO_CREATED,
                access,
            ),
            subscribe: self.setting(
                S,
                "subscribe",
                &old.subscribe,
                &new.subscribe,
                AUTO_CREATED,
                access,
            ),
            durable: self.setting(
                S,
                "durable",
                &old.durable,
                &new.durable,
                AUTO_CREATED,
                plain,
            ),
            retention: self.setting(
                S,
                "retention",
                &old.retention,
                &new.retention,
                AUTO_CREATED,
                or_none,
            ),
            retention_bytes: self.setting(
                S,
                "retention_bytes",
                &old.retention_bytes,
                &new.retention_bytes,
                AUTO_CREATED,
                or_none,
            ),
            retention_messages: self.setting(
                S,
                "retention_messages",
                &old.retention_messages,
                &new.retention_messages,
                AUTO_CREATED,
                or_none,
            ),
            fsync: self.setting(S, "fsync", &old.fsync, &new.fsync, AUTO_CREATED, or_default),
            ack_timeout_ms: self.setting(
                S,
                "ack_timeout_ms",
                &old.ack_timeout_ms,
                &new.ack_timeout_ms,
                AUTO_CREATED,
                or_default,
            ),
            max_deliveries: self.setting(
                S,
                "max_deliveries",
                &old.max_deliveries,
                &new.max_deliveries,
                AUTO_CREATED,
                or_default,
            ),
            dead_letter: self.setting(
                S,
                "dead_letter",
                &old.dead_letter,
                &new.dead_letter,
                AUTO_CREATED,
                or_default,
            ),
        }
    }

    fn performance(
        &mut self,
        old: &PerformanceConfig,
        new: &PerformanceConfig,
    ) -> PerformanceConfig {
        const S: &str = "performance";
        PerformanceConfig {
            worker_threads: self.setting(
                S,
                "worker_threads",
                &old.worker_threads,
                &new.worker_threads,
                RESTART,
                plain,
            ),
            channel_capacity: self.setting(
                S,
                "channel_capacity",
                &old.channel_capacity,
                &new.channel_capacity,
                CHANNEL_CAPACITY,
                plain,
            ),
            batch_size: self.setting(
                S,
                "batch_size",
                &old.batch_size,
                &new.batch_size,
                LIVE,
                plain,
            ),
            flush_interval_ms: self.setting(
                S,
                "flush_interval_ms",
                &old.flush_interval_ms,
                &new.flush_interval_ms,
                LIVE,
                plain,
            ),
            busy_poll_us: self.setting(
                S,
                "busy_poll_us",
                &old.busy_poll_us,
                &new.busy_poll_us,
                LIVE,
                plain,
            ),
        }
    }

    fn shm(&mut self, old: &ShmConfig, new: &ShmConfig) -> ShmConfig {
        const S: &str = "shm";
        ShmConfig {
            enabled: self.setting(S, "enabled", &old.enabled, &new.enabled, SHM_ENABLED, plain),
            ring_bytes: self.setting(
                S,
                "ring_bytes",
                &old.ring_bytes,
                &new.ring_bytes,
                RING_BYTES,
                plain,
            ),
            max_subscribers: self.setting(
                S,
                "max_subscribers",
                &old.max_subscribers,
                &new.max_subscribers,
                MAX_SUBSCRIBERS,
                plain,
            ),
            max_publishers_per_topic: self.setting(
                S,
                "max_publishers_per_topic",
                &old.max_publishers_per_topic,
                &new.max_publishers_per_topic,
                LIVE,
                plain,
            ),
        }
    }
}

impl Changes {
    fn http(&mut self, old: &HttpConfig, new: &HttpConfig) -> HttpConfig {
        const S: &str = "http";
        HttpConfig {
            listen: self.setting(S, "listen", &old.listen, &new.listen, LIVE, listen),
            max_body_bytes: self.setting(
                S,
                "max_body_bytes",
                &old.max_body_bytes,
                &new.max_body_bytes,
                LIVE,
                plain,
            ),
            max_websockets: self.setting(
                S,
                "max_websockets",
                &old.max_websockets,
                &new.max_websockets,
                LIVE,
                plain,
            ),
            subscription_idle_timeout_ms: self.setting(
                S,
                "subscription_idle_timeout_ms",
                &old.subscription_idle_timeout_ms,
                &new.subscription_idle_timeout_ms,
                LIVE,
                plain,
            ),
            max_wait_ms: self.setting(
                S,
                "max_wait_ms",
                &old.max_wait_ms,
                &new.max_wait_ms,
                LIVE,
                plain,
            ),
        }
    }
}

impl Changes {
    fn storage(&mut self, old: &StorageConfig, new: &StorageConfig) -> StorageConfig {
        const S: &str = "storage";
        StorageConfig {
            data_dir: self.setting(
                S,
                "data_dir",
                &old.data_dir,
                &new.data_dir,
                // Nothing is stored yet, so nothing moves: the new directory serves the durable
                // topics a reload adds, which would otherwise run without one.
                if old.data_dir.is_none() {
                    FIRST_DATA_DIR
                } else {
                    RESTART
                },
                data_dir,
            ),
            segment_bytes: self.setting(
                S,
                "segment_bytes",
                &old.segment_bytes,
                &new.segment_bytes,
                SEGMENT_BYTES,
                plain,
            ),
        }
    }
}

fn data_dir(value: &Option<std::path::PathBuf>) -> String {
    value.as_ref().map_or_else(|| "none".to_owned(), path)
}

/// An optional limit: absent is no limit.
fn or_none<T: Display>(value: &Option<T>) -> String {
    value.as_ref().map_or_else(|| "none".to_owned(), plain)
}

/// An optional setting whose absence means its documented default.
fn or_default<T: Display>(value: &Option<T>) -> String {
    value.as_ref().map_or_else(|| "default".to_owned(), plain)
}

fn listen(value: &Option<String>) -> String {
    value.clone().unwrap_or_else(|| "off".to_owned())
}

fn plain<T: Display>(value: &T) -> String {
    value.to_string()
}

fn path<P: AsRef<Path>>(value: &P) -> String {
    value.as_ref().display().to_string()
}

fn access(list: &Option<Vec<Principal>>) -> String {
    display_access(list.as_deref())
}

fn octal(mode: &u32) -> String {
    format!("{mode:04o}")
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::{Backpressure, Fsync, Routing};

    fn load(text: &str) -> BrokerConfig {
        BrokerConfig::from_toml_str_with_env(text, Path::new("broker.toml"), []).unwrap()
    }

    fn topic(name: &str, routing: Routing, buffer_size: usize) -> TopicConfig {
        TopicConfig {
            routing,
            buffer_size,
            ..TopicDefaults::default().topic(name)
        }
    }

    fn with_topics(topics: Vec<TopicConfig>) -> BrokerConfig {
        BrokerConfig {
            topics,
            ..BrokerConfig::default()
        }
    }

    #[test]
    fn identical_configs_give_an_empty_diff() {
        let config = load(
            "[server]\nmax_connections = 7\n\n[[topics]]\nname = \"a\"\nrouting = \"queue\"\n",
        );
        let diff = ConfigDiff::between(&config, &config.clone());
        assert!(diff.is_empty());
        assert_eq!(diff.summary(), "no change");
        assert!(diff.pending().is_empty());
        assert_eq!(diff.effective(), &config);
    }

    #[test]
    fn added_changed_and_removed_topics_read_as_the_issue_says() {
        let running = with_topics(vec![
            topic("execution", Routing::Queue, 50_000),
            topic("old", Routing::Fanout, 10),
        ]);
        let wanted = with_topics(vec![
            topic("execution", Routing::Queue, 80_000),
            topic("signals", Routing::Fanout, 10),
        ]);
        let diff = ConfigDiff::between(&running, &wanted);
        assert_eq!(
            diff.summary(),
            "+topic signals, ~execution.buffer_size 50000→80000, -topic old"
        );
        assert_eq!(diff.added(), &wanted.topics[1..]);
        assert_eq!(diff.removed(), ["old"]);
        assert_eq!(
            diff.changes(),
            [SettingChange {
                field: "execution.buffer_size".to_owned(),
                old: "50000".to_owned(),
                new: "80000".to_owned(),
                takes: Takes::Live,
                note: None,
            }]
        );
        assert_eq!(diff.effective(), &wanted);
        assert!(diff.pending().is_empty());
    }

    #[test]
    fn a_routing_change_is_refused_and_the_effective_config_keeps_the_old_routing_only() {
        let running = with_topics(vec![topic("execution", Routing::Queue, 50_000)]);
        let wanted = with_topics(vec![topic("execution", Routing::Fanout, 80_000)]);
        let diff = ConfigDiff::between(&running, &wanted);
        let routing = &diff.changes()[0];
        assert_eq!(routing.field, "execution.routing");
        assert_eq!(routing.takes, Takes::Refused);
        assert_eq!(
            diff.summary(),
            "!execution.routing queue→fanout (refused: a live topic cannot change routing: \
             remove the topic, reload, then declare it again), \
             ~execution.buffer_size 50000→80000"
        );
        let effective = diff.effective().topic("execution").unwrap();
        assert_eq!(effective.routing, Routing::Queue);
        assert_eq!(effective.buffer_size, 80_000);
        assert_eq!(
            diff.pending(),
            [
                "execution.routing: queue→fanout refused: a live topic cannot change routing: \
              remove the topic, reload, then declare it again"
            ]
        );
    }

    #[test]
    fn a_socket_path_change_needs_a_restart_and_is_pending() {
        let running = load("[server]\nsocket_path = \"/tmp/a.sock\"\n");
        let wanted = load("[server]\nsocket_path = \"/tmp/b.sock\"\nmax_connections = 5\n");
        let diff = ConfigDiff::between(&running, &wanted);
        assert_eq!(diff.changes()[0].takes, Takes::Restart);
        assert_eq!(
            diff.summary(),
            "~server.socket_path /tmp/a.sock→/tmp/b.sock (needs restart), \
             ~server.max_connections 1000→5"
        );
        assert_eq!(
            diff.effective().server.socket_path,
            Path::new("/tmp/a.sock")
        );
        assert_eq!(diff.effective().server.max_connections, 5);
        assert_eq!(
            diff.pending(),
            ["server.socket_path: /tmp/a.sock→/tmp/b.sock needs a restart"]
        );
    }

    #[test]
    fn diffing_the_next_file_against_the_effective_config_reports_the_restart_change_again() {
        let running = load("[server]\nsocket_path = \"/tmp/a.sock\"\n");
        let first = load("[server]\nsocket_path = \"/tmp/b.sock\"\nmax_connections = 5\n");
        let effective = ConfigDiff::between(&running, &first).into_effective();
        let second = load("[server]\nsocket_path = \"/tmp/b.sock\"\nmax_connections = 6\n");
        let diff = ConfigDiff::between(&effective, &second);
        assert_eq!(
            diff.summary(),
            "~server.socket_path /tmp/a.sock→/tmp/b.sock (needs restart), \
             ~server.max_connections 5→6"
        );
        assert_eq!(
            diff.pending(),
            ["server.socket_path: /tmp/a.sock→/tmp/b.sock needs a restart"]
        );
    }

    #[test]
    fn reordering_topics_only_is_no_change() {
        let a = topic("a", Routing::Fanout, 1);
        let b = topic("b", Routing::Queue, 2);
        let diff = ConfigDiff::between(
            &with_topics(vec![a.clone(), b.clone()]),
            &with_topics(vec![b, a]),
        );
        assert!(diff.is_empty());
        assert_eq!(diff.summary(), "no change");
    }

    #[test]
    fn later_notes_appear_in_the_summary() {
        let running = load("[shm]\nring_bytes = 4096\n");
        let wanted = load("[shm]\nring_bytes = 8192\n");
        let diff = ConfigDiff::between(&running, &wanted);
        assert_eq!(
            diff.summary(),
            "~shm.ring_bytes 4096→8192 (rings created from now on)"
        );
        assert_eq!(diff.effective().shm.ring_bytes, 8192);
    }

    #[test]
    fn a_first_data_dir_is_live_so_a_durable_topic_added_with_it_has_one() {
        let running = load("[[topics]]\nname = \"a\"\nrouting = \"fanout\"\n");
        let wanted = load(
            "[storage]\ndata_dir = \"/var/lib/m\"\n\
             [[topics]]\nname = \"a\"\nrouting = \"fanout\"\n\
             [[topics]]\nname = \"b\"\nrouting = \"fanout\"\ndurable = true\n",
        );
        let diff = ConfigDiff::between(&running, &wanted);
        assert_eq!(
            diff.summary(),
            "+topic b, ~storage.data_dir none→/var/lib/m (no log was open yet; durable topics \
             created from now on keep theirs there)"
        );
        assert_eq!(diff.effective(), &wanted);
        assert!(diff.effective().validate().is_empty());
        // Once set, moving it needs a restart, and so does turning a running topic durable.
        let moved = load(
            "[storage]\ndata_dir = \"/srv/m\"\n\
             [[topics]]\nname = \"a\"\nrouting = \"fanout\"\ndurable = true\n\
             retention = \"1d\"\n\
             [[topics]]\nname = \"b\"\nrouting = \"fanout\"\ndurable = true\n\
             retention = \"1d\"\n",
        );
        let diff = ConfigDiff::between(&wanted, &moved);
        assert_eq!(
            diff.pending(),
            [
                "a.durable: false→true needs a restart",
                "a.retention: none→1d needs a restart",
                "storage.data_dir: /var/lib/m→/srv/m needs a restart",
            ]
        );
        assert_eq!(
            diff.effective().topic("b").and_then(|t| t.retention),
            "1d".parse().ok()
        );
        assert!(diff.effective().validate().is_empty());
    }

    #[test]
    fn every_field_of_every_section_is_classified_as_documented() {
        let mut running = with_topics(vec![
            TopicConfig {
                name: "t".to_owned(),
                routing: Routing::Fanout,
                buffer_size: 1,
                max_message_size: 2,
                backpressure: Backpressure::Block,
                prefetch: 3,
                publish_deadline_ms: 4,
                stamp: false,
                max_headers: 5,
                max_header_bytes: 6,
                publish: None,
                subscribe: Some(vec![]),
                durable: true,
                retention: "1h".parse().ok(),
                retention_bytes: Some(7),
                retention_messages: Some(8),
                fsync: None,
                ack_timeout_ms: None,
                max_deliveries: None,
                dead_letter: None,
            },
            TopicConfig {
                routing: Routing::Queue,
                ..TopicDefaults::default().topic("u")
            },
        ]);
        running.storage.data_dir = Some(PathBuf::from("/var/lib/a"));
        running.topic_defaults.routing = Routing::Queue;
        let wanted = BrokerConfig {
            server: ServerConfig {
                socket_path: PathBuf::from("/run/m.sock"),
                max_connections: 9,
                connection_timeout_ms: 8,
                max_pending_handshakes: 10,
                socket_mode: 0o600,
                max_subscriptions_per_connection: 5,
                max_subscriptions: 6,
                max_inflight_bytes: 2,
                shutdown_deadline_ms: 1,
                heartbeat_interval_ms: 7,
                heartbeat_misses: 4,
            },
            topics: vec![
                TopicConfig {
                    name: "t".to_owned(),
                    routing: Routing::Fanout,
                    buffer_size: 11,
                    max_message_size: 12,
                    backpressure: Backpressure::DropNewest,
                    prefetch: 13,
                    publish_deadline_ms: 14,
                    stamp: true,
                    max_headers: 15,
                    max_header_bytes: 16,
                    publish: Some(vec!["uid:1".parse().expect("principal")]),
                    subscribe: None,
                    durable: true,
                    retention: "2h".parse().ok(),
                    retention_bytes: Some(17),
                    retention_messages: None,
                    fsync: Some(Fsync::Never),
                    ack_timeout_ms: Some(18),
                    max_deliveries: Some(19),
                    dead_letter: Some("t.dead".to_owned()),
                },
                TopicConfig {
                    durable: true,
                    fsync: Some(Fsync::Always),
                    ..TopicDefaults::default().topic("u")
                },
            ],
            topic_defaults: TopicDefaults {
                auto_create: true,
                idle_timeout_ms: 20,
                routing: Routing::Fanout,
                buffer_size: 21,
                max_message_size: 22,
                backpressure: Backpressure::DropOldest,
                prefetch: 23,
                publish_deadline_ms: 24,
                stamp: true,
                max_headers: 25,
                max_header_bytes: 26,
                publish: Some(vec![]),
                subscribe: Some(vec!["gid:ops".parse().expect("principal")]),
                durable: true,
                retention: "7d".parse().ok(),
                retention_bytes: Some(27),
                retention_messages: Some(28),
                fsync: "interval:10ms".parse().ok(),
                ack_timeout_ms: Some(29),
                max_deliveries: Some(30),
                dead_letter: Some("dlq".to_owned()),
            },
            performance: PerformanceConfig {
                worker_threads: 31,
                channel_capacity: 32,
                batch_size: 33,
                flush_interval_ms: 34,
                busy_poll_us: 35,
            },
            shm: ShmConfig {
                enabled: false,
                ring_bytes: 8192,
                max_subscribers: 41,
                max_publishers_per_topic: 42,
            },
            http: HttpConfig {
                listen: Some("127.0.0.1:8080".to_owned()),
                max_body_bytes: 51,
                max_websockets: 52,
                subscription_idle_timeout_ms: 53,
                max_wait_ms: 54,
            },
            metrics: MetricsConfig { enabled: false },
            storage: StorageConfig {
                data_dir: Some(PathBuf::from("/var/lib/b")),
                segment_bytes: 4096,
            },
        };
        let diff = ConfigDiff::between(&running, &wanted);
        let got: Vec<(&str, &str, &str, Takes)> = diff
            .changes()
            .iter()
            .map(|c| (c.field.as_str(), c.old.as_str(), c.new.as_str(), c.takes))
            .collect();
        use Takes::{Later, Live, Refused, Restart};
        assert_eq!(
            got,
            [
                (
                    "server.socket_path",
                    "/tmp/mycelium.sock",
                    "/run/m.sock",
                    Restart
                ),
                ("server.max_connections", "1000", "9", Live),
                ("server.connection_timeout_ms", "5000", "8", Live),
                ("server.max_pending_handshakes", "128", "10", Live),
                ("server.socket_mode", "0660", "0600", Live),
                ("server.max_subscriptions_per_connection", "1024", "5", Live),
                ("server.max_subscriptions", "65536", "6", Live),
                ("server.max_inflight_bytes", "1073741824", "2", Live),
                ("server.shutdown_deadline_ms", "10000", "1", Live),
                ("server.heartbeat_interval_ms", "10000", "7", Live),
                ("server.heartbeat_misses", "3", "4", Live),
                ("t.buffer_size", "1", "11", Live),
                ("t.max_message_size", "2", "12", Live),
                ("t.backpressure", "block", "drop_newest", Live),
                ("t.prefetch", "3", "13", Later),
                ("t.publish_deadline_ms", "4", "14", Live),
                ("t.stamp", "false", "true", Live),
                ("t.max_headers", "5", "15", Live),
                ("t.max_header_bytes", "6", "16", Live),
                ("t.publish", "everyone", "[\"uid:1\"]", Live),
                ("t.subscribe", "[]", "everyone", Live),
                ("t.retention", "1h", "2h", Live),
                ("t.retention_bytes", "7", "17", Live),
                ("t.retention_messages", "8", "none", Live),
                ("t.fsync", "default", "never", Live),
                ("t.ack_timeout_ms", "default", "18", Live),
                ("t.max_deliveries", "default", "19", Live),
                ("t.dead_letter", "default", "t.dead", Live),
                ("u.routing", "queue", "fanout", Refused),
                ("u.durable", "false", "true", Restart),
                ("u.fsync", "default", "always", Restart),
                ("topic_defaults.auto_create", "false", "true", Live),
                ("topic_defaults.idle_timeout_ms", "60000", "20", Live),
                ("topic_defaults.routing", "queue", "fanout", Live),
                ("topic_defaults.buffer_size", "10000", "21", Live),
                ("topic_defaults.max_message_size", "65536", "22", Live),
                ("topic_defaults.backpressure", "block", "drop_oldest", Live),
                ("topic_defaults.prefetch", "256", "23", Live),
                ("topic_defaults.publish_deadline_ms", "10000", "24", Live),
                ("topic_defaults.stamp", "false", "true", Live),
                ("topic_defaults.max_headers", "32", "25", Live),
                ("topic_defaults.max_header_bytes", "4096", "26", Live),
                ("topic_defaults.publish", "everyone", "[]", Live),
                (
                    "topic_defaults.subscribe",
                    "everyone",
                    "[\"gid:ops\"]",
                    Live
                ),
                ("topic_defaults.durable", "false", "true", Live),
                ("topic_defaults.retention", "none", "7d", Live),
                ("topic_defaults.retention_bytes", "none", "27", Live),
                ("topic_defaults.retention_messages", "none", "28", Live),
                ("topic_defaults.fsync", "default", "interval:10ms", Live),
                ("topic_defaults.ack_timeout_ms", "default", "29", Live),
                ("topic_defaults.max_deliveries", "default", "30", Live),
                ("topic_defaults.dead_letter", "default", "dlq", Live),
                ("performance.worker_threads", "2", "31", Restart),
                ("performance.channel_capacity", "100000", "32", Later),
                ("performance.batch_size", "1000", "33", Live),
                ("performance.flush_interval_ms", "1", "34", Live),
                ("performance.busy_poll_us", "50", "35", Live),
                ("shm.enabled", "true", "false", Later),
                ("shm.ring_bytes", "4194304", "8192", Later),
                ("shm.max_subscribers", "64", "41", Restart),
                ("shm.max_publishers_per_topic", "16", "42", Live),
                ("http.listen", "off", "127.0.0.1:8080", Live),
                ("http.max_body_bytes", "1048576", "51", Live),
                ("http.max_websockets", "16384", "52", Live),
                ("http.subscription_idle_timeout_ms", "60000", "53", Live),
                ("http.max_wait_ms", "30000", "54", Live),
                ("metrics.enabled", "true", "false", Live),
                ("storage.data_dir", "/var/lib/a", "/var/lib/b", Restart),
                ("storage.segment_bytes", "67108864", "4096", Later),
            ]
        );
        let noted: Vec<(&str, &str)> = diff
            .changes()
            .iter()
            .filter_map(|c| Some((c.field.as_str(), c.note?)))
            .collect();
        let auto = "topics auto-created from now on";
        assert_eq!(
            noted,
            [
                ("server.connection_timeout_ms", "new connections"),
                ("server.socket_mode", "applied to the socket file"),
                (
                    "server.max_subscriptions_per_connection",
                    "checked at each subscribe; subscriptions held beyond it keep going"
                ),
                (
                    "server.max_subscriptions",
                    "checked at each subscribe; subscriptions held beyond it keep going"
                ),
                (
                    "t.max_message_size",
                    "publishers see a raised limit when they resolve the topic again"
                ),
                (
                    "t.backpressure",
                    "shared-memory rings keep theirs until re-attached"
                ),
                ("t.prefetch", "consumers that subscribe from now on"),
                (
                    "t.stamp",
                    "publishers follow it when they resolve the topic again"
                ),
                (
                    "t.max_headers",
                    "publishers see a raised limit when they resolve the topic again"
                ),
                (
                    "t.max_header_bytes",
                    "publishers see a raised limit when they resolve the topic again"
                ),
                ("t.publish", "checked at every publish from now on"),
                (
                    "t.subscribe",
                    "checked at each subscribe; subscriptions made before keep going"
                ),
                (
                    "u.routing",
                    "a live topic cannot change routing: remove the topic, reload, then declare \
                     it again"
                ),
                (
                    "u.durable",
                    "a running topic keeps its storage; the broker opens or stops its log at the \
                     next start"
                ),
                (
                    "u.fsync",
                    "changed together with `durable`, so it waits for the restart that one needs"
                ),
                (
                    "topic_defaults.idle_timeout_ms",
                    "every auto-created topic, already idle ones included"
                ),
                ("topic_defaults.routing", auto),
                ("topic_defaults.buffer_size", auto),
                ("topic_defaults.max_message_size", auto),
                ("topic_defaults.backpressure", auto),
                ("topic_defaults.prefetch", auto),
                ("topic_defaults.publish_deadline_ms", auto),
                ("topic_defaults.stamp", auto),
                ("topic_defaults.max_headers", auto),
                ("topic_defaults.max_header_bytes", auto),
                ("topic_defaults.publish", auto),
                ("topic_defaults.subscribe", auto),
                ("topic_defaults.durable", auto),
                ("topic_defaults.retention", auto),
                ("topic_defaults.retention_bytes", auto),
                ("topic_defaults.retention_messages", auto),
                ("topic_defaults.fsync", auto),
                ("topic_defaults.ack_timeout_ms", auto),
                ("topic_defaults.max_deliveries", auto),
                ("topic_defaults.dead_letter", auto),
                (
                    "performance.channel_capacity",
                    "subscriptions made from now on"
                ),
                (
                    "shm.enabled",
                    "new shared-memory sessions; open ones keep their rings"
                ),
                ("shm.ring_bytes", "rings created from now on"),
                (
                    "shm.max_subscribers",
                    "a ring's slot count is fixed when the ring is created"
                ),
                ("storage.segment_bytes", "segments rolled from now on"),
            ]
        );
        // The effective config is `wanted` with the Restart and Refused settings kept.
        let mut expected = wanted.clone();
        expected.server.socket_path = running.server.socket_path.clone();
        expected.topics[1].routing = Routing::Queue;
        expected.performance.worker_threads = running.performance.worker_threads;
        expected.shm.max_subscribers = running.shm.max_subscribers;
        expected.topics[1].durable = false;
        expected.topics[1].fsync = None;
        expected.storage.data_dir = running.storage.data_dir.clone();
        assert_eq!(diff.effective(), &expected);
        assert!(running.validate().is_empty());
        assert!(wanted.validate().is_empty());
        assert!(diff.effective().validate().is_empty());
        assert_eq!(diff.pending().len(), 7);
    }
}
