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
    /// Microseconds a broker connection keeps polling its socket after its last read before it
    /// sleeps until the kernel wakes it; 0 sleeps at once. Default 50, at most
    /// [`MAX_BUSY_POLL_US`](crate::MAX_BUSY_POLL_US).
    ///
    /// Why: waking a sleeping thread costs 20-25 µs on a typical VM, and a request/reply round
    /// trip through the broker would pay it twice. A connection heard from within the window
    /// is answered without that wake-up; an idle connection costs nothing. The price is CPU:
    /// up to this long of polling after each burst a connection sends.
    pub busy_poll_us: u64,
}

impl Default for PerformanceConfig {
    fn default() -> Self {
        PerformanceConfig {
            worker_threads: 2,
            channel_capacity: 100_000,
            batch_size: 1000,
            flush_interval_ms: 1,
            busy_poll_us: 50,
        }
    }
}
