//! Mycelium's front end for processes that cannot link the Rust client, and for operators:
//! an HTTP API (publish, server-side subscriptions to consume from, topics, health), a
//! WebSocket endpoint (`/ws`: subscribe, publish, unsubscribe over one connection), a live
//! dashboard page (`/`), the broker's metrics in the Prometheus text format, and its
//! OpenAPI document.
//!
//! - It runs inside the broker's process, beside the socket server, and reaches the broker
//!   only through [`mycelium_broker::BrokerHandle`]: the same topics, backpressure and
//!   statistics the socket and shared-memory clients see. Nothing here is on the socket or
//!   shared-memory hot paths.
//! - Off unless `[http] listen` is set in `broker.toml`; a reload may start, move or stop it
//!   ([`Gateway`]).
//! - The API is documented in `docs/http.md` and served as OpenAPI 3.1 at `/openapi.json`.
//!
//! ```no_run
//! # async fn example(server: mycelium_broker::Server) -> Result<(), Box<dyn std::error::Error>> {
//! let gateway = mycelium_gateway::Gateway::bind(server.handle()).await?;
//! tokio::spawn(gateway.run());
//! # Ok(()) }
//! ```

mod body;
mod consume;
mod dashboard;
mod error;
mod health;
mod message;
mod openapi;
mod prometheus;
mod publish;
mod router;
mod serve;
mod state;
mod subscriptions;
mod topics;
mod websocket;

pub use serve::{BindError, Gateway, SHUTDOWN_GRACE};

#[cfg(test)]
mod tests;
