//! [`AsyncShmPublisher`]: a shared-memory publisher for tokio tasks.
//!
//! - [`publish`](AsyncShmPublisher::publish) first tries to write the message at once (the
//!   common case: no syscall, no thread hop). Only when the ring is full (a slow subscriber on
//!   a `block` topic), or a queue topic has no consumer yet, does it hand the wait to tokio's
//!   blocking pool (`spawn_blocking`), so a runtime worker never spins or sleeps on a futex.
//! - Messages keep their order: the publisher sits behind an async mutex, held from the
//!   attempt to the end of the wait.
//! - Cancellation: dropping a `publish` future that is waiting for room does not withdraw the
//!   message. The blocking task keeps the publisher until the message is written (or the wait
//!   fails), and the next `publish` waits its turn behind it. A future dropped before its first
//!   poll publishes nothing.
//! - Dropping the publisher (and any publish still waiting) ends its attachment, as
//!   [`ShmPublisher`] does.
//! - The end of the session or of the attachment is learnt as [`ShmPublisher`] learns it
//!   (every [`LOOK_EVERY`](crate::shm::LOOK_EVERY) messages, in every wait, and at
//!   [`check`](AsyncShmPublisher::check)), with the same guarantee on what may go into a ring
//!   nobody reads.

use std::sync::Arc;

use mycelium_transport::envelope::{Envelope, Headers};
use tokio::sync::Mutex;

use crate::error::ClientError;
use crate::shm::publisher::ShmPublisher;

/// A shared-memory publisher for async code; cheap to clone (the clones share one ring and
/// publish in turn). See the module docs.
#[derive(Debug, Clone)]
pub(crate) struct AsyncShmPublisher {
    /// Held across a publish, into the blocking task when it must wait, so the order of
    /// messages is the order of the `publish` calls that took it.
    inner: Arc<Mutex<ShmPublisher>>,
    topic: Arc<str>,
    max_message_size: usize,
}

impl AsyncShmPublisher {
    /// Wraps `publisher` for async use.
    pub(crate) fn new(publisher: ShmPublisher) -> AsyncShmPublisher {
        AsyncShmPublisher {
            topic: Arc::from(publisher.topic()),
            max_message_size: publisher.max_message_size(),
            inner: Arc::new(Mutex::new(publisher)),
        }
    }

    /// The topic's name.
    pub(crate) fn topic(&self) -> &str {
        &self.topic
    }

    /// The largest payload this publisher accepts.
    pub(crate) fn max_message_size(&self) -> usize {
        self.max_message_size
    }

    /// Publishes one message: visible to subscribers when this resolves. Waits (off the
    /// runtime's workers) while the ring is full, and on a queue topic while no consumer is
    /// there, up to the client's request timeout.
    ///
    /// # Errors
    ///
    /// As [`ShmPublisher::publish`]: [`ClientError::MessageTooLarge`],
    /// [`ClientError::NoConsumer`], the end of the session ([`ClientError::BrokerGone`]) or
    /// of the attachment ([`ClientError::Refused`]); [`ClientError::Shm`] if the blocking
    /// pool refused the wait (the runtime is shutting down).
    pub(crate) async fn publish(&self, payload: &[u8]) -> Result<(), ClientError> {
        let mut publisher = Arc::clone(&self.inner).lock_owned().await;
        if publisher.try_publish(payload)? {
            return Ok(());
        }
        let payload = payload.to_vec();
        tokio::task::spawn_blocking(move || publisher.publish(&payload))
            .await
            .map_err(|e| ClientError::Shm(format!("the publish wait failed: {e}")))?
    }

    /// [`publish`](Self::publish) with `headers` ([`ShmPublisher::publish_with`]).
    pub(crate) async fn publish_with(
        &self,
        headers: &Headers,
        payload: &[u8],
    ) -> Result<(), ClientError> {
        let mut publisher = Arc::clone(&self.inner).lock_owned().await;
        let (headers, payload) = (headers.clone(), payload.to_vec());
        tokio::task::spawn_blocking(move || publisher.publish_with(&headers, &payload))
            .await
            .map_err(|e| ClientError::Shm(format!("the publish wait failed: {e}")))?
    }

    /// [`publish`](Self::publish) with exactly `envelope` ([`ShmPublisher::publish_envelope`]).
    pub(crate) async fn publish_envelope(
        &self,
        envelope: &Envelope<'_>,
        payload: &[u8],
    ) -> Result<(), ClientError> {
        let mut publisher = Arc::clone(&self.inner).lock_owned().await;
        // The envelope borrows: its parts go to the blocking pool owned.
        let (stamp, reply) = (envelope.stamp, envelope.reply);
        let reply_to = envelope.reply_to.map(str::to_owned);
        let headers = envelope.headers.cloned();
        let payload = payload.to_vec();
        tokio::task::spawn_blocking(move || {
            let owned = Envelope {
                stamp,
                reply_to: reply_to.as_deref(),
                reply,
                headers: headers.as_ref(),
                ..Envelope::default()
            };
            publisher.publish_envelope(&owned, &payload)
        })
        .await
        .map_err(|e| ClientError::Shm(format!("the publish wait failed: {e}")))?
    }

    /// Whether any subscriber reads this publisher's ring now ([`ShmPublisher::has_readers`]).
    pub(crate) async fn has_readers(&self) -> bool {
        self.inner.lock().await.has_readers()
    }

    /// Looks at the control session now, as [`ShmPublisher::check`] (after any publish of this
    /// publisher under way; on the blocking pool, since another thread of the client may hold
    /// the session).
    ///
    /// # Errors
    ///
    /// As [`ShmPublisher::check`]; [`ClientError::Shm`] if the blocking pool refused the call.
    pub(crate) async fn check(&self) -> Result<(), ClientError> {
        let mut publisher = Arc::clone(&self.inner).lock_owned().await;
        tokio::task::spawn_blocking(move || publisher.check())
            .await
            .map_err(|e| ClientError::Shm(format!("the session check failed: {e}")))?
    }

    /// Publishes one message if the ring has room now; `Ok(false)` (nothing written) when it
    /// has not, or when another publish of this publisher is under way.
    ///
    /// # Errors
    ///
    /// [`ClientError::MessageTooLarge`]; the end of the session or attachment as for
    /// [`publish`](Self::publish).
    pub(crate) fn try_publish(&self, payload: &[u8]) -> Result<bool, ClientError> {
        match self.inner.try_lock() {
            Ok(mut publisher) => publisher.try_publish(payload),
            Err(_) => Ok(false),
        }
    }
}
