//! What the directory tells a session about its attachments ([`SessionEvent`]), and what a
//! granted attachment holds ([`Grant`]).

use std::os::fd::OwnedFd;
use std::sync::Arc;

use mycelium_transport::shm::reference::SegmentRef;
#[allow(unused_imports)]
use mycelium_transport::NO_SLOT;
use mycelium_transport::{ErrorCode, ShmRing};
use tokio::sync::oneshot;

use super::ring::Ring;

/// Something a session must tell its client, sent by another session's attach or detach.
#[derive(Debug)]
pub(crate) enum SessionEvent {
    /// A publisher joined the topic of `attachment`: hand over its ring, with the slot reserved.
    RingAdded {
        /// The subscriber's attachment.
        attachment: u32,
        /// The ring and the slot reserved in it.
        ring: Ring,
        /// The reserved slot.
        slot: u32,
        /// For a pattern attachment: the id and name of the topic the ring carries
        /// (`ShmTopicRingAdded`); `None`: a plain one (`ShmRingAdded`).
        topic: Option<(u32, Arc<str>)>,
        /// The subscriber's relay ring and slot: woken once the frame is sent, so that a
        /// subscriber asleep on its rings looks at its control socket and finds the frame.
        wake: Option<(Ring, u32)>,
    },
    /// The broker ended `attachment`: a slow subscriber on a `disconnect` topic
    /// (`SlowConsumer`), or any attachment of a topic a reload removed (`TopicRemoved`).
    Detached {
        /// The attachment.
        attachment: u32,
        /// Why, as an error code.
        code: ErrorCode,
        /// Why, for the client.
        message: String,
    },
    /// A payload segment for one of the subscriber's rings: send `ShmSegmentAdded`, with the
    /// fd unless it is `None` (dropped for this subscriber).
    SegmentAdded {
        /// The subscriber's attachment.
        attachment: u32,
        /// The ring whose reference frame names the segment.
        ring_id: u32,
        /// The segment's id and the message's length.
        reference: SegmentRef,
        /// The segment's memfd, shared by every recipient; `None`: dropped.
        fd: Option<Arc<OwnedFd>>,
        /// Told once the frame is written to the subscriber's socket: the publisher's `Ack`
        /// waits for it, so the fd is in the subscriber's socket before the reference frame
        /// is in the ring. Dropped unsent if the session is gone.
        sent: Option<oneshot::Sender<()>>,
    },
    /// The publisher of `ring_id` left.
    RingRemoved {
        /// The subscriber's attachment.
        attachment: u32,
        /// The ring to drain and drop.
        ring_id: u32,
    },
}

/// What a granted attachment holds.
#[derive(Debug)]
pub(crate) struct Grant {
    /// The attachment id.
    pub(crate) attachment: u32,
    /// The rings with, for a subscriber, the slot reserved in each (for a publisher: one ring,
    /// slot [`NO_SLOT`]).
    pub(crate) rings: Vec<(Ring, u32)>,
}

impl Grant {
    /// The rings as carried in a `ShmGrant` frame.
    pub(crate) fn wire_rings(&self) -> Vec<ShmRing> {
        self.rings
            .iter()
            .map(|(ring, slot)| ShmRing {
                ring_id: ring.id,
                slot: *slot,
            })
            .collect()
    }
}
