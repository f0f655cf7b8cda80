//! Sizing a read buffer before the next `read` from a stream of frames.
//!
//! - Asks for at least `chunk` bytes of spare capacity, so many frames arrive per syscall.
//! - When the buffer holds the start of a frame larger than that, asks for the rest of the frame
//!   at once instead of growing it read by read.
//! - The announced length is clamped to `max_frame_len`, so a peer cannot make it reserve more
//!   than the limit in force, even if the caller has not yet checked the header with
//!   [`peek_frame`](super::peek_frame).

use bytes::BytesMut;

/// Makes room in `buf` for the next read; see the module docs.
pub fn reserve_for_read(buf: &mut BytesMut, chunk: usize, max_frame_len: usize) {
    let mut want = chunk;
    if let Some(len_bytes) = buf.first_chunk::<4>() {
        let len = (u32::from_le_bytes(*len_bytes) as usize).min(max_frame_len);
        let frame_total = len.saturating_add(4);
        want = want.max(frame_total.saturating_sub(buf.len()));
    }
    if buf.capacity() - buf.len() < want / 2 {
        buf.reserve(want);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_buffer_gets_a_whole_chunk() {
        let mut buf = BytesMut::new();
        reserve_for_read(&mut buf, 4096, 1 << 20);
        assert!(buf.capacity() >= 4096);
    }

    #[test]
    fn a_large_partial_frame_gets_room_for_its_rest() {
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&(1_000_000u32).to_le_bytes());
        buf.extend_from_slice(&[1, 0x10]);
        reserve_for_read(&mut buf, 4096, 1 << 20);
        assert!(buf.capacity() - buf.len() >= 1_000_004 - 6);
    }

    #[test]
    fn an_announced_length_beyond_the_limit_reserves_no_more_than_the_limit() {
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&u32::MAX.to_le_bytes());
        reserve_for_read(&mut buf, 4096, 65536);
        assert!(buf.capacity() < 1 << 20, "reserved {}", buf.capacity());
    }
}
