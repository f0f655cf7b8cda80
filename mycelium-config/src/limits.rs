//! Hard limits the validator enforces on a configuration.
//!
//! - Each limit is a bound no configuration may cross, whatever the file or the environment says.
//! - A limit protects a resource the broker cannot recover from exhausting (memory per frame, kernel
//!   structures), or a bound the operating system itself imposes.
//!
//! ```
//! use mycelium_config::{BrokerConfig, MAX_MESSAGE_SIZE_LIMIT};
//!
//! assert!(BrokerConfig::default().max_message_size() <= MAX_MESSAGE_SIZE_LIMIT);
//! ```

/// Largest `max_message_size` a topic may declare: 16 MiB.
///
/// The broker allocates a frame buffer of up to this size per connection before it can route a
/// message, so the bound caps the memory one misbehaving publisher can pin.
pub const MAX_MESSAGE_SIZE_LIMIT: usize = 16 * 1024 * 1024;

/// Largest `max_headers` a topic may declare: 1024.
///
/// The broker walks every header of a message it checks, so the bound caps that work per
/// publish; a message needing more headers than this is better served by a structured payload.
pub const MAX_HEADERS_LIMIT: u16 = 1024;

/// Largest `max_header_bytes` a topic may declare: 65535.
///
/// Headers are metadata beside the payload, not a second payload: the bound keeps the envelope
/// small next to any message.
pub const MAX_HEADER_BYTES_LIMIT: u32 = 65_535;

/// Largest `performance.worker_threads`: 1024.
///
/// More runtime threads than this only adds scheduling overhead on any machine the broker targets;
/// a larger value is far more likely a typo than a plan.
pub const MAX_WORKER_THREADS: usize = 1024;

/// Upper bound of `performance.busy_poll_us`: a connection polls its socket at most this long
/// (1 ms) before it sleeps, which also bounds how late it notices a shutdown or a heartbeat tick.
pub const MAX_BUSY_POLL_US: u64 = 1000;

/// Longest topic name in bytes: 255.
///
/// Names travel in every subscribe and publish frame; the bound keeps them to one length byte.
pub const MAX_TOPIC_NAME_LEN: usize = 255;

/// Size of `sun_path` in `sockaddr_un` on Linux: 108 bytes, including the trailing NUL.
///
/// A socket path must therefore be strictly shorter than this, or `bind` fails at start-up.
pub const SOCKET_PATH_MAX: usize = 108;

/// Largest `server.socket_mode`: `0o777`, the permission bits.
///
/// Higher bits (setuid, setgid, sticky) mean nothing on a socket file, so setting them is a mistake.
pub const MAX_SOCKET_MODE: u32 = 0o777;

/// Largest config file loaded: 16 MiB.
///
/// A file is read whole into memory (and parsed into a document several times its size), so a
/// file of absurd size, or one that something keeps appending to, must be refused before it is
/// read: a real config is a few KiB.
pub const MAX_CONFIG_FILE_BYTES: u64 = 16 * 1024 * 1024;
