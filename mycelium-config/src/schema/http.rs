//! Section `[http]`: the HTTP and WebSocket gateway (`mycelium-gateway`).
//!
//! - Off unless `listen` is set. `listen` is an IP address and port (`127.0.0.1:8080`,
//!   `[::1]:8080`); host names are not resolved, so what the gateway binds is exactly what the
//!   file says. Keep it on loopback unless the host's network is trusted: the gateway has no
//!   authentication of its own, and topics with access lists are refused over it.
//! - Every field takes effect on reload: the gateway starts, moves or stops with `listen`, and
//!   reads its limits per request.
//!
//! ```
//! use mycelium_config::HttpConfig;
//!
//! let http = HttpConfig::default();
//! assert_eq!(http.listen, None);
//! assert_eq!(http.max_body_bytes, 1 << 20);
//! ```

use serde::Deserialize;

/// Largest `max_body_bytes` (64 MiB).
pub const MAX_HTTP_BODY_BYTES: usize = 64 << 20;

/// Section `[http]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Address and port the gateway listens on; absent: no gateway.
    pub listen: Option<String>,
    /// Largest request body in bytes (a publish's payload, a batch's JSON); a larger one is
    /// refused with 413. A topic's own `max_message_size` applies too. In
    /// 1..=[`MAX_HTTP_BODY_BYTES`], default 1 MiB.
    pub max_body_bytes: usize,
    /// Most WebSocket connections at once; one more is refused with 503. Default 16384, > 0.
    pub max_websockets: usize,
    /// A server-side subscription (`POST /subscribe/{topic}`) that nobody consumes from for
    /// this long is removed, with what it holds. Default 60000, > 0.
    pub subscription_idle_timeout_ms: u64,
    /// Longest a consume request may wait for messages (its `wait_ms` is capped to this).
    /// Default 30000.
    pub max_wait_ms: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: None,
            max_body_bytes: 1 << 20,
            max_websockets: 16_384,
            subscription_idle_timeout_ms: 60_000,
            max_wait_ms: 30_000,
        }
    }
}
