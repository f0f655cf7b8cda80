//! The shared-memory transport of the client: synchronous, for latency-critical threads that
//! do not run tokio, with an async layer for tokio tasks. Applications reach it through
//! [`Client`](crate::Client) and [`blocking::Client`](crate::blocking::Client) with
//! [`Transport::SharedMemory`](crate::Transport::SharedMemory).
//!
//! - [`ShmClient::connect_with`] opens a control session with the broker (`ShmHello` over its Unix
//!   socket). Messages never travel over that socket: each [`ShmPublisher`] writes into a ring
//!   of its own, and each [`ShmSubscription`] reads the rings of its topic's publishers
//!   directly, one hop from publisher to subscriber (`docs/shm-layout.md`).
//! - The broker creates every ring, hands its memfd over the socket (`SCM_RIGHTS`), and
//!   reserves a subscriber's slots before the fds leave it, so a subscriber sees every message
//!   published after its `subscribe` returned, from every publisher, in each publisher's order.
//! - Waiting: a subscription spins briefly, then sleeps on a futex in the ring (no syscall on
//!   the publisher's side unless someone sleeps); `busy_poll` spins without sleeping, for
//!   threads with a core of their own. A publisher whose ring is full (a slow subscriber on a
//!   `block` topic) waits the same way.
//! - Async: [`ShmClient::subscribe_async`] gives an [`AsyncShmSubscription`] (a thread of its
//!   own sleeps on the rings and forwards into a channel, so `recv().await` never blocks a
//!   runtime worker and is cancel-safe) and [`ShmClient::publisher_async`] an
//!   [`AsyncShmPublisher`] (writes at once when the ring has room, waits on the blocking pool
//!   when it has not).
//! - Everything read from a ring is checked: a corrupt ring is dropped (its lost messages
//!   are counted as faults), never read out of bounds.
//! - The broker's death, or its end of an attachment (`ShmDetached`), reaches a client only
//!   through the control socket, which the data path reads only now and then: a subscription
//!   when it waits, a publisher every [`LOOK_EVERY`] messages and when it waits (up to that
//!   many messages may go unread into a ring after the end; [`ShmPublisher::check`] looks at
//!   once). Either then fails with the broker gone, or refused with the broker's reason. A
//!   [`ShmClient`] lends its control socket out (`AsFd`) to an event loop that wants to hear
//!   of it at once.
//! - Socket publishers are heard too: the broker copies their messages into the topic's relay
//!   ring (when a subscription falls a whole relay ring behind, those are dropped and counted,
//!   never waited for). And socket subscribers hear shared-memory publishers: the broker
//!   reads their rings for them.
//! - Queue topics: the publisher addresses each message to one consumer (the one that has
//!   read furthest), and every consumer takes only its own, so each message is taken once
//!   (`mycelium_transport::shm::queue`). Socket publishers' messages on a queue topic are
//!   dealt by the broker to socket and shared-memory consumers alike: a shared-memory
//!   consumer's share arrives in the relay ring, addressed to it.
//!
//! # Layout
//!
//! Each module uses only those listed before it:
//!
//! 1. `options`: [`ShmOptions`].
//! 2. `control`: the control socket, read and written, its frames filed as answers and news.
//! 3. `session`: the control session (connect, attach, detach, segments, news); it knows no
//!    publisher or subscription.
//! 4. `watch`: when a publisher looks at its session.
//! 5. `publisher`, then `loan`: a publisher, and the bytes it lends.
//! 6. `sub_ring`, `segments`, then `subscription`: one ring as read, payload segments, and a
//!    subscription over its rings.
//! 7. `client`: [`ShmClient`], which makes the above.
//! 8. `async_publisher`, `async_subscription`, then `async_client`: the async layer.

mod async_client;
mod async_publisher;
mod async_subscription;
mod client;
mod control;
mod loan;
mod options;
mod publisher;
mod segments;
mod session;
mod sub_ring;
mod subscription;
mod watch;

pub(crate) use async_publisher::AsyncShmPublisher;
pub(crate) use async_subscription::AsyncShmSubscription;
pub(crate) use client::ShmClient;
pub use loan::Loan;
pub use options::ShmOptions;
pub(crate) use publisher::ShmPublisher;
pub(crate) use subscription::ShmSubscription;
pub use watch::LOOK_EVERY;
