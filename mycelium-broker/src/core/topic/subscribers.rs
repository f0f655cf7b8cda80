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
