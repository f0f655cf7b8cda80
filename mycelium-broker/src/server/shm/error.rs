//! Why the directory refused an attach ([`ShmRefusal`]) or a payload segment
//! ([`SegmentRefusal`]).

use mycelium_transport::shm::{RingError, SegmentError};

/// Why an attach was refused; the message goes to the client in an `Error` frame.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ShmRefusal {
    /// A configured limit is reached.
    #[error("{0}")]
    Limit(String),
    /// The topic's settings cannot be kept over shared memory.
    #[error("{0}")]
    Policy(String),
    /// Creating or initialising a segment failed.
    #[error("cannot create a shared-memory ring: {0}")]
    Segment(#[from] SegmentError),
    /// A ring the broker created is inconsistent (a peer scribbled over it).
    #[error("shared-memory ring unusable: {0}")]
    Ring(#[from] RingError),
}

/// Why a payload segment was refused; the message goes to the publisher in an `Error` frame.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SegmentRefusal {
    /// The session holds no such publisher attachment.
    #[error("no publisher attachment {0} on this session")]
    NoAttachment(u32),
    /// The segment or its description is unacceptable.
    #[error("payload segment refused: {0}")]
    Bad(String),
}
