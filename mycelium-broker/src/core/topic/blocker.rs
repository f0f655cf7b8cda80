//! What a held-back publisher waits for, and the wait.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use mycelium_config::Routing;

use crate::core::delivery::Delivery;
use crate::core::topic::deadline::Holder;
use crate::core::topic::{SubscriberId, Topic};

/// How long a publisher held back by a full `Relay` waits before it offers the rest of its
/// batch again ([`Blocker::Relay`]).
///
/// A poll rather than a wake-up: the relay's readers (shared-memory subscribers) read without
/// telling the broker, and the transport's way to hear of room (a thread asleep on the ring's
/// `producer_parked` futex, woken by the reader that makes room) would cost a thread per relay
/// ring plus a hand-over to tokio, and a `FUTEX_WAKE` syscall from readers on every read while
/// it sleeps. The poll costs nothing while the relay has room (it runs only while a batch is
/// held back, and only for that publisher), adds at most about a millisecond to a wait that a
/// reader a whole ring behind has already made long, and mirrors how a queue topic's backlog
/// is offered to the same ring (`server/shm/backlog.rs`).
pub const RELAY_ROOM_POLL: Duration = Duration::from_millis(1);

/// What a blocked publisher waits for.
#[derive(Debug)]
pub enum Blocker {
    /// A fanout subscriber to take messages, until fewer than `limit` are queued for it.
    Subscriber {
        /// The full subscriber.
        subscriber: SubscriberId,
        /// The way to it.
        sink: Arc<dyn Delivery>,
        /// The topic whose messages fill it; the wait also ends when its subscribers change.
        topic: Arc<Topic>,
        /// The topic's membership generation when the publish blocked.
        generation: u64,
        /// The message limit it must drop below.
        limit: usize,
    },
    /// A queue topic's backlog to shrink.
    Backlog(Arc<Topic>),
    /// The topic's `Relay` to have room (a shared-memory subscriber to read); waits
    /// [`RELAY_ROOM_POLL`], then the publish offers the rest of the batch again.
    Relay,
}

impl Blocker {
    pub(super) fn holder(&self) -> Holder {
        match self {
            Blocker::Subscriber { subscriber, .. } => Holder::Subscriber(*subscriber),
            Blocker::Backlog(_) => Holder::Backlog,
            Blocker::Relay => Holder::Relay,
        }
    }

    /// Resolves when publishing may make progress again (or the subscriber went away).
    pub async fn wait(&self) {
        match self {
            Blocker::Subscriber {
                sink,
                topic,
                generation,
                limit,
                ..
            } => {
                // The blocking subscriber may leave rather than drain: then the publish must
                // resume (and skip it) instead of waiting on a sink nobody reads for it.
                let left = async {
                    loop {
                        let changed = topic.membership_changed.notified();
                        tokio::pin!(changed);
                        changed.as_mut().enable();
                        // SYNC POINT: pairs with the Release increment in `unsubscribe`.
                        if topic.membership.load(Ordering::Acquire) != *generation {
                            return;
                        }
                        changed.await;
                    }
                };
                tokio::select! {
                    _ = sink.wait_for_room(topic.id, *limit) => {}
                    _ = left => {}
                }
            }
            Blocker::Backlog(topic) => {
                if let Routing::Queue = topic.routing {
                    // The topic's size now: a reload may have changed it meanwhile.
                    topic.queue.wait_for_space(&topic.settings).await
                }
            }
            Blocker::Relay => tokio::time::sleep(RELAY_ROOM_POLL).await,
        }
    }
}

#[cfg(test)]
mod tests {

    use std::sync::Arc;

    use mycelium_config::{Backpressure, Routing};
    use mycelium_transport::outbox::Outbox;

    use super::*;

    use crate::core::topic::test_support::*;
    use crate::core::topic::*;

    #[tokio::test]
    async fn a_publisher_blocked_on_a_full_subscriber_resumes_when_the_topic_is_removed() {
        let t = topic(Routing::Fanout, 2, Backpressure::Block, 1);
        let slow = Arc::new(Outbox::new());
        t.subscribe(1, slow.clone(), 1000, 0);
        let m = msgs(5);
        let refs: Vec<&[u8]> = m.iter().map(|p| p.as_slice()).collect();
        let mut cursor = PublishCursor::default();
        let Progress::Blocked(blocker) = t.publish(refs.as_slice(), &mut cursor) else {
            panic!("a buffer of 2 must hold back 5 messages");
        };
        let remover = {
            let t = t.clone();
            tokio::spawn(async move { t.remove() })
        };
        tokio::time::timeout(std::time::Duration::from_secs(10), blocker.wait())
            .await
            .expect("the removal wakes the blocked publisher");
        remover.await.expect("remove");
        assert!(matches!(
            t.publish(refs.as_slice(), &mut cursor),
            Progress::Done
        ));
    }

    #[tokio::test]
    async fn a_relay_blocker_resolves_after_the_poll_period() {
        let started = std::time::Instant::now();
        Blocker::Relay.wait().await;
        assert!(started.elapsed() >= RELAY_ROOM_POLL);
    }

    #[tokio::test]
    async fn a_publisher_blocked_on_a_subscriber_resumes_when_that_subscriber_leaves() {
        let t = topic(Routing::Fanout, 2, Backpressure::Block, 1);
        let stuck = Arc::new(Outbox::new());
        let live = Arc::new(Outbox::new());
        t.subscribe(1, stuck.clone(), 1000, 0);
        t.subscribe(2, live.clone(), 1000, 0);
        let m = msgs(5);
        let refs: Vec<&[u8]> = m.iter().map(|p| p.as_slice()).collect();
        let mut cursor = PublishCursor::default();
        let Progress::Blocked(blocker) = t.publish(refs.as_slice(), &mut cursor) else {
            panic!("the stuck subscriber's outbox is full: the publish must block");
        };
        let waiter = tokio::spawn(async move { blocker.wait().await });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "nothing changed yet");
        assert!(t.unsubscribe(1));
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("the wait ends when the blocking subscriber leaves")
            .expect("no panic");
        let mut got = Vec::new();
        loop {
            let progress = t.publish(refs.as_slice(), &mut cursor);
            got.extend(drain(&live));
            if matches!(progress, Progress::Done) {
                break;
            }
        }
        assert_eq!(got, m, "the remaining subscriber gets every message once");
    }
}
