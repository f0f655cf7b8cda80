//! [`Shared`]: the state of one socket connection, and the two tasks that own its socket.
//!
//! - Publishing and requests append frames to the shared outgoing queue ([`Outbox`]) under a
//!   short lock; one writer task flushes everything queued per wake-up, so a burst of
//!   publishes leaves in a few large writes.
//! - One reader task reads the socket, hands each run of deliveries to its subscription's
//!   queue as one batch of zero-copy slices of the read buffer (an enveloped delivery's
//!   envelope is checked first: a malformed one ends the connection as a malformed frame
//!   does), and answers the callers waiting
//!   in the registry (`requests.rs` registers them).
//! - When the connection ends, every waiting call and every subscription learns that the
//!   broker is gone (or the broker's fatal error): nothing hangs.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::{Bytes, BytesMut};
use mycelium_transport::envelope::{EnvelopeView, Stamper};
use mycelium_transport::frame::kind;
use mycelium_transport::limits::MAX_BROKER_CONTROL_FRAME_LEN;
use mycelium_transport::outbox::Outbox;
use mycelium_transport::NO_REQUEST;
use mycelium_transport::{codec, peek_frame, ErrorCode, Frame, MessageRules};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;
use tokio::sync::oneshot;

use crate::error::ClientError;
use crate::socket::handshake::{BrokerInfo, SocketOptions};
use crate::socket::queue::{Delivery, SubscriptionQueue};

/// Bytes asked of the kernel per read.
const READ_CHUNK: usize = 256 * 1024;

/// A topic resolved for publishing: what its `TopicAck` said.
#[derive(Debug, Clone, Copy)]
pub(super) struct TopicInfo {
    pub(super) id: u32,
    pub(super) max_message_size: usize,
    /// Whether to stamp, and the header limits.
    pub(super) rules: MessageRules,
}

/// The refusals of publishes since the last flush: the first, and how many messages.
#[derive(Debug)]
pub(super) struct PublishErrors {
    /// The first refusal.
    pub(super) first: ClientError,
    /// The messages the later refusals refused (one may refuse a whole batch).
    pub(super) more: u64,
}

#[derive(Debug, Default)]
pub(super) struct Registry {
    /// Callers waiting for the answer to a request, by request id (ping tokens too).
    pub(super) pending: HashMap<u32, oneshot::Sender<Result<Frame, ClientError>>>,
    /// Live subscriptions by topic id (a pattern subscription's id has bit 31 set).
    pub(super) subscriptions: HashMap<u32, Arc<SubscriptionQueue>>,
    /// Subscriptions waiting for their ack, by request id: moved to `subscriptions` when the
    /// reader sees the ack, before any delivery that follows it.
    pub(super) parked: HashMap<u32, Arc<SubscriptionQueue>>,
    /// Topic ids resolved for publishing, by name.
    pub(super) publish_topics: HashMap<String, TopicInfo>,
    /// The refusals of publishes (request id 0) since the last flush.
    pub(super) publish_errors: Option<PublishErrors>,
    /// Every refusal of a publish since the connection began, for
    /// `SocketClient::refused_publishes`.
    pub(super) refused_publishes: u64,
    /// Subscribe requests that timed out: if their ack still comes, the broker holds a
    /// subscription nobody reads, and it must be told to drop it.
    pub(super) abandoned_subscribes: std::collections::HashSet<u32>,
    /// Set once the connection is gone; every later call fails with it.
    pub(super) gone: Option<ClientError>,
}

/// State shared by the handles, the subscriptions and the connection's two tasks.
#[derive(Debug)]
pub(crate) struct Shared {
    /// Frames toward the broker; drained by the writer task, which owns the socket's write half.
    pub(super) outbox: Outbox,
    pub(super) registry: Mutex<Registry>,
    pub(super) next_request: AtomicU32,
    pub(super) info: BrokerInfo,
    pub(super) options: SocketOptions,
    /// The reader task; `close` waits for it so that the socket is released on return.
    pub(super) reader: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Set by `close`: the end of the connection is then expected, and subscriptions end
    /// cleanly instead of with `BrokerGone`.
    pub(super) closing: std::sync::atomic::AtomicBool,
    /// Stamps what is published by topic name (`SocketClient::publish`) on topics that stamp;
    /// publishers have their own.
    pub(super) stamper: Mutex<Stamper>,
}

impl Shared {
    /// Starts the connection's reader and writer tasks on `stream`, whose handshake is done;
    /// `leftover` holds what the broker sent after its `Welcome`.
    pub(super) fn start(
        stream: UnixStream,
        info: BrokerInfo,
        leftover: BytesMut,
        options: SocketOptions,
    ) -> Arc<Shared> {
        let (reader, writer) = stream.into_split();
        let shared = Arc::new(Shared {
            outbox: Outbox::for_publishing(),
            registry: Mutex::default(),
            next_request: AtomicU32::new(1),
            info,
            options,
            reader: Mutex::new(None),
            closing: std::sync::atomic::AtomicBool::new(false),
            stamper: Mutex::new(Stamper::new()),
        });
        tokio::spawn(write_loop(writer, shared.clone()));
        let handle = tokio::spawn(read_loop(reader, leftover, shared.clone()));
        *shared.reader.lock().unwrap_or_else(|p| p.into_inner()) = Some(handle);
        shared
    }

    /// Taken on every publish by topic name (the topic cache, `requests.rs`): `#[inline]` lets
    /// it be inlined across the module boundary.
    #[inline]
    pub(super) fn lock(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn next_request_id(&self) -> u32 {
        // NO_REQUEST means "no request" on the wire; skip it when the counter wraps.
        loop {
            let id = self.next_request.fetch_add(1, Ordering::Relaxed);
            if id != NO_REQUEST {
                return id;
            }
        }
    }

    pub(super) fn gone_error(&self) -> ClientError {
        self.lock()
            .gone
            .clone()
            .unwrap_or(ClientError::BrokerGone { detail: None })
    }

    /// Queues a control frame; false if the connection is closed.
    pub(crate) fn send_control(&self, frame: &Frame) -> bool {
        self.outbox.append_control(frame)
    }

    /// The connection ended: fail every waiter and end every subscription with `error`.
    fn fail_all(&self, error: ClientError) {
        let (pending, subscriptions, parked) = {
            let mut registry = self.lock();
            if registry.gone.is_none() {
                registry.gone = Some(error.clone());
            }
            (
                std::mem::take(&mut registry.pending),
                std::mem::take(&mut registry.subscriptions),
                std::mem::take(&mut registry.parked),
            )
        };
        for (_, waiter) in pending {
            let _ = waiter.send(Err(error.clone()));
        }
        let clean = self.closing.load(Ordering::Relaxed);
        for (_, queue) in subscriptions.into_iter().chain(parked) {
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
                if let Some(queue) = registry.parked.remove(request_id) {
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
            | Frame::ReloadResult { request_id, .. }
            | Frame::Published { request_id, .. }
            | Frame::Groups { request_id, .. } => *request_id,
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
                registry.parked.remove(request_id);
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
    let mut batch: Vec<Delivery> = Vec::new();
    let mut batch_topic = u32::MAX;
    while let Ok(Some((view, used))) = peek_frame(&chunk[offset..], usize::MAX) {
        if view.kind == kind::DELIVER {
            if let Some((topic_id, payload)) = view.message() {
                if topic_id != batch_topic {
                    deliver(shared, batch_topic, &mut batch).await;
                    batch_topic = topic_id;
                }
                let start = offset + used - payload.len();
                batch.push(Delivery::Plain(chunk.slice(start..offset + used)));
            }
        } else if view.kind == kind::DELIVER_ENVELOPE {
            if let Some((topic_id, message)) = view.message() {
                if let Err(error) = EnvelopeView::parse(message) {
                    deliver(shared, batch_topic, &mut batch).await;
                    shared.fail_all(ClientError::Protocol(format!(
                        "DeliverEnvelope on subscription {topic_id}: {error}"
                    )));
                    return;
                }
                if topic_id != batch_topic {
                    deliver(shared, batch_topic, &mut batch).await;
                    batch_topic = topic_id;
                }
                let start = offset + used - message.len();
                batch.push(Delivery::Enveloped(chunk.slice(start..offset + used)));
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

async fn deliver(shared: &Shared, topic_id: u32, batch: &mut Vec<Delivery>) {
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
