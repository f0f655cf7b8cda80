//! One topic: its settings, its counters and how it hands messages to subscribers.
//!
//! - [`Topic::publish`] routes a *batch* of payloads, taking each subscriber's lock once per
//!   batch rather than once per message.
//! - Fanout: every subscriber gets every message, in publish order. Queue: each message goes to
//!   exactly one consumer with credit, dealt round-robin; while no consumer has credit, messages
//!   wait in the topic's backlog (at most `buffer_size`).
//! - When a subscriber's sink (fanout) or the backlog (queue) is full, the topic's
//!   [`Backpressure`](mycelium_config::Backpressure) policy decides: `block` returns [`Progress::Blocked`] with a
//!   [`PublishCursor`] to resume from once [`Blocker::wait`] resolves, so nothing is delivered
//!   twice or skipped; `drop_newest` drops the new messages and counts them; `drop_oldest`
//!   drops the subscriber's oldest queued messages of the topic to make room (fanout), or the
//!   oldest of the backlog (queue), and counts them, so what is kept is always the newest;
//!   `disconnect` closes the slow subscriber with a `SlowConsumer` error (fanout; on a queue
//!   topic it drops like `drop_newest`, since no single consumer is at fault).
//! - No echo: a fanout subscriber made with [`Topic::subscribe_skipping`] does not get the
//!   batches published with its origin ([`PublishCursor::from_origin`]: a connection's id, an
//!   in-process broker handle's); a skipped batch is neither delivered nor dropped for it.
//!   The check is one comparison per subscriber per batch.
//! - Messages may carry envelopes (`crate::core::batch::Item`); the topic never reads them,
//!   and keeps the mark with each message it holds (a queue's backlog).
//! - Per publisher order holds because one publisher's batches are routed one after another and
//!   each subscriber's frames are appended in order.
//! - A hot reload may replace every setting but the name and the routing
//!   (`Topic::set_config`); each routing call reads the settings once, so a batch is routed
//!   wholly on the old or wholly on the new ones, and messages already queued are never
//!   dropped for a smaller `buffer_size` (it applies to the next message). A reload may also
//!   end the topic (`Topic::remove`): its subscribers are told (`TopicRemoved`), then
//!   dropped, and publishes route nothing from then on.
//! - A fanout topic may also have a [`Relay`]: it receives every batch once, before the
//!   topic's direct subscribers, for subscribers on another path (the shared-memory relay
//!   ring). When it cannot take all of a batch (its ring is full), the policy decides as for
//!   a full subscriber: `block` and `disconnect` return [`Progress::Blocked`] ([`Blocker::Relay`]) and
//!   the relay is handed only the rest on resume; `drop_newest` and `drop_oldest` drop the
//!   rest for the relay's readers and count it.
//! - `publish_deadline_ms` bounds how long one batch waits on one reader ([`HeldBack`] keeps
//!   the clock across every wake-up of that wait, [`Topic::wait_or_give_up`] applies it):
//!   past it [`Topic::give_up`] disconnects the full subscriber, detaches the shared-memory
//!   readers that hold the relay full ([`Relay::detach_laggards`]), or drops the rest of a
//!   queue batch.
//! - A queue topic may also have a [`QueueRelay`]: its shared-memory consumers
//!   (`Topic::subscribe_relayed`) take part in the deal beside the socket consumers, each
//!   with credit = `prefetch` minus what was dealt to it and not yet read. A message the relay
//!   cannot take (its ring is full) goes to another consumer or to the backlog, under the
//!   topic's policy; it is never dropped for that alone. Nothing tells the topic when a
//!   shared-memory consumer reads, so whoever installs the relay drains the backlog into it
//!   (`Topic::drain_backlog_now`, `Topic::wait_backlogged`).
//!
//! # Layout
//! - `topic.rs`: [`Topic`] itself, its settings, subscribe and unsubscribe, removal, and
//!   [`Topic::publish`], which hands a batch to the relay, then to fanout or queue routing.
//! - `fanout.rs`: every subscriber gets every message; `queue.rs`: each message to one
//!   consumer by credit; `backlog.rs`: a queue topic's messages waiting for credit;
//!   `relay.rs`: a fanout topic's shared-memory relay.
//! - `cursor.rs`: [`PublishCursor`] and [`Progress`]; `blocker.rs`: [`Blocker`], what a
//!   held-back publish waits for; `deadline.rs`: [`HeldBack`] and [`GaveUp`],
//!   `publish_deadline_ms`.
//! - `counters.rs`: the counters and [`TopicStatistics`]; `drops.rs`: why messages were
//!   lost ([`DropReason`]); `subscribers.rs`: the subscribers by transport and what is queued
//!   toward them ([`SubscriberFigures`]); `latency.rs`: the topic's latency histogram.
//! - `usage.rs`: whether the topic is dynamic (auto-created), its publishers' claims
//!   (`PublisherHold`), and when it was last used: what reclaiming idle topics needs.

mod backlog;
mod blocker;
mod counters;
mod cursor;
mod deadline;
mod drops;
mod fanout;
mod latency;
mod queue;
mod relay;
mod subscribers;
#[cfg(test)]
pub(crate) mod test_support;
#[allow(clippy::module_inception)]
mod topic;
mod usage;

pub use crate::core::batch::Batch;
pub use crate::core::ids::{SubscriberId, TopicId};
pub use crate::core::relay::{QueueRelay, Relay, Relayed};
pub use blocker::{Blocker, RELAY_ROOM_POLL};
pub use counters::TopicStatistics;
pub use cursor::{Progress, PublishCursor, StorageRefusal};
pub use deadline::{GaveUp, HeldBack};
pub use drops::{DropReason, DroppedBy};
pub use subscribers::SubscriberFigures;
pub use topic::Topic;
pub(crate) use usage::PublisherHold;
