//! [`SubscribeOptions`]: how a subscription asks for its messages.
//!
//! - `no_echo`: leave out what this client publishes itself on the topic (over the socket:
//!   what the same connection published; over shared memory: what the same session
//!   published).
//! - `prefetch`: on a queue topic over the socket, how many messages the broker may send
//!   ahead of what the application has taken (`None`: the topic's default). Shared-memory
//!   consumers read the rings directly and have no credit to ask for: it is ignored there.
//!
//! ```
//! use mycelium_client::SubscribeOptions;
//!
//! let options = SubscribeOptions::new().no_echo(true).prefetch(64);
//! assert!(options.no_echo);
//! assert_eq!(options.prefetch, Some(64));
//! assert_eq!(SubscribeOptions::default(), SubscribeOptions::new());
//! ```

/// Options of [`Client::subscribe_with`](crate::Client::subscribe_with) and its blocking and
/// reconnecting twins; see the module docs. Built with its methods from
/// [`SubscribeOptions::new`] (or `default()`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct SubscribeOptions {
    /// Leave out what this client publishes itself.
    pub no_echo: bool,
    /// Queue topics over the socket: credit asked of the broker (`None`: the topic's
    /// default).
    pub prefetch: Option<u32>,
}

impl SubscribeOptions {
    /// Every message of the topic, with the topic's prefetch.
    pub fn new() -> SubscribeOptions {
        SubscribeOptions::default()
    }

    /// Leaves out (`true`) or keeps (`false`, the default) what this client publishes itself.
    pub fn no_echo(mut self, no_echo: bool) -> SubscribeOptions {
        self.no_echo = no_echo;
        self
    }

    /// Asks for `prefetch` credit on a queue topic over the socket (0: the topic's default).
    pub fn prefetch(mut self, prefetch: u32) -> SubscribeOptions {
        self.prefetch = (prefetch > 0).then_some(prefetch);
        self
    }

    /// The `prefetch` field of the `Subscribe` frame: 0 asks for the topic's default.
    pub(crate) fn wire_prefetch(&self) -> u32 {
        self.prefetch.unwrap_or(0)
    }
}
