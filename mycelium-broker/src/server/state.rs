//! What every connection of one broker run shares: topics, limits, live connections, the
//! running config and the state of its reloads.
//!
//! - The running config is swapped whole by a reload ([`BrokerState::config`] returns the one
//!   in force now); readers take it once per decision.
//! - Two budgets of sockets: those still in their handshake (`BrokerState::begin_handshake`,
//!   at most `server.max_pending_handshakes`, the oldest given up for a newer one) and
//!   connections that completed it ([`BrokerState::try_open_socket`], `server.max_connections`).
//!   Sockets that never say anything therefore cost the budget only its own size, and a client
//!   that sends its `Hello` at once is never shut out by them.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use mycelium_config::BrokerConfig;
use mycelium_transport::frame::MESSAGE_OVERHEAD;
use mycelium_transport::{
    ConfigStatus, Frame, LogStats, RoutingKind, TopicStats, HANDSHAKE_MAX_FRAME_LEN,
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::core::registry::TopicRegistry;
use crate::core::topic::DropReason;
use crate::server::error::ServeError;
use crate::server::metrics::{
    BrokerMetrics, ConnectionCounts, LastReload, ReloadMetrics, SubscriberCounts, SubscriberLag,
    TopicMetrics,
};
use crate::server::reload_handle::{ReloadHandle, ReloadQueue};
use crate::server::shm::ShmRings;
use crate::server::supervisor::Supervisor;
use mycelium_transport::outbox::{ByteBudget, Outbox};

/// A socket's place in the handshake budget ([`BrokerState::begin_handshake`]); leaves it
/// when dropped.
#[derive(Debug)]
pub(crate) struct Handshake {
    state: Arc<BrokerState>,
    id: u64,
    given_up: CancellationToken,
}

impl Handshake {
    /// Resolves when newer sockets pushed this one out of the budget.
    pub(crate) async fn given_up(&self) {
        self.given_up.cancelled().await
    }
}

impl Drop for Handshake {
    fn drop(&mut self) {
        self.state
            .handshakes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
    }
}

/// The broker's figures at one moment: what `mycelium stats` shows.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct BrokerStatistics {
    /// Connections past their handshake (message connections and shared-memory sessions).
    pub connections: usize,
    /// Time since the broker started.
    pub uptime: Duration,
    /// Every topic, as the `Stats` frame reports it.
    pub topics: Vec<TopicStats>,
    /// The config's generation and the outcome of the last reloads.
    pub config: ConfigStatus,
}

/// Shared by the listener and every connection of one broker run.
#[derive(Debug)]
pub(crate) struct BrokerState {
    /// The topics.
    pub(crate) registry: Arc<TopicRegistry>,
    /// Where consumer groups put what they give up on (each topic's dead-letter topic).
    pub(crate) dead_letters: Arc<crate::server::dead_letters::RegistryDeadLetters>,
    /// The config in force: the one the broker started with, then each reload's.
    config: ArcSwap<BrokerConfig>,
    /// The config's generation, reload count and last outcomes, for `Stats`.
    config_status: Mutex<ConfigStatus>,
    /// Asks the reload task for a reload; the task takes the other end when the server runs.
    pub(crate) reload: ReloadHandle,
    /// The reload task's end of `reload`, until [`Server::run`](crate::Server::run) takes it.
    pub(crate) reload_queue: Mutex<Option<ReloadQueue>>,
    /// Random per run, sent in `Welcome` so clients can tell a restart.
    pub(crate) broker_id: Uuid,
    started: Instant,
    next_connection: AtomicU64,
    /// Connections that completed their handshake, by id; graceful shutdown closes these outboxes
    /// after every reader has stopped, so everything already routed is flushed.
    connections: Mutex<HashMap<u64, Arc<Outbox>>>,
    /// Connections past their handshake (message connections and shared-memory sessions):
    /// what `max_connections` counts.
    open_sockets: AtomicUsize,
    /// Sockets in their handshake, by connection id (ids grow with accept order, so the first
    /// entry is the oldest), each with the token that tells it it was given up.
    handshakes: Mutex<BTreeMap<u64, CancellationToken>>,
    /// Subscriptions all message connections hold: what `server.max_subscriptions` counts.
    subscriptions: AtomicUsize,
    /// Bytes queued toward all clients: what `server.max_inflight_bytes` bounds. Shared by
    /// every connection's outbox.
    pub(crate) inflight: Arc<ByteBudget>,
    /// Every topic's shared-memory rings and who holds them.
    pub(crate) shm: Arc<ShmRings>,
    /// Watches the broker's long-lived tasks; one that fails ends the broker.
    pub(crate) supervisor: Arc<Supervisor>,
    /// Tells front ends ([`BrokerHandle::config_changes`](crate::BrokerHandle::config_changes))
    /// each config put in force.
    config_changes: watch::Sender<Arc<BrokerConfig>>,
    /// Cancelled when the graceful shutdown begins.
    pub(crate) stopping: CancellationToken,
    /// Shared-memory sessions past their handshake (of `open_sockets`), for the metrics.
    shm_sessions: AtomicUsize,
    /// Reloads by outcome and the last one's, for the metrics.
    reloads: Mutex<ReloadRecord>,
}

/// How reloads went, beside [`ConfigStatus`] (which has no time and no failure count).
#[derive(Debug, Default)]
struct ReloadRecord {
    ok: u64,
    failed: u64,
    last: Option<LastReload>,
}

/// Counts a shared-memory session while it lives ([`BrokerState::shm_session`]).
#[derive(Debug)]
pub(crate) struct ShmSessionCount<'a>(&'a BrokerState);

impl Drop for ShmSessionCount<'_> {
    fn drop(&mut self) {
        self.0.shm_sessions.fetch_sub(1, Ordering::Relaxed);
    }
}

impl BrokerState {
    /// State for a broker run with `config` (assumed validated).
    pub(crate) fn new(config: BrokerConfig) -> Result<BrokerState, ServeError> {
        let problems = crate::server::preflight::preflight(&config);
        if !problems.is_empty() {
            return Err(ServeError::Preflight(problems));
        }
        let registry = Arc::new(TopicRegistry::from_config(&config)?);
        let (reload, reload_queue) = crate::server::reload_handle::channel();
        let inflight = Arc::new(ByteBudget::new(config.server.max_inflight_bytes));
        let supervisor = Arc::new(Supervisor::default());
        let config = Arc::new(config);
        let (config_changes, _) = watch::channel(config.clone());
        Ok(BrokerState {
            dead_letters: Arc::new(crate::server::dead_letters::RegistryDeadLetters {
                registry: registry.clone(),
            }),
            registry,
            shm: Arc::new(ShmRings::new(config.shm.clone()).supervised_by(supervisor.clone())),
            config: ArcSwap::new(config),
            config_status: Mutex::new(ConfigStatus {
                generation: 1,
                ..ConfigStatus::default()
            }),
            reload,
            reload_queue: Mutex::new(Some(reload_queue)),
            broker_id: Uuid::new_v4(),
            started: Instant::now(),
            next_connection: AtomicU64::new(1),
            connections: Mutex::default(),
            open_sockets: AtomicUsize::new(0),
            handshakes: Mutex::default(),
            subscriptions: AtomicUsize::new(0),
            inflight,
            supervisor,
            config_changes,
            stopping: CancellationToken::new(),
            shm_sessions: AtomicUsize::new(0),
            reloads: Mutex::default(),
        })
    }

    /// The config in force now.
    pub(crate) fn config(&self) -> Arc<BrokerConfig> {
        self.config.load_full()
    }

    /// How long shutdown waits for writers to flush to slow clients (and for a batch already
    /// read to be routed behind a slow subscriber) before giving up on them:
    /// `server.shutdown_deadline_ms` as the config in force says.
    pub(crate) fn shutdown_deadline(&self) -> Duration {
        Duration::from_millis(self.config().server.shutdown_deadline_ms)
    }

    /// Puts a reload's config in force (the registry and the rings were told already).
    pub(crate) fn set_config(&self, config: BrokerConfig) {
        self.registry.latency().set_enabled(config.metrics.enabled);
        let config = Arc::new(config);
        self.config.store(config.clone());
        // No receiver is no error: front ends are optional.
        self.config_changes.send_replace(config);
    }

    /// Sees each config put in force, the one in force now first.
    pub(crate) fn config_changes(&self) -> watch::Receiver<Arc<BrokerConfig>> {
        self.config_changes.subscribe()
    }

    /// The config's status as `Stats` reports it.
    pub(crate) fn config_status(&self) -> ConfigStatus {
        self.config_status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Records a finished reload attempt (one that bumps `reloads`; a failed one sets
    /// `last_error`, a good one clears it).
    pub(crate) fn update_config_status(&self, update: impl FnOnce(&mut ConfigStatus)) {
        let mut status = self.config_status.lock().unwrap_or_else(|p| p.into_inner());
        let before = status.reloads;
        update(&mut status);
        if status.reloads == before {
            return;
        }
        let error = status.last_error.clone();
        drop(status);
        let mut reloads = self.reloads.lock().unwrap_or_else(|p| p.into_inner());
        if error.is_empty() {
            reloads.ok += 1;
        } else {
            reloads.failed += 1;
        }
        reloads.last = Some(LastReload {
            success: error.is_empty(),
            at: SystemTime::now(),
            error,
        });
    }

    /// Counts a shared-memory session until the guard drops.
    pub(crate) fn shm_session(&self) -> ShmSessionCount<'_> {
        self.shm_sessions.fetch_add(1, Ordering::Relaxed);
        ShmSessionCount(self)
    }

    /// The largest payload any topic accepts.
    pub(crate) fn max_message_size(&self) -> usize {
        self.registry.max_message_size()
    }

    /// The largest frame `len` accepted after the handshake: a publish of the largest payload
    /// behind the largest envelope its topic allows.
    pub(crate) fn max_frame_len(&self) -> usize {
        (self.registry.max_message_len() + MESSAGE_OVERHEAD - 4).max(HANDSHAKE_MAX_FRAME_LEN)
    }

    /// The `Welcome` that answers the `Hello` (or `ShmHello`) of connection `id`.
    pub(crate) fn welcome(&self, id: u64) -> Frame {
        Frame::Welcome {
            broker_id: self.broker_id,
            connection_id: id,
            max_message_size: u32::try_from(self.max_message_size()).unwrap_or(u32::MAX),
            max_frame_len: u32::try_from(self.max_frame_len()).unwrap_or(u32::MAX),
            server: format!("mycelium {}", env!("CARGO_PKG_VERSION")),
        }
    }

    /// A new connection id.
    pub(crate) fn next_connection_id(&self) -> u64 {
        self.next_connection.fetch_add(1, Ordering::Relaxed)
    }

    /// Enters socket `id` (just accepted) in the handshake budget. Past
    /// `server.max_pending_handshakes` the oldest sockets in their handshake are given up:
    /// their [`Handshake::given_up`] resolves. The entry leaves when the guard drops.
    pub(crate) fn begin_handshake(self: &Arc<Self>, id: u64) -> Handshake {
        let max = self.config.load().server.max_pending_handshakes.max(1);
        let token = CancellationToken::new();
        let mut handshakes = self.handshakes.lock().unwrap_or_else(|p| p.into_inner());
        handshakes.insert(id, token.clone());
        while handshakes.len() > max {
            let Some((oldest, given_up)) = handshakes.pop_first() else {
                break;
            };
            tracing::debug!(
                connection = oldest,
                max,
                "giving up the oldest handshake for a newer socket"
            );
            given_up.cancel();
        }
        drop(handshakes);
        Handshake {
            state: Arc::clone(self),
            id,
            given_up: token,
        }
    }

    /// Counts a connection that completed its handshake; returns false (and counts nothing)
    /// when at `max_connections`.
    pub(crate) fn try_open_socket(&self) -> bool {
        let max = self.config.load().server.max_connections;
        self.open_sockets
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok()
    }

    /// Counts one more subscription; false (and counts nothing) when all connections hold
    /// `server.max_subscriptions` already.
    pub(crate) fn try_add_subscription(&self) -> bool {
        let max = self.config.load().server.max_subscriptions;
        self.subscriptions
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok()
    }

    /// Uncounts `n` subscriptions counted by `try_add_subscription`.
    pub(crate) fn remove_subscriptions(&self, n: usize) {
        if n > 0 {
            self.subscriptions.fetch_sub(n, Ordering::AcqRel);
        }
    }

    /// Uncounts a socket counted by `try_open_socket`.
    pub(crate) fn close_socket(&self) {
        self.open_sockets.fetch_sub(1, Ordering::AcqRel);
    }

    /// Registers a connection's outbox for shutdown and stats.
    pub(crate) fn register(&self, id: u64, outbox: Arc<Outbox>) {
        self.connections
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, outbox);
    }

    /// Forgets a connection.
    pub(crate) fn unregister(&self, id: u64) {
        self.connections
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
    }

    /// Every registered connection's outbox.
    pub(crate) fn outboxes(&self) -> Vec<Arc<Outbox>> {
        self.connections
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// The broker's figures now.
    pub(crate) fn statistics(&self) -> BrokerStatistics {
        let topics = self
            .registry
            .all()
            .iter()
            .map(|topic| {
                let s = topic.statistics();
                let shm = self.shm.figures(topic.id());
                TopicStats {
                    name: s.name,
                    routing: match s.routing {
                        mycelium_config::Routing::Fanout => RoutingKind::Fanout,
                        mycelium_config::Routing::Queue => RoutingKind::Queue,
                    },
                    subscribers: u32::try_from(s.subscribers).unwrap_or(u32::MAX),
                    published: s.published,
                    delivered: s.delivered,
                    // Plus what shared-memory publishers dropped (`drop_newest`), counted in
                    // their rings: the broker is not on that path.
                    dropped: s.dropped.saturating_add(shm.dropped_in_rings),
                    queued: s.queued as u64,
                    shm_subscribers: u32::try_from(shm.subscribers).unwrap_or(u32::MAX),
                    flags: if s.dynamic { TopicStats::DYNAMIC } else { 0 }
                        | if topic.log().is_some() {
                            TopicStats::DURABLE
                        } else {
                            0
                        },
                    log: topic.log().map(|log| {
                        let f = log.figures();
                        LogStats {
                            first_offset: f.first_offset,
                            next_offset: f.next_offset,
                            retained_messages: f.retained_messages,
                            retained_bytes: f.retained_bytes,
                        }
                    }),
                }
            })
            .collect();
        let connections = self
            .connections
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len();
        BrokerStatistics {
            connections,
            uptime: self.started.elapsed(),
            topics,
            config: self.config_status(),
        }
    }

    /// Everything the broker measures now.
    pub(crate) fn metrics(&self) -> BrokerMetrics {
        let topics: Vec<TopicMetrics> = self
            .registry
            .all()
            .iter()
            .map(|topic| {
                let s = topic.statistics();
                let direct = topic.subscriber_figures();
                let shm = self.shm.figures(topic.id());
                let mut dropped_by = s.dropped_by;
                dropped_by.add(DropReason::DropNewest, shm.dropped_in_rings);
                let mut metrics = TopicMetrics {
                    name: s.name,
                    routing: s.routing,
                    dynamic: s.dynamic,
                    published: s.published,
                    delivered: s.delivered,
                    dropped: s.dropped.saturating_add(shm.dropped_in_rings),
                    dropped_by,
                    bytes_in: s.bytes_in,
                    bytes_out: s.bytes_out,
                    subscribers: SubscriberCounts::default(),
                    depth: s.queued.saturating_add(direct.queued),
                    backlog: s.queued,
                    lag: SubscriberLag::default(),
                    latency: topic.latency().summary(),
                };
                metrics.subscribers.socket = direct.socket;
                metrics.subscribers.shm = shm.subscribers;
                metrics.subscribers.in_process = direct.in_process;
                metrics.lag.queued_messages =
                    (direct.socket + direct.in_process > 0).then_some(direct.slowest);
                metrics.lag.shm_bytes = shm.slowest_lag_bytes;
                metrics
            })
            .collect();
        let messages = self
            .connections
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len();
        let status = self.config_status();
        let reloads = self.reloads.lock().unwrap_or_else(|p| p.into_inner());
        let config = ReloadMetrics {
            generation: status.generation,
            reloads_ok: reloads.ok,
            reloads_failed: reloads.failed,
            last: reloads.last.clone(),
        };
        drop(reloads);
        let latency = self.registry.latency();
        BrokerMetrics {
            uptime: self.started.elapsed(),
            connections: ConnectionCounts {
                messages,
                shm_sessions: self.shm_sessions.load(Ordering::Relaxed),
            },
            config,
            bytes_in: topics
                .iter()
                .fold(0u64, |n, t| n.saturating_add(t.bytes_in)),
            bytes_out: topics
                .iter()
                .fold(0u64, |n, t| n.saturating_add(t.bytes_out)),
            latency_enabled: latency.enabled(),
            latency: latency.snapshot(),
            topics,
        }
    }

    /// The answer to a `StatsRequest`.
    pub(crate) fn stats_frame(&self, request_id: u32) -> Frame {
        let statistics = self.statistics();
        Frame::Stats {
            request_id,
            connections: u32::try_from(statistics.connections).unwrap_or(u32::MAX),
            uptime_ms: u64::try_from(statistics.uptime.as_millis()).unwrap_or(u64::MAX),
            topics: statistics.topics,
            config: statistics.config.truncated(),
        }
    }
}
