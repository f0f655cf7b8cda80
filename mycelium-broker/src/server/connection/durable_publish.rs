//! `PublishDurable`: one message routed like any publish, then answered with `Published`
//! (its offset) once the topic's log holds it as durably as the topic's `fsync` promises:
//! synced under `always` and `interval:<d>`, written under `never`.
//!
//! - Consecutive `PublishDurable` frames to one topic in one read are routed as one batch (one
//!   append); the reader goes on at once, and a per-connection confirmer task waits for
//!   durability and answers, in order, so many durable publishes can be in flight and one sync
//!   answers all those it covers (group commit). At most [`MAX_UNANSWERED`] wait per
//!   connection; past it the reader stops reading that connection until answers go out.
//! - Refusals answer the request: `Unsupported` on a topic that is not durable,
//!   `MessageTooLarge`/`HeadersTooLarge` past the topic's limits, `StorageFailed` when the log
//!   could not write it, `PermissionDenied`, `UnknownTopic`, `TopicRemoved` before it was
//!   stored. Once stored it is answered `Published` whatever live delivery then meets (a slow
//!   subscriber given up on, the topic removed).

use std::sync::Arc;

use bytes::Bytes;
use mycelium_transport::outbox::Outbox;
use mycelium_transport::{ErrorCode, Frame};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::core::acl::Action;
use crate::core::batch::Item;
use crate::core::topic::Topic;

use super::context::Connection;
use super::scan::{read_envelope, Limits, Step};
use super::stop::Stop;

/// Stored durable publishes of one connection waiting for their sync at most (about 2 MiB).
const MAX_UNANSWERED: usize = 65_536;

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
        let limits = Limits::of(&config);
        let mut items = Vec::with_capacity(frames.len());
        let mut requests = Vec::with_capacity(frames.len());
        for frame in &frames {
            match check(&topic, &limits, frame) {
                Ok(()) => {
                    items.push(Item {
                        bytes: &frame.message,
                        enveloped: frame.enveloped,
                    });
                    requests.push(frame.request_id);
                }
                Err(Refusal::Fatal(stop)) => return Err(stop),
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
            })
            .await;
        }
        Ok(())
    }

    /// Hands `confirm` to the connection's confirmer task (started at the first), waiting
    /// while [`MAX_UNANSWERED`] wait for their sync: a client that pipelines more is read no
    /// further until answers go out, so its unanswered publishes hold bounded memory.
    async fn confirm(&mut self, confirm: Confirm) {
        let sender = self.confirmer.get_or_insert_with(|| {
            let (sender, receiver) = mpsc::channel(MAX_UNANSWERED);
            tokio::spawn(confirm_in_order(Arc::clone(&self.outbox), receiver));
            sender
        });
        // Fails only once the task ended, its outbox closed: nobody is left to answer.
        let _ = sender.send(confirm).await;
    }
}

/// Why one durable publish of a batch is not routed.
enum Refusal {
    /// The peer broke the protocol: the connection ends.
    Fatal(Stop),
    /// Refused with this code and text; the connection goes on.
    Answer(ErrorCode, String),
}

/// Checks one durable publish as the scan checks a `PublishEnvelope`: its envelope (no
/// broker-set block), its payload's size and its headers against the topic's limits.
fn check(topic: &Topic, limits: &Limits, frame: &DurablePublish) -> Result<(), Refusal> {
    let (payload_len, headers) = if frame.enveloped {
        let (payload_len, count, bytes, _) =
            read_envelope(&frame.message, "PublishDurable").map_err(Refusal::Fatal)?;
        (payload_len, Some((count, bytes)))
    } else {
        (frame.message.len(), None)
    };
    limits
        .check(topic.name(), payload_len, headers)
        .map_err(|(code, text)| Refusal::Answer(code, text))
}

/// Answers each stored message once it is durable, in the order they were stored; ends when
/// the connection drops its sender (after answering what is queued) or its outbox closes.
async fn confirm_in_order(outbox: Arc<Outbox>, mut queue: mpsc::Receiver<Confirm>) {
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
