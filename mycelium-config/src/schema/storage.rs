//! Section `[storage]`: where durable topics keep their logs.
//!
//! - Without `data_dir` the broker keeps nothing on disk, and a topic with `durable = true` is a
//!   validation error naming the missing setting.
//! - Each durable topic's log lives in `<data_dir>/<topic name>/`; topic names are restricted to
//!   `[A-Za-z0-9._-]`, and a durable topic may not be called `.` or `..`, so every name is a safe
//!   directory name.
//!
//! ```
//! use mycelium_config::StorageConfig;
//!
//! let storage = StorageConfig::default();
//! assert_eq!(storage.data_dir, None);
//! assert_eq!(storage.segment_bytes, 64 << 20);
//! ```

use std::path::PathBuf;

use serde::Deserialize;

/// Smallest `segment_bytes`: 4 KiB, one page.
pub const MIN_SEGMENT_BYTES: u64 = 4096;

/// Largest `segment_bytes`: 1 GiB. Retention deletes whole segments, so a segment this large
/// already makes retention coarse.
pub const MAX_SEGMENT_BYTES: u64 = 1 << 30;

/// Section `[storage]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// Directory holding one log directory per durable topic; absent: no durable topics.
    pub data_dir: Option<PathBuf>,
    /// Size at which a log's active segment is sealed and a new one started. In
    /// [`MIN_SEGMENT_BYTES`]..=[`MAX_SEGMENT_BYTES`], default 64 MiB.
    pub segment_bytes: u64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            data_dir: None,
            segment_bytes: 64 << 20,
        }
    }
}
