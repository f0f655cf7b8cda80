//! [`RawConnection`]: the one raw-protocol client the tests use to speak bytes to a real broker.
//!
//! - The handshake is the transport's own [`ClientHandshake`]; frames are written with
//!   [`encode_frame`] (or sent as arbitrary bytes, for tests of bad input) and read with
//!   [`peek_frame`] from a buffer, so a test sees every frame the broker sends, in order.
//! - Reads go through `recvmsg`, so a shared-memory session's file descriptors are kept with the
//!   frames they came with ([`RawConnection::recv_with_fds`]).
//! - Every read has a deadline (by default [`DEADLINE`](super::DEADLINE)): a broker that hangs
//!   fails the test instead of hanging it.
//! - The `expect_*` methods assert the protocol's rules for an answer (error frames' fields, the
//!   end of the stream), so every test checks them the same way.

use std::io::{ErrorKind, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use mycelium_transport::handshake::Opening;
use mycelium_transport::shm::{recv_fds, send_fds};
use mycelium_transport::{
    encode_frame, peek_frame, ClientHandshake, ErrorCode, Frame, RoutingKind, TopicStats,
    HANDSHAKE_MAX_FRAME_LEN, NO_TOPIC,
};

/// A frame's bytes.
pub fn encoded(frame: &Frame) -> Vec<u8> {
    let mut buf = BytesMut::new();
    encode_frame(frame, &mut buf).expect("test frames are encodable");
    buf.to_vec()
}

/// The first frame of a client called `name`: `Hello`, or `ShmHello` for `opening`
/// [`Opening::SharedMemory`].
pub fn hello(opening: Opening, name: &str) -> Frame {
    ClientHandshake::new(opening, uuid::Uuid::new_v4(), name).hello()
}

/// One raw connection: bytes out, frames (and file descriptors) in, every read bounded by a
/// deadline.
pub struct RawConnection {
    /// Names the connection in failure messages.
    name: String,
    stream: UnixStream,
    /// Bytes read but not yet taken as frames.
    buf: BytesMut,
    /// File descriptors received with the bytes in `buf`, not yet handed out.
    fds: Vec<OwnedFd>,
    next_request: u32,
    /// The largest `len` field accepted from the broker.
    max_frame_len: usize,
    /// How long any one read may wait for the broker.
    deadline: Duration,
}

impl RawConnection {
    /// Connects without sending anything.
    pub fn connect(socket: &Path, name: &str) -> RawConnection {
        let stream = UnixStream::connect(socket).expect("connecting to the broker");
        stream
            .set_write_timeout(Some(super::DEADLINE))
            .expect("write timeout");
        RawConnection {
            name: name.to_owned(),
            stream,
            buf: BytesMut::new(),
            fds: Vec::new(),
            next_request: 1,
            max_frame_len: u32::MAX as usize,
            deadline: super::DEADLINE,
        }
    }

    /// The same connection, whose reads (and writes) wait at most `deadline`.
    pub fn within(self, deadline: Duration) -> RawConnection {
        self.stream
            .set_write_timeout(Some(deadline))
            .expect("write timeout");
        RawConnection { deadline, ..self }
    }

    /// Connects and completes a message connection's handshake.
    pub fn open(socket: &Path, name: &str) -> RawConnection {
        let mut raw = RawConnection::connect(socket, name);
        raw.handshake(Opening::Messages);
        raw
    }

    /// Connects and completes a shared-memory session's handshake. The broker's frames on a
    /// session must stay within [`HANDSHAKE_MAX_FRAME_LEN`] throughout.
    pub fn open_shm(socket: &Path, name: &str) -> RawConnection {
        let mut raw = RawConnection::connect(socket, name);
        raw.max_frame_len = HANDSHAKE_MAX_FRAME_LEN;
        raw.handshake(Opening::SharedMemory);
        raw
    }

    /// Sends the first frame for `opening` and asserts that the broker answers `Welcome`, which
    /// it returns.
    pub fn handshake(&mut self, opening: Opening) -> Frame {
        self.send_frame(&hello(opening, &self.name.clone()));
        let welcome = self.recv();
        assert!(
            matches!(welcome, Frame::Welcome { .. }),
            "{}: expected Welcome, got {welcome:?}",
            self.name
        );
        welcome
    }

    /// The socket, for tests that pass it on (e.g. to send file descriptors).
    pub fn stream(&self) -> &UnixStream {
        &self.stream
    }

    /// The socket alone, for tests that only hold the connection open.
    pub fn into_stream(self) -> UnixStream {
        self.stream
    }

    /// Writes `bytes` as they are.
    pub fn send(&mut self, bytes: &[u8]) {
        if let Err(error) = self
            .stream
            .write_all(bytes)
            .and_then(|()| self.stream.flush())
        {
            panic!(
                "{}: writing {} bytes failed: {error}",
                self.name,
                bytes.len()
            );
        }
    }

    /// Writes one frame.
    pub fn send_frame(&mut self, frame: &Frame) {
        self.send(&encoded(frame));
    }

    /// Writes one frame with `fds` attached (`SCM_RIGHTS`), as a shared-memory client does.
    pub fn send_frame_with_fds(&mut self, frame: &Frame, fds: &[BorrowedFd<'_>]) {
        if let Err(error) = send_fds(&self.stream, &encoded(frame), fds) {
            panic!("{}: sending {frame:?} with fds failed: {error}", self.name);
        }
    }

    /// Reads once into the buffer; `Ok(0)` is the end of the stream.
    fn read_some(&mut self, deadline: Instant) -> std::io::Result<usize> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ErrorKind::TimedOut.into());
        }
        self.stream.set_read_timeout(Some(left))?;
        let mut chunk = [0u8; 64 * 1024];
        let (n, fds) = recv_fds(&self.stream.as_fd(), &mut chunk, 64)?;
        self.buf.extend_from_slice(&chunk[..n]);
        self.fds.extend(fds);
        Ok(n)
    }

    /// A whole frame from the front of the buffer, consumed, if there is one.
    fn take_frame(&mut self) -> Option<Frame> {
        let (view, used) = match peek_frame(&self.buf, self.max_frame_len) {
            Ok(found) => found?,
            Err(error) => panic!(
                "{}: the broker sent a bad frame header (limit {}): {error}",
                self.name, self.max_frame_len
            ),
        };
        let frame = match view.to_frame() {
            Ok(frame) => frame,
            Err(error) => panic!(
                "{}: the broker sent an undecodable frame: {error}",
                self.name
            ),
        };
        self.buf.advance(used);
        Some(frame)
    }

    /// The next frame from the broker, or `None` at the end of the stream; fails after the
    /// deadline.
    pub fn next_frame(&mut self) -> Option<Frame> {
        let deadline = Instant::now() + self.deadline;
        loop {
            if let Some(frame) = self.take_frame() {
                return Some(frame);
            }
            match self.read_some(deadline) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(error) => panic!(
                    "{}: no frame from the broker within {:?}: {error}",
                    self.name, self.deadline
                ),
            }
        }
    }

    /// The next frame from the broker; fails on end of stream or after the deadline.
    pub fn recv(&mut self) -> Frame {
        match self.next_frame() {
            Some(frame) => frame,
            None => panic!(
                "{}: the broker closed the connection before a frame came",
                self.name
            ),
        }
    }

    /// The next frame and every file descriptor received up to its end (the broker sends a
    /// frame that carries descriptors in a message of its own).
    pub fn recv_with_fds(&mut self) -> (Frame, Vec<OwnedFd>) {
        let frame = self.recv();
        (frame, std::mem::take(&mut self.fds))
    }

    /// Reads frames until `want` matches one; returns every frame read, the matching one last.
    pub fn recv_until(&mut self, want: impl Fn(&Frame) -> bool) -> Vec<Frame> {
        let mut frames = Vec::new();
        loop {
            let frame = match self.next_frame() {
                Some(frame) => frame,
                None => panic!(
                    "{}: the broker closed the connection; frames so far: {frames:?}",
                    self.name
                ),
            };
            let done = want(&frame);
            frames.push(frame);
            if done {
                return frames;
            }
        }
    }

    /// Asserts that the broker ends the stream, without sending anything more, within the
    /// deadline.
    pub fn expect_closed(&mut self) {
        let deadline = Instant::now() + self.deadline;
        loop {
            if let Some(frame) = self.take_frame() {
                panic!(
                    "{}: expected the end of the stream, got {frame:?}",
                    self.name
                );
            }
            match self.read_some(deadline) {
                Ok(0) => {
                    assert!(
                        self.buf.is_empty(),
                        "{}: the stream ended inside a frame",
                        self.name
                    );
                    return;
                }
                Ok(_) => {}
                Err(error) => panic!(
                    "{}: the broker did not close the connection within {:?}: {error}",
                    self.name, self.deadline
                ),
            }
        }
    }

    /// Asserts that the next frame is a fatal `Error` with `code`, then the end of the stream.
    pub fn expect_fatal(&mut self, code: ErrorCode) {
        match self.recv() {
            Frame::Error {
                request_id,
                code: got,
                fatal,
                topic_id,
                message,
                refused,
            } => {
                assert_eq!(
                    got, code,
                    "{}: wrong error code (message: {message:?})",
                    self.name
                );
                assert!(fatal, "{}: {code:?} must be fatal", self.name);
                assert_eq!(
                    refused, 0,
                    "{}: a fatal error refuses no publish",
                    self.name
                );
                assert_eq!(
                    request_id, 0,
                    "{}: a fatal error answers no request",
                    self.name
                );
                assert_eq!(
                    topic_id, NO_TOPIC,
                    "{}: a fatal error names no topic",
                    self.name
                );
                assert!(!message.is_empty(), "{}: the error says nothing", self.name);
            }
            other => panic!(
                "{}: expected a fatal {code:?} error, got {other:?}",
                self.name
            ),
        }
        self.expect_closed();
    }

    /// Asserts that the next frame is the non-fatal refusal of a `Publish` on `topic_id`.
    pub fn expect_publish_refused(&mut self, code: ErrorCode, topic: u32) {
        match self.recv() {
            Frame::Error {
                request_id,
                code: got,
                fatal,
                topic_id,
                message,
                refused,
            } => {
                assert_eq!(
                    got, code,
                    "{}: wrong error code (message: {message:?})",
                    self.name
                );
                assert!(
                    !fatal,
                    "{}: refusing a publish must not close the connection",
                    self.name
                );
                assert_eq!(
                    refused, 1,
                    "{}: the refusal of one publish says it refuses one message",
                    self.name
                );
                assert_eq!(
                    request_id, 0,
                    "{}: a refused publish has request_id 0",
                    self.name
                );
                assert_eq!(
                    topic_id, topic,
                    "{}: the error must name the publish's topic id",
                    self.name
                );
            }
            other => panic!("{}: expected a {code:?} error, got {other:?}", self.name),
        }
    }

    /// Asserts that the next frame is the non-fatal refusal of request `request`.
    pub fn expect_request_refused(&mut self, code: ErrorCode, request: u32, topic: u32) {
        match self.recv() {
            Frame::Error {
                request_id,
                code: got,
                fatal: false,
                topic_id,
                message,
                refused: 0,
            } if request_id == request => {
                assert_eq!(
                    got, code,
                    "{}: wrong error code (message: {message:?})",
                    self.name
                );
                assert_eq!(topic_id, topic, "{}: wrong topic id in {code:?}", self.name);
            }
            other => panic!(
                "{}: expected a non-fatal {code:?} for request {request}, got {other:?}",
                self.name
            ),
        }
    }

    /// A fresh request id for this connection.
    pub fn request_id(&mut self) -> u32 {
        let id = self.next_request;
        self.next_request += 1;
        id
    }

    /// Sends `Advertise` or `Subscribe` for fanout topic `topic` and returns the `TopicAck`'s
    /// topic id and limit.
    fn topic_request(&mut self, topic: &str, subscribe: bool) -> (u32, u32) {
        let request_id = self.request_id();
        let topic = topic.to_owned();
        self.send_frame(&if subscribe {
            Frame::Subscribe {
                request_id,
                prefetch: 0,
                no_echo: false,
                topic,
            }
        } else {
            Frame::Advertise { request_id, topic }
        });
        match self.recv() {
            Frame::TopicAck {
                request_id: answered,
                topic_id,
                routing: RoutingKind::Fanout,
                max_message_size,
                prefetch: 0,
                ..
            } if answered == request_id => (topic_id, max_message_size),
            other => panic!(
                "{}: expected a TopicAck for request {request_id}, got {other:?}",
                self.name
            ),
        }
    }

    /// Advertises fanout topic `topic`: its topic id and payload limit.
    pub fn advertise(&mut self, topic: &str) -> (u32, u32) {
        self.topic_request(topic, false)
    }

    /// Subscribes to fanout topic `topic`: its topic id.
    pub fn subscribe(&mut self, topic: &str) -> u32 {
        self.topic_request(topic, true).0
    }

    /// Sends a `Ping` and asserts that the next frame is its `Pong`: everything sent before has
    /// been processed (the protocol's flush barrier) and the connection is still open.
    pub fn ping(&mut self) {
        let token = u64::from(self.request_id()) | 0xabcd_0000_0000;
        self.send_frame(&Frame::Ping { token });
        match self.recv() {
            Frame::Pong { token: got } if got == token => {}
            other => panic!("{}: expected Pong {token}, got {other:?}", self.name),
        }
    }

    /// Asserts that the next frame is the `Deliver` of `payload` on `topic`.
    pub fn expect_deliver(&mut self, topic: u32, payload: &[u8]) {
        match self.recv() {
            Frame::Deliver {
                topic_id,
                payload: got,
            } if topic_id == topic && got == payload => {}
            other => panic!(
                "{}: expected Deliver of {} bytes on topic {topic}, got {other:?}",
                self.name,
                payload.len()
            ),
        }
    }

    /// Sends a `PublishEnvelope` of `message` (envelope then payload, sent as given, checked
    /// or not) on `topic_id`.
    pub fn publish_envelope(&mut self, topic_id: u32, message: &[u8]) {
        self.send_frame(&Frame::PublishEnvelope {
            topic_id,
            message: bytes::Bytes::copy_from_slice(message),
        });
    }

    /// Asserts that the next frame is the `DeliverEnvelope` of `message` (envelope then
    /// payload, byte for byte) on `topic`.
    pub fn expect_deliver_envelope(&mut self, topic: u32, message: &[u8]) {
        match self.recv() {
            Frame::DeliverEnvelope {
                topic_id,
                message: got,
            } if topic_id == topic && got == message => {}
            other => panic!(
                "{}: expected DeliverEnvelope of {} bytes on topic {topic}, got {other:?}",
                self.name,
                message.len()
            ),
        }
    }

    /// Sends `Subscribe` for `topic` with the no-echo flag and returns the answer (a
    /// `TopicAck`, or the refusal), whatever it is.
    pub fn subscribe_no_echo(&mut self, topic: &str) -> Frame {
        let request_id = self.request_id();
        self.send_frame(&Frame::Subscribe {
            request_id,
            prefetch: 0,
            no_echo: true,
            topic: topic.to_owned(),
        });
        self.recv()
    }

    /// The broker's open connections and topic counters, asked on this connection.
    pub fn stats(&mut self) -> (u32, Vec<TopicStats>) {
        let request_id = self.request_id();
        self.send_frame(&Frame::StatsRequest { request_id });
        match self.recv() {
            Frame::Stats {
                request_id: answered,
                connections,
                topics,
                ..
            } if answered == request_id => (connections, topics),
            other => panic!("{}: expected Stats, got {other:?}", self.name),
        }
    }
}

/// A raw connection past its handshake (subscribed to `topic` if given) whose broker-side
/// reader has handled a frame: the `Pong` of a `Ping` sent after the rest was read. Everything
/// goes out in one write, so that opening thousands of them stays quick.
pub fn handshaken(socket: &Path, topic: Option<&str>) -> UnixStream {
    let mut raw = RawConnection::connect(socket, "raw");
    let mut out = encoded(&hello(Opening::Messages, "raw"));
    if let Some(topic) = topic {
        out.extend(encoded(&Frame::Subscribe {
            request_id: 1,
            prefetch: 0,
            no_echo: false,
            topic: topic.into(),
        }));
    }
    out.extend(encoded(&Frame::Ping { token: 7 }));
    raw.send(&out);
    loop {
        match raw.recv() {
            Frame::Pong { .. } => {
                let stream = raw.into_stream();
                stream
                    .set_read_timeout(Some(super::DEADLINE))
                    .expect("read timeout");
                return stream;
            }
            Frame::Error { message, .. } => panic!("refused: {message}"),
            _ => {}
        }
    }
}
