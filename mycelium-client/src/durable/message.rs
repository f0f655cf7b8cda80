//! [`DurableMessage`]: a message read from a durable topic's log, to acknowledge or give back.

use std::sync::Arc;

use mycelium_transport::{Message, NackAction};

use super::acks::AckBatch;

/// The header the broker puts on every delivery to a consumer group: how many times the
/// message has been delivered to the group (1 on the first), in decimal.
pub const DELIVERY_COUNT_HEADER: &str = "Mycelium-Delivery-Count";

/// A message of a durable subscription: the [`Message`] (it derefs to it), its offset in the
/// topic's log, and the means to acknowledge it or give it back.
///
/// - In a consumer group, [`ack`](Self::ack) tells the broker the message is done (the group
///   commits past it once every earlier one is); a message never acknowledged is delivered
///   again after the topic's `ack_timeout_ms`, and dead-lettered after `max_deliveries`.
///   [`nack`](Self::nack) gives it back at once.
/// - On a replay subscription the client returns credit as messages are taken, so `ack` has
///   nothing to add and sends nothing.
#[derive(Debug, Clone)]
pub struct DurableMessage {
    message: Message,
    offset: u64,
    /// The subscription's batch of acknowledgements, where nacks go too.
    batch: Arc<AckBatch>,
    /// A group's message, acknowledged through `batch`; false on a replay subscription.
    acknowledged_by_ack: bool,
}

impl DurableMessage {
    pub(crate) fn new(
        message: Message,
        offset: u64,
        batch: Arc<AckBatch>,
        acknowledged_by_ack: bool,
    ) -> DurableMessage {
        DurableMessage {
            message,
            offset,
            batch,
            acknowledged_by_ack,
        }
    }

    /// The message's offset in its topic's log.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// How many times the message has been delivered to the group, 1 on the first (the
    /// broker's [`DELIVERY_COUNT_HEADER`]); `None` on a replay subscription, whose messages
    /// carry no count.
    pub fn delivery_count(&self) -> Option<u32> {
        self.message.header(DELIVERY_COUNT_HEADER)?.parse().ok()
    }

    /// Acknowledges the message: it is done. Batched with the subscription's other
    /// acknowledgements (see [`crate::durable`]): this sends no frame of its own. Nothing is
    /// sent once the subscription is over, nor on a replay subscription.
    pub fn ack(&self) {
        if self.acknowledged_by_ack {
            self.batch.ack(self.offset);
        }
    }

    /// Gives the message back to the broker now: delivered again at once
    /// ([`NackAction::Requeue`]), after a delay ([`NackAction::RequeueAfter`]), or moved to
    /// the topic's dead-letter topic ([`NackAction::DeadLetter`]).
    pub fn nack(&self, action: NackAction) {
        self.batch.nack(self.offset, action);
    }

    /// The message.
    pub fn message(&self) -> &Message {
        &self.message
    }

    /// Takes the message (acknowledge first: the offset and the means to do so stay here).
    pub fn into_message(self) -> Message {
        self.message
    }
}

impl std::ops::Deref for DurableMessage {
    type Target = Message;
    fn deref(&self) -> &Message {
        &self.message
    }
}
