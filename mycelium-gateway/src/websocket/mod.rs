//! `GET /ws`: the WebSocket endpoint. A client subscribes to topics and patterns, publishes
//! and unsubscribes with JSON frames over one connection; the frames are in [`frame`], a
//! connection's life in [`connection`].
//!
//! - At most `[http] max_websockets` connections at once: one more is refused with 503
//!   `too_many_websockets` before the handshake. A plain GET (no handshake) is 426.
//! - Each subscription is an in-process subscription of the broker, held to the topic's
//!   backpressure like any subscriber; a client that does not read holds back only itself
//!   (and, on a `block` topic, that topic's publishers, as any full subscriber does).
//! - The gateway pings every [`Keepalive::interval`]; a client from which nothing (a pong,
//!   any frame) arrives for [`Keepalive::timeout`] is dropped as dead.
//! - Once the broker's shutdown begins, every connection is closed with code 1001.

pub(crate) mod connection;
pub(crate) mod frame;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;

use crate::error::ApiError;
use crate::state::AppState;

/// Read and write buffer of each WebSocket connection. The library's default (128 KiB each)
/// made a connection cost about 145 KiB of broker memory, so 10 000 subscribers would take
/// well over a gigabyte; messages larger than this still pass, in more reads and writes.
const WS_BUFFER_BYTES: usize = 8 * 1024;

/// Ping period and dead-peer timeout.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Keepalive {
    pub(crate) interval: Duration,
    pub(crate) timeout: Duration,
}

impl Default for Keepalive {
    fn default() -> Self {
        Keepalive {
            interval: Duration::from_secs(20),
            timeout: Duration::from_secs(60),
        }
    }
}

/// What the WebSocket connections share: how many are open, and the keepalive.
#[derive(Debug, Default)]
pub(crate) struct WebSockets {
    open: AtomicUsize,
    pub(crate) keepalive: Keepalive,
}

impl WebSockets {
    #[cfg(test)]
    pub(crate) fn with_keepalive(keepalive: Keepalive) -> WebSockets {
        WebSockets {
            open: AtomicUsize::new(0),
            keepalive,
        }
    }

    /// Connections open now.
    pub(crate) fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// A place for one more connection, if fewer than `max` are open.
    fn claim(self: &Arc<Self>, max: usize) -> Option<Slot> {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                (open < max).then_some(open + 1)
            })
            .ok()?;
        Some(Slot(self.clone()))
    }
}

/// One connection's place, given back when it drops.
#[derive(Debug)]
pub(crate) struct Slot(Arc<WebSockets>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// `GET /ws`.
pub(crate) async fn endpoint(
    State(state): State<AppState>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    state.refuse_if_stopping()?;
    let upgrade = upgrade.map_err(|rejection| {
        ApiError::new(
            StatusCode::UPGRADE_REQUIRED,
            "websocket_required",
            format!(
                "/ws speaks WebSocket only: {} (see docs/http.md#websocket)",
                rejection.body_text()
            ),
        )
    })?;
    let http = state.http();
    let slot = state.websockets.claim(http.max_websockets).ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_websockets",
            format!(
                "the gateway has {} WebSocket connections open already ([http] max_websockets)",
                http.max_websockets
            ),
        )
    })?;
    let limit = frame::size_limit(http.max_body_bytes);
    Ok(upgrade
        .read_buffer_size(WS_BUFFER_BYTES)
        .write_buffer_size(WS_BUFFER_BYTES)
        .max_message_size(limit)
        .max_frame_size(limit)
        .on_upgrade(move |socket| connection::run(state, socket, slot)))
}
