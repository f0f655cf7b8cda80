//! The client of a Mycelium broker: what an application links to publish and subscribe.
//!
//! - [`Client`] (async, tokio) and [`blocking::Client`] (for threads without a runtime) talk
//!   to a broker process over its Unix socket. [`ClientOptions::transport`] chooses how the
//!   messages travel: through the broker over the socket ([`Transport::Socket`], the
//!   default), through shared-memory rings one hop from publisher to subscriber
//!   ([`Transport::SharedMemory`]), or shared memory where the broker offers it
//!   ([`Transport::Auto`]). The types do not change with the transport.
//! - `subscribe` returns a [`Subscription`] ([`blocking::Subscription`]); `publisher` a
//!   [`Publisher`] ([`blocking::Publisher`], which also lends ring bytes to write a message
//!   in place: [`blocking::Publisher::loan`]).
//! - Every subscription hands out the one [`Message`] type and keeps one receive contract
//!   ([`mycelium_transport::receive`]): `recv`, `try_recv` (and `recv_timeout` when
//!   blocking) return a message, or [`RecvError::Lagged`] (messages lost; it goes on), or
//!   [`RecvError::Ended`] with the [`SubscriptionEnd`]. Async subscriptions implement
//!   [`Receive`] and `Stream`.
//! - A message may carry an envelope: headers ([`Publisher::publish_with`] and its blocking
//!   and reconnecting twins, bounded per topic: [`PublishError::HeadersTooLarge`]), and on a
//!   topic declared with `stamp = true` an id and publish time taken by the publisher
//!   ([`Message::id`], [`Message::timestamp_ns`]). A message without either travels as
//!   before, with nothing added.
//! - [`SubscribeOptions`] (`subscribe_with`): leave out what this client publishes itself
//!   (`no_echo`), a queue topic's prefetch.
//! - Durable topics (over the socket, whatever the transport): [`Client::subscribe_durable`]
//!   reads a topic's log from a [`StartPosition`], alone or in a consumer group
//!   ([`DurableOptions`]), handing out [`DurableMessage`]s to acknowledge (in batches) or give
//!   back ([`NackAction`]); [`Client::publish_durable`] waits until the broker stored the
//!   message and returns its offset; [`Client::groups`] lists a topic's [`GroupStats`], and
//!   [`Client::stats`] tells what each durable topic's log holds ([`LogStats`]).
//! - [`Client`] implements [`Broker`], so code written once against the trait runs against
//!   an in-process broker or a broker process.
//! - Each operation has its own error: [`ConnectError`], [`PublishError`],
//!   [`SubscribeError`], [`RequestError`] (stats, reload, flush, close, unsubscribe).
//! - [`ReconnectingSubscription`] and [`ReconnectingPublisher`] survive a broker restart,
//!   retrying with a [`Backoff`]; reconnections are announced as [`ConnectionEvent`]s.
//!
//! # Layout
//!
//! Each module uses only those listed before it:
//!
//! - `error`: the errors per operation.
//! - `subscribe_options`: [`SubscribeOptions`].
//! - `socket`: the socket connection (handshake, reader and writer tasks, requests, socket
//!   publishers and subscriptions): internal.
//! - `shm`: the shared-memory session, rings and loans: internal.
//! - `client`: [`Client`], [`Subscription`], [`Publisher`], [`ClientOptions`], [`Transport`].
//! - [`durable`]: durable subscriptions, their messages and acknowledgements, and the
//!   [`Client`] methods of durable topics.
//! - [`blocking`]: the blocking flavour.
//! - `reconnect`: the reconnecting handles and [`Backoff`].
//!
//! # Example
//!
//! Application code written against [`Broker`] runs against a broker process through
//! [`Client`] (and embedded, against `mycelium_broker::LocalBroker`):
//!
//! ```no_run
//! use mycelium_client::{Broker, Client, Receive};
//!
//! async fn echo_once<B: Broker>(broker: &B) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
//!     let mut subscription = broker.subscribe("prices").await?;
//!     broker.publish("prices", b"42").await?;
//!     let message = subscription.recv().await?;
//!     Ok(message.payload().to_vec())
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let client = Client::connect("/tmp/mycelium.sock").await?;
//! assert_eq!(echo_once(&client).await?, b"42");
//! client.close().await?;
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]

pub mod blocking;
mod client;
pub mod durable;
mod error;
mod reconnect;
mod request;
mod shm;
mod socket;
mod subscribe_options;

pub use client::{Client, ClientOptions, Publisher, Subscription, Transport};
pub use durable::{DurableMessage, DurableOptions, DurableSubscription};
pub use error::{
    Cause, ConnectError, HeaderLimit, PublishError, ReplyError, RequestError, SubscribeError,
};
pub use mycelium_transport::envelope;
pub use mycelium_transport::envelope::{HeaderError, Headers, Stamp};
pub use mycelium_transport::{
    Broker, Message, Receive, RecvError, RecvTimeoutError, SubscriptionEnd, TryRecvError,
};
pub use mycelium_transport::{GroupStats, LogStats, NackAction, StartPosition};
pub use reconnect::{
    Backoff, ConnectionEvent, ReconnectingPublisher, ReconnectingSubscription,
    DEFAULT_INITIAL_DELAY, DEFAULT_MAX_DELAY,
};
pub use request::inbox_of;
pub use shm::ShmOptions;
pub use socket::{BrokerInfo, BrokerStats, ReloadReport, SUBSCRIPTION_BUFFER};
pub use subscribe_options::SubscribeOptions;
