//! The Mycelium broker: topic routing and the server (Unix sockets and shared memory).
//!
//! - The routing core ([`core`]) is usable in-process through the [`Broker`] trait
//!   ([`LocalBroker`]); the socket server ([`server`]) runs the very same topics over UDS.
//! - Fanout topics give every subscriber every message; queue topics give each message to exactly
//!   one consumer, spread by credit so that no consumer hoards. Order is kept per publisher per topic.
//! - Every path toward a peer goes through an
//!   [`Outbox`](mycelium_transport::outbox::Outbox): bounded, and coalescing so that one
//!   `write` carries everything queued since the last.
//! - Applications talk to a broker process through the `mycelium-client` crate.
//!
//! # Layout
//! - [`core`]: topics ([`core::topic`]), the registry ([`core::registry`]), the in-process broker
//!   ([`core::local`]).
//! - [`server`]: socket binding, the accept loop, connections, graceful shutdown, and hot
//!   reload of the config file ([`server::reload`]).
//! - [`error`]: the routing core's errors.
#![forbid(unsafe_code)]

pub mod core;
pub mod error;
pub mod server;

pub use core::local::{LocalBroker, LocalPublisher, LocalSubscription};
pub use core::topic::{Topic, TopicId};
pub use mycelium_transport::Broker;
pub use server::{bind_socket, Server};
