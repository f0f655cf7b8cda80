//! Pattern subscriptions of a message connection (`Subscribe` of `orders.*` or `orders.>`):
//! ids with bit 31 set, one [`PatternSubscription`] each, attached by the registry to every
//! matching topic (see `crate::core::patterns`).

use std::sync::Arc;

use mycelium_transport::frame::{MessageRules, PATTERN_ID_BIT};
use mycelium_transport::{ErrorCode, Frame, RoutingKind};

use crate::core::patterns::{OnAttach, PatternSubscription};
use crate::core::subject::Pattern;

use super::context::Connection;

/// Whether a subscribed name is a pattern rather than a topic name.
pub(super) fn is_pattern(name: &str) -> bool {
    name.contains(['*', '>'])
}

impl Connection {
    /// Answers a `Subscribe` of a pattern.
    pub(super) fn subscribe_pattern(&mut self, request_id: u32, text: &str, no_echo: bool) {
        let pattern = match Pattern::parse(text) {
            Ok(pattern) => pattern,
            Err(error) => {
                let message = format!("invalid pattern '{text}': {error}");
                self.refuse(
                    request_id,
                    ErrorCode::InvalidTopicName,
                    mycelium_transport::NO_TOPIC,
                    message,
                );
                return;
            }
        };
        if self.patterns.values().any(|p| p.pattern() == &pattern) {
            let message = format!("already subscribed to pattern '{text}'");
            self.refuse(
                request_id,
                ErrorCode::AlreadySubscribed,
                mycelium_transport::NO_TOPIC,
                message,
            );
            return;
        }
        let per_connection = self.state.config().server.max_subscriptions_per_connection;
        let held = self.subscriptions.len() + self.patterns.len();
        if held >= per_connection {
            let message = format!("this connection already holds {held} subscriptions (server.max_subscriptions_per_connection = {per_connection})");
            self.refuse(
                request_id,
                ErrorCode::LimitExceeded,
                mycelium_transport::NO_TOPIC,
                message,
            );
            return;
        }
        if !self.state.try_add_subscription() {
            let message = format!(
                "the broker holds its most subscriptions (server.max_subscriptions = {})",
                self.state.config().server.max_subscriptions
            );
            self.refuse(
                request_id,
                ErrorCode::LimitExceeded,
                mycelium_transport::NO_TOPIC,
                message,
            );
            return;
        }
        let key = self.next_pattern_key();
        let config = self.state.config();
        let defaults = &config.topic_defaults;
        let ack = Frame::TopicAck {
            request_id,
            topic_id: key,
            routing: RoutingKind::Fanout,
            max_message_size: u32::try_from(self.state.registry.max_message_size())
                .unwrap_or(u32::MAX),
            prefetch: 0,
            pattern: true,
            rules: MessageRules {
                stamp: defaults.stamp,
                max_headers: defaults.max_headers,
                max_header_bytes: defaults.max_header_bytes,
            },
        };
        let shm = self.state.shm.clone();
        let on_attach: OnAttach = Arc::new(move |topic| shm.socket_subscribers_changed(topic));
        let subscription = PatternSubscription::new(
            pattern,
            key,
            self.peer.clone(),
            self.outbox.clone(),
            config.performance.channel_capacity,
            if no_echo { self.id } else { 0 },
            Some(on_attach),
        );
        // The ack is held until the pattern is attached to the topics that exist, so it
        // precedes every delivery, and a client that saw it misses nothing published later.
        let hold = self.outbox.append_control_held(&ack);
        self.state.registry.subscribe_pattern(&subscription);
        drop(hold);
        tracing::debug!(
            connection = self.id,
            pattern = text,
            key,
            "subscribed to a pattern"
        );
        self.patterns.insert(key, subscription);
    }

    /// Answers an `Unsubscribe` of a pattern subscription's id.
    pub(super) fn unsubscribe_pattern(&mut self, request_id: u32, key: u32) {
        match self.patterns.remove(&key) {
            Some(subscription) => {
                self.end_pattern(&subscription);
                self.state.remove_subscriptions(1);
                self.outbox.append_control(&Frame::Ack { request_id });
            }
            None => self.refuse(
                request_id,
                ErrorCode::NotSubscribed,
                key,
                format!("not subscribed to a pattern with id {key:#x}"),
            ),
        }
    }

    /// Ends every pattern subscription (the connection is leaving).
    pub(super) fn end_patterns(&mut self) {
        self.state.remove_subscriptions(self.patterns.len());
        for (_, subscription) in std::mem::take(&mut self.patterns) {
            self.end_pattern(&subscription);
        }
    }

    fn end_pattern(&self, subscription: &Arc<PatternSubscription>) {
        for topic in self.state.registry.unsubscribe_pattern(subscription) {
            self.state.shm.socket_subscribers_changed(&topic);
        }
    }

    /// A key no pattern subscription of this connection holds: bit 31 and a counter.
    fn next_pattern_key(&mut self) -> u32 {
        loop {
            self.next_pattern = self.next_pattern.wrapping_add(1) & !PATTERN_ID_BIT;
            let key = PATTERN_ID_BIT | self.next_pattern;
            if !self.patterns.contains_key(&key) {
                return key;
            }
        }
    }
}
