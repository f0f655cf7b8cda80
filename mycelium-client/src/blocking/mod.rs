//! The blocking client: [`Client`], [`Subscription`] and [`Publisher`] for threads that do not
//! run tokio, over the socket or shared memory as the options choose.
//!
//! - Over shared memory the calls are the transport's own: a subscription spins briefly and
//!   then sleeps on a futex in the ring, a publisher writes into its ring in place (and lends
//!   its bytes: [`Publisher::loan`]). No runtime, no extra thread.
//! - Over the socket the blocking client drives the async [`crate::Client`] on a runtime of
//!   its own (one worker thread, started when the socket is first needed), as `reqwest`'s
//!   blocking client does. Its calls must not be made from inside an async runtime (they
//!   would block it); dropping one there is fine.
//! - Subscriptions keep the receive contract ([`mycelium_transport::receive`]): `recv`,
//!   `try_recv`, `recv_timeout`; plus the copy-free `try_recv_into`, `recv_timeout_into` and
//!   `try_recv_batch`, which reuse the caller's buffer.
//!
//! ```no_run
//! use std::time::Duration;
//! use mycelium_client::blocking::Client;
//! use mycelium_client::{ClientOptions, Transport};
//!
//! let options = ClientOptions::with_transport(Transport::SharedMemory);
//! let client = Client::connect_with("/tmp/mycelium.sock", options)?;
//! let mut subscription = client.subscribe("market_data")?;
//! let mut publisher = client.publisher("market_data")?;
//! publisher.publish(b"tick")?;
//! let message = subscription.recv_timeout(Duration::from_secs(1))?;
//! assert_eq!(&message[..], b"tick");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use mycelium_transport::envelope::Headers;
use mycelium_transport::{Message, RecvError, RecvTimeoutError, TryRecvError};

use crate::client::{shm_refused, ClientOptions, Transport};
use crate::error::{ClientError, ConnectError, PublishError, RequestError, SubscribeError};
use crate::shm::{ShmClient, ShmPublisher, ShmSubscription};
use crate::socket::{BrokerInfo, BrokerStats, ReloadReport};
use crate::subscribe_options::SubscribeOptions;

pub use crate::shm::{Loan, LOOK_EVERY};

mod request;
use request::BlockingRequests;

/// The runtime that drives a blocking client's socket connection. Dropped, it shuts down
/// without waiting for its tasks, so that dropping a blocking handle is safe anywhere, an
/// async context included (where waiting would panic).
#[derive(Debug)]
struct Runtime(Option<tokio::runtime::Runtime>);

impl Runtime {
    fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        match &self.0 {
            Some(runtime) => runtime.block_on(future),
            // Taken only in `drop`.
            None => unreachable!("the runtime is taken only when it is dropped"),
        }
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// The socket side of a blocking client: the async client and the runtime that drives it.
#[derive(Debug)]
struct SocketSide {
    /// Declared before the runtime, so it is dropped while the runtime still runs.
    client: crate::Client,
    /// Runs the connection's reader and writer tasks; shared with the subscriptions and
    /// publishers made over the socket, and shut down when the last of them is dropped.
    runtime: Arc<Runtime>,
}

/// A blocking client of a broker process; clones share its connections. See the module
/// docs.
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The broker's socket, for the transport connected later.
    path: PathBuf,
    options: ClientOptions,
    /// From the handshake of the first connection.
    info: BrokerInfo,
    /// The shared-memory session, made at connect or by the first call that needs it; it
    /// ends when the last handle sharing it is dropped.
    shm: OnceLock<ShmClient>,
    /// The socket side, made at connect or by the first call that needs it; its runtime
    /// stops when the last subscription or publisher made over it is dropped too.
    socket: OnceLock<SocketSide>,
    /// Set when the broker refused a shared-memory session: [`Transport::Auto`] then goes
    /// straight to the socket.
    shm_unavailable: AtomicBool,
    /// Request/reply: the inbox, and a publisher per topic requested or answered.
    requests: Mutex<BlockingRequests>,
}

impl Client {
    /// Connects to the broker's socket at `path` with the default options (the socket
    /// transport).
    pub fn connect(path: impl AsRef<Path>) -> Result<Client, ConnectError> {
        Client::connect_with(path, ClientOptions::default())
    }

    /// Connects with `options`: the default transport is connected now.
    pub fn connect_with(
        path: impl AsRef<Path>,
        options: ClientOptions,
    ) -> Result<Client, ConnectError> {
        let path = path.as_ref().to_owned();
        let (shm, socket) = (OnceLock::new(), OnceLock::new());
        let info = match options.transport {
            Transport::Socket => {
                let side = connect_socket(&path, &options)?;
                let info = side.client.broker_info().clone();
                let _ = socket.set(side);
                info
            }
            Transport::SharedMemory => {
                let client = ShmClient::connect_with(&path, options.shm_options())?;
                let info = client.broker_info().clone();
                let _ = shm.set(client);
                info
            }
            Transport::Auto => match ShmClient::connect_with(&path, options.shm_options()) {
                Ok(client) => {
                    let info = client.broker_info().clone();
                    let _ = shm.set(client);
                    info
                }
                Err(error) if shm_refused(&error) => {
                    let side = connect_socket(&path, &options)?;
                    let info = side.client.broker_info().clone();
                    let _ = socket.set(side);
                    info
                }
                Err(error) => return Err(error.into()),
            },
        };
        Ok(Client {
            inner: Arc::new(Inner {
                path,
                options,
                info,
                shm,
                socket,
                shm_unavailable: AtomicBool::new(false),
                requests: Mutex::default(),
            }),
        })
    }

    /// What the broker announced at the handshake of the first connection.
    pub fn broker_info(&self) -> &BrokerInfo {
        &self.inner.info
    }

    /// The default transport, from the options.
    pub fn transport(&self) -> Transport {
        self.inner.options.transport
    }

    /// The shared-memory session's control socket, if one is open: an event loop may poll
    /// it to hear at once of the broker's end (then a publisher's
    /// [`check`](Publisher::check) says what it was).
    pub fn session_fd(&self) -> Option<BorrowedFd<'_>> {
        self.inner.shm.get().map(AsFd::as_fd)
    }

    fn shm(&self) -> Result<&ShmClient, ClientError> {
        if let Some(client) = self.inner.shm.get() {
            return Ok(client);
        }
        let client = ShmClient::connect_with(&self.inner.path, self.inner.options.shm_options())?;
        Ok(self.inner.shm.get_or_init(|| client))
    }

    fn socket(&self) -> Result<&SocketSide, ConnectError> {
        if let Some(side) = self.inner.socket.get() {
            return Ok(side);
        }
        let side = connect_socket(&self.inner.path, &self.inner.options)?;
        Ok(self.inner.socket.get_or_init(|| side))
    }

    /// A shared-memory client, or `None` if the broker offers no shared memory.
    fn shm_or_refused(&self) -> Result<Option<&ShmClient>, ClientError> {
        if self.inner.shm_unavailable.load(Ordering::Relaxed) {
            return Ok(None);
        }
        match self.shm() {
            Ok(client) => Ok(Some(client)),
            Err(error) if shm_refused(&error) => {
                self.inner.shm_unavailable.store(true, Ordering::Relaxed);
                Ok(None)
            }
            Err(error) => Err(error),
        }
    }

    /// Subscribes to `topic` over the default transport.
    pub fn subscribe(&self, topic: &str) -> Result<Subscription, SubscribeError> {
        self.subscribe_over(topic, self.transport())
    }

    /// Subscribes to `topic` over `transport`.
    pub fn subscribe_over(
        &self,
        topic: &str,
        transport: Transport,
    ) -> Result<Subscription, SubscribeError> {
        self.subscribe_over_with(topic, transport, SubscribeOptions::default())
    }

    /// Subscribes to `topic` over the default transport with `options`; see
    /// [`crate::Client::subscribe_with`].
    pub fn subscribe_with(
        &self,
        topic: &str,
        options: SubscribeOptions,
    ) -> Result<Subscription, SubscribeError> {
        self.subscribe_over_with(topic, self.transport(), options)
    }

    /// Subscribes to `topic` over `transport` with `options`.
    pub fn subscribe_over_with(
        &self,
        topic: &str,
        transport: Transport,
        options: SubscribeOptions,
    ) -> Result<Subscription, SubscribeError> {
        if transport != Transport::Socket {
            let shm = match transport {
                Transport::Auto => self.shm_or_refused()?,
                _ => Some(self.shm()?),
            };
            if let Some(shm) = shm {
                match shm_subscribe(shm, topic, &options) {
                    Ok(subscription) => {
                        return Ok(Subscription {
                            inner: Inside::Shm(subscription),
                        })
                    }
                    Err(error) if transport == Transport::Auto && shm_refused(&error) => {}
                    Err(error) => return Err(error.into()),
                }
            }
        }
        let side = self.socket()?;
        let subscription = side.runtime.block_on(side.client.subscribe_over_with(
            topic,
            Transport::Socket,
            options,
        ))?;
        Ok(Subscription {
            inner: Inside::Socket {
                subscription,
                runtime: Arc::clone(&side.runtime),
            },
        })
    }

    /// A publisher for `topic` over the default transport.
    pub fn publisher(&self, topic: &str) -> Result<Publisher, PublishError> {
        self.publisher_over(topic, self.transport())
    }

    /// A publisher for `topic` over `transport`.
    pub fn publisher_over(
        &self,
        topic: &str,
        transport: Transport,
    ) -> Result<Publisher, PublishError> {
        if transport != Transport::Socket {
            let shm = match transport {
                Transport::Auto => self.shm_or_refused()?,
                _ => Some(self.shm()?),
            };
            if let Some(shm) = shm {
                match shm.publisher(topic) {
                    Ok(publisher) => {
                        return Ok(Publisher {
                            inner: PublisherInside::Shm(publisher),
                        })
                    }
                    Err(error) if transport == Transport::Auto && shm_refused(&error) => {}
                    Err(error) => return Err(error.into()),
                }
            }
        }
        let side = self.socket()?;
        let publisher = side
            .runtime
            .block_on(side.client.publisher_over(topic, Transport::Socket))?;
        Ok(Publisher {
            inner: PublisherInside::Socket {
                publisher,
                runtime: Arc::clone(&side.runtime),
            },
        })
    }

    /// The broker's counters (over the socket).
    pub fn stats(&self) -> Result<BrokerStats, RequestError> {
        let side = self.socket()?;
        side.runtime.block_on(side.client.stats())
    }

    /// Publishes one message on durable `topic` and waits until the broker stored it: its
    /// offset (over the socket); see [`crate::Client::publish_durable`]. Durable
    /// subscriptions are the async client's ([`crate::Client::subscribe_durable`]).
    pub fn publish_durable(&self, topic: &str, payload: &[u8]) -> Result<u64, PublishError> {
        let side = self.socket()?;
        side.runtime
            .block_on(side.client.publish_durable(topic, payload))
    }

    /// As [`publish_durable`](Self::publish_durable), with `headers`.
    pub fn publish_durable_with(
        &self,
        topic: &str,
        headers: &Headers,
        payload: &[u8],
    ) -> Result<u64, PublishError> {
        let side = self.socket()?;
        side.runtime
            .block_on(side.client.publish_durable_with(topic, headers, payload))
    }

    /// The consumer groups of durable `topic` (over the socket); see
    /// [`crate::Client::groups`].
    pub fn groups(&self, topic: &str) -> Result<Vec<mycelium_transport::GroupStats>, RequestError> {
        let side = self.socket()?;
        side.runtime.block_on(side.client.groups(topic))
    }

    /// Asks the broker to re-read its config file now (over the socket); see
    /// [`crate::Client::reload`].
    pub fn reload(&self) -> Result<ReloadReport, RequestError> {
        let side = self.socket()?;
        side.runtime.block_on(side.client.reload())
    }

    /// Waits until the broker has processed everything sent over the socket; see
    /// [`crate::Client::flush`].
    pub fn flush(&self) -> Result<(), RequestError> {
        match self.inner.socket.get() {
            Some(side) => side.runtime.block_on(side.client.flush()),
            None => Ok(()),
        }
    }
}

/// Subscribes over shared memory with `options` (a shared-memory consumer has no prefetch:
/// it reads the rings directly).
fn shm_subscribe(
    client: &ShmClient,
    topic: &str,
    options: &SubscribeOptions,
) -> Result<ShmSubscription, ClientError> {
    client.subscribe_with(topic, options.no_echo)
}

fn connect_socket(path: &Path, options: &ClientOptions) -> Result<SocketSide, ConnectError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("mycelium-client")
        .enable_all()
        .build()
        .map_err(|source| ConnectError::Unreachable {
            path: path.to_owned(),
            source,
        })?;
    let options = ClientOptions {
        transport: Transport::Socket,
        ..options.clone()
    };
    let client = runtime.block_on(crate::Client::connect_with(path, options))?;
    Ok(SocketSide {
        client,
        runtime: Arc::new(Runtime(Some(runtime))),
    })
}

/// A blocking subscription, over whichever transport; see the module docs. Dropping it
/// unsubscribes.
#[derive(Debug)]
pub struct Subscription {
    inner: Inside,
}

// The shared-memory subscription is the hot path: kept inline, not behind a box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum Inside {
    Shm(ShmSubscription),
    Socket {
        /// Declared before the runtime, so it is dropped while the runtime still runs.
        subscription: crate::Subscription,
        runtime: Arc<Runtime>,
    },
}

impl Subscription {
    /// Waits for the next message.
    pub fn recv(&mut self) -> Result<Message, RecvError> {
        match &mut self.inner {
            Inside::Shm(subscription) => subscription.recv(),
            Inside::Socket {
                subscription,
                runtime,
            } => runtime.block_on(subscription.recv()),
        }
    }

    /// The next message if one is there now.
    pub fn try_recv(&mut self) -> Result<Message, TryRecvError> {
        match &mut self.inner {
            Inside::Shm(subscription) => subscription.try_recv(),
            Inside::Socket { subscription, .. } => subscription.try_recv(),
        }
    }

    /// Waits up to `timeout` for the next message.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Message, RecvTimeoutError> {
        match &mut self.inner {
            Inside::Shm(subscription) => subscription.recv_timeout(timeout),
            Inside::Socket {
                subscription,
                runtime,
                // The timer is made inside the runtime: it needs the runtime's clock.
            } => match runtime
                .block_on(async { tokio::time::timeout(timeout, subscription.recv()).await })
            {
                Err(_) => Err(RecvTimeoutError::Timeout),
                Ok(next) => next.map_err(RecvTimeoutError::from),
            },
        }
    }

    /// Takes one message into `out` (replacing its contents) if one is there now;
    /// `Ok(false)` when none is. Over shared memory nothing is allocated.
    pub fn try_recv_into(&mut self, out: &mut Vec<u8>) -> Result<bool, RecvError> {
        match &mut self.inner {
            Inside::Shm(subscription) => subscription.try_recv_into(out),
            Inside::Socket { subscription, .. } => match subscription.try_recv() {
                Ok(message) => {
                    out.clear();
                    out.extend_from_slice(&message);
                    Ok(true)
                }
                Err(TryRecvError::Empty) => Ok(false),
                Err(TryRecvError::Lagged(n)) => Err(RecvError::Lagged(n)),
                Err(TryRecvError::Ended(end)) => Err(RecvError::Ended(end)),
                Err(other) => Err(RecvError::Ended(
                    mycelium_transport::SubscriptionEnd::failed(other),
                )),
            },
        }
    }

    /// Waits for a message (up to `timeout`; `None`: for ever) and puts it in `out`;
    /// `Ok(false)` on timeout. Over shared memory nothing is allocated.
    pub fn recv_timeout_into(
        &mut self,
        out: &mut Vec<u8>,
        timeout: Option<Duration>,
    ) -> Result<bool, RecvError> {
        let message = match &mut self.inner {
            Inside::Shm(subscription) => return subscription.recv_timeout_into(out, timeout),
            Inside::Socket {
                subscription,
                runtime,
            } => match timeout {
                None => runtime.block_on(subscription.recv())?,
                Some(timeout) => {
                    match runtime.block_on(async {
                        tokio::time::timeout(timeout, subscription.recv()).await
                    }) {
                        Err(_) => return Ok(false),
                        Ok(next) => next?,
                    }
                }
            },
        };
        out.clear();
        out.extend_from_slice(&message);
        Ok(true)
    }

    /// Takes up to `max` messages that are there now, handing each to `each`; returns how
    /// many (zero when none is). Over shared memory they come from one ring, without a copy.
    pub fn try_recv_batch(
        &mut self,
        max: usize,
        mut each: impl FnMut(&[u8]),
    ) -> Result<usize, RecvError> {
        match &mut self.inner {
            Inside::Shm(subscription) => subscription.try_recv_batch(max, each),
            Inside::Socket { subscription, .. } => {
                let mut taken = 0;
                while taken < max {
                    match subscription.try_recv() {
                        Ok(message) => {
                            each(&message);
                            taken += 1;
                        }
                        Err(TryRecvError::Empty) => break,
                        // Reported by the next call, after the messages taken.
                        Err(_) if taken > 0 => break,
                        Err(TryRecvError::Lagged(n)) => return Err(RecvError::Lagged(n)),
                        Err(TryRecvError::Ended(end)) => return Err(RecvError::Ended(end)),
                        Err(other) => {
                            return Err(RecvError::Ended(
                                mycelium_transport::SubscriptionEnd::failed(other),
                            ))
                        }
                    }
                }
                Ok(taken)
            }
        }
    }

    /// The topic's name.
    pub fn topic(&self) -> &str {
        match &self.inner {
            Inside::Shm(subscription) => subscription.topic(),
            Inside::Socket { subscription, .. } => subscription.topic(),
        }
    }

    /// The transport its messages come over.
    pub fn transport(&self) -> Transport {
        match &self.inner {
            Inside::Shm(_) => Transport::SharedMemory,
            Inside::Socket { .. } => Transport::Socket,
        }
    }

    /// Over shared memory: messages lost because the broker dropped their payload segment
    /// for this subscription (it held too many large messages of one ring unread). 0 over
    /// the socket.
    pub fn segments_dropped(&self) -> u64 {
        match &self.inner {
            Inside::Shm(subscription) => subscription.segments_dropped(),
            Inside::Socket { .. } => 0,
        }
    }

    /// Over shared memory: rings dropped as corrupt and reference frames that named no
    /// usable payload segment; each lost messages that no lag notice counts (they are
    /// logged). 0 over the socket.
    pub fn faults(&self) -> u64 {
        match &self.inner {
            Inside::Shm(subscription) => subscription.faults(),
            Inside::Socket { .. } => 0,
        }
    }

    /// Over shared memory: rings read now (the relay ring plus one per shared-memory
    /// publisher). 0 over the socket.
    pub fn ring_count(&self) -> usize {
        match &self.inner {
            Inside::Shm(subscription) => subscription.ring_count(),
            Inside::Socket { .. } => 0,
        }
    }
}

/// A blocking publisher, over whichever transport; see the module docs.
#[derive(Debug)]
pub struct Publisher {
    inner: PublisherInside,
}

// The shared-memory publisher is the hot path: kept inline, not behind a box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum PublisherInside {
    Shm(ShmPublisher),
    Socket {
        /// Declared before the runtime, so it is dropped while the runtime still runs.
        publisher: crate::Publisher,
        runtime: Arc<Runtime>,
    },
}

impl Publisher {
    /// Publishes one message. Over shared memory it is readable when this returns (it waits
    /// while the ring is full, and on a queue topic for a consumer); over the socket it is
    /// queued for sending.
    pub fn publish(&mut self, payload: &[u8]) -> Result<(), PublishError> {
        match &mut self.inner {
            PublisherInside::Shm(publisher) => Ok(publisher.publish(payload)?),
            PublisherInside::Socket { publisher, runtime } => {
                runtime.block_on(publisher.publish(payload))
            }
        }
    }

    /// Publishes one message with `headers`; see [`crate::Publisher::publish_with`].
    pub fn publish_with(&mut self, headers: &Headers, payload: &[u8]) -> Result<(), PublishError> {
        match &mut self.inner {
            PublisherInside::Shm(publisher) => {
                let topic = publisher.topic().to_owned();
                publisher
                    .publish_with(headers, payload)
                    .map_err(|error| PublishError::on_topic(error, &topic))
            }
            PublisherInside::Socket { publisher, runtime } => {
                runtime.block_on(publisher.publish_with(headers, payload))
            }
        }
    }

    /// Publishes several messages in order; over shared memory nothing is written if any is
    /// too large.
    pub fn publish_batch(&mut self, payloads: &[&[u8]]) -> Result<(), PublishError> {
        match &mut self.inner {
            PublisherInside::Shm(publisher) => Ok(publisher.publish_batch(payloads)?),
            PublisherInside::Socket { publisher, runtime } => {
                runtime.block_on(publisher.publish_batch(payloads))
            }
        }
    }

    /// Publishes one message if there is room now; `Ok(false)` (nothing written) when the
    /// ring is full. Over the socket: [`publish`](Self::publish), then `true`.
    pub fn try_publish(&mut self, payload: &[u8]) -> Result<bool, PublishError> {
        match &mut self.inner {
            PublisherInside::Shm(publisher) => Ok(publisher.try_publish(payload)?),
            PublisherInside::Socket { .. } => self.publish(payload).map(|()| true),
        }
    }

    /// Over shared memory: looks at the session now, and fails if the broker is gone
    /// ([`PublishError::BrokerGone`]) or ended this publisher ([`PublishError::Refused`] with
    /// its reason). Messages written meanwhile went into a ring nobody reads.
    pub fn check(&mut self) -> Result<(), PublishError> {
        match &mut self.inner {
            PublisherInside::Shm(publisher) => Ok(publisher.check()?),
            PublisherInside::Socket { publisher, runtime } => runtime.block_on(publisher.check()),
        }
    }

    /// Lends `len` bytes to write the next message in place, published by
    /// [`Loan::commit`]: the ring's own bytes where the topic allows (zero copy), a payload
    /// segment for a message larger than the ring. Shared memory only: over the socket it
    /// fails with [`PublishError::LoanUnsupported`].
    pub fn loan(&mut self, len: usize) -> Result<Loan<'_>, PublishError> {
        match &mut self.inner {
            PublisherInside::Shm(publisher) => Ok(publisher.loan(len)?),
            PublisherInside::Socket { .. } => Err(PublishError::LoanUnsupported),
        }
    }

    /// Over shared memory on a `drop_newest` topic: messages dropped because the ring was
    /// full. 0 otherwise.
    pub fn dropped(&self) -> u64 {
        match &self.inner {
            PublisherInside::Shm(publisher) => publisher.dropped(),
            PublisherInside::Socket { .. } => 0,
        }
    }

    /// The topic's payload limit.
    pub fn max_message_size(&self) -> usize {
        match &self.inner {
            PublisherInside::Shm(publisher) => publisher.max_message_size(),
            PublisherInside::Socket { publisher, .. } => publisher.max_message_size(),
        }
    }

    /// The topic's name.
    pub fn topic(&self) -> &str {
        match &self.inner {
            PublisherInside::Shm(publisher) => publisher.topic(),
            PublisherInside::Socket { publisher, .. } => publisher.topic(),
        }
    }

    /// The transport its messages go over.
    pub fn transport(&self) -> Transport {
        match &self.inner {
            PublisherInside::Shm(_) => Transport::SharedMemory,
            PublisherInside::Socket { .. } => Transport::Socket,
        }
    }
}
