//! Durable topics: what the broker keeps on disk for a topic with `durable = true`.
//!
//! - [`TopicLog`]: the topic's log, appended by [`Topic::publish`](crate::core::topic::Topic::publish)
//!   before it routes a batch, whichever path published it (socket, shared memory through the
//!   broker's reader, in-process and the gateway).
//!
//! - [`Follower`]: a replay subscription, the log read into one subscriber from a start
//!   position and then followed.
//!
//! # Layout
//! - `topic_log.rs`: [`TopicLog`], [`LogFigures`], [`LogOpenError`].
//! - `follower.rs`: [`Follower`].

mod follower;
mod topic_log;

pub use follower::Follower;
pub use topic_log::{LogFigures, LogOpenError, TopicLog};
