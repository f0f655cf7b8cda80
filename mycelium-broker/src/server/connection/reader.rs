//! The reader of a message connection: reads what the peer sends into a buffer that grows
//! under load and shrinks when idle, hands it to the scan and the steps in frame order, keeps
//! the heartbeat, and ends the connection.

use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use mycelium_transport::codec;
use mycelium_transport::outbox::{FrameRun, Outbox};
use mycelium_transport::{ErrorCode, Frame, HANDSHAKE_MAX_FRAME_LEN};
use tokio::io::AsyncReadExt;
use tokio::net::unix::OwnedReadHalf;
use tokio::net::UnixStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::admission::Admitted;
use crate::server::heartbeat::{Beat, Heartbeat};
use crate::server::state::BrokerState;

use super::busy_poll::busy_poll;
use super::context::Connection;
use super::durable_publish::DurablePublish;
use super::scan::{ScanEnd, Step};
use super::stop::{fatal, Stop};
use super::writer::write_loop;

/// Most bytes the reader asks the kernel for per `read`: large enough that a flat-out
/// publisher's frames arrive thousands per syscall.
const READ_CHUNK: usize = 256 * 1024;

/// Bytes a connection's first reads ask for, and what it goes back to when idle: most
/// connections (subscribers, request-reply clients) never send more per read, and a thousand
/// of them must not hold a [`READ_CHUNK`] each. Reads that fill it double it.
const FIRST_READ: usize = 4 * 1024;

/// Frame-end slots the scan keeps across reads while busy; an idle connection gives back more.
const IDLE_ENDS: usize = 256;

/// How often a connection looks again whether heartbeats were turned on, while they are off.
const HEARTBEAT_OFF_RECHECK: Duration = Duration::from_secs(1);

/// Serves a message connection whose `Hello` was read.
pub(super) async fn serve_messages(
    stream: UnixStream,
    mut buf: BytesMut,
    state: Arc<BrokerState>,
    stop: CancellationToken,
    writers: TaskTracker,
    who: Admitted,
) {
    let Admitted {
        id,
        client_id,
        peer,
    } = who;
    if let Err(error) = mycelium_transport::uds::tune_stream(&stream) {
        tracing::debug!(%error, "could not enlarge the socket buffers");
    }
    let (mut reader, writer) = stream.into_split();
    let outbox = Arc::new(Outbox::with_budget(state.inflight.clone()));
    writers.spawn(write_loop(writer, outbox.clone()));
    let mut conn = Connection {
        id,
        state,
        peer: Arc::new(peer),
        client_id,
        outbox,
        subscriptions: HashMap::new(),
        patterns: HashMap::new(),
        next_pattern: 0,
        advertised: HashMap::new(),
        topics: Vec::new(),
        max_frame_len: HANDSHAKE_MAX_FRAME_LEN,
        ends: Vec::new(),
        read_size: FIRST_READ,
        read_since_tick: false,
        last_read: Instant::now(),
        heartbeat: Heartbeat::default(),
        heartbeat_due: tokio::time::Instant::now(),
        confirmer: None,
        durable: Default::default(),
        next_durable: 0,
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
            if let Some(read) = self.poll_read(reader, buf, stop).await {
                if let Err(stop) = self.took(read, buf, room) {
                    return stop;
                }
                continue;
            }
            tokio::select! {
                biased;
                _ = stop.cancelled() => return Stop::Shutdown,
                _ = self.outbox.closed() => return Stop::Gone,
                read = reader.read_buf(buf) => if let Err(stop) = self.took(read, buf, room) {
                    return stop;
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

    /// What a read of `room` bytes into `buf` returned: the end of the connection, or bytes.
    fn took(&mut self, read: io::Result<usize>, buf: &BytesMut, room: usize) -> Result<(), Stop> {
        match read {
            Ok(0) if buf.is_empty() => Err(Stop::Gone),
            Ok(0) => {
                tracing::debug!(
                    connection = self.id,
                    bytes = buf.len(),
                    "client closed mid-frame"
                );
                Err(Stop::Gone)
            }
            Ok(n) => {
                self.heartbeat.heard();
                self.read_since_tick = true;
                self.last_read = Instant::now();
                if n >= room && self.read_size < READ_CHUNK {
                    // The read filled what it was given: there is load, read more.
                    self.read_size *= 2;
                }
                Ok(())
            }
            Err(_) => Err(Stop::Gone),
        }
    }

    /// [`busy_poll`] for `performance.busy_poll_us` from the last read; `None` at once when
    /// polling is off.
    async fn poll_read(
        &self,
        reader: &OwnedReadHalf,
        buf: &mut BytesMut,
        stop: &CancellationToken,
    ) -> Option<io::Result<usize>> {
        let window = self.state.config().performance.busy_poll_us;
        if window == 0 {
            return None;
        }
        let until = self.last_read + Duration::from_micros(window);
        busy_poll(reader, buf, until, || {
            stop.is_cancelled() || self.outbox.is_closed()
        })
        .await
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
    /// accepted publishes as `Deliver`/`DeliverEnvelope` in place; the scanned bytes are
    /// frozen, so each run of publishes to one topic is handed to subscribers as a slice of
    /// the read buffer; then the steps run in frame order.
    async fn process(&mut self, buf: &mut BytesMut, stop: &CancellationToken) -> Result<(), Stop> {
        let batch_size = self.state.config().performance.batch_size.max(1);
        loop {
            let mut steps = Vec::new();
            let (consumed, end) = self.scan(buf, batch_size, &mut steps);
            let chunk = buf.split_to(consumed).freeze();
            let mut steps = steps.into_iter().peekable();
            while let Some(step) = steps.next() {
                let Some(topic_id) = durable_publish_topic(&step) else {
                    self.execute(step, &chunk, stop).await?;
                    continue;
                };
                // Consecutive durable publishes to one topic: one batch, one append.
                let mut frames = vec![into_durable_publish(step)];
                while steps
                    .peek()
                    .is_some_and(|next| durable_publish_topic(next) == Some(topic_id))
                {
                    if let Some(next) = steps.next() {
                        frames.push(into_durable_publish(next));
                    }
                }
                self.wait_for_outbox(stop).await?;
                self.publish_durable(topic_id, frames.into_iter().flatten().collect(), stop)
                    .await?;
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
            Step::NoResponders {
                topic,
                reply_to,
                correlation,
            } => {
                self.answer_no_responders(&topic, &reply_to, correlation, stop)
                    .await
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

    /// Removes this connection's subscriptions and publisher claims, and closes its outbox (flushing what is queued).
    fn leave(&mut self) {
        self.state.remove_subscriptions(self.subscriptions.len());
        for (_, sub) in self.subscriptions.drain() {
            // (A removed topic's `unsubscribe` finds nobody, harmlessly.)
            sub.topic.unsubscribe(sub.id);
            self.state.shm.socket_subscribers_changed(&sub.topic);
        }
        self.end_patterns();
        self.end_durable();
        self.advertised.clear();
        self.outbox.close();
        self.state.unregister(self.id);
    }
}

/// The topic of a step that is a `PublishDurable`.
fn durable_publish_topic(step: &Step) -> Option<u32> {
    match step {
        Step::Control(frame) => match **frame {
            Frame::PublishDurable { topic_id, .. } => Some(topic_id),
            _ => None,
        },
        _ => None,
    }
}

/// The `PublishDurable` a step holds (see [`durable_publish_topic`]).
fn into_durable_publish(step: Step) -> Option<DurablePublish> {
    match step {
        Step::Control(frame) => match *frame {
            Frame::PublishDurable {
                request_id,
                enveloped,
                message,
                ..
            } => Some(DurablePublish {
                request_id,
                enveloped,
                message,
            }),
            _ => None,
        },
        _ => None,
    }
}

/// `wait` from now; a wait past what an `Instant` can hold (a config may ask for
/// u64::MAX ms) is a year, which is as good as never here, instead of a panic.
pub(super) fn after(wait: Duration) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    now.checked_add(wait)
        .unwrap_or_else(|| now + Duration::from_secs(365 * 24 * 3600))
}
