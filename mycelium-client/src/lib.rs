//! The client libraries: the async socket client ([`Client`]) and the shared-memory client
//! ([`ShmClient`]: synchronous, with [`AsyncShmSubscription`] and [`AsyncShmPublisher`] for
//! tokio).

#![forbid(unsafe_code)]

pub mod error;
pub mod handle;
pub mod reconnect;
pub mod shm;
pub mod subscription;

pub use error::ClientError;
pub use handle::{BrokerInfo, BrokerStats, Client, ClientOptions, Publisher, ReloadReport};
pub use reconnect::{Backoff, ReconnectingPublisher, ReconnectingSubscription, SubscriptionEvent};
pub use shm::{
    AsyncShmPublisher, AsyncShmSubscription, ShmClient, ShmLoan, ShmOptions, ShmPublisher,
    ShmSubscription,
};
pub use subscription::{Message, Subscription};
