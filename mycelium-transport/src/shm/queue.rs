//! Queue topics over shared memory: every frame of a publisher's ring is addressed to one
//! consumer slot, so each message is taken exactly once.
//!
//! - A queue frame's payload is `recipient: u32 LE | reserved: u32 (0) | message`, where
//!   `recipient` is the consumer slot, in that ring, that must take the message. Every
//!   consumer reads every frame of the ring (a lossless ring waits for all of them) and keeps
//!   only those addressed to it.
//! - The publisher deals messages in turns of [`TURN`]: each turn goes to the active consumer
//!   that has read furthest (the one with the least unread work), ties broken in rotation, so
//!   a slow consumer gets less and idle consumers share evenly.
//! - A consumer that dies loses what was addressed to it and not yet read (at most once, as on
//!   the socket path); the publisher stops dealing to its slot once the broker frees it.
//! - The broker's reader takes a slot like any consumer while the topic has socket consumers,
//!   and hands what is addressed to it to them.

use super::RingProducer;

/// Bytes before the message in a queue frame: `recipient` and a reserved word.
pub const QUEUE_PREFIX: usize = 8;

/// Messages dealt to one consumer before the next choice.
pub const TURN: u32 = 64;

/// The message of a queue frame addressed to `slot`, or `None` for another consumer's (or a
/// frame too short to be a queue frame, which only a hostile publisher writes).
pub fn addressed_to(frame: &[u8], slot: usize) -> Option<&[u8]> {
    let recipient = frame.get(..4)?;
    let recipient = u32::from_le_bytes([recipient[0], recipient[1], recipient[2], recipient[3]]);
    (recipient as usize == slot)
        .then(|| frame.get(QUEUE_PREFIX..))
        .flatten()
}

/// Writes the queue frame of `message` for `slot` into `frame` (replacing its contents).
pub fn address(frame: &mut Vec<u8>, slot: usize, message: &[u8]) {
    frame.clear();
    frame.resize(QUEUE_PREFIX, 0);
    address_in_place(frame, slot);
    frame.extend_from_slice(message);
}

/// Writes the address of `slot` into the first [`QUEUE_PREFIX`] bytes of `prefix` (a frame
/// being written in place).
///
/// # Panics
///
/// If `prefix` is shorter than [`QUEUE_PREFIX`].
pub fn address_in_place(prefix: &mut [u8], slot: usize) {
    // Slots are below the ring's slot count (at most 1024): they fit a u32.
    prefix[..4].copy_from_slice(&(slot as u32).to_le_bytes());
    prefix[4..QUEUE_PREFIX].fill(0);
}

/// The publisher's choice of consumer.
#[derive(Debug, Default)]
pub struct Dealer {
    current: Option<usize>,
    left: u32,
}

impl Dealer {
    /// The slot the next message goes to, or `None` while no consumer is active.
    pub fn next(&mut self, producer: &RingProducer) -> Option<usize> {
        if self.left > 0 {
            if let Some(slot) = self.current {
                self.left -= 1;
                return Some(slot);
            }
        }
        let after = self.current.map_or(0, |slot| slot + 1);
        // The consumer that has read furthest; among equals, the first at or after the one
        // that had the last turn, so equals take turns.
        let best = producer
            .active_consumers()
            .max_by_key(|&(slot, read_pos)| {
                (read_pos, std::cmp::Reverse((slot + 1024 - after) % 1024))
            })?;
        self.current = Some(best.0);
        self.left = TURN - 1;
        Some(best.0)
    }

    /// Forgets the current turn (its consumer may be gone).
    pub fn reset(&mut self) {
        self.left = 0;
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_frame_is_taken_only_by_its_recipient() {
        let mut frame = Vec::new();
        address(&mut frame, 3, b"job");
        assert_eq!(addressed_to(&frame, 3), Some(&b"job"[..]));
        assert_eq!(addressed_to(&frame, 2), None);
        assert_eq!(addressed_to(&[3, 0, 0], 3), None, "too short");
        address(&mut frame, 7, b"");
        assert_eq!(addressed_to(&frame, 7), Some(&b""[..]));
    }

    #[test]
    fn the_dealer_takes_turns_among_equals_and_waits_for_a_consumer() {
        let (region, producer) = super::super::RingRegion::new_in_memory(4096, 4).unwrap();
        let mut dealer = Dealer::default();
        assert_eq!(dealer.next(&producer), None, "no consumer yet");
        let _a = super::super::RingConsumer::join(&region).unwrap();
        let _b = super::super::RingConsumer::join(&region).unwrap();
        let mut counts = [0u32; 4];
        for _ in 0..(4 * TURN) {
            counts[dealer.next(&producer).unwrap()] += 1;
        }
        assert_eq!(
            counts,
            [2 * TURN, 2 * TURN, 0, 0],
            "two consumers, caught up: equal turns"
        );
    }
}
