//! The socket connection of the async client: a cheap `Clone` handle over one broker
//! connection.
//!
//! - [`SocketClient::connect_with`] performs the handshake (Hello → Welcome) before returning,
//!   so a client in hand is a client the broker accepted.
//! - Publishing appends the frame to a shared outgoing queue under a short lock; one writer
//!   task flushes everything queued per wake-up, so a burst of publishes leaves in a few large
//!   writes. A full queue makes `publish` wait: backpressure, not unbounded memory.
//! - Requests (advertise, subscribe, unsubscribe, stats, flush) carry a request id; one reader
//!   task matches answers to the waiting callers and dispatches deliveries to subscriptions.
//! - When the connection ends, every waiting call and every subscription learns that the
//!   broker is gone (or the broker's fatal error): nothing hangs.
//!

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use mycelium_transport::frame::kind;
use mycelium_transport::handshake::{ClientHandshake, Opening, Welcome, WelcomeError};
use mycelium_transport::limits::MAX_BROKER_CONTROL_FRAME_LEN;
use mycelium_transport::NO_REQUEST;
use mycelium_transport::{
    codec, peek_frame, ConfigStatus, ErrorCode, Frame, ReloadOutcome, TopicStats,
    HANDSHAKE_MAX_FRAME_LEN,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;
use tokio::sync::oneshot;
use uuid::Uuid;

use crate::error::ClientError;
use crate::subscription::{SocketSubscription, SubscriptionQueue};
use mycelium_transport::outbox::{Appended, Outbox};

/// Messages the outgoing queue holds before `publish` waits for the writer.
pub(crate) const PUBLISH_QUEUE_MESSAGES: usize = 64 * 1024;

/// Bytes asked of the kernel per read.
const READ_CHUNK: usize = 256 * 1024;

/// The socket connection's options, taken from [`ClientOptions`](crate::ClientOptions).
#[derive(Debug, Clone)]
pub(crate) struct SocketOptions {
    /// Shown in the broker's logs.
    pub name: String,
    /// Identifies this client to the broker; random by default.
    pub client_id: Uuid,
    /// How long connecting and the handshake may take.
    pub connect_timeout: Duration,
    /// How long a request (subscribe, advertise, stats, flush) may wait for its answer.
    pub request_timeout: Duration,
}

impl Default for SocketOptions {
    fn default() -> SocketOptions {
        SocketOptions {
            name: String::new(),
            client_id: Uuid::new_v4(),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// What the broker said in its `Welcome`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    /// Random per broker run.
    pub broker_id: Uuid,
    /// This connection's id in the broker's logs.
    pub connection_id: u64,
    /// The largest payload any topic accepts.
    pub max_message_size: u32,
    /// The largest frame the broker accepts.
    pub max_frame_len: u32,
    /// The broker's name and version.
    pub server: String,
}

/// A snapshot of the broker's counters, from [`Client::stats`](crate::Client::stats).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerStats {
    /// Open client connections.
    pub connections: u32,
    /// Milliseconds since the broker started.
    pub uptime_ms: u64,
    /// Per topic, in declaration order.
    pub topics: Vec<TopicStats>,
    /// The config's generation and the outcome of the last reload.
    pub config: ConfigStatus,
}

/// What [`Client::reload`](crate::Client::reload) got back: the reload's outcome and the
/// config's status after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadReport {
    /// Applied, unchanged, or failed (then `status.last_error` says why).
    pub outcome: ReloadOutcome,
    /// The config's generation and what the reload changed or did not apply.
    pub status: ConfigStatus,
}

#[derive(Debug, Clone, Copy)]
struct TopicInfo {
    id: u32,
    max_message_size: usize,
}

/// The refusals of publishes since the last flush: the first, and how many messages.
#[derive(Debug)]
struct PublishErrors {
    /// The first refusal.
    first: ClientError,
    /// The messages the later refusals refused (one may refuse a whole batch).
    more: u64,
}

#[derive(Debug, Default)]
struct Registry {
    /// Callers waiting for the answer to a request, by request id (ping tokens too).
    pending: HashMap<u32, oneshot::Sender<Result<Frame, ClientError>>>,
    /// Live subscriptions by topic id.
    subscriptions: HashMap<u32, Arc<SubscriptionQueue>>,
    /// Topic ids resolved for publishing, by name.
    publish_topics: HashMap<String, TopicInfo>,
    /// The refusals of publishes (request id 0) since the last flush.
    publish_errors: Option<PublishErrors>,
    /// Every refusal of a publish since the connection began, for
    /// [`SocketClient::refused_publishes`].
    refused_publishes: u64,
    /// Subscribe requests that timed out: if their ack still comes, the broker holds a
    /// subscription nobody reads, and it must be told to drop it.
    abandoned_subscribes: std::collections::HashSet<u32>,
    /// Set once the connection is gone; every later call fails with it.
    gone: Option<ClientError>,
}

/// State shared by the handles, the subscriptions and the connection's two tasks.
#[derive(Debug)]
pub(crate) struct Shared {
    /// Frames toward the broker; drained by the writer task, which owns the socket's write half.
    outbox: Outbox,
    registry: Mutex<Registry>,
    next_request: AtomicU32,
    info: BrokerInfo,
    options: SocketOptions,
    /// The reader task; `close` waits for it so that the socket is released on return.
    reader: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Set by `close`: the end of the connection is then expected, and subscriptions end
    /// cleanly instead of with `BrokerGone`.
    closing: std::sync::atomic::AtomicBool,
}

/// A handle on one broker connection; clones share it. See the module docs.
#[derive(Debug, Clone)]
pub(crate) struct SocketClient {
    shared: Arc<Shared>,
}

/// Publishes on one topic without looking the topic up again; see
/// [`SocketClient::publisher`].
#[derive(Debug, Clone)]
pub(crate) struct SocketPublisher {
    shared: Arc<Shared>,
    topic: Arc<str>,
    info: TopicInfo,
}

impl SocketClient {
    /// Connects with explicit options.
    pub(crate) async fn connect_with(
        path: impl AsRef<Path>,
        options: SocketOptions,
    ) -> Result<SocketClient, ClientError> {
        let path = path.as_ref().to_owned();
        let timeout = options.connect_timeout;
        match tokio::time::timeout(timeout, handshake(&path, &options)).await {
            Err(_) => Err(ClientError::Timeout("connecting to the broker")),
            Ok(Err(error)) => Err(error),
            Ok(Ok((stream, info, leftover))) => {
                Ok(SocketClient::start(stream, info, leftover, options))
            }
        }
    }

    fn start(
        stream: UnixStream,
        info: BrokerInfo,
        leftover: BytesMut,
        options: SocketOptions,
    ) -> SocketClient {
        let (reader, writer) = stream.into_split();
        let shared = Arc::new(Shared {
            outbox: Outbox::for_publishing(),
            registry: Mutex::default(),
            next_request: AtomicU32::new(1),
            info,
            options,
            reader: Mutex::new(None),
            closing: std::sync::atomic::AtomicBool::new(false),
        });
        tokio::spawn(write_loop(writer, shared.clone()));
        let handle = tokio::spawn(read_loop(reader, leftover, shared.clone()));
        *shared.reader.lock().unwrap_or_else(|p| p.into_inner()) = Some(handle);
        SocketClient { shared }
    }

    /// What the broker announced at the handshake.
    pub(crate) fn broker_info(&self) -> &BrokerInfo {
        &self.shared.info
    }

    /// A publisher for `topic`: asks the broker for the topic once (an unknown topic is refused
    /// here, with the broker's message naming it).
    pub(crate) async fn publisher(&self, topic: &str) -> Result<SocketPublisher, ClientError> {
        let info = self.shared.resolve(topic).await?;
        Ok(SocketPublisher {
            shared: self.shared.clone(),
            topic: Arc::from(topic),
            info,
        })
    }

    /// Publishes one message on `topic`. Returns once the message is queued for sending;
    /// [`SocketClient::flush`] confirms the broker processed it.
    pub(crate) async fn publish(&self, topic: &str, payload: &[u8]) -> Result<(), ClientError> {
        let info = self.shared.resolve(topic).await?;
        self.shared.publish(topic, info, &[payload]).await
    }

    /// Subscribes to `topic`. For a queue topic the broker grants the topic's prefetch.
    pub(crate) async fn subscribe(&self, topic: &str) -> Result<SocketSubscription, ClientError> {
        self.subscribe_with_prefetch(topic, 0).await
    }

    /// Subscribes, asking for `prefetch` credit on a queue topic (0 = the topic's default).
    pub(crate) async fn subscribe_with_prefetch(
        &self,
        topic: &str,
        prefetch: u32,
    ) -> Result<SocketSubscription, ClientError> {
        let queue = Arc::new(SubscriptionQueue::default());
        let request_id = self.shared.next_request_id();
        let frame = Frame::Subscribe {
            request_id,
            prefetch,
            topic: topic.to_owned(),
        };
        // The queue must be registered before the ack is processed, since Deliver frames follow
        // the ack immediately: the reader registers it on seeing the ack (see `read_loop`).
        let answer = self
            .shared
            .request_with(request_id, &frame, Some(queue.clone()))
            .await?;
        match answer {
            Frame::TopicAck {
                topic_id,
                routing,
                prefetch,
                ..
            } => Ok(SocketSubscription::new(
                self.shared.clone(),
                queue,
                topic,
                topic_id,
                routing,
                prefetch,
            )),
            other => Err(ClientError::Protocol(format!(
                "unexpected answer to Subscribe: {other:?}"
            ))),
        }
    }

    /// Waits until the broker has processed everything this client sent before the call.
    /// Returns the first publish the broker refused since the last flush, if any.
    pub(crate) async fn flush(&self) -> Result<(), ClientError> {
        let token = self.shared.next_request_id();
        self.shared
            .request(
                token,
                &Frame::Ping {
                    token: u64::from(token),
                },
            )
            .await?;
        let refused = self.shared.lock().publish_errors.take();
        match refused {
            None => Ok(()),
            Some(PublishErrors {
                first: ClientError::Refused { code, message },
                more,
                ..
            }) if more > 0 => Err(ClientError::Refused {
                code,
                message: format!(
                    "{message} (and {more} more refused publishes since the last flush)"
                ),
            }),
            Some(PublishErrors { first, .. }) => Err(first),
        }
    }

    /// How many published messages the broker has refused this client since it connected, as
    /// received so far: after [`SocketClient::flush`], every publish sent before it is
    /// answered.
    /// Exact: each refusal says how many messages it refuses (one, or a whole batch held back
    /// by a slow reader and given up after `publish_deadline_ms`, or cut short by the
    /// removal of its topic), and this adds them up. What was sent less this was accepted.
    pub(crate) fn refused_publishes(&self) -> u64 {
        self.shared.lock().refused_publishes
    }

    /// The broker's counters.
    pub(crate) async fn stats(&self) -> Result<BrokerStats, ClientError> {
        let request_id = self.shared.next_request_id();
        match self
            .shared
            .request(request_id, &Frame::StatsRequest { request_id })
            .await?
        {
            Frame::Stats {
                connections,
                uptime_ms,
                topics,
                config,
                ..
            } => Ok(BrokerStats {
                connections,
                uptime_ms,
                topics,
                config,
            }),
            other => Err(ClientError::Protocol(format!(
                "unexpected answer to StatsRequest: {other:?}"
            ))),
        }
    }

    /// Asks the broker to re-read its config file now, and waits for the outcome. A failed
    /// reload is an `Ok` report with [`ReloadOutcome::Failed`]: the broker answered, and kept
    /// its running config.
    pub(crate) async fn reload(&self) -> Result<ReloadReport, ClientError> {
        let request_id = self.shared.next_request_id();
        match self
            .shared
            .request(request_id, &Frame::ReloadRequest { request_id })
            .await?
        {
            Frame::ReloadResult {
                outcome, status, ..
            } => Ok(ReloadReport { outcome, status }),
            other => Err(ClientError::Protocol(format!(
                "unexpected answer to ReloadRequest: {other:?}"
            ))),
        }
    }

    /// Flushes, then closes the connection and waits until it is released. Subscriptions end.
    pub(crate) async fn close(self) -> Result<(), ClientError> {
        let flushed = self.flush().await;
        self.shared.closing.store(true, Ordering::Relaxed);
        self.shared.outbox.close();
        let reader = self
            .shared
            .reader
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(reader) = reader {
            let _ = tokio::time::timeout(self.shared.options.request_timeout, reader).await;
        }
        flushed
    }
}

impl SocketPublisher {
    /// Publishes one message; see [`SocketClient::publish`].
    pub(crate) async fn publish(&self, payload: &[u8]) -> Result<(), ClientError> {
        self.shared
            .publish(&self.topic, self.info, &[payload])
            .await
    }

    /// Queues one message if the outgoing queue has room now; `false` (nothing queued) when
    /// it has not.
    pub(crate) fn try_publish(&self, payload: &[u8]) -> Result<bool, ClientError> {
        if payload.len() > self.info.max_message_size {
            return Err(ClientError::MessageTooLarge {
                topic: self.topic.to_string(),
                size: payload.len(),
                max: self.info.max_message_size,
            });
        }
        match self
            .shared
            .outbox
            .append_messages(self.info.id, &[payload], PUBLISH_QUEUE_MESSAGES)
        {
            Appended::Closed => Err(self.shared.gone_error()),
            Appended::Queued(n) => Ok(n > 0),
        }
    }

    /// Publishes several messages in order with one lock.
    pub(crate) async fn publish_batch(&self, payloads: &[&[u8]]) -> Result<(), ClientError> {
        self.shared.publish(&self.topic, self.info, payloads).await
    }

    /// The topic's payload limit.
    pub(crate) fn max_message_size(&self) -> usize {
        self.info.max_message_size
    }

    /// The topic's name.
    pub(crate) fn topic(&self) -> &str {
        &self.topic
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn next_request_id(&self) -> u32 {
        // NO_REQUEST means "no request" on the wire; skip it when the counter wraps.
        loop {
            let id = self.next_request.fetch_add(1, Ordering::Relaxed);
            if id != NO_REQUEST {
                return id;
            }
        }
    }

    fn gone_error(&self) -> ClientError {
        self.lock()
            .gone
            .clone()
            .unwrap_or(ClientError::BrokerGone { detail: None })
    }

    /// Queues a control frame; false if the connection is closed.
    pub(crate) fn send_control(&self, frame: &Frame) -> bool {
        self.outbox.append_control(frame)
    }

    async fn request(&self, request_id: u32, frame: &Frame) -> Result<Frame, ClientError> {
        self.request_with(request_id, frame, None).await
    }

    /// Sends `frame` and waits for the answer carrying `request_id`. A subscription queue, if
    /// given, is registered by the reader as it sees a `TopicAck`, before any later frame.
    async fn request_with(
        &self,
        request_id: u32,
        frame: &Frame,
        queue: Option<Arc<SubscriptionQueue>>,
    ) -> Result<Frame, ClientError> {
        let (tx, rx) = oneshot::channel();
        {
            let mut registry = self.lock();
            if let Some(gone) = &registry.gone {
                return Err(gone.clone());
            }
            registry.pending.insert(request_id, tx);
            if let Some(queue) = queue {
                // Parked under the request id; moved to `subscriptions` on the ack.
                registry
                    .subscriptions
                    .insert(pending_key(request_id), queue);
            }
        }
        if !self.send_control(frame) {
            self.lock().pending.remove(&request_id);
            return Err(self.gone_error());
        }
        match tokio::time::timeout(self.options.request_timeout, rx).await {
            Err(_) => {
                let mut registry = self.lock();
                registry.pending.remove(&request_id);
                if registry
                    .subscriptions
                    .remove(&pending_key(request_id))
                    .is_some()
                {
                    registry.abandoned_subscribes.insert(request_id);
                }
                Err(ClientError::Timeout("waiting for an answer"))
            }
            Ok(Err(_)) => Err(self.gone_error()),
            Ok(Ok(answer)) => answer,
        }
    }

    async fn resolve(&self, topic: &str) -> Result<TopicInfo, ClientError> {
        if let Some(info) = self.lock().publish_topics.get(topic) {
            return Ok(*info);
        }
        let request_id = self.next_request_id();
        match self
            .request(
                request_id,
                &Frame::Advertise {
                    request_id,
                    topic: topic.to_owned(),
                },
            )
            .await?
        {
            Frame::TopicAck {
                topic_id,
                max_message_size,
                ..
            } => {
                let info = TopicInfo {
                    id: topic_id,
                    max_message_size: max_message_size as usize,
                };
                self.lock().publish_topics.insert(topic.to_owned(), info);
                Ok(info)
            }
            other => Err(ClientError::Protocol(format!(
                "unexpected answer to Advertise: {other:?}"
            ))),
        }
    }

    async fn publish(
        &self,
        topic: &str,
        info: TopicInfo,
        payloads: &[&[u8]],
    ) -> Result<(), ClientError> {
        if let Some(big) = payloads.iter().find(|p| p.len() > info.max_message_size) {
            return Err(ClientError::MessageTooLarge {
                topic: topic.to_owned(),
                size: big.len(),
                max: info.max_message_size,
            });
        }
        let mut rest = payloads;
        while !rest.is_empty() {
            match self
                .outbox
                .append_messages(info.id, rest, PUBLISH_QUEUE_MESSAGES)
            {
                Appended::Closed => return Err(self.gone_error()),
                Appended::Queued(n) => rest = &rest[n..],
            }
            if !rest.is_empty() {
                self.outbox
                    .wait_for_room(info.id, PUBLISH_QUEUE_MESSAGES)
                    .await;
            }
        }
        Ok(())
    }

    pub(crate) async fn unsubscribe(&self, topic_id: u32) -> Result<(), ClientError> {
        self.lock().subscriptions.remove(&topic_id);
        let request_id = self.next_request_id();
        match self
            .request(
                request_id,
                &Frame::Unsubscribe {
                    request_id,
                    topic_id,
                },
            )
            .await?
        {
            Frame::Ack { .. } => Ok(()),
            other => Err(ClientError::Protocol(format!(
                "unexpected answer to Unsubscribe: {other:?}"
            ))),
        }
    }

    /// A dropped subscription: stop dispatching to it and tell the broker, without waiting.
    pub(crate) fn forget_subscription(&self, topic_id: u32) {
        if self.lock().subscriptions.remove(&topic_id).is_some() {
            let request_id = self.next_request_id();
            self.send_control(&Frame::Unsubscribe {
                request_id,
                topic_id,
            });
        }
    }

    /// The connection ended: fail every waiter and end every subscription with `error`.
    fn fail_all(&self, error: ClientError) {
        let (pending, subscriptions) = {
            let mut registry = self.lock();
            if registry.gone.is_none() {
                registry.gone = Some(error.clone());
            }
            (
                std::mem::take(&mut registry.pending),
                std::mem::take(&mut registry.subscriptions),
            )
        };
        for (_, waiter) in pending {
            let _ = waiter.send(Err(error.clone()));
        }
        let clean = self.closing.load(Ordering::Relaxed);
        for (_, queue) in subscriptions {
            queue.end((!clean).then(|| error.clone()));
        }
        self.outbox.abort();
    }

    /// Handles one non-Deliver frame from the broker.
    fn dispatch_control(&self, frame: Frame) {
        let mut registry = self.lock();
        let request_id = match &frame {
            Frame::TopicAck {
                request_id,
                topic_id,
                ..
            } => {
                if let Some(queue) = registry.subscriptions.remove(&pending_key(*request_id)) {
                    registry.subscriptions.insert(*topic_id, queue);
                } else if registry.abandoned_subscribes.remove(request_id) {
                    // The caller gave up waiting; the broker subscribed anyway.
                    let topic_id = *topic_id;
                    drop(registry);
                    let request_id = self.next_request_id();
                    self.send_control(&Frame::Unsubscribe {
                        request_id,
                        topic_id,
                    });
                    return;
                }
                *request_id
            }
            Frame::Ack { request_id }
            | Frame::Stats { request_id, .. }
            | Frame::ReloadResult { request_id, .. } => *request_id,
            Frame::Pong { token } => u32::try_from(*token).unwrap_or(0),
            Frame::Lagged { topic_id, skipped } => {
                if let Some(queue) = registry.subscriptions.get(topic_id) {
                    queue.lagged(*skipped);
                }
                return;
            }
            Frame::Ping { token } => {
                drop(registry);
                self.send_control(&Frame::Pong { token: *token });
                return;
            }
            Frame::Error {
                request_id,
                code,
                message,
                topic_id,
                fatal,
                refused,
            } => {
                let error = ClientError::Refused {
                    code: *code,
                    message: message.clone(),
                };
                if *fatal {
                    drop(registry);
                    self.fail_all(match code {
                        ErrorCode::ShuttingDown => ClientError::gone("the broker shut down"),
                        _ => error,
                    });
                    return;
                }
                if *request_id == NO_REQUEST {
                    // A refusal of publishes (it says how many), or an event about a
                    // subscription (which refuses none), or a refused `Credit`.
                    let refused = u64::from(*refused);
                    if refused == 0 {
                        if matches!(code, ErrorCode::TopicRemoved) {
                            // The subscription is over: the broker forgot it, and so do we (no
                            // Unsubscribe or Credit will follow for it).
                            if let Some(queue) = registry.subscriptions.remove(topic_id) {
                                queue.end(Some(error.clone()));
                                tracing::debug!(%message, "a subscription's topic was removed");
                                return;
                            }
                        }
                        if let Some(queue) = registry.subscriptions.get(topic_id) {
                            if matches!(code, ErrorCode::SlowConsumer) {
                                queue.end(Some(error.clone()));
                            }
                        }
                    }
                    tracing::debug!(?code, %message, refused, "the broker refused a publish");
                    registry.refused_publishes += refused;
                    match &mut registry.publish_errors {
                        Some(errors) => errors.more += refused,
                        None => {
                            registry.publish_errors = Some(PublishErrors {
                                first: error,
                                more: 0,
                            })
                        }
                    }
                    return;
                }
                registry.subscriptions.remove(&pending_key(*request_id));
                registry.abandoned_subscribes.remove(request_id);
                if let Some(waiter) = registry.pending.remove(request_id) {
                    let _ = waiter.send(Err(error));
                }
                return;
            }
            other => {
                drop(registry);
                self.fail_all(ClientError::Protocol(format!(
                    "unexpected frame from the broker: {other:?}"
                )));
                return;
            }
        };
        if let Some(waiter) = registry.pending.remove(&request_id) {
            let _ = waiter.send(Ok(frame));
        }
    }
}

/// Subscription queues waiting for their ack are parked in the same map as live ones, under a
/// key no topic id uses in practice: the high bit set on the request id. Topic ids are dense
/// from 0, so a broker would need 2^31 topics to collide.
fn pending_key(request_id: u32) -> u32 {
    request_id | 0x8000_0000
}

async fn handshake(
    path: &PathBuf,
    options: &SocketOptions,
) -> Result<(UnixStream, BrokerInfo, BytesMut), ClientError> {
    let mut stream = UnixStream::connect(path)
        .await
        .map_err(|e| ClientError::Connect {
            path: path.clone(),
            reason: e.to_string(),
            kind: e.kind(),
        })?;
    if let Err(error) = mycelium_transport::uds::tune_stream(&stream) {
        tracing::debug!(%error, "could not enlarge the socket buffers");
    }
    let handshake = ClientHandshake::new(Opening::Messages, options.client_id, &*options.name);
    let mut out = BytesMut::new();
    handshake
        .encode_hello(&mut out)
        .map_err(|e| ClientError::Protocol(e.to_string()))?;
    // A broker that refuses the connection (max_connections) may have written its error and
    // closed before our Hello arrives, making the write fail: the refusal is still there to
    // read, and it is the better error to report.
    let write_error = stream.write_all(&out).await.err();
    let mut buf = BytesMut::with_capacity(HANDSHAKE_MAX_FRAME_LEN);
    loop {
        if let Some(welcome) = handshake.receive(&mut buf).map_err(welcome_error)? {
            return Ok((stream, BrokerInfo::from(welcome), buf));
        }
        buf.reserve(HANDSHAKE_MAX_FRAME_LEN);
        match stream.read_buf(&mut buf).await {
            Ok(0) => {
                return Err(ClientError::gone(match &write_error {
                    Some(e) => e.to_string(),
                    None => "the broker closed the connection during the handshake".to_owned(),
                }))
            }
            Ok(_) => {}
            Err(e) => return Err(ClientError::gone(write_error.unwrap_or(e).to_string())),
        }
    }
}

/// The client's error for a broker answer that does not open the connection.
pub(crate) fn welcome_error(error: WelcomeError) -> ClientError {
    match error {
        WelcomeError::Refused { code, message } => ClientError::Refused { code, message },
        WelcomeError::Decode(error) => ClientError::from(error),
        other => ClientError::Protocol(other.to_string()),
    }
}

impl From<Welcome> for BrokerInfo {
    fn from(welcome: Welcome) -> BrokerInfo {
        BrokerInfo {
            broker_id: welcome.broker_id,
            connection_id: welcome.connection_id,
            max_message_size: welcome.max_message_size,
            max_frame_len: welcome.max_frame_len,
            server: welcome.server,
        }
    }
}

async fn write_loop(mut writer: OwnedWriteHalf, shared: Arc<Shared>) {
    if let Err(error) = shared.outbox.flush_until_closed(&mut writer).await {
        shared.fail_all(ClientError::gone(error.to_string()));
        return;
    }
    let _ = writer.shutdown().await;
}

async fn read_loop(mut reader: OwnedReadHalf, mut buf: BytesMut, shared: Arc<Shared>) {
    let limit = (shared.info.max_frame_len as usize).max(MAX_BROKER_CONTROL_FRAME_LEN);
    let end = loop {
        // Find the end of the complete frames, then freeze them so payloads are zero-copy slices.
        let mut complete = 0;
        let scan = loop {
            match peek_frame(&buf[complete..], limit) {
                Ok(Some((_, used))) => complete += used,
                Ok(None) => break Ok(()),
                Err(error) => break Err(ClientError::from(error)),
            }
        };
        if complete > 0 {
            let chunk = buf.split_to(complete).freeze();
            dispatch_chunk(&shared, chunk).await;
        }
        if let Err(error) = scan {
            break error;
        }
        codec::reserve_for_read(&mut buf, READ_CHUNK, limit);
        match reader.read_buf(&mut buf).await {
            Ok(0) => {
                break ClientError::BrokerGone {
                    detail: Some("the broker closed the connection".into()),
                }
            }
            Ok(_) => {}
            Err(error) => break ClientError::gone(error.to_string()),
        }
    };
    shared.fail_all(end);
}

/// Dispatches every frame of `chunk` (whole frames only), batching deliveries per subscription.
async fn dispatch_chunk(shared: &Shared, chunk: Bytes) {
    let mut offset = 0;
    let mut batch: Vec<Bytes> = Vec::new();
    let mut batch_topic = u32::MAX;
    while let Ok(Some((view, used))) = peek_frame(&chunk[offset..], usize::MAX) {
        if view.kind == kind::DELIVER {
            if let Some((topic_id, payload)) = view.message() {
                if topic_id != batch_topic {
                    deliver(shared, batch_topic, &mut batch).await;
                    batch_topic = topic_id;
                }
                let start = offset + used - payload.len();
                batch.push(chunk.slice(start..offset + used));
            }
        } else {
            deliver(shared, batch_topic, &mut batch).await;
            match view.to_frame() {
                Ok(frame) => shared.dispatch_control(frame),
                Err(error) => {
                    shared.fail_all(ClientError::from(error));
                    return;
                }
            }
        }
        offset += used;
    }
    deliver(shared, batch_topic, &mut batch).await;
}

async fn deliver(shared: &Shared, topic_id: u32, batch: &mut Vec<Bytes>) {
    if batch.is_empty() {
        return;
    }
    let queue = shared.lock().subscriptions.get(&topic_id).cloned();
    match queue {
        // Deliveries for a subscription dropped a moment ago: the broker has not seen the
        // Unsubscribe yet. Nothing is waiting for them.
        None => batch.clear(),
        Some(queue) => {
            queue.wait_for_room().await;
            queue.push(batch.drain(..));
        }
    }
}
