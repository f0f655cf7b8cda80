//! Environment overrides: `MYCELIUM_<SECTION>__<FIELD>=value` replaces one setting of the file.
//!
//! - Only variables that start with `MYCELIUM_` and contain `__` are overrides; others (such as
//!   `MYCELIUM_SOCKET` or `MYCELIUM_LOG`, read by the CLI) are ignored.
//! - Sections are `SERVER`, `TOPIC_DEFAULTS`, `PERFORMANCE`, `SHM`, `HTTP`, `METRICS`, `STORAGE`,
//!   and `TOPICS__<TOPIC>` where `<TOPIC>`
//!   is a declared topic's name upper-cased with `.` and `-` turned into `_`. Section, field and
//!   topic are matched case-insensitively.
//! - An override that names no section, field or topic, or whose value does not parse as the field's
//!   type, is an error naming the variable: a typo must never be ignored silently. Overrides cannot
//!   declare or rename topics.
//! - Values: integers in decimal; booleans `true`/`false`/`1`/`0`; `routing` and `backpressure` as in
//!   TOML; `socket_mode` in octal (`0660`); `socket_path` and `data_dir` taken verbatim;
//!   `retention` and `fsync` as in TOML (`24h`, `interval:10ms`). An empty value unsets a
//!   setting the file may leave out (`http.listen`, `storage.data_dir`, and a topic's
//!   `retention*`, `fsync`, `ack_timeout_ms`, `max_deliveries`, `dead_letter`).
//! - Overrides are applied in variable-name order, so the outcome never depends on the order the
//!   environment lists them.
//!
//! ```
//! use std::path::Path;
//! use mycelium_config::BrokerConfig;
//!
//! let env = [("MYCELIUM_SERVER__SOCKET_PATH".to_owned(), "/run/m.sock".to_owned())];
//! let config = BrokerConfig::from_toml_str_with_env("", Path::new("broker.toml"), env)?;
//! assert_eq!(config.server.socket_path, Path::new("/run/m.sock"));
//! # Ok::<(), mycelium_config::ConfigError>(())
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::str::FromStr;

use crate::schema::parse_octal_mode;
use crate::{
    Backpressure, BrokerConfig, ConfigDuration, ConfigError, Fsync, HttpConfig, MetricsConfig,
    PerformanceConfig, Routing, ServerConfig, ShmConfig, StorageConfig, TopicConfig, TopicDefaults,
};

const PREFIX: &str = "MYCELIUM_";
const SEPARATOR: &str = "__";

/// Which fields the environment set: dotted field path to variable name.
#[derive(Debug, Default)]
pub(crate) struct Overrides {
    by_field: BTreeMap<String, String>,
}

impl Overrides {
    /// The variable that set `field`, if one did.
    pub(crate) fn var_for(&self, field: &str) -> Option<&str> {
        self.by_field.get(field).map(String::as_str)
    }
}

/// Whether a variable is meant as an override.
fn is_override(name: &str) -> bool {
    name.starts_with(PREFIX) && name.contains(SEPARATOR)
}

/// The override variables of this process.
///
/// `std::env::vars` panics on a name or value that is not UTF-8; this reads the raw environment
/// instead and turns such an override into an error naming it.
pub(crate) fn process_env() -> Result<Vec<(String, String)>, ConfigError> {
    let mut vars = Vec::new();
    for (name, value) in std::env::vars_os() {
        let lossy_name = name.to_string_lossy();
        if !is_override(&lossy_name) {
            continue;
        }
        let (Some(name), Some(value)) = (name.to_str(), value.to_str()) else {
            return Err(ConfigError::Env {
                var: lossy_name.into_owned(),
                message: "name or value is not valid UTF-8".to_owned(),
            });
        };
        vars.push((name.to_owned(), value.to_owned()));
    }
    Ok(vars)
}

/// Applies every override in `env` to `config`; variables that are not overrides are skipped.
pub(crate) fn apply(
    config: &mut BrokerConfig,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Overrides, ConfigError> {
    let mut vars: Vec<(String, String)> = env
        .into_iter()
        .filter(|(name, _)| is_override(name))
        .collect();
    // Stable sort: if a caller passes one name twice, the later value still wins.
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    let mut overrides = Overrides::default();
    for (var, value) in vars {
        match apply_one(config, &var, &value) {
            Ok(field) => {
                overrides.by_field.insert(field, var);
            }
            Err(message) => return Err(ConfigError::Env { var, message }),
        }
    }
    Ok(overrides)
}

/// Applies one override and returns the dotted path of the field it set.
fn apply_one(config: &mut BrokerConfig, var: &str, value: &str) -> Result<String, String> {
    let key = var[PREFIX.len()..].to_ascii_uppercase();
    let Some((section, rest)) = key.split_once(SEPARATOR) else {
        return Err(format!(
            "expected {PREFIX}<SECTION>{SEPARATOR}<FIELD>, such as MYCELIUM_SERVER__SOCKET_PATH"
        ));
    };
    match section {
        "SERVER" => set_server(&mut config.server, rest, value).map(|f| format!("server.{f}")),
        "PERFORMANCE" => set_performance(&mut config.performance, rest, value)
            .map(|f| format!("performance.{f}")),
        "SHM" => set_shm(&mut config.shm, rest, value).map(|f| format!("shm.{f}")),
        "HTTP" => set_http(&mut config.http, rest, value).map(|f| format!("http.{f}")),
        "METRICS" => set_metrics(&mut config.metrics, rest, value).map(|f| format!("metrics.{f}")),
        "STORAGE" => set_storage(&mut config.storage, rest, value).map(|f| format!("storage.{f}")),
        "TOPIC_DEFAULTS" => set_topic_defaults(&mut config.topic_defaults, rest, value)
            .map(|f| format!("topic_defaults.{f}")),
        "TOPICS" => {
            // Field names never contain `__`, so the last separator splits the topic from the field
            // even when the topic's own name contains one.
            let Some((topic, field)) = rest.rsplit_once(SEPARATOR) else {
                return Err(format!(
                    "expected {PREFIX}TOPICS{SEPARATOR}<TOPIC>{SEPARATOR}<FIELD>, such as \
                     MYCELIUM_TOPICS__MARKET_DATA__BUFFER_SIZE"
                ));
            };
            let index = find_topic(&config.topics, topic)?;
            if field == "NAME" {
                return Err(
                    "topic names cannot be overridden; rename the topic in the file".into(),
                );
            }
            TopicFields::of_topic(&mut config.topics[index])
                .set(field, value)
                .map(|f| format!("topics[{index}].{f}"))
        }
        other => Err(format!(
            "unknown section `{other}`, expected SERVER, TOPICS, TOPIC_DEFAULTS, PERFORMANCE, SHM, \
             HTTP, METRICS or STORAGE"
        )),
    }
}

/// The key a topic answers to in an override: its name upper-cased, `.` and `-` made `_`.
fn topic_key(name: &str) -> String {
    name.chars()
        .map(|c| match c {
            '.' | '-' => '_',
            c => c.to_ascii_uppercase(),
        })
        .collect()
}

fn find_topic(topics: &[TopicConfig], key: &str) -> Result<usize, String> {
    let mut matches = topics
        .iter()
        .enumerate()
        .filter(|(_, topic)| topic_key(&topic.name) == key);
    match (matches.next(), matches.next()) {
        (Some((index, _)), None) => Ok(index),
        (Some((_, first)), Some((_, second))) => Err(format!(
            "`{key}` matches both topic `{}` and topic `{}`; rename one to override it",
            first.name, second.name
        )),
        (None, _) => {
            let known: Vec<String> = topics.iter().map(|t| topic_key(&t.name)).collect();
            Err(if known.is_empty() {
                format!("no topic `{key}`: the file declares no topics")
            } else {
                format!("no topic `{key}`, declared: {}", known.join(", "))
            })
        }
    }
}

fn set_server(server: &mut ServerConfig, field: &str, value: &str) -> Result<&'static str, String> {
    match field {
        "SOCKET_PATH" => {
            server.socket_path = PathBuf::from(value);
            Ok("socket_path")
        }
        "MAX_CONNECTIONS" => set(
            &mut server.max_connections,
            parse_number(value)?,
            "max_connections",
        ),
        "CONNECTION_TIMEOUT_MS" => set(
            &mut server.connection_timeout_ms,
            parse_number(value)?,
            "connection_timeout_ms",
        ),
        "SOCKET_MODE" => set(
            &mut server.socket_mode,
            parse_octal_mode(value.trim())?,
            "socket_mode",
        ),
        "MAX_SUBSCRIPTIONS_PER_CONNECTION" => set(
            &mut server.max_subscriptions_per_connection,
            parse_number(value)?,
            "max_subscriptions_per_connection",
        ),
        "MAX_SUBSCRIPTIONS" => set(
            &mut server.max_subscriptions,
            parse_number(value)?,
            "max_subscriptions",
        ),
        "MAX_INFLIGHT_BYTES" => set(
            &mut server.max_inflight_bytes,
            parse_number(value)?,
            "max_inflight_bytes",
        ),
        "SHUTDOWN_DEADLINE_MS" => set(
            &mut server.shutdown_deadline_ms,
            parse_number(value)?,
            "shutdown_deadline_ms",
        ),
        "HEARTBEAT_INTERVAL_MS" => set(
            &mut server.heartbeat_interval_ms,
            parse_number(value)?,
            "heartbeat_interval_ms",
        ),
        "HEARTBEAT_MISSES" => set(
            &mut server.heartbeat_misses,
            parse_number(value)?,
            "heartbeat_misses",
        ),
        other => Err(unknown_field(
            other,
            "server",
            "SOCKET_PATH, MAX_CONNECTIONS, CONNECTION_TIMEOUT_MS, SOCKET_MODE, \
             MAX_SUBSCRIPTIONS_PER_CONNECTION, MAX_SUBSCRIPTIONS, MAX_INFLIGHT_BYTES, \
             SHUTDOWN_DEADLINE_MS, \
             HEARTBEAT_INTERVAL_MS, \
             HEARTBEAT_MISSES",
        )),
    }
}

fn set_performance(
    performance: &mut PerformanceConfig,
    field: &str,
    value: &str,
) -> Result<&'static str, String> {
    match field {
        "WORKER_THREADS" => set(
            &mut performance.worker_threads,
            parse_number(value)?,
            "worker_threads",
        ),
        "CHANNEL_CAPACITY" => set(
            &mut performance.channel_capacity,
            parse_number(value)?,
            "channel_capacity",
        ),
        "BATCH_SIZE" => set(
            &mut performance.batch_size,
            parse_number(value)?,
            "batch_size",
        ),
        "FLUSH_INTERVAL_MS" => set(
            &mut performance.flush_interval_ms,
            parse_number(value)?,
            "flush_interval_ms",
        ),
        "BUSY_POLL_US" => set(
            &mut performance.busy_poll_us,
            parse_number(value)?,
            "busy_poll_us",
        ),
        other => Err(unknown_field(
            other,
            "performance",
            "WORKER_THREADS, CHANNEL_CAPACITY, BATCH_SIZE, FLUSH_INTERVAL_MS, BUSY_POLL_US",
        )),
    }
}

fn set_http(http: &mut HttpConfig, field: &str, value: &str) -> Result<&'static str, String> {
    match field {
        // An empty value turns the gateway off, as leaving `listen` out of the file does.
        "LISTEN" => set(
            &mut http.listen,
            Some(value.to_owned()).filter(|v| !v.is_empty()),
            "listen",
        ),
        "MAX_BODY_BYTES" => set(
            &mut http.max_body_bytes,
            parse_number(value)?,
            "max_body_bytes",
        ),
        "MAX_WEBSOCKETS" => set(
            &mut http.max_websockets,
            parse_number(value)?,
            "max_websockets",
        ),
        "SUBSCRIPTION_IDLE_TIMEOUT_MS" => set(
            &mut http.subscription_idle_timeout_ms,
            parse_number(value)?,
            "subscription_idle_timeout_ms",
        ),
        "MAX_WAIT_MS" => set(&mut http.max_wait_ms, parse_number(value)?, "max_wait_ms"),
        other => Err(unknown_field(
            other,
            "http",
            "LISTEN, MAX_BODY_BYTES, MAX_WEBSOCKETS, SUBSCRIPTION_IDLE_TIMEOUT_MS, MAX_WAIT_MS",
        )),
    }
}

fn set_metrics(
    metrics: &mut MetricsConfig,
    field: &str,
    value: &str,
) -> Result<&'static str, String> {
    match field {
        "ENABLED" => set(&mut metrics.enabled, parse_bool(value)?, "enabled"),
        other => Err(unknown_field(other, "metrics", "ENABLED")),
    }
}

fn set_storage(
    storage: &mut StorageConfig,
    field: &str,
    value: &str,
) -> Result<&'static str, String> {
    match field {
        // An empty value keeps no durable topics, as leaving `data_dir` out of the file does.
        "DATA_DIR" => set(
            &mut storage.data_dir,
            Some(PathBuf::from(value)).filter(|_| !value.is_empty()),
            "data_dir",
        ),
        "SEGMENT_BYTES" => set(
            &mut storage.segment_bytes,
            parse_number(value)?,
            "segment_bytes",
        ),
        other => Err(unknown_field(other, "storage", "DATA_DIR, SEGMENT_BYTES")),
    }
}

fn set_shm(shm: &mut ShmConfig, field: &str, value: &str) -> Result<&'static str, String> {
    match field {
        "ENABLED" => set(&mut shm.enabled, parse_bool(value)?, "enabled"),
        "RING_BYTES" => set(&mut shm.ring_bytes, parse_number(value)?, "ring_bytes"),
        "MAX_SUBSCRIBERS" => set(
            &mut shm.max_subscribers,
            parse_number(value)?,
            "max_subscribers",
        ),
        "MAX_PUBLISHERS_PER_TOPIC" => set(
            &mut shm.max_publishers_per_topic,
            parse_number(value)?,
            "max_publishers_per_topic",
        ),
        other => Err(unknown_field(
            other,
            "shm",
            "ENABLED, RING_BYTES, MAX_SUBSCRIBERS, MAX_PUBLISHERS_PER_TOPIC",
        )),
    }
}

fn set_topic_defaults(
    defaults: &mut TopicDefaults,
    field: &str,
    value: &str,
) -> Result<&'static str, String> {
    match field {
        "AUTO_CREATE" => return set(&mut defaults.auto_create, parse_bool(value)?, "auto_create"),
        "IDLE_TIMEOUT_MS" => {
            return set(
                &mut defaults.idle_timeout_ms,
                parse_number(value)?,
                "idle_timeout_ms",
            )
        }
        _ => {}
    }
    TopicFields::of_defaults(defaults).set(field, value)
}

/// The settings `[[topics]]` entries and `[topic_defaults]` share, borrowed from either, so one
/// parser serves both.
struct TopicFields<'a> {
    routing: &'a mut Routing,
    buffer_size: &'a mut usize,
    max_message_size: &'a mut usize,
    backpressure: &'a mut Backpressure,
    prefetch: &'a mut u32,
    publish_deadline_ms: &'a mut u64,
    stamp: &'a mut bool,
    max_headers: &'a mut u16,
    max_header_bytes: &'a mut u32,
    durable: &'a mut bool,
    retention: &'a mut Option<ConfigDuration>,
    retention_bytes: &'a mut Option<u64>,
    retention_messages: &'a mut Option<u64>,
    fsync: &'a mut Option<Fsync>,
    ack_timeout_ms: &'a mut Option<u64>,
    max_deliveries: &'a mut Option<u32>,
    dead_letter: &'a mut Option<String>,
}

impl<'a> TopicFields<'a> {
    fn of_topic(topic: &'a mut TopicConfig) -> Self {
        TopicFields {
            routing: &mut topic.routing,
            buffer_size: &mut topic.buffer_size,
            max_message_size: &mut topic.max_message_size,
            backpressure: &mut topic.backpressure,
            prefetch: &mut topic.prefetch,
            publish_deadline_ms: &mut topic.publish_deadline_ms,
            stamp: &mut topic.stamp,
            max_headers: &mut topic.max_headers,
            max_header_bytes: &mut topic.max_header_bytes,
            durable: &mut topic.durable,
            retention: &mut topic.retention,
            retention_bytes: &mut topic.retention_bytes,
            retention_messages: &mut topic.retention_messages,
            fsync: &mut topic.fsync,
            ack_timeout_ms: &mut topic.ack_timeout_ms,
            max_deliveries: &mut topic.max_deliveries,
            dead_letter: &mut topic.dead_letter,
        }
    }

    fn of_defaults(defaults: &'a mut TopicDefaults) -> Self {
        TopicFields {
            routing: &mut defaults.routing,
            buffer_size: &mut defaults.buffer_size,
            max_message_size: &mut defaults.max_message_size,
            backpressure: &mut defaults.backpressure,
            prefetch: &mut defaults.prefetch,
            publish_deadline_ms: &mut defaults.publish_deadline_ms,
            stamp: &mut defaults.stamp,
            max_headers: &mut defaults.max_headers,
            max_header_bytes: &mut defaults.max_header_bytes,
            durable: &mut defaults.durable,
            retention: &mut defaults.retention,
            retention_bytes: &mut defaults.retention_bytes,
            retention_messages: &mut defaults.retention_messages,
            fsync: &mut defaults.fsync,
            ack_timeout_ms: &mut defaults.ack_timeout_ms,
            max_deliveries: &mut defaults.max_deliveries,
            dead_letter: &mut defaults.dead_letter,
        }
    }

    fn set(self, field: &str, value: &str) -> Result<&'static str, String> {
        match field {
            "ROUTING" => set(self.routing, parse_display(value)?, "routing"),
            "BUFFER_SIZE" => set(self.buffer_size, parse_number(value)?, "buffer_size"),
            "MAX_MESSAGE_SIZE" => set(
                self.max_message_size,
                parse_number(value)?,
                "max_message_size",
            ),
            "BACKPRESSURE" => set(self.backpressure, parse_display(value)?, "backpressure"),
            "PREFETCH" => set(self.prefetch, parse_number(value)?, "prefetch"),
            "PUBLISH_DEADLINE_MS" => set(
                self.publish_deadline_ms,
                parse_number(value)?,
                "publish_deadline_ms",
            ),
            "STAMP" => set(self.stamp, parse_bool(value)?, "stamp"),
            "MAX_HEADERS" => set(self.max_headers, parse_number(value)?, "max_headers"),
            "MAX_HEADER_BYTES" => set(
                self.max_header_bytes,
                parse_number(value)?,
                "max_header_bytes",
            ),
            "DURABLE" => set(self.durable, parse_bool(value)?, "durable"),
            "RETENTION" => set(
                self.retention,
                parse_optional(value, parse_display)?,
                "retention",
            ),
            "RETENTION_BYTES" => set(
                self.retention_bytes,
                parse_optional(value, parse_number)?,
                "retention_bytes",
            ),
            "RETENTION_MESSAGES" => set(
                self.retention_messages,
                parse_optional(value, parse_number)?,
                "retention_messages",
            ),
            "FSYNC" => set(self.fsync, parse_optional(value, parse_display)?, "fsync"),
            "ACK_TIMEOUT_MS" => set(
                self.ack_timeout_ms,
                parse_optional(value, parse_number)?,
                "ack_timeout_ms",
            ),
            "MAX_DELIVERIES" => set(
                self.max_deliveries,
                parse_optional(value, parse_number)?,
                "max_deliveries",
            ),
            "DEAD_LETTER" => set(
                self.dead_letter,
                parse_optional(value, |v| Ok(v.to_owned()))?,
                "dead_letter",
            ),
            "PUBLISH" | "SUBSCRIBE" => Err(
                "access lists cannot be set from the environment (they are lists, not scalars): \
                 set them in the file"
                    .to_owned(),
            ),
            other => Err(unknown_field(
                other,
                "topic",
                "ROUTING, BUFFER_SIZE, MAX_MESSAGE_SIZE, BACKPRESSURE, PREFETCH, \
                 PUBLISH_DEADLINE_MS, STAMP, MAX_HEADERS, MAX_HEADER_BYTES, DURABLE, RETENTION, \
                 RETENTION_BYTES, RETENTION_MESSAGES, FSYNC, ACK_TIMEOUT_MS, MAX_DELIVERIES, \
                 DEAD_LETTER",
            )),
        }
    }
}

fn set<T>(slot: &mut T, value: T, field: &'static str) -> Result<&'static str, String> {
    *slot = value;
    Ok(field)
}

fn unknown_field(field: &str, section: &str, expected: &str) -> String {
    format!("unknown {section} field `{field}`, expected one of {expected}")
}

fn parse_number<T: FromStr>(value: &str) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    value
        .trim()
        .parse()
        .map_err(|e| format!("expected a non-negative integer, got `{value}`: {e}"))
}

fn parse_bool(value: &str) -> Result<bool, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(format!("expected true, false, 1 or 0, got `{value}`")),
    }
}

/// A setting the file may leave out: an empty value leaves it out, anything else is parsed.
fn parse_optional<T>(
    value: &str,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Result<Option<T>, String> {
    if value.trim().is_empty() {
        Ok(None)
    } else {
        parse(value).map(Some)
    }
}

fn parse_display<T: FromStr>(value: &str) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    value.trim().parse().map_err(|e: T::Err| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn with_topics(names: &[&str]) -> BrokerConfig {
        let mut config = BrokerConfig::default();
        for name in names {
            config.topics.push(config.topic_defaults.topic(name));
        }
        config
    }

    fn apply_err(config: &mut BrokerConfig, pairs: &[(&str, &str)]) -> (String, String) {
        match apply(config, env(pairs)) {
            Err(ConfigError::Env { var, message }) => (var, message),
            other => panic!("expected an Env error, got {other:?}"),
        }
    }

    #[test]
    fn every_scalar_outside_topics_can_be_overridden() {
        let mut config = BrokerConfig::default();
        let overrides = apply(
            &mut config,
            env(&[
                ("MYCELIUM_SERVER__SOCKET_PATH", "/run/m.sock"),
                ("MYCELIUM_SERVER__MAX_CONNECTIONS", "5"),
                ("MYCELIUM_SERVER__CONNECTION_TIMEOUT_MS", "7"),
                ("MYCELIUM_SERVER__SOCKET_MODE", "0600"),
                ("MYCELIUM_TOPIC_DEFAULTS__AUTO_CREATE", "true"),
                ("MYCELIUM_TOPIC_DEFAULTS__ROUTING", "Queue"),
                ("MYCELIUM_TOPIC_DEFAULTS__BUFFER_SIZE", "11"),
                ("MYCELIUM_TOPIC_DEFAULTS__MAX_MESSAGE_SIZE", "12"),
                ("MYCELIUM_TOPIC_DEFAULTS__BACKPRESSURE", "drop_newest"),
                ("MYCELIUM_TOPIC_DEFAULTS__PREFETCH", "13"),
                ("MYCELIUM_TOPIC_DEFAULTS__IDLE_TIMEOUT_MS", "0"),
                ("MYCELIUM_TOPIC_DEFAULTS__STAMP", "true"),
                ("MYCELIUM_TOPIC_DEFAULTS__MAX_HEADERS", "16"),
                ("MYCELIUM_TOPIC_DEFAULTS__MAX_HEADER_BYTES", "17"),
                ("MYCELIUM_TOPIC_DEFAULTS__DURABLE", "true"),
                ("MYCELIUM_TOPIC_DEFAULTS__RETENTION", "24h"),
                ("MYCELIUM_TOPIC_DEFAULTS__RETENTION_BYTES", "1000"),
                ("MYCELIUM_TOPIC_DEFAULTS__RETENTION_MESSAGES", "2000"),
                ("MYCELIUM_TOPIC_DEFAULTS__FSYNC", "interval:10ms"),
                ("MYCELIUM_TOPIC_DEFAULTS__ACK_TIMEOUT_MS", "18"),
                ("MYCELIUM_TOPIC_DEFAULTS__MAX_DELIVERIES", "19"),
                ("MYCELIUM_TOPIC_DEFAULTS__DEAD_LETTER", "dead"),
                ("MYCELIUM_STORAGE__DATA_DIR", "/var/lib/mycelium"),
                ("MYCELIUM_STORAGE__SEGMENT_BYTES", "8192"),
                ("MYCELIUM_PERFORMANCE__WORKER_THREADS", "4"),
                ("MYCELIUM_PERFORMANCE__CHANNEL_CAPACITY", "14"),
                ("MYCELIUM_PERFORMANCE__BATCH_SIZE", "15"),
                ("MYCELIUM_PERFORMANCE__FLUSH_INTERVAL_MS", "0"),
                ("MYCELIUM_PERFORMANCE__BUSY_POLL_US", "16"),
            ]),
        )
        .unwrap();
        let server = &config.server;
        assert_eq!(server.socket_path, PathBuf::from("/run/m.sock"));
        assert_eq!(
            (
                server.max_connections,
                server.connection_timeout_ms,
                server.socket_mode
            ),
            (5, 7, 0o600)
        );
        assert_eq!(
            config.topic_defaults,
            TopicDefaults {
                auto_create: true,
                idle_timeout_ms: 0,
                routing: Routing::Queue,
                buffer_size: 11,
                max_message_size: 12,
                backpressure: Backpressure::DropNewest,
                prefetch: 13,
                publish_deadline_ms: 10_000,
                stamp: true,
                max_headers: 16,
                max_header_bytes: 17,
                publish: None,
                subscribe: None,
                durable: true,
                retention: ConfigDuration::from_millis(86_400_000),
                retention_bytes: Some(1000),
                retention_messages: Some(2000),
                fsync: Some(Fsync::Interval(ConfigDuration::from_millis(10).unwrap())),
                ack_timeout_ms: Some(18),
                max_deliveries: Some(19),
                dead_letter: Some("dead".to_owned()),
            }
        );
        assert_eq!(
            config.storage,
            StorageConfig {
                data_dir: Some(PathBuf::from("/var/lib/mycelium")),
                segment_bytes: 8192,
            }
        );
        assert_eq!(
            config.performance,
            PerformanceConfig {
                worker_threads: 4,
                channel_capacity: 14,
                batch_size: 15,
                flush_interval_ms: 0,
                busy_poll_us: 16,
            }
        );
        assert_eq!(
            overrides.var_for("performance.batch_size"),
            Some("MYCELIUM_PERFORMANCE__BATCH_SIZE")
        );
    }

    #[test]
    fn a_topic_is_addressed_by_its_upper_cased_name_with_dots_and_dashes_as_underscores() {
        let mut config = with_topics(&["market-data.eu", "orders"]);
        let overrides = apply(
            &mut config,
            env(&[
                ("MYCELIUM_TOPICS__MARKET_DATA_EU__BUFFER_SIZE", "5000"),
                ("MYCELIUM_TOPICS__ORDERS__ROUTING", "queue"),
                ("MYCELIUM_TOPICS__ORDERS__PREFETCH", "8"),
                ("MYCELIUM_TOPICS__ORDERS__STAMP", "1"),
                ("MYCELIUM_TOPICS__ORDERS__MAX_HEADERS", "3"),
                ("MYCELIUM_TOPICS__ORDERS__MAX_HEADER_BYTES", "99"),
            ]),
        )
        .unwrap();
        assert_eq!(config.topics[0].buffer_size, 5000);
        assert_eq!(config.topics[1].routing, Routing::Queue);
        assert_eq!(config.topics[1].prefetch, 8);
        assert!(config.topics[1].stamp);
        assert_eq!(
            (
                config.topics[1].max_headers,
                config.topics[1].max_header_bytes
            ),
            (3, 99)
        );
        assert_eq!(
            overrides.var_for("topics[0].buffer_size"),
            Some("MYCELIUM_TOPICS__MARKET_DATA_EU__BUFFER_SIZE")
        );
    }

    #[test]
    fn backpressure_drop_oldest_can_be_set_per_topic_and_as_the_default() {
        let mut config = with_topics(&["market-data.eu"]);
        apply(
            &mut config,
            env(&[
                (
                    "MYCELIUM_TOPICS__MARKET_DATA_EU__BACKPRESSURE",
                    "drop_oldest",
                ),
                ("MYCELIUM_TOPIC_DEFAULTS__BACKPRESSURE", "drop_oldest"),
            ]),
        )
        .unwrap();
        assert_eq!(config.topics[0].backpressure, Backpressure::DropOldest);
        assert_eq!(config.topic_defaults.backpressure, Backpressure::DropOldest);
    }

    #[test]
    fn a_topic_name_containing_a_double_underscore_can_still_be_addressed() {
        let mut config = with_topics(&["a__b"]);
        apply(
            &mut config,
            env(&[("MYCELIUM_TOPICS__A__B__PREFETCH", "3")]),
        )
        .unwrap();
        assert_eq!(config.topics[0].prefetch, 3);
    }

    #[test]
    fn sections_and_fields_match_case_insensitively() {
        let mut config = BrokerConfig::default();
        apply(
            &mut config,
            env(&[("MYCELIUM_performance__Batch_Size", "9")]),
        )
        .unwrap();
        assert_eq!(config.performance.batch_size, 9);
    }

    #[test]
    fn every_shm_field_can_be_overridden() {
        let mut config = BrokerConfig::default();
        apply(
            &mut config,
            env(&[
                ("MYCELIUM_SHM__ENABLED", "false"),
                ("MYCELIUM_SHM__RING_BYTES", "65536"),
                ("MYCELIUM_SHM__MAX_SUBSCRIBERS", "8"),
                ("MYCELIUM_SHM__MAX_PUBLISHERS_PER_TOPIC", "2"),
            ]),
        )
        .unwrap();
        assert_eq!(
            config.shm,
            ShmConfig {
                enabled: false,
                ring_bytes: 65536,
                max_subscribers: 8,
                max_publishers_per_topic: 2,
            }
        );
    }

    #[test]
    fn variables_that_are_not_overrides_are_ignored() {
        let mut config = BrokerConfig::default();
        let overrides = apply(
            &mut config,
            env(&[
                ("MYCELIUM_SOCKET", "/x"),
                ("MYCELIUM_LOG", "debug"),
                ("OTHER__SERVER__SOCKET_PATH", "/y"),
                ("PATH", "/bin"),
            ]),
        )
        .unwrap();
        assert_eq!(config, BrokerConfig::default());
        assert!(overrides.by_field.is_empty());
    }

    #[test]
    fn an_unknown_section_field_or_topic_is_an_error_naming_the_variable() {
        let cases = [
            ("MYCELIUM_SERVR__SOCKET_PATH", "unknown section `SERVR`"),
            (
                "MYCELIUM_SERVER__SOCKETPATH",
                "unknown server field `SOCKETPATH`",
            ),
            (
                "MYCELIUM_PERFORMANCE__AUTO_CREATE",
                "unknown performance field",
            ),
            (
                "MYCELIUM_TOPICS__NOPE__BUFFER_SIZE",
                "no topic `NOPE`, declared: T",
            ),
            (
                "MYCELIUM_TOPICS__T__BUFFERSIZE",
                "unknown topic field `BUFFERSIZE`",
            ),
            (
                "MYCELIUM_TOPICS__BUFFER_SIZE",
                "expected MYCELIUM_TOPICS__<TOPIC>__<FIELD>",
            ),
            ("MYCELIUM__SERVER", "expected MYCELIUM_<SECTION>__<FIELD>"),
            ("MYCELIUM_SERVER__", "unknown server field ``"),
        ];
        for (var, expected) in cases {
            let (got_var, message) = apply_err(&mut with_topics(&["t"]), &[(var, "1")]);
            assert_eq!(got_var, var);
            assert!(message.contains(expected), "{var}: {message}");
        }
    }

    #[test]
    fn a_value_of_the_wrong_type_is_an_error_naming_the_variable() {
        let cases = [
            (
                "MYCELIUM_PERFORMANCE__WORKER_THREADS",
                "four",
                "non-negative integer",
            ),
            (
                "MYCELIUM_PERFORMANCE__WORKER_THREADS",
                "-1",
                "non-negative integer",
            ),
            (
                "MYCELIUM_TOPIC_DEFAULTS__PREFETCH",
                "4294967296",
                "non-negative integer",
            ),
            (
                "MYCELIUM_TOPIC_DEFAULTS__AUTO_CREATE",
                "yes",
                "true, false, 1 or 0",
            ),
            (
                "MYCELIUM_TOPIC_DEFAULTS__ROUTING",
                "broadcast",
                "unknown routing",
            ),
            (
                "MYCELIUM_TOPIC_DEFAULTS__BACKPRESSURE",
                "drop",
                "unknown backpressure",
            ),
            (
                "MYCELIUM_SERVER__SOCKET_MODE",
                "rw-rw----",
                "invalid socket mode",
            ),
        ];
        for (var, value, expected) in cases {
            let (got_var, message) = apply_err(&mut BrokerConfig::default(), &[(var, value)]);
            assert_eq!(got_var, var);
            assert!(message.contains(expected), "{var}={value}: {message}");
        }
    }

    #[test]
    fn topic_names_cannot_be_overridden() {
        let (_, message) = apply_err(
            &mut with_topics(&["t"]),
            &[("MYCELIUM_TOPICS__T__NAME", "u")],
        );
        assert!(message.contains("cannot be overridden"), "{message}");
    }

    #[test]
    fn a_key_matching_two_topics_is_an_error() {
        let (_, message) = apply_err(
            &mut with_topics(&["a.b", "a-b"]),
            &[("MYCELIUM_TOPICS__A_B__PREFETCH", "1")],
        );
        assert!(
            message.contains("matches both topic `a.b` and topic `a-b`"),
            "{message}"
        );
    }

    #[test]
    fn the_gateway_and_metrics_sections_take_overrides_and_an_empty_listen_turns_it_off() {
        let mut config = BrokerConfig::default();
        apply(
            &mut config,
            env(&[
                ("MYCELIUM_HTTP__LISTEN", "127.0.0.1:9000"),
                ("MYCELIUM_HTTP__MAX_BODY_BYTES", "10"),
                ("MYCELIUM_HTTP__MAX_WEBSOCKETS", "11"),
                ("MYCELIUM_HTTP__SUBSCRIPTION_IDLE_TIMEOUT_MS", "12"),
                ("MYCELIUM_HTTP__MAX_WAIT_MS", "13"),
                ("MYCELIUM_METRICS__ENABLED", "false"),
            ]),
        )
        .expect("overrides");
        assert_eq!(
            config.http,
            HttpConfig {
                listen: Some("127.0.0.1:9000".to_owned()),
                max_body_bytes: 10,
                max_websockets: 11,
                subscription_idle_timeout_ms: 12,
                max_wait_ms: 13,
            }
        );
        assert!(!config.metrics.enabled);
        apply(&mut config, env(&[("MYCELIUM_HTTP__LISTEN", "")])).expect("override");
        assert_eq!(config.http.listen, None);
        let (var, message) = apply_err(&mut config, &[("MYCELIUM_HTTP__PORT", "1")]);
        assert_eq!(var, "MYCELIUM_HTTP__PORT");
        assert!(message.contains("unknown http field"), "{message}");
    }

    #[test]
    fn a_topic_can_be_made_durable_and_its_optional_settings_unset_from_the_environment() {
        let mut config = with_topics(&["orders"]);
        config.topics[0].retention_bytes = Some(5);
        config.topics[0].dead_letter = Some("x".to_owned());
        config.storage.data_dir = Some(PathBuf::from("/data"));
        let overrides = apply(
            &mut config,
            env(&[
                ("MYCELIUM_TOPICS__ORDERS__DURABLE", "1"),
                ("MYCELIUM_TOPICS__ORDERS__RETENTION", "1h30m"),
                ("MYCELIUM_TOPICS__ORDERS__RETENTION_BYTES", ""),
                ("MYCELIUM_TOPICS__ORDERS__FSYNC", "never"),
                ("MYCELIUM_TOPICS__ORDERS__DEAD_LETTER", ""),
                ("MYCELIUM_STORAGE__DATA_DIR", ""),
            ]),
        )
        .expect("overrides");
        let topic = &config.topics[0];
        assert!(topic.durable);
        assert_eq!(topic.retention, ConfigDuration::from_millis(5_400_000));
        assert_eq!(topic.retention_bytes, None);
        assert_eq!(topic.fsync, Some(Fsync::Never));
        assert_eq!(topic.dead_letter, None);
        assert_eq!(config.storage.data_dir, None);
        assert_eq!(
            overrides.var_for("topics[0].fsync"),
            Some("MYCELIUM_TOPICS__ORDERS__FSYNC")
        );
        assert_eq!(
            overrides.var_for("storage.data_dir"),
            Some("MYCELIUM_STORAGE__DATA_DIR")
        );
    }

    #[test]
    fn a_bad_duration_fsync_or_storage_field_is_an_error_naming_the_variable() {
        let cases = [
            ("MYCELIUM_TOPICS__T__RETENTION", "3w", "unknown unit `w`"),
            ("MYCELIUM_TOPICS__T__RETENTION", "0s", "is zero"),
            (
                "MYCELIUM_TOPICS__T__FSYNC",
                "sometimes",
                "unknown fsync policy",
            ),
            (
                "MYCELIUM_TOPICS__T__MAX_DELIVERIES",
                "-1",
                "non-negative integer",
            ),
            ("MYCELIUM_TOPICS__T__DURABLE", "yes", "true, false, 1 or 0"),
            (
                "MYCELIUM_STORAGE__SEGMENT_BYTES",
                "big",
                "non-negative integer",
            ),
            ("MYCELIUM_STORAGE__DIR", "/x", "unknown storage field `DIR`"),
        ];
        for (var, value, expected) in cases {
            let (got_var, message) = apply_err(&mut with_topics(&["t"]), &[(var, value)]);
            assert_eq!(got_var, var);
            assert!(message.contains(expected), "{var}={value}: {message}");
        }
    }

    #[test]
    fn booleans_accept_true_false_one_and_zero() {
        for (value, expected) in [("true", true), ("1", true), ("FALSE", false), ("0", false)] {
            assert_eq!(parse_bool(value), Ok(expected), "{value}");
        }
    }

    #[test]
    fn the_outcome_does_not_depend_on_environment_order() {
        let pairs = [
            ("MYCELIUM_PERFORMANCE__BATCH_SIZE", "oops"),
            ("MYCELIUM_PERFORMANCE__ALPHA", "1"),
        ];
        let forward = apply_err(&mut BrokerConfig::default(), &pairs);
        let backward = apply_err(&mut BrokerConfig::default(), &[pairs[1], pairs[0]]);
        assert_eq!(forward, backward);
        assert_eq!(forward.0, "MYCELIUM_PERFORMANCE__ALPHA");
    }
}
