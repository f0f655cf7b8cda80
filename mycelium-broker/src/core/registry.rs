//! The set of topics a broker serves, by name and by id.
//!
//! - Topics come from the config at start, and from `[topic_defaults]` on first use when
//!   `auto_create = true`; any other unknown name is refused with an error naming it.
//! - Ids are dense, start at 0 and are never reused within a broker run, so a stale id can never
//!   reach another topic.
//! - Lookups take a read lock; connections cache the `Arc<Topic>` they use, so the hot path
//!   touches the registry once per topic, not once per message.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use mycelium_config::{BrokerConfig, TopicConfig, TopicDefaults};

use crate::core::topic::{SubscriberId, Topic, TopicId};
use crate::error::{CreateTopicError, LookupError};

#[derive(Debug, Default)]
struct Topics {
    by_id: Vec<Arc<Topic>>,
    by_name: HashMap<String, TopicId>,
}

/// Topics `[topic_defaults] auto_create` may create in one broker run. Past it, unknown names
/// are refused like undeclared ones: otherwise any peer could grow the topic table (and every
/// `Stats` answer) without bound.
pub const MAX_AUTO_CREATED_TOPICS: usize = 10_000;

/// All topics of one broker; see the module docs.
#[derive(Debug)]
pub struct TopicRegistry {
    topics: RwLock<Topics>,
    defaults: TopicDefaults,
    next_subscriber: AtomicU64,
    /// Topics created by `auto_create` so far; capped at [`MAX_AUTO_CREATED_TOPICS`].
    auto_created: std::sync::atomic::AtomicUsize,
}

/// Why a name is not a valid topic name, if it is not: 1 to 255 bytes of `[A-Za-z0-9._-]`.
pub fn topic_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("a topic name must not be empty")
    } else if name.len() > mycelium_transport::frame::MAX_NAME_LEN {
        Some("a topic name must be at most 255 bytes")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        Some("a topic name may only contain letters, digits, '.', '_' and '-'")
    } else {
        None
    }
}

impl TopicRegistry {
    /// A registry with the config's topics, ids in declaration order.
    ///
    /// The config is assumed validated; a duplicate name is refused here anyway.
    pub fn from_config(config: &BrokerConfig) -> Result<TopicRegistry, CreateTopicError> {
        let registry = TopicRegistry::new(config.topic_defaults.clone());
        for topic in &config.topics {
            registry.create_topic(topic.clone())?;
        }
        Ok(registry)
    }

    /// An empty registry that creates unknown topics from `defaults` when they allow it.
    pub fn new(defaults: TopicDefaults) -> TopicRegistry {
        TopicRegistry {
            topics: RwLock::default(),
            defaults,
            next_subscriber: AtomicU64::new(1),
            auto_created: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Topics> {
        self.topics.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Declares a topic.
    pub fn create_topic(&self, config: TopicConfig) -> Result<Arc<Topic>, CreateTopicError> {
        if let Some(problem) = topic_name_problem(&config.name) {
            return Err(CreateTopicError::InvalidName {
                name: config.name,
                problem,
            });
        }
        let mut topics = self.topics.write().unwrap_or_else(|p| p.into_inner());
        if topics.by_name.contains_key(&config.name) {
            return Err(CreateTopicError::AlreadyExists { name: config.name });
        }
        let id =
            TopicId::try_from(topics.by_id.len()).map_err(|_| CreateTopicError::TooManyTopics)?;
        let name = config.name.clone();
        let topic = Arc::new(Topic::new(id, config));
        topics.by_id.push(topic.clone());
        topics.by_name.insert(name, id);
        Ok(topic)
    }

    /// The topic with this name, created from the defaults if it is unknown and they allow it.
    pub fn resolve(&self, name: &str) -> Result<Arc<Topic>, LookupError> {
        if let Some(topic) = self.get_by_name(name) {
            return Ok(topic);
        }
        if let Some(problem) = topic_name_problem(name) {
            return Err(LookupError::InvalidName {
                name: name.to_owned(),
                problem,
            });
        }
        if !self.defaults.auto_create {
            return Err(LookupError::UnknownTopic {
                name: name.to_owned(),
            });
        }
        if self.auto_created.load(Ordering::Relaxed) >= MAX_AUTO_CREATED_TOPICS {
            return Err(LookupError::TooManyTopics {
                name: name.to_owned(),
                max: MAX_AUTO_CREATED_TOPICS,
            });
        }
        match self.create_topic(self.defaults.topic(name)) {
            Ok(topic) => {
                self.auto_created.fetch_add(1, Ordering::Relaxed);
                tracing::info!(topic = name, "auto-created topic from [topic_defaults]");
                Ok(topic)
            }
            // Another connection created it between our lookup and our create.
            Err(CreateTopicError::AlreadyExists { .. }) => {
                self.get_by_name(name)
                    .ok_or_else(|| LookupError::UnknownTopic {
                        name: name.to_owned(),
                    })
            }
            Err(CreateTopicError::InvalidName { problem, .. }) => Err(LookupError::InvalidName {
                name: name.to_owned(),
                problem,
            }),
            Err(CreateTopicError::TooManyTopics) => Err(LookupError::TooManyTopics {
                name: name.to_owned(),
                max: u32::MAX as usize,
            }),
        }
    }

    /// The topic with this name, if declared.
    pub fn get_by_name(&self, name: &str) -> Option<Arc<Topic>> {
        let topics = self.read();
        let id = *topics.by_name.get(name)?;
        topics.by_id.get(id as usize).cloned()
    }

    /// The topic with this id, if any.
    pub fn get(&self, id: TopicId) -> Option<Arc<Topic>> {
        self.read().by_id.get(id as usize).cloned()
    }

    /// Every topic, in id order.
    pub fn all(&self) -> Vec<Arc<Topic>> {
        self.read().by_id.clone()
    }

    /// The largest `max_message_size` of any topic or of the defaults.
    pub fn max_message_size(&self) -> usize {
        self.read()
            .by_id
            .iter()
            .map(|t| t.config().max_message_size)
            .fold(self.defaults.max_message_size, usize::max)
    }

    /// A fresh subscription id.
    pub fn next_subscriber_id(&self) -> SubscriberId {
        self.next_subscriber.fetch_add(1, Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_topics_are_refused_unless_auto_create_is_on() {
        let registry = TopicRegistry::new(TopicDefaults::default());
        assert!(
            matches!(registry.resolve("nope"), Err(LookupError::UnknownTopic { name }) if name == "nope")
        );
        let registry = TopicRegistry::new(TopicDefaults {
            auto_create: true,
            ..TopicDefaults::default()
        });
        let created = registry.resolve("fresh").expect("auto-created");
        assert_eq!(created.name(), "fresh");
        assert_eq!(registry.resolve("fresh").expect("same").id(), created.id());
    }

    #[test]
    fn auto_creation_stops_at_the_topic_limit() {
        let registry = TopicRegistry::new(TopicDefaults {
            auto_create: true,
            ..TopicDefaults::default()
        });
        for i in 0..MAX_AUTO_CREATED_TOPICS {
            registry.resolve(&format!("t{i}")).expect("under the limit");
        }
        assert!(matches!(
            registry.resolve("one-too-many"),
            Err(LookupError::TooManyTopics { .. })
        ));
        assert!(
            registry.resolve("t7").is_ok(),
            "existing topics still resolve"
        );
    }

    #[test]
    fn invalid_names_are_refused_even_with_auto_create() {
        let registry = TopicRegistry::new(TopicDefaults {
            auto_create: true,
            ..TopicDefaults::default()
        });
        assert!(matches!(
            registry.resolve("has space"),
            Err(LookupError::InvalidName { .. })
        ));
        assert!(matches!(
            registry.resolve(""),
            Err(LookupError::InvalidName { .. })
        ));
    }

    #[test]
    fn duplicate_topics_are_refused_and_ids_are_dense() {
        let registry = TopicRegistry::new(TopicDefaults::default());
        let a = registry
            .create_topic(TopicDefaults::default().topic("a"))
            .expect("first");
        let b = registry
            .create_topic(TopicDefaults::default().topic("b"))
            .expect("second");
        assert_eq!((a.id(), b.id()), (0, 1));
        assert!(matches!(
            registry.create_topic(TopicDefaults::default().topic("a")),
            Err(CreateTopicError::AlreadyExists { .. })
        ));
        assert_eq!(registry.get(1).expect("b").name(), "b");
        assert!(registry.get(2).is_none());
    }
}
