//! Durable subscriptions of a message connection (`SubscribeDurable`): ids with bit 30 set
//! ([`DURABLE_SUBSCRIPTION_BIT`]), each a replay of the topic's log into this connection's
//! outbox ([`Follower`]) or a membership of a consumer group.
//!
//! - A replay subscription starts where `SubscribeDurable` says (new messages only, the
//!   earliest retained, an offset, a time) and then follows the log; the outbox's window of
//!   `prefetch` messages (the topic's `prefetch` when 0) paces it. `Credit` and acks on it are
//!   accepted and change nothing: the socket's own backpressure paces the replay.
//! - Refusals: `UnknownTopic`/`InvalidTopicName` as for `Subscribe`, `PermissionDenied` by the
//!   topic's `subscribe` list, `Unsupported` on a topic that is not durable, `LimitExceeded`
//!   past the connection's or the broker's subscription limits.
//! - `Unsubscribe` of the id ends it; so does the connection's end.

use std::collections::HashMap;
use std::sync::Arc;

use mycelium_storage::StartAt;
use mycelium_transport::{
    ErrorCode, Frame, NackAction, StartPosition, DURABLE_SUBSCRIPTION_BIT, NO_TOPIC,
};

use crate::core::acl::Action;
use crate::core::durable::{
    is_group_name, Follower, GroupMembership, JoinError, TopicLog, MAX_GROUP_NAME_LEN,
};
use crate::core::topic::Topic;

use super::context::Connection;

/// One durable subscription of the connection.
pub(super) enum DurableSubscription {
    /// A replay of the log, this connection's alone: held for its task, which stops when it
    /// is dropped.
    Replay { _running: Follower },
    /// A member of a consumer group: dropping it leaves the group, and what it had not acked
    /// is delivered again at once to the other members.
    Group(GroupMembership),
}

/// The durable subscriptions of a connection, by id.
pub(super) type DurableSubscriptions = HashMap<u32, DurableSubscription>;

/// Where the storage's reader starts for a `SubscribeDurable`'s start position.
pub(super) fn start_at(start: StartPosition) -> StartAt {
    match start {
        StartPosition::New => StartAt::Latest,
        StartPosition::Earliest => StartAt::Earliest,
        StartPosition::Offset(offset) => StartAt::Offset(offset),
        StartPosition::Timestamp(ns) => StartAt::Timestamp(ns),
    }
}

impl Connection {
    /// Answers a `SubscribeDurable`.
    pub(super) fn subscribe_durable(
        &mut self,
        request_id: u32,
        prefetch: u32,
        start: StartPosition,
        group: Option<String>,
        name: &str,
    ) {
        let Some((topic, log)) = self.durable_topic(
            request_id,
            name,
            "replay and consumer groups need durable = true",
        ) else {
            return;
        };
        let per_connection = self.state.config().server.max_subscriptions_per_connection;
        let held = self.subscriptions.len() + self.patterns.len() + self.durable.len();
        if held >= per_connection {
            let message = format!("this connection already holds {held} subscriptions (server.max_subscriptions_per_connection = {per_connection})");
            self.refuse(request_id, ErrorCode::LimitExceeded, topic.id(), message);
            return;
        }
        if !self.state.try_add_subscription() {
            let message = format!(
                "the broker holds its most subscriptions (server.max_subscriptions = {})",
                self.state.config().server.max_subscriptions
            );
            self.refuse(request_id, ErrorCode::LimitExceeded, topic.id(), message);
            return;
        }
        let id = self.next_durable_id();
        // What the subscriber asks for (0: the topic's prefetch), at most the topic's
        // buffer_size: the messages queued toward it are bounded as for a live subscriber.
        let config = topic.config();
        let most = u32::try_from(config.buffer_size).unwrap_or(u32::MAX).max(1);
        let window = match prefetch {
            0 => config.prefetch,
            asked => asked,
        }
        .clamp(1, most);
        if let Some(group) = group {
            if !is_group_name(&group) {
                self.state.remove_subscriptions(1);
                let message = format!(
                    "invalid consumer group name '{group}': 1 to {MAX_GROUP_NAME_LEN} characters from A-Z a-z 0-9 . _ -"
                );
                self.refuse(request_id, ErrorCode::InvalidTopicName, topic.id(), message);
                return;
            }
            // The ack is queued first, held until the member is in the group, so it precedes
            // every delivery.
            let hold = self
                .outbox
                .append_control_held(&durable_ack(request_id, id, window, &topic));
            let joined = log.groups().join(
                &topic,
                &log,
                &group,
                start_at(start),
                self.outbox.clone(),
                id,
                window,
                self.state.dead_letters.clone(),
            );
            match joined {
                Ok(membership) => {
                    drop(hold);
                    tracing::debug!(
                        connection = self.id,
                        topic = topic.name(),
                        group,
                        id,
                        "joined a consumer group"
                    );
                    self.durable
                        .insert(id, DurableSubscription::Group(membership));
                }
                Err(error) => {
                    // Acknowledged already: the subscription ends at once, saying why.
                    drop(hold);
                    self.state.remove_subscriptions(1);
                    let code = match error {
                        JoinError::BadName { .. } => ErrorCode::InvalidTopicName,
                        JoinError::TooManyGroups | JoinError::TooManyMembers { .. } => {
                            ErrorCode::LimitExceeded
                        }
                        _ => ErrorCode::Internal,
                    };
                    self.refuse(0, code, id, error.to_string());
                }
            }
            return;
        }
        self.outbox
            .append_control(&durable_ack(request_id, id, window, &topic));
        // Started after the ack is queued: every delivery follows it.
        let follower = Follower::start(
            log,
            start_at(start),
            self.outbox.clone(),
            id,
            window as usize,
        );
        tracing::debug!(
            connection = self.id,
            topic = topic.name(),
            id,
            ?start,
            "replay subscription"
        );
        self.durable
            .insert(id, DurableSubscription::Replay { _running: follower });
    }

    /// The durable topic `name` and its log, as a subscriber may read it; `None` once the
    /// request is refused (unknown, hidden by the access lists, or not durable: `why`).
    fn durable_topic(
        &self,
        request_id: u32,
        name: &str,
        why: &str,
    ) -> Option<(Arc<Topic>, Arc<TopicLog>)> {
        let topic = match self.state.registry.resolve(name) {
            Ok(topic) => topic,
            Err(error) => {
                self.refuse_lookup(request_id, error);
                return None;
            }
        };
        if self.refuse_access(request_id, Action::Subscribe, &topic) {
            return None;
        }
        let Some(log) = topic.log().cloned() else {
            let message = format!("topic '{}' is not durable: {why}", topic.name());
            self.refuse(request_id, ErrorCode::Unsupported, topic.id(), message);
            return None;
        };
        Some((topic, log))
    }

    /// A fresh id for a durable subscription: bit 30 set, unique on the connection.
    fn next_durable_id(&mut self) -> u32 {
        loop {
            self.next_durable = self.next_durable.wrapping_add(1) & (DURABLE_SUBSCRIPTION_BIT - 1);
            let id = DURABLE_SUBSCRIPTION_BIT | self.next_durable;
            if !self.durable.contains_key(&id) {
                return id;
            }
        }
    }

    /// Answers an `Unsubscribe` of a durable subscription's id.
    pub(super) fn unsubscribe_durable(&mut self, request_id: u32, id: u32) {
        match self.durable.remove(&id) {
            Some(subscription) => {
                drop(subscription);
                self.state.remove_subscriptions(1);
                self.outbox.append_control(&Frame::Ack { request_id });
            }
            None => self.refuse(
                request_id,
                ErrorCode::NotSubscribed,
                id,
                format!("no durable subscription with id {id}"),
            ),
        }
    }

    /// `AckMessages` on a durable subscription: a group member's messages are done; a replay
    /// subscription takes them and changes nothing; an unknown id is refused (request id 0).
    pub(super) fn durable_acks(&mut self, id: u32, offsets: &[u64]) {
        match self.durable.get(&id) {
            Some(DurableSubscription::Group(membership)) => membership.ack(offsets),
            Some(DurableSubscription::Replay { .. }) => {}
            None => self.durable_credit(id),
        }
    }

    /// `Nack` on a group member's message; refused (request id 0) on anything else.
    pub(super) fn durable_nack(&mut self, id: u32, offset: u64, action: NackAction) {
        match self.durable.get(&id) {
            Some(DurableSubscription::Group(membership)) => membership.nack(offset, action),
            Some(DurableSubscription::Replay { .. }) => self.refuse(
                0,
                ErrorCode::Unsupported,
                id,
                format!("nack on replay subscription {id}: only a consumer group member's messages can be nacked"),
            ),
            None => self.durable_credit(id),
        }
    }

    /// Answers a `GroupsRequest`.
    pub(super) fn groups(&mut self, request_id: u32, name: &str) {
        let Some((_, log)) =
            self.durable_topic(request_id, name, "only a durable topic has consumer groups")
        else {
            return;
        };
        let groups = log.groups().stats(log.figures().next_offset);
        self.outbox
            .append_control(&Frame::Groups { request_id, groups });
    }

    /// `Credit` on a durable subscription: a replay subscription takes it and changes nothing;
    /// an unknown id is refused (request id 0).
    pub(super) fn durable_credit(&mut self, id: u32) {
        if !self.durable.contains_key(&id) {
            self.refuse(
                0,
                ErrorCode::NotSubscribed,
                id,
                format!("acks or credit for durable subscription {id}, which this connection does not hold"),
            );
        }
    }

    /// Ends every durable subscription (the connection is leaving).
    pub(super) fn end_durable(&mut self) {
        self.state.remove_subscriptions(self.durable.len());
        self.durable.clear();
    }
}

/// The `TopicAck` of durable subscription `id` on `topic` with `window` in flight.
fn durable_ack(request_id: u32, id: u32, window: u32, topic: &Topic) -> Frame {
    Frame::TopicAck {
        request_id,
        topic_id: id,
        routing: mycelium_transport::RoutingKind::Fanout,
        max_message_size: u32::try_from(topic.config().max_message_size).unwrap_or(u32::MAX),
        prefetch: window,
        pattern: false,
        rules: topic.message_rules(),
    }
}

/// Whether `id` names a durable subscription.
pub(super) fn is_durable_id(id: u32) -> bool {
    id & DURABLE_SUBSCRIPTION_BIT != 0
        && id != NO_TOPIC
        && id & mycelium_transport::frame::PATTERN_ID_BIT == 0
}
