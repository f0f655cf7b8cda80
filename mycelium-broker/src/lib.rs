//! The Mycelium broker: topic routing, the Unix-socket server, the async client and the CLI.
//!
//! - The routing core ([`core`]) is usable in-process through the [`Broker`] trait
//!   ([`LocalBroker`]); the socket server ([`server`]) runs the very same topics over UDS.
//! - Fanout topics give every subscriber every message; queue topics give each message to exactly
//!   one consumer, spread by credit so that no consumer hoards. Order is kept per publisher per topic.
//! - Every path toward a peer goes through an [`outbox::Outbox`]: bounded, and coalescing so
//!   that one `write` carries everything queued since the last.
//! - The client ([`client`]) is a cheap `Clone` handle over one connection.
//!
//! # Layout
//! - [`outbox`]: the bounded, coalescing frame queue toward one peer.
//! - [`core`]: topics ([`core::topic`]), the registry ([`core::registry`]), the in-process broker
//!   ([`core::local`]).
//! - [`server`]: socket binding, the accept loop, connections, graceful shutdown, and hot
//!   reload of the config file ([`server::reload`]).
//! - [`client`]: the async client library.
//! - [`error`]: the routing core's errors.
#![forbid(unsafe_code)]

pub mod client;
pub mod core;
pub mod error;
pub mod outbox;
pub mod server;

pub use client::{
    AsyncShmPublisher, AsyncShmSubscription, Backoff, Client, ClientError, ClientOptions, Message,
    Publisher, ReconnectingPublisher, ReconnectingSubscription, ShmClient, ShmOptions,
    ShmPublisher, ShmSubscription, Subscription, SubscriptionEvent,
};
pub use core::local::{Broker, LocalBroker, LocalPublisher, LocalSubscription};
pub use core::topic::{Topic, TopicId};
pub use server::{bind_socket, Server};
