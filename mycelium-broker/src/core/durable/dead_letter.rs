//! Where a consumer group sends a message it gives up on: the dead-letter topic, reached
//! through [`DeadLetters`], which the server implements (it knows the topics).
//!
//! - A group gives a message up when a member nacks it with `DeadLetter`
//!   ([`DeadLetterReason::Rejected`]) or when it would be delivered a `max_deliveries + 1`-th
//!   time ([`DeadLetterReason::MaxDeliveries`]).
//! - The message published to the dead-letter topic keeps the stored envelope's stamp, reply
//!   address and headers, and adds the headers of `docs/protocol.md` §7.11
//!   ([`DeadLetterHeaders::write_message`] writes it); it carries no OFFSET block (the
//!   dead-letter topic gives it its own offset when it is durable).
//! - Once [`DeadLetters::dead_letter`] answers `Ok`, the group counts the message as
//!   acknowledged. An `Err` is logged and the message stays the group's, to be tried again
//!   later: it is never lost.

use bytes::BytesMut;

use crate::core::durable::group_message::{write_with_headers, DELIVERY_COUNT_HEADER};
use crate::core::topic::Topic;

/// Why the message was dead-lettered: `max-deliveries` or `rejected`.
pub const DEAD_LETTER_REASON_HEADER: &str = "Mycelium-Dead-Letter-Reason";
/// The topic the message came from.
pub const DEAD_LETTER_TOPIC_HEADER: &str = "Mycelium-Dead-Letter-Topic";
/// The message's offset in that topic's log, in decimal.
pub const DEAD_LETTER_OFFSET_HEADER: &str = "Mycelium-Dead-Letter-Offset";
/// The group that gave the message up.
pub const DEAD_LETTER_GROUP_HEADER: &str = "Mycelium-Dead-Letter-Group";

/// Why a group gave a message up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeadLetterReason {
    /// It was delivered `max_deliveries` times and never acknowledged.
    MaxDeliveries,
    /// A member nacked it with `DeadLetter`.
    Rejected,
}

impl DeadLetterReason {
    /// The value of the `Mycelium-Dead-Letter-Reason` header.
    pub fn as_str(self) -> &'static str {
        match self {
            DeadLetterReason::MaxDeliveries => "max-deliveries",
            DeadLetterReason::Rejected => "rejected",
        }
    }
}

/// What the headers of a dead-lettered message say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeadLetterHeaders<'a> {
    /// Why.
    pub reason: DeadLetterReason,
    /// The topic it came from.
    pub topic: &'a str,
    /// Its offset in that topic's log.
    pub offset: u64,
    /// The group that gave it up.
    pub group: &'a str,
    /// How many times it was delivered to the group.
    pub delivery_count: u32,
}

impl DeadLetterHeaders<'_> {
    /// Writes the message to publish to the dead-letter topic at the end of `dst`: an envelope
    /// (the stored one's blocks and these headers, replacing any of the same names) then
    /// `payload`. It is enveloped.
    pub fn write_message(&self, record_envelope: &[u8], payload: &[u8], dst: &mut BytesMut) {
        let offset = self.offset.to_string();
        let count = self.delivery_count.to_string();
        write_with_headers(
            record_envelope,
            payload,
            &[
                (DEAD_LETTER_REASON_HEADER, self.reason.as_str()),
                (DEAD_LETTER_TOPIC_HEADER, self.topic),
                (DEAD_LETTER_OFFSET_HEADER, &offset),
                (DEAD_LETTER_GROUP_HEADER, self.group),
                (DELIVERY_COUNT_HEADER, &count),
            ],
            None,
            dst,
        );
    }
}

/// Publishes what a consumer group gives up to its topic's dead-letter topic; see the module
/// doc. Called from the group's task: it must not wait.
pub trait DeadLetters: Send + Sync {
    /// Publishes the message (`record_envelope` as stored, possibly empty, and `payload`) of
    /// `source` to `source`'s dead-letter topic with `headers` added (see
    /// [`DeadLetterHeaders::write_message`]); `Err` says why it could not.
    fn dead_letter(
        &self,
        source: &Topic,
        record_envelope: &[u8],
        payload: &[u8],
        headers: DeadLetterHeaders<'_>,
    ) -> Result<(), String>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use mycelium_transport::envelope::{Envelope, EnvelopeView, Headers, Stamper};

    #[test]
    fn a_dead_lettered_message_keeps_its_stamp_and_headers_and_says_why() {
        let mut published = Headers::new();
        published.insert("trace", "abc").unwrap();
        let stamp = Stamper::new().stamp();
        let mut envelope = BytesMut::new();
        Envelope {
            stamp: Some(stamp),
            headers: Some(&published),
            offset: Some(3),
            ..Envelope::default()
        }
        .encode(&mut envelope);
        let headers = DeadLetterHeaders {
            reason: DeadLetterReason::MaxDeliveries,
            topic: "orders",
            offset: 17,
            group: "billing",
            delivery_count: 5,
        };
        let mut out = BytesMut::new();
        headers.write_message(&envelope, b"body", &mut out);
        let view = EnvelopeView::parse(&out).unwrap();
        assert_eq!(view.stamp, Some(stamp));
        assert_eq!(
            view.offset, None,
            "the dead-letter topic gives its own offset"
        );
        assert_eq!(view.payload, b"body");
        let got: Vec<(&str, &str)> = view.headers().collect();
        assert_eq!(
            got,
            vec![
                ("trace", "abc"),
                (DEAD_LETTER_REASON_HEADER, "max-deliveries"),
                (DEAD_LETTER_TOPIC_HEADER, "orders"),
                (DEAD_LETTER_OFFSET_HEADER, "17"),
                (DEAD_LETTER_GROUP_HEADER, "billing"),
                (DELIVERY_COUNT_HEADER, "5"),
            ]
        );
    }
}
