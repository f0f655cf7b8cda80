//! [`BrokerHandle`]: the broker as a front end running in its process sees it (the HTTP and
//! WebSocket gateway, a future NATS listener): the same topics the socket and shared-memory
//! clients use, the config in force and its changes, the statistics, and whether the broker is
//! stopping.
//!
//! - Publishing and subscribing go through [`BrokerHandle::local`], a
//!   [`LocalBroker`] over the server's own [`TopicRegistry`]: a publish reaches socket,
//!   shared-memory and in-process subscribers alike, and an in-process subscription is held to
//!   its topic's backpressure like any other subscriber.
//! - Access lists are checked against a socket peer's uid and gid; a front end has no such
//!   peer, so it must decide for itself what it lets through (the gateway refuses topics that
//!   have lists).
//! - Cheap to clone; it keeps the broker's shared state alive, not the server's tasks.

use std::sync::Arc;

use mycelium_config::BrokerConfig;
use tokio::sync::watch;

use crate::core::local::LocalBroker;
use crate::core::registry::TopicRegistry;
use crate::server::metrics::BrokerMetrics;
use crate::server::state::{BrokerState, BrokerStatistics};

/// A front end's handle on a running broker; see the module's contract.
#[derive(Debug, Clone)]
pub struct BrokerHandle {
    state: Arc<BrokerState>,
}

impl BrokerHandle {
    pub(crate) fn new(state: Arc<BrokerState>) -> BrokerHandle {
        BrokerHandle { state }
    }

    /// The broker's topics.
    pub fn registry(&self) -> &Arc<TopicRegistry> {
        &self.state.registry
    }

    /// An in-process broker over the server's topics, with an origin of its own (so its
    /// no-echo subscriptions skip only what it published itself).
    pub fn local(&self) -> LocalBroker {
        LocalBroker::with_registry(self.state.registry.clone())
    }

    /// The config in force now.
    pub fn config(&self) -> Arc<BrokerConfig> {
        self.state.config()
    }

    /// Sees each config a reload puts in force, the one in force now first.
    pub fn config_changes(&self) -> watch::Receiver<Arc<BrokerConfig>> {
        self.state.config_changes()
    }

    /// The broker's figures now.
    pub fn statistics(&self) -> BrokerStatistics {
        self.state.statistics()
    }

    /// Everything the broker measures now: connections, reloads, per-topic counters,
    /// subscribers, depth and lag, and the publish-to-deliver latency (see
    /// [`BrokerMetrics`]). Reads every topic and its subscribers' queues: for a scrape, not
    /// for a loop.
    pub fn metrics(&self) -> BrokerMetrics {
        self.state.metrics()
    }

    /// Whether the broker has begun its graceful shutdown.
    pub fn is_stopping(&self) -> bool {
        self.state.stopping.is_cancelled()
    }

    /// Resolves once the broker begins its graceful shutdown: a front end stops taking new
    /// work then, and finishes what it holds.
    pub async fn stopping(&self) {
        self.state.stopping.cancelled().await
    }

    /// Removes a topic that `auto_create` made, in use or not, with its shared-memory rings,
    /// as the idle sweep does: its subscribers on every path are told it was removed. A
    /// declared topic is refused (only a reload of the config removes it).
    pub fn remove_dynamic_topic(&self, name: &str) -> Result<(), RemoveTopicError> {
        let Some(topic) = self.state.registry.remove_dynamic(name) else {
            return Err(match self.state.registry.get_by_name(name) {
                Some(_) => RemoveTopicError::Declared {
                    name: name.to_owned(),
                },
                None => RemoveTopicError::Unknown {
                    name: name.to_owned(),
                },
            });
        };
        let attachments = self.state.shm.remove_topic(&topic);
        tracing::info!(
            topic = topic.name(),
            id = topic.id(),
            shm_attachments = attachments,
            "removed an auto-created topic on request"
        );
        Ok(())
    }
}

/// Why [`BrokerHandle::remove_dynamic_topic`] removed nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RemoveTopicError {
    /// No such topic.
    #[error("unknown topic '{name}'")]
    Unknown {
        /// The name asked for.
        name: String,
    },
    /// The topic is declared in the config: a reload that no longer declares it removes it.
    #[error("topic '{name}' is declared in the broker's config; only a reload without it removes it (only auto-created topics can be deleted)")]
    Declared {
        /// The name asked for.
        name: String,
    },
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::{Bytes, BytesMut};
    use mycelium_config::BrokerConfig;
    use mycelium_transport::codec::{encode_frame, FrameCodec};
    use mycelium_transport::{Broker, Frame};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_util::codec::Decoder;

    use crate::server::{bind_socket, Server};

    const WAIT: Duration = Duration::from_secs(30);

    fn config_text(socket: &std::path::Path, topics: &[&str]) -> String {
        config_with_metrics(socket, topics, true)
    }

    fn config_with_metrics(socket: &std::path::Path, topics: &[&str], metrics: bool) -> String {
        let mut text = format!(
            "[server]\nsocket_path = \"{}\"\n\n[metrics]\nenabled = {metrics}\n",
            socket.display()
        );
        for topic in topics {
            text.push_str(&format!(
                "\n[[topics]]\nname = \"{topic}\"\nrouting = \"fanout\"\n"
            ));
        }
        text
    }

    /// The handle's view follows the running server: a publish through `local()` shows in the
    /// statistics and reaches a subscriber made through another handle, a reload reaches
    /// `config_changes`, and the start of the shutdown reaches `stopping`.
    #[test]
    fn the_handle_follows_publishes_reloads_and_the_shutdown() {
        let dir = tempfile::tempdir().expect("temp dir");
        let socket = dir.path().join("broker.sock");
        let file = dir.path().join("broker.toml");
        std::fs::write(&file, config_text(&socket, &["t"])).expect("write config");
        let config = BrokerConfig::from_file(&file).expect("config");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let listener = bind_socket(&socket, 0o600).expect("bind");
        let server = Server::new(config).expect("server").with_config_file(&file);
        let handle = server.handle();
        let reload = server.reload_handle();
        runtime.block_on(async {
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let serving = tokio::spawn(server.run(listener, Some(socket.clone()), async move {
                let _ = stopped.await;
            }));
            let mut sub = handle.local().subscribe("t").expect("subscribe");
            handle
                .local()
                .publish("t", b"hello")
                .await
                .expect("publish");
            let got = tokio::time::timeout(WAIT, sub.recv())
                .await
                .expect("delivered in time")
                .expect("a message");
            assert_eq!(&got[..], b"hello");
            let t = handle.statistics().topics;
            assert_eq!((t.len(), t[0].name.as_str()), (1, "t"));
            assert_eq!(
                (t[0].published, t[0].delivered, t[0].subscribers),
                (1, 1, 1)
            );

            let mut changes = handle.config_changes();
            assert_eq!(changes.borrow_and_update().topics.len(), 1);
            std::fs::write(&file, config_text(&socket, &["t", "u"])).expect("rewrite");
            let answer = reload.request().await;
            assert_eq!(answer.status.generation, 2, "{answer:?}");
            tokio::time::timeout(WAIT, changes.changed())
                .await
                .expect("a change in time")
                .expect("the sender lives");
            assert_eq!(changes.borrow().topics.len(), 2);
            assert_eq!(handle.config().topics.len(), 2);
            let reloads = handle.metrics().config;
            assert_eq!(
                (
                    reloads.generation,
                    reloads.reloads_ok,
                    reloads.reloads_failed
                ),
                (2, 1, 0)
            );
            assert!(reloads
                .last
                .as_ref()
                .is_some_and(|last| last.success && last.error.is_empty()));
            std::fs::write(&file, "[server\n").expect("break the file");
            let answer = reload.request().await;
            assert_eq!(answer.status.generation, 2, "{answer:?}");
            let reloads = handle.metrics().config;
            assert_eq!(
                (
                    reloads.generation,
                    reloads.reloads_ok,
                    reloads.reloads_failed
                ),
                (2, 1, 1)
            );
            let last = reloads.last.expect("the failed reload");
            assert!(!last.success && !last.error.is_empty(), "{last:?}");

            assert!(!handle.is_stopping());
            let _ = stop.send(());
            tokio::time::timeout(WAIT, handle.stopping())
                .await
                .expect("stopping in time");
            assert!(handle.is_stopping());
            tokio::time::timeout(WAIT, serving)
                .await
                .expect("stopped in time")
                .expect("the server's task")
                .expect("an orderly stop");
        });
    }

    /// An auto-created topic is removed on request, ending its subscriptions; a declared
    /// one and an unknown one are refused, each with its reason.
    #[test]
    fn only_auto_created_topics_are_removed_on_request() {
        let dir = tempfile::tempdir().expect("temp dir");
        let socket = dir.path().join("broker.sock");
        let text = format!(
            "{}\n[topic_defaults]\nauto_create = true\n",
            config_text(&socket, &["declared"])
        );
        let config =
            BrokerConfig::from_toml_str(&text, &dir.path().join("broker.toml")).expect("config");
        let server = Server::new(config).expect("server");
        let handle = server.handle();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let mut sub = handle
                .local()
                .subscribe("made.on.use")
                .expect("auto-created");
            assert!(handle
                .registry()
                .get_by_name("made.on.use")
                .expect("there")
                .is_dynamic());
            assert_eq!(handle.remove_dynamic_topic("made.on.use"), Ok(()));
            assert!(handle.registry().get_by_name("made.on.use").is_none());
            assert!(matches!(
                sub.recv().await,
                Err(mycelium_transport::RecvError::Ended(
                    mycelium_transport::SubscriptionEnd::TopicRemoved { .. }
                ))
            ));
            assert!(matches!(
                handle.remove_dynamic_topic("declared"),
                Err(super::RemoveTopicError::Declared { .. })
            ));
            assert!(handle.registry().get_by_name("declared").is_some());
            assert!(matches!(
                handle.remove_dynamic_topic("made.on.use"),
                Err(super::RemoveTopicError::Unknown { .. })
            ));
        });
    }

    /// Over a running server, with metrics on and off: a socket client's one write of ten
    /// publishes (one read, one batch) shows as a message connection, ten messages and their
    /// bytes in, ten copies and their bytes out to an in-process subscriber, and, only with
    /// metrics on, one latency sample for the topic and the broker.
    #[test]
    fn metrics_count_a_socket_publishers_batch_and_sample_its_latency_once_when_on() {
        for enabled in [true, false] {
            metrics_of_one_batch(enabled);
        }
    }

    /// The next frame the broker sends.
    async fn next_frame(
        stream: &mut tokio::net::UnixStream,
        codec: &mut FrameCodec,
        inbox: &mut BytesMut,
    ) -> Frame {
        loop {
            if let Some(frame) = codec.decode(inbox).expect("a frame") {
                return frame;
            }
            let n = stream.read_buf(inbox).await.expect("read");
            assert!(n > 0, "the broker closed the connection");
        }
    }

    fn metrics_of_one_batch(enabled: bool) {
        let dir = tempfile::tempdir().expect("temp dir");
        let socket = dir.path().join("broker.sock");
        let file = dir.path().join("broker.toml");
        std::fs::write(&file, config_with_metrics(&socket, &["t"], enabled)).expect("write");
        let config = BrokerConfig::from_file(&file).expect("config");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let listener = bind_socket(&socket, 0o600).expect("bind");
        let server = Server::new(config).expect("server");
        let handle = server.handle();
        runtime.block_on(async {
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let serving = tokio::spawn(server.run(listener, Some(socket.clone()), async move {
                let _ = stopped.await;
            }));
            let _sub = handle.local().subscribe("t").expect("subscribe");
            let topic_id = handle.registry().get_by_name("t").expect("topic").id();

            let mut stream = tokio::net::UnixStream::connect(&socket)
                .await
                .expect("connect");
            let mut out = BytesMut::new();
            let hello = Frame::Hello {
                client_id: uuid::Uuid::new_v4(),
                name: "metrics test".into(),
            };
            encode_frame(&hello, &mut out).expect("encode");
            stream.write_all(&out).await.expect("hello");
            let mut codec = FrameCodec::new(1 << 20);
            let mut inbox = BytesMut::new();
            let welcome =
                tokio::time::timeout(WAIT, next_frame(&mut stream, &mut codec, &mut inbox))
                    .await
                    .expect("welcome");
            assert!(matches!(welcome, Frame::Welcome { .. }), "{welcome:?}");

            // Ten publishes and a ping in one write: the ping's pong comes once the batch
            // before it was routed and its latency recorded.
            out.clear();
            for i in 0..10u8 {
                let publish = Frame::Publish {
                    topic_id,
                    payload: Bytes::from(vec![i; 16]),
                };
                encode_frame(&publish, &mut out).expect("encode");
            }
            encode_frame(&Frame::Ping { token: 7 }, &mut out).expect("encode");
            stream.write_all(&out).await.expect("publish");
            let pong = tokio::time::timeout(WAIT, next_frame(&mut stream, &mut codec, &mut inbox))
                .await
                .expect("pong");
            assert!(matches!(pong, Frame::Pong { token: 7 }), "{pong:?}");

            let m = handle.metrics();
            assert_eq!(m.connections.messages, 1, "{m:?}");
            assert_eq!(m.connections.shm_sessions, 0);
            assert_eq!(m.latency_enabled, enabled);
            assert_eq!(m.config.generation, 1);
            assert_eq!((m.config.reloads_ok, m.config.reloads_failed), (0, 0));
            assert!(m.config.last.is_none());
            let t = &m.topics[0];
            assert_eq!(t.name, "t");
            assert_eq!((t.published, t.delivered, t.dropped), (10, 10, 0));
            assert_eq!((t.bytes_in, t.bytes_out), (160, 160));
            assert_eq!((m.bytes_in, m.bytes_out), (160, 160));
            assert_eq!(
                (
                    t.subscribers.socket,
                    t.subscribers.shm,
                    t.subscribers.in_process
                ),
                (0, 0, 1)
            );
            assert_eq!(t.depth, 10, "the in-process subscriber has read nothing");
            assert_eq!(t.lag.queued_messages, Some(10));
            assert_eq!(t.lag.shm_bytes, None);
            if enabled {
                assert_eq!(m.latency.count, 1, "one sample for the one batch");
                assert_eq!(t.latency.count, 1);
                let p50 = t.latency.p50.expect("a median");
                assert!(p50 > std::time::Duration::ZERO && p50 < WAIT, "{p50:?}");
                assert_eq!(
                    t.latency.p99, t.latency.p50,
                    "one sample: every quantile is it"
                );
            } else {
                assert_eq!(m.latency.count, 0, "metrics off: no sample");
                assert_eq!(t.latency.count, 0);
                assert_eq!(t.latency.p50, None);
            }

            let _ = stop.send(());
            tokio::time::timeout(WAIT, serving)
                .await
                .expect("stopped in time")
                .expect("the server's task")
                .expect("an orderly stop");
        });
    }
}
