//! A replay subscription: one task that reads a durable topic's log into one subscriber's
//! sink, from a start position, then follows what is appended, for as long as the
//! subscription lives.
//!
//! - The subscriber gets every record from its start on, in offset order, each exactly once,
//!   history and live alike: the log is its only source (it is not one of the topic's live
//!   subscribers), so there is no hand-over from history to live to get wrong.
//! - Each message is a `DeliverEnvelope` under the subscription's id: the stored envelope
//!   with the `OFFSET` block, then the payload.
//! - Flow control is the sink's: the task reads a batch only while the subscriber holds fewer
//!   than its window of messages not yet taken ([`Delivery::has_room`]), so a subscriber that
//!   does not read costs one window of memory, and its reading paces the replay.
//! - Once caught up it sleeps until the log's next append ([`TopicLog::appended`]).
//! - A record the log cannot read back (an I/O error) ends the subscription with
//!   `StorageFailed`; corrupt records in sealed segments are skipped by the reader and logged.
//! - Dropping the [`Follower`] stops the task.

use std::sync::Arc;

use bytes::BytesMut;
use mycelium_storage::StartAt;
use mycelium_transport::envelope::write_with_offset;

use crate::core::batch::{enveloped_items, BatchRef};
use crate::core::delivery::{Delivered, Delivery, Ending};
use crate::core::durable::TopicLog;
use crate::core::topic::TopicId;

/// Records read per batch handed to the sink.
const BATCH: usize = 256;

/// Bytes read per batch at most (large messages): the window still bounds the messages.
const BATCH_BYTES: usize = 1 << 20;

/// The running replay of one subscription; stops when dropped.
#[derive(Debug)]
pub struct Follower {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Follower {
    /// Starts replaying `log` from `start` into `sink` under `subscription`, holding at most
    /// about `window` messages queued toward the subscriber. Call inside a tokio runtime.
    pub fn start(
        log: Arc<TopicLog>,
        start: StartAt,
        sink: Arc<dyn Delivery>,
        subscription: TopicId,
        window: usize,
    ) -> Follower {
        let task = tokio::spawn(follow(log, start, sink, subscription, window.max(1)));
        Follower { task }
    }
}

async fn follow(
    log: Arc<TopicLog>,
    start: StartAt,
    sink: Arc<dyn Delivery>,
    subscription: TopicId,
    window: usize,
) {
    let mut appended = log.appended();
    // Marked seen before the reader is made: an append after it wakes the wait below.
    appended.borrow_and_update();
    let mut reader = log.reader(start);
    let mut bytes = BytesMut::new();
    let mut ends: Vec<usize> = Vec::with_capacity(BATCH);
    let mut caught_up_once = false;
    loop {
        if !sink.has_room(subscription, window) {
            sink.wait_for_room(subscription, window).await;
            continue;
        }
        bytes.clear();
        ends.clear();
        while ends.len() < BATCH && bytes.len() < BATCH_BYTES {
            match reader.next_record() {
                Ok(Some(record)) => {
                    write_with_offset(
                        record.envelope(),
                        record.payload(),
                        record.offset(),
                        &mut bytes,
                    );
                    ends.push(bytes.len());
                }
                Ok(None) => break,
                Err(error) => {
                    let message = format!(
                        "the log of this durable topic could not be read: {}",
                        crate::error::error_chain(&error)
                    );
                    tracing::error!(dir = %log.dir().display(), %message, "a replay subscription ended");
                    sink.end(subscription, Ending::StorageFailed { message: &message });
                    return;
                }
            }
        }
        if ends.is_empty() {
            if caught_up_once {
                // Nothing since the last look: sleep until the next append.
                if appended.changed().await.is_err() {
                    return;
                }
                caught_up_once = false;
            } else {
                appended.borrow_and_update();
                log.catch_up(&mut reader);
                caught_up_once = true;
            }
            continue;
        }
        caught_up_once = false;
        let items = enveloped_items(&bytes, &ends);
        match sink.deliver(subscription, BatchRef::Items(&items), 0..items.len(), None) {
            Delivered::Closed => return,
            Delivered::Queued(_) => {}
        }
        // Let the connection's other work run between batches of a long replay.
        tokio::task::yield_now().await;
    }
}
