//! One message as every subscription hands it out, whatever carried it.
//!
//! - The same [`Message`] comes out of a socket subscription, a shared-memory subscription
//!   (blocking or async) and an in-process subscription: the topic it was published on and
//!   its payload, exactly as published.
//! - Cloning is cheap: the payload is reference-counted [`Bytes`], and the topic a
//!   [`TopicName`]: a name of up to [`TopicName::INLINE_LEN`] bytes is copied inline (no
//!   reference count to touch per message: a subscription hands out millions a second), a
//!   longer one is an `Arc<str>` shared by every message of one subscription.
//! - What the publisher put around the payload (an id and publish time, headers, where replies
//!   go, which request it answers: the [`envelope`](crate::envelope); and the offset in its
//!   log, on a delivery to a durable subscription) is kept as the bytes it
//!   arrived in, checked once on arrival and read on demand; a plain message carries none, and
//!   costs nothing for it.
//!
//! ```
//! use mycelium_transport::Message;
//!
//! let message = Message::new("prices", &b"42"[..]);
//! assert_eq!(message.topic(), "prices");
//! assert_eq!(&message[..], b"42");
//! assert_eq!(message.clone().into_payload(), &b"42"[..]);
//! ```

use std::sync::Arc;

use bytes::Bytes;
use uuid::Uuid;

use crate::envelope::{BlockOffsets, EnvelopeError, EnvelopeView, HeaderIter, Reply, Stamp};

/// One received message: its topic, its envelope if it has one, and its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    topic: TopicName,
    payload: Bytes,
    /// The envelope's bytes (flags and blocks, checked), empty for a plain message.
    envelope: Bytes,
}

impl Message {
    /// A message on `topic` carrying `payload`.
    pub fn new(topic: impl Into<TopicName>, payload: impl Into<Bytes>) -> Message {
        Message {
            topic: topic.into(),
            payload: payload.into(),
            envelope: Bytes::new(),
        }
    }

    /// A message from the bytes of an enveloped message (envelope, then payload), checked
    /// whole. A concrete topic in the envelope (a delivery to a pattern subscription) replaces
    /// `topic`.
    pub fn from_enveloped(
        topic: impl Into<TopicName>,
        bytes: Bytes,
    ) -> Result<Message, EnvelopeError> {
        let view = EnvelopeView::parse(&bytes)?;
        let topic = match view.topic {
            Some(concrete) => TopicName::from(concrete),
            None => topic.into(),
        };
        let len = view.len;
        Ok(Message {
            topic,
            payload: bytes.slice(len..),
            envelope: bytes.slice(..len),
        })
    }

    /// A message copied out of `view`, an enveloped message that parsed (so it is not checked
    /// again): its envelope and its payload each in a buffer of exactly its size, so that the
    /// message owns them without a shared count to set up or touch. A concrete topic in the
    /// envelope replaces `topic`, as in [`from_enveloped`](Self::from_enveloped).
    pub fn from_view(topic: impl Into<TopicName>, view: &EnvelopeView<'_>) -> Message {
        let topic = match view.topic {
            Some(concrete) => TopicName::from(concrete),
            None => topic.into(),
        };
        Message {
            topic,
            payload: Bytes::copy_from_slice(view.payload),
            envelope: Bytes::copy_from_slice(view.envelope_bytes()),
        }
    }

    /// The envelope, read from the bytes checked on arrival; `None` for a plain message.
    fn view(&self) -> Option<EnvelopeView<'_>> {
        if self.envelope.is_empty() {
            return None;
        }
        EnvelopeView::parse(&self.envelope).ok()
    }

    /// Whether the message came with an envelope (a stamp, headers, a reply address ...).
    pub fn has_envelope(&self) -> bool {
        !self.envelope.is_empty()
    }

    /// The envelope's bytes (flags and blocks, without the payload), empty for a plain
    /// message: what a relay passes on unchanged.
    pub fn envelope_bytes(&self) -> &Bytes {
        &self.envelope
    }

    /// Where the envelope's fixed blocks sit: the envelope was checked whole on arrival, so
    /// one field is read by the lengths before it, not by checking it all again.
    fn blocks(&self) -> Option<BlockOffsets> {
        if self.envelope.is_empty() {
            return None;
        }
        BlockOffsets::find(&self.envelope)
    }

    /// The id and publish time, when the topic stamps its messages (or the publisher did).
    pub fn stamp(&self) -> Option<Stamp> {
        self.blocks()?.stamp(&self.envelope)
    }

    /// The message's unique id (UUIDv7: sorts by publish time), if stamped.
    pub fn id(&self) -> Option<Uuid> {
        self.stamp().map(|stamp| stamp.id)
    }

    /// Nanoseconds since the Unix epoch when it was published, if stamped.
    pub fn timestamp_ns(&self) -> Option<u64> {
        self.stamp().map(|stamp| stamp.timestamp_ns)
    }

    /// The headers, in the order the publisher gave them (none for a plain message).
    pub fn headers(&self) -> HeaderIter<'_> {
        match self.view() {
            Some(view) => view.headers(),
            None => EnvelopeView::PLAIN.headers(),
        }
    }

    /// The first value of header `key`.
    pub fn header(&self, key: &str) -> Option<&str> {
        self.headers().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// Where replies go, if the message is a request.
    pub fn reply_to(&self) -> Option<&str> {
        self.blocks()?.reply_to(&self.envelope)
    }

    /// Which request the message answers and how, if it is a reply.
    pub fn reply(&self) -> Option<Reply> {
        self.blocks()?.reply(&self.envelope)
    }

    /// The message's offset in its durable topic's log: set by the broker on deliveries read
    /// from a log (durable subscriptions), `None` on every other message.
    pub fn offset(&self) -> Option<u64> {
        self.blocks()?.offset(&self.envelope)
    }

    /// The topic the message was published on.
    pub fn topic(&self) -> &str {
        self.topic.as_str()
    }

    /// The topic's name as the message holds it (cheap to clone).
    pub fn topic_name(&self) -> &TopicName {
        &self.topic
    }

    /// The payload, as published.
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }

    /// Takes the payload.
    pub fn into_payload(self) -> Bytes {
        self.payload
    }
}

impl std::ops::Deref for Message {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.payload
    }
}

impl AsRef<[u8]> for Message {
    fn as_ref(&self) -> &[u8] {
        &self.payload
    }
}

/// A topic's name, cheap to clone: short names inline, long ones shared.
///
/// Topic names are at most 255 bytes; most are short (`market_data`, `orders.eu`). A clone of
/// an inline name copies a few bytes and touches no shared counter, so handing one out with
/// every message costs no atomic operation; a longer name costs one reference count.
#[derive(Clone)]
pub struct TopicName(Repr);

#[derive(Clone)]
enum Repr {
    Inline(InlineName),
    Shared(Arc<str>),
}

/// A short name's bytes and length, aligned so that a copy is three word moves.
#[derive(Clone, Copy)]
#[repr(C, align(8))]
struct InlineName {
    bytes: [u8; TopicName::INLINE_LEN],
    len: u8,
}

impl TopicName {
    /// The longest name kept inline.
    pub const INLINE_LEN: usize = 23;

    /// The name.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            // Only whole `str`s are copied in (see `From<&str>`), so this never fails; an
            // empty name would be the answer if it did.
            Repr::Inline(name) => {
                std::str::from_utf8(&name.bytes[..usize::from(name.len)]).unwrap_or_default()
            }
            Repr::Shared(name) => name,
        }
    }
}

impl From<&str> for TopicName {
    fn from(name: &str) -> TopicName {
        match u8::try_from(name.len()) {
            Ok(len) if name.len() <= TopicName::INLINE_LEN => {
                let mut bytes = [0u8; TopicName::INLINE_LEN];
                bytes[..name.len()].copy_from_slice(name.as_bytes());
                TopicName(Repr::Inline(InlineName { bytes, len }))
            }
            _ => TopicName(Repr::Shared(Arc::from(name))),
        }
    }
}

impl From<String> for TopicName {
    fn from(name: String) -> TopicName {
        TopicName::from(name.as_str())
    }
}

impl From<Arc<str>> for TopicName {
    fn from(name: Arc<str>) -> TopicName {
        if name.len() <= TopicName::INLINE_LEN {
            TopicName::from(&*name)
        } else {
            TopicName(Repr::Shared(name))
        }
    }
}

impl std::ops::Deref for TopicName {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for TopicName {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for TopicName {
    fn eq(&self, other: &TopicName) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for TopicName {}

impl std::hash::Hash for TopicName {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl std::fmt::Debug for TopicName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl std::fmt::Display for TopicName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_long_names_read_back_whole() {
        for name in [
            "",
            "t",
            "market_data",
            "exactly.twenty-two.by",
            "é漢字",
            &"x".repeat(255),
        ] {
            let topic = TopicName::from(name);
            assert_eq!(topic.as_str(), name);
            assert_eq!(topic.clone().as_str(), name);
            assert_eq!(TopicName::from(Arc::<str>::from(name)).as_str(), name);
            assert_eq!(Message::new(name, &b"p"[..]).topic(), name);
        }
    }

    #[test]
    fn names_compare_by_their_text_whatever_their_form() {
        let long = "y".repeat(40);
        assert_eq!(
            TopicName::from(long.as_str()),
            TopicName::from(Arc::<str>::from(long.as_str()))
        );
        assert_ne!(TopicName::from("a"), TopicName::from("b"));
    }
}
