//! [`AsyncShmSubscription`]: a shared-memory subscription for tokio tasks.
//!
//! - A dedicated OS thread owns the [`ShmSubscription`]: it spins briefly and then sleeps on
//!   the rings' futexes exactly as a synchronous subscriber does, and forwards each message
//!   into a bounded tokio channel that [`recv`](AsyncShmSubscription::recv) awaits. No runtime
//!   worker ever waits on a futex or spins.
//! - Why a thread and not `spawn_blocking` per wait: a futex sleep needs a thread either way,
//!   and a thread of its own keeps the subscription in one place, so a `recv` future dropped
//!   half-way loses nothing (tokio's `mpsc::Receiver::recv` is cancel-safe), while a blocking
//!   task per wait would hold the subscription in a closure that outlives a cancelled future,
//!   and pay a blocking-pool hand-off (tens of microseconds) per wait. The cost is one thread
//!   per subscription and one channel hop (a few microseconds) per message.
//! - **Cancellation safety**: dropping the future of [`recv`](AsyncShmSubscription::recv)
//!   before it completes loses no message; the next call returns it.
//! - Flow control: the channel holds at most [`FORWARD_CAPACITY`] messages; when it is full the
//!   thread stops reading the rings, so a task that stops receiving holds publishers back as a
//!   slow synchronous subscriber does (`block`). On a queue topic the messages in the channel
//!   are this consumer's: dropping the subscription loses them (as a socket consumer's
//!   prefetched messages).
//! - Dropping the subscription ends the thread within [`STOP_POLL`] and detaches from the
//!   topic.
//!
//! ```no_run
//! use mycelium_client::shm::ShmClient;
//!
//! # async fn run() -> Result<(), mycelium_client::ClientError> {
//! let client = ShmClient::connect_async("/tmp/mycelium.sock").await?;
//! let mut subscription = client.subscribe_async("market_data").await?;
//! let publisher = client.publisher_async("market_data").await?;
//! publisher.publish(b"tick").await?;
//! let message = subscription.recv().await?;
//! assert_eq!(message, b"tick");
//! # Ok(())
//! # }
//! ```

use std::time::Duration;

use tokio::sync::mpsc;

use crate::error::ClientError;
use crate::shm::subscription::ShmSubscription;

/// Messages (or errors) the forwarding thread may have handed over and the task not yet
/// received: enough to carry a burst across one wake-up of the task, small enough that a task
/// that stops receiving holds its publishers back soon.
pub const FORWARD_CAPACITY: usize = 1024;

/// Longest sleep of the forwarding thread before it checks that the subscription is still
/// wanted: how long a dropped subscription's thread (and attachment) may outlive it.
pub const STOP_POLL: Duration = Duration::from_millis(100);

/// A shared-memory subscription for async code; see the module docs.
#[derive(Debug)]
pub struct AsyncShmSubscription {
    topic: String,
    topic_id: u32,
    /// Fed by the forwarding thread. Dropping it ends the thread: its next send fails, or
    /// its next check of `is_closed` after a sleep sees it.
    messages: mpsc::Receiver<Result<Vec<u8>, ClientError>>,
    /// Set once the thread reported an error that ends the subscription; every later call
    /// returns it.
    ended: Option<ClientError>,
}

impl AsyncShmSubscription {
    /// Moves `subscription` to a forwarding thread of its own.
    ///
    /// # Errors
    ///
    /// [`ClientError::Shm`] if the thread cannot be started (the subscription is dropped,
    /// which detaches it).
    pub fn new(subscription: ShmSubscription) -> Result<AsyncShmSubscription, ClientError> {
        let topic = subscription.topic().to_owned();
        let topic_id = subscription.topic_id();
        let (sender, messages) = mpsc::channel(FORWARD_CAPACITY);
        std::thread::Builder::new()
            .name(format!("shm-sub:{topic}"))
            .spawn(move || forward(subscription, sender))
            .map_err(|e| ClientError::Shm(format!("cannot start the forwarding thread: {e}")))?;
        Ok(AsyncShmSubscription {
            topic,
            topic_id,
            messages,
            ended: None,
        })
    }

    /// The topic's name.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The topic's id in this broker run.
    pub fn topic_id(&self) -> u32 {
        self.topic_id
    }

    /// The next message. Cancel-safe: a future dropped before it completes takes nothing.
    ///
    /// # Errors
    ///
    /// As [`ShmSubscription::try_recv_into`]: [`ClientError::Lagged`] and a one-time
    /// [`ClientError::Shm`] for a dropped ring are reported and the subscription goes on;
    /// [`ClientError::BrokerGone`] (every ring read to its end) and [`ClientError::Refused`]
    /// (the broker ended the subscription) end it, and every later call returns them.
    pub async fn recv(&mut self) -> Result<Vec<u8>, ClientError> {
        if let Some(ended) = &self.ended {
            return Err(ended.clone());
        }
        let next = self.messages.recv().await;
        self.take(next)
    }

    /// The next message if one is there now, without waiting: `Ok(None)` when none is.
    ///
    /// # Errors
    ///
    /// As for [`recv`](Self::recv).
    pub fn try_recv(&mut self) -> Result<Option<Vec<u8>>, ClientError> {
        if let Some(ended) = &self.ended {
            return Err(ended.clone());
        }
        match self.messages.try_recv() {
            Ok(next) => self.take(Some(next)).map(Some),
            Err(mpsc::error::TryRecvError::Empty) => Ok(None),
            Err(mpsc::error::TryRecvError::Disconnected) => self.take(None).map(Some),
        }
    }

    fn take(&mut self, next: Option<Result<Vec<u8>, ClientError>>) -> Result<Vec<u8>, ClientError> {
        match next {
            Some(Ok(message)) => Ok(message),
            Some(Err(error)) => {
                if ends(&error) {
                    self.ended = Some(error.clone());
                }
                Err(error)
            }
            None => {
                // The thread only stops on its own after sending an error that ends the
                // subscription, which was recorded above; this is a thread that panicked.
                let error = ClientError::Shm("the forwarding thread stopped".into());
                self.ended = Some(error.clone());
                Err(error)
            }
        }
    }
}

/// Whether `error` ends a subscription (later calls can only return it again).
fn ends(error: &ClientError) -> bool {
    matches!(
        error,
        ClientError::BrokerGone { .. } | ClientError::Refused { .. }
    )
}

/// The forwarding thread: receives as a synchronous subscriber does and hands each message to
/// the channel, waiting for room there (which is the flow control), until the receiver is
/// dropped or the subscription ends.
fn forward(mut subscription: ShmSubscription, sender: mpsc::Sender<Result<Vec<u8>, ClientError>>) {
    loop {
        if sender.is_closed() {
            return;
        }
        let mut message = Vec::new();
        let next = match subscription.recv_timeout_into(&mut message, Some(STOP_POLL)) {
            Ok(true) => Ok(message),
            Ok(false) => continue,
            Err(error) => Err(error),
        };
        let last = next.as_ref().is_err_and(ends);
        if let Err(error) = &next {
            tracing::debug!(topic = subscription.topic(), %error, "shared-memory subscription reports an error");
        }
        // Fails only when the receiver was dropped: the subscription is not wanted any more.
        if sender.blocking_send(next).is_err() || last {
            return;
        }
    }
}
