//! [`ShmOptions`]: how a shared-memory session waits and for how long.

use std::time::Duration;

/// The shared-memory session's options: the `shm` field of
/// [`ClientOptions`](crate::ClientOptions).
#[derive(Debug, Clone)]
pub struct ShmOptions {
    /// Shown in the broker's logs.
    pub name: String,
    /// Identifies this client in the session's handshake (its reply inbox is
    /// `_INBOX.<client_id>`); random by default, and the socket connection's when the session
    /// belongs to a [`Client`](crate::Client).
    pub client_id: uuid::Uuid,
    /// How long connecting, the handshake and each request may take.
    pub request_timeout: Duration,
    /// How long a waiting subscription (or a publisher facing a full ring) spins before it
    /// sleeps. Zero: sleep at once.
    pub spin: Duration,
    /// Never sleep: spin until a message (or room) comes. For threads pinned to a core of
    /// their own; on a shared core it steals time from the very publisher it waits for.
    pub busy_poll: bool,
}

impl Default for ShmOptions {
    fn default() -> ShmOptions {
        ShmOptions {
            name: String::new(),
            client_id: uuid::Uuid::new_v4(),
            request_timeout: Duration::from_secs(10),
            spin: Duration::from_micros(20),
            busy_poll: false,
        }
    }
}

/// How long "spin, never sleep" spins before it re-checks: long enough to never sleep in
/// practice, short enough that deadline arithmetic cannot overflow.
pub(crate) const BUSY_POLL_SPIN: std::time::Duration = std::time::Duration::from_secs(24 * 3600);
