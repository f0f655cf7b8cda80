//! The values the frames of durable topics carry: where a durable subscription starts, what a
//! nack asks for, and what a log and a consumer group report.
//!
//! - [`StartPosition`] and [`NackAction`] are one byte each on the wire (plus a `u64` and a
//!   `u32` beside them); any other byte makes the frame malformed.
//! - [`LogStats`] and [`GroupStats`] are plain records: the codec checks their lengths, the
//!   broker fills them in, and nothing here interprets them.

use std::time::Duration;

/// Bit 30 of a subscription id marks a durable subscription (a replay subscription or a member
/// of a consumer group); topic ids never have it, and pattern ids have bit 31 instead.
pub const DURABLE_SUBSCRIPTION_BIT: u32 = 1 << 30;

/// `PublishDurable` flag: the message begins with an envelope.
pub const PUBLISH_DURABLE_ENVELOPE: u8 = 1 << 0;

/// Where a durable subscription starts reading its topic's log, as carried in
/// `SubscribeDurable` (`start u8 | start_value u64`). For a consumer group it applies only when
/// the group does not exist yet: an existing group resumes from its committed position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StartPosition {
    /// `0`: only messages published from now on (`start_value` 0).
    New,
    /// `1`: the oldest message the log still holds (`start_value` 0).
    Earliest,
    /// `2`: the message at this offset.
    Offset(u64),
    /// `3`: the first message published at or after this time, in nanoseconds since the Unix
    /// epoch.
    Timestamp(u64),
}

impl StartPosition {
    /// The `start` byte and the `start_value` beside it.
    pub fn to_wire(self) -> (u8, u64) {
        match self {
            StartPosition::New => (0, 0),
            StartPosition::Earliest => (1, 0),
            StartPosition::Offset(offset) => (2, offset),
            StartPosition::Timestamp(ns) => (3, ns),
        }
    }

    /// The position a `start` byte and its `start_value` name, or why they are malformed: a
    /// byte the protocol does not define, or a value beside a position that takes none (so
    /// that every accepted pair is written back as it came).
    pub fn from_wire(start: u8, value: u64) -> Result<StartPosition, &'static str> {
        match (start, value) {
            (0, 0) => Ok(StartPosition::New),
            (1, 0) => Ok(StartPosition::Earliest),
            (2, offset) => Ok(StartPosition::Offset(offset)),
            (3, ns) => Ok(StartPosition::Timestamp(ns)),
            (0 | 1, _) => Err("start_value set on a start position that takes none"),
            _ => Err("unknown start position"),
        }
    }
}

/// What the broker does with a message its consumer gives back, as carried in `Nack`
/// (`action u8 | delay_ms u32`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NackAction {
    /// `0`: deliver it again now, to any member (`delay_ms` 0).
    Requeue,
    /// `1`: deliver it again once this long has passed (whole milliseconds, at most
    /// `u32::MAX`; a longer delay is sent as `u32::MAX` ms).
    RequeueAfter(Duration),
    /// `2`: move it to the dead-letter topic now (`delay_ms` 0).
    DeadLetter,
}

impl NackAction {
    /// The `action` byte and the `delay_ms` beside it.
    pub fn to_wire(self) -> (u8, u32) {
        match self {
            NackAction::Requeue => (0, 0),
            NackAction::RequeueAfter(delay) => {
                (1, u32::try_from(delay.as_millis()).unwrap_or(u32::MAX))
            }
            NackAction::DeadLetter => (2, 0),
        }
    }

    /// The action an `action` byte and its `delay_ms` name, or why they are malformed: an
    /// unknown action byte, or a delay on an action that takes none.
    pub fn from_wire(action: u8, delay_ms: u32) -> Result<NackAction, &'static str> {
        match (action, delay_ms) {
            (0, 0) => Ok(NackAction::Requeue),
            (1, ms) => Ok(NackAction::RequeueAfter(Duration::from_millis(u64::from(
                ms,
            )))),
            (2, 0) => Ok(NackAction::DeadLetter),
            (0 | 2, _) => Err("delay_ms set on a nack action that takes none"),
            _ => Err("unknown nack action"),
        }
    }
}

/// What a durable topic's log holds, as reported in a `Stats` entry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct LogStats {
    /// The oldest offset the log still holds (retention deletes from the front).
    pub first_offset: u64,
    /// The offset the next message will get.
    pub next_offset: u64,
    /// Messages the log holds.
    pub retained_messages: u64,
    /// Bytes the log's segments take.
    pub retained_bytes: u64,
}

/// One consumer group of a durable topic, as reported in a `Groups` frame.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GroupStats {
    /// The group's name, 1 to 255 bytes.
    pub name: String,
    /// Every message below this offset is acknowledged.
    pub committed: u64,
    /// The log's next offset: the group's lag is `next_offset - committed`.
    pub next_offset: u64,
    /// Messages delivered to a member and not acknowledged yet.
    pub pending: u32,
    /// Members subscribed now.
    pub members: u32,
    /// Messages delivered again (after a nack or an ack timeout) since the broker started.
    pub redelivered: u64,
    /// Messages moved to the dead-letter topic since the broker started.
    pub dead_lettered: u64,
}

impl GroupStats {
    /// Messages published and not yet acknowledged by the group.
    pub fn lag(&self) -> u64 {
        self.next_offset.saturating_sub(self.committed)
    }
}
