//! The protocol's limits: every bound both ends of a connection must agree on, defined once.
//!
//! - A limit here is part of the protocol (`docs/protocol.md` §5 and §7.8,
//!   `docs/shm-layout.md`): the side that enforces it and the side that must stay under it both
//!   read it from this file, and its doc says which side does what.
//! - Limits that only one side's configuration sets (a topic's `max_message_size`, the
//!   `max_frame_len` of `Welcome`) travel in frames instead, and are not here.

/// The largest `len` either side may send before `Welcome` has been received, and for the whole
/// of a shared-memory control session. A `Hello` is at most 16 + 1 + 255 body bytes, so this
/// leaves ample room while keeping an unauthenticated peer from making the broker reserve
/// memory.
pub const HANDSHAKE_MAX_FRAME_LEN: usize = 4096;

/// The longest topic, client or server name, in bytes (it is length-prefixed by one byte).
pub const MAX_NAME_LEN: usize = 255;

/// Most offsets one `AckMessages` frame carries (its `count` is a `u16`); a client with more
/// to acknowledge sends several frames.
pub const MAX_ACKS_PER_FRAME: usize = u16::MAX as usize;

/// Most groups one `Groups` frame lists (its `count` is a `u16`).
pub const MAX_GROUPS_PER_FRAME: usize = u16::MAX as usize;

/// Most rings one `ShmGrant` carries (their fds travel in one control message). A client
/// reads its control socket with room for this many fds per read.
pub const MAX_RINGS_PER_GRANT: usize = 64;

/// The largest frame a client accepts from the broker that is not a message, whatever the
/// `Welcome` said: a `Stats` answer for many topics, or with long reload diagnostics, can exceed
/// the message limit by far (about 300 bytes a topic: 64 MiB is 200 000 topics).
pub const MAX_BROKER_CONTROL_FRAME_LEN: usize = 64 * 1024 * 1024;

/// Most shared-memory attachments one control session may hold at once: each publisher
/// attachment is a ring of `shm.ring_bytes` the broker creates, so a session must not be able to
/// ask for unbounded memory. The broker refuses one more `ShmAttach` with `ShmRefused`.
pub const MAX_ATTACHMENTS_PER_SESSION: usize = 64;

/// Most fds a client may have sent on its control session that no `ShmSegment` has taken yet:
/// only `ShmSegment` carries one (and the client waits for its answer before the next), so
/// more than this is a protocol violation (fatal `Malformed`), and a client cannot make the
/// broker hold fds for nothing.
pub const MAX_PENDING_FDS: usize = 4;

/// Most payload segments one reader (a subscriber, or the broker's own reader) may hold per ring
/// before it has read their reference frames. Beyond it, the broker drops the message for that
/// reader (counted in the topic's `dropped`, announced by a `ShmSegmentAdded` with `dropped` set
/// and no fd): a reader that falls behind can pin at most this many segments per ring, and the
/// broker never runs out of fds on its account.
pub const MAX_SEGMENTS_IN_FLIGHT: usize = 16;

/// The largest ring segment a client maps: the broker's rings hold at most 1 GiB of data
/// (`shm.ring_bytes`) plus their header and slots, far below this. A larger fd is refused
/// unmapped.
pub const MAX_RING_SEGMENT_LEN: usize = 4 << 30;
