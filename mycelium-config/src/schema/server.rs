//! Section `[server]`: where the broker listens and how it treats new connections.
//!
//! - Every field has a default, so the section may be left out.
//! - `socket_mode` accepts a TOML integer (`0o660` or `432`) or an octal string (`"0660"`, `"660"`,
//!   `"0o660"`); a string is always read as octal because that is how modes are written by hand.
//!
//! ```
//! use mycelium_config::ServerConfig;
//!
//! let server = ServerConfig::default();
//! assert_eq!(server.socket_mode, 0o660);
//! assert_eq!(server.max_connections, 1000);
//! ```

use std::fmt;
use std::path::PathBuf;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer};

/// Section `[server]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Path of the Unix socket the broker listens on. Default `/tmp/mycelium.sock`; must be shorter
    /// than [`SOCKET_PATH_MAX`](crate::SOCKET_PATH_MAX) bytes.
    pub socket_path: PathBuf,
    /// Most client connections that completed their handshake open at once; a further client
    /// is refused (`TooManyConnections`) in answer to its `Hello`. Default 1000, > 0.
    pub max_connections: usize,
    /// Milliseconds a new connection has to complete its handshake (send its `Hello`) before
    /// it is closed. Default 5000, > 0: a client sends its `Hello` as soon as it connects, so
    /// this only bounds how long a socket that says nothing holds a file descriptor.
    pub connection_timeout_ms: u64,
    /// Most accepted sockets still in their handshake at once, a budget apart from
    /// `max_connections`: when one more arrives, the oldest of them is given up (closed with
    /// `HandshakeTimeout`), so sockets that connect and say nothing can never lock out a
    /// client that completes its handshake promptly. Default 128, > 0.
    pub max_pending_handshakes: usize,
    /// Permission bits of the socket file, which decide who may connect. Default `0o660`, at most
    /// [`MAX_SOCKET_MODE`](crate::MAX_SOCKET_MODE).
    #[serde(deserialize_with = "deserialize_mode")]
    pub socket_mode: u32,
    /// Most subscriptions one connection may hold at once; a further `Subscribe` is refused
    /// (`LimitExceeded`). Default 1024, > 0.
    pub max_subscriptions_per_connection: usize,
    /// Most subscriptions all connections together may hold at once. Default 65536, > 0.
    pub max_subscriptions: usize,
    /// Milliseconds of silence from a message connection after which the broker pings it;
    /// 0 turns heartbeats off. Default 10000.
    pub heartbeat_interval_ms: u64,
    /// Most bytes queued toward all clients together (not yet written to their sockets); past
    /// it an outbox that holds anything takes no more messages, and the topics' backpressure
    /// applies. Default 1 GiB, > 0.
    pub max_inflight_bytes: usize,
    /// Milliseconds a graceful shutdown (SIGTERM, SIGINT) gives connected subscribers to take
    /// every message already accepted before the broker exits anyway. Default 10000.
    pub shutdown_deadline_ms: u64,
    /// Heartbeat intervals in a row with nothing read from a connection and nothing written
    /// to it before the broker drops it as dead. Default 3, > 0.
    pub heartbeat_misses: u32,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            socket_path: PathBuf::from("/tmp/mycelium.sock"),
            max_connections: 1000,
            connection_timeout_ms: 5_000,
            max_pending_handshakes: 128,
            socket_mode: 0o660,
            max_subscriptions_per_connection: 1024,
            max_subscriptions: 65_536,
            max_inflight_bytes: 1 << 30,
            shutdown_deadline_ms: 10_000,
            heartbeat_interval_ms: 10_000,
            heartbeat_misses: 3,
        }
    }
}

/// Reads a file mode written as octal digits, with or without a `0o` prefix.
///
/// Range is not checked here beyond fitting in a `u32`: validation reports it with the rest.
pub(crate) fn parse_octal_mode(text: &str) -> Result<u32, String> {
    let digits = text.strip_prefix("0o").unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return Err(format!(
            "invalid socket mode `{text}`, expected octal digits such as \"0660\""
        ));
    }
    u32::from_str_radix(digits, 8).map_err(|_| format!("socket mode `{text}` is out of range"))
}

fn deserialize_mode<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u32, D::Error> {
    deserializer.deserialize_any(ModeVisitor)
}

struct ModeVisitor;

impl Visitor<'_> for ModeVisitor {
    type Value = u32;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a file mode: an integer such as 0o660 or an octal string such as \"0660\"")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<u32, E> {
        u32::try_from(v).map_err(|_| E::custom(format!("socket mode {v} is out of range")))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<u32, E> {
        u32::try_from(v).map_err(|_| E::custom(format!("socket mode {v} is out of range")))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<u32, E> {
        parse_octal_mode(v).map_err(E::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn octal_strings_parse_with_or_without_prefix() {
        assert_eq!(parse_octal_mode("0660"), Ok(0o660));
        assert_eq!(parse_octal_mode("660"), Ok(0o660));
        assert_eq!(parse_octal_mode("0o600"), Ok(0o600));
    }

    #[test]
    fn non_octal_strings_are_rejected() {
        for bad in ["", "0o", "0689", "rw-rw----", "-660", " 660"] {
            assert!(parse_octal_mode(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn octal_strings_that_overflow_are_rejected() {
        assert!(parse_octal_mode("77777777777777").is_err());
    }

    #[test]
    fn socket_mode_accepts_a_toml_integer_or_an_octal_string() {
        let from_int: ServerConfig = toml::from_str("socket_mode = 0o600").unwrap();
        let from_decimal: ServerConfig = toml::from_str("socket_mode = 384").unwrap();
        let from_str: ServerConfig = toml::from_str("socket_mode = \"0600\"").unwrap();
        assert_eq!(from_int.socket_mode, 0o600);
        assert_eq!(from_decimal.socket_mode, 0o600);
        assert_eq!(from_str.socket_mode, 0o600);
    }

    #[test]
    fn socket_mode_rejects_negative_integers_and_other_types() {
        assert!(toml::from_str::<ServerConfig>("socket_mode = -1").is_err());
        assert!(toml::from_str::<ServerConfig>("socket_mode = true").is_err());
        assert!(toml::from_str::<ServerConfig>("socket_mode = 4294967296").is_err());
    }
}
