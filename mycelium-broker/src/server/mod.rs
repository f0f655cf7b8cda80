//! The socket server: binds a Unix socket, accepts clients, routes their frames through the
//! routing core, serves shared-memory sessions, and reloads its config file while it runs.
//!
//! - Public: [`Server`] (built from a config, run until a shutdown future resolves),
//!   [`bind_socket`], [`ServeError`], [`ReloadHandle`] with its [`ReloadAnswer`], and
//!   [`BrokerHandle`] for front ends running in the broker's process. Everything
//!   else here is the crate's own.
//! - One concept per module. Dependencies go one way, each module using only those above it
//!   (unit tests excepted: the supervisor's run a whole [`Server`]):
//!   1. `error`: [`ServeError`].
//!   2. `supervisor`: the broker's long-lived tasks and threads, and what their failure does;
//!      `preflight`: every refusal of a valid config (access lists, the storage directory),
//!      for the broker and `mycelium check` alike.
//!   3. `heartbeat`, `outbox_sink`: a connection's liveness, and its outbox as the core's
//!      delivery.
//!   4. `reload_handle`: how a reload is asked for ([`ReloadHandle`], [`ReloadAnswer`]).
//!   5. `shm`: the shared-memory ring directory, relay rings, watchdog, and the broker's
//!      readers of publisher rings.
//!   6. `metrics`: [`BrokerMetrics`] and its parts, plain figures; `state`: what every
//!      connection of one broker run shares (topics, config, limits, rings, the reload
//!      handle, [`BrokerStatistics`], the metrics), and the shutdown deadline; `handle`:
//!      [`BrokerHandle`], the state as a front end in the broker's process uses it.
//!   7. `reload`: the reload task, which applies a config file to the state; `reclaim`: the
//!      sweep that removes idle auto-created topics; `retention`: durable topics' logs
//!      trimmed to their retention limits.
//!   8. `shm_session`: one shared-memory control session.
//!   9. `connection`: one client socket, from its first frame (admission) to its end.
//!   10. `listener`: [`bind_socket`] and [`Server`]: the accept loop and graceful shutdown.

mod connection;
mod dead_letters;
mod error;
mod handle;
mod heartbeat;
mod listener;
mod metrics;
mod outbox_sink;
mod preflight;
mod reclaim;
mod reload;
mod reload_handle;
mod retention;
mod shm;
mod shm_session;
mod state;
mod supervisor;

pub use error::ServeError;
pub use handle::{BrokerHandle, RemoveTopicError};
pub use listener::{bind_socket, Server};
pub use metrics::{
    BrokerMetrics, ConnectionCounts, LastReload, ReloadMetrics, SubscriberCounts, SubscriberLag,
    TopicMetrics,
};
pub use preflight::preflight;
pub use reload_handle::{ReloadAnswer, ReloadHandle};
pub use state::BrokerStatistics;
