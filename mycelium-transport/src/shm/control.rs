//! [`ControlReader`]: the frames of a shared-memory control socket, with the fds they carry.
//!
//! - Every read is one `recvmsg` ([`recv_fds`]): a plain `read` would discard fds attached to
//!   the bytes it reads. The caller decides when to read (after `poll`, or inside tokio's
//!   `try_io`) and how many fds one read may bring.
//! - Bytes are appended to one buffer and fds to one FIFO queue, in arrival order. The kernel
//!   delivers a frame's fds with its first byte, so when a frame is decoded the fds at the
//!   front of the queue are its own: the caller takes them with [`ControlReader::take_fds`]
//!   (`docs/protocol.md` §7.8, Passing file descriptors).
//! - Decoding follows the codec's contract: a partial frame is `Ok(None)`; a `len` above the
//!   limit is refused from its 4 bytes.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};

use bytes::{Buf, BytesMut};

use crate::codec::peek_frame;
use crate::error::DecodeError;
use crate::frame::Frame;
use crate::shm::recv_fds;

/// Bytes asked of the kernel per read. A read stops at each frame that carries fds anyway, and
/// control frames are small; a caller that wants everything reads until `WouldBlock`.
pub const CONTROL_READ_CHUNK: usize = 4096;

/// What one read brought.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// The peer closed its end (0 bytes).
    Closed,
    /// `bytes` bytes and `fds` fds were appended.
    Data {
        /// Bytes read.
        bytes: usize,
        /// Fds that came with them.
        fds: usize,
    },
}

impl Received {
    /// Whether more may be waiting: the read filled its chunk, or stopped at a frame that
    /// carried fds (the kernel ends a read there).
    pub fn may_have_more(self) -> bool {
        matches!(self, Received::Data { bytes, fds } if bytes == CONTROL_READ_CHUNK || fds > 0)
    }
}

/// The read side of one control socket: buffered bytes and received fds not yet taken.
#[derive(Debug, Default)]
pub struct ControlReader {
    /// Bytes read and not yet decoded.
    buf: BytesMut,
    /// Fds received and not yet taken by a frame; closed when the reader drops.
    fds: VecDeque<OwnedFd>,
}

impl ControlReader {
    /// An empty reader.
    pub fn new() -> ControlReader {
        ControlReader::default()
    }

    /// One `recvmsg` of up to [`CONTROL_READ_CHUNK`] bytes and `max_fds` fds from `socket`.
    ///
    /// # Errors
    ///
    /// As [`recv_fds`]: `WouldBlock` on a non-blocking socket with nothing to read,
    /// `InvalidData` when the peer sent more than `max_fds` fds with one read's bytes (they
    /// are closed: the session cannot be trusted any more), otherwise the OS error.
    pub fn recv(&mut self, socket: BorrowedFd<'_>, max_fds: usize) -> io::Result<Received> {
        let mut chunk = [0u8; CONTROL_READ_CHUNK];
        let (bytes, fds) = recv_fds(&socket, &mut chunk, max_fds)?;
        if bytes == 0 {
            return Ok(Received::Closed);
        }
        self.buf.extend_from_slice(&chunk[..bytes]);
        let count = fds.len();
        self.fds.extend(fds);
        Ok(Received::Data { bytes, fds: count })
    }

    /// The next complete frame, consumed; `Ok(None)` while it is partial.
    ///
    /// # Errors
    ///
    /// A header error (nothing consumed: the stream cannot be resynchronised), or a malformed
    /// body (the frame is consumed).
    pub fn next_frame(&mut self, max_frame_len: usize) -> Result<Option<Frame>, DecodeError> {
        match peek_frame(&self.buf, max_frame_len)? {
            None => Ok(None),
            Some((view, used)) => {
                let frame = view.to_frame();
                self.buf.advance(used);
                frame.map(Some)
            }
        }
    }

    /// The bytes read and not yet decoded, for a handshake machine that reads its frame first
    /// ([`crate::handshake`]).
    pub fn buffer_mut(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// Takes the `count` fds at the front of the queue, or `None` (taking none) if fewer
    /// arrived: the frame announced fds its bytes did not carry.
    pub fn take_fds(&mut self, count: usize) -> Option<Vec<OwnedFd>> {
        if self.fds.len() < count {
            return None;
        }
        Some(self.fds.drain(..count).collect())
    }

    /// Fds received and not yet taken.
    pub fn pending_fds(&self) -> usize {
        self.fds.len()
    }
}

#[cfg(test)]
mod reads {
    use super::*;
    use crate::codec::encode_frame;
    use crate::shm::send_fds;
    use std::io::Write;
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;

    fn encoded(frame: &Frame) -> Vec<u8> {
        let mut buf = BytesMut::new();
        encode_frame(frame, &mut buf).expect("encodes");
        buf.to_vec()
    }

    #[test]
    fn frames_are_decoded_in_order_and_their_fds_queued_with_them() {
        let (mut a, b) = UnixStream::pair().expect("pair");
        let pipe = std::fs::File::open("/dev/null").expect("/dev/null");
        send_fds(&a, &encoded(&Frame::Ping { token: 1 }), &[pipe.as_fd()]).expect("sent");
        a.write_all(&encoded(&Frame::Ping { token: 2 }))
            .expect("sent");
        let mut reader = ControlReader::new();
        let first = reader.recv(b.as_fd(), 4).expect("read");
        assert!(matches!(first, Received::Data { fds: 1, .. }));
        assert!(
            first.may_have_more(),
            "a read stops at a frame that carries fds"
        );
        let second = reader.recv(b.as_fd(), 4).expect("read");
        assert!(matches!(second, Received::Data { fds: 0, .. }));
        assert_eq!(
            reader.next_frame(64).expect("decodes"),
            Some(Frame::Ping { token: 1 })
        );
        assert_eq!(reader.pending_fds(), 1);
        assert!(reader.take_fds(2).is_none());
        assert_eq!(reader.take_fds(1).map(|fds| fds.len()), Some(1));
        assert_eq!(
            reader.next_frame(64).expect("decodes"),
            Some(Frame::Ping { token: 2 })
        );
        assert!(reader.next_frame(64).expect("partial").is_none());
        drop(a);
        assert_eq!(reader.recv(b.as_fd(), 4).expect("eof"), Received::Closed);
    }

    #[test]
    fn a_partial_frame_waits_and_an_oversized_one_is_refused_from_its_length() {
        let mut reader = ControlReader::new();
        let bytes = encoded(&Frame::Ping { token: 7 });
        reader.buffer_mut().extend_from_slice(&bytes[..5]);
        assert!(reader.next_frame(64).expect("partial").is_none());
        reader.buffer_mut().extend_from_slice(&bytes[5..]);
        assert_eq!(
            reader.next_frame(64).expect("whole"),
            Some(Frame::Ping { token: 7 })
        );
        reader.buffer_mut().extend_from_slice(&bytes);
        assert!(matches!(
            reader.next_frame(4),
            Err(DecodeError::FrameTooLarge { .. })
        ));
    }

    #[test]
    fn more_fds_than_allowed_in_one_read_is_invalid_data() {
        let (a, b) = UnixStream::pair().expect("pair");
        let null = std::fs::File::open("/dev/null").expect("/dev/null");
        let fds = [null.as_fd(), null.as_fd(), null.as_fd()];
        send_fds(&a, &encoded(&Frame::Ping { token: 1 }), &fds).expect("sent");
        let mut reader = ControlReader::new();
        let error = reader.recv(b.as_fd(), 2).expect_err("too many fds");
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        assert_eq!(reader.pending_fds(), 0);
    }
}
