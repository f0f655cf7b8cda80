//! Where consumer groups put the messages they give up on: the topic's dead-letter topic
//! (`dead_letter`, by default `<topic>.dlq`).
//!
//! - The dead-letter topic is the one the config declares under that name, or else it is made
//!   on first use as a durable fanout topic with the source topic's settings (retention,
//!   fsync, limits, access lists), so that what lands there can be read back and moved home
//!   (`mycelium dlq redrive`); it is never reclaimed as idle.
//! - The message keeps its envelope (stamp, headers) and gains the `Mycelium-Dead-Letter-*`
//!   headers and its delivery count ([`DeadLetterHeaders::write_message`]). It is stored (the
//!   dead-letter topic's log) before this returns `Ok`; live subscribers of the dead-letter
//!   topic get it as for any publish, a slow one under `block` waited for on a task of its own.
//! - An `Err` (the dead-letter topic cannot be made, or its log refuses the message) leaves
//!   the message with its group, which delivers it again later: nothing is lost.

use std::sync::Arc;

use bytes::BytesMut;

use crate::core::batch::Item;
use crate::core::durable::{DeadLetterHeaders, DeadLetters};
use crate::core::registry::TopicRegistry;
use crate::core::topic::{Progress, PublishCursor, Topic};

/// The broker's [`DeadLetters`]: publishes through the registry.
#[derive(Debug)]
pub(crate) struct RegistryDeadLetters {
    pub(crate) registry: Arc<TopicRegistry>,
}

impl RegistryDeadLetters {
    /// The dead-letter topic of `source`, made if it does not exist.
    fn dead_letter_topic(&self, source: &Topic) -> Result<Arc<Topic>, String> {
        let config = source.config();
        let Some(durability) = config.durability() else {
            return Err(format!("topic '{}' is not durable", source.name()));
        };
        let name = durability.dead_letter;
        if let Some(topic) = self.registry.get_by_name(&name) {
            return Ok(topic);
        }
        // The source's settings and access lists; its own dead letters go to the default,
        // `<name>.dlq`.
        let mut dead = (*config).clone();
        dead.name.clone_from(&name);
        dead.dead_letter = None;
        match self.registry.create_topic(dead) {
            Ok(topic) => {
                tracing::info!(topic = %name, source = source.name(), "made the dead-letter topic");
                Ok(topic)
            }
            // Made meanwhile by another group, or it cannot be made.
            Err(error) => self
                .registry
                .get_by_name(&name)
                .ok_or_else(|| format!("cannot make dead-letter topic '{name}': {error}")),
        }
    }
}

impl DeadLetters for RegistryDeadLetters {
    fn dead_letter(
        &self,
        source: &Topic,
        record_envelope: &[u8],
        payload: &[u8],
        headers: DeadLetterHeaders<'_>,
    ) -> Result<(), String> {
        let topic = self.dead_letter_topic(source)?;
        let mut bytes = BytesMut::new();
        headers.write_message(record_envelope, payload, &mut bytes);
        let bytes = bytes.freeze();
        let items = [Item {
            bytes: &bytes,
            enveloped: true,
        }];
        let mut cursor = PublishCursor::default();
        match topic.publish(&items[..], &mut cursor) {
            Progress::Done => Ok(()),
            Progress::Refused(refusal) => Err(refusal.message),
            Progress::Blocked(_) if topic.log().is_some() && cursor.logged().is_some() => {
                // Stored; a slow live subscriber of the dead-letter topic holds the rest of
                // the routing, which goes on without holding up the group.
                tokio::spawn(async move {
                    let items = [Item {
                        bytes: &bytes,
                        enveloped: true,
                    }];
                    loop {
                        match topic.publish(&items[..], &mut cursor) {
                            Progress::Blocked(blocker) => blocker.wait().await,
                            Progress::Done | Progress::Refused(_) => return,
                        }
                    }
                });
                Ok(())
            }
            Progress::Blocked(_) => Err(format!(
                "dead-letter topic '{}' is not durable and a subscriber holds it full",
                topic.name()
            )),
        }
    }
}
