//! [`DurableOptions`]: how a durable subscription reads its topic's log.

use mycelium_transport::StartPosition;

/// How [`Client::subscribe_durable`](crate::Client::subscribe_durable) reads a durable
/// topic's log.
///
/// ```
/// use mycelium_client::{DurableOptions, StartPosition};
///
/// // Every message the log holds, shared with the other members of group "billing".
/// let options = DurableOptions::group("billing").start(StartPosition::Earliest).prefetch(500);
/// assert_eq!(options.group.as_deref(), Some("billing"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DurableOptions {
    /// Where to start reading. For a group, only when the group does not exist yet: an
    /// existing group resumes from its committed position.
    pub start: StartPosition,
    /// The consumer group to join (1 to 255 bytes of `[A-Za-z0-9._-]`), or `None` for a
    /// replay subscription of this client alone.
    pub group: Option<String>,
    /// Most messages in flight: unacknowledged (a group) or not yet taken (a replay
    /// subscription). 0 asks for the broker's default; the subscription's
    /// [`prefetch`](crate::DurableSubscription::prefetch) says what was granted.
    pub prefetch: u32,
}

impl Default for DurableOptions {
    /// A replay subscription of the messages stored from now on, with the broker's prefetch.
    fn default() -> DurableOptions {
        DurableOptions {
            start: StartPosition::New,
            group: None,
            prefetch: 0,
        }
    }
}

impl DurableOptions {
    /// A replay subscription (no group) starting at `start`.
    pub fn replay(start: StartPosition) -> DurableOptions {
        DurableOptions {
            start,
            ..DurableOptions::default()
        }
    }

    /// A member of consumer group `name`; a new group starts with the messages stored from
    /// now on unless [`start`](Self::start) says otherwise.
    pub fn group(name: impl Into<String>) -> DurableOptions {
        DurableOptions {
            group: Some(name.into()),
            ..DurableOptions::default()
        }
    }

    /// Starts at `start`.
    pub fn start(mut self, start: StartPosition) -> DurableOptions {
        self.start = start;
        self
    }

    /// Asks for `prefetch` messages in flight (0: the broker's default).
    pub fn prefetch(mut self, prefetch: u32) -> DurableOptions {
        self.prefetch = prefetch;
        self
    }
}
