//! One message as every subscription hands it out, whatever carried it.
//!
//! - The same [`Message`] comes out of a socket subscription, a shared-memory subscription
//!   (blocking or async) and an in-process subscription: the topic it was published on and
//!   its payload, exactly as published.
//! - Cloning is cheap: the payload is reference-counted [`Bytes`] and the topic name an
//!   `Arc<str>` shared by every message of one subscription.
//! - The fields are private so that headers and ids can join without breaking callers.
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

/// One received message: its topic and its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    topic: Arc<str>,
    payload: Bytes,
}

impl Message {
    /// A message on `topic` (an `Arc<str>` is shared, not copied) carrying `payload`.
    pub fn new(topic: impl Into<Arc<str>>, payload: impl Into<Bytes>) -> Message {
        Message {
            topic: topic.into(),
            payload: payload.into(),
        }
    }

    /// The topic the message was published on.
    pub fn topic(&self) -> &str {
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
