//! The set of topics a broker serves, by name and by id.
//!
//! - Topics come from the config at start, and from `[topic_defaults]` on first use when
//!   `auto_create = true`; any other unknown name is refused with an error naming it.
//! - Ids are dense, start at 0 and are never reused within a broker run, so a stale id can never
//!   reach another topic.
//! - Lookups take a read lock; connections cache the `Arc<Topic>` they use, so the hot path
//!   touches the registry once per topic, not once per message.
//! - A hot reload (`TopicRegistry::reconfigure`) makes all its changes under one write
//!   lock: new topics, new settings, removed topics and the new `[topic_defaults]` appear to
//!   lookups together. A removed topic's name resolves to nothing from then on (it may be
//!   declared again, and gets a new id); its id still names it, marked removed, so that a
//!   publisher using it is told why.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use mycelium_config::{BrokerConfig, TopicConfig, TopicDefaults};

use crate::core::topic::{SubscriberId, Topic, TopicId};
use crate::error::{CreateTopicError, LookupError};

#[derive(Debug, Default)]
struct Topics {
    /// Indexed by id (ids are never reused). A topic a reload removed stays here, marked
    /// removed, so a publish to its id is told so rather than "no such topic"; it holds no
    /// subscriber or message any more.
    by_id: Vec<Arc<Topic>>,
    by_name: HashMap<String, TopicId>,
    /// Settings of auto-created topics.
    defaults: TopicDefaults,
}

impl Topics {
    fn live(&self) -> impl Iterator<Item = &Arc<Topic>> {
        self.by_id.iter().filter(|t| !t.is_removed())
    }

    fn insert(&mut self, config: TopicConfig) -> Result<Arc<Topic>, CreateTopicError> {
        if self.by_name.contains_key(&config.name) {
            return Err(CreateTopicError::AlreadyExists { name: config.name });
        }
        let id =
            TopicId::try_from(self.by_id.len()).map_err(|_| CreateTopicError::TooManyTopics)?;
        let name = config.name.clone();
        let topic = Arc::new(Topic::new(id, config));
        self.by_id.push(topic.clone());
        self.by_name.insert(name, id);
        Ok(topic)
    }

    /// Takes the topic out of the lookups and ends it.
    fn remove(&mut self, name: &str) -> Option<(Arc<Topic>, u64)> {
        let id = self.by_name.remove(name)?;
        let topic = self.by_id.get(id as usize)?.clone();
        let dropped = topic.remove();
        Some((topic, dropped))
    }

    fn max_message_size(&self) -> usize {
        self.live()
            .map(|t| t.config().max_message_size)
            .fold(self.defaults.max_message_size, usize::max)
    }
}

/// What [`TopicRegistry::reconfigure`] did.
#[derive(Debug, Default)]
pub(crate) struct Reconfigured {
    /// Topics created, in declaration order.
    pub added: Vec<Arc<Topic>>,
    /// Topics whose settings changed.
    pub changed: Vec<Arc<Topic>>,
    /// Topics ended, with the messages each dropped (a queue topic's backlog). Their
    /// shared-memory attachments are still to be ended.
    pub removed: Vec<(Arc<Topic>, u64)>,
    /// Auto-created topics now declared with another routing: ended (as `removed`) and
    /// declared anew (as `added`), by name.
    pub replaced: Vec<String>,
}

/// Topics `[topic_defaults] auto_create` may create in one broker run. Past it, unknown names
/// are refused like undeclared ones: otherwise any peer could grow the topic table (and every
/// `Stats` answer) without bound.
pub const MAX_AUTO_CREATED_TOPICS: usize = 10_000;

/// All topics of one broker; see the module docs.
#[derive(Debug)]
pub struct TopicRegistry {
    topics: RwLock<Topics>,
    /// The largest `max_message_size` of any live topic or of the defaults, kept up to date by
    /// every change, so connections read it without the lock.
    max_message_size: AtomicUsize,
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
    pub(crate) fn from_config(config: &BrokerConfig) -> Result<TopicRegistry, CreateTopicError> {
        let registry = TopicRegistry::new(config.topic_defaults.clone());
        for topic in &config.topics {
            registry.create_topic(topic.clone())?;
        }
        Ok(registry)
    }

    /// An empty registry that creates unknown topics from `defaults` when they allow it.
    pub fn new(defaults: TopicDefaults) -> TopicRegistry {
        TopicRegistry {
            max_message_size: AtomicUsize::new(defaults.max_message_size),
            topics: RwLock::new(Topics {
                defaults,
                ..Topics::default()
            }),
            next_subscriber: AtomicU64::new(1),
            auto_created: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Topics> {
        self.topics.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Topics> {
        self.topics.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Declares a topic.
    pub fn create_topic(&self, config: TopicConfig) -> Result<Arc<Topic>, CreateTopicError> {
        if let Some(problem) = topic_name_problem(&config.name) {
            return Err(CreateTopicError::InvalidName {
                name: config.name,
                problem,
            });
        }
        let mut topics = self.write();
        let topic = topics.insert(config)?;
        self.max_message_size
            .fetch_max(topic.config().max_message_size, Ordering::Relaxed);
        Ok(topic)
    }

    /// Makes the registry serve `config`'s topics and defaults (a hot reload), all under one
    /// write lock: declared topics that are new are created; those that exist take the new
    /// settings (`routing` must match: the caller refused routing changes already; an
    /// auto-created topic declared with another routing is replaced); the topics named in
    /// `removed` are ended and forgotten. Topics created by `auto_create` and not named
    /// stay as they are.
    pub(crate) fn reconfigure(&self, config: &BrokerConfig, removed: &[String]) -> Reconfigured {
        let mut done = Reconfigured::default();
        let mut topics = self.write();
        for name in removed {
            if let Some(gone) = topics.remove(name) {
                done.removed.push(gone);
            }
        }
        for declared in &config.topics {
            let existing = topics
                .by_name
                .get(&declared.name)
                .and_then(|&id| topics.by_id.get(id as usize).cloned());
            match existing {
                Some(topic) if topic.routing() == declared.routing => {
                    if *topic.config() != *declared && topic.set_config(declared.clone()).is_ok() {
                        done.changed.push(topic);
                    }
                }
                Some(_) => {
                    if let Some(gone) = topics.remove(&declared.name) {
                        done.removed.push(gone);
                    }
                    done.replaced.push(declared.name.clone());
                    if let Ok(topic) = topics.insert(declared.clone()) {
                        done.added.push(topic);
                    }
                }
                None => match topics.insert(declared.clone()) {
                    Ok(topic) => done.added.push(topic),
                    Err(error) => {
                        tracing::error!(topic = %declared.name, %error, "cannot declare a topic")
                    }
                },
            }
        }
        topics.defaults = config.topic_defaults.clone();
        self.max_message_size
            .store(topics.max_message_size(), Ordering::Relaxed);
        done
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
        let defaults = self.read().defaults.clone();
        if !defaults.auto_create {
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
        match self.create_topic(defaults.topic(name)) {
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

    /// The topic with this id, if any: a topic a reload removed too (see
    /// [`Topic::is_removed`]), so that its publishers can be told why it is gone.
    pub fn get(&self, id: TopicId) -> Option<Arc<Topic>> {
        self.read().by_id.get(id as usize).cloned()
    }

    /// Every live topic, in id order.
    pub fn all(&self) -> Vec<Arc<Topic>> {
        self.read().live().cloned().collect()
    }

    /// The largest `max_message_size` of any topic or of the defaults.
    pub fn max_message_size(&self) -> usize {
        self.max_message_size.load(Ordering::Relaxed)
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

    fn config_with(topics: &[(&str, mycelium_config::Routing, usize)]) -> BrokerConfig {
        BrokerConfig {
            topics: topics
                .iter()
                .map(|&(name, routing, max)| TopicConfig {
                    routing,
                    max_message_size: max,
                    ..TopicDefaults::default().topic(name)
                })
                .collect(),
            ..BrokerConfig::default()
        }
    }

    #[test]
    fn reconfigure_adds_changes_and_removes_topics_and_never_reuses_an_id() {
        use mycelium_config::Routing::{Fanout, Queue};
        let start = config_with(&[("a", Fanout, 100), ("b", Queue, 100)]);
        let registry = TopicRegistry::from_config(&start).expect("registry");
        let a = registry.get_by_name("a").expect("a");
        let b = registry.get_by_name("b").expect("b");
        let next = config_with(&[("a", Fanout, 100_000), ("c", Fanout, 100)]);
        let done = registry.reconfigure(&next, &["b".to_owned()]);
        assert_eq!(
            done.added.iter().map(|t| t.name()).collect::<Vec<_>>(),
            ["c"]
        );
        assert_eq!(done.changed.len(), 1);
        assert_eq!(done.removed.len(), 1);
        assert!(b.is_removed());
        assert!(
            registry.get(b.id()).is_some_and(|t| t.is_removed()),
            "a removed id resolves to the removed topic, marked so"
        );
        assert!(registry.get_by_name("b").is_none());
        assert_eq!(
            a.config().max_message_size,
            100_000,
            "same Arc, new settings"
        );
        assert_eq!(registry.max_message_size(), 100_000);
        let names: Vec<String> = registry.all().iter().map(|t| t.name().to_owned()).collect();
        assert_eq!(names, ["a", "c"]);
        // Declared again: a new topic with a new id.
        let again = config_with(&[("a", Fanout, 100), ("b", Queue, 100), ("c", Fanout, 100)]);
        let done = registry.reconfigure(&again, &[]);
        let b2 = registry.get_by_name("b").expect("b again");
        assert_eq!(done.added.len(), 1);
        assert!(b2.id() > b.id());
        assert_eq!(registry.max_message_size(), 65536, "the defaults' limit");
    }

    #[test]
    fn an_auto_created_topic_declared_with_the_other_routing_is_replaced() {
        use mycelium_config::Routing::Queue;
        let registry = TopicRegistry::new(TopicDefaults {
            auto_create: true,
            ..TopicDefaults::default()
        });
        let auto = registry.resolve("jobs").expect("auto-created fanout");
        let done = registry.reconfigure(&config_with(&[("jobs", Queue, 100)]), &[]);
        assert_eq!(done.replaced, ["jobs"]);
        assert!(auto.is_removed());
        let declared = registry.get_by_name("jobs").expect("declared");
        assert_eq!(declared.routing(), Queue);
        assert_ne!(declared.id(), auto.id());
    }

    #[test]
    fn reconfigure_swaps_the_defaults_of_auto_creation() {
        let registry = TopicRegistry::new(TopicDefaults::default());
        assert!(registry.resolve("fresh").is_err());
        let mut config = BrokerConfig::default();
        config.topic_defaults.auto_create = true;
        registry.reconfigure(&config, &[]);
        assert!(registry.resolve("fresh").is_ok());
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
