//! A cursor over a frame body that reads the protocol's field types.
//!
//! - Every read either returns the field and advances, or fails with a short reason and never
//!   panics, whatever the bytes.
//! - Reasons are `&'static str` so the parser stays allocation-free; the caller wraps them in
//!   [`DecodeError::Malformed`](crate::error::DecodeError::Malformed) with the frame's kind.

use uuid::Uuid;

use crate::frame::{ReloadOutcome, RoutingKind, ShmRole, MAX_NAME_LEN};

/// Why a body does not fit its kind's layout.
pub(crate) type Reason = &'static str;

/// Reads fields front to back from a borrowed body.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    /// Bytes not read yet.
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len()
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Reason> {
        let (head, tail) = self.buf.split_at_checked(n).ok_or("truncated body")?;
        self.buf = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Reason> {
        let (head, tail) = self.buf.split_first_chunk::<N>().ok_or("truncated body")?;
        self.buf = tail;
        Ok(*head)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, Reason> {
        self.array().map(u8::from_le_bytes)
    }

    pub(crate) fn u16(&mut self) -> Result<u16, Reason> {
        self.array().map(u16::from_le_bytes)
    }

    pub(crate) fn u32(&mut self) -> Result<u32, Reason> {
        self.array().map(u32::from_le_bytes)
    }

    pub(crate) fn u64(&mut self) -> Result<u64, Reason> {
        self.array().map(u64::from_le_bytes)
    }

    /// 16 bytes in RFC 4122 byte order (the order `Uuid::as_bytes` gives).
    pub(crate) fn uuid(&mut self) -> Result<Uuid, Reason> {
        self.array().map(Uuid::from_bytes)
    }

    /// A string behind a `u8` byte count; may be empty.
    pub(crate) fn str8(&mut self) -> Result<String, Reason> {
        let len = self.u8()?;
        self.utf8(usize::from(len))
    }

    /// A string behind a `u16` byte count; may be empty.
    pub(crate) fn str16(&mut self) -> Result<String, Reason> {
        let len = self.u16()?;
        self.utf8(usize::from(len))
    }

    /// A topic name: a `str8` of 1 to [`MAX_NAME_LEN`] bytes.
    pub(crate) fn topic(&mut self) -> Result<String, Reason> {
        let name = self.str8()?;
        if name.is_empty() {
            return Err("empty topic name");
        }
        debug_assert!(name.len() <= MAX_NAME_LEN, "a u8 prefix bounds the name");
        Ok(name)
    }

    pub(crate) fn routing(&mut self) -> Result<RoutingKind, Reason> {
        RoutingKind::from_u8(self.u8()?).ok_or("unknown routing kind")
    }

    pub(crate) fn shm_role(&mut self) -> Result<ShmRole, Reason> {
        ShmRole::from_u8(self.u8()?).ok_or("unknown shm role")
    }

    pub(crate) fn reload_outcome(&mut self) -> Result<ReloadOutcome, Reason> {
        ReloadOutcome::from_u8(self.u8()?).ok_or("unknown reload outcome")
    }

    /// Everything not read yet (a message payload).
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }

    /// Fails unless the whole body has been read: fixed layouts have no room for extensions.
    pub(crate) fn finish(self) -> Result<(), Reason> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err("trailing bytes")
        }
    }

    fn utf8(&mut self, len: usize) -> Result<String, Reason> {
        let bytes = self.take(len)?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| "string is not valid UTF-8")
    }
}

#[cfg(test)]
mod reads {
    use super::*;

    #[test]
    fn integers_are_little_endian_and_advance_the_cursor() {
        let bytes = [1, 2, 0, 3, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 9];
        let mut r = Reader::new(&bytes);
        assert_eq!(r.u8(), Ok(1));
        assert_eq!(r.u16(), Ok(2));
        assert_eq!(r.u32(), Ok(3));
        assert_eq!(r.u64(), Ok(4));
        assert_eq!(r.remaining(), 1);
        assert_eq!(r.rest(), &[9]);
        assert_eq!(r.finish(), Ok(()));
    }

    #[test]
    fn a_read_past_the_end_fails_without_consuming() {
        let mut r = Reader::new(&[1, 2, 3]);
        assert_eq!(r.u32(), Err("truncated body"));
        assert_eq!(r.remaining(), 3);
        assert_eq!(r.u16(), Ok(0x0201));
    }

    #[test]
    fn a_string_longer_than_the_body_is_truncated() {
        let mut r = Reader::new(&[5, b'a', b'b']);
        assert_eq!(r.str8(), Err("truncated body"));
    }

    #[test]
    fn str16_reads_a_two_byte_count() {
        let mut r = Reader::new(&[2, 0, b'h', b'i']);
        assert_eq!(r.str16().as_deref(), Ok("hi"));
        assert_eq!(r.finish(), Ok(()));
    }

    #[test]
    fn a_topic_must_not_be_empty_but_a_plain_name_may_be() {
        assert_eq!(Reader::new(&[0]).topic(), Err("empty topic name"));
        assert_eq!(Reader::new(&[0]).str8().as_deref(), Ok(""));
    }

    #[test]
    fn invalid_utf8_is_refused() {
        assert_eq!(
            Reader::new(&[2, 0xc3, 0x28]).str8(),
            Err("string is not valid UTF-8")
        );
    }

    #[test]
    fn routing_accepts_only_the_defined_values() {
        assert_eq!(Reader::new(&[0]).routing(), Ok(RoutingKind::Fanout));
        assert_eq!(Reader::new(&[1]).routing(), Ok(RoutingKind::Queue));
        assert_eq!(Reader::new(&[2]).routing(), Err("unknown routing kind"));
    }

    #[test]
    fn reload_outcome_accepts_only_the_defined_values() {
        assert_eq!(
            Reader::new(&[0]).reload_outcome(),
            Ok(ReloadOutcome::Applied)
        );
        assert_eq!(
            Reader::new(&[1]).reload_outcome(),
            Ok(ReloadOutcome::Unchanged)
        );
        assert_eq!(
            Reader::new(&[2]).reload_outcome(),
            Ok(ReloadOutcome::Failed)
        );
        assert_eq!(
            Reader::new(&[3]).reload_outcome(),
            Err("unknown reload outcome")
        );
    }

    #[test]
    fn unread_bytes_make_finish_fail() {
        let mut r = Reader::new(&[0, 0, 0, 0, 7]);
        assert_eq!(r.u32(), Ok(0));
        assert_eq!(r.finish(), Err("trailing bytes"));
    }
}
