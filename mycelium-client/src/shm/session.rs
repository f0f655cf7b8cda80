//! [`ShmClient`]: the control session with the broker, shared by a client's publishers and
//! subscriptions.
//!
//! - One blocking, non-`tokio` Unix socket, kept non-blocking and waited on with `poll`, so a
//!   subscription can look for news without ever blocking on it.
//! - The broker's frames may carry fds (`SCM_RIGHTS`): every read is a `recvmsg`, fds are
//!   queued in arrival order, and each frame that announces rings takes its fds from the front
//!   of the queue (the kernel delivers a message's fds with its first byte, so order matches).
//! - Answers are matched to requests by `request_id`; `ShmRingAdded`/`ShmRingRemoved` are queued
//!   per attachment until its subscription picks them up.
//! - Whoever looks at the socket reads everything there is (one `recvmsg` stops at each frame
//!   that carries an fd), so a batch of news is whole as of the look: a `ShmDetached` sent after
//!   a `ShmRingAdded` is seen with it, and its reason wins over what the freed slot would say.
//! - The end of an attachment (`ShmDetached`) or of the session (EOF, a fatal error) is learnt
//!   only by reading the socket: subscriptions read it when they wait and on the broker's
//!   notice, publishers every so often and whenever they wait (`publisher.rs`).

use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use mycelium_transport::handshake::{ClientHandshake, Opening, Welcome};
use mycelium_transport::limits::{MAX_BROKER_CONTROL_FRAME_LEN, MAX_RING_SEGMENT_LEN};
use mycelium_transport::shm::reference::SegmentRef;
use mycelium_transport::shm::{send_fds_partial, ControlReader, Received, Segment};
use mycelium_transport::NO_REQUEST;
use mycelium_transport::{
    codec, ErrorCode, Frame, RoutingKind, ShmRing, ShmRole, MAX_RINGS_PER_GRANT,
};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use uuid::Uuid;

use crate::error::ClientError;
use crate::shm::publisher::ShmPublisher;
use crate::shm::subscription::ShmSubscription;
use crate::socket::{welcome_error, BrokerInfo};

/// The shared-memory session's options: the `shm` field of
/// [`ClientOptions`](crate::ClientOptions).
#[derive(Debug, Clone)]
pub struct ShmOptions {
    /// Shown in the broker's logs.
    pub name: String,
    /// How long connecting, the handshake and each request may take.
    pub request_timeout: Duration,
    /// How long a waiting subscription (or a publisher facing a full ring) spins before it
    /// sleeps. Zero: sleep at once.
    pub spin: Duration,
    /// Never sleep: spin until a message (or room) comes. For threads pinned to a core of
    /// their own; on a shared core it steals time from the very publisher it waits for.
    pub busy_poll: bool,
}

impl Default for ShmOptions {
    fn default() -> ShmOptions {
        ShmOptions {
            name: String::new(),
            request_timeout: Duration::from_secs(10),
            spin: Duration::from_micros(20),
            busy_poll: false,
        }
    }
}

/// Most reads of the control socket per look at it (4 KiB each): a broker that floods the
/// session cannot keep a look from returning.
const MAX_READS_PER_LOOK: usize = 256;

/// A ring handed over by the broker: its id, the slot reserved in it (subscribers), its fd.
pub(crate) struct GrantedRing {
    pub(crate) ring: ShmRing,
    pub(crate) segment: Segment,
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
enum Reply {
    Frame(Frame),
    Grant(Frame, Vec<OwnedFd>),
}

struct Control {
    /// Shared with [`Session::stream`], which lends its fd out for polling only.
    stream: Arc<UnixStream>,
    /// The broker's bytes not yet filed, and the fds that came with them.
    reader: ControlReader,
    replies: HashMap<u32, Reply>,
    news: HashMap<u32, VecDeque<RingNews>>,
    /// Detaches sent from `Drop`, whose answer nobody waits for: request id to attachment.
    unanswered: HashMap<u32, u32>,
    /// Attachments being ended: news for them still on its way is dropped (its fds closed)
    /// rather than kept for nobody. The broker sends all of it before the detach's answer,
    /// which ends the entry.
    detached: std::collections::HashSet<u32>,
    /// Set once the session is over; every later call fails with it.
    gone: Option<ClientError>,
    /// False until the handshake's answer was taken: frames wait in `buf` until then.
    welcomed: bool,
}

pub(crate) struct Session {
    control: Mutex<Control>,
    /// The control socket, outside the lock: only for [`ShmClient`]'s `AsFd` (polling);
    /// every read and write goes through `control`.
    stream: Arc<UnixStream>,
    info: BrokerInfo,
    options: ShmOptions,
    next_request: AtomicU32,
}

/// A shared-memory client: a cheap `Clone` handle over one control session. See the module
/// docs.
#[derive(Clone)]
pub(crate) struct ShmClient {
    session: Arc<Session>,
}

impl std::fmt::Debug for ShmClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShmClient")
            .field("info", &self.session.info)
            .finish_non_exhaustive()
    }
}

/// The control socket, for an event loop that waits on the broker alongside its own fds: it
/// becomes readable when the broker sends something (news for a subscription, the end of an
/// attachment) and when the session ends (the broker stopped or died). It is then up to a
/// call of this client to read it: [`ShmPublisher::check`], or any receive of a subscription.
/// Only poll it: a read or write of your own would break the session.
impl AsFd for ShmClient {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.session.stream.as_fd()
    }
}

impl ShmClient {
    /// Connects to the broker's socket at `path` and opens a shared-memory session.
    ///
    /// # Errors
    ///
    /// [`ClientError::Connect`] when no broker answers; [`ClientError::Refused`] when the
    /// broker refuses (shared memory disabled, too many connections); [`ClientError::Timeout`].
    pub(crate) fn connect_with(
        path: impl AsRef<Path>,
        options: ShmOptions,
    ) -> Result<ShmClient, ClientError> {
        let path: PathBuf = path.as_ref().to_owned();
        let stream = UnixStream::connect(&path).map_err(|e| ClientError::Connect {
            path: path.clone(),
            reason: e.to_string(),
            kind: e.kind(),
        })?;
        stream
            .set_nonblocking(true)
            .map_err(|e| ClientError::gone(e.to_string()))?;
        let stream = Arc::new(stream);
        let mut control = Control {
            stream: Arc::clone(&stream),
            reader: ControlReader::new(),
            replies: HashMap::new(),
            news: HashMap::new(),
            unanswered: HashMap::new(),
            detached: std::collections::HashSet::new(),
            gone: None,
            welcomed: false,
        };
        let handshake = ClientHandshake::new(Opening::SharedMemory, Uuid::new_v4(), &*options.name);
        // A refusing broker may close before our hello is written: its error is still there
        // to read, and it is the better report.
        let write_error = control
            .write(&handshake.hello(), options.request_timeout)
            .err();
        let deadline = Instant::now() + options.request_timeout;
        let info = loop {
            if let Some(welcome) = control.take_handshake_answer(&handshake)? {
                break BrokerInfo::from(welcome);
            }
            if let Some(gone) = &control.gone {
                return Err(match write_error {
                    Some(error) => ClientError::gone(error.to_string()),
                    None => gone.clone(),
                });
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ClientError::Timeout("the shared-memory handshake"));
            }
            control.read_some(Some(left))?;
        };
        Ok(ShmClient {
            session: Arc::new(Session {
                control: Mutex::new(control),
                stream,
                info,
                options,
                next_request: AtomicU32::new(1),
            }),
        })
    }

    /// What the broker said in its `Welcome`.
    pub(crate) fn broker_info(&self) -> &BrokerInfo {
        &self.session.info
    }

    /// A publisher on `topic`, writing into a ring of its own.
    ///
    /// # Errors
    ///
    /// [`ClientError::Refused`] for an unknown topic, or a limit reached;
    /// [`ClientError::Shm`] if the ring handed over cannot be mapped.
    pub(crate) fn publisher(&self, topic: &str) -> Result<ShmPublisher, ClientError> {
        let (grant, mut rings) = self.session.attach(topic, ShmRole::Publish)?;
        let GrantedAttachment {
            attachment,
            topic_id,
            max_message_size,
            queue,
        } = grant;
        if rings.len() != 1 {
            return Err(ClientError::Protocol(format!(
                "a publisher grant must carry one ring, got {}",
                rings.len()
            )));
        }
        let ring = rings.remove(0);
        ShmPublisher::new(
            Arc::clone(&self.session),
            topic,
            topic_id,
            attachment,
            max_message_size,
            queue,
            ring.segment,
        )
    }

    /// Subscribes to `topic`: on a fanout topic the subscription sees every message
    /// published from now on, by every publisher of the topic; on a queue topic it is one of
    /// the topic's consumers, and takes the messages dealt to it (`client::shm::queue`).
    ///
    /// # Errors
    ///
    /// As for [`publisher`](Self::publisher).
    pub(crate) fn subscribe(&self, topic: &str) -> Result<ShmSubscription, ClientError> {
        let (grant, rings) = self.session.attach(topic, ShmRole::Subscribe)?;
        ShmSubscription::new(
            Arc::clone(&self.session),
            topic,
            grant.topic_id,
            grant.attachment,
            grant.queue,
            grant.max_message_size,
            rings,
        )
    }
}

/// How [`Session::publisher_end`] looks at the control socket.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Look {
    /// Without waiting, and only if no other thread holds the session: for the publish path,
    /// which must not wait on another thread's request.
    IfFree,
    /// Without waiting.
    Now,
    /// Waiting up to this long for the end: for a caller that knows the broker ended the
    /// attachment (it refused a request for it) and wants the reason, which is on its way.
    Wait(Duration),
}

/// The scalar part of a `ShmGrant`.
pub(crate) struct GrantedAttachment {
    pub(crate) attachment: u32,
    pub(crate) topic_id: u32,
    pub(crate) max_message_size: usize,
    pub(crate) queue: bool,
}

impl Session {
    fn lock(&self) -> MutexGuard<'_, Control> {
        self.control.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn options(&self) -> &ShmOptions {
        &self.options
    }

    fn next_request_id(&self) -> u32 {
        // NO_REQUEST is reserved for errors that answer no request.
        loop {
            let id = self.next_request.fetch_add(1, Ordering::Relaxed);
            if id != NO_REQUEST {
                return id;
            }
        }
    }

    fn attach(
        &self,
        topic: &str,
        role: ShmRole,
    ) -> Result<(GrantedAttachment, Vec<GrantedRing>), ClientError> {
        let request_id = self.next_request_id();
        let frame = Frame::ShmAttach {
            request_id,
            role,
            topic: topic.to_owned(),
        };
        match self.request(request_id, &frame)? {
            Reply::Grant(
                Frame::ShmGrant {
                    attachment,
                    topic_id,
                    max_message_size,
                    rings,
                    routing,
                    ..
                },
                fds,
            ) => {
                let granted = rings
                    .into_iter()
                    .zip(fds)
                    .map(|(ring, fd)| {
                        let segment = Segment::from_fd(fd, MAX_RING_SEGMENT_LEN)
                            .map_err(|e| ClientError::Shm(e.to_string()))?;
                        Ok(GrantedRing { ring, segment })
                    })
                    .collect::<Result<Vec<_>, ClientError>>();
                let granted = match granted {
                    Ok(granted) => granted,
                    Err(error) => {
                        self.detach(attachment);
                        return Err(error);
                    }
                };
                Ok((
                    GrantedAttachment {
                        attachment,
                        topic_id,
                        max_message_size: max_message_size as usize,
                        queue: routing == RoutingKind::Queue,
                    },
                    granted,
                ))
            }
            Reply::Frame(Frame::Error { code, message, .. }) => {
                Err(ClientError::Refused { code, message })
            }
            Reply::Frame(other) | Reply::Grant(other, _) => Err(ClientError::Protocol(format!(
                "unexpected answer to ShmAttach: {other:?}"
            ))),
        }
    }

    /// Tells the broker the attachment is over, without waiting for its answer (called from
    /// `Drop`; the broker ends it anyway when the session closes).
    pub(crate) fn detach(&self, attachment: u32) {
        let request_id = self.next_request_id();
        let mut control = self.lock();
        control.news.remove(&attachment);
        control.detached.insert(attachment);
        if control.gone.is_none() {
            let frame = Frame::ShmDetach {
                request_id,
                attachment,
            };
            if control.write(&frame, self.options.request_timeout).is_ok() {
                control.unanswered.insert(request_id, attachment);
            } else {
                control.detached.remove(&attachment);
            }
        }
    }

    fn request(&self, request_id: u32, frame: &Frame) -> Result<Reply, ClientError> {
        let timeout = self.options.request_timeout;
        let deadline = Instant::now() + timeout;
        let mut control = self.lock();
        if let Some(gone) = &control.gone {
            return Err(gone.clone());
        }
        control.write(frame, timeout)?;
        loop {
            if let Some(reply) = control.replies.remove(&request_id) {
                return Ok(reply);
            }
            if let Some(gone) = &control.gone {
                return Err(gone.clone());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ClientError::Timeout("a shared-memory request"));
            }
            control.read_some(Some(left))?;
        }
    }

    /// For publisher attachment `attachment`: reads what the broker sent (see [`Look`]) and
    /// tells whether the attachment goes on (`Ok`), was ended by the broker
    /// ([`ClientError::Refused`] with the reason its `ShmDetached` gave), or the session is
    /// over ([`ClientError::BrokerGone`], or the fatal error that ended it). A `ShmDetached`
    /// wins over the session's end: it is the broker's reason, the end only its echo.
    /// `Ok(false)`: the look was skipped (`IfFree`).
    pub(crate) fn publisher_end(&self, attachment: u32, look: Look) -> Result<bool, ClientError> {
        let deadline = match look {
            Look::Wait(wait) => Instant::now().checked_add(wait),
            Look::IfFree | Look::Now => None,
        };
        loop {
            let mut control = match look {
                Look::IfFree => match self.control.try_lock() {
                    Ok(control) => control,
                    Err(std::sync::TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
                    // Another thread is at the socket: it files whatever it reads, and the
                    // next look finds it.
                    Err(std::sync::TryLockError::WouldBlock) => return Ok(false),
                },
                Look::Now | Look::Wait(_) => self.lock(),
            };
            let left = deadline.map_or(Duration::ZERO, |d| {
                d.saturating_duration_since(Instant::now())
            });
            // Short slices: the control lock is held while waiting, and other threads share it.
            control.read_available(Some(left.min(Duration::from_millis(1))))?;
            if let Some(news) = control.news.remove(&attachment) {
                for news in news {
                    if let RingNews::Detached(code, message) = news {
                        return Err(ClientError::Refused { code, message });
                    }
                }
            }
            if let Some(gone) = &control.gone {
                return Err(gone.clone());
            }
            if left.is_zero() {
                return Ok(true);
            }
        }
    }

    /// Sends a sealed payload segment of publisher attachment `attachment` to the broker
    /// (`ShmSegment`, the fd attached) and waits for its answer: once it is `Ok`, the fd is
    /// with every reader of the ring, and the reference frame may be written.
    pub(crate) fn send_segment(
        &self,
        attachment: u32,
        reference: SegmentRef,
        recipient: u32,
        fd: BorrowedFd<'_>,
    ) -> Result<(), ClientError> {
        let request_id = self.next_request_id();
        let frame = Frame::ShmSegment {
            request_id,
            attachment,
            segment: reference.segment,
            len: reference.len,
            recipient,
        };
        let timeout = self.options.request_timeout;
        let deadline = Instant::now() + timeout;
        let mut control = self.lock();
        if let Some(gone) = &control.gone {
            return Err(gone.clone());
        }
        control.write_with_fd(&frame, fd, timeout)?;
        let reply = loop {
            if let Some(reply) = control.replies.remove(&request_id) {
                break reply;
            }
            if let Some(gone) = &control.gone {
                return Err(gone.clone());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ClientError::Timeout("a shared-memory request"));
            }
            control.read_some(Some(left))?;
        };
        match reply {
            Reply::Frame(Frame::Ack { .. }) => Ok(()),
            Reply::Frame(Frame::Error { code, message, .. }) => {
                Err(ClientError::Refused { code, message })
            }
            Reply::Frame(other) | Reply::Grant(other, _) => Err(ClientError::Protocol(format!(
                "unexpected answer to ShmSegment: {other:?}"
            ))),
        }
    }

    /// Waits up to `timeout` for news of `attachment` (reading the control socket), and
    /// returns what there is.
    pub(crate) fn wait_news(
        &self,
        attachment: u32,
        timeout: Duration,
    ) -> Result<Vec<RingNews>, ClientError> {
        self.take_news(attachment, timeout, false)
    }

    /// Reads whatever the broker sent, without waiting, and returns the news for
    /// `attachment`.
    pub(crate) fn poll_news(&self, attachment: u32) -> Result<Vec<RingNews>, ClientError> {
        self.take_news(attachment, Duration::ZERO, true)
    }

    /// Reads the control socket (for up to `timeout`; only when no news of `attachment` is
    /// held already, unless `always`), then takes the news of `attachment`. With none, the
    /// session's end, if it ended.
    fn take_news(
        &self,
        attachment: u32,
        timeout: Duration,
        always: bool,
    ) -> Result<Vec<RingNews>, ClientError> {
        let mut control = self.lock();
        if control.gone.is_none() && (always || !control.news.contains_key(&attachment)) {
            control.read_available(Some(timeout))?;
        }
        let news = control
            .news
            .remove(&attachment)
            .map(Vec::from)
            .unwrap_or_default();
        if news.is_empty() {
            if let Some(gone) = &control.gone {
                return Err(gone.clone());
            }
        }
        Ok(news)
    }
}

impl Control {
    /// Writes one frame, waiting for room up to `timeout`.
    fn write(&mut self, frame: &Frame, timeout: Duration) -> Result<(), ClientError> {
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
    fn write_with_fd(
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
    fn read_some(&mut self, timeout: Option<Duration>) -> Result<bool, ClientError> {
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
    fn read_available(&mut self, timeout: Option<Duration>) -> Result<(), ClientError> {
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
    fn take_handshake_answer(
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
            Frame::ShmRingAdded { attachment, ring } => {
                let fd = self.take_fds(1)?.into_iter().next();
                if self.detached.contains(&attachment) {
                    return Ok(());
                }
                let segment = fd.map(|fd| Segment::from_fd(fd, MAX_RING_SEGMENT_LEN));
                match segment {
                    Some(Ok(segment)) => self
                        .news
                        .entry(attachment)
                        .or_default()
                        .push_back(RingNews::Added(GrantedRing { ring, segment })),
                    Some(Err(error)) => {
                        tracing::warn!(%error, ring = ring.ring_id, "unusable ring from the broker; skipped");
                    }
                    None => {}
                }
            }
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
