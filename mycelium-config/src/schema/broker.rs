//! The whole configuration of one broker, and the queries the broker makes of it.
//!
//! - `BrokerConfig::default()` is valid: a broker runs without any file.
//! - Loading ([`BrokerConfig::from_file`] and friends) and [`BrokerConfig::validate`] live in their
//!   own modules; this one only holds the data.
//!
//! ```
//! use mycelium_config::BrokerConfig;
//!
//! let config = BrokerConfig::default();
//! assert!(config.validate().is_empty());
//! assert!(config.topic("anything").is_none());
//! ```

use serde::Deserialize;

use super::{
    HttpConfig, MetricsConfig, PerformanceConfig, ServerConfig, ShmConfig, StorageConfig,
    TopicConfig, TopicDefaults,
};

/// A broker's configuration: the contents of `broker.toml` after environment overrides.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BrokerConfig {
    /// Section `[server]`.
    pub server: ServerConfig,
    /// The `[[topics]]` entries, in file order.
    pub topics: Vec<TopicConfig>,
    /// Section `[topic_defaults]`.
    pub topic_defaults: TopicDefaults,
    /// Section `[performance]`.
    pub performance: PerformanceConfig,
    /// Section `[shm]`.
    pub shm: ShmConfig,
    /// Section `[http]`.
    pub http: HttpConfig,
    /// Section `[metrics]`.
    pub metrics: MetricsConfig,
    /// Section `[storage]`.
    pub storage: StorageConfig,
}

impl BrokerConfig {
    /// The declared topic called `name`, if any. Names are compared exactly.
    pub fn topic(&self, name: &str) -> Option<&TopicConfig> {
        self.topics.iter().find(|topic| topic.name == name)
    }

    /// The largest `max_message_size` over every declared topic and `[topic_defaults]`: the
    /// biggest frame any connection may need to receive.
    pub fn max_message_size(&self) -> usize {
        self.topics
            .iter()
            .map(|topic| topic.max_message_size)
            .fold(self.topic_defaults.max_message_size, usize::max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Routing;

    #[test]
    fn max_message_size_is_the_largest_over_topics_and_defaults() {
        let mut config = BrokerConfig::default();
        assert_eq!(config.max_message_size(), 65536);
        let mut big = config.topic_defaults.topic("big");
        big.max_message_size = 1 << 20;
        config.topics.push(big);
        config.topics.push(TopicConfig {
            max_message_size: 10,
            ..config.topic_defaults.topic("small")
        });
        assert_eq!(config.max_message_size(), 1 << 20);
        config.topic_defaults.max_message_size = 1 << 22;
        assert_eq!(config.max_message_size(), 1 << 22);
    }

    #[test]
    fn topic_finds_declared_topics_by_exact_name() {
        let mut config = BrokerConfig::default();
        let mut queue = config.topic_defaults.topic("jobs");
        queue.routing = Routing::Queue;
        config.topics.push(queue);
        assert_eq!(
            config.topic("jobs").map(|t| t.routing),
            Some(Routing::Queue)
        );
        assert!(config.topic("Jobs").is_none());
    }
}
