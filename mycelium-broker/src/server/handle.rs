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
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use mycelium_config::BrokerConfig;
    use mycelium_transport::Broker;

    use crate::server::{bind_socket, Server};

    const WAIT: Duration = Duration::from_secs(30);

    fn config_text(socket: &std::path::Path, topics: &[&str]) -> String {
        let mut text = format!("[server]\nsocket_path = \"{}\"\n", socket.display());
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
}
