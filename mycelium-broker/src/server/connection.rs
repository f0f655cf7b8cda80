//! One client connection: the handshake, then a reader that routes and a writer that flushes.
//!
//! - The reader parses every complete frame in each `read` (up to 64 KiB and more), groups
//!   consecutive publishes to one topic into a batch, and routes the batch with one lock per
//!   subscriber. It never allocates per message.
//! - Everything toward the client (replies, deliveries, errors) goes through the connection's
//!   [`Outbox`], so a reply is ordered with the deliveries around it: a `TopicAck` precedes the
//!   subscription's first `Deliver`, and a `Pong` follows the effects of every earlier frame.
//! - The writer swaps out the whole outbox per wake-up and writes it in one call.
//! - A protocol violation gets a fatal `Error` frame and closes only this connection. A peer
//!   that vanishes (SIGKILL) is seen as EOF or a write error; its subscriptions are removed and its
//!   outbox aborted, so publishers skip it from then on.
//! - On broker shutdown the reader stops after the batch in hand and leaves the outbox open;
//!   the listener closes every outbox once all readers have stopped, so nothing accepted is lost.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use mycelium_config::Routing;
use mycelium_transport::codec;
use mycelium_transport::frame::{kind, NO_TOPIC};
use mycelium_transport::{
    peek_frame, DecodeError, ErrorCode, Frame, RoutingKind, HANDSHAKE_MAX_FRAME_LEN,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::core::topic::{Progress, PublishCursor, SubscriberId, Topic, TopicId};
use crate::error::LookupError;
use crate::outbox::Outbox;
use crate::server::state::BrokerState;

/// Bytes the reader asks the kernel for per `read`: large enough that a flat-out publisher's
/// frames arrive thousands per syscall.
const READ_CHUNK: usize = 256 * 1024;

/// Why the reader stopped.
enum Stop {
    /// The peer closed its end, or went away.
    Gone,
    /// The broker is shutting down: leave the outbox for the listener to flush.
    Shutdown,
    /// The peer broke the protocol; send this fatal error, then close.
    Fatal(Frame),
}

fn fatal(code: ErrorCode, message: impl Into<String>) -> Stop {
    Stop::Fatal(Frame::Error {
        request_id: 0,
        code,
        fatal: true,
        topic_id: NO_TOPIC,
        message: message.into(),
    })
}

fn decode_stop(error: DecodeError) -> Stop {
    match error {
        DecodeError::Io(_) => Stop::Gone,
        other => fatal(other.error_code(), other.to_string()),
    }
}

struct Subscription {
    id: SubscriberId,
    topic: Arc<Topic>,
}

/// The reader side's state for one connection.
struct Connection {
    state: Arc<BrokerState>,
    outbox: Arc<Outbox>,
    id: u64,
    /// Subscriptions by topic id; a connection subscribes at most once per topic.
    subscriptions: HashMap<TopicId, Subscription>,
    /// Topics this connection published to, by id, so a publish needs no registry lookup.
    /// Grows only to ids the registry knows, so a peer cannot make it allocate.
    topics: Vec<Option<Arc<Topic>>>,
    max_frame_len: usize,
}

/// Serves one accepted socket until the peer leaves, breaks the protocol, or `stop` fires.
///
/// The writer task is spawned on `writers` so that shutdown can wait for it to flush.
pub(crate) async fn serve(
    stream: UnixStream,
    state: Arc<BrokerState>,
    stop: CancellationToken,
    writers: TaskTracker,
) {
    if let Err(error) = mycelium_transport::uds::tune_stream(&stream) {
        tracing::debug!(%error, "could not enlarge the socket buffers");
    }
    let (mut reader, writer) = stream.into_split();
    let outbox = Arc::new(Outbox::new());
    writers.spawn(write_loop(writer, outbox.clone()));
    let mut conn = Connection {
        id: state.next_connection_id(),
        state,
        outbox,
        subscriptions: HashMap::new(),
        topics: Vec::new(),
        max_frame_len: HANDSHAKE_MAX_FRAME_LEN,
    };
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let outcome = match conn.handshake(&mut reader, &mut buf, &stop).await {
        Ok(()) => conn.read_loop(&mut reader, &mut buf, &stop).await,
        Err(stop) => stop,
    };
    match outcome {
        Stop::Shutdown => {}
        Stop::Gone => {
            tracing::debug!(connection = conn.id, "client disconnected");
            conn.leave();
        }
        Stop::Fatal(frame) => {
            if let Frame::Error { code, message, .. } = &frame {
                tracing::warn!(connection = conn.id, ?code, %message, "dropping client");
            }
            conn.outbox.close_with(&frame);
            conn.leave();
        }
    }
    conn.state.close_socket();
}

/// Flushes the outbox to the socket until it is closed and empty, or the peer is gone.
async fn write_loop(mut writer: OwnedWriteHalf, outbox: Arc<Outbox>) {
    let mut buf = BytesMut::new();
    loop {
        outbox.readable().await;
        if outbox.take(&mut buf) {
            if let Err(error) = writer.write_all(&buf).await {
                tracing::debug!(%error, "write to client failed; discarding its queue");
                outbox.abort();
                return;
            }
        } else if outbox.is_finished() {
            break;
        }
    }
    let _ = writer.shutdown().await;
}

impl Connection {
    /// Reads `Hello` (within the connection timeout) and answers `Welcome`.
    async fn handshake(
        &mut self,
        reader: &mut OwnedReadHalf,
        buf: &mut BytesMut,
        stop: &CancellationToken,
    ) -> Result<(), Stop> {
        let timeout = Duration::from_millis(self.state.config.server.connection_timeout_ms);
        let first = tokio::select! {
            _ = stop.cancelled() => return Err(fatal(ErrorCode::ShuttingDown, "the broker is shutting down")),
            read = tokio::time::timeout(timeout, read_one_frame(reader, buf)) => match read {
                Err(_) => return Err(fatal(
                    ErrorCode::HandshakeTimeout,
                    format!("no Hello within connection_timeout_ms = {}", timeout.as_millis()),
                )),
                Ok(result) => result?,
            },
        };
        let Frame::Hello { client_id, name } = first else {
            return Err(fatal(
                ErrorCode::HandshakeRequired,
                "the first frame must be Hello",
            ));
        };
        self.max_frame_len = self.state.max_frame_len();
        self.outbox.append_control(&Frame::Welcome {
            broker_id: self.state.broker_id,
            connection_id: self.id,
            max_message_size: u32::try_from(self.state.max_message_size()).unwrap_or(u32::MAX),
            max_frame_len: u32::try_from(self.max_frame_len).unwrap_or(u32::MAX),
            server: format!("mycelium {}", env!("CARGO_PKG_VERSION")),
        });
        self.state.register(self.id, self.outbox.clone());
        tracing::debug!(connection = self.id, %client_id, name = %name, "client connected");
        Ok(())
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
            codec::reserve_for_read(buf, READ_CHUNK, self.max_frame_len);
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
                    Ok(_) => {}
                    Err(_) => return Stop::Gone,
                },
            }
        }
    }

    /// Handles every complete frame in `buf` and consumes them.
    async fn process(&mut self, buf: &mut BytesMut, stop: &CancellationToken) -> Result<(), Stop> {
        let batch_size = self.state.config.performance.batch_size.max(1);
        let mut consumed = 0;
        let result = 'frames: loop {
            let data = &buf[consumed..];
            let mut offset = 0;
            let mut run: Vec<&[u8]> = Vec::new();
            let mut run_topic: Option<Arc<Topic>> = None;
            let mut frames = 0;
            let outcome = loop {
                if frames == batch_size {
                    break Ok(true);
                }
                let (view, used) = match peek_frame(&data[offset..], self.max_frame_len) {
                    Ok(Some(found)) => found,
                    Ok(None) => break Ok(false),
                    Err(error) => break Err(decode_stop(error)),
                };
                frames += 1;
                if view.kind == kind::PUBLISH {
                    let Some((topic_id, payload)) = view.message() else {
                        break Err(fatal(
                            ErrorCode::Malformed,
                            "malformed Publish frame: body shorter than 4 bytes",
                        ));
                    };
                    if run_topic.as_ref().map(|t| t.id()) != Some(topic_id) {
                        if let Some(topic) = run_topic.take() {
                            self.route(&topic, &run, stop).await?;
                            run.clear();
                        }
                        run_topic = self.topic(topic_id);
                    }
                    match &run_topic {
                        None => self.refuse(
                            0,
                            ErrorCode::UnknownTopic,
                            topic_id,
                            format!("no topic with id {topic_id}"),
                        ),
                        Some(topic) if payload.len() > topic.config().max_message_size => {
                            // Earlier publishes of the run go first, so the refusal reaches the
                            // client in the order of the frames it answers.
                            self.route(topic, &run, stop).await?;
                            run.clear();
                            let message = format!(
                                "message of {} bytes exceeds the limit of {} bytes on topic '{}'",
                                payload.len(),
                                topic.config().max_message_size,
                                topic.name()
                            );
                            self.refuse(0, ErrorCode::MessageTooLarge, topic_id, message)
                        }
                        Some(_) => run.push(payload),
                    }
                } else {
                    if let Some(topic) = run_topic.take() {
                        self.route(&topic, &run, stop).await?;
                        run.clear();
                    }
                    match view.to_frame() {
                        Ok(frame) => {
                            if let Err(stop) = self.control(frame) {
                                break Err(stop);
                            }
                        }
                        Err(error) => break Err(decode_stop(error)),
                    }
                }
                offset += used;
            };
            if let Some(topic) = run_topic.take() {
                self.route(&topic, &run, stop).await?;
            }
            consumed += offset;
            match outcome {
                Ok(true) => {
                    // Let other connections' tasks run between batches of `batch_size` frames.
                    tokio::task::yield_now().await;
                    continue 'frames;
                }
                Ok(false) => break 'frames Ok(()),
                Err(stop) => break 'frames Err(stop),
            }
        };
        buf.advance(consumed);
        result
    }

    /// Routes a batch, waiting while a `block` policy holds it back.
    async fn route(
        &self,
        topic: &Arc<Topic>,
        payloads: &[&[u8]],
        stop: &CancellationToken,
    ) -> Result<(), Stop> {
        if payloads.is_empty() {
            return Ok(());
        }
        let mut cursor = PublishCursor::default();
        while let Progress::Blocked(blocker) = topic.publish(payloads, &mut cursor) {
            tokio::select! {
                _ = blocker.wait() => {}
                _ = stop.cancelled() => return Err(Stop::Shutdown),
                _ = self.outbox.closed() => return Err(Stop::Gone),
            }
        }
        Ok(())
    }

    fn topic(&mut self, id: TopicId) -> Option<Arc<Topic>> {
        if let Some(Some(topic)) = self.topics.get(id as usize) {
            return Some(topic.clone());
        }
        let topic = self.state.registry.get(id)?;
        let index = id as usize;
        if self.topics.len() <= index {
            self.topics.resize(index + 1, None);
        }
        self.topics[index] = Some(topic.clone());
        Some(topic)
    }

    fn refuse(&self, request_id: u32, code: ErrorCode, topic_id: u32, message: String) {
        tracing::debug!(connection = self.id, ?code, %message, "refused a request");
        self.outbox.append_control(&Frame::Error {
            request_id,
            code,
            fatal: false,
            topic_id,
            message,
        });
    }

    fn refuse_lookup(&self, request_id: u32, error: LookupError) {
        let code = match error {
            LookupError::UnknownTopic { .. } => ErrorCode::UnknownTopic,
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
                if self.subscriptions.contains_key(&topic.id()) {
                    let message = format!("already subscribed to topic '{}'", topic.name());
                    self.refuse(request_id, ErrorCode::AlreadySubscribed, topic.id(), message);
                    return Ok(());
                }
                let id = self.state.registry.next_subscriber_id();
                let capacity = self.state.config.performance.channel_capacity;
                let granted = match topic.config().routing {
                    Routing::Fanout => 0,
                    Routing::Queue => topic.granted_prefetch(prefetch),
                };
                // The ack is queued first, so it precedes every Deliver of the subscription, and
                // held until the subscription exists, so a client that saw the ack (and told
                // a publisher to go) cannot miss a message routed in between.
                let hold = self.outbox.append_control_held(&topic_ack(request_id, &topic, granted));
                topic.subscribe(id, self.outbox.clone(), capacity, granted);
                drop(hold);
                tracing::debug!(connection = self.id, topic = topic.name(), "subscribed");
                self.subscriptions.insert(topic.id(), Subscription { id, topic });
            }
            Frame::Unsubscribe { request_id, topic_id } => match self.subscriptions.remove(&topic_id) {
                Some(sub) => {
                    sub.topic.unsubscribe(sub.id);
                    self.outbox.append_control(&Frame::Ack { request_id });
                }
                None => self.refuse(request_id, ErrorCode::NotSubscribed, topic_id, format!("not subscribed to topic id {topic_id}")),
            },
            Frame::Advertise { request_id, topic } => match self.state.registry.resolve(&topic) {
                Ok(topic) => {
                    self.outbox.append_control(&topic_ack(request_id, &topic, 0));
                }
                Err(error) => self.refuse_lookup(request_id, error),
            },
            Frame::Credit { topic_id, credit } => match self.subscriptions.get(&topic_id) {
                Some(sub) if sub.topic.add_credit(sub.id, credit) => {}
                _ => self.refuse(0, ErrorCode::NotSubscribed, topic_id, format!("credit for topic id {topic_id}, which this connection does not consume as a queue")),
            },
            Frame::Ping { token } => {
                self.outbox.append_control(&Frame::Pong { token });
            }
            Frame::Pong { .. } => {}
            Frame::StatsRequest { request_id } => {
                self.outbox.append_control(&self.state.stats_frame(request_id));
            }
            Frame::Hello { .. } => return Err(fatal(ErrorCode::HandshakeRequired, "Hello sent twice")),
            Frame::Publish { .. } => unreachable_publish(),
            Frame::Welcome { .. } | Frame::TopicAck { .. } | Frame::Ack { .. } | Frame::Deliver { .. } | Frame::Error { .. } | Frame::Stats { .. } => {
                return Err(fatal(ErrorCode::HandshakeRequired, "a client sent a frame only the broker may send"));
            }
        }
        Ok(())
    }

    /// Removes this connection's subscriptions and closes its outbox (flushing what is queued).
    fn leave(&mut self) {
        for (_, sub) in self.subscriptions.drain() {
            sub.topic.unsubscribe(sub.id);
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
        routing: match topic.config().routing {
            Routing::Fanout => RoutingKind::Fanout,
            Routing::Queue => RoutingKind::Queue,
        },
        max_message_size: u32::try_from(topic.config().max_message_size).unwrap_or(u32::MAX),
        prefetch,
    }
}

/// Reads until one whole frame (at most `HANDSHAKE_MAX_FRAME_LEN`) is in `buf`, and decodes it.
async fn read_one_frame(reader: &mut OwnedReadHalf, buf: &mut BytesMut) -> Result<Frame, Stop> {
    loop {
        match peek_frame(buf, HANDSHAKE_MAX_FRAME_LEN) {
            Ok(Some((view, used))) => {
                let frame = view.to_frame().map_err(decode_stop)?;
                buf.advance(used);
                return Ok(frame);
            }
            Ok(None) => {}
            Err(error) => return Err(decode_stop(error)),
        }
        buf.reserve(HANDSHAKE_MAX_FRAME_LEN);
        match reader.read_buf(buf).await {
            Ok(0) | Err(_) => return Err(Stop::Gone),
            Ok(_) => {}
        }
    }
}
