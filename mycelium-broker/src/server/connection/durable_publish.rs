//! `PublishDurable`: one message routed like any publish, then answered with `Published`
//! (its offset) once the topic's log holds it as durably as the topic's `fsync` promises:
//! synced under `always` and `interval:<d>`, written under `never`.
//!
//! - Consecutive `PublishDurable` frames to one topic in one read are routed as one batch (one
//!   append); the reader goes on at once, and a per-connection confirmer task waits for
//!   durability and answers, in order, so many durable publishes can be in flight and one sync
//!   answers all those it covers (group commit).
//! - Refusals answer the request: `Unsupported` on a topic that is not durable,
//!   `MessageTooLarge`/`HeadersTooLarge` past the topic's limits, `StorageFailed` when the log
//!   could not write it, as for any publish otherwise (`PermissionDenied`, `UnknownTopic`,
//!   `TopicRemoved`, `SlowConsumer` past `publish_deadline_ms`).

use std::sync::Arc;

use bytes::Bytes;
use mycelium_transport::envelope::{self, EnvelopeView};
use mycelium_transport::outbox::Outbox;
use mycelium_transport::{ErrorCode, Frame};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use mycelium_config::TopicConfig;

use crate::core::acl::Action;
use crate::core::batch::Item;
use crate::core::topic::Topic;

use super::context::Connection;
use super::scan::Step;
use super::stop::{fatal, Stop};

/// One stored message waiting to be answered.
pub(super) struct Confirm {
    request_id: u32,
    offset: u64,
    /// The log's durable offset; `None`: answer once written (`fsync = "never"`).
    durable: Option<watch::Receiver<u64>>,
}

/// One `PublishDurable` frame as the reader hands it over.
pub(super) struct DurablePublish {
    pub(super) request_id: u32,
    pub(super) enveloped: bool,
    pub(super) message: Bytes,
}

impl Connection {
    /// Routes consecutive `PublishDurable` frames to topic `topic_id` as one batch (one
    /// append, one sync for them all) and queues their answers; refusals answer each request.
    pub(super) async fn publish_durable(
        &mut self,
        topic_id: u32,
        frames: Vec<DurablePublish>,
        stop: &CancellationToken,
    ) -> Result<(), Stop> {
        let refuse_all = |this: &Self, code: ErrorCode, topic_id: u32, message: &str| {
            for frame in &frames {
                this.refuse_publishes_answering(
                    frame.request_id,
                    code,
                    topic_id,
                    1,
                    message.to_owned(),
                );
            }
        };
        let topic = match self.topic(topic_id) {
            Ok(topic) => topic,
            Err(Step::Refuse {
                code,
                topic_id,
                message,
            }) => {
                refuse_all(self, code, topic_id, &message);
                return Ok(());
            }
            Err(_) => return Ok(()),
        };
        if let Err(message) = topic.check_access(Action::Publish, &self.peer) {
            refuse_all(self, ErrorCode::PermissionDenied, topic_id, &message);
            return Ok(());
        }
        let Some(log) = topic.log().cloned() else {
            let message = format!(
                "topic '{}' is not durable: a PublishDurable needs a topic with durable = true",
                topic.name()
            );
            refuse_all(self, ErrorCode::Unsupported, topic_id, &message);
            return Ok(());
        };
        let config = topic.config();
        let mut items = Vec::with_capacity(frames.len());
        let mut requests = Vec::with_capacity(frames.len());
        for frame in &frames {
            match check(&topic, &config, frame) {
                Ok(()) => {
                    items.push(Item {
                        bytes: &frame.message,
                        enveloped: frame.enveloped,
                    });
                    requests.push(frame.request_id);
                }
                Err(Refusal::Fatal(text)) => return Err(fatal(ErrorCode::Malformed, text)),
                Err(Refusal::Answer(code, text)) => {
                    self.refuse_publishes_answering(frame.request_id, code, topic_id, 1, text);
                }
            }
        }
        let Some(offsets) = self
            .route_answering(&requests, &topic, &items[..], stop)
            .await?
        else {
            // Refused by the log (and answered on the way), or, before anything was stored,
            // the topic was removed: say so to each.
            if topic.is_removed() && !requests.is_empty() {
                let message = format!(
                    "topic '{}' was removed from the broker's config; the message was not stored",
                    topic.name()
                );
                for &request_id in &requests {
                    self.refuse_publishes_answering(
                        request_id,
                        ErrorCode::TopicRemoved,
                        topic_id,
                        1,
                        message.clone(),
                    );
                }
            }
            return Ok(());
        };
        let durable = match config.durability().map(|d| d.fsync) {
            Some(mycelium_config::Fsync::Never) | None => None,
            Some(_) => Some(log.durable()),
        };
        for (request_id, offset) in requests.into_iter().zip(offsets) {
            self.confirm(Confirm {
                request_id,
                offset,
                durable: durable.clone(),
            });
        }
        Ok(())
    }

    /// Hands `confirm` to the connection's confirmer task (started at the first).
    fn confirm(&mut self, confirm: Confirm) {
        let sender = self.confirmer.get_or_insert_with(|| {
            let (sender, receiver) = mpsc::unbounded_channel();
            tokio::spawn(confirm_in_order(Arc::clone(&self.outbox), receiver));
            sender
        });
        // The task lives while the sender does: it cannot have gone.
        let _ = sender.send(confirm);
    }
}

/// Why one durable publish of a batch is not routed.
enum Refusal {
    /// The peer broke the protocol: the connection ends.
    Fatal(String),
    /// Refused with this code and text; the connection goes on.
    Answer(ErrorCode, String),
}

/// Checks one durable publish against the topic's limits (its envelope was checked when the
/// frame was decoded; here: no broker-set block, payload size, headers).
fn check(topic: &Topic, config: &TopicConfig, frame: &DurablePublish) -> Result<(), Refusal> {
    let (payload_len, headers) = if frame.enveloped {
        match EnvelopeView::parse(&frame.message) {
            Ok(view) if view.flags & (envelope::TOPIC | envelope::OFFSET) != 0 => {
                return Err(Refusal::Fatal(
                    "malformed PublishDurable frame: the envelope carries a TOPIC or OFFSET \
                     block, which only the broker sets"
                        .into(),
                ))
            }
            Ok(view) => (
                view.payload.len(),
                Some((view.header_count(), view.header_bytes)),
            ),
            Err(error) => {
                return Err(Refusal::Fatal(format!(
                    "malformed PublishDurable frame: {error}"
                )))
            }
        }
    } else {
        (frame.message.len(), None)
    };
    if payload_len > config.max_message_size {
        return Err(Refusal::Answer(
            ErrorCode::MessageTooLarge,
            format!(
                "message of {payload_len} bytes exceeds the limit of {} bytes on topic '{}'",
                config.max_message_size,
                topic.name()
            ),
        ));
    }
    if let Some((count, bytes)) = headers {
        if count > usize::from(config.max_headers) || bytes > config.max_header_bytes as usize {
            return Err(Refusal::Answer(
                ErrorCode::HeadersTooLarge,
                format!(
                    "{count} header(s) of {bytes} bytes exceed the limits of topic '{}' \
                     (max_headers = {}, max_header_bytes = {})",
                    topic.name(),
                    config.max_headers,
                    config.max_header_bytes
                ),
            ));
        }
    }
    Ok(())
}

/// Answers each stored message once it is durable, in the order they were stored; ends when
/// the connection drops its sender (after answering what is queued) or its outbox closes.
async fn confirm_in_order(outbox: Arc<Outbox>, mut queue: mpsc::UnboundedReceiver<Confirm>) {
    while let Some(confirm) = queue.recv().await {
        if let Some(mut durable) = confirm.durable {
            let covered = tokio::select! {
                covered = durable.wait_for(|synced| *synced > confirm.offset) => covered.is_ok(),
                () = outbox.closed() => return,
            };
            if !covered {
                // The log is gone (its topic removed and dropped): nothing more will be synced.
                outbox.append_control(&Frame::Error {
                    request_id: confirm.request_id,
                    code: ErrorCode::TopicRemoved,
                    fatal: false,
                    topic_id: mycelium_transport::NO_TOPIC,
                    message: "the topic's log closed before the message was synced".into(),
                    refused: 0,
                });
                continue;
            }
        }
        outbox.append_control(&Frame::Published {
            request_id: confirm.request_id,
            offset: confirm.offset,
        });
    }
}
