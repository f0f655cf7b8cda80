//! What every request handler shares: the broker's handle, the in-process broker over its
//! topics, the table of server-side subscriptions, and the WebSocket connections' count.

use std::sync::Arc;

use mycelium_broker::{BrokerHandle, LocalBroker};
use mycelium_config::HttpConfig;

use crate::error::ApiError;
use crate::subscriptions::Subscriptions;
use crate::websocket::WebSockets;

/// Cheap to clone (axum clones it per request).
#[derive(Debug, Clone)]
pub(crate) struct AppState {
    pub(crate) handle: BrokerHandle,
    /// One origin for all of the gateway's publishes.
    pub(crate) local: LocalBroker,
    pub(crate) subscriptions: Arc<Subscriptions>,
    /// The WebSocket connections' count and keepalive.
    pub(crate) websockets: Arc<WebSockets>,
}

impl AppState {
    pub(crate) fn new(handle: BrokerHandle) -> AppState {
        AppState {
            local: handle.local(),
            handle,
            subscriptions: Arc::new(Subscriptions::default()),
            websockets: Arc::new(WebSockets::default()),
        }
    }

    /// The `[http]` section in force now: every field applies to the next request.
    pub(crate) fn http(&self) -> HttpConfig {
        self.handle.config().http.clone()
    }

    /// Refuses new work once the broker's shutdown has begun.
    pub(crate) fn refuse_if_stopping(&self) -> Result<(), ApiError> {
        if self.handle.is_stopping() {
            return Err(ApiError::shutting_down());
        }
        Ok(())
    }
}
