//! Durable topics: what the broker keeps on disk for a topic with `durable = true`.
//!
//! - [`TopicLog`]: the topic's log, appended by [`Topic::publish`](crate::core::topic::Topic::publish)
//!   before it routes a batch, whichever path published it (socket, shared memory through the
//!   broker's reader, in-process and the gateway).
//!
//! # Layout
//! - `topic_log.rs`: [`TopicLog`], [`LogFigures`], [`LogOpenError`].

mod topic_log;

pub use topic_log::{LogFigures, LogOpenError, TopicLog};
