//! The broker's one part in request/reply: a request that reaches a topic nobody subscribes
//! to is answered at once, on its reply address, with a no-responders reply, so the requester
//! learns it now rather than at its timeout (`docs/protocol.md` §7.10).

use std::sync::Arc;

use bytes::BytesMut;
use mycelium_transport::envelope::{Envelope, Reply, ReplyStatus};
use tokio_util::sync::CancellationToken;

use crate::core::acl::Action;
use crate::core::batch::Item;
use crate::core::topic::Topic;

use super::context::Connection;
use super::stop::Stop;

impl Connection {
    /// Whether anyone at all would get a message of `topic`: a subscriber reached one by one
    /// (socket, in-process, a pattern) or over shared memory.
    pub(super) fn has_responders(&self, topic: &Topic) -> bool {
        if topic.subscriber_count() > 0 {
            return true;
        }
        // Shared-memory subscribers and queue consumers, each an attachment of the topic.
        self.state.shm.attachment_counts(topic.id()).1 > 0
    }

    /// Publishes the no-responders reply to request `correlation` of `topic` on `reply_to`,
    /// as this connection would publish it (its access to `reply_to` is checked). A reply
    /// address that names no existing topic, or one it may not publish to, gets nothing.
    pub(super) async fn answer_no_responders(
        &self,
        topic: &Arc<Topic>,
        reply_to: &str,
        correlation: uuid::Uuid,
        stop: &CancellationToken,
    ) -> Result<(), Stop> {
        // Looked up, never created: a reply address nobody subscribes to needs no answer, and
        // a peer's reply address must not make topics.
        let Some(inbox) = self.state.registry.get_by_name(reply_to) else {
            tracing::debug!(
                connection = self.id,
                reply_to,
                "no-responders reply not sent: no such topic"
            );
            return Ok(());
        };
        if let Err(reason) = inbox.check_access(Action::Publish, &self.peer) {
            tracing::debug!(
                connection = self.id,
                reply_to,
                reason,
                "no-responders reply not sent"
            );
            return Ok(());
        }
        let envelope = Envelope {
            reply: Some(Reply {
                status: ReplyStatus::NoResponders,
                code: 0,
                correlation,
            }),
            ..Envelope::default()
        };
        let mut bytes = BytesMut::new();
        envelope.encode(&mut bytes);
        bytes.extend_from_slice(format!("no responders on topic '{}'", topic.name()).as_bytes());
        let item = [Item {
            bytes: &bytes,
            enveloped: true,
        }];
        self.route(&inbox, &item[..], stop).await
    }
}
