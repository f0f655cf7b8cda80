//! A topic's subscribers as the metrics see them: how many by transport, and what is queued
//! toward them ([`SubscriberFigures`]).
//!
//! - Read when the metrics are read (each sink's lock taken once), never while routing.
//! - The shared-memory readers are not here: their rings' owner counts them.

use crate::core::delivery::{Delivery, SubscriberTransport};
use crate::core::topic::queue::Sink;
use crate::core::topic::Topic;
use mycelium_config::Routing;

/// A topic's subscribers reached one by one (through a [`Delivery`]), at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SubscriberFigures {
    /// Socket subscribers (fanout) or consumers (queue).
    pub socket: usize,
    /// In-process subscribers or consumers (`LocalSubscription`, gateway).
    pub in_process: usize,
    /// Messages queued toward all of them (a socket subscriber's outbox counts all its
    /// connection's messages, whatever their topic).
    pub queued: usize,
    /// The most queued toward any one of them: the slowest subscriber's lag, in messages.
    pub slowest: usize,
}

impl SubscriberFigures {
    fn add(&mut self, sink: &dyn Delivery, topic: u32) {
        match sink.transport() {
            SubscriberTransport::Socket => self.socket += 1,
            _ => self.in_process += 1,
        }
        if let Some(queued) = sink.queued(topic) {
            self.queued = self.queued.saturating_add(queued);
            self.slowest = self.slowest.max(queued);
        }
    }
}

impl Topic {
    /// The topic's subscribers reached through a [`Delivery`] now.
    pub fn subscriber_figures(&self) -> SubscriberFigures {
        let mut figures = SubscriberFigures::default();
        match self.routing {
            Routing::Fanout => {
                for sub in self.fanout_snapshot().iter() {
                    figures.add(sub.sink.as_ref(), self.id);
                }
            }
            Routing::Queue => {
                let sinks: Vec<_> = self
                    .queue
                    .lock()
                    .consumers
                    .iter()
                    .filter_map(|c| match &c.sink {
                        Sink::Direct(_, sink) => Some(sink.clone()),
                        Sink::Relayed(_) => None,
                    })
                    .collect();
                // Outside the topic's lock: a sink's own lock is never taken under it here.
                for sink in &sinks {
                    figures.add(sink.as_ref(), self.id);
                }
            }
        }
        figures
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use mycelium_config::{Backpressure, Routing, TopicDefaults};
    use mycelium_transport::outbox::Outbox;

    use crate::core::local::LocalBroker;
    use mycelium_transport::Broker;

    #[tokio::test]
    async fn subscribers_are_counted_by_transport_with_what_is_queued_toward_them() {
        for routing in [Routing::Fanout, Routing::Queue] {
            let broker = LocalBroker::new(TopicDefaults::default());
            let mut config = TopicDefaults::default().topic("t");
            config.routing = routing;
            config.backpressure = Backpressure::Block;
            config.prefetch = 100;
            broker.create_topic(config).expect("created");
            let topic = broker.registry().get_by_name("t").expect("topic");
            let _local = broker.subscribe("t").expect("in-process");
            let socket = Arc::new(Outbox::new());
            let id = broker.registry().next_subscriber_id();
            topic.subscribe(id, socket.clone(), 1000, 100);
            let figures = topic.subscriber_figures();
            assert_eq!((figures.socket, figures.in_process), (1, 1), "{routing:?}");
            assert_eq!((figures.queued, figures.slowest), (0, 0));
            for i in 0..6u32 {
                broker
                    .publish("t", &i.to_le_bytes())
                    .await
                    .expect("published");
            }
            let figures = topic.subscriber_figures();
            // Fanout: a copy each; queue: each message to one, dealt in turn.
            let (queued, most) = match routing {
                Routing::Fanout => (12, 6),
                Routing::Queue => (6, 3),
            };
            assert_eq!(
                (figures.queued, figures.slowest),
                (queued, most),
                "{routing:?}"
            );
            assert!(topic.unsubscribe(id));
            assert_eq!(topic.subscriber_figures().socket, 0);
        }
    }
}
