//! Payload segments: a message too large for its ring travels in a sealed memfd of its own,
//! handed to each reader of the ring before its reference frame is written.

use crate::core::topic::DropReason;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

use mycelium_config::Routing;
use mycelium_transport::shm::reference::SegmentRef;
use mycelium_transport::shm::{check_payload_fd, slot_positions};
use tokio::sync::oneshot;

use super::directory::ShmRings;
use super::error::SegmentRefusal;
use super::events::SessionEvent;
use super::reader::ReaderCommand;
use super::ring::{Ring, SessionId};
use super::topic_rings::TopicRings;

/// One segment to hand to a ring's readers.
pub(super) struct Handover<'a> {
    pub(super) ring: &'a Ring,
    pub(super) reference: SegmentRef,
    pub(super) fd: Arc<OwnedFd>,
    /// Queue topics: the one slot the message is addressed to.
    pub(super) recipient: Option<u32>,
}

/// Hands `handover` to every reader of its ring (the addressed one only, on a queue topic):
/// shared-memory subscribers through their sessions, the broker's own reader through its
/// commands. Returns the `sent` receivers of the subscribers' events and how many readers
/// the message was dropped for.
pub(super) fn hand_over(
    rings: &mut TopicRings,
    handover: &Handover<'_>,
    confirm: bool,
) -> (Vec<oneshot::Receiver<()>>, u64) {
    let ring = handover.ring;
    let mut waits = Vec::new();
    let mut dropped = 0;
    let wake = rings.relay.clone();
    for subscriber in &mut rings.subscribers {
        let slot = if rings.relay.as_ref().is_some_and(|r| r.id == ring.id) {
            Some(subscriber.relay_slot)
        } else {
            subscriber.slots.get(&ring.id).copied()
        };
        let Some(slot) = slot else { continue };
        if handover.recipient.is_some_and(|r| r != slot) {
            continue;
        }
        let admitted =
            slot_positions(&ring.region, slot as usize).is_some_and(|(write_pos, read_pos)| {
                subscriber
                    .in_flight
                    .entry(ring.id)
                    .or_default()
                    .admit(write_pos, read_pos)
            });
        if !admitted {
            dropped += 1;
        }
        let (sent, wait) = if confirm {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let event = SessionEvent::SegmentAdded {
            attachment: subscriber.attachment,
            ring_id: ring.id,
            reference: handover.reference,
            fd: admitted.then(|| Arc::clone(&handover.fd)),
            sent,
        };
        if subscriber.events.send(event).is_ok() {
            waits.extend(wait);
            if let Some(relay) = &wake {
                // A subscriber asleep on its rings looks at its socket when woken.
                relay.wake_consumer(subscriber.relay_slot);
            }
        }
    }
    if let (Some(&slot), Some(reader)) = (rings.reader_slots.get(&ring.id), &rings.reader) {
        if handover.recipient.is_none_or(|r| r == slot) {
            let admitted =
                slot_positions(&ring.region, slot as usize).is_some_and(|(write_pos, read_pos)| {
                    rings
                        .reader_in_flight
                        .entry(ring.id)
                        .or_default()
                        .admit(write_pos, read_pos)
                });
            if !admitted {
                dropped += 1;
            }
            reader.send(ReaderCommand::Segment {
                ring_id: ring.id,
                reference: handover.reference,
                fd: admitted.then(|| Arc::clone(&handover.fd)),
            });
        }
    }
    (waits, dropped)
}

impl ShmRings {
    /// Hands the payload segment `fd` that publisher attachment `attachment` of `session`
    /// sent (`ShmSegment`) to the readers of its ring, after checking it (sealed against
    /// writes and resizing, `len` within the topic's limit and the file at least that long,
    /// ids increasing). Returns the receivers to wait on before answering, so that the fd is
    /// in every subscriber's socket before the publisher writes the reference frame.
    pub(crate) fn forward_segment(
        &self,
        session: SessionId,
        attachment: u32,
        reference: SegmentRef,
        recipient: u32,
        fd: OwnedFd,
    ) -> Result<Vec<oneshot::Receiver<()>>, SegmentRefusal> {
        let mut topics = self.lock();
        let Some(rings) = topics.values_mut().find(|rings| {
            rings
                .publishers
                .iter()
                .any(|p| p.session == session && p.attachment == attachment)
        }) else {
            return Err(SegmentRefusal::NoAttachment(attachment));
        };
        let Some(topic) = rings.topic.clone() else {
            return Err(SegmentRefusal::NoAttachment(attachment));
        };
        // The envelope comes on top of the payload limit (the reference frame, written
        // later, says whether there is one; the reader checks it then).
        let max = super::rules::max_segment_len(&topic.config());
        check_payload_fd(
            fd.as_fd(),
            reference.len as usize,
            max.next_multiple_of(4096),
        )
        .map_err(|e| SegmentRefusal::Bad(e.to_string()))?;
        if reference.len as usize > max {
            return Err(SegmentRefusal::Bad(format!(
                "a message of {} bytes is above the topic's max_message_size with its envelope ({max})",
                reference.len
            )));
        }
        let Some(publisher) = rings
            .publishers
            .iter_mut()
            .find(|p| p.session == session && p.attachment == attachment)
        else {
            return Err(SegmentRefusal::NoAttachment(attachment));
        };
        if publisher
            .last_segment
            .is_some_and(|last| reference.segment <= last)
        {
            return Err(SegmentRefusal::Bad(format!(
                "segment id {} does not follow {}",
                reference.segment,
                publisher.last_segment.unwrap_or_default()
            )));
        }
        publisher.last_segment = Some(reference.segment);
        let ring = publisher.ring.clone();
        let queue = topic.routing() == Routing::Queue;
        let handover = Handover {
            ring: &ring,
            reference,
            fd: Arc::new(fd),
            recipient: queue.then_some(recipient),
        };
        let (waits, dropped) = hand_over(rings, &handover, true);
        if dropped > 0 {
            topic.counters().lost(DropReason::SharedMemory, dropped);
        }
        Ok(waits)
    }
}
