//! Mycelium's config layer: the `broker.toml` schema, environment overrides, and validation that
//! reports every problem with its file, line and field.
//!
//! - [`BrokerConfig::default()`] is a valid configuration; a file only changes what it names, and
//!   every section is optional.
//! - Loading goes file → `MYCELIUM_<SECTION>__<FIELD>` environment overrides → validation; see
//!   [`BrokerConfig::from_file`].
//! - Errors are typed by stage ([`ConfigError`]); each problem is a [`Diagnostic`] rendered as
//!   `file:line:col: field: message`.
//! - Hot reload: [`ConfigWatcher`] reports when the file may have changed, and [`ConfigDiff`] says
//!   what a newly loaded config changes and how each change takes effect.
//! - This crate knows nothing of the broker or the transport.
//!
//! ```
//! use std::path::Path;
//! use mycelium_config::{BrokerConfig, Routing};
//!
//! let text = r#"
//! [[topics]]
//! name = "orders"
//! routing = "queue"
//! "#;
//! let env = [("MYCELIUM_PERFORMANCE__WORKER_THREADS".to_owned(), "4".to_owned())];
//! let config = BrokerConfig::from_toml_str_with_env(text, Path::new("broker.toml"), env)?;
//! assert_eq!(config.topic("orders").map(|t| t.routing), Some(Routing::Queue));
//! assert_eq!(config.performance.worker_threads, 4);
//! # Ok::<(), mycelium_config::ConfigError>(())
//! ```
//!
//! # Layout
//!
//! - `schema/`: the types, one file per section (`server`, `topic`, `performance`, `storage`,
//!   `broker`...) and per value type (`routing`, `backpressure`, `duration`, `fsync`), with their
//!   defaults; `durability` is a durable topic's settings resolved.
//! - `limits`: the hard bounds validation enforces.
//! - `load`: `from_file` / `from_toml_str*`, the pipeline from text to a validated config.
//! - `env`: environment overrides.
//! - `validate`: the rules, all checked at once.
//! - `locate`: maps field paths to lines and columns, and back.
//! - `diagnostic`: one located problem.
//! - `diff`: [`ConfigDiff`], what a reload changes, and the classification of every setting.
//! - `watch`: [`ConfigWatcher`], the debounced file watch behind hot reload.
//! - `error`: [`ConfigError`], [`WatchError`].

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod diagnostic;
mod diff;
mod env;
mod error;
mod limits;
mod load;
mod locate;
mod schema;
mod validate;
mod watch;

pub use diagnostic::Diagnostic;
pub use diff::{ConfigDiff, SettingChange, Takes};
pub use error::{ConfigError, WatchError};
pub use limits::{
    MAX_BUSY_POLL_US, MAX_CONFIG_FILE_BYTES, MAX_HEADERS_LIMIT, MAX_HEADER_BYTES_LIMIT,
    MAX_MESSAGE_SIZE_LIMIT, MAX_SOCKET_MODE, MAX_TOPIC_NAME_LEN, MAX_WORKER_THREADS,
    SOCKET_PATH_MAX,
};
pub use load::{read_config_file, socket_path_leniently};
pub use schema::{
    display_access, Backpressure, BrokerConfig, ConfigDuration, Durability, Fsync, HttpConfig,
    MetricsConfig, ParseBackpressureError, ParseDurationError, ParseFsyncError,
    ParsePrincipalError, ParseRoutingError, PerformanceConfig, Principal, PrincipalId, Routing,
    ServerConfig, ShmConfig, StorageConfig, TopicConfig, TopicDefaults, MAX_FSYNC_INTERVAL,
    MAX_HTTP_BODY_BYTES, MAX_RING_BYTES, MAX_SEGMENT_BYTES, MAX_SHM_PUBLISHERS_PER_TOPIC,
    MAX_SHM_SUBSCRIBERS, MIN_FSYNC_INTERVAL, MIN_RING_BYTES, MIN_SEGMENT_BYTES,
};
pub use watch::{ConfigWatcher, RELOAD_DEBOUNCE, RELOAD_MAX_DELAY};
