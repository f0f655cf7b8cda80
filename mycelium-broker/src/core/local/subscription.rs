//! An in-process subscription: the receive contract over a [`LocalSink`].

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Buf;
use futures_core::Stream;
use mycelium_config::Routing;
use mycelium_transport::{
    Message, Receive, RecvError, StreamState, SubscriptionEnd, TopicName, TryRecvError,
};

use crate::core::local::sink::{Entry, LocalSink, Take, Taken};
use crate::core::patterns::PatternSubscription;
use crate::core::registry::TopicRegistry;
use crate::core::topic::{SubscriberId, Topic};

/// What an in-process subscription subscribes to.
#[derive(Debug)]
enum Source {
    /// One topic, which knows the subscriber by `id`.
    Topic { topic: Arc<Topic>, id: SubscriberId },
    /// A pattern (fanout topics only), attached by `registry` to every topic it matches.
    Pattern {
        registry: Arc<TopicRegistry>,
        subscription: Arc<PatternSubscription>,
    },
}

/// An in-process subscription; see the [module docs](crate::core::local).
#[derive(Debug)]
pub struct LocalSubscription {
    source: Source,
    /// The topic's name (a pattern's messages name their own), shared by every message
    /// handed out.
    name: TopicName,
    /// The queue the topic delivers into; closed when this subscription drops.
    sink: Arc<LocalSink>,
    /// The last take from the sink, not yet handed out.
    taken: Taken,
    /// Queue: messages taken since credit was last returned.
    unreturned: u32,
    /// Queue: return credit once this many are taken (half the prefetch), so the broker can
    /// refill while the consumer works through the other half.
    credit_batch: u32,
    /// Messages the topic dropped for this subscription (its lag notices), in all.
    missed: u64,
    /// Why the subscription ended, once it did: every later call returns it again.
    end: Option<SubscriptionEnd>,
    /// The stream yielded the end: it yields nothing more.
    stream: StreamState,
}

impl LocalSubscription {
    pub(crate) fn new(
        topic: Arc<Topic>,
        id: SubscriberId,
        sink: Arc<LocalSink>,
        credit: u32,
    ) -> LocalSubscription {
        let name = TopicName::from(topic.name());
        LocalSubscription::of(Source::Topic { topic, id }, name, sink, credit)
    }

    /// A subscription of a pattern, attached by `registry`; it ends the pattern when dropped.
    pub(crate) fn of_pattern(
        registry: Arc<TopicRegistry>,
        subscription: Arc<PatternSubscription>,
        sink: Arc<LocalSink>,
    ) -> LocalSubscription {
        let name = TopicName::from(subscription.pattern().as_str());
        let source = Source::Pattern {
            registry,
            subscription,
        };
        LocalSubscription::of(source, name, sink, 0)
    }

    fn of(source: Source, name: TopicName, sink: Arc<LocalSink>, credit: u32) -> LocalSubscription {
        LocalSubscription {
            source,
            name,
            sink,
            taken: Taken::default(),
            unreturned: 0,
            credit_batch: (credit / 2).max(1),
            missed: 0,
            end: None,
            stream: StreamState::default(),
        }
    }

    /// Waits for the next message: a lag notice ([`RecvError::Lagged`]) where messages were
    /// lost, and [`RecvError::Ended`] once the subscription is over. Cancel-safe.
    pub async fn recv(&mut self) -> Result<Message, RecvError> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// The next message if one is ready, the lag notice if one is next, or why there is none.
    pub fn try_recv(&mut self) -> Result<Message, TryRecvError> {
        loop {
            match self.taken.entries.pop_front() {
                Some(Entry::Message(len)) => {
                    let payload = self.taken.bytes.slice(..len);
                    // `advance` moves the view without touching the refcount.
                    self.taken.bytes.advance(len);
                    self.took_one();
                    return Ok(Message::new(self.name.clone(), payload));
                }
                Some(Entry::Enveloped(len)) => {
                    let bytes = self.taken.bytes.slice(..len);
                    self.taken.bytes.advance(len);
                    self.took_one();
                    match Message::from_enveloped(self.name.clone(), bytes) {
                        Ok(message) => return Ok(message),
                        // Envelopes are checked where they enter the broker; one that is not
                        // readable here is lost for this subscriber, and told as such.
                        Err(error) => {
                            tracing::error!(topic = %self.name.as_str(), %error, "an enveloped message could not be read");
                            self.missed = self.missed.saturating_add(1);
                            return Err(TryRecvError::Lagged(1));
                        }
                    }
                }
                Some(Entry::Lagged(n)) => {
                    self.missed = self.missed.saturating_add(n);
                    return Err(TryRecvError::Lagged(n));
                }
                None => {}
            }
            if let Some(end) = &self.end {
                return Err(TryRecvError::Ended(end.clone()));
            }
            match self.sink.take(&mut self.taken) {
                Take::Some => {}
                Take::Nothing => return Err(TryRecvError::Empty),
                Take::Ended(end) => {
                    self.end = Some(end.clone());
                    return Err(TryRecvError::Ended(end));
                }
            }
        }
    }

    /// Messages the topic dropped for this subscription so far (`drop_newest`,
    /// `drop_oldest`), as far as the lag notices handed out tell.
    pub fn missed(&self) -> u64 {
        self.missed
    }

    /// The name of the topic this subscription receives from.
    pub fn topic(&self) -> &str {
        &self.name
    }

    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Result<Message, RecvError>> {
        loop {
            match self.try_recv() {
                Ok(message) => return Poll::Ready(Ok(message)),
                Err(TryRecvError::Lagged(n)) => return Poll::Ready(Err(RecvError::Lagged(n))),
                Err(TryRecvError::Ended(end)) => return Poll::Ready(Err(RecvError::Ended(end))),
                Err(_) => {
                    if self.sink.poll_news(cx).is_pending() {
                        return Poll::Pending;
                    }
                }
            }
        }
    }

    /// A queue consumer returns credit as it takes messages, half its prefetch at a time.
    fn took_one(&mut self) {
        if let Source::Topic { topic, id } = &self.source {
            if topic.routing() == Routing::Queue {
                self.unreturned += 1;
                if self.unreturned >= self.credit_batch {
                    topic.add_credit(*id, std::mem::take(&mut self.unreturned));
                }
            }
        }
    }
}

impl Receive for LocalSubscription {
    fn recv(&mut self) -> impl Future<Output = Result<Message, RecvError>> + Send {
        LocalSubscription::recv(self)
    }

    fn try_recv(&mut self) -> Result<Message, TryRecvError> {
        LocalSubscription::try_recv(self)
    }

    fn topic(&self) -> &str {
        &self.name
    }
}

impl Stream for LocalSubscription {
    type Item = Result<Message, RecvError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.stream.is_over() {
            return Poll::Ready(None);
        }
        let next = std::task::ready!(this.poll_recv(cx));
        this.stream.yielded(next)
    }
}

impl Drop for LocalSubscription {
    fn drop(&mut self) {
        match &self.source {
            Source::Topic { topic, id } => {
                topic.unsubscribe(*id);
            }
            Source::Pattern {
                registry,
                subscription,
            } => {
                registry.unsubscribe_pattern(subscription);
            }
        }
        self.sink.close();
    }
}
