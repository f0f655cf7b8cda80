//! What a topic asks of every message (stamps, header limits), as the broker tells its
//! shared-memory attachments in `ShmGrant`, and how the broker's ring reader holds
//! shared-memory publishers' messages to the header limits.
//!
//! - A shared-memory publisher writes into its ring directly: the broker cannot refuse a
//!   message before readers see it, so the client library enforces the limits itself (it
//!   learns them from the grant).
//! - The broker's reader of publisher rings is the one place the broker sees those messages:
//!   it refuses to relay one beyond the topic's limits to socket and in-process subscribers
//!   ([`within_limits`]), logging and counting it, as it drops a malformed envelope.

use mycelium_config::TopicConfig;
use mycelium_transport::envelope::{EnvelopeView, REPLY_LEN, STAMP_LEN};
use mycelium_transport::MessageRules;

/// The rules of a topic configured as `config`.
pub(crate) fn message_rules(config: &TopicConfig) -> MessageRules {
    MessageRules {
        stamp: config.stamp,
        max_headers: config.max_headers,
        max_header_bytes: config.max_header_bytes,
    }
}

/// Whether an envelope keeps within `config`'s header limits.
pub(super) fn within_limits(view: &EnvelopeView<'_>, config: &TopicConfig) -> bool {
    view.header_count() <= usize::from(config.max_headers)
        && view.header_bytes <= config.max_header_bytes as usize
}

/// The largest message (envelope and payload) a payload segment of a topic configured as
/// `config` may hold: `max_message_size` bounds the payload, and the envelope may add a stamp,
/// two names, a reply block and the headers the topic allows.
pub(super) fn max_segment_len(config: &TopicConfig) -> usize {
    let envelope = 1
        + STAMP_LEN
        + 2 * (1 + 255)
        + REPLY_LEN
        + 2
        + 3 * usize::from(config.max_headers)
        + config.max_header_bytes as usize;
    config.max_message_size.saturating_add(envelope)
}
