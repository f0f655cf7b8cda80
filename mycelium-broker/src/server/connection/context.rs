//! [`Connection`]: what the reader of one message connection holds, its subscriptions and
//! the topics it publishes to among them. The reader (`reader.rs`) drives it; the scan, the
//! routing of runs and the requests (`scan.rs`, `publish.rs`, `requests.rs`) each add their
//! methods.

use std::collections::HashMap;
use std::sync::Arc;

use mycelium_transport::outbox::Outbox;

use crate::core::acl::PeerIdentity;
use crate::core::patterns::PatternSubscription;
use crate::core::topic::{PublisherHold, SubscriberId, Topic, TopicId};
use crate::server::heartbeat::Heartbeat;
use crate::server::state::BrokerState;

/// One subscription of the connection: the id its topic knows the subscriber by.
pub(super) struct Subscription {
    pub(super) id: SubscriberId,
    pub(super) topic: Arc<Topic>,
}

/// The reader side's state for one connection.
pub(super) struct Connection {
    /// What every connection of the broker run shares.
    pub(super) state: Arc<BrokerState>,
    /// Who the kernel says the peer is: what the topics' access lists are checked against.
    pub(super) peer: Arc<PeerIdentity>,
    /// Everything toward the client, in order; drained by the writer task, closed when the
    /// connection leaves (or by the listener once every reader has stopped, at shutdown).
    pub(super) outbox: Arc<Outbox>,
    /// The connection id, sent in `Welcome`.
    pub(super) id: u64,
    /// The client id of its `Hello`: the only reply inbox (`_INBOX.<id>`) it may subscribe to.
    pub(super) client_id: uuid::Uuid,
    /// Subscriptions by topic id; a connection subscribes at most once per topic.
    pub(super) subscriptions: HashMap<TopicId, Subscription>,
    /// Pattern subscriptions by key (bit 31 set).
    pub(super) patterns: HashMap<u32, Arc<PatternSubscription>>,
    /// The last pattern key handed out, without bit 31.
    pub(super) next_pattern: u32,
    /// Durable subscriptions (replays, group memberships) by id (bit 30 set).
    pub(super) durable: super::durable_subscribe::DurableSubscriptions,
    /// The last durable subscription id handed out, without bit 30.
    pub(super) next_durable: u32,
    /// The topics this connection advertised, each claimed as published to until the
    /// connection ends, so an auto-created topic is not reclaimed under its publisher. At
    /// most one per topic the registry knows.
    pub(super) advertised: HashMap<TopicId, PublisherHold>,
    /// Topics this connection published to, by id, so a publish needs no registry lookup.
    /// Grows only to ids the registry knows, so a peer cannot make it allocate.
    pub(super) topics: Vec<Option<Arc<Topic>>>,
    /// The largest frame accepted: what `Welcome` said, raised when a reload raises a limit.
    pub(super) max_frame_len: usize,
    /// Frame ends of the runs of the current scan; reused across reads.
    pub(super) ends: Vec<usize>,
    /// Bytes the next read asks for: doubles while reads fill it, up to `READ_CHUNK`; back
    /// to `FIRST_READ` when the connection is idle.
    pub(super) read_size: usize,
    /// Something was read since the last heartbeat tick: the connection is not idle.
    pub(super) read_since_tick: bool,
    /// When the last read brought bytes: the busy-poll window runs from it.
    pub(super) last_read: std::time::Instant,
    /// Where stored `PublishDurable` messages wait for their answer (`durable_publish.rs`);
    /// made at the first.
    pub(super) confirmer: Option<tokio::sync::mpsc::Sender<super::durable_publish::Confirm>>,
    /// Whether the peer is still there ([`Heartbeat`]), and when to look next.
    pub(super) heartbeat: Heartbeat,
    pub(super) heartbeat_due: tokio::time::Instant,
}
