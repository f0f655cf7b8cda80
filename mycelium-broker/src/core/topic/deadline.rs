//! `publish_deadline_ms`: how long one reader may hold a batch back, and what the topic does
//! once it has.

use std::time::Duration;

use tokio::time::Instant;

use crate::core::delivery::Ending;
use crate::core::topic::drops::DropReason;
use crate::core::topic::{Batch, Blocker, PublishCursor, SubscriberId, Topic};

/// Who holds a batch back, for [`HeldBack`]: the same reader across wake-ups keeps one clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Holder {
    /// A fanout subscriber.
    Subscriber(SubscriberId),
    Backlog,
    Relay,
}

/// The `publish_deadline_ms` clock of one batch's routing.
///
/// A held-back batch wakes up often without having been let through: [`Blocker::Relay`]
/// every [`RELAY_ROOM_POLL`](crate::core::topic::RELAY_ROOM_POLL), [`Blocker::Subscriber`] whenever any subscriber of the topic
/// leaves, [`Blocker::Backlog`] whenever a reload touches the topic. Were the deadline taken
/// afresh at each wake-up, a reader that never reads would hold the batch for ever. So the
/// clock starts when the batch is first held back by a reader and keeps running while that
/// same reader holds it, whatever wakes the publisher in between; it starts again only for
/// another reader (the first one made room and the batch moved on to the next full one), or
/// once [`Topic::give_up`] dealt with the reader. Start one per batch.
#[derive(Debug, Default)]
pub struct HeldBack {
    pub(super) since: Option<(Holder, Instant)>,
}

impl HeldBack {
    /// When the wait on `blocker` must end, under a deadline of `deadline_ms` (0: never),
    /// counted from when this reader first held the batch back. Read at each wake-up, so a
    /// reload's new deadline applies to a wait already under way.
    pub fn deadline(&mut self, blocker: &Blocker, deadline_ms: u64) -> Option<Instant> {
        let holder = blocker.holder();
        let since = match self.since {
            Some((held_by, since)) if held_by == holder => since,
            _ => {
                let now = Instant::now();
                self.since = Some((holder, now));
                now
            }
        };
        if deadline_ms == 0 {
            return None;
        }
        // Far enough that no deadline overflows the clock (a config allows any u64).
        Some(
            since
                .checked_add(Duration::from_millis(deadline_ms))
                .unwrap_or_else(|| since + Duration::from_secs(365 * 24 * 3600)),
        )
    }

    /// The reader that held the batch was dealt with: the next one gets a deadline of its own.
    pub fn reset(&mut self) {
        self.since = None;
    }
}

/// What [`Topic::give_up`] did when a publish waited past the topic's `publish_deadline_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GaveUp {
    /// The subscriber that held the publish back was disconnected (`SlowConsumer`); the
    /// publish goes on to the others.
    Disconnected,
    /// The rest of the batch was dropped for the readers it waited on (a full queue backlog,
    /// or a full relay whose readers could not be detached), counted; the publisher should be
    /// told. Holds how many.
    Dropped(usize),
}

impl Topic {
    /// Stops waiting on `blocker`, which held a `block` publish of `payloads` (at `cursor`)
    /// for longer than the topic's `publish_deadline_ms`: one slow reader may not stall the
    /// others any longer. A full subscriber is disconnected with a fatal `SlowConsumer`; the
    /// shared-memory readers that hold a full relay ring are detached (`SlowConsumer`), or,
    /// if none can be, the rest of the batch is dropped for the relay; a full queue backlog
    /// gets the shared-memory consumers that hold its relay ring full detached, or if none
    /// do, the rest of the batch dropped (counted). Call `publish` again with the same cursor
    /// afterwards.
    pub fn give_up<B: Batch + ?Sized>(
        &self,
        blocker: &Blocker,
        payloads: &B,
        cursor: &mut PublishCursor,
    ) -> GaveUp {
        let waited = self.settings.load().publish_deadline_ms;
        match blocker {
            Blocker::Subscriber { sink, .. } => {
                tracing::warn!(topic = %self.name, waited_ms = waited, "disconnecting a subscriber that held a publisher back past publish_deadline_ms");
                let message = format!(
                    "subscriber held publishers of topic '{}' back for more than {waited} ms \
                     (backpressure = block, publish_deadline_ms = {waited})",
                    self.name
                );
                sink.end(self.id, Ending::SlowConsumer { message: &message });
                self.counters.lost(DropReason::PublishDeadline, 1);
                GaveUp::Disconnected
            }
            Blocker::Backlog(_) => {
                // A shared-memory consumer that stopped reading holds the relay ring full for
                // every other one (they all read every frame): then it, not the backlog, is the
                // slow reader, and detaching it (what it left unread is dealt again) lets the
                // backlog drain into the ring again.
                let relay = self.queue.lock().relay.clone();
                if let Some(relay) = relay {
                    let why = format!(
                        "backpressure = {}, held a publisher back longer than publish_deadline_ms = {waited}",
                        self.settings.load().backpressure
                    );
                    if relay.detach_laggards(&why) > 0 {
                        tracing::warn!(topic = %self.name, waited_ms = waited, "detached the shared-memory consumers that held the relay ring full past publish_deadline_ms");
                        return GaveUp::Disconnected;
                    }
                }
                let rest = payloads.len().saturating_sub(cursor.offset);
                cursor.offset = payloads.len();
                self.counters.lost(DropReason::PublishDeadline, rest as u64);
                GaveUp::Dropped(rest)
            }
            Blocker::Relay => {
                let relay = self.relay.read().unwrap_or_else(|p| p.into_inner()).clone();
                let Some(relay) = relay else {
                    // Its readers have all left since: the publish goes on, dropping nothing.
                    return GaveUp::Disconnected;
                };
                let why = format!(
                    "backpressure = {}, held a publisher back longer than publish_deadline_ms = {waited}",
                    self.settings.load().backpressure
                );
                if relay.detach_laggards(&why) > 0 {
                    tracing::warn!(topic = %self.name, waited_ms = waited, "detached the shared-memory subscribers that held the relay ring full past publish_deadline_ms");
                    return GaveUp::Disconnected;
                }
                let rest = payloads.len().saturating_sub(cursor.relayed);
                cursor.relayed = payloads.len();
                self.counters.lost(DropReason::PublishDeadline, rest as u64);
                GaveUp::Dropped(rest)
            }
        }
    }

    /// Waits on `blocker` (which held back a publish of `payloads` at `cursor`) until the
    /// publish may go on: `None` when the reader made room (or left), or what
    /// [`give_up`](Self::give_up) did once the reader has held the batch back for the topic's
    /// `publish_deadline_ms`, counted by `held` over every wake-up of the wait. Call
    /// `publish` again with the same cursor afterwards, either way.
    pub async fn wait_or_give_up<B: Batch + ?Sized>(
        &self,
        blocker: &Blocker,
        payloads: &B,
        cursor: &mut PublishCursor,
        held: &mut HeldBack,
    ) -> Option<GaveUp> {
        let deadline = held.deadline(blocker, self.settings.load().publish_deadline_ms);
        let past_deadline = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = blocker.wait() => None,
            _ = past_deadline => {
                held.reset();
                Some(self.give_up(blocker, payloads, cursor))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::sync::Arc;

    use mycelium_config::{Backpressure, Routing};
    use mycelium_transport::outbox::Outbox;

    use super::*;
    use crate::core::topic::test_support::*;
    use crate::core::topic::*;

    /// Routes `m` as a connection does, waiting with [`Topic::wait_or_give_up`]; returns what
    /// each give-up did. Fails if the batch is still held back after five seconds.
    async fn route_with_deadline(t: &Arc<Topic>, m: &[Vec<u8>]) -> Vec<GaveUp> {
        let refs: Vec<&[u8]> = m.iter().map(|p| p.as_slice()).collect();
        let mut cursor = PublishCursor::default();
        let mut held = HeldBack::default();
        let mut gave_up = Vec::new();
        let routed = tokio::time::timeout(std::time::Duration::from_secs(5), async {
            while let Progress::Blocked(blocker) = t.publish(refs.as_slice(), &mut cursor) {
                gave_up.extend(
                    t.wait_or_give_up(&blocker, refs.as_slice(), &mut cursor, &mut held)
                        .await,
                );
            }
        })
        .await;
        assert!(routed.is_ok(), "the batch was held back past its deadline");
        gave_up
    }

    fn with_deadline(t: &Topic, ms: u64) {
        let mut config = (*t.config()).clone();
        config.publish_deadline_ms = ms;
        t.set_config(config).expect("same name and routing");
    }

    #[tokio::test]
    async fn a_relay_that_stays_full_is_given_up_on_after_the_deadline_despite_its_polls() {
        // The relay's blocker resolves at every poll: the deadline must run across polls,
        // or it never passes.
        let t = topic(Routing::Fanout, 100, Backpressure::Block, 1);
        with_deadline(&t, 50);
        let a = Arc::new(Outbox::new());
        t.subscribe(1, a.clone(), 1000, 0);
        let relay = RecordingRelay::with_room(3);
        *relay.laggards.lock().unwrap() = 1;
        t.set_relay(Some(relay.clone()));
        let m = msgs(8);
        assert_eq!(
            route_with_deadline(&t, &m).await,
            vec![GaveUp::Disconnected]
        );
        assert_eq!(
            *relay.got.lock().unwrap(),
            m,
            "the reader's detach made room"
        );
        assert_eq!(drain(&a), m, "the outbox subscriber gets the whole batch");
        // With no reader to detach, the rest is dropped for the relay, counted, instead.
        let relay = RecordingRelay::with_room(3);
        t.set_relay(Some(relay.clone()));
        assert_eq!(route_with_deadline(&t, &m).await, vec![GaveUp::Dropped(5)]);
        assert_eq!(
            *relay.told_dropped.lock().unwrap(),
            0,
            "a block relay is not told"
        );
        assert_eq!(drain(&a), m);
        assert_eq!(t.counters().dropped.load(Ordering::Relaxed), 5);
    }

    #[tokio::test]
    async fn the_deadline_runs_across_wake_ups_while_the_same_subscriber_holds_the_batch() {
        // A subscriber leaving wakes every publisher blocked on the topic: the deadline must
        // run across wake-ups, or churn keeps a stopped reader's publisher waiting for ever.
        let t = topic(Routing::Fanout, 2, Backpressure::Block, 1);
        with_deadline(&t, 200);
        let stuck = Arc::new(Outbox::new());
        t.subscribe(1000, stuck.clone(), 1000, 0);
        // Full, and never drained.
        assert!(matches!(publish_all(&t, &msgs(2)), Progress::Done));
        // Subscribers that come and go, each taking the batch whole (it is as large as their
        // limit), so that only the stopped one holds it back.
        let churn = {
            let t = t.clone();
            tokio::spawn(async move {
                for id in 1..1000 {
                    t.subscribe(id, Arc::new(Outbox::new()), 1000, 0);
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    t.unsubscribe(id);
                }
            })
        };
        let gave_up = route_with_deadline(&t, &msgs(2)).await;
        churn.abort();
        assert_eq!(gave_up, vec![GaveUp::Disconnected]);
        assert!(stuck.is_closed(), "the stopped subscriber was disconnected");
    }
}
