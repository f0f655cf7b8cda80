//! The routing core in-process, behind the [`Broker`](mycelium_transport::Broker) trait: no
//! sockets, no frames.
//!
//! - [`LocalBroker`] routes through the same [`Topic`](crate::Topic)s as the socket server;
//!   each [`LocalSubscription`] is reached through a queue of payloads of its own (a
//!   [`Delivery`](crate::core::delivery::Delivery)), so benchmarking it measures the real
//!   routing path minus the kernel and the encoding.
//! - [`LocalSubscription`] keeps the receive contract of `mycelium_transport::receive`:
//!   `recv` / `try_recv` hand out [`Message`](mycelium_transport::Message)s (zero-copy slices
//!   of the queue's buffer); where a `drop_newest` / `drop_oldest` topic dropped messages
//!   for it, a `Lagged(n)` notice comes in their place and it goes on; once the topic is
//!   removed it ends (`Ended(TopicRemoved)`) after what was routed to it. It is also a
//!   `Stream`. A queue subscription returns credit as messages are taken, and every
//!   subscription unsubscribes itself when dropped.
//! - Envelopes: [`LocalPublisher::publish_with`] publishes with headers, and on a topic with
//!   `stamp = true` every message of a [`LocalPublisher`] is stamped (id and publish time);
//!   enveloped messages reach socket subscribers as `DeliverEnvelope` frames and in-process
//!   ones as [`Message`](mycelium_transport::Message)s with their envelope.
//! - No echo: [`LocalBroker::subscribe_no_echo`] skips what the same handle (its clones, the
//!   publishers it made) publishes on a fanout topic.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use mycelium_broker::{Broker, LocalBroker};
//! let broker = LocalBroker::new(mycelium_config::TopicDefaults::default());
//! broker.create_topic(mycelium_config::TopicDefaults::default().topic("prices"))?;
//! let mut sub = broker.subscribe("prices")?;
//! broker.publish("prices", b"42").await?;
//! let message = sub.recv().await?;
//! assert_eq!((message.topic(), &message[..]), ("prices", &b"42"[..]));
//! # Ok(()) }
//! ```

mod broker;
mod sink;
mod subscription;

pub use broker::{LocalBroker, LocalPublisher};
pub use subscription::LocalSubscription;
