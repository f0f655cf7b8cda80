//! One shared-memory control session: a connection that began with `ShmHello`.
//!
//! - The session carries requests and their answers only (`ShmAttach` → `ShmGrant` with one
//!   fd per ring, `ShmDetach` → `Ack`, `Ping`, `StatsRequest`), plus `ShmRingAdded` /
//!   `ShmRingRemoved` when publishers of a subscribed topic come and go. Messages never pass
//!   here: they travel through the rings.
//! - Every frame is written whole with one `sendmsg`, its fds attached, so the client can
//!   match fds to frames in order.
//! - A subscribe of a pattern (`orders.*`) is one attachment over every matching topic, now
//!   and later ([`patterns`]).
//! - When the session ends, for whatever reason (detach, EOF, SIGKILL of the client, a protocol
//!   violation, broker shutdown), every attachment it held is ended: the broker frees its
//!   subscriber slots and tells subscribers of its publisher rings.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use mycelium_config::Routing;
use mycelium_config::{MAX_RING_BYTES, MAX_SHM_PUBLISHERS_PER_TOPIC};
use mycelium_transport::frame::{NO_REQUEST, NO_TOPIC};
use mycelium_transport::limits::{
    MAX_ATTACHMENTS_PER_SESSION, MAX_PENDING_FDS, MAX_RINGS_PER_GRANT, MAX_RING_SEGMENT_LEN,
};
use mycelium_transport::shm::layout::{data_offset, MAX_CONSUMERS};
use mycelium_transport::shm::reference::SegmentRef;
use mycelium_transport::shm::{send_fds_partial, ControlReader, Received};
use mycelium_transport::{
    codec, ErrorCode, Frame, RoutingKind, ShmRing, ShmRole, HANDSHAKE_MAX_FRAME_LEN,
};
use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::UnixStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::core::acl::{Action, PeerIdentity};
use crate::core::registry::foreign_inbox;
use crate::error::LookupError;
use crate::server::shm::{Grant, SegmentRefusal, SessionEvent, ShmRefusal};
use crate::server::state::BrokerState;

mod patterns;

use patterns::{is_pattern, Matched, SessionPattern};

// The config's shared-memory bounds must fit the protocol's limits, which the client holds
// the broker to: a subscriber's grant carries one ring per publisher plus the relay ring, and
// a client maps no ring segment above `MAX_RING_SEGMENT_LEN`.
const _: () = {
    assert!((MAX_SHM_PUBLISHERS_PER_TOPIC as usize) < MAX_RINGS_PER_GRANT);
    assert!(MAX_RING_BYTES as usize + data_offset(MAX_CONSUMERS) <= MAX_RING_SEGMENT_LEN);
};

/// Longest wait, before answering a `ShmSegment`, for the subscribers' sessions to have
/// written the segment's fd to their sockets. A subscriber whose socket is full delays its
/// publisher's large messages by at most this; it then finds the fd later (it waits for it).
const SEGMENT_SENT_WAIT: Duration = Duration::from_secs(1);

/// Serves a session whose `ShmHello` was read (and whose `Welcome` is still to send) until the
/// client leaves, breaks the protocol, or `stop` fires.
pub(crate) async fn serve(
    stream: UnixStream,
    buf: BytesMut,
    state: Arc<BrokerState>,
    stop: CancellationToken,
    id: u64,
    peer: PeerIdentity,
    client_id: uuid::Uuid,
) {
    let (events_tx, events) = mpsc::unbounded_channel();
    let (matches_tx, matches) = mpsc::unbounded_channel();
    let mut reader = ControlReader::new();
    // What followed the `ShmHello` in its read is the session's first bytes.
    reader.buffer_mut().unsplit(buf);
    let mut session = Session {
        stream,
        reader,
        state,
        id,
        peer: Arc::new(peer),
        client_id,
        events_tx,
        events,
        matches_tx,
        matches,
        pattern_count: Arc::default(),
        patterns: std::collections::HashMap::new(),
    };
    let outcome = session.run(&stop).await;
    if let Err(End::Fatal(frame)) = outcome {
        if let Frame::Error { code, message, .. } = &*frame {
            tracing::warn!(session = id, ?code, %message, "dropping shared-memory client");
        }
        let _ = session.send(&frame, &[]).await;
    }
    session.end_patterns();
    session.state.shm.detach_session(id);
    tracing::debug!(session = id, "shared-memory session ended");
}

struct Session {
    stream: UnixStream,
    /// The client's bytes not yet handled, and the fds that came with them: at most
    /// [`MAX_PENDING_FDS`] not yet taken by a `ShmSegment`; closed when the session ends.
    reader: ControlReader,
    state: Arc<BrokerState>,
    id: u64,
    /// Who the kernel says the peer is: what the topics' access lists are checked against.
    peer: Arc<PeerIdentity>,
    /// The client id of its `ShmHello`: the only reply inbox it may subscribe to.
    client_id: uuid::Uuid,
    /// Cloned into every subscriber attachment, so other sessions can reach this client.
    events_tx: mpsc::UnboundedSender<SessionEvent>,
    events: mpsc::UnboundedReceiver<SessionEvent>,
    /// Cloned into every pattern subscription of the session: each topic attached to a
    /// pattern (by attachment), whose rings the session hands over.
    matches_tx: mpsc::UnboundedSender<Matched>,
    matches: mpsc::UnboundedReceiver<Matched>,
    /// How many pattern attachments the session holds, for the threads that attach their
    /// topics (they count toward the session's limit).
    pattern_count: Arc<std::sync::atomic::AtomicUsize>,
    /// The pattern attachments held, by attachment id. Ended (and unsubscribed from the
    /// registry) before the session's attachments are.
    patterns: std::collections::HashMap<u32, SessionPattern>,
}

fn error_frame(request_id: u32, code: ErrorCode, fatal: bool, message: String) -> Frame {
    Frame::Error {
        request_id,
        code,
        fatal,
        topic_id: NO_TOPIC,
        message,
        refused: 0,
    }
}

impl Session {
    /// Runs the session until the client leaves (`Ok`) or it must be dropped.
    async fn run(&mut self, stop: &CancellationToken) -> Result<(), End> {
        let welcome = self.state.welcome(self.id);
        self.send(&welcome, &[]).await.map_err(|_| End::Gone)?;
        loop {
            while let Some(frame) = self.next_frame()? {
                self.handle(frame).await?;
            }
            tokio::select! {
                biased;
                _ = stop.cancelled() => {
                    return Err(End::Fatal(Box::new(error_frame(NO_REQUEST, ErrorCode::ShuttingDown, true, "the broker is shutting down".into()))));
                }
                Some(event) = self.events.recv() => self.forward(event).await?,
                Some(matched) = self.matches.recv() => self.pattern_matched(matched).await?,
                ready = self.stream.readable() => {
                    if ready.is_err() || !self.read_some()? {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// One `recvmsg` (fds included: a plain read would drop them); `false` at end of stream
    /// or on a read error.
    fn read_some(&mut self) -> Result<bool, End> {
        let (stream, reader) = (&self.stream, &mut self.reader);
        let received = stream.try_io(Interest::READABLE, || {
            reader.recv(stream.as_fd(), MAX_PENDING_FDS)
        });
        match received {
            Ok(Received::Closed) => Ok(false),
            Ok(Received::Data { .. }) => {
                if self.reader.pending_fds() > MAX_PENDING_FDS {
                    return Err(End::Fatal(Box::new(error_frame(
                        NO_REQUEST,
                        ErrorCode::Malformed,
                        true,
                        format!("more than {MAX_PENDING_FDS} fds sent that no ShmSegment took"),
                    ))));
                }
                Ok(true)
            }
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => Ok(true),
            Err(error) if error.kind() == std::io::ErrorKind::InvalidData => {
                Err(End::Fatal(Box::new(error_frame(
                    NO_REQUEST,
                    ErrorCode::Malformed,
                    true,
                    error.to_string(),
                ))))
            }
            Err(_) => Ok(false),
        }
    }

    /// The next complete frame in the buffer, if any.
    fn next_frame(&mut self) -> Result<Option<Frame>, End> {
        let malformed = |e: mycelium_transport::DecodeError| {
            End::Fatal(Box::new(error_frame(
                NO_REQUEST,
                e.error_code(),
                true,
                e.to_string(),
            )))
        };
        self.reader
            .next_frame(HANDSHAKE_MAX_FRAME_LEN)
            .map_err(malformed)
    }

    async fn handle(&mut self, frame: Frame) -> Result<(), End> {
        match frame {
            Frame::ShmAttach {
                request_id,
                role,
                no_echo,
                topic,
            } => self.attach(request_id, role, no_echo, &topic).await,
            Frame::ShmDetach {
                request_id,
                attachment,
            } => {
                let detached = if self.patterns.contains_key(&attachment) {
                    self.end_pattern(attachment);
                    true
                } else {
                    self.state.shm.detach(self.id, attachment)
                };
                // News for the attachment queued before the detach goes out before its answer,
                // and none is made after it: the client may forget the attachment on the answer.
                while let Ok(event) = self.events.try_recv() {
                    self.forward(event).await?;
                }
                let answer = if detached {
                    Frame::Ack { request_id }
                } else {
                    error_frame(
                        request_id,
                        ErrorCode::NotSubscribed,
                        false,
                        format!("no attachment {attachment} on this session"),
                    )
                };
                self.send(&answer, &[]).await.map_err(|_| End::Gone)
            }
            Frame::ShmSegment {
                request_id,
                attachment,
                segment,
                len,
                recipient,
            } => {
                let Some(fd) = self
                    .reader
                    .take_fds(1)
                    .and_then(|fds| fds.into_iter().next())
                else {
                    return Err(End::Fatal(Box::new(error_frame(
                        NO_REQUEST,
                        ErrorCode::Malformed,
                        true,
                        "ShmSegment without an fd".into(),
                    ))));
                };
                self.segment(
                    request_id,
                    attachment,
                    SegmentRef { segment, len },
                    recipient,
                    fd,
                )
                .await
            }
            Frame::Ping { token } => self
                .send(&Frame::Pong { token }, &[])
                .await
                .map_err(|_| End::Gone),
            Frame::Pong { .. } => Ok(()),
            Frame::StatsRequest { request_id } => {
                let stats = self.state.stats_frame(request_id);
                self.send(&stats, &[]).await.map_err(|_| End::Gone)
            }
            other => Err(End::Fatal(Box::new(error_frame(
                NO_REQUEST,
                ErrorCode::HandshakeRequired,
                true,
                format!(
                    "{} is not allowed on a shared-memory session (only ShmAttach, ShmDetach, \
                     ShmSegment, Ping and StatsRequest)",
                    mycelium_transport::kind::name(other.kind()).unwrap_or("this frame")
                ),
            )))),
        }
    }

    async fn attach(
        &mut self,
        request_id: u32,
        role: ShmRole,
        no_echo: bool,
        name: &str,
    ) -> Result<(), End> {
        if role == ShmRole::Subscribe && is_pattern(name) {
            return self.attach_pattern(request_id, no_echo, name).await;
        }
        if role == ShmRole::Subscribe {
            if let Some(message) = foreign_inbox(name, self.client_id) {
                let refusal = error_frame(request_id, ErrorCode::PermissionDenied, false, message);
                return self.send(&refusal, &[]).await.map_err(|_| End::Gone);
            }
        }
        let topic = match self.state.registry.resolve(name) {
            Ok(topic) => topic,
            Err(error) => {
                let code = match error {
                    LookupError::InvalidName { .. } => ErrorCode::InvalidTopicName,
                    _ => ErrorCode::UnknownTopic,
                };
                let refusal = error_frame(request_id, code, false, error.to_string());
                return self.send(&refusal, &[]).await.map_err(|_| End::Gone);
            }
        };
        let action = match role {
            ShmRole::Publish => Action::Publish,
            ShmRole::Subscribe => Action::Subscribe,
        };
        if let Err(message) = topic.check_access(action, &self.peer) {
            tracing::info!(session = self.id, topic = topic.name(), peer = %self.peer.describe(), action = action.key(), "shared-memory attach refused: access");
            let refusal = error_frame(request_id, ErrorCode::PermissionDenied, false, message);
            return self.send(&refusal, &[]).await.map_err(|_| End::Gone);
        }
        let routing = topic.routing();
        let held = self.attachments_held();
        if held >= MAX_ATTACHMENTS_PER_SESSION {
            let message = format!(
                "this session already holds {held} shared-memory attachments (at most \
                 {MAX_ATTACHMENTS_PER_SESSION}); detach some or open another session"
            );
            let refusal = error_frame(request_id, ErrorCode::ShmRefused, false, message);
            return self.send(&refusal, &[]).await.map_err(|_| End::Gone);
        }
        // Creating a ring maps and pre-faults its memory (a few milliseconds for 4 MiB): off
        // the event loop, which may be the broker's only worker thread.
        let (state, session, events) = (Arc::clone(&self.state), self.id, self.events_tx.clone());
        let for_attach = Arc::clone(&topic);
        let granted = tokio::task::spawn_blocking(move || match role {
            ShmRole::Publish => state.shm.attach_publisher(&for_attach, session, events),
            ShmRole::Subscribe => {
                state
                    .shm
                    .attach_subscriber(&for_attach, session, events, no_echo)
            }
        })
        .await
        .unwrap_or_else(|error| {
            Err(ShmRefusal::Limit(format!(
                "attaching failed inside the broker: {error}"
            )))
        });
        let grant: Grant = match granted {
            Ok(grant) => grant,
            Err(refusal) => {
                tracing::info!(session = self.id, topic = topic.name(), %refusal, "shared-memory attach refused");
                let frame = error_frame(
                    request_id,
                    ErrorCode::ShmRefused,
                    false,
                    refusal.to_string(),
                );
                return self.send(&frame, &[]).await.map_err(|_| End::Gone);
            }
        };
        tracing::debug!(
            session = self.id,
            topic = topic.name(),
            ?role,
            attachment = grant.attachment,
            "shared-memory attach"
        );
        let frame = Frame::ShmGrant {
            request_id,
            attachment: grant.attachment,
            topic_id: topic.id(),
            role,
            routing: match routing {
                Routing::Fanout => RoutingKind::Fanout,
                Routing::Queue => RoutingKind::Queue,
            },
            max_message_size: u32::try_from(topic.config().max_message_size).unwrap_or(u32::MAX),
            rings: grant.wire_rings(),
            rules: super::shm::message_rules(&topic.config()),
            pattern: false,
        };
        let fds: Vec<BorrowedFd<'_>> = grant
            .rings
            .iter()
            .map(|(ring, _)| ring.segment.fd())
            .collect();
        if self.send(&frame, &fds).await.is_err() {
            return Err(End::Gone);
        }
        Ok(())
    }

    /// Hands a publisher's payload segment to the readers of its ring, waits (bounded) until
    /// the subscribers' sessions have written it to their sockets, then answers.
    async fn segment(
        &mut self,
        request_id: u32,
        attachment: u32,
        reference: SegmentRef,
        recipient: u32,
        fd: OwnedFd,
    ) -> Result<(), End> {
        let answer = match self
            .state
            .shm
            .forward_segment(self.id, attachment, reference, recipient, fd)
        {
            Ok(waits) => {
                // Our own subscriptions' news is written by this task: before the answer.
                while let Ok(event) = self.events.try_recv() {
                    self.forward(event).await?;
                }
                let deadline = tokio::time::Instant::now() + SEGMENT_SENT_WAIT;
                for wait in waits {
                    let _ = tokio::time::timeout_at(deadline, wait).await;
                }
                Frame::Ack { request_id }
            }
            Err(refusal) => {
                let code = match refusal {
                    SegmentRefusal::NoAttachment(_) => ErrorCode::NotSubscribed,
                    SegmentRefusal::Bad(_) => ErrorCode::ShmRefused,
                };
                tracing::info!(session = self.id, %refusal, "payload segment refused");
                error_frame(request_id, code, false, refusal.to_string())
            }
        };
        self.send(&answer, &[]).await.map_err(|_| End::Gone)
    }

    async fn forward(&mut self, event: SessionEvent) -> Result<(), End> {
        match event {
            SessionEvent::SegmentAdded {
                attachment,
                ring_id,
                reference,
                fd,
                sent,
            } => {
                let frame = Frame::ShmSegmentAdded {
                    attachment,
                    ring_id,
                    segment: reference.segment,
                    len: reference.len,
                    dropped: fd.is_none(),
                };
                let fds: Vec<BorrowedFd<'_>> = fd.iter().map(|fd| fd.as_fd()).collect();
                let result = self.send(&frame, &fds).await;
                if let Some(sent) = sent {
                    let _ = sent.send(());
                }
                result
            }
            SessionEvent::RingAdded {
                attachment,
                ring,
                slot,
                wake,
                topic,
            } => {
                let shm_ring = ShmRing {
                    ring_id: ring.id,
                    slot,
                };
                let frame = match topic {
                    Some((topic_id, name)) => Frame::ShmTopicRingAdded {
                        attachment,
                        ring: shm_ring,
                        topic_id,
                        topic: name.to_string(),
                    },
                    None => Frame::ShmRingAdded {
                        attachment,
                        ring: shm_ring,
                    },
                };
                let sent = self.send(&frame, &[ring.segment.fd()]).await;
                if let Some((relay, relay_slot)) = wake {
                    relay.wake_consumer(relay_slot);
                }
                sent
            }
            SessionEvent::Detached {
                attachment,
                code,
                message,
            } => {
                if self.patterns.contains_key(&attachment) {
                    // One topic's watchdog ended it: the whole pattern ends, as on the socket.
                    self.end_pattern(attachment);
                }
                self.send(
                    &Frame::ShmDetached {
                        attachment,
                        code,
                        message,
                    },
                    &[],
                )
                .await
            }
            SessionEvent::RingRemoved {
                attachment,
                ring_id,
            } => {
                self.send(
                    &Frame::ShmRingRemoved {
                        attachment,
                        ring_id,
                    },
                    &[],
                )
                .await
            }
        }
        .map_err(|_| End::Gone)
    }

    /// Writes `frame` whole, with `fds` attached to its first byte.
    async fn send(&mut self, frame: &Frame, fds: &[BorrowedFd<'_>]) -> std::io::Result<()> {
        let mut bytes = BytesMut::new();
        codec::encode_frame(frame, &mut bytes).map_err(std::io::Error::other)?;
        let sent = loop {
            self.stream.writable().await?;
            let stream = &self.stream;
            match stream.try_io(Interest::WRITABLE, || {
                send_fds_partial(&stream.as_fd(), &bytes, fds)
            }) {
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => continue,
                other => break other?,
            }
        };
        // The fds went with the first byte; the rest of the frame is plain bytes.
        self.stream.write_all(&bytes[sent..]).await
    }
}

/// Why a session ended early.
enum End {
    /// The client can no longer be written to: nothing to send, just close.
    Gone,
    /// The client broke the protocol, or the broker is stopping: send this, then close.
    Fatal(Box<Frame>),
}
