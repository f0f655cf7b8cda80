//! Reconnecting with backoff: a subscription and a publisher that survive a broker restart.
//!
//! - [`Backoff`] is the retry policy: capped exponential delays with saturating arithmetic,
//!   and an optional cap on attempts; [`Backoff::with_delays`] replaces it with any function
//!   of the attempt number.
//! - [`Client::connect_retrying`] connects, retrying while no broker answers.
//! - [`ReconnectingSubscription`] re-subscribes after the connection is lost: `recv` yields
//!   [`SubscriptionEvent::Reconnected`] once per outage, then the topic's messages again.
//!   Delivery stays at most once: what was published while no broker (or no subscription)
//!   existed is not replayed.
//! - [`ReconnectingPublisher`] re-advertises its topic after the connection is lost and
//!   sends the message again; a message whose fate is unknown (written, but the broker went
//!   away before confirming it) may then arrive twice.
//! - Errors that are not about the connection (an unknown topic, a refused permission, a
//!   removed topic) are returned as they are: retrying would not help.
//!
//! ```no_run
//! # async fn example() -> Result<(), mycelium_client::ClientError> {
//! use mycelium_client::reconnect::{Backoff, ReconnectingSubscription, SubscriptionEvent};
//! let mut sub = ReconnectingSubscription::new("/tmp/mycelium.sock", "market_data", Backoff::default()).await?;
//! while let Some(event) = sub.recv().await {
//!     match event? {
//!         SubscriptionEvent::Message(message) => println!("{} bytes", message.payload().len()),
//!         SubscriptionEvent::Reconnected { attempts } => eprintln!("back after {attempts} attempts"),
//!     }
//! }
//! # Ok(()) }
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::error::ClientError;
use crate::handle::{Client, ClientOptions, Publisher};
use crate::subscription::{Message, Subscription};

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

/// Whether `error` means the connection is gone (worth reconnecting), rather than a refusal.
fn is_connection_loss(error: &ClientError) -> bool {
    matches!(
        error,
        ClientError::BrokerGone { .. } | ClientError::Connect { .. } | ClientError::Timeout(_)
    )
}

impl Client {
    /// Connects, retrying as `backoff` says while no broker answers (a refusal, such as
    /// `TooManyConnections`, is returned at once). Returns the client and the attempts made.
    pub async fn connect_retrying(
        path: impl AsRef<Path>,
        options: ClientOptions,
        backoff: &Backoff,
    ) -> Result<(Client, u32), ClientError> {
        let path = path.as_ref();
        let mut attempt = 0u32;
        loop {
            attempt = attempt.saturating_add(1);
            match Client::connect_with(path, options.clone()).await {
                Ok(client) => return Ok((client, attempt)),
                Err(error) if is_connection_loss(&error) => match backoff.delay(attempt) {
                    Some(wait) => tokio::time::sleep(wait).await,
                    None => return Err(error),
                },
                Err(error) => return Err(error),
            }
        }
    }
}

/// What a [`ReconnectingSubscription`] yields.
#[derive(Debug)]
pub enum SubscriptionEvent {
    /// A message of the topic.
    Message(Message),
    /// The connection was lost and is back, subscribed again; messages published meanwhile
    /// are not replayed.
    Reconnected {
        /// Connection attempts it took.
        attempts: u32,
    },
}

/// A subscription that reconnects and re-subscribes; see the module docs.
#[derive(Debug)]
pub struct ReconnectingSubscription {
    path: PathBuf,
    topic: String,
    options: ClientOptions,
    backoff: Backoff,
    /// The live connection and subscription, `None` between a loss and the next success.
    live: Option<(Client, Subscription)>,
}

impl ReconnectingSubscription {
    /// Connects (retrying) and subscribes to `topic`.
    pub async fn new(
        path: impl AsRef<Path>,
        topic: &str,
        backoff: Backoff,
    ) -> Result<ReconnectingSubscription, ClientError> {
        ReconnectingSubscription::with_options(path, topic, ClientOptions::default(), backoff).await
    }

    /// As [`ReconnectingSubscription::new`], with client options.
    pub async fn with_options(
        path: impl AsRef<Path>,
        topic: &str,
        options: ClientOptions,
        backoff: Backoff,
    ) -> Result<ReconnectingSubscription, ClientError> {
        let mut sub = ReconnectingSubscription {
            path: path.as_ref().to_owned(),
            topic: topic.to_owned(),
            options,
            backoff,
            live: None,
        };
        sub.reconnect().await?;
        Ok(sub)
    }

    /// Connects and subscribes, retrying connection losses; returns the attempts made.
    async fn reconnect(&mut self) -> Result<u32, ClientError> {
        let mut attempts = 0u32;
        loop {
            let (client, tries) =
                Client::connect_retrying(&self.path, self.options.clone(), &self.backoff).await?;
            attempts = attempts.saturating_add(tries);
            match client.subscribe(&self.topic).await {
                Ok(subscription) => {
                    self.live = Some((client, subscription));
                    return Ok(attempts);
                }
                // Lost again between connecting and subscribing: go round.
                Err(error) if is_connection_loss(&error) => match self.backoff.delay(attempts) {
                    Some(wait) => tokio::time::sleep(wait).await,
                    None => return Err(error),
                },
                Err(error) => return Err(error),
            }
        }
    }

    /// The next event; `None` once the subscription ended for good (unsubscribed). An error
    /// is returned when the broker refuses the subscription (the topic was removed, say) or
    /// the backoff gave up.
    pub async fn recv(&mut self) -> Option<Result<SubscriptionEvent, ClientError>> {
        let lost = match self.live.as_mut() {
            Some((_, subscription)) => match subscription.recv().await {
                Some(Ok(message)) => return Some(Ok(SubscriptionEvent::Message(message))),
                Some(Err(error)) if is_connection_loss(&error) => error,
                Some(Err(error)) => return Some(Err(error)),
                None => return None,
            },
            None => ClientError::gone("not connected"),
        };
        tracing::debug!(topic = %self.topic, error = %lost, "subscription lost its connection; reconnecting");
        self.live = None;
        Some(
            self.reconnect()
                .await
                .map(|attempts| SubscriptionEvent::Reconnected { attempts }),
        )
    }

    /// The topic's messages the broker dropped for the current connection's subscription
    /// (its `Lagged` notices; see [`Subscription::missed`]).
    pub fn missed(&self) -> u64 {
        self.live.as_ref().map_or(0, |(_, s)| s.missed())
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
    ) -> Result<ReconnectingPublisher, ClientError> {
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

    async fn reconnect(&mut self) -> Result<(), ClientError> {
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
                Err(error) if is_connection_loss(&error) => match self.backoff.delay(attempts) {
                    Some(wait) => tokio::time::sleep(wait).await,
                    None => return Err(error),
                },
                Err(error) => return Err(error),
            }
        }
    }

    /// Publishes `payload` and waits until the broker has processed it (a flush), reconnecting
    /// and sending it again after a connection loss. See the module docs on duplicates.
    pub async fn publish_confirmed(&mut self, payload: &[u8]) -> Result<(), ClientError> {
        loop {
            if self.live.is_none() {
                self.reconnect().await?;
            }
            let Some((client, publisher)) = self.live.as_ref() else {
                continue;
            };
            let sent = match publisher.publish(payload).await {
                Ok(()) => client.flush().await,
                Err(error) => Err(error),
            };
            match sent {
                Ok(()) => return Ok(()),
                Err(error) if is_connection_loss(&error) => {
                    tracing::debug!(topic = %self.topic, %error, "publisher lost its connection; reconnecting");
                    self.live = None;
                }
                Err(error) => return Err(error),
            }
        }
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
