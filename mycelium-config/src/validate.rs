//! The rules a configuration must satisfy beyond its types, checked all at once.
//!
//! - [`BrokerConfig::validate`] returns every problem, in field order, never just the first: an
//!   operator fixes a file in one pass.
//! - The diagnostics it returns carry the field path and message only (`file` empty, `line` and
//!   `column` `None`); the loader fills in where each field was set.
//! - A config that passes may still fail at run time for reasons outside the file (the socket
//!   directory does not exist, permissions), which the broker reports when it starts.
//!
//! ```
//! use mycelium_config::BrokerConfig;
//!
//! let mut config = BrokerConfig::default();
//! config.server.max_connections = 0;
//! config.performance.worker_threads = 0;
//! let fields: Vec<String> = config.validate().into_iter().map(|d| d.field).collect();
//! assert_eq!(fields, ["server.max_connections", "performance.worker_threads"]);
//! ```

use std::collections::HashMap;

use crate::schema::DEAD_LETTER_SUFFIX;
use crate::Routing;
use crate::{
    BrokerConfig, ConfigDuration, Diagnostic, Fsync, HttpConfig, PerformanceConfig, ServerConfig,
    ShmConfig, StorageConfig, TopicConfig, TopicDefaults, MAX_BUSY_POLL_US, MAX_FSYNC_INTERVAL,
    MAX_HEADERS_LIMIT, MAX_HEADER_BYTES_LIMIT, MAX_HTTP_BODY_BYTES, MAX_MESSAGE_SIZE_LIMIT,
    MAX_RING_BYTES, MAX_SEGMENT_BYTES, MAX_SHM_PUBLISHERS_PER_TOPIC, MAX_SHM_SUBSCRIBERS,
    MAX_SOCKET_MODE, MAX_TOPIC_NAME_LEN, MAX_WORKER_THREADS, MIN_FSYNC_INTERVAL, MIN_RING_BYTES,
    MIN_SEGMENT_BYTES, SOCKET_PATH_MAX,
};

impl BrokerConfig {
    /// Every problem in this configuration; empty when it is valid.
    pub fn validate(&self) -> Vec<Diagnostic> {
        let mut problems = Problems::default();
        check_server(&self.server, &mut problems);
        let has_data_dir = self.storage.data_dir.is_some();
        check_topics(&self.topics, has_data_dir, &mut problems);
        let defaults = &self.topic_defaults;
        check_topic_limits(
            "topic_defaults",
            TopicLimits {
                buffer_size: defaults.buffer_size,
                max_message_size: defaults.max_message_size,
                prefetch: defaults.prefetch,
                max_headers: defaults.max_headers,
                max_header_bytes: defaults.max_header_bytes,
            },
            &mut problems,
        );
        check_durability(
            "topic_defaults",
            None,
            DurableFields::of_defaults(defaults),
            has_data_dir,
            &mut problems,
        );
        check_performance(&self.performance, &mut problems);
        check_shm(&self.shm, &mut problems);
        check_http(&self.http, &mut problems);
        check_storage(&self.storage, &mut problems);
        problems.0
    }
}

#[derive(Default)]
struct Problems(Vec<Diagnostic>);

impl Problems {
    fn report(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(Diagnostic::new(field, message));
    }

    fn require_positive(&mut self, field: impl Into<String>, is_zero: bool) {
        if is_zero {
            self.report(field, "must be greater than 0");
        }
    }
}

fn check_server(server: &ServerConfig, problems: &mut Problems) {
    if let Some(message) = socket_path_problem(server) {
        problems.report("server.socket_path", message);
    }
    problems.require_positive("server.max_connections", server.max_connections == 0);
    problems.require_positive(
        "server.max_pending_handshakes",
        server.max_pending_handshakes == 0,
    );
    problems.require_positive(
        "server.max_subscriptions_per_connection",
        server.max_subscriptions_per_connection == 0,
    );
    problems.require_positive("server.max_subscriptions", server.max_subscriptions == 0);
    problems.require_positive("server.max_inflight_bytes", server.max_inflight_bytes == 0);
    problems.require_positive("server.heartbeat_misses", server.heartbeat_misses == 0);
    problems.require_positive(
        "server.connection_timeout_ms",
        server.connection_timeout_ms == 0,
    );
    if server.socket_mode > MAX_SOCKET_MODE {
        let mut message = format!(
            "must be at most {MAX_SOCKET_MODE:#o} (permission bits only), got {:#o}",
            server.socket_mode
        );
        if let Some(meant) = octal_meant_as_decimal(server.socket_mode) {
            message.push_str(&format!(
                " (decimal {}); to mean octal {}, write \"{meant}\"",
                server.socket_mode, server.socket_mode
            ));
        }
        problems.report("server.socket_mode", message);
    }
}

/// `socket_mode = 660` is the classic slip: decimal 660 is `0o1224`. When the decimal digits read
/// as octal give a valid mode, that is almost surely what was meant.
fn octal_meant_as_decimal(mode: u32) -> Option<String> {
    let digits = mode.to_string();
    let as_octal = u32::from_str_radix(&digits, 8).ok()?;
    (as_octal <= MAX_SOCKET_MODE).then(|| format!("0{digits}"))
}

fn socket_path_problem(server: &ServerConfig) -> Option<String> {
    let bytes = server.socket_path.as_os_str().as_encoded_bytes();
    if bytes.is_empty() {
        return Some("must not be empty".to_owned());
    }
    if bytes.contains(&0) {
        return Some("must not contain a NUL byte".to_owned());
    }
    if bytes.ends_with(b"/") {
        return Some("must name a socket file, not a directory".to_owned());
    }
    if bytes.len() >= SOCKET_PATH_MAX {
        return Some(format!(
            "is {} bytes long; a Unix socket path must be shorter than {SOCKET_PATH_MAX} bytes",
            bytes.len()
        ));
    }
    None
}

fn check_topics(topics: &[TopicConfig], has_data_dir: bool, problems: &mut Problems) {
    let mut first_index: HashMap<&str, usize> = HashMap::new();
    for (index, topic) in topics.iter().enumerate() {
        let prefix = format!("topics[{index}]");
        if let Some(message) = topic_name_problem(&topic.name) {
            problems.report(format!("{prefix}.name"), message);
        }
        if let Some(first) = first_index.get(topic.name.as_str()) {
            problems.report(
                format!("{prefix}.name"),
                format!(
                    "duplicate topic name `{}`, already used by topics[{first}]",
                    topic.name
                ),
            );
        } else {
            first_index.insert(&topic.name, index);
        }
        check_topic_limits(
            &prefix,
            TopicLimits {
                buffer_size: topic.buffer_size,
                max_message_size: topic.max_message_size,
                prefetch: topic.prefetch,
                max_headers: topic.max_headers,
                max_header_bytes: topic.max_header_bytes,
            },
            problems,
        );
        check_durability(
            &prefix,
            Some(&topic.name),
            DurableFields::of_topic(topic),
            has_data_dir,
            problems,
        );
    }
}

fn topic_name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("must not be empty".to_owned());
    }
    if name.len() > MAX_TOPIC_NAME_LEN {
        return Some(format!(
            "is {} bytes long, at most {MAX_TOPIC_NAME_LEN} allowed",
            name.len()
        ));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    name.chars().find(|&c| !allowed(c)).map(|bad| {
        format!(
            "contains '{}'; only ASCII letters, digits, '.', '_' and '-' are allowed",
            bad.escape_debug()
        )
    })
}

/// The numeric settings `[[topics]]` entries and `[topic_defaults]` share, checked alike.
struct TopicLimits {
    buffer_size: usize,
    max_message_size: usize,
    prefetch: u32,
    max_headers: u16,
    max_header_bytes: u32,
}

fn check_topic_limits(prefix: &str, limits: TopicLimits, problems: &mut Problems) {
    let TopicLimits {
        buffer_size,
        max_message_size,
        prefetch,
        max_headers,
        max_header_bytes,
    } = limits;
    problems.require_positive(format!("{prefix}.buffer_size"), buffer_size == 0);
    if !(1..=MAX_MESSAGE_SIZE_LIMIT).contains(&max_message_size) {
        problems.report(
            format!("{prefix}.max_message_size"),
            format!(
                "must be between 1 and {MAX_MESSAGE_SIZE_LIMIT} (16 MiB), got {max_message_size}"
            ),
        );
    }
    problems.require_positive(format!("{prefix}.prefetch"), prefetch == 0);
    if max_headers > MAX_HEADERS_LIMIT {
        problems.report(
            format!("{prefix}.max_headers"),
            format!("must be at most {MAX_HEADERS_LIMIT}, got {max_headers}"),
        );
    }
    if max_header_bytes > MAX_HEADER_BYTES_LIMIT {
        problems.report(
            format!("{prefix}.max_header_bytes"),
            format!("must be at most {MAX_HEADER_BYTES_LIMIT}, got {max_header_bytes}"),
        );
    }
}

/// The durability settings `[[topics]]` entries and `[topic_defaults]` share, checked alike.
struct DurableFields<'a> {
    durable: bool,
    routing: Routing,
    retention: Option<ConfigDuration>,
    retention_bytes: Option<u64>,
    retention_messages: Option<u64>,
    fsync: Option<Fsync>,
    ack_timeout_ms: Option<u64>,
    max_deliveries: Option<u32>,
    dead_letter: Option<&'a str>,
}

impl<'a> DurableFields<'a> {
    fn of_topic(topic: &'a TopicConfig) -> Self {
        DurableFields {
            durable: topic.durable,
            routing: topic.routing,
            retention: topic.retention,
            retention_bytes: topic.retention_bytes,
            retention_messages: topic.retention_messages,
            fsync: topic.fsync,
            ack_timeout_ms: topic.ack_timeout_ms,
            max_deliveries: topic.max_deliveries,
            dead_letter: topic.dead_letter.as_deref(),
        }
    }

    fn of_defaults(defaults: &'a TopicDefaults) -> Self {
        DurableFields {
            durable: defaults.durable,
            routing: defaults.routing,
            retention: defaults.retention,
            retention_bytes: defaults.retention_bytes,
            retention_messages: defaults.retention_messages,
            fsync: defaults.fsync,
            ack_timeout_ms: defaults.ack_timeout_ms,
            max_deliveries: defaults.max_deliveries,
            dead_letter: defaults.dead_letter.as_deref(),
        }
    }

    /// The names of the settings that are set, in struct order.
    fn set_names(&self) -> impl Iterator<Item = &'static str> {
        [
            ("retention", self.retention.is_some()),
            ("retention_bytes", self.retention_bytes.is_some()),
            ("retention_messages", self.retention_messages.is_some()),
            ("fsync", self.fsync.is_some()),
            ("ack_timeout_ms", self.ack_timeout_ms.is_some()),
            ("max_deliveries", self.max_deliveries.is_some()),
            ("dead_letter", self.dead_letter.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, set)| set.then_some(name))
    }
}

/// `name` is the declared topic's name, `None` for `[topic_defaults]`.
fn check_durability(
    prefix: &str,
    name: Option<&str>,
    fields: DurableFields<'_>,
    has_data_dir: bool,
    problems: &mut Problems,
) {
    if !fields.durable {
        // A setting that would be ignored is a mistake the operator should hear about.
        for field in fields.set_names() {
            problems.report(
                format!("{prefix}.{field}"),
                "only applies to a durable topic; set `durable = true` or remove it",
            );
        }
        return;
    }
    if fields.routing == Routing::Queue {
        problems.report(
            format!("{prefix}.durable"),
            "a durable topic is fanout (its log keeps every message for every reader); for \
             work-queue delivery, where each message goes to one consumer, read it with a \
             consumer group",
        );
    }
    if !has_data_dir {
        problems.report(
            format!("{prefix}.durable"),
            "a durable topic needs `[storage] data_dir`, the directory its log is kept in, \
             which is not set",
        );
    }
    if let Some(name) = name {
        if matches!(name, "." | "..") {
            problems.report(
                format!("{prefix}.name"),
                format!(
                    "a durable topic's name is a directory under `[storage] data_dir`; \
                     `{name}` cannot be one"
                ),
            );
        } else if fields.dead_letter.is_none()
            && name.len() + DEAD_LETTER_SUFFIX.len() > MAX_TOPIC_NAME_LEN
        {
            problems.report(
                format!("{prefix}.name"),
                format!(
                    "the default dead-letter topic `<name>{DEAD_LETTER_SUFFIX}` would be longer \
                     than {MAX_TOPIC_NAME_LEN} bytes; shorten the name or set `dead_letter`"
                ),
            );
        }
    }
    problems.require_positive(
        format!("{prefix}.retention_bytes"),
        fields.retention_bytes == Some(0),
    );
    problems.require_positive(
        format!("{prefix}.retention_messages"),
        fields.retention_messages == Some(0),
    );
    if let Some(Fsync::Interval(interval)) = fields.fsync {
        if !(MIN_FSYNC_INTERVAL..=MAX_FSYNC_INTERVAL).contains(&interval.get()) {
            problems.report(
                format!("{prefix}.fsync"),
                format!(
                    "the interval must be between {} and {}, got {interval}",
                    show_duration(MIN_FSYNC_INTERVAL),
                    show_duration(MAX_FSYNC_INTERVAL)
                ),
            );
        }
    }
    problems.require_positive(
        format!("{prefix}.ack_timeout_ms"),
        fields.ack_timeout_ms == Some(0),
    );
    if fields.max_deliveries == Some(0) {
        problems.report(format!("{prefix}.max_deliveries"), "must be at least 1");
    }
    if let Some(dead_letter) = fields.dead_letter {
        if let Some(message) = topic_name_problem(dead_letter) {
            problems.report(format!("{prefix}.dead_letter"), message);
        } else if name == Some(dead_letter) {
            problems.report(
                format!("{prefix}.dead_letter"),
                "must name another topic, not the topic itself",
            );
        }
    }
}

/// A bound written as the config would write it (`1ms`, `10s`).
fn show_duration(duration: std::time::Duration) -> String {
    let ms = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
    ConfigDuration::from_millis(ms).map_or_else(|| "0ms".to_owned(), |d| d.to_string())
}

fn check_storage(storage: &StorageConfig, problems: &mut Problems) {
    if let Some(data_dir) = &storage.data_dir {
        let bytes = data_dir.as_os_str().as_encoded_bytes();
        if bytes.is_empty() {
            problems.report(
                "storage.data_dir",
                "must not be empty; leave it out to keep no durable topics",
            );
        } else if bytes.contains(&0) {
            problems.report("storage.data_dir", "must not contain a NUL byte");
        }
    }
    if !(MIN_SEGMENT_BYTES..=MAX_SEGMENT_BYTES).contains(&storage.segment_bytes) {
        problems.report(
            "storage.segment_bytes",
            format!(
                "must be between {MIN_SEGMENT_BYTES} and {MAX_SEGMENT_BYTES} (1 GiB), got {}",
                storage.segment_bytes
            ),
        );
    }
}

fn check_performance(performance: &PerformanceConfig, problems: &mut Problems) {
    if !(1..=MAX_WORKER_THREADS).contains(&performance.worker_threads) {
        problems.report(
            "performance.worker_threads",
            format!(
                "must be between 1 and {MAX_WORKER_THREADS}, got {}",
                performance.worker_threads
            ),
        );
    }
    problems.require_positive(
        "performance.channel_capacity",
        performance.channel_capacity == 0,
    );
    problems.require_positive("performance.batch_size", performance.batch_size == 0);
    if performance.busy_poll_us > MAX_BUSY_POLL_US {
        problems.report(
            "performance.busy_poll_us",
            format!(
                "must be at most {MAX_BUSY_POLL_US} (µs), got {}",
                performance.busy_poll_us
            ),
        );
    }
}

fn check_http(http: &HttpConfig, problems: &mut Problems) {
    if let Some(listen) = &http.listen {
        if listen.parse::<std::net::SocketAddr>().is_err() {
            problems.report(
                "http.listen",
                format!(
                    "must be an IP address and port such as \"127.0.0.1:8080\" or \"[::1]:8080\" \
                     (host names are not resolved), got {listen:?}"
                ),
            );
        }
    }
    if !(1..=MAX_HTTP_BODY_BYTES).contains(&http.max_body_bytes) {
        problems.report(
            "http.max_body_bytes",
            format!(
                "must be between 1 and {MAX_HTTP_BODY_BYTES}, got {}",
                http.max_body_bytes
            ),
        );
    }
    problems.require_positive("http.max_websockets", http.max_websockets == 0);
    problems.require_positive(
        "http.subscription_idle_timeout_ms",
        http.subscription_idle_timeout_ms == 0,
    );
}

fn check_shm(shm: &ShmConfig, problems: &mut Problems) {
    if !shm.ring_bytes.is_power_of_two()
        || !(MIN_RING_BYTES..=MAX_RING_BYTES).contains(&shm.ring_bytes)
    {
        problems.report(
            "shm.ring_bytes",
            format!(
                "must be a power of two between {MIN_RING_BYTES} and {MAX_RING_BYTES}, got {}",
                shm.ring_bytes
            ),
        );
    }
    if !(1..=MAX_SHM_SUBSCRIBERS).contains(&shm.max_subscribers) {
        problems.report(
            "shm.max_subscribers",
            format!(
                "must be between 1 and {MAX_SHM_SUBSCRIBERS}, got {}",
                shm.max_subscribers
            ),
        );
    }
    if !(1..=MAX_SHM_PUBLISHERS_PER_TOPIC).contains(&shm.max_publishers_per_topic) {
        problems.report(
            "shm.max_publishers_per_topic",
            format!(
                "must be between 1 and {MAX_SHM_PUBLISHERS_PER_TOPIC}, got {}",
                shm.max_publishers_per_topic
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::Routing;

    fn with_topics(names: &[&str]) -> BrokerConfig {
        let mut config = BrokerConfig::default();
        for name in names {
            config.topics.push(config.topic_defaults.topic(name));
        }
        config
    }

    fn fields(config: &BrokerConfig) -> Vec<String> {
        config.validate().into_iter().map(|d| d.field).collect()
    }

    #[test]
    fn the_default_config_is_valid() {
        assert_eq!(BrokerConfig::default().validate(), []);
    }

    #[test]
    fn shm_ring_bytes_must_be_a_power_of_two_in_range_and_counts_positive() {
        for (ring_bytes, ok) in [
            (4096, true),
            (1 << 30, true),
            (2048, false),
            (5000, false),
            (2 << 30, false),
            (0, false),
        ] {
            let mut config = BrokerConfig::default();
            config.shm.ring_bytes = ring_bytes;
            let expected: &[&str] = if ok { &[] } else { &["shm.ring_bytes"] };
            assert_eq!(fields(&config), expected, "{ring_bytes}");
        }
        let mut config = BrokerConfig::default();
        config.shm.max_subscribers = 0;
        config.shm.max_publishers_per_topic = 64;
        assert_eq!(
            fields(&config),
            ["shm.max_subscribers", "shm.max_publishers_per_topic"]
        );
    }

    #[test]
    fn every_zero_that_must_be_positive_is_reported() {
        let mut config = with_topics(&["t"]);
        config.server.max_connections = 0;
        config.server.max_pending_handshakes = 0;
        config.server.connection_timeout_ms = 0;
        config.topics[0].buffer_size = 0;
        config.topics[0].max_message_size = 0;
        config.topics[0].prefetch = 0;
        config.topic_defaults.buffer_size = 0;
        config.topic_defaults.max_message_size = 0;
        config.topic_defaults.prefetch = 0;
        config.performance.worker_threads = 0;
        config.performance.channel_capacity = 0;
        config.performance.batch_size = 0;
        assert_eq!(
            fields(&config),
            [
                "server.max_connections",
                "server.max_pending_handshakes",
                "server.connection_timeout_ms",
                "topics[0].buffer_size",
                "topics[0].max_message_size",
                "topics[0].prefetch",
                "topic_defaults.buffer_size",
                "topic_defaults.max_message_size",
                "topic_defaults.prefetch",
                "performance.worker_threads",
                "performance.channel_capacity",
                "performance.batch_size",
            ]
        );
    }

    #[test]
    fn the_gateway_listens_on_an_ip_and_port_only() {
        let mut config = BrokerConfig::default();
        for good in ["127.0.0.1:8080", "[::1]:0", "0.0.0.0:80"] {
            config.http.listen = Some(good.to_owned());
            assert_eq!(config.validate(), [], "{good}");
        }
        for bad in [
            "localhost:8080",
            "127.0.0.1",
            ":8080",
            "127.0.0.1:65536",
            "",
        ] {
            config.http.listen = Some(bad.to_owned());
            let problems = config.validate();
            assert_eq!(fields(&config), ["http.listen"], "{bad}");
            assert!(problems[0].message.contains("IP address and port"), "{bad}");
        }
    }

    #[test]
    fn gateway_limits_are_bounded() {
        let mut config = BrokerConfig::default();
        config.http.max_body_bytes = MAX_HTTP_BODY_BYTES;
        assert_eq!(config.validate(), []);
        config.http.max_body_bytes += 1;
        config.http.max_websockets = 0;
        config.http.subscription_idle_timeout_ms = 0;
        assert_eq!(
            fields(&config),
            [
                "http.max_body_bytes",
                "http.max_websockets",
                "http.subscription_idle_timeout_ms"
            ]
        );
        config.http.max_body_bytes = 0;
        assert_eq!(fields(&config)[0], "http.max_body_bytes");
    }

    #[test]
    fn flush_interval_zero_is_allowed() {
        let mut config = BrokerConfig::default();
        config.performance.flush_interval_ms = 0;
        assert_eq!(config.validate(), []);
    }

    #[test]
    fn upper_limits_are_inclusive() {
        let mut config = with_topics(&["t"]);
        config.performance.worker_threads = MAX_WORKER_THREADS;
        config.performance.busy_poll_us = MAX_BUSY_POLL_US;
        config.topics[0].max_message_size = MAX_MESSAGE_SIZE_LIMIT;
        config.server.socket_mode = MAX_SOCKET_MODE;
        assert_eq!(config.validate(), []);
        config.performance.worker_threads += 1;
        config.performance.busy_poll_us += 1;
        config.topics[0].max_message_size += 1;
        config.server.socket_mode += 1;
        assert_eq!(
            fields(&config),
            [
                "server.socket_mode",
                "topics[0].max_message_size",
                "performance.worker_threads",
                "performance.busy_poll_us"
            ]
        );
    }

    #[test]
    fn header_limits_are_bounded_in_topics_and_defaults() {
        let mut config = with_topics(&["t"]);
        config.topics[0].max_headers = 0;
        config.topics[0].max_header_bytes = 0;
        config.topic_defaults.max_headers = MAX_HEADERS_LIMIT;
        config.topic_defaults.max_header_bytes = MAX_HEADER_BYTES_LIMIT;
        assert_eq!(config.validate(), []);
        config.topics[0].max_headers = MAX_HEADERS_LIMIT + 1;
        config.topic_defaults.max_header_bytes = MAX_HEADER_BYTES_LIMIT + 1;
        let problems = config.validate();
        let got: Vec<(&str, &str)> = problems
            .iter()
            .map(|d| (d.field.as_str(), d.message.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("topics[0].max_headers", "must be at most 1024, got 1025"),
                (
                    "topic_defaults.max_header_bytes",
                    "must be at most 65535, got 65536"
                ),
            ]
        );
    }

    #[test]
    fn socket_mode_message_shows_octal() {
        let mut config = BrokerConfig::default();
        config.server.socket_mode = 0o1777;
        assert_eq!(
            config.validate()[0].message,
            "must be at most 0o777 (permission bits only), got 0o1777"
        );
    }

    #[test]
    fn a_mode_written_as_decimal_digits_gets_an_octal_hint() {
        let mut config = BrokerConfig::default();
        config.server.socket_mode = 660;
        assert_eq!(
            config.validate()[0].message,
            "must be at most 0o777 (permission bits only), got 0o1224 (decimal 660); to mean \
             octal 660, write \"0660\""
        );
    }

    #[test]
    fn socket_path_must_fit_in_sun_path() {
        let mut config = BrokerConfig::default();
        config.server.socket_path = PathBuf::from(format!("/{}", "s".repeat(SOCKET_PATH_MAX - 2)));
        assert_eq!(config.validate(), []);
        config.server.socket_path = PathBuf::from(format!("/{}", "s".repeat(SOCKET_PATH_MAX - 1)));
        assert_eq!(fields(&config), ["server.socket_path"]);
    }

    #[test]
    fn socket_path_must_be_a_nonempty_file_path() {
        for bad in ["", "/run/mycelium/", "/tmp/a\0b"] {
            let mut config = BrokerConfig::default();
            config.server.socket_path = PathBuf::from(bad);
            assert_eq!(fields(&config), ["server.socket_path"], "{bad:?}");
        }
    }

    #[test]
    fn topic_names_allow_only_the_documented_characters() {
        let good = ["a", "market_data", "orders.eu-west.v2", &"n".repeat(255)];
        assert_eq!(with_topics(&good).validate(), []);
        for bad in ["", "a b", "a/b", "é", "a*", &"n".repeat(256)] {
            assert_eq!(fields(&with_topics(&[bad])), ["topics[0].name"], "{bad:?}");
        }
    }

    #[test]
    fn a_bad_character_is_named_in_the_message() {
        let problems = with_topics(&["a\nb"]).validate();
        assert!(
            problems[0].message.contains("'\\n'"),
            "{}",
            problems[0].message
        );
    }

    #[test]
    fn a_duplicate_topic_name_is_reported_at_the_second_use() {
        let problems = with_topics(&["a", "b", "a"]).validate();
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].field, "topics[2].name");
        assert_eq!(
            problems[0].message,
            "duplicate topic name `a`, already used by topics[0]"
        );
    }

    #[test]
    fn names_differing_only_in_case_are_distinct_topics() {
        assert_eq!(with_topics(&["jobs", "Jobs"]).validate(), []);
    }

    fn durable_topic(name: &str) -> TopicConfig {
        TopicConfig {
            durable: true,
            ..TopicDefaults::default().topic(name)
        }
    }

    fn with_storage(topics: Vec<TopicConfig>) -> BrokerConfig {
        let mut config = BrokerConfig {
            topics,
            ..BrokerConfig::default()
        };
        config.storage.data_dir = Some(PathBuf::from("/var/lib/mycelium"));
        config
    }

    fn problems(config: &BrokerConfig) -> Vec<(String, String)> {
        config
            .validate()
            .into_iter()
            .map(|d| (d.field, d.message))
            .collect()
    }

    #[test]
    fn a_durable_topic_without_a_data_dir_names_the_missing_setting() {
        let mut config = with_storage(vec![durable_topic("orders")]);
        assert_eq!(config.validate(), []);
        config.storage.data_dir = None;
        config.topic_defaults.durable = true;
        assert_eq!(
            problems(&config),
            [
                (
                    "topics[0].durable".to_owned(),
                    "a durable topic needs `[storage] data_dir`, the directory its log is kept \
                     in, which is not set"
                        .to_owned()
                ),
                (
                    "topic_defaults.durable".to_owned(),
                    "a durable topic needs `[storage] data_dir`, the directory its log is kept \
                     in, which is not set"
                        .to_owned()
                ),
            ]
        );
    }

    #[test]
    fn a_durable_queue_topic_is_refused_with_the_way_to_share_work() {
        let mut queue = durable_topic("jobs");
        queue.routing = Routing::Queue;
        let mut config = with_storage(vec![queue, durable_topic("events")]);
        config.topic_defaults.durable = true;
        config.topic_defaults.routing = Routing::Queue;
        let got = problems(&config);
        let fields: Vec<&str> = got.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(fields, ["topics[0].durable", "topic_defaults.durable"]);
        assert!(got[0].1.contains("consumer group"), "{}", got[0].1);
    }

    #[test]
    fn a_durability_setting_on_a_topic_that_is_not_durable_is_reported_not_ignored() {
        let mut config = with_storage(vec![TopicDefaults::default().topic("t")]);
        let topic = &mut config.topics[0];
        topic.retention = ConfigDuration::from_millis(1000);
        topic.retention_bytes = Some(1);
        topic.retention_messages = Some(1);
        topic.fsync = Some(Fsync::Always);
        topic.ack_timeout_ms = Some(30_000);
        topic.max_deliveries = Some(5);
        topic.dead_letter = Some("t.dlq".to_owned());
        config.topic_defaults.fsync = Some(Fsync::Never);
        let got = problems(&config);
        let fields: Vec<&str> = got.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(
            fields,
            [
                "topics[0].retention",
                "topics[0].retention_bytes",
                "topics[0].retention_messages",
                "topics[0].fsync",
                "topics[0].ack_timeout_ms",
                "topics[0].max_deliveries",
                "topics[0].dead_letter",
                "topic_defaults.fsync",
            ]
        );
        assert!(got.iter().all(
            |(_, m)| m == "only applies to a durable topic; set `durable = true` or remove it"
        ));
    }

    #[test]
    fn durability_settings_are_bounded() {
        let mut config = with_storage(vec![durable_topic("t")]);
        let topic = &mut config.topics[0];
        topic.retention_bytes = Some(0);
        topic.retention_messages = Some(0);
        topic.fsync = Some(Fsync::Interval(
            ConfigDuration::from_millis(10_001).expect("non-zero"),
        ));
        topic.ack_timeout_ms = Some(0);
        topic.max_deliveries = Some(0);
        topic.dead_letter = Some("t".to_owned());
        assert_eq!(
            problems(&config),
            [
                ("topics[0].retention_bytes", "must be greater than 0"),
                ("topics[0].retention_messages", "must be greater than 0"),
                (
                    "topics[0].fsync",
                    "the interval must be between 1ms and 10s, got 10s1ms"
                ),
                ("topics[0].ack_timeout_ms", "must be greater than 0"),
                ("topics[0].max_deliveries", "must be at least 1"),
                (
                    "topics[0].dead_letter",
                    "must name another topic, not the topic itself"
                ),
            ]
            .map(|(f, m)| (f.to_owned(), m.to_owned()))
        );
        let topic = &mut config.topics[0];
        topic.retention_bytes = Some(1);
        topic.retention_messages = Some(1);
        topic.fsync = "interval:10s".parse().ok();
        topic.ack_timeout_ms = Some(1);
        topic.max_deliveries = Some(1);
        topic.dead_letter = Some("a b".to_owned());
        assert_eq!(fields(&config), ["topics[0].dead_letter"]);
        config.topics[0].dead_letter = Some("t.failed".to_owned());
        config.topics[0].fsync = "interval:1ms".parse().ok();
        assert_eq!(config.validate(), []);
    }

    #[test]
    fn a_durable_topic_name_must_make_a_directory_and_leave_room_for_its_dead_letter_topic() {
        let config = with_storage(vec![durable_topic("."), durable_topic("..")]);
        assert_eq!(fields(&config), ["topics[0].name", "topics[1].name"]);
        // Not durable, the same names stay allowed as before.
        assert_eq!(with_topics(&[".", ".."]).validate(), []);
        let long = "n".repeat(MAX_TOPIC_NAME_LEN - 3);
        let mut config = with_storage(vec![durable_topic(&long)]);
        let got = problems(&config);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, "topics[0].name");
        assert!(got[0].1.contains("set `dead_letter`"), "{}", got[0].1);
        config.topics[0].dead_letter = Some("short.dlq".to_owned());
        assert_eq!(config.validate(), []);
        let fits = "n".repeat(MAX_TOPIC_NAME_LEN - 4);
        assert_eq!(with_storage(vec![durable_topic(&fits)]).validate(), []);
    }

    #[test]
    fn storage_segment_bytes_and_data_dir_are_checked() {
        let mut config = BrokerConfig::default();
        for (segment_bytes, ok) in [
            (MIN_SEGMENT_BYTES, true),
            (MAX_SEGMENT_BYTES, true),
            (5000, true),
            (MIN_SEGMENT_BYTES - 1, false),
            (MAX_SEGMENT_BYTES + 1, false),
        ] {
            config.storage.segment_bytes = segment_bytes;
            let expected: &[&str] = if ok { &[] } else { &["storage.segment_bytes"] };
            assert_eq!(fields(&config), expected, "{segment_bytes}");
        }
        config.storage.segment_bytes = MIN_SEGMENT_BYTES;
        for bad in ["", "/var/a\0b"] {
            config.storage.data_dir = Some(PathBuf::from(bad));
            assert_eq!(fields(&config), ["storage.data_dir"], "{bad:?}");
        }
    }

    #[test]
    fn prefetch_is_checked_on_fanout_topics_too() {
        let mut config = with_topics(&["t"]);
        config.topics[0].routing = Routing::Fanout;
        config.topics[0].prefetch = 0;
        assert_eq!(fields(&config), ["topics[0].prefetch"]);
    }
}
