//! How a topic hands messages to one subscriber, whatever carries them to it.
//!
//! - Every subscriber a topic reaches one by one has a [`Delivery`]: the socket server's
//!   outbox (it encodes `Deliver` and `DeliverEnvelope` frames, and shares a socket
//!   publisher's frames without copying), the in-process subscription's queue ([`LocalSink`](crate::core::local)), and
//!   whatever front end comes next (HTTP, WebSocket, NATS). The topic decides who gets what
//!   and under which backpressure policy; the sink only queues, counts what it holds, and
//!   tells its peer in its own format.
//! - A topic calls a sink once per batch (one virtual call per subscriber per batch, never per
//!   message), and a sink must not wait: a full sink says how many it took, and the topic's
//!   policy decides what happens to the rest.
//! - Room is counted per topic: `limit` is how many messages of `topic` the sink may hold
//!   (the topic's `buffer_size`, capped by the subscriber's own capacity). A sink may also
//!   bound the bytes it holds; an empty sink always takes one message, so nobody starves.
//!   Queue deliveries pass no limit: the consumer's credit, kept by the topic, bounds them.
//! - Losses are told in order: a message lost after everything queued ([`Delivery::report_lost`])
//!   is told before the next message of the topic, or sooner; messages evicted
//!   ([`Delivery::evict_oldest`]) are told where they were.
//! - The shared-memory relay is not a [`Delivery`]: it reaches every shared-memory reader of a
//!   topic at once through one ring, so it has a shape of its own
//!   ([`Relay`](crate::core::relay::Relay), [`QueueRelay`](crate::core::relay::QueueRelay)).

use std::fmt;
use std::future::Future;
use std::ops::Range;
use std::pin::Pin;

use crate::core::batch::BatchRef;
use crate::core::ids::TopicId;

/// What a [`Delivery::deliver`] achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivered {
    /// This many leading messages were queued (possibly all); the rest did not fit now.
    Queued(usize),
    /// The subscriber is gone: nothing was queued and nothing ever will be.
    Closed,
}

/// Why a topic ends a subscription.
#[derive(Debug, Clone, Copy)]
pub enum Ending<'a> {
    /// The topic was removed (a reload dropped it from the config). What was queued before is
    /// still delivered; the subscriber's other subscriptions go on.
    TopicRemoved {
        /// The explanation for the peer.
        message: &'a str,
    },
    /// The subscriber fell too far behind (`backpressure = disconnect`, or a
    /// `publish_deadline_ms` that ran out while it did not read): it is disconnected, after
    /// what was queued for it.
    SlowConsumer {
        /// The explanation for the peer.
        message: &'a str,
    },
    /// A durable topic's log could not be read for this subscriber (an I/O error): what was
    /// queued is still delivered, then the subscription ends; the connection goes on.
    StorageFailed {
        /// The explanation for the peer.
        message: &'a str,
    },
}

/// What carries a subscriber's messages, as the metrics count subscribers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SubscriberTransport {
    /// A message connection's outbox, toward its socket.
    Socket,
    /// The topic's shared-memory rings (never a [`Delivery`]: counted by their owner).
    SharedMemory,
    /// A queue in the broker's process: a `LocalSubscription`, and whatever front end reads
    /// through one (the HTTP and WebSocket gateway).
    InProcess,
}

impl SubscriberTransport {
    /// A stable lowercase name, for labels (`socket`, `shm`, `in_process`).
    pub fn as_str(self) -> &'static str {
        match self {
            SubscriberTransport::Socket => "socket",
            SubscriberTransport::SharedMemory => "shm",
            SubscriberTransport::InProcess => "in_process",
        }
    }
}

/// A future that resolves when a sink has room again (see [`Delivery::wait_for_room`]).
pub type RoomWait<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// The way to one subscriber; see the module docs.
pub trait Delivery: fmt::Debug + Send + Sync {
    /// Queues messages `range` of `batch` on `topic`, in order, as many as fit under `limit`
    /// messages of the topic (all of them when `None`). Never waits.
    fn deliver(
        &self,
        topic: TopicId,
        batch: BatchRef<'_>,
        range: Range<usize>,
        limit: Option<usize>,
    ) -> Delivered;

    /// Whether one more message of `topic` would fit under `limit` now (true once the sink is
    /// closed: nothing is worth waiting for then).
    fn has_room(&self, topic: TopicId, limit: usize) -> bool;

    /// Resolves once [`has_room`](Self::has_room) would say true: the subscriber took
    /// messages, or went away. Only blocked publishers call it (once per wait, not per message).
    fn wait_for_room(&self, topic: TopicId, limit: usize) -> RoomWait<'_>;

    /// Drops up to `max` of the oldest messages of `topic` still queued, for `drop_oldest`,
    /// and tells the subscriber how many it lost where they were. Returns how many.
    fn evict_oldest(&self, topic: TopicId, max: usize) -> usize;

    /// `count` messages of `topic` were lost for this subscriber after everything queued; it
    /// is told before the topic's next message, or sooner.
    fn report_lost(&self, topic: TopicId, count: u64);

    /// Ends the subscription to `topic` for `why`, after what is queued.
    fn end(&self, topic: TopicId, why: Ending<'_>);

    /// Whether this subscriber keeps a dynamic topic in use (and so from being reclaimed
    /// idle). A pattern subscription's attachment does not: it follows topics, it does not
    /// make them.
    fn counts_as_use(&self) -> bool {
        true
    }

    /// What carries this subscriber's messages, for the metrics.
    fn transport(&self) -> SubscriberTransport {
        SubscriberTransport::InProcess
    }

    /// Messages queued toward the subscriber now, for the metrics: of `topic` when the sink
    /// can tell them apart, else all it holds; `None` when it cannot say. Called when the
    /// metrics are read, never while routing.
    fn queued(&self, topic: TopicId) -> Option<usize> {
        let _ = topic;
        None
    }
}
