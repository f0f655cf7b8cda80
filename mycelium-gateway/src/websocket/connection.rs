//! One WebSocket connection: a reader that answers the client's frames, a task per
//! subscription that turns its messages into frames, and a writer that owns the socket.
//!
//! - Everything the gateway sends goes through one bounded queue ([`QUEUE_FRAMES`]) to the
//!   writer, in order: a request's answer follows the messages queued before it, and no
//!   message of a subscription follows the ack of its `unsubscribe`.
//! - When the client does not read, the socket's send buffer fills, then the queue, then
//!   each subscription's own queue in the broker, where the topic's `backpressure` applies:
//!   `drop_newest`/`drop_oldest` drop for this client alone and a `lagged` frame tells how
//!   many when it reads again; `block` holds the topic's publishers back, by design, as
//!   any full subscriber does. Other clients are not held back by it on lossy topics.
//! - Requests are handled one at a time, in order: a publish to a full `block` topic
//!   holds the reading of the next frame, for at most [`PUBLISH_WAIT`].
//! - The reader, the watchdog (no frame from the client for the keepalive timeout) and the
//!   broker's shutdown race: whichever ends first ends the connection, its subscriptions
//!   with it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use mycelium_broker::LocalSubscription;
use mycelium_transport::envelope::Headers;
use mycelium_transport::RecvError;
use serde_json::{Map, Value};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::consume::open_subscription;
use crate::error::ApiError;
use crate::publish::{backpressure, publisher_for, PUBLISH_WAIT};
use crate::state::AppState;
use crate::websocket::frame::{self, BinaryMode, Request};
use crate::websocket::{Keepalive, Slot};

/// Frames waiting for the writer, per connection.
pub(crate) const QUEUE_FRAMES: usize = 64;

/// Most frames the writer hands the socket before flushing.
const WRITE_BATCH: usize = 64;

/// How long a closing connection's writer may take to flush what is queued.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Close code 1001: the server is going away.
const GOING_AWAY: u16 = 1001;

/// Serves one upgraded connection until it ends; `slot` is given back then.
pub(crate) async fn run(state: AppState, socket: WebSocket, slot: Slot) {
    let keepalive = state.websockets.keepalive;
    let (sink, stream) = socket.split();
    let (out, queue) = mpsc::channel(QUEUE_FRAMES);
    let mut writer = tokio::spawn(write(sink, queue, keepalive.interval));
    let started = Instant::now();
    let heard = Arc::new(AtomicU64::new(0));
    let mut connection = Connection {
        state: state.clone(),
        out: out.clone(),
        subscriptions: HashMap::new(),
    };
    tokio::select! {
        () = read(&mut connection, stream, started, &heard) => {}
        () = watchdog(keepalive, started, &heard) => {
            tracing::debug!("WebSocket client silent for {:?}: dropped", keepalive.timeout);
        }
        () = state.handle.stopping() => {
            let close = CloseFrame { code: GOING_AWAY, reason: "the broker is shutting down".into() };
            let _ = out.try_send(WsMessage::Close(Some(close)));
        }
    }
    connection.end().await;
    // The writer ends once every sender is gone, after sending what is queued.
    drop(connection);
    drop(out);
    if tokio::time::timeout(CLOSE_GRACE, &mut writer)
        .await
        .is_err()
    {
        writer.abort();
    }
    drop(slot);
}

/// The reader's side of a connection.
struct Connection {
    state: AppState,
    out: mpsc::Sender<WsMessage>,
    /// Subscriptions by the topic or pattern the client named, each pumped by a task.
    subscriptions: HashMap<String, JoinHandle<()>>,
}

impl Connection {
    /// Answers one request; `Err(())` when the writer is gone.
    async fn answer(&mut self, id: Option<Value>, request: Request) -> Result<(), ()> {
        let op = request.op();
        let reply = match self.handle(request).await {
            Ok((topic, extra)) => frame::ack(op, &topic, id.as_ref(), extra),
            Err(error) => frame::error(&error, Some(op), id.as_ref()),
        };
        self.out.send(reply).await.map_err(|_| ())
    }

    /// A request's topic and the ack's extra fields, or why it failed.
    async fn handle(&mut self, request: Request) -> Result<(String, Map<String, Value>), ApiError> {
        self.state.refuse_if_stopping()?;
        match request {
            Request::Subscribe { topic, binary } => {
                if self
                    .subscriptions
                    .get(&topic)
                    .is_some_and(|pump| !pump.is_finished())
                {
                    return Err(ApiError::bad_request(
                        "already_subscribed",
                        format!("this connection is subscribed to '{topic}' already"),
                    ));
                }
                let subscription = open_subscription(&self.state, &topic)?;
                let pump =
                    tokio::spawn(pump(subscription, topic.clone(), binary, self.out.clone()));
                self.subscriptions.insert(topic.clone(), pump);
                Ok((topic, Map::new()))
            }
            Request::Unsubscribe { topic } => {
                let Some(pump) = self.subscriptions.remove(&topic) else {
                    return Err(ApiError::bad_request(
                        "not_subscribed",
                        format!("this connection is not subscribed to '{topic}'"),
                    ));
                };
                pump.abort();
                // Gone before the ack is queued: nothing of it follows the ack.
                let _ = pump.await;
                Ok((topic, Map::new()))
            }
            Request::Publish {
                topic,
                headers,
                payload,
            } => {
                let max = self.state.http().max_body_bytes;
                if payload.len() > max {
                    return Err(frame::payload_too_large(payload.len(), max));
                }
                let mut message_headers = Headers::new();
                for (key, value) in headers {
                    message_headers
                        .insert(key.as_str(), value)
                        .map_err(|error| {
                            ApiError::bad_request("bad_header", format!("header '{key}': {error}"))
                        })?;
                }
                let (publisher, config) = publisher_for(&self.state, &topic)?;
                let published = async {
                    if message_headers.is_empty() && !config.stamp {
                        publisher.publish(&payload).await.map(|()| None)
                    } else {
                        publisher.publish_stamped(&message_headers, &payload).await
                    }
                };
                let stamp = match tokio::time::timeout(PUBLISH_WAIT, published).await {
                    Ok(result) => result?,
                    Err(_) => return Err(backpressure(&topic, 0, 1)),
                };
                let mut extra = Map::new();
                if let Some(stamp) = stamp {
                    extra.insert("message_id".to_owned(), Value::from(stamp.id.to_string()));
                    extra.insert(
                        "timestamp".to_owned(),
                        Value::from(crate::message::rfc3339(stamp.timestamp_ns)),
                    );
                }
                Ok((topic, extra))
            }
        }
    }

    /// Ends every subscription.
    async fn end(&mut self) {
        for (_, pump) in self.subscriptions.drain() {
            pump.abort();
            let _ = pump.await;
        }
    }
}

/// Reads the client's frames and answers them, until the client closes or the writer
/// is gone.
async fn read(
    connection: &mut Connection,
    mut stream: SplitStream<WebSocket>,
    started: Instant,
    heard: &AtomicU64,
) {
    while let Some(next) = stream.next().await {
        heard.store(millis_since(started), Ordering::Relaxed);
        let parsed = match next {
            Ok(WsMessage::Text(text)) => frame::parse_text(text.as_str()),
            Ok(WsMessage::Binary(bytes)) => frame::parse_binary(bytes),
            // Pongs answer the writer's pings: hearing one is all they are for. Pings are
            // answered by the socket itself.
            Ok(WsMessage::Ping(_) | WsMessage::Pong(_)) => continue,
            Ok(WsMessage::Close(_)) => return,
            Err(error) => {
                // Past the size limit, a protocol violation, or the peer gone.
                tracing::debug!(%error, "WebSocket connection read failed");
                let close = CloseFrame {
                    code: 1009,
                    reason: "frame too large or not WebSocket".into(),
                };
                let _ = connection.out.try_send(WsMessage::Close(Some(close)));
                return;
            }
        };
        let sent = match parsed.request {
            Ok(request) => connection.answer(parsed.id, request).await,
            Err(error) => connection
                .out
                .send(frame::error(&error, None, parsed.id.as_ref()))
                .await
                .map_err(|_| ()),
        };
        if sent.is_err() {
            return;
        }
    }
}

/// Ends when nothing has been heard from the client for the keepalive timeout.
async fn watchdog(keepalive: Keepalive, started: Instant, heard: &AtomicU64) {
    loop {
        let last = Duration::from_millis(heard.load(Ordering::Relaxed));
        let silent = started.elapsed().saturating_sub(last);
        if silent >= keepalive.timeout {
            return;
        }
        tokio::time::sleep(keepalive.timeout - silent).await;
    }
}

fn millis_since(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Turns one subscription's messages into frames on the connection's queue, waiting for
/// room there (and so leaving the topic's backpressure to act on the subscription).
async fn pump(
    mut subscription: LocalSubscription,
    topic: String,
    binary: BinaryMode,
    out: mpsc::Sender<WsMessage>,
) {
    loop {
        let frame = match subscription.recv().await {
            Ok(message) => frame::message(&topic, &message, binary),
            Err(RecvError::Lagged(count)) => frame::lagged(&topic, count),
            Err(RecvError::Ended(end)) => {
                let _ = out.send(frame::ended(&topic, &end)).await;
                return;
            }
            Err(error) => {
                tracing::warn!(%topic, %error, "a WebSocket subscription failed");
                let error = ApiError::new(
                    axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                    "receive_failed",
                    error.to_string(),
                );
                let _ = out.send(frame::error(&error, None, None)).await;
                return;
            }
        };
        if out.send(frame).await.is_err() {
            return;
        }
    }
}

/// Owns the socket's sending half: sends what is queued, in order, flushing when the queue
/// runs dry, and pings every keepalive interval, busy or not (the client's pong is what the
/// watchdog hears from a client that only listens).
async fn write(
    mut sink: SplitSink<WebSocket, WsMessage>,
    mut queue: mpsc::Receiver<WsMessage>,
    interval: Duration,
) {
    let mut ping = tokio::time::interval(interval);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping.tick().await;
    loop {
        tokio::select! {
            next = queue.recv() => {
                let Some(first) = next else { break };
                let mut closing = matches!(first, WsMessage::Close(_));
                if sink.feed(first).await.is_err() {
                    return;
                }
                let mut fed = 1;
                while fed < WRITE_BATCH && !closing {
                    let Ok(more) = queue.try_recv() else { break };
                    closing = matches!(more, WsMessage::Close(_));
                    if sink.feed(more).await.is_err() {
                        return;
                    }
                    fed += 1;
                }
                if sink.flush().await.is_err() || closing {
                    return;
                }
            }
            _ = ping.tick() => {
                if sink.send(WsMessage::Ping(bytes::Bytes::new())).await.is_err() {
                    return;
                }
            }
        }
    }
    let _ = sink.close().await;
}
