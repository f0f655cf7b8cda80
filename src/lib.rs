//! Mycelium: a local IPC message broker over Unix domain sockets.
//!
//! This facade re-exports the three layer crates so that applications depend on one crate,
//! and it owns the workspace's integration tests (`tests/`) and benches (`benches/`).
//!
//! # Layout
//! - [`transport`]: the wire protocol (frames and codec).
//! - [`config`]: `broker.toml` schema, validation and environment overrides.
//! - [`broker`]: routing core, socket server, async client and the `mycelium` CLI.
#![forbid(unsafe_code)]

pub use mycelium_broker as broker;
pub use mycelium_config as config;
pub use mycelium_transport as transport;

pub use mycelium_broker::{
    Broker, Client, ClientError, LocalBroker, Message, Publisher, Server, Subscription,
};
