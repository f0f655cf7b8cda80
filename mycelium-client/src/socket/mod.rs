//! The socket transport of the async client: one connection to the broker over its Unix
//! socket, shared by the publishers and subscriptions made on it.
//!
//! # Layout
//!
//! Each module uses only those listed before it:
//!
//! 1. `queue`: [`SUBSCRIPTION_BUFFER`] and the queue a subscription shares with the reader task.
//! 2. `handshake`: the connection's options, the handshake, [`BrokerInfo`].
//! 3. `connection`: the shared state, the reader and writer tasks, dispatching.
//! 4. `requests`: requests and their answers ([`BrokerStats`], [`ReloadReport`]).
//! 5. `publisher`, `subscription`: publishing, and a subscription's receive side.
//! 6. `client`: the handle that opens the connection and makes the above.
//! 7. `durable`: the requests of durable topics (durable subscriptions, confirmed publishes,
//!    consumer groups) on that handle.

mod client;
mod connection;
mod durable;
mod handshake;
mod publisher;
mod queue;
mod requests;
mod subscription;

pub(crate) use client::SocketClient;
pub use handshake::BrokerInfo;
pub(crate) use handshake::{welcome_error, SocketOptions};
pub(crate) use publisher::SocketPublisher;
pub use queue::SUBSCRIPTION_BUFFER;
pub use requests::{BrokerStats, ReloadReport};
pub(crate) use subscription::SocketSubscription;
