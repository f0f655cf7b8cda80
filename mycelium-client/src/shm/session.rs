//! [`Session`]: the control session with the broker, shared by a client's publishers and
//! subscriptions; it knows neither.
//!
//! - [`Session::connect`] opens the control socket and does the handshake; the socket itself
//!   is read and written by [`Control`] under the session's lock.
//! - Requests (`ShmAttach`, `ShmDetach`, `ShmSegment`) are answered by `request_id`; the news
//!   of an attachment is handed to whoever asks for it ([`Session::wait_news`],
//!   [`Session::poll_news`]).
//! - The end of an attachment (`ShmDetached`) or of the session (EOF, a fatal error) is learnt
//!   only by reading the socket: subscriptions read it when they wait and on the broker's
//!   notice, publishers every so often and whenever they wait
//!   ([`Session::publisher_end`], `watch.rs`).

use std::os::fd::BorrowedFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use mycelium_transport::handshake::{ClientHandshake, Opening};
use mycelium_transport::limits::MAX_RING_SEGMENT_LEN;
use mycelium_transport::shm::reference::SegmentRef;
use mycelium_transport::shm::Segment;
use mycelium_transport::NO_REQUEST;
use mycelium_transport::{Frame, MessageRules, RoutingKind, ShmRole};

use crate::error::ClientError;
use crate::shm::control::{Control, GrantedRing, Reply, RingNews};
use crate::shm::options::ShmOptions;
use crate::socket::BrokerInfo;

pub(crate) struct Session {
    control: Mutex<Control>,
    /// The control socket, outside the lock: only for `ShmClient`'s `AsFd` (polling);
    /// every read and write goes through `control`.
    stream: Arc<UnixStream>,
    info: BrokerInfo,
    options: ShmOptions,
    next_request: AtomicU32,
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
    /// What the topic asks of each message (stamps, header limits).
    pub(crate) rules: MessageRules,
    /// A pattern subscription: its rings come later, each naming its topic.
    pub(crate) pattern: bool,
}

impl Session {
    /// Connects to the broker's socket at `path` and opens a shared-memory session.
    ///
    /// # Errors
    ///
    /// [`ClientError::Connect`] when no broker answers; [`ClientError::Refused`] when the
    /// broker refuses (shared memory disabled, too many connections); [`ClientError::Timeout`].
    pub(super) fn connect(
        path: impl AsRef<Path>,
        options: ShmOptions,
    ) -> Result<Session, ClientError> {
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
        let mut control = Control::new(Arc::clone(&stream));
        let handshake =
            ClientHandshake::new(Opening::SharedMemory, options.client_id, &*options.name);
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
        Ok(Session {
            control: Mutex::new(control),
            stream,
            info,
            options,
            next_request: AtomicU32::new(1),
        })
    }

    /// What the broker said in its `Welcome`.
    pub(super) fn broker_info(&self) -> &BrokerInfo {
        &self.info
    }

    /// The control socket, for polling only (see `ShmClient`'s `AsFd`).
    pub(super) fn stream(&self) -> &UnixStream {
        &self.stream
    }

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

    pub(super) fn attach(
        &self,
        topic: &str,
        role: ShmRole,
        no_echo: bool,
    ) -> Result<(GrantedAttachment, Vec<GrantedRing>), ClientError> {
        let request_id = self.next_request_id();
        let frame = Frame::ShmAttach {
            request_id,
            role,
            no_echo,
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
                    rules,
                    pattern,
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
                        Ok(GrantedRing {
                            ring,
                            segment,
                            topic: None,
                        })
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
                        rules,
                        pattern,
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
