//! [`AckBatch`]: the acknowledgements of one durable subscription not sent yet, shared by the
//! subscription and every message it handed out.
//!
//! - An acknowledgement is a push under a lock nobody holds for long; a frame leaves only
//!   when the batch is sent: by the subscription when it has nothing to hand out (before it
//!   waits), by the acknowledging call once the batch reaches its size, or by a timer
//!   [`ACK_FLUSH_DELAY`] after the first acknowledgement of a batch (for an application that
//!   acknowledges and then stops asking for messages).
//! - Once the subscription is over, acknowledgements are dropped: the broker no longer knows
//!   its id.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use mycelium_transport::limits::MAX_ACKS_PER_FRAME;
use mycelium_transport::{Frame, NackAction};

use crate::socket::SocketClient;

/// Longest an acknowledgement waits to be sent while its subscription is not polled and its
/// batch is not full.
pub const ACK_FLUSH_DELAY: Duration = Duration::from_millis(5);

#[derive(Debug, Default)]
struct Pending {
    /// Offsets acknowledged and not sent yet.
    offsets: Vec<u64>,
    /// A timer is on its way to send the batch; no other is started meanwhile.
    timer_armed: bool,
    /// The subscription is over: nothing more is sent.
    closed: bool,
}

/// The pending acknowledgements of one subscription; see the module docs.
#[derive(Debug)]
pub(crate) struct AckBatch {
    /// The connection the frames go out on.
    socket: SocketClient,
    subscription_id: u32,
    /// Sent as soon as this many are pending.
    batch: usize,
    /// Runs the flush timer when an acknowledgement is made off the runtime.
    runtime: tokio::runtime::Handle,
    pending: Mutex<Pending>,
}

impl AckBatch {
    /// The batch of subscription `subscription_id`, sent whenever `batch` are pending.
    pub(crate) fn new(
        socket: SocketClient,
        subscription_id: u32,
        batch: usize,
        runtime: tokio::runtime::Handle,
    ) -> AckBatch {
        AckBatch {
            socket,
            subscription_id,
            batch: batch.clamp(1, MAX_ACKS_PER_FRAME),
            runtime,
            pending: Mutex::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds `offset` to the batch; sends the batch if it is full, or starts the timer that
    /// sends it if it was empty.
    pub(crate) fn ack(self: &Arc<Self>, offset: u64) {
        let mut pending = self.lock();
        if pending.closed {
            return;
        }
        pending.offsets.push(offset);
        if pending.offsets.len() >= self.batch {
            let offsets = std::mem::take(&mut pending.offsets);
            drop(pending);
            self.send(offsets);
            return;
        }
        if !pending.timer_armed {
            pending.timer_armed = true;
            drop(pending);
            let batch = Arc::clone(self);
            self.runtime.spawn(async move {
                tokio::time::sleep(ACK_FLUSH_DELAY).await;
                batch.lock().timer_armed = false;
                batch.flush();
            });
        }
    }

    /// Gives message `offset` back to the broker now, as `action` says.
    pub(crate) fn nack(&self, offset: u64, action: NackAction) {
        if self.lock().closed {
            return;
        }
        self.socket.send_control(&Frame::Nack {
            subscription_id: self.subscription_id,
            offset,
            action,
        });
    }

    /// Sends what is pending, if anything.
    pub(crate) fn flush(&self) {
        let offsets = {
            let mut pending = self.lock();
            if pending.offsets.is_empty() {
                return;
            }
            std::mem::take(&mut pending.offsets)
        };
        self.send(offsets);
    }

    /// Sends what is pending and drops every later acknowledgement.
    pub(crate) fn close(&self) {
        self.flush();
        self.lock().closed = true;
    }

    /// How many acknowledgements are waiting to be sent.
    pub(crate) fn pending(&self) -> usize {
        self.lock().offsets.len()
    }

    fn send(&self, offsets: Vec<u64>) {
        if offsets.len() <= MAX_ACKS_PER_FRAME {
            self.socket.send_control(&Frame::AckMessages {
                subscription_id: self.subscription_id,
                offsets,
            });
            return;
        }
        for chunk in offsets.chunks(MAX_ACKS_PER_FRAME) {
            self.socket.send_control(&Frame::AckMessages {
                subscription_id: self.subscription_id,
                offsets: chunk.to_vec(),
            });
        }
    }
}
