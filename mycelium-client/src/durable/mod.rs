//! Durable topics from the client's side: subscriptions that read a topic's log, alone or as
//! a member of a consumer group, and the messages they hand out, acknowledged in batches.
//!
//! - [`DurableOptions`] says where a subscription starts ([`StartPosition`]), which group it
//!   joins (none: a replay subscription of this client alone) and its prefetch.
//! - [`DurableSubscription`] hands out [`DurableMessage`]s: a [`Message`] with its offset in
//!   the log and its delivery count, which the application acknowledges
//!   ([`DurableMessage::ack`]) or gives back ([`DurableMessage::nack`]).
//! - Acknowledgements are batched per subscription: one `AckMessages` frame carries every
//!   acknowledgement pending when the subscription next finds nothing to hand out, or once
//!   half the prefetch is pending, or [`ACK_FLUSH_DELAY`] after the first of a batch,
//!   whichever comes first. Acknowledging costs a push under an uncontended lock, not a frame.
//!
//! - [`Client::publish_durable`](crate::Client::publish_durable) publishes and waits until the
//!   broker has stored the message (its offset); [`Client::groups`](crate::Client::groups)
//!   lists a topic's consumer groups.
//! - Durable topics are served over the socket connection whatever the client's transport (a
//!   shared-memory client opens its socket for them, as for its other requests).
//!
//! # Layout
//! - `client`: the [`Client`](crate::Client) methods of durable topics.
//! - `options`: [`DurableOptions`].
//! - `acks`: the batch of pending acknowledgements a subscription and its messages share.
//! - `message`: [`DurableMessage`].
//! - `subscription`: [`DurableSubscription`].
//!
//! [`StartPosition`]: mycelium_transport::StartPosition
//! [`Message`]: mycelium_transport::Message

mod acks;
mod client;
mod message;
mod options;
mod subscription;

pub use acks::ACK_FLUSH_DELAY;
pub use message::{DurableMessage, DELIVERY_COUNT_HEADER};
pub use options::DurableOptions;
pub use subscription::DurableSubscription;
