//! [`InFlight`]: the payload segments one reader of one ring may not have read yet, which
//! bound the fds a slow reader can be sent.

use std::collections::VecDeque;

use mycelium_transport::limits::MAX_SEGMENTS_IN_FLIGHT;

/// Payload segments handed to one reader of one ring whose reference frames it may not have
/// read yet: for each, the ring's `write_pos` when it was handed over. Its reference frame
/// comes after that position (the sender writes it after the hand-over) and before the
/// `write_pos` at the next hand-over (the sender publishes it before it sends the next), so
/// a segment is surely read once the reader's `read_pos` has passed the next one's position.
#[derive(Debug, Default)]
pub(super) struct InFlight(VecDeque<u64>);

impl InFlight {
    /// Whether one more segment may go to a reader at `read_pos` of a ring published up to
    /// `write_pos` (then counted), or must be dropped for it.
    pub(super) fn admit(&mut self, write_pos: u64, read_pos: u64) -> bool {
        while !self.0.is_empty() {
            let next = self.0.get(1).copied().unwrap_or(write_pos);
            if read_pos >= next {
                self.0.pop_front();
            } else {
                break;
            }
        }
        if self.0.len() >= MAX_SEGMENTS_IN_FLIGHT {
            return false;
        }
        self.0.push_back(write_pos);
        true
    }
}
