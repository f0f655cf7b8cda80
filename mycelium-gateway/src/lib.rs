//! Mycelium's front end for processes that cannot link the Rust client, and for operators:
//! an HTTP API (publish, server-side subscriptions to consume from, topics, health), a
//! WebSocket endpoint, a live dashboard page, and the broker's metrics in the Prometheus text
//! format.
//!
//! - It runs inside the broker's process, beside the socket server, and reaches the broker
//!   only through [`mycelium_broker::BrokerHandle`]: the same topics, backpressure and
//!   statistics the socket and shared-memory clients see. Nothing here is on the socket or
//!   shared-memory hot paths.
//! - Off unless `[http] listen` is set in `broker.toml`; a reload may start, move or stop it.
