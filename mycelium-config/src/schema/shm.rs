//! Section `[shm]`: the shared-memory data path (`docs/shm-layout.md`).
//!
//! - Every field has a default, so the section may be left out; shared memory is on by default.
//! - Sizes apply to rings created from now on: a ring keeps the size it was created with.
//!
//! ```
//! use mycelium_config::ShmConfig;
//!
//! let shm = ShmConfig::default();
//! assert!(shm.enabled);
//! assert_eq!(shm.ring_bytes, 4 << 20);
//! ```

use serde::Deserialize;

/// Smallest `ring_bytes` (one page).
pub const MIN_RING_BYTES: u64 = 4096;

/// Largest `ring_bytes` (1 GiB): a ring is one mapping per publisher per topic.
pub const MAX_RING_BYTES: u64 = 1 << 30;

/// Largest `max_subscribers`: the consumer slots of one ring.
pub const MAX_SHM_SUBSCRIBERS: u32 = 1024;

/// Largest `max_publishers_per_topic`: a subscriber's grant carries one ring per publisher
/// plus the broker's relay ring, at most 64 fds in one control message.
pub const MAX_SHM_PUBLISHERS_PER_TOPIC: u32 = 63;

/// Section `[shm]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShmConfig {
    /// Whether clients may ask for shared-memory rings. Default `true`; when `false` a
    /// shared-memory session is refused with a clear error and clients use the socket.
    pub enabled: bool,
    /// Data bytes of each ring (one per shared-memory publisher per topic, and one relay ring
    /// per topic with shared-memory subscribers). A power of two in
    /// [`MIN_RING_BYTES`]..=[`MAX_RING_BYTES`]. Default 4 MiB. A topic whose
    /// `max_message_size` needs more (a frame may take at most half a ring) gets the next power
    /// of two that fits it.
    pub ring_bytes: u64,
    /// Consumer slots per ring: the most shared-memory subscribers one topic may have. In
    /// 1..=[`MAX_SHM_SUBSCRIBERS`], default 64. Each slot costs 64 bytes per ring.
    pub max_subscribers: u32,
    /// Most shared-memory publishers one topic may have at once. In
    /// 1..=[`MAX_SHM_PUBLISHERS_PER_TOPIC`], default 16.
    pub max_publishers_per_topic: u32,
}

impl Default for ShmConfig {
    fn default() -> Self {
        ShmConfig {
            enabled: true,
            ring_bytes: 4 << 20,
            max_subscribers: 64,
            max_publishers_per_topic: 16,
        }
    }
}
