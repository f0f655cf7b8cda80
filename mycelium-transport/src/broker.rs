//! What any Mycelium broker offers an application, embedded or across a socket.
//!
//! - The in-process broker (`mycelium_broker::LocalBroker`) and the client of a broker
//!   process (`mycelium_client::Client`) both implement [`Broker`], so application code
//!   written once against it runs embedded or against `mycelium run`.
//! - Subscriptions keep the [receive contract](crate::receive): [`Receive`] plus `Stream`.
//! - Each operation has its own error type, chosen by the implementation; callers that write
//!   generic code can box them (`Box<dyn std::error::Error + Send + Sync>`).

use std::future::Future;

use crate::receive::Receive;

/// Publish, subscribe and unsubscribe, whatever carries the messages.
pub trait Broker {
    /// A live subscription; dropping it (or [`Broker::unsubscribe`]) stops delivery.
    type Subscription: Receive + Send;
    /// Why a publish failed.
    type PublishError: std::error::Error + Send + Sync + 'static;
    /// Why a subscribe failed.
    type SubscribeError: std::error::Error + Send + Sync + 'static;
    /// Why an unsubscribe failed.
    type UnsubscribeError: std::error::Error + Send + Sync + 'static;

    /// Publishes one message on `topic`; waits while a `block` topic holds it back.
    fn publish(
        &self,
        topic: &str,
        payload: &[u8],
    ) -> impl Future<Output = Result<(), Self::PublishError>> + Send;

    /// Starts receiving `topic`'s messages: every message published after this returns.
    fn subscribe(
        &self,
        topic: &str,
    ) -> impl Future<Output = Result<Self::Subscription, Self::SubscribeError>> + Send;

    /// Stops a subscription; messages already routed to it are discarded.
    fn unsubscribe(
        &self,
        subscription: Self::Subscription,
    ) -> impl Future<Output = Result<(), Self::UnsubscribeError>> + Send;
}
