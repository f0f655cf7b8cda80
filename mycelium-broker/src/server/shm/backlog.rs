//! A queue topic's backlog and its shared-memory consumers: the task that offers the backlog
//! to them, and what a departed consumer left unread, dealt again.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use bytes::Bytes;
use mycelium_transport::shm::queue;
use mycelium_transport::shm::RingConsumer;

use crate::core::batch::OwnedItem;
use crate::core::topic::DropReason;
use crate::core::topic::{QueueRelay, Topic};
use crate::server::supervisor::Supervisor;

use super::relay::RelayRing;
use super::ring::Ring;

/// How often a queue topic's backlog is offered to its shared-memory consumers while it is
/// not empty: they read without telling the broker, so it looks. Only while messages wait in
/// the backlog (every consumer was out of credit); an empty backlog costs nothing.
const RELAY_DRAIN_POLL: std::time::Duration = std::time::Duration::from_millis(1);

/// Longest wait of a queue topic's drain task for the backlog to fill, before it checks that
/// its relay ring still exists.
const RELAY_DRAIN_IDLE: std::time::Duration = std::time::Duration::from_millis(200);

/// Starts (once per relay ring, inside the broker's runtime) the task that offers a queue
/// topic's backlog to its shared-memory consumers: they read without telling the broker, so
/// while messages wait the task looks every [`RELAY_DRAIN_POLL`]. It ends with the topic or
/// the relay ring.
pub(super) fn start_draining(
    topic: &Arc<Topic>,
    sink: &Arc<RelayRing>,
    supervisor: &Arc<Supervisor>,
) {
    if sink.drainer.swap(true, Ordering::Relaxed) {
        return;
    }
    let runtime = match tokio::runtime::Handle::try_current() {
        Ok(runtime) => runtime,
        Err(error) => {
            sink.drainer.store(false, Ordering::Relaxed);
            tracing::error!(topic = topic.name(), %error, "no runtime for the relay drain task: a backlog reaches shared-memory consumers only as socket publishers publish");
            return;
        }
    };
    let (topic, sink) = (Arc::downgrade(topic), Arc::downgrade(sink));
    supervisor.spawn_on(&runtime, "relay drain", drain_into_relay(topic, sink));
}

async fn drain_into_relay(topic: Weak<Topic>, sink: Weak<RelayRing>) {
    loop {
        let (Some(topic), Some(sink)) = (topic.upgrade(), sink.upgrade()) else {
            return;
        };
        let feeding = sink.readers.load(Ordering::Relaxed) > 0;
        drop(sink);
        if feeding && topic.backlog_len() > 0 {
            topic.drain_backlog_now();
            drop(topic);
            tokio::time::sleep(RELAY_DRAIN_POLL).await;
        } else {
            let _ = tokio::time::timeout(RELAY_DRAIN_IDLE, topic.wait_backlogged()).await;
        }
    }
}

/// Reads, from `slot` of the relay ring itself, the messages addressed to it that its
/// consumer (gone now) did not read, and puts them back at the head of the topic's backlog.
/// What cannot be read back (a ring a peer corrupted) is counted as dropped.
pub(super) fn take_back(topic: &Arc<Topic>, relay: &Ring, sink: &RelayRing, slot: u32) {
    let unread = sink.unread(slot).unwrap_or(0);
    let mut messages = Vec::new();
    let read = match RingConsumer::adopt(&relay.region, slot as usize) {
        // Dropping an adopted consumer leaves the slot held: the caller frees it. Taking
        // messages back, a gap in the numbering is nobody's to report.
        Ok(mut consumer) => loop {
            consumer.ignore_drops();
            let count = consumer.try_recv_batch_marked(4096, |frame, flags| {
                if let Some(message) = queue::addressed_to(frame, slot as usize) {
                    // The backlog keeps each message's envelope flag.
                    messages.push(OwnedItem::new(
                        Bytes::copy_from_slice(message),
                        flags.is_envelope(),
                    ));
                }
            });
            match count {
                Ok(0) => break Ok(()),
                Ok(_) => {}
                Err(error) => break Err(error.to_string()),
            }
        },
        Err(error) => Err(error.to_string()),
    };
    sink.forget(slot);
    if let Err(error) = read {
        let lost = unread.saturating_sub(messages.len()) as u64;
        tracing::warn!(topic = topic.name(), slot, lost, %error, "cannot take back what a departed shared-memory consumer left unread");
        topic.counters().lost(DropReason::SharedMemory, lost);
    }
    if !messages.is_empty() {
        tracing::debug!(
            topic = topic.name(),
            slot,
            count = messages.len(),
            "dealing again what a departed shared-memory consumer left unread"
        );
        topic.requeue_front(messages);
    }
}
