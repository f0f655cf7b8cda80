//! Section `[metrics]`: what the broker measures about itself beyond its counters.
//!
//! ```
//! use mycelium_config::MetricsConfig;
//!
//! assert!(MetricsConfig::default().enabled);
//! ```

use serde::Deserialize;

/// Section `[metrics]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Whether the broker records its latency histograms and per-reason figures (the counters
    /// that `mycelium stats` shows are always kept). Default `true`; takes effect on reload.
    pub enabled: bool,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig { enabled: true }
    }
}
