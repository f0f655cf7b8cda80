//! [`Control`]: the control socket of a shared-memory session, and what is read from it.
//!
//! - One blocking, non-`tokio` Unix socket, kept non-blocking and waited on with `poll`, so a
//!   subscription can look for news without ever blocking on it.
//! - The broker's frames may carry fds (`SCM_RIGHTS`): every read is a `recvmsg`, fds are
//!   queued in arrival order, and each frame that announces rings takes its fds from the front
//!   of the queue (the kernel delivers a message's fds with its first byte, so order matches).
//! - Frames are filed as they are read: answers by `request_id` ([`Reply`]), and
//!   `ShmRingAdded`/`ShmRingRemoved`/`ShmSegment`/`ShmDetached` as [`RingNews`] per attachment,
//!   until their caller or subscription picks them up.
//! - Whoever looks at the socket reads everything there is (one `recvmsg` stops at each frame
//!   that carries an fd), so a batch of news is whole as of the look: a `ShmDetached` sent after
//!   a `ShmRingAdded` is seen with it, and its reason wins over what the freed slot would say.

use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use mycelium_transport::handshake::{ClientHandshake, Welcome};
use mycelium_transport::limits::{MAX_BROKER_CONTROL_FRAME_LEN, MAX_RING_SEGMENT_LEN};
use mycelium_transport::shm::reference::SegmentRef;
use mycelium_transport::shm::{send_fds_partial, ControlReader, Received, Segment};
use mycelium_transport::NO_REQUEST;
use mycelium_transport::{codec, ErrorCode, Frame, ShmRing, TopicName, MAX_RINGS_PER_GRANT};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::error::ClientError;
use crate::socket::welcome_error;

/// Most reads of the control socket per look at it (4 KiB each): a broker that floods the
/// session cannot keep a look from returning.
const MAX_READS_PER_LOOK: usize = 256;

/// A ring handed over by the broker: its id, the slot reserved in it (subscribers), its fd.
pub(crate) struct GrantedRing {
    pub(crate) ring: ShmRing,
    pub(crate) segment: Segment,
    /// For a pattern subscription: the topic whose messages the ring carries.
    pub(crate) topic: Option<TopicName>,
}

/// What the broker said about a subscription's rings since it last looked.
pub(crate) enum RingNews {
    Added(GrantedRing),
    Removed(u32),
    /// The broker ended the attachment (a slow subscriber on a `disconnect` topic).
    Detached(ErrorCode, String),
    /// A payload segment for ring `ring_id`, named by a reference frame to come; no fd when
    /// the broker dropped the message for this subscriber.
    Segment {
        ring_id: u32,
        reference: SegmentRef,
        fd: Option<OwnedFd>,
    },
}

/// An answer to a request, kept until its caller collects it.
pub(super) enum Reply {
    Frame(Frame),
    Grant(Frame, Vec<OwnedFd>),
}

pub(super) struct Control {
    /// Shared with the session's `stream`, which lends its fd out for polling only.
    pub(super) stream: Arc<UnixStream>,
    /// The broker's bytes not yet filed, and the fds that came with them.
    pub(super) reader: ControlReader,
    pub(super) replies: HashMap<u32, Reply>,
    pub(super) news: HashMap<u32, VecDeque<RingNews>>,
    /// Detaches sent from `Drop`, whose answer nobody waits for: request id to attachment.
    pub(super) unanswered: HashMap<u32, u32>,
    /// Attachments being ended: news for them still on its way is dropped (its fds closed)
    /// rather than kept for nobody. The broker sends all of it before the detach's answer,
    /// which ends the entry.
    pub(super) detached: std::collections::HashSet<u32>,
    /// Set once the session is over; every later call fails with it.
    pub(super) gone: Option<ClientError>,
    /// False until the handshake's answer was taken: frames wait in `buf` until then.
    pub(super) welcomed: bool,
}

impl Control {
    /// A control session on `stream`, before the handshake.
    pub(super) fn new(stream: Arc<UnixStream>) -> Control {
        Control {
            stream,
            reader: ControlReader::new(),
            replies: HashMap::new(),
            news: HashMap::new(),
            unanswered: HashMap::new(),
            detached: std::collections::HashSet::new(),
            gone: None,
            welcomed: false,
        }
    }

    /// Writes one frame, waiting for room up to `timeout`.
    pub(super) fn write(&mut self, frame: &Frame, timeout: Duration) -> Result<(), ClientError> {
        let mut bytes = BytesMut::new();
        codec::encode_frame(frame, &mut bytes).map_err(|e| ClientError::Protocol(e.to_string()))?;
        let deadline = Instant::now() + timeout;
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            match (&*self.stream).write(rest) {
                Ok(0) => return Err(self.fail(ClientError::gone("the broker closed the session"))),
                Ok(n) => rest = &rest[n..],
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(ClientError::Timeout("writing to the broker"));
                    }
                    wait_for(&self.stream, PollFlags::POLLOUT, Some(left));
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.fail(ClientError::gone(e.to_string()))),
            }
        }
        Ok(())
    }

    /// Writes one frame with `fd` attached to its first byte, waiting for room up to
    /// `timeout`.
    pub(super) fn write_with_fd(
        &mut self,
        frame: &Frame,
        fd: BorrowedFd<'_>,
        timeout: Duration,
    ) -> Result<(), ClientError> {
        let mut bytes = BytesMut::new();
        codec::encode_frame(frame, &mut bytes).map_err(|e| ClientError::Protocol(e.to_string()))?;
        let deadline = Instant::now() + timeout;
        let sent = loop {
            match send_fds_partial(&self.stream.as_fd(), &bytes, &[fd]) {
                Ok(sent) => break sent,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(ClientError::Timeout("writing to the broker"));
                    }
                    wait_for(&self.stream, PollFlags::POLLOUT, Some(left));
                }
                Err(e) => return Err(self.fail(ClientError::gone(e.to_string()))),
            }
        };
        let mut rest = &bytes[sent..];
        while !rest.is_empty() {
            match (&*self.stream).write(rest) {
                Ok(0) => return Err(self.fail(ClientError::gone("the broker closed the session"))),
                Ok(n) => rest = &rest[n..],
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        // Half a frame is on the wire: the session cannot go on.
                        return Err(self.fail(ClientError::Timeout("writing to the broker")));
                    }
                    wait_for(&self.stream, PollFlags::POLLOUT, Some(left));
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.fail(ClientError::gone(e.to_string()))),
            }
        }
        Ok(())
    }

    fn fail(&mut self, error: ClientError) -> ClientError {
        self.gone.get_or_insert(error).clone()
    }

    /// Waits up to `timeout` for bytes, reads what is there and files every complete frame;
    /// `true` if more may be waiting: the read filled its buffer, or stopped at a frame that
    /// carried fds (the kernel ends a read there), or was interrupted.
    pub(super) fn read_some(&mut self, timeout: Option<Duration>) -> Result<bool, ClientError> {
        if self.gone.is_some() || !wait_for(&self.stream, PollFlags::POLLIN, timeout) {
            return Ok(false);
        }
        match self.reader.recv(self.stream.as_fd(), MAX_RINGS_PER_GRANT) {
            Ok(Received::Closed) => {
                self.fail(ClientError::gone("the broker closed the session"));
            }
            Ok(received) => {
                self.file_frames()?;
                return Ok(received.may_have_more());
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => return Ok(true),
            Err(e) => {
                self.fail(ClientError::gone(e.to_string()));
            }
        }
        Ok(false)
    }

    /// Waits up to `timeout` for bytes, then reads everything there is now (up to
    /// [`MAX_READS_PER_LOOK`] reads). One read stops at a frame that carries fds, so a single
    /// one could leave a `ShmDetached` behind the `ShmRingAdded` before it. A read that took
    /// all there was costs no second look.
    pub(super) fn read_available(&mut self, timeout: Option<Duration>) -> Result<(), ClientError> {
        if !self.read_some(timeout)? {
            return Ok(());
        }
        for _ in 1..MAX_READS_PER_LOOK {
            if !self.read_some(Some(Duration::ZERO))? {
                break;
            }
        }
        Ok(())
    }

    /// During the handshake: the broker's `Welcome`, if it has arrived.
    pub(super) fn take_handshake_answer(
        &mut self,
        handshake: &ClientHandshake,
    ) -> Result<Option<Welcome>, ClientError> {
        match handshake.receive(self.reader.buffer_mut()) {
            Ok(Some(welcome)) => {
                self.welcomed = true;
                self.file_frames()?;
                Ok(Some(welcome))
            }
            Ok(None) => Ok(None),
            Err(error) => Err(welcome_error(error)),
        }
    }

    /// Files every complete frame in the buffer as a reply or as news.
    fn file_frames(&mut self) -> Result<(), ClientError> {
        while self.welcomed {
            let frame = match self.reader.next_frame(MAX_BROKER_CONTROL_FRAME_LEN) {
                Ok(Some(frame)) => frame,
                Ok(None) => return Ok(()),
                Err(e) => return Err(self.fail(ClientError::Protocol(e.to_string()))),
            };
            self.file(frame)?;
        }
        Ok(())
    }

    /// If `request_id` is a detach sent from `Drop`, forgets it and its attachment.
    fn answered_detach(&mut self, request_id: u32) -> bool {
        match self.unanswered.remove(&request_id) {
            Some(attachment) => {
                self.detached.remove(&attachment);
                true
            }
            None => false,
        }
    }

    fn take_fds(&mut self, count: usize) -> Result<Vec<OwnedFd>, ClientError> {
        match self.reader.take_fds(count) {
            Some(fds) => Ok(fds),
            None => {
                let arrived = self.reader.pending_fds();
                Err(self.fail(ClientError::Protocol(format!(
                    "a frame announced {count} rings but {arrived} fds arrived"
                ))))
            }
        }
    }

    /// Files a ring handed over for `attachment` (its fd is next in the queue).
    fn ring_added(
        &mut self,
        attachment: u32,
        ring: ShmRing,
        topic: Option<TopicName>,
    ) -> Result<(), ClientError> {
        let fd = self.take_fds(1)?.into_iter().next();
        if self.detached.contains(&attachment) {
            return Ok(());
        }
        let segment = fd.map(|fd| Segment::from_fd(fd, MAX_RING_SEGMENT_LEN));
        match segment {
            Some(Ok(segment)) => {
                self.news
                    .entry(attachment)
                    .or_default()
                    .push_back(RingNews::Added(GrantedRing {
                        ring,
                        segment,
                        topic,
                    }))
            }
            Some(Err(error)) => {
                tracing::warn!(%error, ring = ring.ring_id, "unusable ring from the broker; skipped");
            }
            None => {}
        }
        Ok(())
    }

    fn file(&mut self, frame: Frame) -> Result<(), ClientError> {
        match frame {
            Frame::ShmGrant {
                request_id,
                ref rings,
                ..
            } => {
                let fds = self.take_fds(rings.len())?;
                self.replies.insert(request_id, Reply::Grant(frame, fds));
            }
            Frame::ShmRingAdded { attachment, ring } => self.ring_added(attachment, ring, None)?,
            Frame::ShmTopicRingAdded {
                attachment,
                ring,
                topic,
                ..
            } => self.ring_added(attachment, ring, Some(TopicName::from(topic.as_str())))?,
            Frame::ShmSegmentAdded {
                attachment,
                ring_id,
                segment,
                len,
                dropped,
            } => {
                let fd = if dropped {
                    None
                } else {
                    self.take_fds(1)?.into_iter().next()
                };
                if !self.detached.contains(&attachment) {
                    self.news
                        .entry(attachment)
                        .or_default()
                        .push_back(RingNews::Segment {
                            ring_id,
                            reference: SegmentRef { segment, len },
                            fd,
                        });
                }
            }
            Frame::ShmRingRemoved {
                attachment,
                ring_id,
            } if !self.detached.contains(&attachment) => self
                .news
                .entry(attachment)
                .or_default()
                .push_back(RingNews::Removed(ring_id)),
            Frame::Error {
                request_id,
                code,
                fatal,
                ref message,
                ..
            } => {
                if fatal {
                    let refused = ClientError::Refused {
                        code,
                        message: message.clone(),
                    };
                    self.fail(if code == ErrorCode::ShuttingDown {
                        ClientError::gone(message.clone())
                    } else {
                        refused
                    });
                }
                if request_id != NO_REQUEST && !self.answered_detach(request_id) {
                    self.replies.insert(request_id, Reply::Frame(frame));
                }
            }
            Frame::Ack { request_id } | Frame::Stats { request_id, .. } => {
                if !self.answered_detach(request_id) {
                    self.replies.insert(request_id, Reply::Frame(frame));
                }
            }
            Frame::Ping { token } => {
                let timeout = Duration::from_secs(1);
                let _ = self.write(&Frame::Pong { token }, timeout);
            }
            Frame::ShmDetached {
                attachment,
                code,
                message,
            } if !self.detached.contains(&attachment) => self
                .news
                .entry(attachment)
                .or_default()
                .push_back(RingNews::Detached(code, message)),
            Frame::Pong { .. } | Frame::ShmRingRemoved { .. } | Frame::ShmDetached { .. } => {}
            other => {
                return Err(self.fail(ClientError::Protocol(format!(
                    "unexpected frame on a shared-memory session: {other:?}"
                ))))
            }
        }
        Ok(())
    }
}

/// Waits until `stream` is ready for `flags` or `timeout` passes (`None`: no limit); `true`
/// when ready (or in error: the next call reports it).
fn wait_for(stream: &UnixStream, flags: PollFlags, timeout: Option<Duration>) -> bool {
    let timeout = match timeout {
        None => PollTimeout::NONE,
        Some(duration) => {
            let millis = duration.as_micros().div_ceil(1000);
            PollTimeout::try_from(millis).unwrap_or(PollTimeout::MAX)
        }
    };
    let mut fds = [PollFd::new(stream.as_fd(), flags)];
    matches!(poll(&mut fds, timeout), Ok(n) if n > 0)
}
