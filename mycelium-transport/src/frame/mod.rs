//! The frames of the Mycelium wire protocol, as Rust values.
//!
//! - Every frame on the wire is `len: u32 LE | version: u8 | kind: u8 | body`, where `len` counts
//!   the bytes after itself (so it is at least 2). All integers are little-endian.
//! - [`Frame`] is the owned form, used by the client, by tests and for control frames in the broker.
//!   The broker's hot path reads publishes through [`crate::codec::FrameView`] instead, without
//!   allocating.
//! - Strings are UTF-8 behind a `u8` (names) or `u16` (error message, the texts of a
//!   [`ConfigStatus`]) byte count. Topic names are 1 to [`MAX_NAME_LEN`] bytes; the client and
//!   server names may be empty.
//! - The byte-by-byte layout of every body is in `docs/protocol.md`; the comment on each variant
//!   repeats it in short.
//!
//! # Layout
//! - [`kind`]: the kind byte of every frame.
//! - `owned`: [`Frame`], every frame as an owned value.
//! - `error_code`: [`ErrorCode`], why the broker refused something.
//! - `fields`: the small enums and records frames carry ([`RoutingKind`], [`ShmRole`],
//!   [`ShmRing`], [`TopicStats`]).
//! - `config_status`: [`ConfigStatus`] and [`ReloadOutcome`], the broker's config state.
//! - `durable`: what the frames of durable topics carry ([`StartPosition`], [`NackAction`],
//!   [`LogStats`], [`GroupStats`]).

mod config_status;
mod durable;
mod error_code;
mod fields;
pub mod kind;
mod owned;

pub use config_status::{ConfigStatus, ReloadOutcome};
pub use durable::{
    GroupStats, LogStats, NackAction, StartPosition, DURABLE_SUBSCRIPTION_BIT,
    PUBLISH_DURABLE_ENVELOPE,
};
pub use error_code::ErrorCode;
pub use fields::{
    MessageRules, RoutingKind, ShmRing, ShmRole, TopicStats, ACK_PATTERN, ACK_STAMP, NO_SLOT,
    SUBSCRIBE_NO_ECHO,
};
pub use owned::Frame;

/// The protocol version this crate speaks; carried in byte 4 of every frame. Version 2 added
/// envelopes (`PublishEnvelope`, `DeliverEnvelope`), pattern and no-echo subscriptions and the
/// `TopicAck` fields they need; version 3 added durable topics (`SubscribeDurable`,
/// `AckMessages`, `Nack`, `PublishDurable`, `Published`, `GroupsRequest`, `Groups`, the
/// envelope's OFFSET block and the log counters of `Stats`). A peer of another version is
/// refused at its first frame.
pub const PROTOCOL_VERSION: u8 = 3;

/// Bit 31 of a subscription id marks a pattern subscription (ids of topics never have it).
pub const PATTERN_ID_BIT: u32 = 1 << 31;

/// Bytes before the body: `len` (4), `version` (1), `kind` (1).
pub const HEADER_LEN: usize = 6;

/// Bytes of a `Publish` or `Deliver` frame that are not payload: header plus `topic_id`.
pub const MESSAGE_OVERHEAD: usize = HEADER_LEN + 4;

pub use crate::limits::{HANDSHAKE_MAX_FRAME_LEN, MAX_NAME_LEN, MAX_RINGS_PER_GRANT};

/// `topic_id` in an `Error` frame that concerns no topic.
pub const NO_TOPIC: u32 = u32::MAX;

/// `request_id` in an `Error` frame that answers no request (a refused publish, a fatal error,
/// news of a subscription). Clients never use it for a request of their own.
pub const NO_REQUEST: u32 = 0;

#[cfg(test)]
mod wire_values;
