//! The async client library: connect, publish, subscribe, flush, stats, close.

pub mod error;
pub mod handle;
pub mod subscription;

pub use error::ClientError;
pub use handle::{BrokerInfo, BrokerStats, Client, ClientOptions, Publisher};
pub use subscription::{Message, Subscription};
