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
    /// A durable topic's log could not be opened (or `[storage] data_dir` is not set).
    #[error("durable topic '{name}': {reason}")]
    Storage {
        /// The topic.
        name: String,
        /// Why, with the causes (the log's directory, the I/O error).
        reason: String,
    },
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
    /// Auto-creating a durable topic (`[topic_defaults] durable = true`) failed to open its log.
    #[error("cannot auto-create durable topic '{name}': {reason}")]
    Storage {
        /// The name asked for.
        name: String,
        /// Why.
        reason: String,
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
    /// The headers exceed the topic's `max_headers` or `max_header_bytes`; nothing was routed.
    #[error("{count} header(s) of {bytes} bytes exceed the limits of topic '{topic}' (max_headers = {max_headers}, max_header_bytes = {max_header_bytes})")]
    HeadersTooLarge {
        /// The topic.
        topic: String,
        /// Headers on the message.
        count: usize,
        /// Bytes of their keys and values.
        bytes: usize,
        /// The topic's `max_headers`.
        max_headers: u16,
        /// The topic's `max_header_bytes`.
        max_header_bytes: u32,
    },
    /// A durable topic's log could not store the message(s) (a full disk, an I/O error);
    /// nothing was routed.
    #[error("{message}")]
    Storage {
        /// The topic.
        topic: String,
        /// What failed, with the operating system's words.
        message: String,
    },
}

/// Why an in-process subscribe was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubscribeError {
    /// The topic could not be resolved.
    #[error(transparent)]
    Lookup(#[from] LookupError),
    /// No echo was asked on a queue topic: it applies to fanout topics only (a queue
    /// message goes to one consumer, whoever published it).
    #[error("no_echo applies to fanout topics; topic '{topic}' is a queue")]
    NoEchoOnQueue {
        /// The topic.
        topic: String,
    },
}

/// `error` and its causes, joined: what an operator needs to see of an I/O failure.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
