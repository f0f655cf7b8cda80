//! [`Ring`]: one shared-memory ring the broker created, as the directory, the sessions and
//! the broker's reader hold it.

use std::sync::Arc;

use mycelium_transport::shm::{wake_consumer, RingRegion, Segment};

/// Identifies one session (one shared-memory control connection) within a broker run.
pub(crate) type SessionId = u64;

/// One ring the broker created.
#[derive(Clone)]
pub(crate) struct Ring {
    /// Unique within the broker run.
    pub(crate) id: u32,
    /// The memfd, whose fd is handed to peers.
    pub(crate) segment: Arc<Segment>,
    /// The broker's own view of the ring, for reserving and releasing slots.
    pub(super) region: Arc<RingRegion>,
    /// Data bytes, as created: a reload's `ring_bytes` applies to later rings only.
    pub(super) capacity: u64,
}

impl Ring {
    /// The broker's view of the ring.
    pub(crate) fn region(&self) -> &Arc<RingRegion> {
        &self.region
    }

    /// Wakes the consumer in `slot` if it sleeps on this ring.
    pub(crate) fn wake_consumer(&self, slot: u32) {
        wake_consumer(&self.region, slot as usize);
    }
}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring").field("id", &self.id).finish()
    }
}
