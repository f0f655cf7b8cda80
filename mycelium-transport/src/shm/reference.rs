//! The body of a **reference frame**: a message too large for its ring travels in a payload
//! segment of its own, and the ring carries this instead (`docs/shm-layout.md`, Payload
//! segments).
//!
//! - 16 bytes, little-endian: `segment u64 | len u32 | reserved u32 (0)`. `segment` is the
//!   id its sender gave the segment (increasing per ring), matching the `ShmSegment` /
//!   `ShmSegmentAdded` frame that carried its fd; `len` the message's length.
//! - On a queue topic the queue address comes first, as for any frame.
//! - Everything here is read from shared memory: [`SegmentRef::decode`] refuses any other
//!   length or a non-zero reserved word, and the receiver still checks the segment itself.

/// Bytes of a reference frame's body.
pub const REFERENCE_LEN: usize = 16;

/// What a reference frame names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SegmentRef {
    /// The segment's id, given by its sender.
    pub segment: u64,
    /// The message's length in bytes.
    pub len: u32,
}

impl SegmentRef {
    /// The 16 bytes of the reference.
    pub fn encode(&self) -> [u8; REFERENCE_LEN] {
        let mut out = [0u8; REFERENCE_LEN];
        out[..8].copy_from_slice(&self.segment.to_le_bytes());
        out[8..12].copy_from_slice(&self.len.to_le_bytes());
        out
    }

    /// The reference in `body`, or `None` if `body` is not exactly a well-formed reference.
    pub fn decode(body: &[u8]) -> Option<SegmentRef> {
        let body: &[u8; REFERENCE_LEN] = body.try_into().ok()?;
        let [s0, s1, s2, s3, s4, s5, s6, s7, l0, l1, l2, l3, r0, r1, r2, r3] = *body;
        if [r0, r1, r2, r3] != [0; 4] {
            return None;
        }
        Some(SegmentRef {
            segment: u64::from_le_bytes([s0, s1, s2, s3, s4, s5, s6, s7]),
            len: u32::from_le_bytes([l0, l1, l2, l3]),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reference_round_trips_and_junk_is_refused() {
        let r = SegmentRef {
            segment: u64::MAX - 3,
            len: 17 << 20,
        };
        assert_eq!(SegmentRef::decode(&r.encode()), Some(r));
        assert_eq!(SegmentRef::decode(&r.encode()[..15]), None);
        let mut long = r.encode().to_vec();
        long.push(0);
        assert_eq!(SegmentRef::decode(&long), None);
        let mut reserved = r.encode();
        reserved[15] = 1;
        assert_eq!(SegmentRef::decode(&reserved), None);
    }
}
