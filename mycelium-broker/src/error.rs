//! Errors of the routing core, one enum per operation.

/// Why a topic could not be declared.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CreateTopicError {
    /// A topic with this name exists already.
    #[error("topic '{name}' already exists")]
    AlreadyExists {
        /// The name.
        name: String,
    },
    /// The name breaks the naming rules.
    #[error("invalid topic name '{name}': {problem}")]
    InvalidName {
        /// The name.
        name: String,
        /// Which rule.
        problem: &'static str,
    },
    /// All 2^32 topic ids of this broker run are used.
    #[error("too many topics")]
    TooManyTopics,
}

/// Why a topic name could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    /// Auto-creating it would exceed the broker's topic limit.
    #[error("cannot auto-create topic '{name}': the broker already auto-created {max} topics")]
    TooManyTopics {
        /// The name asked for.
        name: String,
        /// The limit.
        max: usize,
    },
    /// Not declared in the config, and `[topic_defaults] auto_create` is off.
    #[error("unknown topic '{name}' (declare it in broker.toml or set [topic_defaults] auto_create = true)")]
    UnknownTopic {
        /// The name asked for.
        name: String,
    },
    /// The name breaks the naming rules.
    #[error("invalid topic name '{name}': {problem}")]
    InvalidName {
        /// The name asked for.
        name: String,
        /// Which rule.
        problem: &'static str,
    },
}

/// Why an in-process publish was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// The topic could not be resolved.
    #[error(transparent)]
    Lookup(#[from] LookupError),
    /// The payload exceeds the topic's `max_message_size`; nothing was routed.
    #[error("message of {size} bytes exceeds the limit of {max} bytes on topic '{topic}'")]
    MessageTooLarge {
        /// The topic.
        topic: String,
        /// The payload's size.
        size: usize,
        /// The topic's limit.
        max: usize,
    },
}

/// Why an in-process subscribe was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubscribeError {
    /// The topic could not be resolved.
    #[error(transparent)]
    Lookup(#[from] LookupError),
}
