//! The client library as an application sees it, against a real broker process.
//!
//! # Layout
//! - `transports`: code written once against the `Broker` trait runs over either transport, and
//!   `Transport::Auto` picks shared memory where the broker offers it and the socket elsewhere.
//! - `receive_contract`: every subscription keeps the receive contract (messages, then the end
//!   once, then `None` as a stream), async or blocking.
//! - `lifecycle`: subscriptions dropped or unsubscribed while full do not wedge the connection
//!   they share.
//! - `envelopes`: headers and stamps (id + timestamp) through the client, against a stand-in
//!   broker (the frames sent and read) and a real one (round trips, ids, limits, no-echo).
//! - `durable`: durable subscriptions, confirmed publishes and consumer groups, against the
//!   stand-in broker of `envelopes` (the broker does not serve them yet).
//! - `reconnect`: a broker SIGKILLed and restarted: clients get a clear `BrokerGone` and never
//!   hang, the reconnecting handles come back on their own, and the restarted broker replaces the
//!   dead one's socket file.

#[path = "../common/mod.rs"]
mod common;

mod durable;
mod envelopes;
mod lifecycle;
mod receive_contract;
mod reconnect;
mod transports;

use std::future::poll_fn;
use std::pin::Pin;
use std::time::Duration;

use common::{block_on, fanout, TestBroker, DEADLINE};
use futures_core::Stream;
use mycelium_client::{
    blocking, Broker, Client, ClientOptions, PublishError, Receive, RecvError, RecvTimeoutError,
    SubscriptionEnd, Transport, TryRecvError,
};
