//! [`Client`]: the async client, over the socket or shared memory as its options choose.
//!
//! - [`ClientOptions::transport`] chooses how messages travel by default:
//!   [`Transport::Socket`] (through the broker), [`Transport::SharedMemory`] (rings, one hop
//!   from publisher to subscriber), or [`Transport::Auto`] (shared memory where the broker
//!   offers it for the topic, else the socket). [`Client::subscribe_over`] and
//!   [`Client::publisher_over`] choose per topic.
//! - Whatever the transport, [`Client::subscribe`] returns a [`Subscription`] and
//!   [`Client::publisher`] a [`Publisher`]; a subscription keeps the transport's receive
//!   contract ([`mycelium_transport::receive`]) and is a `Stream`.
//! - Requests (stats, reload, flush) go over the socket: a shared-memory client opens its
//!   socket connection when the first one is made. Each transport is connected once, when
//!   first needed (the default one at connect).
//! - [`Client`] implements [`Broker`], so code written against the trait runs against an
//!   in-process broker or this client alike.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_core::Stream;
use mycelium_transport::envelope::{Envelope, Headers};
use mycelium_transport::{
    Broker, ErrorCode, Message, Receive, RecvError, RoutingKind, TryRecvError,
};
use tokio::sync::OnceCell;
use uuid::Uuid;

use crate::error::{ClientError, ConnectError, PublishError, RequestError, SubscribeError};
use crate::request::Requests;
use crate::shm::{AsyncShmPublisher, AsyncShmSubscription, ShmClient, ShmOptions};
use crate::socket::{
    BrokerInfo, BrokerStats, ReloadReport, SocketClient, SocketOptions, SocketPublisher,
    SocketSubscription,
};
use crate::subscribe_options::SubscribeOptions;

/// How messages travel between this client and the broker's other clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Transport {
    /// Through the broker, over its Unix socket.
    #[default]
    Socket,
    /// Shared-memory rings, one hop from publisher to subscriber.
    SharedMemory,
    /// Shared memory where the broker offers it for the topic, else the socket.
    Auto,
}

/// Options for [`Client::connect_with`] and
/// [`blocking::Client::connect_with`](crate::blocking::Client::connect_with).
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Shown in the broker's logs.
    pub name: String,
    /// Identifies this client's socket connection to the broker; random by default.
    pub client_id: Uuid,
    /// How long connecting the socket and its handshake may take.
    pub connect_timeout: Duration,
    /// How long a socket request (subscribe, advertise, stats, flush) may wait for its answer.
    pub request_timeout: Duration,
    /// The transport of `subscribe`, `publisher` and `publish`.
    pub transport: Transport,
    /// The shared-memory session's options.
    pub shm: ShmOptions,
}

impl Default for ClientOptions {
    fn default() -> ClientOptions {
        let socket = SocketOptions::default();
        ClientOptions {
            name: socket.name,
            client_id: socket.client_id,
            connect_timeout: socket.connect_timeout,
            request_timeout: socket.request_timeout,
            transport: Transport::default(),
            shm: ShmOptions::default(),
        }
    }
}

impl ClientOptions {
    /// The default options with `transport`.
    pub fn with_transport(transport: Transport) -> ClientOptions {
        ClientOptions {
            transport,
            ..ClientOptions::default()
        }
    }

    pub(crate) fn socket_options(&self) -> SocketOptions {
        SocketOptions {
            name: self.name.clone(),
            client_id: self.client_id,
            connect_timeout: self.connect_timeout,
            request_timeout: self.request_timeout,
        }
    }

    pub(crate) fn shm_options(&self) -> ShmOptions {
        let mut shm = self.shm.clone();
        shm.client_id = self.client_id;
        if shm.name.is_empty() {
            shm.name.clone_from(&self.name);
        }
        shm
    }
}

/// Whether `error` says the broker offers no shared memory here (disabled, or not for this
/// topic): [`Transport::Auto`] then uses the socket.
pub(crate) fn shm_refused(error: &ClientError) -> bool {
    matches!(
        error,
        ClientError::Refused {
            code: ErrorCode::ShmRefused,
            ..
        }
    )
}

/// Publishers [`Client::publish`] and request/reply keep per topic at most.
pub(crate) const MAX_CACHED_PUBLISHERS: usize = 64;

/// A client of a broker process; clones share its connections. See the module docs.
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
    /// The socket connection, made at connect (socket transport) or by the first call that
    /// needs it; [`Client::close`] closes it.
    socket: OnceCell<SocketClient>,
    /// The shared-memory session, made at connect (shared memory, auto) or by the first
    /// call that needs it; it ends when the last handle sharing it is dropped.
    shm: OnceCell<ShmClient>,
    /// Publishers made by [`Client::publish`] off the socket, one per topic, so that a
    /// publish does not attach a ring (or ask again whether it may) each time.
    publishers: Mutex<HashMap<String, Publisher>>,
    /// Set when the broker refused a shared-memory session: [`Transport::Auto`] then goes
    /// straight to the socket.
    shm_unavailable: AtomicBool,
    /// Request/reply: the inbox and the requests waiting for replies.
    requests: Requests,
}

impl Client {
    /// Connects to the broker's socket at `path` with the default options (the socket
    /// transport).
    pub async fn connect(path: impl AsRef<Path>) -> Result<Client, ConnectError> {
        Client::connect_with(path, ClientOptions::default()).await
    }

    /// Connects with `options`: the default transport is connected now.
    pub async fn connect_with(
        path: impl AsRef<Path>,
        options: ClientOptions,
    ) -> Result<Client, ConnectError> {
        let path = path.as_ref().to_owned();
        let (socket, shm) = (OnceCell::new(), OnceCell::new());
        let info = match options.transport {
            Transport::Socket => {
                let client = SocketClient::connect_with(&path, options.socket_options()).await?;
                let info = client.broker_info().clone();
                let _ = socket.set(client);
                info
            }
            Transport::SharedMemory => {
                let client = ShmClient::connect_with_async(&path, options.shm_options()).await?;
                let info = client.broker_info().clone();
                let _ = shm.set(client);
                info
            }
            Transport::Auto => {
                match ShmClient::connect_with_async(&path, options.shm_options()).await {
                    Ok(client) => {
                        let info = client.broker_info().clone();
                        let _ = shm.set(client);
                        info
                    }
                    Err(error) if shm_refused(&error) => {
                        let client =
                            SocketClient::connect_with(&path, options.socket_options()).await?;
                        let info = client.broker_info().clone();
                        let _ = socket.set(client);
                        info
                    }
                    Err(error) => return Err(error.into()),
                }
            }
        };
        Ok(Client {
            inner: Arc::new(Inner {
                path,
                info,
                socket,
                shm,
                publishers: Mutex::default(),
                shm_unavailable: AtomicBool::new(false),
                requests: Requests::new(options.client_id),
                options,
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

    /// The socket connection, made on first use.
    pub(crate) async fn socket(&self) -> Result<&SocketClient, ClientError> {
        self.inner
            .socket
            .get_or_try_init(|| {
                SocketClient::connect_with(&self.inner.path, self.inner.options.socket_options())
            })
            .await
    }

    async fn shm(&self) -> Result<&ShmClient, ClientError> {
        if self.inner.shm_unavailable.load(Ordering::Relaxed) {
            return Err(ClientError::Refused {
                code: ErrorCode::ShmRefused,
                message: "the broker offers no shared memory".to_owned(),
            });
        }
        let connected = self
            .inner
            .shm
            .get_or_try_init(|| {
                ShmClient::connect_with_async(&self.inner.path, self.inner.options.shm_options())
            })
            .await;
        if let Err(error) = &connected {
            if shm_refused(error) {
                self.inner.shm_unavailable.store(true, Ordering::Relaxed);
            }
        }
        connected
    }

    /// Subscribes to `topic` over the default transport. On a queue topic over the socket
    /// the broker grants the topic's prefetch.
    pub async fn subscribe(&self, topic: &str) -> Result<Subscription, SubscribeError> {
        self.subscribe_over(topic, self.transport()).await
    }

    /// Subscribes to `topic` over `transport`.
    pub async fn subscribe_over(
        &self,
        topic: &str,
        transport: Transport,
    ) -> Result<Subscription, SubscribeError> {
        self.subscribe_over_with(topic, transport, SubscribeOptions::default())
            .await
    }

    /// Subscribes to `topic` over the default transport with `options`: leave out what this
    /// client publishes itself (`no_echo`), ask for a queue topic's prefetch over the socket.
    pub async fn subscribe_with(
        &self,
        topic: &str,
        options: SubscribeOptions,
    ) -> Result<Subscription, SubscribeError> {
        self.subscribe_over_with(topic, self.transport(), options)
            .await
    }

    /// Subscribes to `topic` over `transport` with `options`.
    pub async fn subscribe_over_with(
        &self,
        topic: &str,
        transport: Transport,
        options: SubscribeOptions,
    ) -> Result<Subscription, SubscribeError> {
        let inner = match transport {
            Transport::Socket => {
                Inside::Socket(self.socket().await?.subscribe_with(topic, &options).await?)
            }
            Transport::SharedMemory => {
                Inside::Shm(shm_subscribe_async(self.shm().await?, topic, &options).await?)
            }
            Transport::Auto => match self.shm_subscribe_or_refused(topic, &options).await? {
                Some(subscription) => Inside::Shm(subscription),
                None => Inside::Socket(self.socket().await?.subscribe_with(topic, &options).await?),
            },
        };
        Ok(Subscription { inner })
    }

    /// A shared-memory subscription, or `None` if the broker offers none for `topic`.
    async fn shm_subscribe_or_refused(
        &self,
        topic: &str,
        options: &SubscribeOptions,
    ) -> Result<Option<AsyncShmSubscription>, ClientError> {
        let client = match self.shm().await {
            Ok(client) => client,
            Err(error) if shm_refused(&error) => return Ok(None),
            Err(error) => return Err(error),
        };
        match shm_subscribe_async(client, topic, options).await {
            Ok(subscription) => Ok(Some(subscription)),
            Err(error) if shm_refused(&error) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Subscribes over the socket, asking for `prefetch` credit on a queue topic (0 = the
    /// topic's default). Prefetch is the socket's flow control; shared-memory consumers have
    /// none to ask for.
    pub async fn subscribe_with_prefetch(
        &self,
        topic: &str,
        prefetch: u32,
    ) -> Result<Subscription, SubscribeError> {
        let subscription = self
            .socket()
            .await?
            .subscribe_with(topic, &SubscribeOptions::new().prefetch(prefetch))
            .await?;
        Ok(Subscription {
            inner: Inside::Socket(subscription),
        })
    }

    /// A publisher for `topic` over the default transport: asks the broker for the topic
    /// once (an unknown topic is refused here, with the broker's message naming it).
    pub async fn publisher(&self, topic: &str) -> Result<Publisher, PublishError> {
        self.publisher_over(topic, self.transport()).await
    }

    /// A publisher for `topic` over `transport`.
    pub async fn publisher_over(
        &self,
        topic: &str,
        transport: Transport,
    ) -> Result<Publisher, PublishError> {
        let inner = match transport {
            Transport::Socket => {
                PublisherInside::Socket(self.socket().await?.publisher(topic).await?)
            }
            Transport::SharedMemory => {
                PublisherInside::Shm(self.shm().await?.publisher_async(topic).await?)
            }
            Transport::Auto => match self.shm_publisher_or_refused(topic).await? {
                Some(publisher) => PublisherInside::Shm(publisher),
                None => PublisherInside::Socket(self.socket().await?.publisher(topic).await?),
            },
        };
        Ok(Publisher { inner })
    }

    async fn shm_publisher_or_refused(
        &self,
        topic: &str,
    ) -> Result<Option<AsyncShmPublisher>, ClientError> {
        let client = match self.shm().await {
            Ok(client) => client,
            Err(error) if shm_refused(&error) => return Ok(None),
            Err(error) => return Err(error),
        };
        match client.publisher_async(topic).await {
            Ok(publisher) => Ok(Some(publisher)),
            Err(error) if shm_refused(&error) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Publishes one message on `topic` over the default transport. Over the socket it
    /// returns once the message is queued for sending ([`Client::flush`] confirms the broker
    /// processed it); over shared memory once subscribers can read it (the client keeps one
    /// ring per topic published on this way).
    pub async fn publish(&self, topic: &str, payload: &[u8]) -> Result<(), PublishError> {
        if self.transport() == Transport::Socket {
            let socket = self.socket().await?;
            return Ok(socket.publish(topic, payload).await?);
        }
        self.cached_publisher(topic).await?.publish(payload).await
    }

    /// This client's publisher of `topic`, made on first use and kept.
    pub(crate) async fn cached_publisher(&self, topic: &str) -> Result<Publisher, PublishError> {
        let cached = self
            .inner
            .publishers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(topic)
            .cloned();
        if let Some(publisher) = cached {
            return Ok(publisher);
        }
        let publisher = self.publisher(topic).await?;
        let mut publishers = self
            .inner
            .publishers
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        // A responder answers a new inbox per requester: keep a bounded few (each may hold a
        // ring), made again when needed.
        if publishers.len() >= MAX_CACHED_PUBLISHERS {
            if let Some(evicted) = publishers.keys().next().cloned() {
                publishers.remove(&evicted);
            }
        }
        publishers.insert(topic.to_owned(), publisher.clone());
        Ok(publisher)
    }

    /// The request/reply state.
    pub(crate) fn requests(&self) -> &Requests {
        &self.inner.requests
    }

    /// Waits until the broker has processed everything this client sent over the socket
    /// before the call. Returns the first publish the broker refused since the last flush,
    /// if any. Shared-memory publishes need no flush: they are readable when they return.
    pub async fn flush(&self) -> Result<(), RequestError> {
        match self.inner.socket.get() {
            Some(socket) => Ok(socket.flush().await?),
            None => Ok(()),
        }
    }

    /// How many messages published over the socket the broker has refused this client since
    /// it connected, as received so far: after [`Client::flush`], every publish sent before
    /// it is answered. Exact: each refusal says how many messages it refuses.
    pub fn refused_publishes(&self) -> u64 {
        self.inner
            .socket
            .get()
            .map_or(0, SocketClient::refused_publishes)
    }

    /// The broker's counters.
    pub async fn stats(&self) -> Result<BrokerStats, RequestError> {
        Ok(self.socket().await?.stats().await?)
    }

    /// Asks the broker to re-read its config file now, and waits for the outcome. A failed
    /// reload is an `Ok` report with
    /// [`ReloadOutcome::Failed`](mycelium_transport::ReloadOutcome::Failed): the broker
    /// answered, and kept its running config.
    pub async fn reload(&self) -> Result<ReloadReport, RequestError> {
        Ok(self.socket().await?.reload().await?)
    }

    /// Flushes, then closes the socket connection and waits until it is released.
    /// Subscriptions end ([`SubscriptionEnd::Closed`](mycelium_transport::SubscriptionEnd)
    /// over the socket). A shared-memory session ends when its last handle is dropped.
    pub async fn close(self) -> Result<(), RequestError> {
        match self.inner.socket.get() {
            Some(socket) => Ok(socket.clone().close().await?),
            None => Ok(()),
        }
    }
}

/// Subscribes over shared memory with `options` (a shared-memory consumer has no prefetch:
/// it reads the rings directly).
async fn shm_subscribe_async(
    client: &ShmClient,
    topic: &str,
    options: &SubscribeOptions,
) -> Result<AsyncShmSubscription, ClientError> {
    client.subscribe_async_with(topic, options.no_echo).await
}

impl Broker for Client {
    type Subscription = Subscription;
    type PublishError = PublishError;
    type SubscribeError = SubscribeError;
    type UnsubscribeError = RequestError;

    async fn publish(&self, topic: &str, payload: &[u8]) -> Result<(), PublishError> {
        Client::publish(self, topic, payload).await
    }

    async fn subscribe(&self, topic: &str) -> Result<Subscription, SubscribeError> {
        Client::subscribe(self, topic).await
    }

    async fn unsubscribe(&self, subscription: Subscription) -> Result<(), RequestError> {
        subscription.unsubscribe().await
    }
}

/// A live subscription, over whichever transport; see the module docs. Dropping it
/// unsubscribes.
#[derive(Debug)]
pub struct Subscription {
    inner: Inside,
}

#[derive(Debug)]
enum Inside {
    Socket(SocketSubscription),
    Shm(AsyncShmSubscription),
}

impl Subscription {
    #[inline]
    pub(crate) fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Result<Message, RecvError>> {
        match &mut self.inner {
            Inside::Socket(subscription) => subscription.poll_recv(cx),
            Inside::Shm(subscription) => subscription.poll_recv(cx),
        }
    }

    /// Waits for the next message. Cancel-safe: a dropped future takes nothing.
    pub async fn recv(&mut self) -> Result<Message, RecvError> {
        match &mut self.inner {
            Inside::Socket(subscription) => subscription.recv().await,
            Inside::Shm(subscription) => subscription.recv().await,
        }
    }

    /// The next message if one is ready, without waiting.
    #[inline]
    pub fn try_recv(&mut self) -> Result<Message, TryRecvError> {
        match &mut self.inner {
            Inside::Socket(subscription) => subscription.try_recv(),
            Inside::Shm(subscription) => subscription.try_recv(),
        }
    }

    /// The topic's name.
    pub fn topic(&self) -> &str {
        match &self.inner {
            Inside::Socket(subscription) => subscription.topic(),
            Inside::Shm(subscription) => subscription.topic(),
        }
    }

    /// The transport its messages come over.
    pub fn transport(&self) -> Transport {
        match &self.inner {
            Inside::Socket(_) => Transport::Socket,
            Inside::Shm(_) => Transport::SharedMemory,
        }
    }

    /// Over the socket: fanout or queue, as the broker said. `None` over shared memory.
    pub fn routing(&self) -> Option<RoutingKind> {
        match &self.inner {
            Inside::Socket(subscription) => Some(subscription.routing()),
            Inside::Shm(_) => None,
        }
    }

    /// Messages received and not yet taken by the application (over the socket; 0 over
    /// shared memory, where they wait in the rings).
    pub fn pending(&self) -> usize {
        match &self.inner {
            Inside::Socket(subscription) => subscription.pending(),
            Inside::Shm(_) => 0,
        }
    }

    /// Stops the subscription; over the socket, waits for the broker to confirm it.
    pub async fn unsubscribe(self) -> Result<(), RequestError> {
        match self.inner {
            Inside::Socket(subscription) => subscription.unsubscribe().await,
            Inside::Shm(subscription) => {
                drop(subscription);
                Ok(())
            }
        }
    }
}

impl Stream for Subscription {
    type Item = Result<Message, RecvError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match &mut self.inner {
            Inside::Socket(subscription) => subscription.poll_stream(cx),
            Inside::Shm(subscription) => subscription.poll_stream(cx),
        }
    }
}

impl Receive for Subscription {
    async fn recv(&mut self) -> Result<Message, RecvError> {
        Subscription::recv(self).await
    }

    fn try_recv(&mut self) -> Result<Message, TryRecvError> {
        Subscription::try_recv(self)
    }

    fn topic(&self) -> &str {
        Subscription::topic(self)
    }
}

/// Publishes on one topic, over whichever transport; cheap to clone. See the module docs.
#[derive(Debug, Clone)]
pub struct Publisher {
    inner: PublisherInside,
}

#[derive(Debug, Clone)]
enum PublisherInside {
    Socket(SocketPublisher),
    Shm(AsyncShmPublisher),
}

impl Publisher {
    /// Publishes one message. Over the socket it returns once the message is queued for
    /// sending; over shared memory once subscribers can read it, waiting (off the runtime's
    /// workers) while the ring is full. On a topic that stamps (`stamp = true`), the message
    /// gets an id and a publish time; on any other it goes as it is.
    pub async fn publish(&self, payload: &[u8]) -> Result<(), PublishError> {
        match &self.inner {
            PublisherInside::Socket(publisher) => {
                // Queued at once when the outgoing queue has room, the common case: no
                // future below this one is made, polled or dropped for it.
                if publisher.try_publish(payload)? {
                    return Ok(());
                }
                Ok(publisher.publish(payload).await?)
            }
            PublisherInside::Shm(publisher) => Ok(publisher.publish(payload).await?),
        }
    }

    /// Publishes one message with `headers`, as [`publish`](Self::publish) does (stamped too
    /// when the topic stamps). Headers past the topic's limits (`max_headers`,
    /// `max_header_bytes`) fail with [`PublishError::HeadersTooLarge`] before anything is
    /// sent.
    pub async fn publish_with(
        &self,
        headers: &Headers,
        payload: &[u8],
    ) -> Result<(), PublishError> {
        match &self.inner {
            PublisherInside::Socket(publisher) => publisher
                .publish_with(headers, payload)
                .await
                .map_err(|error| PublishError::on_topic(error, publisher.topic())),
            PublisherInside::Shm(publisher) => publisher
                .publish_with(headers, payload)
                .await
                .map_err(|error| PublishError::on_topic(error, publisher.topic())),
        }
    }

    /// Publishes one message with exactly `envelope` (requests and replies).
    pub(crate) async fn publish_envelope(
        &self,
        envelope: &Envelope<'_>,
        payload: &[u8],
    ) -> Result<(), PublishError> {
        match &self.inner {
            PublisherInside::Socket(publisher) => publisher
                .publish_envelope(envelope, payload)
                .await
                .map_err(|error| PublishError::on_topic(error, publisher.topic())),
            PublisherInside::Shm(publisher) => publisher
                .publish_envelope(envelope, payload)
                .await
                .map_err(|error| PublishError::on_topic(error, publisher.topic())),
        }
    }

    /// Whether anyone would get a message published now, when this publisher can tell: over
    /// shared memory, whether any consumer slot of its ring is active; over the socket, where
    /// the broker answers a request nobody can take, always true.
    pub(crate) async fn may_have_readers(&self) -> bool {
        match &self.inner {
            PublisherInside::Socket(_) => true,
            PublisherInside::Shm(publisher) => publisher.has_readers().await,
        }
    }

    /// Publishes several messages in order.
    pub async fn publish_batch(&self, payloads: &[&[u8]]) -> Result<(), PublishError> {
        match &self.inner {
            PublisherInside::Socket(publisher) => Ok(publisher.publish_batch(payloads).await?),
            PublisherInside::Shm(publisher) => {
                for payload in payloads {
                    publisher.publish(payload).await?;
                }
                Ok(())
            }
        }
    }

    /// Publishes one message if there is room now, without waiting: `Ok(false)` (nothing
    /// written) when the ring is full (or another publish of this publisher is under way),
    /// or over the socket when the outgoing queue is.
    pub fn try_publish(&self, payload: &[u8]) -> Result<bool, PublishError> {
        match &self.inner {
            PublisherInside::Socket(publisher) => Ok(publisher.try_publish(payload)?),
            PublisherInside::Shm(publisher) => Ok(publisher.try_publish(payload)?),
        }
    }

    /// Fails if the broker is gone or ended this publisher: over shared memory it looks at
    /// the session now; over the socket it reports what the connection already knows (its
    /// reader sees the broker's end as soon as it arrives).
    pub async fn check(&self) -> Result<(), PublishError> {
        match &self.inner {
            PublisherInside::Socket(publisher) => Ok(publisher.check()?),
            PublisherInside::Shm(publisher) => Ok(publisher.check().await?),
        }
    }

    /// The topic's payload limit.
    pub fn max_message_size(&self) -> usize {
        match &self.inner {
            PublisherInside::Socket(publisher) => publisher.max_message_size(),
            PublisherInside::Shm(publisher) => publisher.max_message_size(),
        }
    }

    /// The topic's name.
    pub fn topic(&self) -> &str {
        match &self.inner {
            PublisherInside::Socket(publisher) => publisher.topic(),
            PublisherInside::Shm(publisher) => publisher.topic(),
        }
    }

    /// The transport its messages go over.
    pub fn transport(&self) -> Transport {
        match &self.inner {
            PublisherInside::Socket(_) => Transport::Socket,
            PublisherInside::Shm(_) => Transport::SharedMemory,
        }
    }
}
