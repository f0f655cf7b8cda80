//! Reconnecting with backoff: a subscription and a publisher that survive a broker restart.
//!
//! - [`Backoff`] is the retry policy: capped exponential delays with saturating arithmetic,
//!   and an optional cap on attempts; [`Backoff::with_delays`] replaces it with any function
//!   of the attempt number.
//! - [`Client::connect_retrying`] connects, retrying while no broker answers.
//! - [`ReconnectingSubscription`] re-subscribes after the connection is lost, inside `recv`,
//!   and goes on with the topic's messages; each outage is announced as a
//!   [`ConnectionEvent::Reconnected`] to every receiver of [`ReconnectingSubscription::events`].
//!   Delivery stays at most once: what was published while no broker (or no subscription)
//!   existed is not replayed. It keeps the receive contract
//!   ([`mycelium_transport::receive`]); it ends when the backoff gives up
//!   ([`SubscriptionEnd::Failed`] with the last [`ConnectError`]) or the broker refuses the
//!   subscription.
//! - [`ReconnectingPublisher`] re-advertises its topic after the connection is lost and
//!   sends the message again; a message whose fate is unknown (written, but the broker went
//!   away before confirming it) may then arrive twice.
//! - Errors that are not about the connection (an unknown topic, a refused permission, a
//!   removed topic) are returned as they are: retrying would not help.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use mycelium_client::{Backoff, ReconnectingSubscription, RecvError};
//! let mut sub = ReconnectingSubscription::new("/tmp/mycelium.sock", "market_data", Backoff::default()).await?;
//! loop {
//!     match sub.recv().await {
//!         Ok(message) => println!("{} bytes", message.len()),
//!         Err(RecvError::Lagged(n)) => eprintln!("{n} messages lost"),
//!         Err(error) => break Err(error.into()),
//!     }
//! }
//! # }
//! ```

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_core::Stream;
use mycelium_transport::{Message, Receive, RecvError, StreamState, SubscriptionEnd, TryRecvError};
use tokio::sync::broadcast;

use crate::client::{Client, ClientOptions, Publisher, Subscription};
use crate::error::{ConnectError, PublishError, SubscribeError};
use crate::subscribe_options::SubscribeOptions;
use mycelium_transport::envelope::Headers;

/// How long to wait before reconnection attempt `n` (1-based), or `None` to give up.
type DelayPolicy = Arc<dyn Fn(u32) -> Option<Duration> + Send + Sync>;

/// The retry policy of a reconnecting client: see the module docs.
#[derive(Clone)]
pub struct Backoff {
    policy: DelayPolicy,
}

impl std::fmt::Debug for Backoff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backoff").finish_non_exhaustive()
    }
}

/// The first delay of [`Backoff::default`].
pub const DEFAULT_INITIAL_DELAY: Duration = Duration::from_millis(10);

/// The longest delay of [`Backoff::default`].
pub const DEFAULT_MAX_DELAY: Duration = Duration::from_secs(2);

impl Default for Backoff {
    /// 10 ms, doubling, capped at 2 s, for ever.
    fn default() -> Backoff {
        Backoff::exponential(DEFAULT_INITIAL_DELAY, DEFAULT_MAX_DELAY, None)
    }
}

impl Backoff {
    /// `initial`, doubling after each failed attempt, capped at `max`; gives up after
    /// `max_attempts` attempts if given.
    pub fn exponential(initial: Duration, max: Duration, max_attempts: Option<u32>) -> Backoff {
        Backoff::with_delays(move |attempt| {
            if max_attempts.is_some_and(|most| attempt > most) {
                return None;
            }
            let factor = 1u32
                .checked_shl(attempt.saturating_sub(1))
                .unwrap_or(u32::MAX);
            Some(initial.saturating_mul(factor).min(max))
        })
    }

    /// Any policy: `delay(n)` is the wait before attempt `n` (from 1), `None` to give up.
    pub fn with_delays(delay: impl Fn(u32) -> Option<Duration> + Send + Sync + 'static) -> Backoff {
        Backoff {
            policy: Arc::new(delay),
        }
    }

    /// The wait before attempt `attempt`, or `None` to give up.
    pub fn delay(&self, attempt: u32) -> Option<Duration> {
        (self.policy)(attempt)
    }
}

/// Whether a failed connect means no broker answers (worth retrying), rather than a refusal.
fn connect_lost(error: &ConnectError) -> bool {
    matches!(
        error,
        ConnectError::Unreachable { .. } | ConnectError::BrokerGone(_) | ConnectError::Timeout(_)
    )
}

fn subscribe_lost(error: &SubscribeError) -> bool {
    match error {
        SubscribeError::BrokerGone(_) | SubscribeError::Timeout(_) => true,
        SubscribeError::Connect(error) => connect_lost(error),
        _ => false,
    }
}

fn publish_lost(error: &PublishError) -> bool {
    match error {
        PublishError::BrokerGone(_) | PublishError::Timeout(_) => true,
        PublishError::Connect(error) => connect_lost(error),
        _ => false,
    }
}

impl Client {
    /// Connects, retrying as `backoff` says while no broker answers (a refusal, such as
    /// `TooManyConnections`, is returned at once). Returns the client and the attempts made.
    pub async fn connect_retrying(
        path: impl AsRef<Path>,
        options: ClientOptions,
        backoff: &Backoff,
    ) -> Result<(Client, u32), ConnectError> {
        let path = path.as_ref();
        let mut attempt = 0u32;
        loop {
            attempt = attempt.saturating_add(1);
            match Client::connect_with(path, options.clone()).await {
                Ok(client) => return Ok((client, attempt)),
                Err(error) if connect_lost(&error) => match backoff.delay(attempt) {
                    Some(wait) => tokio::time::sleep(wait).await,
                    None => return Err(error),
                },
                Err(error) => return Err(error),
            }
        }
    }
}

/// What happened to the connection of a reconnecting handle.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectionEvent {
    /// The connection was lost and is back, subscribed again; messages published meanwhile
    /// are not replayed.
    Reconnected {
        /// Connection attempts it took.
        attempts: u32,
    },
}

/// Events a [`ReconnectingSubscription`] keeps for a receiver that lags behind.
const EVENT_CAPACITY: usize = 16;

/// Where a reconnecting subscription stands.
enum State {
    Live {
        /// Kept alive with the subscription: it owns the connection.
        _client: Client,
        subscription: Subscription,
    },
    Reconnecting(Pin<Box<dyn Future<Output = Result<Live, SubscribeError>> + Send>>),
    Ended(SubscriptionEnd),
}

/// A live connection and subscription, and the connection attempts it took.
type Live = (Client, Subscription, u32);

/// Connects (retrying) and subscribes, retrying connection losses between the two.
async fn connect_and_subscribe(
    path: PathBuf,
    topic: String,
    options: ClientOptions,
    subscribe: SubscribeOptions,
    backoff: Backoff,
) -> Result<Live, SubscribeError> {
    let mut attempts = 0u32;
    loop {
        let (client, tries) = Client::connect_retrying(&path, options.clone(), &backoff).await?;
        attempts = attempts.saturating_add(tries);
        match client.subscribe_with(&topic, subscribe).await {
            Ok(subscription) => return Ok((client, subscription, attempts)),
            // Lost again between connecting and subscribing: go round.
            Err(error) if subscribe_lost(&error) => match backoff.delay(attempts) {
                Some(wait) => tokio::time::sleep(wait).await,
                None => return Err(error),
            },
            Err(error) => return Err(error),
        }
    }
}

/// How a subscription whose re-subscription failed with `error` ends.
fn end_of(error: SubscribeError) -> SubscriptionEnd {
    match error {
        SubscribeError::Refused { code, message } => {
            crate::error::ClientError::Refused { code, message }.into_end()
        }
        SubscribeError::Connect(error) => SubscriptionEnd::failed(error),
        other => SubscriptionEnd::failed(other),
    }
}

/// A subscription that reconnects and re-subscribes; see the module docs.
pub struct ReconnectingSubscription {
    path: PathBuf,
    topic: String,
    options: ClientOptions,
    /// Asked again at every re-subscription.
    subscribe: SubscribeOptions,
    backoff: Backoff,
    state: State,
    /// Announces reconnections to the receivers of [`Self::events`].
    events: broadcast::Sender<ConnectionEvent>,
    /// The stream has yielded the end and now yields `None`.
    stream: StreamState,
}

impl std::fmt::Debug for ReconnectingSubscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReconnectingSubscription")
            .field("path", &self.path)
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl ReconnectingSubscription {
    /// Connects (retrying) and subscribes to `topic`.
    pub async fn new(
        path: impl AsRef<Path>,
        topic: &str,
        backoff: Backoff,
    ) -> Result<ReconnectingSubscription, SubscribeError> {
        ReconnectingSubscription::with_options(path, topic, ClientOptions::default(), backoff).await
    }

    /// As [`ReconnectingSubscription::new`], with client options.
    pub async fn with_options(
        path: impl AsRef<Path>,
        topic: &str,
        options: ClientOptions,
        backoff: Backoff,
    ) -> Result<ReconnectingSubscription, SubscribeError> {
        ReconnectingSubscription::subscribe_with(
            path,
            topic,
            options,
            SubscribeOptions::default(),
            backoff,
        )
        .await
    }

    /// As [`ReconnectingSubscription::with_options`], subscribing (and re-subscribing after
    /// each reconnection) with `subscribe`: see [`Client::subscribe_with`].
    pub async fn subscribe_with(
        path: impl AsRef<Path>,
        topic: &str,
        options: ClientOptions,
        subscribe: SubscribeOptions,
        backoff: Backoff,
    ) -> Result<ReconnectingSubscription, SubscribeError> {
        let path = path.as_ref().to_owned();
        let (client, subscription, _) = connect_and_subscribe(
            path.clone(),
            topic.to_owned(),
            options.clone(),
            subscribe,
            backoff.clone(),
        )
        .await?;
        Ok(ReconnectingSubscription {
            path,
            topic: topic.to_owned(),
            options,
            subscribe,
            backoff,
            state: State::Live {
                _client: client,
                subscription,
            },
            events: broadcast::channel(EVENT_CAPACITY).0,
            stream: StreamState::default(),
        })
    }

    /// A receiver of this subscription's connection events, from now on.
    pub fn events(&self) -> broadcast::Receiver<ConnectionEvent> {
        self.events.subscribe()
    }

    /// The next message, a lag notice, or the end; reconnects on the way when the
    /// connection is lost.
    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Result<Message, RecvError>> {
        loop {
            match &mut self.state {
                State::Live { subscription, .. } => match subscription.poll_recv(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Err(RecvError::Ended(SubscriptionEnd::BrokerGone { .. }))) => {
                        tracing::debug!(topic = %self.topic, "subscription lost its connection; reconnecting");
                        self.state = State::Reconnecting(Box::pin(connect_and_subscribe(
                            self.path.clone(),
                            self.topic.clone(),
                            self.options.clone(),
                            self.subscribe,
                            self.backoff.clone(),
                        )));
                    }
                    Poll::Ready(Err(RecvError::Ended(end))) => {
                        self.state = State::Ended(end.clone());
                        return Poll::Ready(Err(RecvError::Ended(end)));
                    }
                    Poll::Ready(other) => return Poll::Ready(other),
                },
                State::Reconnecting(reconnecting) => match reconnecting.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok((client, subscription, attempts))) => {
                        self.state = State::Live {
                            _client: client,
                            subscription,
                        };
                        // No receiver is no error: nobody asked to hear of it.
                        let _ = self.events.send(ConnectionEvent::Reconnected { attempts });
                    }
                    Poll::Ready(Err(error)) => {
                        let end = end_of(error);
                        self.state = State::Ended(end.clone());
                        return Poll::Ready(Err(RecvError::Ended(end)));
                    }
                },
                State::Ended(end) => return Poll::Ready(Err(RecvError::Ended(end.clone()))),
            }
        }
    }

    /// Waits for the next message, reconnecting on the way. Cancel-safe: a reconnection
    /// under way goes on at the next call.
    pub async fn recv(&mut self) -> Result<Message, RecvError> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// The next message if one is ready now; a lost connection is taken up by the next
    /// `recv`.
    pub fn try_recv(&mut self) -> Result<Message, TryRecvError> {
        match &mut self.state {
            State::Live { subscription, .. } => match subscription.try_recv() {
                Err(TryRecvError::Ended(SubscriptionEnd::BrokerGone { .. })) => {
                    Err(TryRecvError::Empty)
                }
                other => other,
            },
            State::Reconnecting(_) => Err(TryRecvError::Empty),
            State::Ended(end) => Err(TryRecvError::Ended(end.clone())),
        }
    }

    /// The topic's name.
    pub fn topic(&self) -> &str {
        &self.topic
    }
}

impl Stream for ReconnectingSubscription {
    type Item = Result<Message, RecvError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.stream.is_over() {
            return Poll::Ready(None);
        }
        let next = std::task::ready!(self.poll_recv(cx));
        self.stream.yielded(next)
    }
}

impl Receive for ReconnectingSubscription {
    async fn recv(&mut self) -> Result<Message, RecvError> {
        ReconnectingSubscription::recv(self).await
    }

    fn try_recv(&mut self) -> Result<Message, TryRecvError> {
        ReconnectingSubscription::try_recv(self)
    }

    fn topic(&self) -> &str {
        &self.topic
    }
}

/// A publisher that reconnects and re-advertises its topic; see the module docs.
#[derive(Debug)]
pub struct ReconnectingPublisher {
    path: PathBuf,
    topic: String,
    options: ClientOptions,
    backoff: Backoff,
    live: Option<(Client, Publisher)>,
}

impl ReconnectingPublisher {
    /// Connects (retrying) and advertises `topic`.
    pub async fn new(
        path: impl AsRef<Path>,
        topic: &str,
        backoff: Backoff,
    ) -> Result<ReconnectingPublisher, PublishError> {
        let mut publisher = ReconnectingPublisher {
            path: path.as_ref().to_owned(),
            topic: topic.to_owned(),
            options: ClientOptions::default(),
            backoff,
            live: None,
        };
        publisher.reconnect().await?;
        Ok(publisher)
    }

    async fn reconnect(&mut self) -> Result<(), PublishError> {
        let mut attempts = 0u32;
        loop {
            let (client, tries) =
                Client::connect_retrying(&self.path, self.options.clone(), &self.backoff).await?;
            attempts = attempts.saturating_add(tries);
            match client.publisher(&self.topic).await {
                Ok(publisher) => {
                    self.live = Some((client, publisher));
                    return Ok(());
                }
                Err(error) if publish_lost(&error) => match self.backoff.delay(attempts) {
                    Some(wait) => tokio::time::sleep(wait).await,
                    None => return Err(error),
                },
                Err(error) => return Err(error),
            }
        }
    }

    /// Publishes `payload` and waits until the broker has processed it (a flush), reconnecting
    /// and sending it again after a connection loss. See the module docs on duplicates.
    pub async fn publish_confirmed(&mut self, payload: &[u8]) -> Result<(), PublishError> {
        self.send_confirmed(None, payload).await
    }

    /// Publishes `payload` with `headers`, confirmed as by
    /// [`publish_confirmed`](Self::publish_confirmed). Headers past the topic's limits fail
    /// with [`PublishError::HeadersTooLarge`]: before sending when the publisher sees it, or
    /// when the broker refuses the message.
    pub async fn publish_with(
        &mut self,
        headers: &Headers,
        payload: &[u8],
    ) -> Result<(), PublishError> {
        self.send_confirmed(Some(headers), payload).await
    }

    async fn send_confirmed(
        &mut self,
        headers: Option<&Headers>,
        payload: &[u8],
    ) -> Result<(), PublishError> {
        loop {
            if self.live.is_none() {
                self.reconnect().await?;
            }
            let Some((client, publisher)) = self.live.as_ref() else {
                continue;
            };
            let published = match headers {
                None => publisher.publish(payload).await,
                Some(headers) => publisher.publish_with(headers, payload).await,
            };
            let sent = match published {
                Ok(()) => client
                    .flush()
                    .await
                    .map_err(|error| flush_failed(error).named(&self.topic)),
                Err(error) => Err(error),
            };
            match sent {
                Ok(()) => return Ok(()),
                Err(error) if publish_lost(&error) => {
                    tracing::debug!(topic = %self.topic, %error, "publisher lost its connection; reconnecting");
                    self.live = None;
                }
                Err(error) => return Err(error),
            }
        }
    }
}

/// A failed flush, as the publish it confirms: the broker refused it, or the connection
/// went.
fn flush_failed(error: crate::error::RequestError) -> PublishError {
    use crate::error::RequestError;
    match error {
        RequestError::Refused { code, message } => PublishError::Refused { code, message },
        RequestError::BrokerGone(cause) => PublishError::BrokerGone(cause),
        RequestError::Timeout(what) => PublishError::Timeout(what),
        RequestError::Protocol(cause) => PublishError::Protocol(cause),
        RequestError::Connect(error) => PublishError::Connect(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_backoff_doubles_up_to_its_cap_and_never_gives_up() {
        let backoff = Backoff::default();
        let delays: Vec<Duration> = (1..=10).filter_map(|n| backoff.delay(n)).collect();
        assert_eq!(delays[0], Duration::from_millis(10));
        assert_eq!(delays[1], Duration::from_millis(20));
        assert_eq!(delays[7], Duration::from_millis(1280));
        assert_eq!(delays[8], DEFAULT_MAX_DELAY);
        assert_eq!(
            backoff.delay(u32::MAX),
            Some(DEFAULT_MAX_DELAY),
            "saturates"
        );
    }

    #[test]
    fn a_capped_backoff_gives_up_after_its_attempts_and_a_custom_one_is_taken_as_is() {
        let capped =
            Backoff::exponential(Duration::from_millis(1), Duration::from_secs(1), Some(3));
        assert!(capped.delay(3).is_some());
        assert!(capped.delay(4).is_none());
        let fixed = Backoff::with_delays(|n| (n < 3).then_some(Duration::from_millis(7)));
        assert_eq!(fixed.delay(1), Some(Duration::from_millis(7)));
        assert_eq!(fixed.delay(3), None);
    }
}
