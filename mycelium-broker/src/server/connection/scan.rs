//! The scan: walks the complete frames of a read without awaiting, relabels accepted
//! publishes in place (`Publish` as `Deliver`, `PublishEnvelope` as `DeliverEnvelope`), and
//! gathers consecutive publishes to one topic, of either kind, into runs, so that a run
//! reaches each subscriber as one slice of the read buffer.
//!
//! - A `PublishEnvelope`'s envelope is checked whole ([`EnvelopeView::parse`]) before it is
//!   routed: a malformed one, or one carrying the TOPIC or OFFSET block (only the broker sets them), is
//!   a fatal `Malformed` error. Its payload (not the envelope) counts against
//!   `max_message_size`; its headers against `max_headers` and `max_header_bytes`
//!   (`HeadersTooLarge`, non-fatal, the message not routed). The limits are read once per
//!   run.

use std::ops::Range;
use std::sync::Arc;

use bytes::BytesMut;
use mycelium_transport::envelope::{self, EnvelopeView};
use mycelium_transport::frame::kind;
use mycelium_transport::{peek_frame, ErrorCode, Frame};

use crate::core::acl::Action;
use crate::core::topic::{Topic, TopicId};

use super::context::Connection;
use super::stop::{decode_stop, fatal, Stop};

/// Why a scan stopped.
pub(super) enum ScanEnd {
    /// `batch_size` frames were walked; more may be in the buffer.
    BatchFull,
    /// The buffer holds no further complete frame.
    NeedData,
    /// The peer broke the protocol at the frame where the scan stopped.
    Stop(Stop),
}

/// One thing to do for the frames of a scan, in frame order.
pub(super) enum Step {
    /// Consecutive accepted publishes to one topic, relabelled as `Deliver` or
    /// `DeliverEnvelope`: `bytes` in the scanned chunk, with frame ends (relative to the
    /// run's start) in `Connection::ends[ends]`.
    Run {
        topic: Arc<Topic>,
        bytes: Range<usize>,
        ends: Range<usize>,
    },
    /// A control frame to handle.
    Control(Box<Frame>),
    /// A request (a stamped publish with a reply address) reached a topic with no
    /// subscriber at all: answer it at once with a no-responders reply.
    NoResponders {
        topic: Arc<Topic>,
        reply_to: String,
        correlation: uuid::Uuid,
    },
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
    /// The topic's limits on a message, read once for the run.
    limits: Limits,
    /// Where its first frame starts in the scanned bytes.
    start: usize,
    /// Its first entry in `Connection::ends`.
    first_end: usize,
}

impl Connection {
    /// Walks up to `batch_size` complete frames at the front of `buf` without awaiting, turning
    /// them into `steps`. Returns the bytes walked and why the walk ended.
    pub(super) fn scan(
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
            let enveloped = view.kind == kind::PUBLISH_ENVELOPE;
            if view.kind != kind::PUBLISH && !enveloped {
                self.close_run(&mut open, offset, steps);
                match view.to_frame() {
                    Ok(frame) => steps.push(Step::Control(Box::new(frame))),
                    Err(error) => break ScanEnd::Stop(decode_stop(error)),
                }
                offset += used;
                continue;
            }
            let Some((topic_id, body)) = view.message() else {
                break ScanEnd::Stop(fatal(
                    ErrorCode::Malformed,
                    if enveloped {
                        "malformed PublishEnvelope frame: body shorter than 4 bytes"
                    } else {
                        "malformed Publish frame: body shorter than 4 bytes"
                    },
                ));
            };
            // The payload's length, the headers' count and bytes (0 for a plain publish), and
            // the request it is, if any.
            let (payload_len, header_count, header_bytes, request) = if enveloped {
                match read_envelope(body, "PublishEnvelope") {
                    Ok(read) => read,
                    Err(stop) => break ScanEnd::Stop(stop),
                }
            } else {
                (body.len(), 0, 0, None)
            };
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
                        limits: Limits::of(&topic.config()),
                        topic,
                        start: offset,
                        first_end: self.ends.len(),
                    })
                }
            };
            let headers = enveloped.then_some((header_count, header_bytes));
            if let Err((code, message)) = run.limits.check(run.topic.name(), payload_len, headers) {
                // Earlier publishes of the run go first, so the refusal reaches the client in
                // the order of the frames it answers.
                self.close_run(&mut open, offset, steps);
                steps.push(Step::Refuse {
                    code,
                    topic_id,
                    message,
                });
                offset += used;
                continue;
            }
            let run_start = run.start;
            // Relabel in place: the frame goes out to subscribers byte for byte as it came in.
            buf[offset + 5] = if enveloped {
                kind::DELIVER_ENVELOPE
            } else {
                kind::DELIVER
            };
            self.ends.push(offset + used - run_start);
            offset += used;
            if let Some((correlation, reply_to)) = request {
                let topic = run.topic.clone();
                if !self.has_responders(&topic) {
                    // The request is routed (to nobody) with its run; the answer follows.
                    self.close_run(&mut open, offset, steps);
                    steps.push(Step::NoResponders {
                        topic,
                        reply_to,
                        correlation,
                    });
                }
            }
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

    /// The topic a publish names by id, from the connection's cache; a refusal when no topic
    /// has the id, or a reload removed it.
    pub(super) fn topic(&mut self, id: TopicId) -> Result<Arc<Topic>, Step> {
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
}

/// What the scan needs of an envelope: the payload's length, the headers' count and bytes,
/// and, for a request (stamped, with a reply address), its id and reply address.
pub(super) type EnvelopeRead = (usize, usize, usize, Option<(uuid::Uuid, String)>);

/// A topic's limits on one message, read once per run.
pub(super) struct Limits {
    /// `max_message_size`: payload bytes (the envelope not counted).
    pub(super) max: usize,
    pub(super) max_headers: usize,
    pub(super) max_header_bytes: usize,
}

impl Limits {
    /// The topic's limits now.
    pub(super) fn of(config: &mycelium_config::TopicConfig) -> Limits {
        Limits {
            max: config.max_message_size,
            max_headers: usize::from(config.max_headers),
            max_header_bytes: config.max_header_bytes as usize,
        }
    }

    /// Whether a message of `payload_len` bytes with `headers` (count, bytes; `None`: no
    /// envelope) is within them on topic `name`; else the refusal's code and text.
    pub(super) fn check(
        &self,
        name: &str,
        payload_len: usize,
        headers: Option<(usize, usize)>,
    ) -> Result<(), (ErrorCode, String)> {
        if payload_len > self.max {
            return Err((
                ErrorCode::MessageTooLarge,
                format!(
                    "message of {payload_len} bytes exceeds the limit of {} bytes on topic '{name}'",
                    self.max
                ),
            ));
        }
        match headers {
            Some((count, bytes)) if count > self.max_headers || bytes > self.max_header_bytes => {
                Err((
                    ErrorCode::HeadersTooLarge,
                    format!(
                        "message with {count} header(s) of {bytes} bytes exceeds the limits of \
                         topic '{name}' (max_headers = {}, max_header_bytes = {})",
                        self.max_headers, self.max_header_bytes,
                    ),
                ))
            }
            _ => Ok(()),
        }
    }
}

/// Checks the envelope at the front of a publish's `body` (after the topic id; `frame` names
/// the frame for the error), or the fatal stop of a malformed envelope.
pub(super) fn read_envelope(body: &[u8], frame: &str) -> Result<EnvelopeRead, Stop> {
    match EnvelopeView::parse(body) {
        Ok(view) if view.flags & (envelope::TOPIC | envelope::OFFSET) != 0 => Err(fatal(
            ErrorCode::Malformed,
            format!(
                "malformed {frame} frame: the envelope carries a TOPIC or OFFSET block, which \
                 only the broker sets"
            ),
        )),
        Ok(view) => {
            let request = match (view.stamp, view.reply_to) {
                (Some(stamp), Some(reply_to)) => Some((stamp.id, reply_to.to_owned())),
                _ => None,
            };
            Ok((
                view.payload.len(),
                view.header_count(),
                view.header_bytes,
                request,
            ))
        }
        Err(error) => Err(fatal(
            ErrorCode::Malformed,
            format!("malformed {frame} frame: {error}"),
        )),
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
