//! The Mycelium broker: topic routing and the server (Unix sockets and shared memory).
//!
//! - The routing core ([`core`]) knows no wire format: a [`Topic`] decides who gets each
//!   message under its backpressure policy and hands it to each subscriber's [`Delivery`];
//!   each front end (the socket server, the in-process broker, later HTTP, WebSocket or NATS)
//!   owns its encoding, and reads the core's figures as plain [`TopicStatistics`].
//! - Fanout topics give every subscriber every message; queue topics give each message to
//!   exactly one consumer, spread by credit so that no consumer hoards. Order is kept per
//!   publisher per topic.
//! - The in-process broker ([`LocalBroker`]) implements the transport's [`Broker`] trait, as
//!   the `mycelium-client` crate does for a broker process: application code written once runs
//!   embedded or against `mycelium run`.
//!
//! # Public API
//!
//! Embedding the broker:
//! - [`LocalBroker`] (`create_topic`, `publisher`, `subscribe`, and [`Broker`]),
//!   [`LocalPublisher`], [`LocalSubscription`] (the receive contract of
//!   `mycelium_transport::receive`: [`Message`](mycelium_transport::Message), `Lagged`, the
//!   end, `Stream`).
//!
//! Running the server:
//! - [`Server`], [`bind_socket`], [`ServeError`], [`ReloadHandle`] and [`ReloadAnswer`]
//!   (the [`server`] module).
//! - [`BrokerHandle`] for a front end in the broker's process, and its figures:
//!   [`BrokerStatistics`] (what `Stats` reports) and [`BrokerMetrics`] (connections by
//!   kind, reloads, per topic [`TopicMetrics`]: bytes, [`DroppedBy`] reason, subscribers by
//!   transport, depth and lag; latency as a [`LatencySnapshot`] and [`LatencySummary`]).
//!
//! Writing a front end (what the socket server itself uses):
//! - [`TopicRegistry`]: topics by name and id (`resolve`, `create_topic`, `get`,
//!   `next_subscriber_id`).
//! - [`Topic`]: [`Topic::subscribe`] with a [`Delivery`] of your own, [`Topic::publish`] of a
//!   [`Batch`] from a [`PublishCursor`] (resuming after [`Progress::Blocked`] by waiting on
//!   the [`Blocker`], or [`Topic::wait_or_give_up`] under `publish_deadline_ms`), credit for
//!   queue consumers ([`Topic::add_credit`]), access checks ([`Topic::check_access`] with an
//!   [`Action`] and a [`PeerIdentity`]), [`Topic::statistics`],
//!   [`Topic::subscriber_figures`], [`Topic::latency`].
//! - [`Delivery`], with [`Delivered`], [`Ending`] and [`BatchRef`]: how a topic reaches one
//!   subscriber.
//! - The errors of each operation: [`CreateTopicError`], [`LookupError`], [`PublishError`],
//!   [`SubscribeError`].
//! - Wildcard subscriptions: [`Pattern`] (`orders.*`, `orders.>`; parsing fails with a
//!   [`PatternParseError`]) and [`SubjectTrie`], every value whose pattern matches a topic
//!   name ([`SubjectTrie::for_each_match`]) at the cost of one walk down the name's tokens.
//!
//! # Layout
//! - [`core`]: topics ([`core::topic`]: one concept per file), the registry
//!   ([`core::registry`]), the way to a subscriber ([`core::delivery`], [`core::batch`]), the
//!   shared-memory relay's shape ([`core::relay`]), access lists ([`core::acl`]), the
//!   in-process broker ([`core::local`]), subject patterns and their trie
//!   ([`core::subject`]).
//! - [`server`]: socket binding, the accept loop, connections (whose outbox is their
//!   [`Delivery`]), the shared-memory ring directory and sessions, graceful shutdown, and hot
//!   reload of the config file. Its modules are the crate's own; it exports only what running
//!   a server takes.
//! - [`error`]: the routing core's errors.
#![forbid(unsafe_code)]

pub mod core;
pub mod error;
pub mod server;

pub use core::acl::{Action, PeerIdentity};
pub use core::batch::{Batch, BatchRef, Item};
pub use core::delivery::{Delivered, Delivery, Ending, RoomWait, SubscriberTransport};
pub use core::latency::{LatencyBucket, LatencyRecorder, LatencySnapshot, LatencySummary};
pub use core::local::{LocalBroker, LocalPublisher, LocalSubscription};
pub use core::patterns::{OnAttach, PatternSubscription};
pub use core::registry::{is_inbox, TopicRegistry, INBOX_PREFIX};
pub use core::subject::{Pattern, PatternParseError, SubjectTrie, MAX_PATTERN_LEN};
pub use core::topic::{
    Blocker, DropReason, DroppedBy, GaveUp, HeldBack, Progress, PublishCursor, SubscriberFigures,
    SubscriberId, Topic, TopicId, TopicStatistics,
};
pub use error::{CreateTopicError, LookupError, PublishError, SubscribeError};
pub use mycelium_transport::Broker;
pub use server::{
    bind_socket, preflight, BrokerHandle, BrokerMetrics, BrokerStatistics, ConnectionCounts,
    LastReload, ReloadAnswer, ReloadHandle, ReloadMetrics, RemoveTopicError, ServeError, Server,
    SubscriberCounts, SubscriberLag, TopicMetrics,
};
