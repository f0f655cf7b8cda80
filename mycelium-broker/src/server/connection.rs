//! One client connection: the handshake, then a reader that routes and a writer that flushes.
//!
//! - The reader parses every complete frame in each `read` (up to 64 KiB and more), groups
//!   consecutive publishes to one topic into a batch, and routes the batch with one lock per
//!   subscriber. It never allocates per message.
//! - Everything toward the client (replies, deliveries, errors) goes through the connection's
//!   [`Outbox`], so a reply is ordered with the deliveries around it: a `TopicAck` precedes the
//!   subscription's first `Deliver`, and a `Pong` follows the effects of every earlier frame.
//! - The writer swaps out the whole outbox per wake-up and writes it in one call.
//! - An idle connection holds little memory: the read buffer starts small and doubles while
//!   reads fill it (up to [`READ_CHUNK`], so a busy publisher's frames still arrive thousands
//!   per syscall), and a heartbeat tick that finds nothing read since the last one gives the
//!   read buffer back, and asks the writer to give back its own ([`Outbox::release_idle`]).
//!   A thousand idle connections cost a few MiB, not a read chunk each.
//! - A protocol violation gets a fatal `Error` frame and closes only this connection. A peer
//!   that vanishes (SIGKILL) is seen as EOF or a write error; its subscriptions are removed and its
//!   outbox closed (aborted on a write error), so publishers skip it from then on.
//! - On broker shutdown the reader stops after the batch in hand (still routing it, behind a
//!   slow subscriber, for up to the flush deadline) and leaves the outbox open; the listener
//!   closes every outbox once all readers have stopped, so nothing accepted is lost unless a
//!   subscriber takes nothing for that long.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use mycelium_config::Routing;
use mycelium_transport::codec;
use mycelium_transport::frame::{kind, NO_REQUEST, NO_TOPIC};
use mycelium_transport::handshake::{Greeting, Opening, Refusal, ServerHandshake};
use mycelium_transport::{
    peek_frame, DecodeError, ErrorCode, Frame, RoutingKind, HANDSHAKE_MAX_FRAME_LEN,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::core::acl::{Action, PeerIdentity};
use crate::core::topic::{
    Batch, GaveUp, HeldBack, Progress, PublishCursor, SubscriberId, Topic, TopicId,
};
use crate::error::LookupError;
use crate::server::heartbeat::{Beat, Heartbeat};
use crate::server::listener::{shutdown_deadline, REFUSAL_WRITE_TIMEOUT};
use crate::server::shm_session;
use crate::server::state::{BrokerState, Handshake};
use mycelium_transport::outbox::{FrameRun, Outbox};

/// Most bytes the reader asks the kernel for per `read`: large enough that a flat-out
/// publisher's frames arrive thousands per syscall.
const READ_CHUNK: usize = 256 * 1024;

/// Bytes a connection's first reads ask for, and what it goes back to when idle: most
/// connections (subscribers, request-reply clients) never send more per read, and a thousand
/// of them must not hold a [`READ_CHUNK`] each. Reads that fill it double it.
const FIRST_READ: usize = 4 * 1024;

/// Frame-end slots the scan keeps across reads while busy; an idle connection gives back more.
const IDLE_ENDS: usize = 256;

/// Why the reader stopped.
enum Stop {
    /// The peer closed its end, or went away.
    Gone,
    /// The broker is shutting down: leave the outbox for the listener to flush.
    Shutdown,
    /// The peer broke the protocol; send this fatal error, then close.
    Fatal(Box<Frame>),
}

fn fatal(code: ErrorCode, message: impl Into<String>) -> Stop {
    Stop::Fatal(Box::new(Frame::Error {
        request_id: NO_REQUEST,
        code,
        fatal: true,
        topic_id: NO_TOPIC,
        message: message.into(),
        refused: 0,
    }))
}

/// The stop of a connection its handshake refused.
fn refused(refusal: &Refusal) -> Stop {
    fatal(refusal.code, refusal.message.clone())
}

fn decode_stop(error: DecodeError) -> Stop {
    match error {
        DecodeError::Io(_) => Stop::Gone,
        other => fatal(other.error_code(), other.to_string()),
    }
}

/// Why a scan stopped.
enum ScanEnd {
    /// `batch_size` frames were walked; more may be in the buffer.
    BatchFull,
    /// The buffer holds no further complete frame.
    NeedData,
    /// The peer broke the protocol at the frame where the scan stopped.
    Stop(Stop),
}

/// One thing to do for the frames of a scan, in frame order.
enum Step {
    /// Consecutive accepted publishes to one topic, relabelled as `Deliver`: `bytes` in the
    /// scanned chunk, with frame ends (relative to the run's start) in `Connection::ends[ends]`.
    Run {
        topic: Arc<Topic>,
        bytes: Range<usize>,
        ends: Range<usize>,
    },
    /// A control frame to handle.
    Control(Box<Frame>),
    /// A publish to refuse with a non-fatal error.
    Refuse {
        code: ErrorCode,
        topic_id: u32,
        message: String,
    },
}

/// A run being gathered by a scan.
struct OpenRun {
    topic: Arc<Topic>,
    /// The topic's `max_message_size`, read once for the run.
    max: usize,
    /// Where its first frame starts in the scanned bytes.
    start: usize,
    /// Its first entry in `Connection::ends`.
    first_end: usize,
}

struct Subscription {
    id: SubscriberId,
    topic: Arc<Topic>,
}

/// The reader side's state for one connection.
struct Connection {
    state: Arc<BrokerState>,
    /// Who the kernel says the peer is: what the topics' access lists are checked against.
    peer: PeerIdentity,
    outbox: Arc<Outbox>,
    id: u64,
    /// Subscriptions by topic id; a connection subscribes at most once per topic.
    subscriptions: HashMap<TopicId, Subscription>,
    /// Topics this connection published to, by id, so a publish needs no registry lookup.
    /// Grows only to ids the registry knows, so a peer cannot make it allocate.
    topics: Vec<Option<Arc<Topic>>>,
    max_frame_len: usize,
    /// Frame ends of the runs of the current scan; reused across reads.
    ends: Vec<usize>,
    /// Bytes the next read asks for: doubles while reads fill it, up to [`READ_CHUNK`]; back
    /// to [`FIRST_READ`] when the connection is idle.
    read_size: usize,
    /// Something was read since the last heartbeat tick: the connection is not idle.
    read_since_tick: bool,
    /// Whether the peer is still there ([`Heartbeat`]), and when to look next.
    heartbeat: Heartbeat,
    heartbeat_due: tokio::time::Instant,
}

/// How often a connection looks again whether heartbeats were turned on, while they are off.
const HEARTBEAT_OFF_RECHECK: Duration = Duration::from_secs(1);

/// Serves one accepted socket until the peer leaves, breaks the protocol, or `stop` fires.
///
/// The first frame decides what the connection is: `Hello` opens a message connection,
/// `ShmHello` a shared-memory control session (`shm_session`). The writer task of a message
/// connection is spawned on `writers` so that shutdown can wait for it to flush.
///
/// Until that frame the socket counts against the handshake budget
/// (`server.max_pending_handshakes`, which gives up the oldest for a newer socket), not
/// against `max_connections`: a client is refused at `max_connections` in answer to its
/// `Hello`, so sockets that never say anything cannot keep clients out.
pub(crate) async fn serve(
    mut stream: UnixStream,
    state: Arc<BrokerState>,
    stop: CancellationToken,
    writers: TaskTracker,
) {
    let id = state.next_connection_id();
    let peer = peer_identity(&stream);
    // The handshake's reads reserve what a first frame may need; nothing is held before.
    let mut buf = BytesMut::new();
    let handshake = state.begin_handshake(id);
    let first = first_frame(&mut stream, &mut buf, &state, &stop, &handshake).await;
    drop(handshake);
    let opened = first.is_ok() && state.try_open_socket();
    match first {
        Ok(_) if !opened => {
            let max = state.config().server.max_connections;
            tracing::warn!(max, "refusing a client: at max_connections");
            refuse(
                stream,
                fatal(
                    ErrorCode::TooManyConnections,
                    format!("the broker is at max_connections = {max}"),
                ),
            )
            .await;
        }
        Ok(Greeting {
            opening: Opening::Messages,
            client_id,
            name,
        }) => {
            tracing::debug!(connection = id, %client_id, name = %name, peer = %peer.describe(), "client connected");
            serve_messages(stream, buf, Arc::clone(&state), stop, writers, id, peer).await;
        }
        Ok(Greeting {
            opening: Opening::SharedMemory,
            client_id,
            name,
        }) if state.shm.enabled() => {
            tracing::debug!(session = id, %client_id, name = %name, peer = %peer.describe(), "shared-memory client connected");
            shm_session::serve(stream, buf, Arc::clone(&state), stop, id, peer).await;
        }
        Ok(Greeting {
            opening: Opening::SharedMemory,
            ..
        }) => {
            let refusal = fatal(
                ErrorCode::ShmRefused,
                "shared memory is disabled on this broker (shm.enabled = false); use the socket transport",
            );
            refuse(stream, refusal).await;
        }
        Err(stop @ Stop::Fatal(_)) => refuse(stream, stop).await,
        Err(Stop::Gone | Stop::Shutdown) => {}
    }
    if opened {
        state.close_socket();
    }
}

/// Who the peer is, from `SO_PEERCRED`. Should the kernel not say (it always does for a
/// connected Unix socket), the peer is nobody: uid and gid `u32::MAX`, which no access list
/// names, so only topics without lists admit it.
fn peer_identity(stream: &UnixStream) -> PeerIdentity {
    match stream.peer_cred() {
        Ok(cred) => PeerIdentity::new(cred.uid(), cred.gid(), cred.pid().unwrap_or(0)),
        Err(error) => {
            tracing::warn!(%error, "cannot read the peer's credentials; treating it as nobody");
            PeerIdentity::new(u32::MAX, u32::MAX, 0)
        }
    }
}

/// Reads the first frame (within the connection timeout, and while newer sockets leave this
/// one its place in the handshake budget): a greeting, or why the connection ends.
async fn first_frame(
    stream: &mut UnixStream,
    buf: &mut BytesMut,
    state: &BrokerState,
    stop: &CancellationToken,
    handshake: &Handshake,
) -> Result<Greeting, Stop> {
    let timeout = Duration::from_millis(state.config().server.connection_timeout_ms);
    tokio::select! {
        _ = stop.cancelled() => Err(fatal(ErrorCode::ShuttingDown, "the broker is shutting down")),
        // `read_buf` is cancel-safe: what it read is in `buf`.
        _ = handshake.given_up() => match frame_already_sent(stream, buf) {
            // A client whose Hello was on its way when newer sockets arrived is served: only
            // a socket that has said nothing is given up.
            Some(result) => result,
            None => {
                let max = state.config().server.max_pending_handshakes;
                Err(fatal(
                    ErrorCode::HandshakeTimeout,
                    format!("no Hello yet, and newer connections need the room (server.max_pending_handshakes = {max})"),
                ))
            }
        },
        read = tokio::time::timeout(timeout, read_one_frame(stream, buf)) => match read {
            Err(_) => Err(fatal(
                ErrorCode::HandshakeTimeout,
                format!("no Hello within connection_timeout_ms = {}", timeout.as_millis()),
            )),
            Ok(result) => result,
        },
    }
}

/// The first frame if the peer has sent all of it already (read without waiting), or `None`.
fn frame_already_sent(stream: &UnixStream, buf: &mut BytesMut) -> Option<Result<Greeting, Stop>> {
    loop {
        match ServerHandshake::new().receive(buf) {
            Ok(Some(greeting)) => return Some(Ok(greeting)),
            Ok(None) => {}
            Err(refusal) => return Some(Err(refused(&refusal))),
        }
        buf.reserve(HANDSHAKE_MAX_FRAME_LEN);
        match stream.try_read_buf(buf) {
            Ok(0) => return Some(Err(Stop::Gone)),
            Ok(_) => {}
            Err(_) => return None,
        }
    }
}

/// Sends the fatal error of `stop` to a peer that never completed its handshake, then closes.
async fn refuse(mut stream: UnixStream, stop: Stop) {
    let Stop::Fatal(frame) = stop else {
        return;
    };
    if let Frame::Error { code, message, .. } = &*frame {
        tracing::warn!(?code, %message, "refusing client");
    }
    let mut bytes = BytesMut::new();
    if codec::encode_frame(&frame, &mut bytes).is_ok() {
        let write = async {
            stream.write_all(&bytes).await?;
            stream.shutdown().await
        };
        let _ = tokio::time::timeout(REFUSAL_WRITE_TIMEOUT, write).await;
    }
}

/// Serves a message connection whose `Hello` was read.
async fn serve_messages(
    stream: UnixStream,
    mut buf: BytesMut,
    state: Arc<BrokerState>,
    stop: CancellationToken,
    writers: TaskTracker,
    id: u64,
    peer: PeerIdentity,
) {
    if let Err(error) = mycelium_transport::uds::tune_stream(&stream) {
        tracing::debug!(%error, "could not enlarge the socket buffers");
    }
    let (mut reader, writer) = stream.into_split();
    let outbox = Arc::new(Outbox::with_budget(state.inflight.clone()));
    writers.spawn(write_loop(writer, outbox.clone()));
    let mut conn = Connection {
        id,
        state,
        peer,
        outbox,
        subscriptions: HashMap::new(),
        topics: Vec::new(),
        max_frame_len: HANDSHAKE_MAX_FRAME_LEN,
        ends: Vec::new(),
        read_size: FIRST_READ,
        read_since_tick: false,
        heartbeat: Heartbeat::default(),
        heartbeat_due: tokio::time::Instant::now(),
    };
    conn.schedule_heartbeat();
    conn.welcome();
    let outcome = conn.read_loop(&mut reader, &mut buf, &stop).await;
    match outcome {
        Stop::Shutdown => {}
        Stop::Gone => {
            tracing::debug!(connection = conn.id, "client disconnected");
            conn.leave();
        }
        Stop::Fatal(frame) => {
            if let Frame::Error { code, message, .. } = &*frame {
                tracing::warn!(connection = conn.id, ?code, %message, "dropping client");
            }
            conn.outbox.close_with(&frame);
            conn.leave();
        }
    }
}

/// Flushes the outbox to the socket until it is closed and empty, or the peer is gone.
async fn write_loop(mut writer: OwnedWriteHalf, outbox: Arc<Outbox>) {
    if let Err(error) = outbox.flush_until_closed(&mut writer).await {
        tracing::debug!(%error, "write to client failed; discarding its queue");
        outbox.abort();
        return;
    }
    let _ = writer.shutdown().await;
}

impl Connection {
    /// Answers the `Hello` with `Welcome` and registers the connection.
    fn welcome(&mut self) {
        self.max_frame_len = self.state.max_frame_len();
        self.outbox.append_control(&self.state.welcome(self.id));
        self.state.register(self.id, self.outbox.clone());
    }

    async fn read_loop(
        &mut self,
        reader: &mut OwnedReadHalf,
        buf: &mut BytesMut,
        stop: &CancellationToken,
    ) -> Stop {
        loop {
            if let Err(stop) = self.process(buf, stop).await {
                return stop;
            }
            if let Err(stop) = self.wait_for_outbox(stop).await {
                return stop;
            }
            // A reload may have raised a topic's limit: frames up to it are accepted from now
            // on. A lowered one never shrinks what the peer was told in `Welcome`; the topic's
            // own check refuses a too-large message without closing the connection.
            self.max_frame_len = self.max_frame_len.max(self.state.max_frame_len());
            codec::reserve_for_read(buf, self.read_size, self.max_frame_len);
            let room = buf.capacity() - buf.len();
            tokio::select! {
                biased;
                _ = stop.cancelled() => return Stop::Shutdown,
                _ = self.outbox.closed() => return Stop::Gone,
                read = reader.read_buf(buf) => match read {
                    Ok(0) if buf.is_empty() => return Stop::Gone,
                    Ok(0) => {
                        tracing::debug!(connection = self.id, bytes = buf.len(), "client closed mid-frame");
                        return Stop::Gone;
                    }
                    Ok(n) => {
                        self.heartbeat.heard();
                        self.read_since_tick = true;
                        if n >= room && self.read_size < READ_CHUNK {
                            // The read filled what it was given: there is load, read more.
                            self.read_size *= 2;
                        }
                    }
                    Err(_) => return Stop::Gone,
                },
                _ = tokio::time::sleep_until(self.heartbeat_due) => {
                    if !std::mem::take(&mut self.read_since_tick) {
                        self.release_idle(buf);
                    }
                    if let Some(stop) = self.beat() {
                        return stop;
                    }
                }
            }
        }
    }

    /// Gives back the memory a busy connection grew, once a whole heartbeat period passed
    /// without a read: the read buffer (unless it holds the start of a frame), the scan's
    /// frame ends, and (through the outbox) the writer's buffers. Everything grows again
    /// under load.
    fn release_idle(&mut self, buf: &mut BytesMut) {
        if buf.is_empty() && buf.capacity() > FIRST_READ {
            *buf = BytesMut::new();
        }
        self.read_size = FIRST_READ;
        if self.ends.capacity() > IDLE_ENDS {
            self.ends = Vec::new();
        }
        self.outbox.release_idle();
    }

    /// When the next heartbeat tick is due, from the interval in force now.
    fn schedule_heartbeat(&mut self) {
        let interval = self.state.config().server.heartbeat_interval_ms;
        let wait = match interval {
            0 => HEARTBEAT_OFF_RECHECK,
            ms => Duration::from_millis(ms),
        };
        self.heartbeat_due = after(wait);
    }

    /// A heartbeat tick: pings a silent peer, or returns the stop of one silent too long.
    fn beat(&mut self) -> Option<Stop> {
        let server = &self.state.config().server;
        let (interval, misses) = (server.heartbeat_interval_ms, server.heartbeat_misses);
        self.schedule_heartbeat();
        if interval == 0 {
            return None;
        }
        match self.heartbeat.tick(self.outbox.progress(), misses) {
            Beat::Alive => None,
            Beat::Ping(token) => {
                self.outbox.append_control(&Frame::Ping { token });
                None
            }
            Beat::Dead(pings) => Some(fatal(
                ErrorCode::HeartbeatTimeout,
                format!(
                    "no sign of life through {pings} pings, {interval} ms apart (server.heartbeat_interval_ms, heartbeat_misses = {misses})"
                ),
            )),
        }
    }

    /// Handles every complete frame in `buf` and consumes them.
    ///
    /// In rounds of at most `batch_size` frames: [`Self::scan`] walks the frames and relabels
    /// accepted publishes as `Deliver` in place; the scanned bytes are frozen, so each run of
    /// publishes to one topic is handed to subscribers as a slice of the read buffer; then the
    /// steps run in frame order.
    async fn process(&mut self, buf: &mut BytesMut, stop: &CancellationToken) -> Result<(), Stop> {
        let batch_size = self.state.config().performance.batch_size.max(1);
        loop {
            let mut steps = Vec::new();
            let (consumed, end) = self.scan(buf, batch_size, &mut steps);
            let chunk = buf.split_to(consumed).freeze();
            for step in steps {
                self.execute(step, &chunk, stop).await?;
            }
            match end {
                ScanEnd::BatchFull => {
                    // Let other connections' tasks run between batches of `batch_size` frames.
                    tokio::task::yield_now().await;
                }
                ScanEnd::NeedData => return Ok(()),
                ScanEnd::Stop(stop) => return Err(stop),
            }
        }
    }

    /// Walks up to `batch_size` complete frames at the front of `buf` without awaiting, turning
    /// them into `steps`. Returns the bytes walked and why the walk ended.
    fn scan(
        &mut self,
        buf: &mut BytesMut,
        batch_size: usize,
        steps: &mut Vec<Step>,
    ) -> (usize, ScanEnd) {
        self.ends.clear();
        let mut offset = 0;
        let mut frames = 0;
        let mut open: Option<OpenRun> = None;
        let end = loop {
            if frames == batch_size {
                break ScanEnd::BatchFull;
            }
            let (view, used) = match peek_frame(&buf[offset..], self.max_frame_len) {
                Ok(Some(found)) => found,
                Ok(None) => break ScanEnd::NeedData,
                Err(error) => break ScanEnd::Stop(decode_stop(error)),
            };
            frames += 1;
            if view.kind != kind::PUBLISH {
                self.close_run(&mut open, offset, steps);
                match view.to_frame() {
                    Ok(frame) => steps.push(Step::Control(Box::new(frame))),
                    Err(error) => break ScanEnd::Stop(decode_stop(error)),
                }
                offset += used;
                continue;
            }
            let Some((topic_id, payload)) = view.message() else {
                break ScanEnd::Stop(fatal(
                    ErrorCode::Malformed,
                    "malformed Publish frame: body shorter than 4 bytes",
                ));
            };
            let payload_len = payload.len();
            if open.as_ref().map(|run| run.topic.id()) != Some(topic_id) {
                self.close_run(&mut open, offset, steps);
            }
            let run = match open {
                Some(ref run) => run,
                None => {
                    let topic = match self
                        .topic(topic_id)
                        .and_then(|topic| self.may_publish(topic))
                    {
                        Ok(topic) => topic,
                        Err(refusal) => {
                            steps.push(refusal);
                            offset += used;
                            continue;
                        }
                    };
                    open.insert(OpenRun {
                        max: topic.config().max_message_size,
                        topic,
                        start: offset,
                        first_end: self.ends.len(),
                    })
                }
            };
            let max = run.max;
            if payload_len > max {
                let message = format!(
                    "message of {payload_len} bytes exceeds the limit of {max} bytes on topic '{}'",
                    run.topic.name()
                );
                // Earlier publishes of the run go first, so the refusal reaches the client in
                // the order of the frames it answers.
                self.close_run(&mut open, offset, steps);
                steps.push(Step::Refuse {
                    code: ErrorCode::MessageTooLarge,
                    topic_id,
                    message,
                });
                offset += used;
                continue;
            }
            let run_start = run.start;
            // Relabel in place: the frame goes out to subscribers byte for byte as it came in.
            buf[offset + 5] = kind::DELIVER;
            self.ends.push(offset + used - run_start);
            offset += used;
        };
        self.close_run(&mut open, offset, steps);
        (offset, end)
    }

    /// Turns the open run, if any, into a step; `offset` is where the run's frames end.
    fn close_run(&self, open: &mut Option<OpenRun>, offset: usize, steps: &mut Vec<Step>) {
        if let Some(run) = open.take() {
            if self.ends.len() > run.first_end {
                steps.push(Step::Run {
                    topic: run.topic,
                    bytes: run.start..offset,
                    ends: run.first_end..self.ends.len(),
                });
            }
        }
    }

    async fn execute(
        &mut self,
        step: Step,
        chunk: &Bytes,
        stop: &CancellationToken,
    ) -> Result<(), Stop> {
        match step {
            Step::Run { topic, bytes, ends } => {
                let frames = chunk.slice(bytes);
                let run = FrameRun::new(&frames, &self.ends[ends]);
                self.route(&topic, &run, stop).await
            }
            Step::Control(frame) => {
                self.wait_for_outbox(stop).await?;
                match *frame {
                    Frame::ReloadRequest { request_id } => self.reload(request_id, stop).await,
                    frame => self.control(frame),
                }
            }
            Step::Refuse {
                code,
                topic_id,
                message,
            } => {
                self.wait_for_outbox(stop).await?;
                self.refuse_publishes(code, topic_id, 1, message);
                Ok(())
            }
        }
    }

    /// Waits while this connection's own outbox is over its byte limit: replies (`Pong`,
    /// `Stats`, errors) bypass the message limits, so a peer that sends requests and never
    /// reads must be made to wait here, or their answers would pile up without bound.
    async fn wait_for_outbox(&self, stop: &CancellationToken) -> Result<(), Stop> {
        if !self.outbox.is_over_byte_limit() {
            return Ok(());
        }
        tokio::select! {
            _ = self.outbox.wait_for_bytes_below_limit() => Ok(()),
            _ = stop.cancelled() => Err(Stop::Shutdown),
        }
    }

    /// Routes a batch, waiting while a `block` policy holds it back.
    async fn route<B: Batch + ?Sized>(
        &self,
        topic: &Arc<Topic>,
        payloads: &B,
        stop: &CancellationToken,
    ) -> Result<(), Stop> {
        if payloads.is_empty() {
            return Ok(());
        }
        let mut cursor = PublishCursor::default();
        // A batch already read was accepted: on shutdown it is still routed, while the
        // writers drain, for up to the flush deadline; only a subscriber that takes nothing
        // for that long loses the rest of it.
        let give_up = async {
            stop.cancelled().await;
            tokio::time::sleep(shutdown_deadline(&self.state)).await;
        };
        tokio::pin!(give_up);
        // `block` waits on one slow reader at most `publish_deadline_ms` (0: for ever),
        // counted over every wake-up of this batch's wait on it, not afresh at each.
        let mut held = HeldBack::default();
        // Messages of the batch already refused to the publisher (given up on), and whether a
        // slow reader held the batch back.
        let (mut told, mut was_held) = (0, false);
        while let Progress::Blocked(blocker) = topic.publish(payloads, &mut cursor) {
            was_held = true;
            tokio::select! {
                gave_up = topic.wait_or_give_up(&blocker, payloads, &mut cursor, &mut held) => {
                    if let Some(GaveUp::Dropped(n)) = gave_up {
                        told += n;
                        let waited = topic.config().publish_deadline_ms;
                        let batch = payloads.len();
                        self.refuse_publishes(ErrorCode::SlowConsumer, topic.id(), n, format!(
                            "topic '{}' could take no more for {waited} ms (backpressure = block, \
                             publish_deadline_ms = {waited}): of a batch of {batch} message(s), \
                             {} were routed and {n} dropped",
                            topic.name(),
                            batch - n,
                        ));
                    }
                }
                _ = &mut give_up => {
                    tracing::warn!(topic = topic.name(), "shutdown deadline passed with a batch still blocked on a slow subscriber");
                    return Err(Stop::Shutdown);
                }
                _ = self.outbox.closed() => return Err(Stop::Gone),
            }
        }
        // Removed while the batch was in hand (perhaps held back by a slow subscriber): what
        // had not been routed is lost (and what was given up on was told already); say so
        // once, with how many.
        let batch = payloads.len();
        let lost = batch.saturating_sub(cursor.routed() + told);
        if lost > 0 && topic.is_removed() {
            let how = if was_held {
                "was held back by a slow subscriber"
            } else {
                "was being routed"
            };
            let routed = batch - lost - told;
            let before = match told {
                0 => String::new(),
                told => format!(" ({told} more had been dropped before)"),
            };
            self.refuse_publishes(
                ErrorCode::TopicRemoved,
                topic.id(),
                lost,
                format!(
                    "topic '{}' was removed from the broker's config while a batch of {batch} \
                     message(s) to it {how}: {routed} were routed, {lost} were not{before}",
                    topic.name(),
                ),
            );
        }
        Ok(())
    }

    /// Answers a `ReloadRequest` once a reload that started after it is done. Awaited in
    /// frame order, so the frames sent after the request are handled after the reload (a
    /// `Pong` after it means the reload is done, as for any request).
    async fn reload(&self, request_id: u32, stop: &CancellationToken) -> Result<(), Stop> {
        let answer = tokio::select! {
            answer = self.state.reload.request() => answer,
            _ = stop.cancelled() => return Err(Stop::Shutdown),
        };
        self.outbox.append_control(&Frame::ReloadResult {
            request_id,
            outcome: answer.outcome,
            status: answer.status.truncated(),
        });
        Ok(())
    }

    /// `topic` if this peer may publish to it (checked at each run: a reload may revoke it).
    fn may_publish(&self, topic: Arc<Topic>) -> Result<Arc<Topic>, Step> {
        match topic.check_access(Action::Publish, &self.peer) {
            Ok(()) => Ok(topic),
            Err(message) => Err(Step::Refuse {
                code: ErrorCode::PermissionDenied,
                topic_id: topic.id(),
                message,
            }),
        }
    }

    /// Refuses request `request_id` if this peer may not do `action` on `topic`; true if
    /// it was refused.
    fn refuse_access(&self, request_id: u32, action: Action, topic: &Topic) -> bool {
        match topic.check_access(action, &self.peer) {
            Ok(()) => false,
            Err(message) => {
                tracing::info!(connection = self.id, topic = topic.name(), peer = %self.peer.describe(), action = action.key(), "access refused");
                self.refuse(request_id, ErrorCode::PermissionDenied, topic.id(), message);
                true
            }
        }
    }

    /// The topic a publish names by id, from the connection's cache; a refusal when no topic
    /// has the id, or a reload removed it.
    fn topic(&mut self, id: TopicId) -> Result<Arc<Topic>, Step> {
        let index = id as usize;
        if let Some(Some(topic)) = self.topics.get(index) {
            if topic.is_removed() {
                return Err(removed_step(topic));
            }
            return Ok(topic.clone());
        }
        let Some(topic) = self.state.registry.get(id) else {
            return Err(Step::Refuse {
                code: ErrorCode::UnknownTopic,
                topic_id: id,
                message: format!("no topic with id {id}"),
            });
        };
        if topic.is_removed() {
            return Err(removed_step(&topic));
        }
        if self.topics.len() <= index {
            self.topics.resize(index + 1, None);
        }
        self.topics[index] = Some(topic.clone());
        Ok(topic)
    }

    /// Refuses request `request_id` (0: a frame that is not a request, such as `Credit`, or
    /// a notice about a subscription) with a non-fatal error that refuses no publish.
    fn refuse(&self, request_id: u32, code: ErrorCode, topic_id: u32, message: String) {
        tracing::debug!(connection = self.id, ?code, %message, "refused a request");
        self.outbox.append_control(&Frame::Error {
            request_id,
            code,
            fatal: false,
            topic_id,
            message,
            refused: 0,
        });
    }

    /// Tells the client that `refused` of the messages it published on `topic_id` were not
    /// routed: a non-fatal error with request id 0 that carries the count, so a client that
    /// adds them up knows exactly what was accepted.
    fn refuse_publishes(&self, code: ErrorCode, topic_id: u32, refused: usize, message: String) {
        tracing::debug!(connection = self.id, ?code, refused, %message, "refused publishes");
        self.outbox.append_control(&Frame::Error {
            request_id: NO_REQUEST,
            code,
            fatal: false,
            topic_id,
            message,
            // A batch is bounded by the read buffer, far below u32::MAX messages.
            refused: u32::try_from(refused).unwrap_or(u32::MAX),
        });
    }

    fn refuse_lookup(&self, request_id: u32, error: LookupError) {
        let code = match error {
            LookupError::UnknownTopic { .. } | LookupError::TooManyTopics { .. } => {
                ErrorCode::UnknownTopic
            }
            LookupError::InvalidName { .. } => ErrorCode::InvalidTopicName,
        };
        self.refuse(request_id, code, NO_TOPIC, error.to_string());
    }

    /// Handles one control frame.
    fn control(&mut self, frame: Frame) -> Result<(), Stop> {
        match frame {
            Frame::Subscribe { request_id, prefetch, topic } => {
                let topic = match self.state.registry.resolve(&topic) {
                    Ok(topic) => topic,
                    Err(error) => {
                        self.refuse_lookup(request_id, error);
                        return Ok(());
                    }
                };
                if self.refuse_access(request_id, Action::Subscribe, &topic) {
                    return Ok(());
                }
                if self.subscriptions.contains_key(&topic.id()) {
                    let message = format!("already subscribed to topic '{}'", topic.name());
                    self.refuse(request_id, ErrorCode::AlreadySubscribed, topic.id(), message);
                    return Ok(());
                }
                let per_connection = self.state.config().server.max_subscriptions_per_connection;
                if self.subscriptions.len() >= per_connection {
                    let message = format!("this connection already holds {} subscriptions (server.max_subscriptions_per_connection = {per_connection})", self.subscriptions.len());
                    self.refuse(request_id, ErrorCode::LimitExceeded, topic.id(), message);
                    return Ok(());
                }
                if !self.state.try_add_subscription() {
                    let message = format!("the broker holds its most subscriptions (server.max_subscriptions = {})", self.state.config().server.max_subscriptions);
                    self.refuse(request_id, ErrorCode::LimitExceeded, topic.id(), message);
                    return Ok(());
                }
                let id = self.state.registry.next_subscriber_id();
                let capacity = self.state.config().performance.channel_capacity;
                let granted = match topic.routing() {
                    Routing::Fanout => 0,
                    Routing::Queue => topic.granted_prefetch(prefetch),
                };
                // The ack is queued first, so it precedes every Deliver of the subscription, and
                // held until the subscription exists, so a client that saw the ack (and told
                // a publisher to go) cannot miss a message routed in between.
                let hold = self.outbox.append_control_held(&topic_ack(request_id, &topic, granted));
                if topic.subscribe(id, self.outbox.clone(), capacity, granted).is_none() {
                    // A reload removed the topic since the lookup: the ack is followed at
                    // once by the removal notice, as for any subscriber of a removed topic.
                    self.state.remove_subscriptions(1);
                    self.refuse(
                        0,
                        ErrorCode::TopicRemoved,
                        topic.id(),
                        format!(
                            "topic '{}' was removed from the broker's config; this subscription has ended",
                            topic.name()
                        ),
                    );
                    drop(hold);
                    return Ok(());
                }
                // Shared-memory publishers' rings are read for this subscriber from now on,
                // before it sees the ack.
                self.state.shm.socket_subscribers_changed(&topic);
                drop(hold);
                tracing::debug!(connection = self.id, topic = topic.name(), "subscribed");
                self.subscriptions.insert(topic.id(), Subscription { id, topic });
            }
            Frame::Unsubscribe { request_id, topic_id } => match self.subscriptions.remove(&topic_id).inspect(|_| self.state.remove_subscriptions(1)) {
                // A removed topic ended the subscription already (and said so).
                Some(sub) if sub.topic.is_removed() => self.refuse(request_id, ErrorCode::NotSubscribed, topic_id, format!("topic id {topic_id} was removed; the subscription ended then")),
                Some(sub) => {
                    sub.topic.unsubscribe(sub.id);
                    self.state.shm.socket_subscribers_changed(&sub.topic);
                    self.outbox.append_control(&Frame::Ack { request_id });
                }
                None => self.refuse(request_id, ErrorCode::NotSubscribed, topic_id, format!("not subscribed to topic id {topic_id}")),
            },
            Frame::Advertise { request_id, topic } => match self.state.registry.resolve(&topic) {
                Ok(topic) => {
                    if !self.refuse_access(request_id, Action::Publish, &topic) {
                        self.outbox.append_control(&topic_ack(request_id, &topic, 0));
                    }
                }
                Err(error) => self.refuse_lookup(request_id, error),
            },
            Frame::Credit { topic_id, credit } => match self.subscriptions.get(&topic_id) {
                Some(sub) if sub.topic.add_credit(sub.id, credit) => {}
                // Sent before the client saw the removal notice: nothing to refuse.
                Some(sub) if sub.topic.is_removed() => {}
                _ => self.refuse(0, ErrorCode::NotSubscribed, topic_id, format!("credit for topic id {topic_id}, which this connection does not consume as a queue")),
            },
            Frame::Ping { token } => {
                self.outbox.append_control(&Frame::Pong { token });
            }
            Frame::Pong { .. } => {}
            Frame::StatsRequest { request_id } => {
                self.outbox.append_control(&self.state.stats_frame(request_id));
            }
            // Answered by `reload`, which waits; `execute` sends it there.
            Frame::ReloadRequest { .. } => {}
            Frame::Hello { .. } | Frame::ShmHello { .. } => return Err(fatal(ErrorCode::HandshakeRequired, "Hello sent twice")),
            Frame::ShmAttach { .. } | Frame::ShmDetach { .. } | Frame::ShmSegment { .. } => {
                return Err(fatal(ErrorCode::ShmRefused, "shared-memory requests need a session of their own: open a connection that starts with ShmHello"));
            }
            Frame::Publish { .. } => unreachable_publish(),
            Frame::Welcome { .. } | Frame::TopicAck { .. } | Frame::Ack { .. } | Frame::Deliver { .. } | Frame::Error { .. } | Frame::Stats { .. } | Frame::ShmGrant { .. } | Frame::ShmRingAdded { .. } | Frame::ShmRingRemoved { .. } | Frame::ShmDetached { .. } | Frame::ShmSegmentAdded { .. } | Frame::ReloadResult { .. } | Frame::Lagged { .. } => {
                return Err(fatal(ErrorCode::HandshakeRequired, "a client sent a frame only the broker may send"));
            }
        }
        Ok(())
    }

    /// Removes this connection's subscriptions and closes its outbox (flushing what is queued).
    fn leave(&mut self) {
        self.state.remove_subscriptions(self.subscriptions.len());
        for (_, sub) in self.subscriptions.drain() {
            // (A removed topic's `unsubscribe` finds nobody, harmlessly.)
            sub.topic.unsubscribe(sub.id);
            self.state.shm.socket_subscribers_changed(&sub.topic);
        }
        self.outbox.close();
        self.state.unregister(self.id);
    }
}

/// Publishes are handled on the hot path before `control` is reached.
fn unreachable_publish() {
    tracing::error!("a Publish frame reached the control path");
}

fn topic_ack(request_id: u32, topic: &Topic, prefetch: u32) -> Frame {
    Frame::TopicAck {
        request_id,
        topic_id: topic.id(),
        routing: match topic.routing() {
            Routing::Fanout => RoutingKind::Fanout,
            Routing::Queue => RoutingKind::Queue,
        },
        max_message_size: u32::try_from(topic.config().max_message_size).unwrap_or(u32::MAX),
        prefetch,
    }
}

/// Why a publish to a topic a reload removed was refused.
fn removed_message(topic: &Topic) -> String {
    format!(
        "topic '{}' was removed from the broker's config; the message was not routed",
        topic.name()
    )
}

/// The refusal, in a scan, of a publish to a topic a reload removed.
fn removed_step(topic: &Topic) -> Step {
    Step::Refuse {
        code: ErrorCode::TopicRemoved,
        topic_id: topic.id(),
        message: removed_message(topic),
    }
}

/// `wait` from now; a wait past what an `Instant` can hold (a config may ask for
/// u64::MAX ms) is a year, which is as good as never here, instead of a panic.
fn after(wait: Duration) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    now.checked_add(wait)
        .unwrap_or_else(|| now + Duration::from_secs(365 * 24 * 3600))
}

/// Reads until one whole frame (at most `HANDSHAKE_MAX_FRAME_LEN`) is in `buf`, and lets the
/// handshake decide it.
async fn read_one_frame(reader: &mut UnixStream, buf: &mut BytesMut) -> Result<Greeting, Stop> {
    loop {
        match ServerHandshake::new().receive(buf) {
            Ok(Some(greeting)) => return Ok(greeting),
            Ok(None) => {}
            Err(refusal) => return Err(refused(&refusal)),
        }
        buf.reserve(HANDSHAKE_MAX_FRAME_LEN);
        match reader.read_buf(buf).await {
            Ok(0) | Err(_) => return Err(Stop::Gone),
            Ok(_) => {}
        }
    }
}
