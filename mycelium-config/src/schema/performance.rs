//! Section `[performance]`: runtime sizing and batching knobs.
//!
//! - Every field has a default, so the section may be left out.
//! - The defaults suit a small machine (2 cores); raise `worker_threads` with the core count.
//!
//! ```
//! use mycelium_config::PerformanceConfig;
//!
//! assert_eq!(PerformanceConfig::default().worker_threads, 2);
//! ```

use serde::Deserialize;

/// Section `[performance]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PerformanceConfig {
    /// Threads of the broker's async runtime. Default 2, in
    /// 1..=[`MAX_WORKER_THREADS`](crate::MAX_WORKER_THREADS).
    pub worker_threads: usize,
    /// Caps every fanout subscription's `buffer_size`: no subscription queues more than this many
    /// messages toward its connection. Default 100000, > 0.
    pub channel_capacity: usize,
    /// Most frames the broker routes from one connection per wake-up before it yields to other
    /// connections. Default 1000, > 0.
    pub batch_size: usize,
    /// Upper bound in milliseconds on how long client libraries hold a partly filled publish batch;
    /// 0 flushes on every publish call. Default 1.
    pub flush_interval_ms: u64,
}

impl Default for PerformanceConfig {
    fn default() -> Self {
        PerformanceConfig {
            worker_threads: 2,
            channel_capacity: 100_000,
            batch_size: 1000,
            flush_interval_ms: 1,
        }
    }
}
