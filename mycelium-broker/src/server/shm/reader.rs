//! [`ShmRingReader`]: the broker's reader of shared-memory publisher rings, for the socket
//! subscribers of their topics.
//!
//! - One OS thread per topic (not a tokio task: it sleeps on futexes in the rings), so a
//!   topic whose socket subscriber is slow under `block` never holds up another. It reads a
//!   publisher's ring only while the ring's topic has socket subscribers, from a consumer slot
//!   that [`ShmRings`](super::ShmRings) reserved for it at the moment the first
//!   socket subscriber arrived (or the ring was created), so nothing published after that is
//!   missed.
//! - Each batch read from a ring is routed with [`Topic::publish`], marked as coming from the
//!   relay's own path so it is not copied back into the relay ring. Under `backpressure =
//!   "block"` a slow socket subscriber stops this thread, which stops reading the ring, which
//!   makes the shared-memory publisher wait: the policy holds end to end, `publish_deadline_ms`
//!   included (a socket subscriber that holds a batch back that long is disconnected, as
//!   one that holds back a socket publisher is).
//! - Everything read from a ring is checked by the ring code; a corrupt ring is logged and
//!   dropped (its publisher's messages no longer reach socket subscribers), never a panic.
//! - When idle the thread sleeps on its slots (`futex_waitv`) for at most [`IDLE_SLEEP`], and
//!   then looks at its commands: a command waits at most that long, and loses nothing, since
//!   the slot it names is reserved before it is sent.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use std::os::fd::{AsFd, OwnedFd};
use std::time::Instant;

use mycelium_transport::envelope::EnvelopeView;
use mycelium_transport::shm::reference::SegmentRef;
use mycelium_transport::shm::{
    release_slot, wait_any, Claimed, PayloadView, ReadError, RingConsumer, SegmentTable,
};

use super::ring::Ring;
use super::rules::{max_segment_len, within_limits};
use crate::core::batch::{Batch, Item};
use crate::core::topic::DropReason;
use crate::core::topic::{GaveUp, HeldBack, Progress, PublishCursor, Topic};
use crate::server::supervisor::Supervisor;
use mycelium_config::Routing;
use mycelium_transport::shm::queue;

/// Longest sleep before the thread looks at its commands again.
pub(crate) const IDLE_SLEEP: Duration = Duration::from_millis(50);

/// Most messages read from one ring per batch.
const READ_BATCH: usize = 4096;

/// Longest wait for the payload segment of a reference frame: the broker hands it over
/// before the publisher may write the frame, so it is normally there already; past this the
/// message is dropped (counted).
const SEGMENT_WAIT: Duration = Duration::from_secs(2);

/// What the reader is told to do.
#[derive(Debug)]
pub(crate) enum ReaderCommand {
    /// Read `ring` (of `topic`) from consumer slot `slot`, reserved for the reader.
    Read {
        topic: Arc<Topic>,
        ring: Ring,
        slot: u32,
    },
    /// Stop reading `ring_id`: after reading what is published (`drain`, the publisher left),
    /// or at once; `release` frees the reader's slot (the ring lives on without socket
    /// subscribers).
    Stop {
        ring_id: u32,
        drain: bool,
        release: bool,
    },
    /// A payload segment of ring `ring_id`, named by a reference frame to come; `None`: it
    /// was dropped for the reader (too many in flight).
    Segment {
        ring_id: u32,
        reference: SegmentRef,
        fd: Option<Arc<OwnedFd>>,
    },
}

/// Payload segments received and not yet used (no fd: dropped for the reader).
type Segments = SegmentTable<Arc<OwnedFd>>;

/// Applies a command: segments are filed in `segments`, the rest changes `reading`.
fn apply_any(reading: &mut Vec<Reading>, segments: &mut Segments, command: ReaderCommand) {
    match command {
        ReaderCommand::Segment {
            ring_id,
            reference,
            fd,
        } => {
            segments.file(ring_id, reference, fd);
        }
        ReaderCommand::Stop {
            ring_id,
            drain: false,
            ..
        } => {
            segments.forget_ring(ring_id);
            apply(reading, command);
        }
        other => apply(reading, other),
    }
}

/// What became of a reference frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resolved {
    /// The message is appended to `bytes`.
    Read,
    /// The broker dropped the segment for the reader (too many in flight): already counted
    /// in the topic's `dropped` when it was handed over (`hand_over`), so not again.
    DroppedForUs,
    /// The message cannot be had (a malformed frame, a segment never handed over within
    /// [`SEGMENT_WAIT`], a bad segment): logged, to be counted by the caller.
    Failed,
}

/// The message a reference frame of ring `ring_id` names, appended to `bytes`, or why it
/// cannot be had (see [`Resolved`]), after logging why. Commands that arrive meanwhile and
/// are not segments are kept in `deferred`.
#[allow(clippy::too_many_arguments)]
fn resolve(
    frame: &[u8],
    ring_id: u32,
    max_message_size: usize,
    segments: &mut Segments,
    commands: &mpsc::Receiver<ReaderCommand>,
    deferred: &mut Vec<ReaderCommand>,
    bytes: &mut Vec<u8>,
) -> Resolved {
    let Some(reference) = SegmentRef::decode(frame) else {
        tracing::warn!(ring = ring_id, "malformed reference frame: skipped");
        return Resolved::Failed;
    };
    let deadline = Instant::now() + SEGMENT_WAIT;
    let claimed = loop {
        if let Some(claimed) = segments.claim(ring_id, &reference) {
            break claimed;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match commands.recv_timeout(left) {
            Ok(ReaderCommand::Segment {
                ring_id: r,
                reference,
                fd,
            }) => segments.file(r, reference, fd),
            Ok(other) => deferred.push(other),
            Err(_) => {
                tracing::warn!(
                    ring = ring_id,
                    segment = reference.segment,
                    "no payload segment for a reference frame: skipped"
                );
                return Resolved::Failed;
            }
        }
    };
    let fd = match claimed {
        Claimed::Segment(fd) => fd,
        // Already counted in the topic's `dropped` when it was handed over.
        Claimed::Dropped => return Resolved::DroppedForUs,
        Claimed::LengthMismatch { .. } => {
            tracing::warn!(
                ring = ring_id,
                "reference frame and segment disagree on the length: skipped"
            );
            return Resolved::Failed;
        }
    };
    match PayloadView::open(fd.as_fd(), reference.len as usize, max_message_size) {
        Ok(view) => {
            bytes.extend_from_slice(view.as_slice());
            Resolved::Read
        }
        Err(error) => {
            tracing::warn!(ring = ring_id, %error, "unusable payload segment: skipped");
            Resolved::Failed
        }
    }
}

/// Handle on the reader thread; dropping it stops the thread.
#[derive(Debug)]
pub(crate) struct ShmRingReader {
    commands: mpsc::Sender<ReaderCommand>,
    stop: Arc<AtomicBool>,
}

impl ShmRingReader {
    /// Starts the thread; `runtime` drives the waits of a blocked publish. A panic of the
    /// thread is reported to `supervisor` (the broker stops rather than leave the topic's
    /// shared-memory publishers unread, held back for ever under `block`).
    pub(crate) fn start(
        runtime: tokio::runtime::Handle,
        topic: &str,
        supervisor: &Arc<Supervisor>,
    ) -> std::io::Result<ShmRingReader> {
        let (commands, receiver) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let supervisor = Arc::clone(supervisor);
        std::thread::Builder::new()
            .name(format!("shm-reader:{topic}"))
            .spawn(move || {
                supervisor.guard_thread("shared-memory reader", || run(receiver, runtime, flag))
            })?;
        Ok(ShmRingReader { commands, stop })
    }

    pub(crate) fn send(&self, command: ReaderCommand) {
        // The thread lives as long as this handle; a send can only fail after a panic there,
        // which the supervisor has reported (the broker is stopping).
        let _ = self.commands.send(command);
    }
}

impl Drop for ShmRingReader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// One ring the reader thread reads, from the slot reserved for it.
struct Reading {
    topic: Arc<Topic>,
    ring: Ring,
    slot: u32,
    consumer: RingConsumer,
    /// Read what is published, then stop (the publisher left).
    draining: bool,
}

fn run(
    commands: mpsc::Receiver<ReaderCommand>,
    runtime: tokio::runtime::Handle,
    stop: Arc<AtomicBool>,
) {
    let mut reading: Vec<Reading> = Vec::new();
    let mut segments = Segments::new();
    let mut deferred: Vec<ReaderCommand> = Vec::new();
    let mut bytes: Vec<u8> = Vec::new();
    // Per message: where it ends in `bytes`, and its envelope's length (0: plain).
    let mut ends: Vec<(usize, usize)> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        for command in std::mem::take(&mut deferred) {
            apply_any(&mut reading, &mut segments, command);
        }
        loop {
            match commands.try_recv() {
                Ok(command) => apply_any(&mut reading, &mut segments, command),
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => return,
            }
        }
        let mut moved = false;
        let mut index = 0;
        while index < reading.len() {
            let r = &mut reading[index];
            bytes.clear();
            ends.clear();
            let queue = r.topic.routing() == Routing::Queue;
            let slot = r.consumer.slot_index();
            let ring_id = r.ring.id;
            let config = r.topic.config();
            // A segment may hold an envelope beyond the payload limit; `route` holds the
            // payload itself to `max_message_size`.
            let max_segment = max_segment_len(&config);
            let mut lost = 0u64;
            let (mut malformed, mut over_limits) = (0u64, 0u64);
            let read = r
                .consumer
                .try_recv_batch_marked(READ_BATCH, |frame, flags| {
                    let reference = flags.is_reference();
                    // On a queue topic only the messages dealt to the broker's slot are its to
                    // hand on; the rest belong to the shared-memory consumers.
                    let message = if queue {
                        queue::addressed_to(frame, slot)
                    } else {
                        Some(frame)
                    };
                    let Some(message) = message else { return };
                    let start = bytes.len();
                    if !reference {
                        bytes.extend_from_slice(message);
                    } else {
                        match resolve(
                            message,
                            ring_id,
                            max_segment,
                            &mut segments,
                            &commands,
                            &mut deferred,
                            &mut bytes,
                        ) {
                            Resolved::Read => {}
                            Resolved::DroppedForUs => return,
                            Resolved::Failed => {
                                lost += 1;
                                return;
                            }
                        }
                    }
                    // The envelope bit is the publisher's claim: checked before anything is
                    // relayed, and held to the topic's header limits, which the broker can
                    // enforce for shared-memory publishers only here.
                    let mut envelope_len = 0;
                    if flags.is_envelope() {
                        match EnvelopeView::parse(&bytes[start..]) {
                            Ok(view) if within_limits(&view, &config) => envelope_len = view.len,
                            Ok(_) => {
                                over_limits += 1;
                                bytes.truncate(start);
                                return;
                            }
                            Err(_) => {
                                malformed += 1;
                                bytes.truncate(start);
                                return;
                            }
                        }
                    }
                    ends.push((bytes.len(), envelope_len));
                });
            if malformed > 0 || over_limits > 0 {
                tracing::warn!(
                    topic = r.topic.name(),
                    ring = ring_id,
                    malformed,
                    over_limits,
                    "dropped shared-memory messages whose envelope is malformed or beyond the topic's header limits"
                );
                r.topic
                    .counters()
                    .lost(DropReason::Invalid, malformed + over_limits);
            }
            if lost > 0 {
                r.topic.counters().lost(DropReason::SharedMemory, lost);
            }
            match read {
                Ok(0) if r.draining => {
                    segments.forget_ring(ring_id);
                    reading.swap_remove(index);
                    continue;
                }
                Ok(0) => {}
                Ok(_) => {
                    moved = true;
                    if !ends.is_empty() {
                        // Taken out of the ring just now; the clock only while recording.
                        let read_at = r.topic.latency_on().then(std::time::Instant::now);
                        route(&r.topic, &bytes, &ends, &runtime);
                        if let Some(read_at) = read_at {
                            r.topic.record_latency(read_at);
                        }
                    }
                }
                Err(ReadError::Lagged { skipped }) => {
                    // Messages of this ring the socket subscribers will never get, each of
                    // them: told at once (`report_missed`: before their next message, or at
                    // their writer's next take). Found before the frame after the gap, or, when
                    // none follows (the end of a burst), from the ring's drop announcement once
                    // this reader has read the ring empty. Either the publisher dropped them
                    // (`drop_newest`; counted once, in the ring, as the topic's `dropped`),
                    // or a lossy ring (`drop_oldest`) lapped the broker, which counts each
                    // subscriber's loss here. `skipped` comes from shared memory: saturate.
                    r.topic.report_missed(skipped);
                    if !r.consumer.reports_drops() {
                        let copies = skipped.saturating_mul(r.topic.subscriber_count() as u64);
                        r.topic.counters().lost(DropReason::DropOldest, copies);
                    }
                    tracing::debug!(
                        topic = r.topic.name(),
                        ring = r.ring.id,
                        skipped,
                        "messages of a shared-memory ring lost before the broker read them"
                    );
                }
                Err(error) => {
                    tracing::warn!(topic = r.topic.name(), ring = r.ring.id, %error, "corrupt shared-memory ring: no longer relayed to socket subscribers");
                    let gone = reading.swap_remove(index);
                    let _ = release_slot(gone.ring.region(), gone.slot as usize);
                    continue;
                }
            }
            index += 1;
        }
        if moved {
            continue;
        }
        if !deferred.is_empty() {
            continue;
        }
        if reading.is_empty() {
            match commands.recv_timeout(IDLE_SLEEP) {
                Ok(command) => apply_any(&mut reading, &mut segments, command),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
        } else {
            let consumers: Vec<&RingConsumer> = reading.iter().map(|r| &r.consumer).collect();
            if let Err(error) = wait_any(&consumers, Some(IDLE_SLEEP)) {
                tracing::warn!(%error, "waiting on shared-memory rings failed");
                std::thread::sleep(IDLE_SLEEP);
            }
        }
    }
}

fn apply(reading: &mut Vec<Reading>, command: ReaderCommand) {
    match command {
        ReaderCommand::Read { topic, ring, slot } => {
            match RingConsumer::adopt(ring.region(), slot as usize) {
                Ok(mut consumer) => {
                    if topic.routing() == Routing::Queue {
                        // A message a queue publisher dropped was nobody's in particular.
                        consumer.ignore_drops();
                    }
                    reading.push(Reading {
                        topic,
                        ring,
                        slot,
                        consumer,
                        draining: false,
                    });
                }
                Err(error) => {
                    tracing::warn!(topic = topic.name(), ring = ring.id, %error, "cannot read a shared-memory ring for socket subscribers");
                    let _ = release_slot(ring.region(), slot as usize);
                }
            }
        }
        ReaderCommand::Segment { .. } => {}
        ReaderCommand::Stop {
            ring_id,
            drain,
            release,
        } => {
            let Some(at) = reading
                .iter()
                .position(|r| r.ring.id == ring_id && !r.draining)
            else {
                return;
            };
            if drain {
                reading[at].draining = true;
                return;
            }
            let gone = reading.swap_remove(at);
            if release {
                let _ = release_slot(gone.ring.region(), gone.slot as usize);
            }
        }
    }
}

/// Routes one batch (`ends` are the message ends in `bytes`) to the topic's subscribers,
/// waiting while a `block` policy holds it.
/// Routes one batch read from a ring: `ends` holds each message's end in `bytes` and its
/// envelope's length (0 for a plain message). A batch of plain messages goes as payloads, as
/// it always did; one with an enveloped message as items.
fn route(
    topic: &Arc<Topic>,
    bytes: &[u8],
    ends: &[(usize, usize)],
    runtime: &tokio::runtime::Handle,
) {
    let max = topic.config().max_message_size;
    let mut start = 0;
    let mut oversized = 0u64;
    let mut messages = ends.iter().filter_map(|&(end, envelope_len)| {
        let message = &bytes[start..end];
        start = end;
        // Only a publisher that bypassed its client writes more than the topic allows;
        // socket subscribers were promised frames within the limit.
        if message.len() - envelope_len > max {
            oversized += 1;
            return None;
        }
        Some(Item {
            bytes: message,
            enveloped: envelope_len > 0,
        })
    });
    if ends.iter().any(|&(_, envelope_len)| envelope_len > 0) {
        let items: Vec<Item<'_>> = messages.by_ref().collect();
        drop(messages);
        publish_all(topic, &items[..], runtime);
    } else {
        let payloads: Vec<&[u8]> = messages.by_ref().map(|item| item.bytes).collect();
        drop(messages);
        publish_all(topic, &payloads[..], runtime);
    }
    if oversized > 0 {
        tracing::warn!(
            topic = topic.name(),
            oversized,
            "dropped shared-memory messages above max_message_size"
        );
        topic.counters().lost(DropReason::Invalid, oversized);
    }
}

/// Publishes `batch` on `topic` from the relay path, waiting while it is held back.
fn publish_all<B: Batch + ?Sized>(
    topic: &Arc<Topic>,
    payloads: &B,
    runtime: &tokio::runtime::Handle,
) {
    let mut cursor = PublishCursor::from_relay_path();
    // The deadline holds here as on the socket path: without it a stopped socket subscriber
    // would stop this thread, and with it every shared-memory publisher of the topic, for ever.
    let mut held = HeldBack::default();
    loop {
        let blocker = match topic.publish(payloads, &mut cursor) {
            Progress::Done => return,
            Progress::Blocked(blocker) => blocker,
            Progress::Refused(refusal) => {
                // A shared-memory publisher does not hear from the broker's reader: the log
                // says it, and the messages are counted.
                tracing::error!(topic = topic.name(), message = %refusal.message, "a shared-memory publisher's messages could not be stored");
                topic
                    .counters()
                    .lost(DropReason::Storage, payloads.len() as u64);
                return;
            }
        };
        let gave_up =
            runtime.block_on(topic.wait_or_give_up(&blocker, payloads, &mut cursor, &mut held));
        if let Some(GaveUp::Dropped(n)) = gave_up {
            // A queue topic's full backlog: nobody to tell (the shared-memory publisher does
            // not hear from the broker's reader), so the log says it; `give_up` counted them.
            tracing::warn!(
                topic = topic.name(),
                dropped = n,
                "a shared-memory publisher's messages were dropped: the topic's backlog stayed full past publish_deadline_ms"
            );
        }
    }
}
