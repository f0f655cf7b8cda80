//! The requests of a message connection: subscribe, unsubscribe, advertise, credit, ping,
//! stats and reload, each answered in frame order through the outbox.

use mycelium_config::Routing;
use mycelium_transport::frame::{NO_TOPIC, PATTERN_ID_BIT};
use mycelium_transport::{ErrorCode, Frame, RoutingKind};
use tokio_util::sync::CancellationToken;

use crate::core::acl::Action;
use crate::core::registry::{foreign_inbox, is_inbox};
use crate::core::topic::{PublisherHold, Topic};
use crate::error::LookupError;

use super::context::{Connection, Subscription};
use super::durable_subscribe::is_durable_id;
use super::patterns::is_pattern;
use super::stop::{fatal, Stop};

impl Connection {
    /// Answers a `ReloadRequest` once a reload that started after it is done. Awaited in
    /// frame order, so the frames sent after the request are handled after the reload (a
    /// `Pong` after it means the reload is done, as for any request).
    pub(super) async fn reload(
        &self,
        request_id: u32,
        stop: &CancellationToken,
    ) -> Result<(), Stop> {
        let answer = tokio::select! {
            answer = self.state.reload.request() => answer,
            _ = stop.cancelled() => return Err(Stop::Shutdown),
        };
        self.outbox.append_control(&Frame::ReloadResult {
            request_id,
            outcome: answer.outcome,
            status: answer.status.truncated(),
        });
        Ok(())
    }

    /// Refuses request `request_id` if this peer may not do `action` on `topic`; true if
    /// it was refused.
    pub(super) fn refuse_access(&self, request_id: u32, action: Action, topic: &Topic) -> bool {
        match topic.check_access(action, &self.peer) {
            Ok(()) => false,
            Err(message) => {
                tracing::info!(connection = self.id, topic = topic.name(), peer = %self.peer.describe(), action = action.key(), "access refused");
                self.refuse(request_id, ErrorCode::PermissionDenied, topic.id(), message);
                true
            }
        }
    }

    /// Refuses request `request_id` (0: a frame that is not a request, such as `Credit`, or
    /// a notice about a subscription) with a non-fatal error that refuses no publish.
    pub(super) fn refuse(&self, request_id: u32, code: ErrorCode, topic_id: u32, message: String) {
        tracing::debug!(connection = self.id, ?code, %message, "refused a request");
        self.outbox.append_control(&Frame::Error {
            request_id,
            code,
            fatal: false,
            topic_id,
            message,
            refused: 0,
        });
    }

    pub(super) fn refuse_lookup(&self, request_id: u32, error: LookupError) {
        let code = match error {
            LookupError::UnknownTopic { .. } | LookupError::TooManyTopics { .. } => {
                ErrorCode::UnknownTopic
            }
            LookupError::InvalidName { .. } => ErrorCode::InvalidTopicName,
            LookupError::Storage { .. } => ErrorCode::StorageFailed,
        };
        self.refuse(request_id, code, NO_TOPIC, error.to_string());
    }

    /// Handles one control frame.
    pub(super) fn control(&mut self, frame: Frame) -> Result<(), Stop> {
        match frame {
            Frame::Subscribe { request_id, topic, no_echo, .. } if is_pattern(&topic) => {
                self.subscribe_pattern(request_id, &topic, no_echo);
            }
            Frame::Unsubscribe { request_id, topic_id } if topic_id & PATTERN_ID_BIT != 0 => {
                self.unsubscribe_pattern(request_id, topic_id);
            }
            Frame::Unsubscribe { request_id, topic_id } if is_durable_id(topic_id) => {
                self.unsubscribe_durable(request_id, topic_id);
            }
            Frame::Credit { topic_id, .. } if is_durable_id(topic_id) => {
                self.durable_credit(topic_id);
            }
            Frame::SubscribeDurable { request_id, prefetch, start, group, topic } => {
                self.subscribe_durable(request_id, prefetch, start, group, &topic);
            }
            Frame::AckMessages { subscription_id, offsets } => {
                self.durable_acks(subscription_id, &offsets);
            }
            Frame::Nack { subscription_id, offset, action } => {
                self.durable_nack(subscription_id, offset, action);
            }
            Frame::GroupsRequest { request_id, topic } => {
                self.groups(request_id, &topic);
            }
            Frame::Subscribe { request_id, prefetch, no_echo, topic } => {
                if let Some(refusal) = foreign_inbox(&topic, self.client_id) {
                    self.refuse(request_id, ErrorCode::PermissionDenied, NO_TOPIC, refusal);
                    return Ok(());
                }
                let topic = match self.state.registry.resolve(&topic) {
                    Ok(topic) => topic,
                    Err(error) => {
                        self.refuse_lookup(request_id, error);
                        return Ok(());
                    }
                };
                if self.refuse_access(request_id, Action::Subscribe, &topic) {
                    return Ok(());
                }
                if no_echo && topic.routing() == Routing::Queue {
                    let message = format!("no_echo applies to fanout topics; topic '{}' is a queue (each message goes to one consumer)", topic.name());
                    self.refuse(request_id, ErrorCode::Unsupported, topic.id(), message);
                    return Ok(());
                }
                if self.subscriptions.contains_key(&topic.id()) {
                    let message = format!("already subscribed to topic '{}'", topic.name());
                    self.refuse(request_id, ErrorCode::AlreadySubscribed, topic.id(), message);
                    return Ok(());
                }
                let per_connection = self.state.config().server.max_subscriptions_per_connection;
                if self.subscriptions.len() >= per_connection {
                    let message = format!("this connection already holds {} subscriptions (server.max_subscriptions_per_connection = {per_connection})", self.subscriptions.len());
                    self.refuse(request_id, ErrorCode::LimitExceeded, topic.id(), message);
                    return Ok(());
                }
                if !self.state.try_add_subscription() {
                    let message = format!("the broker holds its most subscriptions (server.max_subscriptions = {})", self.state.config().server.max_subscriptions);
                    self.refuse(request_id, ErrorCode::LimitExceeded, topic.id(), message);
                    return Ok(());
                }
                let id = self.state.registry.next_subscriber_id();
                let capacity = self.state.config().performance.channel_capacity;
                let granted = match topic.routing() {
                    Routing::Fanout => 0,
                    Routing::Queue => topic.granted_prefetch(prefetch),
                };
                // The ack is queued first, so it precedes every Deliver of the subscription, and
                // held until the subscription exists, so a client that saw the ack (and told
                // a publisher to go) cannot miss a message routed in between.
                let hold = self.outbox.append_control_held(&topic_ack(request_id, &topic, granted));
                // No echo: what this connection publishes (its batches carry its id) skips it.
                let skip_origin = if no_echo { self.id } else { 0 };
                if topic.subscribe_skipping(id, self.outbox.clone(), capacity, granted, skip_origin).is_none() {
                    // A reload removed the topic since the lookup: the ack is followed at
                    // once by the removal notice, as for any subscriber of a removed topic.
                    self.state.remove_subscriptions(1);
                    self.refuse(
                        0,
                        ErrorCode::TopicRemoved,
                        topic.id(),
                        format!(
                            "topic '{}' was removed from the broker's config; this subscription has ended",
                            topic.name()
                        ),
                    );
                    drop(hold);
                    return Ok(());
                }
                // Shared-memory publishers' rings are read for this subscriber from now on,
                // before it sees the ack.
                self.state.shm.socket_subscribers_changed(&topic);
                drop(hold);
                tracing::debug!(connection = self.id, topic = topic.name(), "subscribed");
                self.subscriptions.insert(topic.id(), Subscription { id, topic });
            }
            Frame::Unsubscribe { request_id, topic_id } => match self.subscriptions.remove(&topic_id).inspect(|_| self.state.remove_subscriptions(1)) {
                // A removed topic ended the subscription already (and said so).
                Some(sub) if sub.topic.is_removed() => self.refuse(request_id, ErrorCode::NotSubscribed, topic_id, format!("topic id {topic_id} was removed; the subscription ended then")),
                Some(sub) => {
                    sub.topic.unsubscribe(sub.id);
                    self.state.shm.socket_subscribers_changed(&sub.topic);
                    self.outbox.append_control(&Frame::Ack { request_id });
                }
                None => self.refuse(request_id, ErrorCode::NotSubscribed, topic_id, format!("not subscribed to topic id {topic_id}")),
            },
            Frame::Advertise { request_id, topic } => match self.state.registry.resolve(&topic) {
                Ok(topic) => {
                    if !self.refuse_access(request_id, Action::Publish, &topic) {
                        self.outbox.append_control(&topic_ack(request_id, &topic, 0));
                        // A responder publishes to each requester's inbox once or twice: its
                        // claim would keep every inbox it ever answered from being reclaimed
                        // after its requester left. An inbox lives by its subscriber alone.
                        if !is_inbox(topic.name()) {
                            self.advertised.entry(topic.id()).or_insert_with(|| PublisherHold::new(topic));
                        }
                    }
                }
                Err(error) => self.refuse_lookup(request_id, error),
            },
            Frame::Credit { topic_id, credit } => match self.subscriptions.get(&topic_id) {
                Some(sub) if sub.topic.add_credit(sub.id, credit) => {}
                // Sent before the client saw the removal notice: nothing to refuse.
                Some(sub) if sub.topic.is_removed() => {}
                _ => self.refuse(0, ErrorCode::NotSubscribed, topic_id, format!("credit for topic id {topic_id}, which this connection does not consume as a queue")),
            },
            Frame::Ping { token } => {
                self.outbox.append_control(&Frame::Pong { token });
            }
            Frame::Pong { .. } => {}
            Frame::StatsRequest { request_id } => {
                self.outbox.append_control(&self.state.stats_frame(request_id));
            }
            // Answered by `reload`, which waits; `execute` sends it there.
            Frame::ReloadRequest { .. } => {}
            Frame::Hello { .. } | Frame::ShmHello { .. } => return Err(fatal(ErrorCode::HandshakeRequired, "Hello sent twice")),
            Frame::ShmAttach { .. } | Frame::ShmDetach { .. } | Frame::ShmSegment { .. } => {
                return Err(fatal(ErrorCode::ShmRefused, "shared-memory requests need a session of their own: open a connection that starts with ShmHello"));
            }
            Frame::Publish { .. } | Frame::PublishEnvelope { .. } => unreachable_publish(),
            // Routed by the reader (`durable_publish.rs`), which awaits.
            Frame::PublishDurable { .. } => unreachable_publish(),
            Frame::Published { .. } | Frame::Groups { .. } | Frame::Welcome { .. } | Frame::TopicAck { .. } | Frame::Ack { .. } | Frame::Deliver { .. } | Frame::DeliverEnvelope { .. } | Frame::Error { .. } | Frame::Stats { .. } | Frame::ShmGrant { .. } | Frame::ShmRingAdded { .. } | Frame::ShmTopicRingAdded { .. } | Frame::ShmRingRemoved { .. } | Frame::ShmDetached { .. } | Frame::ShmSegmentAdded { .. } | Frame::ReloadResult { .. } | Frame::Lagged { .. } => {
                return Err(fatal(ErrorCode::HandshakeRequired, "a client sent a frame only the broker may send"));
            }
        }
        Ok(())
    }
}

/// Publishes are handled on the hot path before `control` is reached.
fn unreachable_publish() {
    tracing::error!("a Publish frame reached the control path");
}

fn topic_ack(request_id: u32, topic: &Topic, prefetch: u32) -> Frame {
    Frame::TopicAck {
        request_id,
        topic_id: topic.id(),
        routing: match topic.routing() {
            Routing::Fanout => RoutingKind::Fanout,
            Routing::Queue => RoutingKind::Queue,
        },
        max_message_size: u32::try_from(topic.config().max_message_size).unwrap_or(u32::MAX),
        prefetch,
        pattern: false,
        rules: topic.message_rules(),
    }
}
