//! [`ShmRings`]: the directory itself, its settings and its lock, the end of attachments,
//! and the figures `Stats` reads from it.

use std::collections::HashMap;
use std::sync::atomic::AtomicU32;
use std::sync::{Arc, Mutex, MutexGuard};

use arc_swap::ArcSwap;
use mycelium_config::ShmConfig;
use mycelium_transport::ErrorCode;
use tokio::sync::mpsc;

use crate::core::topic::{Topic, TopicId};
use crate::server::supervisor::Supervisor;

use super::events::SessionEvent;
use super::reader::ReaderCommand;
use super::ring::SessionId;
use super::topic_rings::{detach_from, TopicRings};

/// Every topic's rings and attachments.
pub(crate) struct ShmRings {
    /// The `[shm]` settings in force: a reload swaps them, for what is created from then on.
    pub(super) config: ArcSwap<ShmConfig>,
    /// Set once the watchdog of `disconnect` topics runs.
    pub(super) watchdog: std::sync::OnceLock<()>,
    pub(super) topics: Mutex<HashMap<TopicId, TopicRings>>,
    pub(super) next_ring: AtomicU32,
    pub(super) next_attachment: AtomicU32,
    /// Told when the watchdog, a reader thread or a drain task panics: the broker stops.
    pub(super) supervisor: Arc<Supervisor>,
}

impl std::fmt::Debug for ShmRings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShmRings")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl ShmRings {
    /// An empty directory for rings shaped by `config`.
    pub(crate) fn new(config: ShmConfig) -> ShmRings {
        ShmRings {
            config: ArcSwap::from_pointee(config),
            watchdog: std::sync::OnceLock::new(),
            topics: Mutex::default(),
            next_ring: AtomicU32::new(1),
            next_attachment: AtomicU32::new(1),
            supervisor: Arc::default(),
        }
    }

    /// Reports the failures of this directory's threads and tasks to `supervisor`.
    pub(crate) fn supervised_by(mut self, supervisor: Arc<Supervisor>) -> ShmRings {
        self.supervisor = supervisor;
        self
    }

    /// Whether clients may ask for shared memory at all.
    pub(crate) fn enabled(&self) -> bool {
        self.config.load().enabled
    }

    /// Puts a reload's `[shm]` settings in force: rings created from now on take the new
    /// `ring_bytes` (and `max_subscribers`, which the reload keeps until a restart), attaches
    /// and sessions from now on the new limits. Existing rings keep what they were made with.
    pub(crate) fn set_config(&self, config: ShmConfig) {
        self.config.store(Arc::new(config));
    }

    /// Ends every shared-memory attachment of `topic`, which a reload removed: subscribers'
    /// slots are freed, the broker stops reading the topic's rings and drops its relay ring,
    /// and every session holding an attachment is told (`ShmDetached`, `TopicRemoved`).
    /// Returns how many attachments were ended.
    pub(crate) fn remove_topic(&self, topic: &Topic) -> usize {
        let Some(mut rings) = self.lock().remove(&topic.id()) else {
            return 0;
        };
        let mut told: Vec<(mpsc::UnboundedSender<SessionEvent>, u32)> = rings
            .subscribers
            .iter()
            .filter(|s| !s.pattern)
            .map(|s| (s.events.clone(), s.attachment))
            .collect();
        // A pattern attachment goes on without this topic: it is told the topic's rings are
        // gone, each by its id (its slots there are freed below, like everyone's).
        let relay_id = rings.relay.as_ref().map(|r| r.id);
        for subscriber in rings.subscribers.iter().filter(|s| s.pattern) {
            for ring_id in relay_id.iter().chain(subscriber.slots.keys()) {
                let _ = subscriber.events.send(SessionEvent::RingRemoved {
                    attachment: subscriber.attachment,
                    ring_id: *ring_id,
                });
            }
        }

        told.extend(
            rings
                .publishers
                .iter()
                .map(|p| (p.events.clone(), p.attachment)),
        );
        // Every consumer slot in every ring is freed before the rings are let go: the broker's
        // reader's first, then the subscribers' (while the publishers' rings are still known,
        // so their slots there are released too). A publisher left with a ring nobody reads
        // then never waits for room: it learns of the end from its `ShmDetached`, not by
        // hanging on a full ring.
        if let Some(reader) = &rings.reader {
            for (ring_id, _) in rings.reader_slots.drain() {
                reader.send(ReaderCommand::Stop {
                    ring_id,
                    drain: false,
                    release: true,
                });
            }
        }
        rings.reader_in_flight.clear();
        let subscribers: Vec<u32> = rings.subscribers.iter().map(|s| s.attachment).collect();
        for attachment in subscribers {
            detach_from(&mut rings, |_, a| a == attachment);
        }
        while detach_from(&mut rings, |_, _| true) {}
        let message = format!(
            "topic '{}' was removed from the broker's config; this attachment has ended",
            topic.name()
        );
        for (events, attachment) in &told {
            let _ = events.send(SessionEvent::Detached {
                attachment: *attachment,
                code: ErrorCode::TopicRemoved,
                message: message.clone(),
            });
        }
        // Dropping `rings` drops the relay ring's producer and stops the reader thread.
        told.len()
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, HashMap<TopicId, TopicRings>> {
        self.topics.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The directory if no one holds it now (poison ignored, as by [`lock`](Self::lock)).
    pub(super) fn try_lock(&self) -> Option<MutexGuard<'_, HashMap<TopicId, TopicRings>>> {
        match self.topics.try_lock() {
            Ok(guard) => Some(guard),
            Err(std::sync::TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }

    /// Data bytes of a ring: exactly `shm.ring_bytes`, whatever the topic's
    /// `max_message_size` (a message too large for a ring travels in a payload segment of its
    /// own).
    pub(crate) fn ring_capacity(&self) -> u64 {
        self.config.load().ring_bytes
    }

    /// Ends every topic's part of pattern attachment `attachment` of `session`; returns how
    /// many topics it held.
    pub(crate) fn detach_pattern(&self, session: SessionId, attachment: u32) -> usize {
        let mut topics = self.lock();
        let mut ended = 0;
        for rings in topics.values_mut() {
            while detach_from(rings, |s, a| s == session && a == attachment) {
                ended += 1;
            }
        }
        ended
    }

    /// Whether shared memory keeps `topic` in use: a publisher, or a subscriber of the topic
    /// itself (a pattern attachment does not keep a dynamic topic alive).
    pub(crate) fn in_use(&self, topic: TopicId) -> bool {
        self.lock().get(&topic).is_some_and(|rings| {
            !rings.publishers.is_empty() || rings.subscribers.iter().any(|s| !s.pattern)
        })
    }

    /// Ends attachment `attachment` of `session`; returns whether it existed.
    pub(crate) fn detach(&self, session: SessionId, attachment: u32) -> bool {
        let mut topics = self.lock();
        topics
            .values_mut()
            .any(|rings| detach_from(rings, |s, a| s == session && a == attachment))
    }

    /// Ends every attachment of `session` (its connection closed, or its process died).
    pub(crate) fn detach_session(&self, session: SessionId) {
        let mut topics = self.lock();
        for rings in topics.values_mut() {
            while detach_from(rings, |s, _| s == session) {}
        }
    }

    /// Attachments `session` holds now, over every topic.
    pub(crate) fn attachments_of(&self, session: SessionId) -> usize {
        self.lock()
            .values()
            .map(|rings| {
                rings
                    .publishers
                    .iter()
                    .filter(|p| p.session == session)
                    .count()
                    + rings
                        .subscribers
                        .iter()
                        .filter(|s| s.session == session)
                        .count()
            })
            .sum()
    }

    /// Shared-memory publishers and subscribers of `topic`.
    pub(crate) fn attachment_counts(&self, topic: TopicId) -> (usize, usize) {
        self.lock()
            .get(&topic)
            .map_or((0, 0), |r| (r.publishers.len(), r.subscribers.len()))
    }
}
