//! What the topic's tests share: a topic, payloads, an outbox read back, a relay that records.

use std::sync::{Arc, Mutex};

use mycelium_config::{Backpressure, Routing};
use mycelium_transport::outbox::Outbox;
use mycelium_transport::{peek_frame, ErrorCode, Frame};

use crate::core::relay::{Relay, Relayed};
use crate::core::topic::{Progress, PublishCursor, Topic};

pub(crate) fn topic(
    routing: Routing,
    buffer_size: usize,
    backpressure: Backpressure,
    prefetch: u32,
) -> Arc<Topic> {
    let mut config = mycelium_config::TopicDefaults::default().topic("t");
    config.routing = routing;
    config.buffer_size = buffer_size;
    config.backpressure = backpressure;
    config.prefetch = prefetch;
    Arc::new(Topic::new(7, config))
}

pub(crate) fn drain(outbox: &Outbox) -> Vec<Vec<u8>> {
    drain_frames(outbox)
        .into_iter()
        .map(|frame| frame.expect("a deliver frame"))
        .collect()
}

pub(crate) fn msgs(n: usize) -> Vec<Vec<u8>> {
    (0..n).map(|i| format!("m{i}").into_bytes()).collect()
}

pub(crate) fn publish_all(topic: &Arc<Topic>, payloads: &[Vec<u8>]) -> Progress {
    let refs: Vec<&[u8]> = payloads.iter().map(|p| p.as_slice()).collect();
    topic.publish(refs.as_slice(), &mut PublishCursor::default())
}

/// Every frame in the outbox: `Ok(payload)` for a message, `Err(code)` for an error, and
/// `Err(Other(skipped))` for a `Lagged` notice.
pub(crate) fn drain_frames(outbox: &Outbox) -> Vec<Result<Vec<u8>, ErrorCode>> {
    let mut out = Vec::new();
    let mut drained = mycelium_transport::outbox::Drained::default();
    if outbox.take(&mut drained) {
        let buf = drained.flatten();
        let mut rest: &[u8] = &buf;
        while let Some((view, used)) = peek_frame(rest, usize::MAX).expect("valid frames") {
            out.push(match view.message() {
                Some((_, payload)) => Ok(payload.to_vec()),
                None => match view.to_frame() {
                    Ok(Frame::Error { code, .. }) => Err(code),
                    Ok(Frame::Lagged { skipped, .. }) => {
                        Err(ErrorCode::Other(u16::try_from(skipped).expect("small")))
                    }
                    other => panic!("unexpected frame {other:?}"),
                },
            });
            rest = &rest[used..];
        }
    }
    out
}

/// A relay whose ring holds `room` more messages until a test makes more room.
#[derive(Debug, Default)]
pub(crate) struct RecordingRelay {
    pub(crate) got: Mutex<Vec<Vec<u8>>>,
    pub(crate) room: Mutex<usize>,
    /// Messages the topic said it dropped for the relay's readers.
    pub(crate) told_dropped: Mutex<u64>,
    /// Readers `detach_laggards` may detach; each one detached frees this much room.
    pub(crate) laggards: Mutex<usize>,
}

impl RecordingRelay {
    pub(crate) fn with_room(room: usize) -> Arc<RecordingRelay> {
        Arc::new(RecordingRelay {
            room: Mutex::new(room),
            ..RecordingRelay::default()
        })
    }

    pub(crate) fn make_room(&self, more: usize) {
        *self.room.lock().unwrap() += more;
    }
}

impl Relay for RecordingRelay {
    fn relay(&self, messages: &mut dyn Iterator<Item = crate::core::batch::Item<'_>>) -> Relayed {
        let mut got = self.got.lock().unwrap();
        let mut room = self.room.lock().unwrap();
        let mut passed = 0;
        for payload in messages.map(|item| item.bytes) {
            if *room == 0 {
                break;
            }
            *room -= 1;
            got.push(payload.to_vec());
            passed += 1;
        }
        Relayed {
            passed,
            dropped: 0,
            readers: 1,
        }
    }

    fn dropped(&self, count: u64) {
        *self.told_dropped.lock().unwrap() += count;
    }

    fn detach_laggards(&self, _why: &str) -> usize {
        let detached = std::mem::take(&mut *self.laggards.lock().unwrap());
        self.make_room(detached * 100);
        detached
    }
}

/// Every message frame in the outbox: its kind and its body after the topic id.
pub(crate) fn drain_kinds(outbox: &Outbox) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    let mut drained = mycelium_transport::outbox::Drained::default();
    if outbox.take(&mut drained) {
        let buf = drained.flatten();
        let mut rest: &[u8] = &buf;
        while let Some((view, used)) = peek_frame(rest, usize::MAX).expect("valid frames") {
            if let Some((_, body)) = view.message() {
                out.push((view.kind, body.to_vec()));
            }
            rest = &rest[used..];
        }
    }
    out
}
