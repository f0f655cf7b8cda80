//! The tokio socket server: accepts clients on a Unix socket and routes their frames.

mod connection;
pub mod error;
mod heartbeat;
pub mod listener;
mod outbox_sink;
pub mod reload;
mod shm_reader;
pub mod shm_rings;
mod shm_session;
pub mod state;
pub mod supervisor;

pub use error::ServeError;
pub use listener::{bind_socket, Server};
pub use reload::{ReloadAnswer, ReloadHandle};
pub use state::BrokerState;
pub use supervisor::{Supervisor, TaskFailure};
