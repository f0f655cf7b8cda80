//! The record: one message as it lies in a segment file, encoded and decoded without I/O.
//!
//! ```text
//! len: u32 LE          bytes after the crc field (RECORD_FIXED + envelope + payload)
//! crc32c: u32 LE       Castagnoli CRC over those `len` bytes
//! offset: u64 LE
//! timestamp_ns: u64 LE
//! envelope_len: u32 LE
//! envelope bytes, payload bytes
//! ```
//!
//! - [`decode`] reads untrusted bytes: every length is checked against [`MAX_RECORD_LEN`] and
//!   the bytes at hand before it is used, so a hostile file never panics and never makes it
//!   allocate; it answers [`Decoded::Incomplete`] when the bytes end inside a plausible record and
//!   [`Decoded::Corrupt`] when the bytes can never be a record.
//! - [`encode_into`] appends exactly [`encoded_len`] bytes, which [`decode`] gives back.

/// Bytes before the checksummed part: `len` and `crc32c`.
pub const RECORD_PREFIX: usize = 8;

/// Fixed checksummed bytes of every record: `offset`, `timestamp_ns`, `envelope_len`.
pub const RECORD_FIXED: usize = 8 + 8 + 4;

/// The largest envelope plus payload a record holds (64 MiB): a message larger than this is
/// refused by an append, and a `len` claiming more is corruption, never an allocation.
pub const MAX_RECORD_DATA: usize = 64 * 1024 * 1024;

/// The largest `len` field a valid record carries.
pub const MAX_RECORD_LEN: usize = RECORD_FIXED + MAX_RECORD_DATA;

/// A record decoded in place: borrowed slices of the bytes it was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecordRef<'a> {
    pub(crate) offset: u64,
    pub(crate) timestamp_ns: u64,
    pub(crate) envelope: &'a [u8],
    pub(crate) payload: &'a [u8],
}

/// Why bytes cannot be a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Corrupt {
    /// `len` is below the fixed part or above [`MAX_RECORD_LEN`].
    BadLen,
    /// The checksum does not match the bytes.
    Checksum,
    /// `envelope_len` exceeds the record.
    BadEnvelopeLen,
}

/// What [`decode`] found at the start of the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decoded<'a> {
    /// A whole valid record, and how many bytes it takes.
    Record(RecordRef<'a>, usize),
    /// The bytes end before the record does; `needed` is its whole size when `len` was read.
    Incomplete { needed: Option<usize> },
    /// No record can start here.
    Corrupt(Corrupt),
}

/// The size on disk of a record with these envelope and payload lengths.
pub(crate) const fn encoded_len(envelope_len: usize, payload_len: usize) -> usize {
    RECORD_PREFIX + RECORD_FIXED + envelope_len + payload_len
}

/// Appends the record to `buf`. The caller has checked `envelope.len() + payload.len()` against
/// [`MAX_RECORD_DATA`], so every length fits its field.
pub(crate) fn encode_into(
    buf: &mut Vec<u8>,
    offset: u64,
    timestamp_ns: u64,
    envelope: &[u8],
    payload: &[u8],
) {
    debug_assert!(envelope.len() + payload.len() <= MAX_RECORD_DATA);
    let len = RECORD_FIXED + envelope.len() + payload.len();
    let start = buf.len();
    buf.reserve(RECORD_PREFIX + len);
    // Checked by the caller against MAX_RECORD_DATA, which is far below u32::MAX.
    buf.extend_from_slice(&(len as u32).to_le_bytes());
    buf.extend_from_slice(&[0; 4]);
    buf.extend_from_slice(&offset.to_le_bytes());
    buf.extend_from_slice(&timestamp_ns.to_le_bytes());
    buf.extend_from_slice(&(envelope.len() as u32).to_le_bytes());
    buf.extend_from_slice(envelope);
    buf.extend_from_slice(payload);
    let crc = crc32c::crc32c(&buf[start + RECORD_PREFIX..]);
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    let b = bytes.get(at..at.checked_add(8)?)?;
    let mut a = [0; 8];
    a.copy_from_slice(b);
    Some(u64::from_le_bytes(a))
}

/// Reads the `len` field alone: the record's whole size if it is plausible.
pub(crate) fn peek_size(bytes: &[u8]) -> Result<Option<usize>, Corrupt> {
    let Some(len) = u32_at(bytes, 0) else {
        return Ok(None);
    };
    let len = len as usize;
    if !(RECORD_FIXED..=MAX_RECORD_LEN).contains(&len) {
        return Err(Corrupt::BadLen);
    }
    Ok(Some(RECORD_PREFIX + len))
}

/// The record at the start of `bytes` (see the module doc).
pub(crate) fn decode(bytes: &[u8]) -> Decoded<'_> {
    let size = match peek_size(bytes) {
        Ok(Some(size)) => size,
        Ok(None) => return Decoded::Incomplete { needed: None },
        Err(e) => return Decoded::Corrupt(e),
    };
    let Some(record) = bytes.get(..size) else {
        return Decoded::Incomplete { needed: Some(size) };
    };
    let body = &record[RECORD_PREFIX..];
    let crc = u32_at(record, 4).unwrap_or(0);
    if crc32c::crc32c(body) != crc {
        return Decoded::Corrupt(Corrupt::Checksum);
    }
    // `body` holds at least RECORD_FIXED bytes (peek_size checked `len`), so the fields exist.
    let (Some(offset), Some(timestamp_ns), Some(envelope_len)) =
        (u64_at(body, 0), u64_at(body, 8), u32_at(body, 16))
    else {
        return Decoded::Corrupt(Corrupt::BadLen);
    };
    let rest = &body[RECORD_FIXED..];
    let Some((envelope, payload)) = rest.split_at_checked(envelope_len as usize) else {
        return Decoded::Corrupt(Corrupt::BadEnvelopeLen);
    };
    Decoded::Record(
        RecordRef {
            offset,
            timestamp_ns,
            envelope,
            payload,
        },
        size,
    )
}

/// The `offset` field of a plausible record at the start of `bytes`, read before the checksum
/// is computed: resynchronisation tries every byte position and must reject most of them
/// cheaply.
pub(crate) fn peek_offset(bytes: &[u8]) -> Option<u64> {
    u64_at(bytes, RECORD_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn encode(offset: u64, ts: u64, env: &[u8], payload: &[u8]) -> Vec<u8> {
        let mut buf = Vec::new();
        encode_into(&mut buf, offset, ts, env, payload);
        buf
    }

    #[test]
    fn layout_is_as_documented() {
        let buf = encode(7, 9, b"ab", b"xyz");
        assert_eq!(buf.len(), encoded_len(2, 3));
        assert_eq!(&buf[0..4], &(20u32 + 5).to_le_bytes());
        assert_eq!(&buf[4..8], &crc32c::crc32c(&buf[8..]).to_le_bytes());
        assert_eq!(&buf[8..16], &7u64.to_le_bytes());
        assert_eq!(&buf[16..24], &9u64.to_le_bytes());
        assert_eq!(&buf[24..28], &2u32.to_le_bytes());
        assert_eq!(&buf[28..], b"abxyz");
    }

    #[test]
    fn every_prefix_is_incomplete() {
        let buf = encode(1, 2, b"env", b"payload");
        for cut in 0..buf.len() {
            assert!(
                matches!(decode(&buf[..cut]), Decoded::Incomplete { .. }),
                "prefix of {cut} bytes"
            );
        }
    }

    #[test]
    fn bad_len_is_corrupt_without_allocation() {
        let mut buf = encode(1, 2, b"", b"p");
        buf[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode(&buf), Decoded::Corrupt(Corrupt::BadLen));
        buf[0..4].copy_from_slice(&3u32.to_le_bytes());
        assert_eq!(decode(&buf), Decoded::Corrupt(Corrupt::BadLen));
        buf[0..4].copy_from_slice(&((MAX_RECORD_LEN + 1) as u32).to_le_bytes());
        assert_eq!(decode(&buf), Decoded::Corrupt(Corrupt::BadLen));
    }

    #[test]
    fn bad_envelope_len_with_a_good_crc_is_corrupt() {
        let mut buf = encode(1, 2, b"e", b"p");
        buf[24..28].copy_from_slice(&100u32.to_le_bytes());
        let crc = crc32c::crc32c(&buf[8..]);
        buf[4..8].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(decode(&buf), Decoded::Corrupt(Corrupt::BadEnvelopeLen));
    }

    proptest! {
        #[test]
        fn round_trips(offset: u64, ts: u64,
                       env in proptest::collection::vec(any::<u8>(), 0..64),
                       payload in proptest::collection::vec(any::<u8>(), 0..512),
                       trailing in proptest::collection::vec(any::<u8>(), 0..16)) {
            let mut buf = encode(offset, ts, &env, &payload);
            let size = buf.len();
            buf.extend_from_slice(&trailing);
            match decode(&buf) {
                Decoded::Record(r, n) => {
                    prop_assert_eq!(n, size);
                    prop_assert_eq!(r.offset, offset);
                    prop_assert_eq!(r.timestamp_ns, ts);
                    prop_assert_eq!(r.envelope, &env[..]);
                    prop_assert_eq!(r.payload, &payload[..]);
                }
                other => prop_assert!(false, "decoded {:?}", other),
            }
        }

        #[test]
        fn any_single_bit_flip_in_the_body_is_caught(
            payload in proptest::collection::vec(any::<u8>(), 0..256),
            bit in any::<usize>(),
        ) {
            let mut buf = encode(3, 4, b"hdr", &payload);
            let bit = bit % ((buf.len() - 4) * 8);
            // Flip any bit but those of `len` (which changes what is read instead).
            let byte = 4 + bit / 8;
            buf[byte] ^= 1 << (bit % 8);
            prop_assert!(!matches!(decode(&buf), Decoded::Record(..)));
        }

        #[test]
        fn hostile_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            match decode(&bytes) {
                Decoded::Record(_, n) => prop_assert!(n <= bytes.len()),
                Decoded::Incomplete { needed: Some(n) } => {
                    prop_assert!(n > bytes.len() && n <= RECORD_PREFIX + MAX_RECORD_LEN)
                }
                _ => {}
            }
        }
    }
}
