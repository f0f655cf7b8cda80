//! The envelope: what a message carries besides its payload, in one encoding for socket
//! frames (`PublishEnvelope`, `DeliverEnvelope`) and shared-memory ring frames.
//!
//! - An enveloped message is `flags u8`, then the blocks its flags announce, in bit order,
//!   then the payload (the rest). A plain message has no envelope at all: it travels as a
//!   `Publish`/`Deliver` frame or an unmarked ring frame, byte for byte as before.
//! - Blocks: [`STAMP`] (id: UUIDv7, 16 bytes; timestamp: u64 nanoseconds since the Unix epoch,
//!   taken once by the publisher's side), [`TOPIC`] (str8: the concrete topic, set by the broker
//!   on deliveries to pattern subscriptions), [`REPLY_TO`] (str8: where a request's replies go),
//!   [`REPLY`] (status u8, code u16, correlation: the request's id), [`HEADERS`] (count u16,
//!   then per header key str8 of 1-255 bytes and value str16), [`OFFSET`] (u64: the message's
//!   offset in its durable topic's log, set by the broker on deliveries read from a log).
//!   Integers are little-endian; strings UTF-8. Bits 6-7 are reserved and must be 0.
//! - [`EnvelopeView::parse`] checks everything before anything is trusted (a peer's bytes); a
//!   view that parsed answers every accessor without failing. [`Envelope`] is the owned form a
//!   publisher fills in and [`Envelope::encode`] writes.
//! - Byte layout: `docs/protocol.md`, section "Envelope".
//!
//! # Layout
//! - `view`: [`EnvelopeView`] and [`EnvelopeError`], reading.
//! - `headers`: [`Headers`] (owned, for publishing) and [`HeaderIter`] (borrowed, reading).
//! - `inbox`: reply inbox names ([`inbox_name`], [`inbox_owner`]).
//! - `stamp`: [`Stamp`] and [`Stamper`], ids that sort by time.
//! - `write`: [`Envelope`] and [`RequestEnvelope`], writing.

mod headers;
mod inbox;
mod stamp;
mod view;
mod write;

pub use headers::{HeaderError, HeaderIter, Headers};
pub use inbox::{inbox_name, inbox_owner, is_inbox, INBOX_PREFIX};
pub use stamp::{Stamp, Stamper};
pub(crate) use view::BlockOffsets;
pub use view::{EnvelopeError, EnvelopeView};
pub use write::{write_with_offset, write_with_topic, Envelope, RequestEnvelope};

/// Flag: a 16-byte id and an 8-byte timestamp follow.
pub const STAMP: u8 = 1 << 0;
/// Flag: the concrete topic follows (`str8`); only the broker sets it, on deliveries to
/// pattern subscriptions.
pub const TOPIC: u8 = 1 << 1;
/// Flag: the topic replies go to follows (`str8`): the message is a request.
pub const REPLY_TO: u8 = 1 << 2;
/// Flag: the message is a reply: status `u8`, code `u16`, correlation id (16 bytes) follow.
pub const REPLY: u8 = 1 << 3;
/// Flag: headers follow: count `u16`, then each key `str8` and value `str16`.
pub const HEADERS: u8 = 1 << 4;
/// Flag: the message's offset in its durable topic's log follows (`u64`); only the broker sets
/// it, on deliveries read from a log. The last block, so it ends the envelope.
pub const OFFSET: u8 = 1 << 5;
/// Every flag this version defines; any other bit makes an envelope malformed.
pub const KNOWN_FLAGS: u8 = STAMP | TOPIC | REPLY_TO | REPLY | HEADERS | OFFSET;

/// Bytes of the [`STAMP`] block.
pub const STAMP_LEN: usize = 16 + 8;
/// Bytes of the [`REPLY`] block.
pub const REPLY_LEN: usize = 1 + 2 + 16;
/// Bytes of the [`OFFSET`] block.
pub const OFFSET_LEN: usize = 8;

/// What a reply says about its request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReplyStatus {
    /// `0`: the responder answered; the payload is the answer.
    Ok,
    /// `1`: the responder failed; `code` is its error code and the payload its message (UTF-8).
    Error,
    /// `2`: the broker found no subscriber on the request's topic (sent by the broker at once).
    NoResponders,
}

impl ReplyStatus {
    /// The status byte.
    pub fn to_u8(self) -> u8 {
        match self {
            ReplyStatus::Ok => 0,
            ReplyStatus::Error => 1,
            ReplyStatus::NoResponders => 2,
        }
    }

    /// The status a byte names, if any.
    pub fn from_u8(value: u8) -> Option<ReplyStatus> {
        Some(match value {
            0 => ReplyStatus::Ok,
            1 => ReplyStatus::Error,
            2 => ReplyStatus::NoResponders,
            _ => return None,
        })
    }
}

/// The [`REPLY`] block: which request a reply answers, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Reply {
    /// How the request went.
    pub status: ReplyStatus,
    /// The responder's error code (0 unless `status` is `Error`).
    pub code: u16,
    /// The id of the request this answers.
    pub correlation: uuid::Uuid,
}

#[cfg(test)]
mod tests;
