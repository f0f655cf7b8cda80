//! The watchdog: detaches shared-memory subscribers that hold a waiting publisher back,
//! under the topic's `backpressure` and `publish_deadline_ms`.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use mycelium_config::{Backpressure, Routing};
use mycelium_transport::shm::{producer_dropped, producer_waiting, slot_positions};

use crate::core::topic::Topic;

use super::directory::ShmRings;
use super::ring::Ring;
use super::topic_rings::{detach_slow, TopicRings};

/// How often the watchdog of `disconnect` topics (and of `block` topics with a
/// `publish_deadline_ms`) looks at the rings.
const WATCHDOG_PERIOD: std::time::Duration = std::time::Duration::from_millis(10);

/// Watchdog rounds in a row a subscriber must hold a waiting publisher back before it is
/// disconnected (a subscriber that is merely slow for a moment catches up in between).
const STRIKES: u8 = 5;

impl ShmRings {
    /// After a reload changed the settings of `topics`: starts the watchdog if one of them
    /// now disconnects slow subscribers and has shared-memory subscribers already (it is
    /// otherwise started by the first such subscriber's attach).
    pub(crate) fn topics_reconfigured(self: &Arc<Self>, topics: &[Arc<Topic>]) {
        let needs_watchdog = topics.iter().any(|topic| {
            watched(&topic.config())
                && self
                    .lock()
                    .get(&topic.id())
                    .is_some_and(|rings| !rings.subscribers.is_empty())
        });
        if needs_watchdog {
            self.start_watchdog();
        }
    }

    /// Starts (once) the thread that disconnects shared-memory subscribers of `disconnect`
    /// topics that hold a waiting publisher back; it ends with the last `Arc` of `self`.
    pub(super) fn start_watchdog(self: &Arc<Self>) {
        self.watchdog.get_or_init(|| {
            let rings = Arc::downgrade(self);
            let supervisor = Arc::clone(&self.supervisor);
            let started = std::thread::Builder::new()
                .name("shm-watchdog".into())
                .spawn(move || {
                    supervisor.guard_thread("shared-memory watchdog", || {
                        while let Some(rings) = rings.upgrade() {
                            rings.disconnect_slow_subscribers();
                            drop(rings);
                            std::thread::sleep(WATCHDOG_PERIOD);
                        }
                    })
                });
            if let Err(error) = started {
                tracing::error!(%error, "cannot start the shared-memory watchdog: slow subscribers of disconnect topics will hold publishers back");
            }
        });
    }

    /// One watchdog round: a subscriber of a `disconnect` topic that holds a publisher back
    /// (three quarters of a ring behind, or half a ring while the publisher waits for room) in
    /// [`STRIKES`] rounds without reading or catching up in between is detached (its slots
    /// freed, the publisher released) and told why. The relay ring counts as a publisher
    /// ring whose publisher is the broker, waiting while a socket publisher is held back by
    /// it. Under `block` with a
    /// `publish_deadline_ms`, a subscriber half a ring behind a publisher that waits on it
    /// for that long is detached the same way, so one slow reader never stalls the others
    /// of its rings for longer than the deadline. Under `drop_newest` with a
    /// `publish_deadline_ms`, a subscriber that keeps a ring more than half full for that long,
    /// either stopped or while the ring drops, and that made it drop at least once meanwhile,
    /// is detached too: every reader of a shared ring loses what the ring drops, so one
    /// reader that stopped would otherwise cost the others every message from then on.
    fn disconnect_slow_subscribers(&self) {
        let mut topics = self.lock();
        for rings in topics.values_mut() {
            let Some(topic) = rings.topic.clone() else {
                continue;
            };
            let settings = topic.config();
            let period = WATCHDOG_PERIOD.as_millis().max(1) as u64;
            let deadline_rounds =
                u32::try_from(settings.publish_deadline_ms.div_ceil(period).max(1))
                    .unwrap_or(u32::MAX);
            // Rounds a subscriber must hold a publisher back, and what the client is told.
            let (needed, policy, block) = match settings.backpressure {
                Backpressure::Disconnect => (
                    u32::from(STRIKES),
                    "backpressure = disconnect".to_owned(),
                    false,
                ),
                Backpressure::Block if settings.publish_deadline_ms > 0 => (
                    deadline_rounds,
                    format!(
                        "backpressure = block, held a publisher back longer than \
                         publish_deadline_ms = {}",
                        settings.publish_deadline_ms
                    ),
                    true,
                ),
                Backpressure::DropNewest if settings.publish_deadline_ms > 0 => {
                    let policy = format!(
                        "backpressure = drop_newest, kept a ring full (making it drop for \
                         every subscriber) longer than publish_deadline_ms = {}",
                        settings.publish_deadline_ms
                    );
                    Self::detach_ring_hogs(rings, &topic, deadline_rounds, &policy);
                    continue;
                }
                _ => continue,
            };
            // A subscriber is behind when it holds its publisher back: more than half a ring
            // behind while the publisher waits for room, or three quarters of a ring behind
            // whatever the publisher does (one that only tries to publish never waits).
            let publishers: Vec<(Ring, bool)> = rings
                .publishers
                .iter()
                .map(|p| (p.ring.clone(), producer_waiting(&p.ring.region)))
                .collect();
            // Fanout only: on a queue topic a full relay ring sends messages to other
            // consumers or the backlog, and holds no publisher back.
            let fanout = topic.routing() == Routing::Fanout;
            let short_calls = rings
                .relay_sink
                .as_ref()
                .map_or(0, |sink| sink.short_calls.load(Ordering::Relaxed));
            let relay_waiting = short_calls != rings.relay_short_calls_seen;
            rings.relay_short_calls_seen = short_calls;
            // Under block the relay ring is bounded by the socket publisher's own deadline
            // (`Topic::give_up`); here only publishers that really wait count.
            let relay = rings
                .relay
                .clone()
                .filter(|_| fanout && !block)
                .map(|ring| (ring, relay_waiting));
            let mut slow = Vec::new();
            for subscriber in &mut rings.subscribers {
                // `behind`: holds a publisher back this round. `stuck`: more than half a ring
                // behind and has read nothing since the last round, whether or not its
                // publisher is asleep on it right now: a publisher between two sleeps (it
                // rescans and spins after every wake-up, and naps without `membarrier`) must
                // not give a stopped reader a fresh deadline. Only a reader that reads, or
                // that is no longer behind, starts again from zero.
                let (mut behind, mut stuck) = (false, false);
                let watched = publishers
                    .iter()
                    .filter_map(|(ring, waiting)| {
                        let slot = subscriber.slots.get(&ring.id)?;
                        Some((ring, *waiting, *slot))
                    })
                    .chain(
                        relay
                            .as_ref()
                            .map(|(ring, waiting)| (ring, *waiting, subscriber.relay_slot)),
                    );
                for (ring, waiting, slot) in watched {
                    let Some((write_pos, read_pos)) = slot_positions(&ring.region, slot as usize)
                    else {
                        continue;
                    };
                    let backlog = write_pos.saturating_sub(read_pos);
                    let half = ring.capacity / 2;
                    behind |=
                        (!block && backlog > ring.capacity / 4 * 3) || (waiting && backlog > half);
                    let moved = subscriber.last_read.insert(ring.id, read_pos) != Some(read_pos);
                    stuck |= !moved && backlog > half;
                }
                subscriber.strikes = if behind {
                    subscriber.strikes.saturating_add(1)
                } else if stuck {
                    subscriber.strikes
                } else {
                    0
                };
                if subscriber.strikes >= needed {
                    slow.push((
                        subscriber.session,
                        subscriber.attachment,
                        subscriber.events.clone(),
                    ));
                }
            }
            detach_slow(rings, &topic, slow, &policy);
        }
    }

    /// The `drop_newest` round of [`disconnect_slow_subscribers`](Self::disconnect_slow_subscribers)
    /// for one topic: a strike for each subscriber more than half a ring behind in a ring that
    /// dropped since the last round, or in which it did not move; detached after `needed`
    /// strikes in a row if one of those rings dropped meanwhile.
    fn detach_ring_hogs(rings: &mut TopicRings, topic: &Arc<Topic>, needed: u32, policy: &str) {
        // Each ring, with whether it dropped since the last round: a publisher's ring by its
        // `dropped` counter, the relay ring (fanout) by the calls that found it full, after
        // which the topic drops the rest. A publisher that waits for room counts too: its ring
        // was made under `block` before a reload turned the topic to `drop_newest` (a ring
        // keeps the mode it was created with), and it must not wait for ever.
        let mut watched: Vec<(Ring, bool)> = rings
            .publishers
            .iter_mut()
            .map(|p| {
                let dropped = producer_dropped(&p.ring.region);
                let dropping = dropped != p.dropped_seen || producer_waiting(&p.ring.region);
                p.dropped_seen = dropped;
                (p.ring.clone(), dropping)
            })
            .collect();
        let short_calls = rings
            .relay_sink
            .as_ref()
            .map_or(0, |sink| sink.short_calls.load(Ordering::Relaxed));
        let relay_dropping = short_calls != rings.relay_short_calls_seen;
        rings.relay_short_calls_seen = short_calls;
        let relay_id = rings.relay.as_ref().map(|relay| relay.id);
        if topic.routing() == Routing::Fanout {
            if let Some(relay) = rings.relay.clone() {
                watched.push((relay, relay_dropping));
            }
        }
        let mut slow = Vec::new();
        for subscriber in &mut rings.subscribers {
            let (mut behind, mut dropped) = (false, false);
            for (ring, dropping) in &watched {
                let slot = if Some(ring.id) == relay_id {
                    Some(subscriber.relay_slot)
                } else {
                    subscriber.slots.get(&ring.id).copied()
                };
                let Some((write_pos, read_pos)) =
                    slot.and_then(|slot| slot_positions(&ring.region, slot as usize))
                else {
                    continue;
                };
                let moved = subscriber.last_read.insert(ring.id, read_pos) != Some(read_pos);
                let half_full = write_pos.saturating_sub(read_pos) > ring.capacity / 2;
                if half_full && (*dropping || !moved) {
                    behind = true;
                    dropped |= *dropping;
                }
            }
            if behind {
                subscriber.strikes = subscriber.strikes.saturating_add(1);
                subscriber.held_a_drop |= dropped;
            } else {
                subscriber.strikes = 0;
                subscriber.held_a_drop = false;
            }
            if subscriber.strikes >= needed && subscriber.held_a_drop {
                slow.push((
                    subscriber.session,
                    subscriber.attachment,
                    subscriber.events.clone(),
                ));
            }
        }
        detach_slow(rings, topic, slow, policy);
    }
}

/// Whether the watchdog looks after a topic with these settings: `disconnect`, and `block`
/// or `drop_newest` with a `publish_deadline_ms`.
pub(super) fn watched(settings: &mycelium_config::TopicConfig) -> bool {
    match settings.backpressure {
        Backpressure::Disconnect => true,
        Backpressure::Block | Backpressure::DropNewest => settings.publish_deadline_ms > 0,
        Backpressure::DropOldest => false,
    }
}
