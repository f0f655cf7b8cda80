//! Durable topics: what the broker keeps on disk for a topic with `durable = true`.
//!
//! - [`TopicLog`]: the topic's log, appended by [`Topic::publish`](crate::core::topic::Topic::publish)
//!   before it routes a batch, whichever path published it (socket, shared memory through the
//!   broker's reader, in-process and the gateway).
//! - [`ConsumerGroups`]: the topic's consumer groups ([`TopicLog::groups`]), each dealing the
//!   log's messages among its members, one member at a time per message, with acks, nacks,
//!   redelivery and dead-lettering ([`DeadLetters`]); their committed positions are kept in
//!   `<log dir>/groups/`.
//!
//! - [`Follower`]: a replay subscription, the log read into one subscriber from a start
//!   position and then followed.
//!
//! # Layout
//! - `topic_log.rs`: [`TopicLog`], [`LogFigures`], [`LogOpenError`].
//! - `follower.rs`: [`Follower`].
//! - `groups.rs`: [`ConsumerGroups`], [`GroupMembership`], [`JoinError`]: joining and reporting.
//! - `group.rs`: one group and the task that drives it.
//! - `group_state.rs`: a group's bookkeeping (pending, ready, delayed, members), without I/O.
//! - `group_message.rs`: the bytes a member gets (`Mycelium-Delivery-Count`, OFFSET).
//! - `dead_letter.rs`: [`DeadLetters`], [`DeadLetterHeaders`]: what a group gives up.
//! - `group_store.rs`: a group's position file.

mod dead_letter;
mod follower;
mod group;
mod group_message;
mod group_state;
mod group_store;
#[cfg(test)]
mod group_tests;
mod groups;
mod topic_log;

pub use dead_letter::{
    DeadLetterHeaders, DeadLetterReason, DeadLetters, DEAD_LETTER_GROUP_HEADER,
    DEAD_LETTER_OFFSET_HEADER, DEAD_LETTER_REASON_HEADER, DEAD_LETTER_TOPIC_HEADER,
};
pub use follower::Follower;
pub use group::PERSIST_EVERY;
pub use group_message::DELIVERY_COUNT_HEADER;
pub use groups::{
    is_group_name, ConsumerGroups, GroupMembership, JoinError, MAX_GROUPS_PER_TOPIC,
    MAX_GROUP_NAME_LEN, MAX_MEMBERS_PER_GROUP,
};
pub use topic_log::{LogFigures, LogOpenError, TopicLog};
