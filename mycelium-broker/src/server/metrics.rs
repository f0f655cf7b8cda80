//! [`BrokerMetrics`]: everything the broker measures, as one plain snapshot a front end
//! renders its own way (the gateway as Prometheus text and JSON).
//!
//! - Built on request ([`BrokerHandle::metrics`](crate::BrokerHandle::metrics)) from the
//!   counters the routing paths keep (per batch, relaxed) and from the subscribers' queues
//!   and the shared-memory rings, read then; nothing here is computed while routing.
//! - Counters only grow for as long as the broker runs (a removed or reclaimed topic's leave
//!   with it); gauges (connections, subscribers, depth, lag) are the moment's.
//! - Latency: one sample per routed batch, from when the broker read it (off a socket, out of
//!   a publisher's ring) to when every subscriber's outbox, sink or relay ring had it;
//!   recorded only while `metrics.enabled`. In-process publishes and shared-memory messages
//!   that go from ring to ring without the broker are not sampled.

use std::time::{Duration, SystemTime};

use mycelium_config::Routing;

use crate::core::latency::{LatencySnapshot, LatencySummary};
use crate::core::topic::DroppedBy;

/// The broker's figures at one moment; see the module's contract.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct BrokerMetrics {
    /// Time since the broker started.
    pub uptime: Duration,
    /// Connections past their handshake, by kind.
    pub connections: ConnectionCounts,
    /// The config's generation and the reloads' outcomes.
    pub config: ReloadMetrics,
    /// Bytes of the messages accepted from publishers, all topics (live ones: a removed or
    /// reclaimed topic's figures leave with it).
    pub bytes_in: u64,
    /// Bytes of the copies handed to subscribers, all topics (as `bytes_in`).
    pub bytes_out: u64,
    /// Whether latency is being recorded now (`metrics.enabled`).
    pub latency_enabled: bool,
    /// Publish-to-deliver latency, all topics, since the broker started.
    pub latency: LatencySnapshot,
    /// Every live topic, in id order.
    pub topics: Vec<TopicMetrics>,
}

/// Connections past their handshake, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectionCounts {
    /// Message connections (the socket protocol).
    pub messages: usize,
    /// Shared-memory sessions (their control connections).
    pub shm_sessions: usize,
}

/// The config's generation and how reloads went.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReloadMetrics {
    /// Bumped by every reload that applied a config; 1 is the one the broker started with.
    pub generation: u64,
    /// Reloads that succeeded (applied, or found nothing to apply).
    pub reloads_ok: u64,
    /// Reloads that failed (the last good config stays in force).
    pub reloads_failed: u64,
    /// The last reload attempt; `None` before the first.
    pub last: Option<LastReload>,
}

/// The last reload attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LastReload {
    /// Whether it succeeded.
    pub success: bool,
    /// When it finished.
    pub at: SystemTime,
    /// Why it failed (one diagnostic per line); empty when it succeeded.
    pub error: String,
}

/// Subscribers of a topic, by what carries their messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SubscriberCounts {
    /// Socket subscribers (fanout) or consumers (queue).
    pub socket: usize,
    /// Shared-memory subscribers or consumers.
    pub shm: usize,
    /// In-process subscribers or consumers (`LocalSubscription`, the gateway's).
    pub in_process: usize,
}

/// How far behind a topic's slowest subscribers are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SubscriberLag {
    /// Messages queued toward the fullest socket or in-process subscriber (a socket
    /// subscriber's count is its connection's, all topics); `None` without such subscribers.
    pub queued_messages: Option<usize>,
    /// Bytes between the slowest shared-memory subscriber's read position and its ring's
    /// write position (publishers' rings and the relay ring); `None` without shared-memory
    /// subscribers.
    pub shm_bytes: Option<u64>,
}

/// One topic's figures.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct TopicMetrics {
    /// The topic's name.
    pub name: String,
    /// How it routes.
    pub routing: Routing,
    /// Auto-created, and removed once idle.
    pub dynamic: bool,
    /// Messages accepted from publishers (through the broker: shared-memory messages count
    /// once the broker reads them for socket or in-process subscribers).
    pub published: u64,
    /// Copies handed to subscribers.
    pub delivered: u64,
    /// Copies lost, all reasons: the sum of `dropped_by`.
    pub dropped: u64,
    /// Copies lost, by reason (shared-memory publishers' ring drops as `drop_newest`).
    pub dropped_by: DroppedBy,
    /// Bytes of the messages accepted (payloads with their envelopes).
    pub bytes_in: u64,
    /// Bytes of the copies handed to subscribers.
    pub bytes_out: u64,
    /// Subscribers by transport.
    pub subscribers: SubscriberCounts,
    /// Messages waiting: a queue topic's backlog plus what is queued toward its socket and
    /// in-process subscribers (a socket subscriber's outbox counted whole).
    pub depth: usize,
    /// Of `depth`, a queue topic's backlog.
    pub backlog: usize,
    /// The slowest subscribers' lag.
    pub lag: SubscriberLag,
    /// The topic's publish-to-deliver latency.
    pub latency: LatencySummary,
}
