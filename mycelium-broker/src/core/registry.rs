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
//! - Reply inboxes (`_INBOX.<client id>`, [`INBOX_PREFIX`]) are created on first use even
//!   when `auto_create` is off: request/reply works on every broker. They are dynamic topics
//!   like the others.
//! - A topic created by `auto_create` is *dynamic* ([`Topic::is_dynamic`]) until a reload
//!   declares it. `TopicRegistry::reclaim_idle` removes the dynamic topics that have had no
//!   subscriber and no publisher for `idle_timeout_ms`, and forgets them entirely (name and
//!   id): the next use of the name creates a new topic with a new id. Declared topics are
//!   never reclaimed. At most [`MAX_AUTO_CREATED_TOPICS`] dynamic topics exist at once.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use mycelium_config::{BrokerConfig, StorageConfig, TopicConfig, TopicDefaults};
use mycelium_transport::envelope::{inbox_name, inbox_owner};

use crate::core::durable::TopicLog;
use crate::core::latency::LatencyRecorder;
use crate::core::patterns::{PatternIndex, PatternSubscription};
use crate::core::topic::{SubscriberId, Topic, TopicId};
use crate::error::error_chain;
use crate::error::{CreateTopicError, LookupError};

/// Topic ids stay below this: the top bit of a wire topic id is not a topic's (and
/// `NO_TOPIC` is `u32::MAX`).
const TOPIC_ID_LIMIT: u64 = 1 << 31;

#[derive(Debug, Default)]
struct Topics {
    /// By id (ids are never reused). A topic a reload removed stays here, marked removed, so
    /// a publish to its id is told so rather than "no such topic"; it holds no subscriber or
    /// message any more. A reclaimed dynamic topic leaves no trace.
    by_id: BTreeMap<TopicId, Arc<Topic>>,
    by_name: HashMap<String, TopicId>,
    /// The id the next topic gets.
    next_id: u64,
    /// Settings of auto-created topics.
    defaults: TopicDefaults,
    /// The broker-wide latency histogram, handed to every topic made.
    latency: Arc<LatencyRecorder>,
    /// Where durable topics keep their logs (`[storage]`).
    storage: StorageConfig,
    /// The lock on `data_dir` (its `LOCK` file), taken when the first log is opened and held
    /// for the registry's life: a second broker on the same directory would interleave its
    /// appends with this one's.
    storage_lock: Option<nix::fcntl::Flock<std::fs::File>>,
}

impl Topics {
    fn live(&self) -> impl Iterator<Item = &Arc<Topic>> {
        self.by_id.values().filter(|t| !t.is_removed())
    }

    fn insert(&mut self, config: TopicConfig) -> Result<Arc<Topic>, CreateTopicError> {
        if self.by_name.contains_key(&config.name) {
            return Err(CreateTopicError::AlreadyExists { name: config.name });
        }
        if self.next_id >= TOPIC_ID_LIMIT {
            return Err(CreateTopicError::TooManyTopics);
        }
        let id = TopicId::try_from(self.next_id).map_err(|_| CreateTopicError::TooManyTopics)?;
        let log = self.open_log(&config)?;
        self.next_id += 1;
        let name = config.name.clone();
        let mut topic = Topic::with_recorder(id, config, self.latency.clone());
        if let Some(log) = log {
            topic = topic.with_log(Arc::new(log));
        }
        let topic = Arc::new(topic);
        self.by_id.insert(id, topic.clone());
        self.by_name.insert(name, id);
        Ok(topic)
    }

    /// A durable topic's log, opened (and recovered) in `<data_dir>/<name>/`; `None` for a
    /// topic kept in memory.
    fn open_log(&mut self, config: &TopicConfig) -> Result<Option<TopicLog>, CreateTopicError> {
        let Some(durability) = config.durability() else {
            return Ok(None);
        };
        let Some(data_dir) = &self.storage.data_dir else {
            return Err(CreateTopicError::Storage {
                name: config.name.clone(),
                reason: "durable = true needs [storage] data_dir in the broker's config".into(),
            });
        };
        if self.storage_lock.is_none() {
            let lock = lock_data_dir(data_dir).map_err(|reason| CreateTopicError::Storage {
                name: config.name.clone(),
                reason,
            })?;
            self.storage_lock = Some(lock);
        }
        TopicLog::open(
            data_dir,
            &config.name,
            &durability,
            self.storage.segment_bytes,
        )
        .map(Some)
        .map_err(|error| CreateTopicError::Storage {
            name: config.name.clone(),
            reason: error_chain(&error),
        })
    }

    /// The live topic named `name`.
    fn named(&self, name: &str) -> Option<&Arc<Topic>> {
        self.by_id.get(self.by_name.get(name)?)
    }

    /// Takes the topic out of the lookups and ends it.
    fn remove(&mut self, name: &str) -> Option<(Arc<Topic>, u64)> {
        let id = self.by_name.remove(name)?;
        let topic = self.by_id.get(&id)?.clone();
        let dropped = topic.remove();
        Some((topic, dropped))
    }

    fn max_message_size(&self) -> usize {
        self.live()
            .map(|t| t.config().max_message_size)
            .fold(self.defaults.max_message_size, usize::max)
    }

    fn max_message_len(&self) -> usize {
        let d = &self.defaults;
        let defaults = message_len(d.max_message_size, d.max_headers, d.max_header_bytes);
        self.live()
            .map(|t| topic_message_len(&t.config()))
            .fold(defaults, usize::max)
    }
}

/// The most bytes an envelope may take before a payload on a topic that allows
/// `max_headers` headers of `max_header_bytes` bytes: flags, stamp, the topic (a `str8` the
/// broker adds for pattern subscribers), reply_to (a `str8` of up to 255 bytes), reply, and
/// the headers with their count and length prefixes. Counting the topic block keeps every
/// frame the broker sends a pattern subscriber within the `max_frame_len` it announced.
pub fn max_envelope_len(max_headers: u16, max_header_bytes: u32) -> usize {
    1 + mycelium_transport::envelope::STAMP_LEN
        + 256
        + 256
        + mycelium_transport::envelope::REPLY_LEN
        + 2
        + 3 * usize::from(max_headers)
        + max_header_bytes as usize
}

/// The largest message (envelope and payload) a topic with these limits accepts.
fn message_len(max_message_size: usize, max_headers: u16, max_header_bytes: u32) -> usize {
    max_message_size.saturating_add(max_envelope_len(max_headers, max_header_bytes))
}

fn topic_message_len(config: &TopicConfig) -> usize {
    message_len(
        config.max_message_size,
        config.max_headers,
        config.max_header_bytes,
    )
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
    /// Declared topics that could not be made (a durable topic's log that would not open),
    /// each with why.
    pub failed: Vec<String>,
}

/// Dynamic topics (made by `[topic_defaults] auto_create`) that may exist at once. Past it,
/// unknown names are refused like undeclared ones until idle ones are reclaimed: otherwise
/// any peer could grow the topic table (and every `Stats` answer) without bound.
pub const MAX_AUTO_CREATED_TOPICS: usize = 10_000;

/// All topics of one broker; see the module docs.
#[derive(Debug)]
pub struct TopicRegistry {
    topics: RwLock<Topics>,
    /// The largest `max_message_size` of any live topic or of the defaults, kept up to date by
    /// every change, so connections read it without the lock.
    max_message_size: AtomicUsize,
    /// The largest message, envelope and payload, of any live topic or of the defaults
    /// (see [`max_envelope_len`]), kept up to date with `max_message_size`.
    max_message_len: AtomicUsize,
    next_subscriber: AtomicU64,
    /// Dynamic topics now; capped at [`MAX_AUTO_CREATED_TOPICS`]. Changed under the write
    /// lock.
    auto_created: AtomicUsize,
    /// Zero of the clock topics record their last use on ([`TopicRegistry::now_ms`]).
    epoch: Instant,
    /// Every pattern subscription, looked up when a topic is created.
    patterns: PatternIndex,
    /// The broker-wide latency histogram (every topic holds it too).
    latency: Arc<LatencyRecorder>,
}

/// The prefix of reply inboxes (`_INBOX.<client id>`): topics created on first use whatever
/// `auto_create` says, dynamic (reclaimed when idle), fanout, and reached by no pattern.
pub use mycelium_transport::envelope::{is_inbox, INBOX_PREFIX};

/// Why a client whose handshake said `client_id` may not subscribe to `name`, if `name` is
/// another client's reply inbox: a client reads only `_INBOX.<its own client id>` (the id in
/// base64url or hex, `mycelium_transport::envelope::inbox_owner`), so a reply reaches nobody
/// else.
pub fn foreign_inbox(name: &str, client_id: uuid::Uuid) -> Option<String> {
    name.strip_prefix(INBOX_PREFIX)?;
    (inbox_owner(name) != Some(client_id)).then(|| {
        format!(
            "topic '{name}' is a reply inbox of another client: a client may subscribe only to \
             its own, {} (the client id of its handshake)",
            inbox_name(client_id)
        )
    })
}

/// Takes the exclusive lock of `data_dir` (creating it and its `LOCK` file if needed), held
/// while the returned value lives, or says why not: another broker holds it, or the
/// directory cannot be used.
fn lock_data_dir(data_dir: &std::path::Path) -> Result<nix::fcntl::Flock<std::fs::File>, String> {
    std::fs::create_dir_all(data_dir).map_err(|e| {
        format!(
            "cannot create [storage] data_dir {}: {e}",
            data_dir.display()
        )
    })?;
    let path = data_dir.join("LOCK");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock).map_err(
        |(_, errno)| match errno {
            nix::errno::Errno::EWOULDBLOCK => format!(
                "[storage] data_dir {} is in use by another broker (it holds the lock on {})",
                data_dir.display(),
                path.display()
            ),
            errno => format!("cannot lock {}: {}", path.display(), errno.desc()),
        },
    )
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
        registry.latency.set_enabled(config.metrics.enabled);
        registry.write().storage = config.storage.clone();
        for topic in &config.topics {
            registry.create_topic(topic.clone())?;
        }
        Ok(registry)
    }

    /// An empty registry that creates unknown topics from `defaults` when they allow it.
    pub fn new(defaults: TopicDefaults) -> TopicRegistry {
        let latency = Arc::new(LatencyRecorder::default());
        TopicRegistry {
            latency: latency.clone(),
            max_message_size: AtomicUsize::new(defaults.max_message_size),
            max_message_len: AtomicUsize::new(message_len(
                defaults.max_message_size,
                defaults.max_headers,
                defaults.max_header_bytes,
            )),
            topics: RwLock::new(Topics {
                defaults,
                latency,
                ..Topics::default()
            }),
            next_subscriber: AtomicU64::new(1),
            auto_created: AtomicUsize::new(0),
            epoch: Instant::now(),
            patterns: PatternIndex::default(),
        }
    }

    /// The broker-wide publish-to-deliver latency histogram, and whether it records (off
    /// unless the broker's `metrics.enabled` says otherwise).
    pub fn latency(&self) -> &Arc<LatencyRecorder> {
        &self.latency
    }

    /// Milliseconds since the registry was made: the clock of [`Topic::last_active`].
    pub(crate) fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
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
        let topic = self.write().insert(config)?;
        self.max_message_size
            .fetch_max(topic.config().max_message_size, Ordering::Relaxed);
        self.max_message_len
            .fetch_max(topic_message_len(&topic.config()), Ordering::Relaxed);
        self.attach_patterns(&topic);
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
        // A new data_dir takes a restart (logs open stay where they are); a new segment size
        // applies to logs opened from now on.
        topics.storage.segment_bytes = config.storage.segment_bytes;
        if topics.storage.data_dir.is_none() {
            topics.storage.data_dir.clone_from(&config.storage.data_dir);
        }
        for name in removed {
            if let Some(gone) = topics.remove(name) {
                done.removed.push(gone);
            }
        }
        for declared in &config.topics {
            let existing = topics.named(&declared.name).cloned();
            if let Some(topic) = &existing {
                if topic.is_dynamic() {
                    // Declared from now on: never reclaimed, and no longer counted.
                    topic.set_dynamic(false);
                    self.auto_created.fetch_sub(1, Ordering::Relaxed);
                }
            }
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
                    match topics.insert(declared.clone()) {
                        Ok(topic) => done.added.push(topic),
                        Err(error) => done.failed.push(error.to_string()),
                    }
                }
                None => match topics.insert(declared.clone()) {
                    Ok(topic) => done.added.push(topic),
                    Err(error) => done.failed.push(error.to_string()),
                },
            }
        }
        topics.defaults = config.topic_defaults.clone();
        self.max_message_size
            .store(topics.max_message_size(), Ordering::Relaxed);
        self.max_message_len
            .store(topics.max_message_len(), Ordering::Relaxed);
        drop(topics);
        for topic in &done.added {
            self.attach_patterns(topic);
        }
        done
    }

    /// The topic with this name, created from the defaults if it is unknown and they allow it.
    ///
    /// Every lookup by name counts as a use of the topic (`Topic::touch`): whoever looks a
    /// topic up is about to subscribe, publish or attach.
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
        let inbox = is_inbox(name);
        if !defaults.auto_create && !inbox {
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
        let mut config = defaults.topic(name);
        if inbox {
            // A reply inbox: one requester subscribes, responders publish; always fanout.
            config.routing = mycelium_config::Routing::Fanout;
        }
        match self.create_dynamic(config) {
            Ok(topic) => {
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
            Err(CreateTopicError::Storage { reason, .. }) => Err(LookupError::Storage {
                name: name.to_owned(),
                reason,
            }),
        }
    }

    /// A dynamic topic (see [`TopicRegistry::resolve`]), created under the write lock with
    /// its mark and its count, so the sweep never sees it half made.
    fn create_dynamic(&self, config: TopicConfig) -> Result<Arc<Topic>, CreateTopicError> {
        let topic = {
            let mut topics = self.write();
            let topic = topics.insert(config)?;
            topic.set_dynamic(true);
            topic.touch(self.now_ms());
            self.auto_created.fetch_add(1, Ordering::Relaxed);
            topic
        };
        self.max_message_size
            .fetch_max(topic.config().max_message_size, Ordering::Relaxed);
        self.max_message_len
            .fetch_max(topic_message_len(&topic.config()), Ordering::Relaxed);
        self.attach_patterns(&topic);
        Ok(topic)
    }

    /// Attaches every pattern subscription matching a topic just created. Called after the
    /// topic is in the registry and outside its lock: a pattern subscribed meanwhile either
    /// found the topic in its scan or is in the trie now (attaching twice attaches once).
    fn attach_patterns(&self, topic: &Arc<Topic>) {
        for subscription in self.patterns.matching(topic.name()) {
            subscription.attach(topic, || self.next_subscriber_id());
        }
    }

    /// Adds a pattern subscription: attached to every matching fanout topic now, and to each
    /// one created from now on (see [`crate::core::patterns`]).
    pub fn subscribe_pattern(&self, subscription: &Arc<PatternSubscription>) {
        self.patterns.insert(subscription);
        for topic in self.all() {
            subscription.attach(&topic, || self.next_subscriber_id());
        }
    }

    /// Ends a pattern subscription: detached from every topic. Returns the topics it left.
    pub fn unsubscribe_pattern(&self, subscription: &Arc<PatternSubscription>) -> Vec<Arc<Topic>> {
        self.patterns.remove(subscription);
        subscription.end()
    }

    /// Pattern subscriptions in place.
    pub fn pattern_count(&self) -> usize {
        self.patterns.len()
    }

    /// The topic with this name, if it exists; a use of it ([`TopicRegistry::resolve`]).
    pub fn get_by_name(&self, name: &str) -> Option<Arc<Topic>> {
        let topics = self.read();
        let topic = topics.named(name)?.clone();
        // Under the read lock: the sweep, under the write lock, sees this use.
        topic.touch(self.now_ms());
        Some(topic)
    }

    /// The topic with this id, if any: a topic a reload removed too (see
    /// [`Topic::is_removed`]), so that its publishers can be told why it is gone; not a
    /// reclaimed dynamic topic, which leaves no trace.
    pub fn get(&self, id: TopicId) -> Option<Arc<Topic>> {
        self.read().by_id.get(&id).cloned()
    }

    /// Removes the dynamic topics nobody has used for `idle_ms` (0: none) and returns them,
    /// ended ([`Topic::remove`]) and forgotten: their names resolve afresh from now on. Their
    /// shared-memory rings are the caller's to free.
    ///
    /// A topic is in use while it has a subscriber reached through a delivery (socket,
    /// in-process), a [`PublisherHold`](crate::core::topic::PublisherHold), or
    /// `in_use_elsewhere` says so (shared-memory attachments); the sweep marks such a topic
    /// used now. The others are reclaimed once `idle_ms` has passed since their last use,
    /// checked again under the write lock, so a lookup made meanwhile keeps the topic.
    /// `in_use_elsewhere` is called without the registry's lock held.
    pub(crate) fn reclaim_idle(
        &self,
        idle_ms: u64,
        in_use_elsewhere: impl Fn(&Topic) -> bool,
    ) -> Vec<Arc<Topic>> {
        if idle_ms == 0 {
            return Vec::new();
        }
        let dynamic: Vec<Arc<Topic>> = self
            .read()
            .live()
            .filter(|t| t.is_dynamic())
            .cloned()
            .collect();
        let now = self.now_ms();
        let mut idle = Vec::new();
        for topic in dynamic {
            if is_used_here(&topic) || in_use_elsewhere(&topic) {
                topic.touch(now);
            } else if now.saturating_sub(topic.last_active()) >= idle_ms {
                let last_active = topic.last_active();
                idle.push((topic, last_active));
            }
        }
        if idle.is_empty() {
            return Vec::new();
        }
        let mut topics = self.write();
        let mut reclaimed = Vec::new();
        for (topic, last_active) in idle {
            let still_idle = topic.is_dynamic()
                && topic.last_active() == last_active
                && !is_used_here(&topic)
                && topics.by_name.get(topic.name()) == Some(&topic.id());
            if !still_idle {
                continue;
            }
            topics.by_name.remove(topic.name());
            topics.by_id.remove(&topic.id());
            topic.remove();
            self.auto_created.fetch_sub(1, Ordering::Relaxed);
            reclaimed.push(topic);
        }
        self.max_message_size
            .store(topics.max_message_size(), Ordering::Relaxed);
        self.max_message_len
            .store(topics.max_message_len(), Ordering::Relaxed);
        reclaimed
    }

    /// Removes the topic `name` if `auto_create` made it and no reload declared it since,
    /// in use or not: its subscribers are told it was removed. `None` when it is not there or
    /// is declared (checked again under the write lock); the caller frees its rings.
    pub(crate) fn remove_dynamic(&self, name: &str) -> Option<Arc<Topic>> {
        let mut topics = self.write();
        if !topics.named(name)?.is_dynamic() {
            return None;
        }
        let (topic, _) = topics.remove(name)?;
        topics.by_id.remove(&topic.id());
        self.auto_created.fetch_sub(1, Ordering::Relaxed);
        self.max_message_size
            .store(topics.max_message_size(), Ordering::Relaxed);
        self.max_message_len
            .store(topics.max_message_len(), Ordering::Relaxed);
        Some(topic)
    }

    /// Every live topic, in id order.
    pub fn all(&self) -> Vec<Arc<Topic>> {
        self.read().live().cloned().collect()
    }

    /// The largest `max_message_size` of any topic or of the defaults.
    pub fn max_message_size(&self) -> usize {
        self.max_message_size.load(Ordering::Relaxed)
    }

    /// The largest message, its envelope included, that any topic (or the defaults) accepts:
    /// a payload of `max_message_size` behind the largest envelope its header limits allow.
    pub fn max_message_len(&self) -> usize {
        self.max_message_len.load(Ordering::Relaxed)
    }

    /// Dynamic topics now.
    pub fn dynamic_count(&self) -> usize {
        self.auto_created.load(Ordering::Relaxed)
    }

    /// A fresh subscription id.
    pub fn next_subscriber_id(&self) -> SubscriberId {
        self.next_subscriber.fetch_add(1, Ordering::Relaxed)
    }
}

/// Whether the routing core itself knows a user of `topic`: a subscriber reached through a
/// delivery, or a publisher's hold.
fn is_used_here(topic: &Topic) -> bool {
    let subscribed = match topic.routing() {
        mycelium_config::Routing::Fanout => topic.has_direct_subscriber(),
        mycelium_config::Routing::Queue => topic.subscriber_count() > 0,
    };
    subscribed || topic.publisher_count() > 0
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
        // Room for the largest envelope the defaults' header limits (32, 4096) allow, with
        // the topic block of a pattern delivery.
        assert_eq!(
            max_envelope_len(32, 4096),
            1 + 24 + 256 + 256 + 19 + 2 + 96 + 4096
        );
        assert_eq!(
            registry.max_message_len(),
            100_000 + max_envelope_len(32, 4096)
        );
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

    fn auto_creating() -> Arc<TopicRegistry> {
        Arc::new(TopicRegistry::new(TopicDefaults {
            auto_create: true,
            ..TopicDefaults::default()
        }))
    }

    /// Past an idle timeout of 1 ms.
    fn idle_a_while() {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }

    fn nothing_else(_: &Topic) -> bool {
        false
    }

    #[test]
    fn an_unused_dynamic_topic_is_reclaimed_and_its_name_made_anew() {
        let registry = auto_creating();
        let old = registry.resolve("session.1").expect("auto-created");
        assert!(old.is_dynamic());
        assert_eq!(registry.dynamic_count(), 1);
        assert!(
            registry.reclaim_idle(60_000, nothing_else).is_empty(),
            "just used"
        );
        idle_a_while();
        assert!(
            registry.reclaim_idle(0, nothing_else).is_empty(),
            "0: never"
        );
        let reclaimed = registry.reclaim_idle(1, nothing_else);
        assert_eq!(reclaimed.len(), 1);
        assert!(old.is_removed());
        assert!(registry.get(old.id()).is_none(), "no trace left by id");
        assert!(registry.all().is_empty());
        assert_eq!(registry.dynamic_count(), 0);
        let again = registry.resolve("session.1").expect("created again");
        assert!(again.id() > old.id(), "ids are never reused");
        assert!(again.is_dynamic());
    }

    #[test]
    fn subscribers_publishers_and_other_paths_keep_a_dynamic_topic() {
        let registry = auto_creating();
        let broker = crate::LocalBroker::with_registry(registry.clone());
        let subscription = broker.subscribe("subbed").expect("subscribe");
        let publisher = broker.publisher("pubbed").expect("publisher");
        let elsewhere = registry.resolve("elsewhere").expect("auto-created");
        let other_path = |t: &Topic| t.name() == "elsewhere";
        idle_a_while();
        assert!(registry.reclaim_idle(1, other_path).is_empty());
        let clone = publisher.clone();
        drop(publisher);
        drop(subscription);
        idle_a_while();
        let reclaimed = registry.reclaim_idle(1, other_path);
        let names: Vec<&str> = reclaimed.iter().map(|t| t.name()).collect();
        assert_eq!(names, ["subbed"], "a clone of the publisher still holds it");
        drop(clone);
        idle_a_while();
        let reclaimed = registry.reclaim_idle(1, nothing_else);
        let mut names: Vec<&str> = reclaimed.iter().map(|t| t.name()).collect();
        names.sort_unstable();
        assert_eq!(names, ["elsewhere", "pubbed"]);
        assert!(elsewhere.is_removed());
    }

    #[test]
    fn a_lookup_by_name_counts_as_a_use() {
        let registry = auto_creating();
        registry.resolve("t").expect("auto-created");
        std::thread::sleep(std::time::Duration::from_millis(50));
        registry.get_by_name("t").expect("still there");
        assert!(registry.reclaim_idle(40, nothing_else).is_empty());
    }

    #[test]
    fn declared_topics_are_never_reclaimed_and_a_declaration_ends_being_dynamic() {
        let registry = auto_creating();
        registry
            .create_topic(TopicDefaults::default().topic("declared"))
            .expect("declared");
        let auto = registry.resolve("auto").expect("auto-created");
        let mut config = config_with(&[("auto", mycelium_config::Routing::Fanout, 65536)]);
        config.topic_defaults.auto_create = true;
        registry.reconfigure(&config, &[]);
        assert!(!auto.is_dynamic(), "declared by the reload");
        assert_eq!(registry.dynamic_count(), 0);
        idle_a_while();
        assert!(registry.reclaim_idle(1, nothing_else).is_empty());
        assert_eq!(registry.all().len(), 2);
    }

    #[test]
    fn the_limit_counts_the_dynamic_topics_that_exist_not_those_ever_made() {
        let registry = auto_creating();
        for i in 0..MAX_AUTO_CREATED_TOPICS {
            registry.resolve(&format!("t{i}")).expect("under the limit");
        }
        assert!(matches!(
            registry.resolve("one-too-many"),
            Err(LookupError::TooManyTopics { .. })
        ));
        idle_a_while();
        assert_eq!(
            registry.reclaim_idle(1, nothing_else).len(),
            MAX_AUTO_CREATED_TOPICS
        );
        registry.resolve("one-too-many").expect("room again");
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
